"""Images larger than memory: read tile by tile from a memory-mapped TIFF, written tile by tile.

The input is the memory map :func:`~unetkit.io.read_image` returns with ``mmap=True``; normalisation
statistics come from a strided subsample (:meth:`~unetkit.transforms.PercentileNormalize.fit`) and are
applied per tile; the inferer writes each output tile straight into a file-backed array
(:func:`~unetkit.io.open_output` for the outputs, ``np.memmap`` scratch files beside them), so the
process's own memory does not grow with the image:

- semantic labels go straight into the mask file, tile by tile;
- probabilities go into the ``_prob`` file, and the labels are then derived from it band by band;
- instance labels need the whole foreground at once: the foreground is written to a scratch map and
  ``scipy.ndimage.label`` numbers its components from that map into another (int32, 4 bytes per pixel on
  disk), then the labels are copied into the mask file in bands with the smallest dtype that holds them.
  scipy's labelling is one pass over mapped arrays; what it touches lives in the page cache, which the
  system reclaims.

The labels equal those of the in-memory path (:mod:`unetkit.predict.segment`) exactly.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from scipy import ndimage as ndi

from unetkit.errors import UnetkitError
from unetkit.inferers import to_labels, to_probabilities
from unetkit.io import ImageMeta, open_output
from unetkit.io.colour import to_grey
from unetkit.predict.layout import Layout
from unetkit.predict.model import BundleModel
from unetkit.predict.segment import classes_of, foreground_postprocess, run_inferer
from unetkit.predict.writer import OutputPaths, label_dtype, semantic_dtype

__all__ = ["stream_file", "BAND_PIXELS"]

BAND_PIXELS = 1 << 24
"""Pixels per band when a whole-image pass is done band by band (16 Mpx: 64 MB of int32)."""


@contextmanager
def _scratch(folder: Path) -> Iterator[Path]:
    """A hidden scratch folder beside the outputs (same disk, which must hold them anyway), removed after."""
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=".unetkit-stream-", dir=folder))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _bands(shape: tuple[int, ...]) -> Iterator[slice]:
    rows = max(1, BAND_PIXELS // max(1, int(np.prod(shape[1:]))))
    for start in range(0, shape[0], rows):
        yield slice(start, min(start + rows, shape[0]))


def _grey_source(array: np.ndarray, layout: Layout, scratch: Path) -> np.ndarray:
    """The ``(1, H, W)`` network input of a mapped RGB image, converted band by band into a scratch map."""
    rgb = array.transpose((layout.channel_axis, *layout.spatial))
    grey = np.memmap(scratch / "grey.f32", np.float32, "w+", shape=(1, *rgb.shape[1:]))
    for band in _bands(rgb.shape[1:]):
        grey[:, band] = to_grey(rgb[:, band], axis=0)
    return grey


def stream_file(
    model: BundleModel, array: np.ndarray, layout: Layout, meta: ImageMeta, outputs: OutputPaths, *,
    instances: bool, progress=None,
) -> int | None:
    """Segment one single-frame 2D image of any size, writing ``outputs`` tile by tile.

    Args:
        model: the bundle's model (2D).
        array: the file's array, ideally a memory map (``read_image(path, mmap=True)``).
        layout: its :class:`~unetkit.predict.layout.Layout` (no frame axes).
        meta: the file's metadata (outputs keep its calibration).
        outputs: where to write; ``outputs.prob`` set for probabilities.
        instances: instance labels (else class indices).
        progress: ``progress(done_tiles, total_tiles)``.

    Returns:
        The number of objects (instances), or None (semantic).

    Raises:
        UnetkitError: the bundle's normalisation cannot be applied per tile.
    """
    norm = model.normalize
    if norm is not None and not (callable(getattr(norm, "fit", None)) and callable(getattr(norm, "apply", None))):
        raise UnetkitError(
            f"too large to load, and the bundle's normalize ({type(norm).__name__}) has no fit/apply to stream it",
            path=meta.source, fix="use a normalize with fit/apply such as unetkit.transforms.PercentileNormalize",
        )
    label_meta = meta.select(layout.channel_axis, 0) if layout.channel_axis is not None else meta
    with _scratch(outputs.mask.parent) as scratch:
        source = _grey_source(array, layout, scratch) if layout.grey else layout.network_input(array)
        preprocess = None
        if norm is not None:
            stats = norm.fit(source)
            preprocess = lambda tile: norm.apply(tile, *stats)  # noqa: E731
        shape = tuple(source.shape[1:])
        if outputs.prob is not None:
            prob_meta = label_meta.insert_axis(0, "C", model.out_channels)
            with open_output(outputs.prob, (model.out_channels, *shape), np.float32, prob_meta) as probs:
                run_inferer(model, source, probs, preprocess=preprocess, postprocess=to_probabilities, progress=progress)
                return _labels_from_probs(model, probs, outputs, label_meta, scratch, instances=instances)
        if not instances:
            with open_output(outputs.mask, shape, semantic_dtype(model.out_channels), label_meta) as mask:
                run_inferer(model, source, mask, preprocess=preprocess, postprocess=to_labels, progress=progress)
            return None
        foreground = np.memmap(scratch / "foreground.u8", np.uint8, "w+", shape=shape)
        run_inferer(model, source, foreground, preprocess=preprocess,
                    postprocess=foreground_postprocess(tuple(model.instances.foreground)), progress=progress)
        return _write_instances(foreground, model.instances, outputs.mask, label_meta, scratch)


def _labels_from_probs(model, probs, outputs: OutputPaths, meta: ImageMeta, scratch: Path, *, instances: bool):
    shape = tuple(probs.shape[1:])
    if not instances:
        with open_output(outputs.mask, shape, semantic_dtype(model.out_channels), meta) as mask:
            for band in _bands(shape):
                mask[band] = classes_of(probs[:, band])
        return None
    foreground = np.memmap(scratch / "foreground.u8", np.uint8, "w+", shape=shape)
    for band in _bands(shape):
        foreground[band] = np.isin(classes_of(probs[:, band]), model.instances.foreground)
    return _write_instances(foreground, model.instances, outputs.mask, meta, scratch)


def _write_instances(foreground: np.ndarray, instances, target: Path, meta: ImageMeta, scratch: Path) -> int:
    """Number the components of a mapped foreground into ``target``; the same numbers as
    :func:`~unetkit.transforms.label_foreground` (raster order, small components dropped, renumbered)."""
    labels = np.memmap(scratch / "labels.i32", np.int32, "w+", shape=foreground.shape)
    structure = ndi.generate_binary_structure(foreground.ndim, instances.connectivity)
    n = int(ndi.label(foreground, structure=structure, output=labels))
    relabel = None
    if instances.min_size > 1 and n:
        sizes = np.zeros(n + 1, np.int64)
        for band in _bands(labels.shape):
            sizes += np.bincount(labels[band].ravel(), minlength=n + 1)
        small = sizes < instances.min_size
        small[0] = False
        keep = np.flatnonzero(~small)
        relabel = np.zeros(n + 1, np.int64)
        relabel[keep] = np.arange(len(keep))
        n = len(keep) - 1
    dtype = label_dtype(n)
    with open_output(target, labels.shape, dtype, meta) as mask:
        for band in _bands(labels.shape):
            values = labels[band] if relabel is None else relabel[labels[band]]
            mask[band] = values.astype(dtype)
    return n
