"""Make docs/napari_widget.png: the plugin's widget after one turn of the loop, headless.

Opens BUNDLE in the widget, segments DATA/02/t000.tif as an image layer, paints one more cell with the brush,
saves the frame into a copy of DATA, and grabs the widget. napari's canvas draws with OpenGL, which offscreen Qt
on a machine without a screen does not have, so the left half (the frame and its labels) is drawn by unetkit's
preview code, filled as napari's labels layer shows them.

    QT_QPA_PLATFORM=offscreen python examples/napari_screenshot.py BUNDLE DATA --out docs/napari_widget.png
"""

import argparse
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402


def _no_gl():
    """napari asks OpenGL for its texture limits when a layer is added; answer as its own tests do."""
    import napari._vispy.layers.base as base
    import napari._vispy.layers.image as image

    image.get_gl_extensions = lambda: ""
    image.get_max_texture_sizes = base.get_max_texture_sizes = lambda: (16384, 2048)


def _frame(image: np.ndarray, labels: np.ndarray, height: int) -> np.ndarray:
    from skimage.transform import resize

    from unetkit.predict.preview import PALETTE, label_colours, overlay

    rgb = overlay(image, labels).astype(np.float32)
    inside = labels != 0
    if inside.any():
        ids, colours = label_colours(labels)
        fill = np.asarray(PALETTE, np.float32)[colours[np.searchsorted(ids, labels[inside])]]
        rgb[inside] = 0.6 * rgb[inside] + 0.4 * fill  # napari's labels layer at its default opacity, roughly
    width = round(rgb.shape[1] * height / rgb.shape[0])
    return (resize(rgb, (height, width), order=0, preserve_range=True)).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("data", help="a CTC data folder, e.g. from `unetkit data demo DIR`")
    parser.add_argument("--out", default="docs/napari_widget.png")
    args = parser.parse_args()

    import napari
    import tifffile
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from unetkit.napari.widget import AnnotationWidget

    _no_gl()
    work = Path(tempfile.mkdtemp())
    data = shutil.copytree(args.data, work / "data")
    viewer = napari.Viewer(show=False)
    widget = AnnotationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="unetkit")
    app = QApplication.instance()

    def wait():
        while widget.busy is not None:
            app.processEvents()

    image = tifffile.imread(Path(args.data) / "02" / "t000.tif")
    viewer.add_image(image, name="t000")
    widget.open_bundle(args.bundle)
    wait()
    widget.segment()
    wait()
    labels = viewer.layers["t000 labels"]
    # a cell painted in where the model left background: the correction the user makes
    background = np.argwhere(labels.data == 0)
    y, x = background[len(background) // 2]
    labels.brush_size = 15
    labels.paint((int(y), int(x)), int(labels.data.max()) + 1)
    widget.data_edit.setText(str(data))
    widget.output_edit.setText(str(work / "tuned"))
    widget.save()
    widget.resize(460, widget.sizeHint().height())
    app.processEvents()

    widget.grab().save(str(work / "widget.png"))
    panel = np.asarray(Image.open(work / "widget.png").convert("RGB"))
    canvas = _frame(image, np.asarray(labels.data), panel.shape[0])
    gap = np.full((panel.shape[0], 8, 3), 255, np.uint8)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([canvas, gap, panel], axis=1)).save(args.out, optimize=True)
    viewer.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
