"""A PNG to look at instead of read: the image in grey (or its own colours) with each object's outline in its own colour.

One plane per input: a 2D image itself; of a stack, time-lapse or volume the middle index of every axis
other than ``Y``/``X`` (the first channel of a multi-channel image), named in a caption band above the
image ("frame 12 of 25 (T)"), in the PNG's ``Description`` text and in the log. Rows are ``Y`` and columns
``X`` whatever the file's axis order (a NIfTI ``XYZ`` volume is shown as radiologists' viewers show a
slice's array, ``Y`` down). Grey values are stretched between the 1st and 99.8th percentiles; object
outlines (inner boundaries, so touching objects show both borders) are drawn in :data:`PALETTE`'s colours,
cycled by label and changed where two neighbouring objects would share one, so a merge of two cells shows
as one colour where two were expected. Images larger than :data:`MAX_EDGE` are shown subsampled by a whole
factor.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from unetkit.io import ImageMeta
from unetkit.io.atomic import atomic_output, prepare_target
from unetkit.io.meta import CHANNEL

__all__ = ["write_preview", "preview_plane", "preview_frames", "overlay", "label_colours", "MAX_EDGE", "OUTLINE",
           "PALETTE"]

logger = logging.getLogger(__name__)

MAX_EDGE = 4096
"""Largest preview edge in pixels; larger images are subsampled (a 16k x 16k PNG helps nobody)."""
PALETTE = (
    (255, 220, 0),  # label 1, and every pixel of a two-class (semantic) mask: the yellow of earlier previews
    # then matplotlib's tab20, strong hues first, its two greys left out (invisible on a grey image)
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148),
    (247, 182, 210), (219, 219, 141), (158, 218, 229),
)
"""Outline colours (RGB), cycled by label: label ``n`` gets ``PALETTE[(n - 1) % len(PALETTE)]`` unless a
neighbour has that colour already."""
OUTLINE = PALETTE[0]
_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1), (0, 2), (2, 0))  # touching, or a gap of one pixel


def preview_frames(meta: ImageMeta, shape: tuple[int, ...]) -> dict[str, tuple[int, int]]:
    """Which index of each non-plane axis the preview shows: ``{letter: (index, size)}``, counted from 0.

    The middle of every stack axis (``Z``, ``T``, ...); channel 0 of a ``C`` (or non-RGB ``S``) axis; the
    plane (``Y``, ``X``, or the last two other axes) and an RGB(A) ``S`` axis are shown whole.

    Examples:
        >>> preview_frames(ImageMeta("TCYX"), (25, 2, 33, 37))
        {'T': (12, 25), 'C': (0, 2)}
        >>> preview_frames(ImageMeta("YX"), (33, 37))
        {}
    """
    keep = _plane_axes(meta.axes) + _colour_axis(meta.axes, shape)
    return {a: (0 if a in CHANNEL else n // 2, n) for a, n in zip(meta.axes, shape) if a not in keep}


def _plane_axes(axes: str) -> str:
    plane = "".join(a for a in axes if a in "YX")
    return plane if len(plane) == 2 else "".join(a for a in axes if a not in CHANNEL)[-2:]


def _colour_axis(axes: str, shape: tuple[int, ...]) -> str:
    return "S" if "S" in axes and shape[axes.index("S")] in (3, 4) else ""


def _index(axes: str, frames: dict[str, tuple[int, int]]) -> tuple:
    return tuple(frames[a][0] if a in frames else slice(None) for a in axes)


def preview_plane(image: np.ndarray, labels: np.ndarray, meta: ImageMeta) -> tuple[np.ndarray, np.ndarray]:
    """The plane to show: ``(H, W)`` or ``(H, W, 3|4)`` image and ``(H, W)`` labels, ``Y`` down, ``X`` across.

    Args:
        image: the input array, in the file's axis order (``meta.axes``).
        labels: the label image, same axes without the channel axis.
        meta: the input's metadata.

    Examples:
        >>> img, lab = preview_plane(np.zeros((4, 5, 6)), np.zeros((4, 5, 6), np.uint16), ImageMeta("XYZ"))
        >>> img.shape, lab.shape
        ((5, 4), (5, 4))
    """
    axes = meta.axes
    frames = preview_frames(meta, image.shape)
    img = image[_index(axes, frames)]
    lab = labels[_index("".join(a for a in axes if a not in CHANNEL), frames)]
    if _plane_axes(axes) == "XY":  # shown with Y down
        img, lab = np.swapaxes(img, 0, 1), lab.T
    return np.asarray(img), np.asarray(lab)


def label_colours(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labels present (background 0 left out) and a :data:`PALETTE` index for each, neighbours distinct.

    Each label takes ``(label - 1) % len(PALETTE)`` unless a neighbouring object (touching, or across a gap
    of one pixel) took that colour first, then the next free one; with more neighbours than colours, its own.

    Examples:
        >>> lab = np.array([[1, 1, 20, 20], [1, 1, 20, 20]])  # 1 and 20 would share a colour by number
        >>> ids, colours = label_colours(lab)
        >>> ids.tolist(), colours.tolist()
        ([1, 20], [0, 1])
    """
    ids = np.unique(labels)
    ids = ids[ids != 0]
    neighbours: dict[int, set[int]] = {}
    for a, b in _touching_pairs(labels):
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    n = len(PALETTE)
    chosen: dict[int, int] = {}
    for label in ids.tolist():
        taken = {chosen[m] for m in neighbours.get(label, ()) if m in chosen}
        own = (label - 1) % n
        chosen[label] = next((c % n for c in range(own, own + n) if c % n not in taken), own)
    return ids, np.array([chosen[i] for i in ids.tolist()], dtype=np.intp)


