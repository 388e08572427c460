"""The napari plugin: segment an image layer with a bundle, correct the labels, save the frame, fine-tune.

napari finds the plugin through the ``napari.manifest`` entry point (``unetkit.napari:napari.yaml``, an npe2
manifest) and builds its dock widget, :class:`unetkit.napari.widget.AnnotationWidget`, from it. Install it
with ``pip install 'unetkit[napari]'``; docs/napari.md walks through the loop.

This package imports nothing of napari or Qt: ``import unetkit`` (and npe2 reading the manifest) never needs
them. The Qt-free steps (one layer's pixels to instance labels, a corrected frame into the Cell Tracking
Challenge layout or a folder of image / mask pairs) are in :mod:`unetkit.napari.frames`; the widget lives in
:mod:`unetkit.napari.widget`.
"""
