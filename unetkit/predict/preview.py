"""A PNG to look at instead of read: the image in grey (or its own colours) with the mask's outlines.

One plane per input: a 2D image itself, the first frame of a time-lapse or stack, the middle ``Z`` slice
of a volume. Rows are ``Y`` and columns ``X`` whatever the file's axis order (a NIfTI ``XYZ`` volume is shown
as radiologists' viewers show a slice's array, ``Y`` down). Grey values are stretched between the 1st and
99.8th percentiles; object outlines (inner boundaries, so touching objects show both borders) are drawn
in yellow. Images larger than :data:`MAX_EDGE` are shown subsampled by a whole factor.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unetkit.io import ImageMeta
from unetkit.io.atomic import atomic_output, prepare_target
from unetkit.io.meta import CHANNEL

__all__ = ["write_preview", "preview_plane", "overlay", "MAX_EDGE", "OUTLINE"]

MAX_EDGE = 4096
"""Largest preview edge in pixels; larger images are subsampled (a 16k x 16k PNG helps nobody)."""
OUTLINE = (255, 220, 0)


def _plane_index(meta: ImageMeta, shape: tuple[int, ...], keep: str) -> tuple:
    index = []
    for axis, letter in enumerate(meta.axes):
        if letter in keep:
            index.append(slice(None))
        elif letter == "Z":
            index.append(shape[axis] // 2)
        else:
            index.append(0)
    return tuple(index)


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
    plane = [a for a in axes if a in "YX"]
    if len(plane) != 2:  # no Y/X letters: the last two non-channel axes
        plane = [a for a in axes if a not in CHANNEL][-2:]
    colour = next((a for a in axes if a == "S" and image.shape[axes.index(a)] in (3, 4)), None)
    img = image[_plane_index(meta, image.shape, "".join(plane) + (colour or ""))]
    label_axes = "".join(a for a in axes if a not in CHANNEL)
    lab = labels[_plane_index(ImageMeta(label_axes), labels.shape, "".join(plane))]
    if "".join(plane) == "XY":  # shown with Y down
        img, lab = np.swapaxes(img, 0, 1), lab.T
    return np.asarray(img), np.asarray(lab)


def overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``: ``image`` stretched to 0..255 with the outlines of ``labels`` in yellow.

    Examples:
        >>> lab = np.zeros((7, 7), np.uint16); lab[2:5, 2:5] = 1
        >>> rgb = overlay(np.zeros((7, 7)), lab)
        >>> rgb.shape, rgb[2, 2].tolist(), rgb[3, 3].tolist()
        ((7, 7, 3), [255, 220, 0], [0, 0, 0])
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
    rgb[find_boundaries(labels, mode="inner")] = OUTLINE
    return rgb


def write_preview(path: str | os.PathLike, image: np.ndarray, labels: np.ndarray, meta: ImageMeta) -> Path:
    """Write the preview PNG of ``image`` (file axis order) and its ``labels``; atomic; never the input.

    Returns:
        The path written.
    """
    img, lab = preview_plane(image, labels, meta)
    step = max(1, -(-max(lab.shape) // MAX_EDGE))
    rgb = overlay(img[::step, ::step], lab[::step, ::step])
    target = prepare_target(path, meta.source)
    from PIL import Image

    with atomic_output(target, "PNG") as tmp:
        Image.fromarray(np.ascontiguousarray(rgb)).save(tmp, format="PNG")
    return target