def _touching_pairs(labels: np.ndarray) -> list[tuple[int, int]]:
    """Pairs of different non-zero labels at most one pixel apart, each once, smaller label first."""
    pairs = []
    h, w = labels.shape
    for dy, dx in _NEIGHBOURS:
        a = labels[: h - dy, max(0, -dx): w - max(0, dx)]  # each pixel ...
        b = labels[dy:, max(0, dx): w - max(0, -dx)]  # ... and the one (dy, dx) away
        differ = (a != b) & (a != 0) & (b != 0)
        if differ.any():
            pairs.append(np.stack([np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])], axis=1))
    if not pairs:
        return []
    return [tuple(p) for p in np.unique(np.concatenate(pairs), axis=0).tolist()]


def overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``: ``image`` stretched to 0..255 with each object of ``labels`` outlined in its colour.

    Examples:
        >>> lab = np.zeros((7, 9), np.uint16); lab[2:5, 1:4] = 1; lab[2:5, 4:7] = 2  # two touching objects
        >>> rgb = overlay(np.zeros((7, 9)), lab)
        >>> rgb.shape, rgb[2, 1].tolist(), rgb[2, 6].tolist(), rgb[3, 2].tolist()
        ((7, 9, 3), [255, 220, 0], [31, 119, 180], [0, 0, 0])
    """
    from skimage.segmentation import find_boundaries

    if image.ndim == 3:  # colour: stretch all samples together, drop alpha
        image = image[..., :3]
    values = np.asarray(image, np.float32)
    finite = values[np.isfinite(values)]
    lo, hi = np.percentile(finite, (1.0, 99.8)) if finite.size else (0.0, 1.0)
    scaled = np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1) * 255
    rgb = np.repeat(scaled[..., None], 3, axis=-1) if scaled.ndim == 2 else scaled
    rgb = np.nan_to_num(rgb).astype(np.uint8)
    edge = find_boundaries(labels, mode="inner") & (labels != 0)
    if edge.any():
        ids, colours = label_colours(labels)
        rgb[edge] = np.asarray(PALETTE, np.uint8)[colours[np.searchsorted(ids, labels[edge])]]
    return rgb


def _caption(frames: dict[str, tuple[int, int]]) -> str:
    """``"frame 12 of 25 (T), frame 2 of 5 (Z)"``: what a stack's preview shows, indices from 0."""
    return ", ".join(f"{'channel' if a in CHANNEL else 'frame'} {i} of {n} ({a})" for a, (i, n) in frames.items())


def _with_caption(rgb: np.ndarray, caption: str):
    """A PIL image: a black band with ``caption`` in white above ``rgb`` (widened if the text needs it)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), caption, font=font)
    band = bottom + 6
    canvas = Image.new("RGB", (max(rgb.shape[1], right + 8), rgb.shape[0] + band))
    canvas.paste(Image.fromarray(rgb), (0, band))
    ImageDraw.Draw(canvas).text((4, 3 - top), caption, fill=(255, 255, 255), font=font)
    return canvas


def write_preview(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray, meta: ImageMeta) -> Path:
    """Write the preview PNG of ``image`` (file axis order) and its ``labels``; atomic; never the input.

    A stack's preview shows its middle frame (see :func:`preview_frames`) and says which in a caption band
    above the image, in the PNG's ``Description`` text and in the log; a 2D image's PNG is its own size.

    Returns:
        The path written.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    frames = preview_frames(meta, image.shape)
    img, lab = preview_plane(image, labels, meta)
    step = max(1, -(-max(lab.shape) // MAX_EDGE))
    rgb = np.ascontiguousarray(overlay(img[::step, ::step], lab[::step, ::step]))
    caption = _caption(frames)
    png = _with_caption(rgb, caption) if caption else Image.fromarray(rgb)
    info = PngInfo()
    info.add_text("Description", caption or "the whole image")
    target = prepare_target(path, meta.source)
    with atomic_output(target, "PNG") as tmp:
        png.save(tmp, format="PNG", pnginfo=info)
    if caption:
        logger.info("%s shows %s", target.name, caption)
    return target
