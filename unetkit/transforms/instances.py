"""From network output to an instance-label image: argmax, then connected components of the foreground.

Training with the paper's weight map leaves a background gap between touching cells, so connected
components of the predicted foreground separate them (the paper's Fig. 3 and its cell tracking results).
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from scipy import ndimage as ndi

__all__ = ["AsInstances", "AsInstancesd", "label_foreground", "mask_instances"]


def label_foreground(foreground: np.ndarray, *, connectivity: int = 1, min_size: int = 0) -> np.ndarray:
    """Number the connected components of a boolean array 1..n (int32), dropping those under ``min_size`` px.

    Args:
        foreground: boolean array, any number of dimensions.
        connectivity: 1 for face neighbours (4 in 2D, 6 in 3D), ``ndim`` for full (8 / 26).
        min_size: components smaller than this many pixels become background.

    Examples:
        >>> label_foreground(np.array([[1, 1, 0, 1], [0, 0, 0, 1]], bool)).tolist()
        [[1, 1, 0, 2], [0, 0, 0, 2]]
        >>> label_foreground(np.array([[1, 0, 0, 1], [0, 0, 0, 1]], bool), min_size=2).tolist()
        [[0, 0, 0, 1], [0, 0, 0, 1]]
    """
    structure = ndi.generate_binary_structure(foreground.ndim, connectivity)
    labels, n = ndi.label(foreground, structure=structure, output=np.int32)
    if min_size > 1 and n:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        if small.any():
            labels[small[labels]] = 0
            keep = np.flatnonzero(~small)
            relabel = np.zeros(len(sizes), np.int32)
            relabel[keep] = np.arange(len(keep), dtype=np.int32)
            labels = relabel[labels]
    return labels


def mask_instances(labels: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """Instance labels as given; a mask (one foreground value: 0/1, 0/255) numbered by its connected parts.

    A reference made by thresholding, or saved from a tool that exports binary masks, names no objects;
    read as instance labels it is one object made of every cell, whose size and borders mean nothing (the
    plan would set the smallest object to the size of all cells together and the decoder drop every cell).
    Its connected components are the closest reading: separate cells become objects, touching cells stay
    one, which only instance labels can tell apart. The rule is unetkit's one reading of label files: the
    training loader (``LoadImaged(instances=True)``), the plan's fingerprint and ``unetkit evaluate`` use it.

    Args:
        labels: integer label array, any shape (a channel axis of one counts as a spatial axis of one).
        connectivity: as :func:`label_foreground`.

    Returns:
        ``labels`` itself when it has two foreground values or more (or none), else int32 components 1..n.

    Examples:
        >>> mask_instances(np.array([[255, 255, 0, 255]], np.uint8)).tolist()
        [[1, 1, 0, 2]]
        >>> mask_instances(np.array([[3, 3, 7, 0]], np.uint16)).tolist()   # instance labels: as they are
        [[3, 3, 7, 0]]
    """
    a = np.asarray(labels)
    values = a[a != 0]
    if values.size == 0 or (values != values.flat[0]).any():
        return a
    return label_foreground(a != 0, connectivity=connectivity)


class AsInstances(Transform):
    """Logits or probabilities ``(C, *spatial)`` -> instance labels ``(1, *spatial)`` int32.

    A pixel is foreground when its argmax over the C channels is one of ``foreground`` (class 1 by
    default, the paper's "cell"); foreground connected components are numbered 1..n. A single-channel
    input is read as a foreground probability and thresholded at ``threshold``.

    Args:
        foreground: the class index (or indices) that count as foreground.
        connectivity: 1 for face neighbours (4 in 2D, 6 in 3D), ``ndim`` for full.
        min_size: components smaller than this many pixels are dropped.
        threshold: for single-channel inputs only.
        fill_holes: fill background holes enclosed by a single object
            (:func:`~unetkit.transforms.decoders.fill_label_holes`); off by default.

    :meth:`decode_classes` does the same from class indices ``(*spatial)`` (``unetkit infer``'s fast path):
    for ``C >= 2`` channels ``AsInstances()(logits)[0]`` equals ``AsInstances().decode_classes(logits.argmax(0))``
    (for one channel, pass the thresholded foreground as class 1).

    Examples:
        >>> logits = np.zeros((2, 3, 4), np.float32); logits[1, :, :2] = 1; logits[1, :, 3] = 1
        >>> AsInstances()(logits)[0].tolist()
        [[1, 1, 0, 2], [1, 1, 0, 2], [1, 1, 0, 2]]
        >>> AsInstances().decode_classes(np.array([[1, 1, 0, 1]], np.uint8)).tolist()
        [[1, 1, 0, 2]]
    """

    def __init__(self, foreground: int | Sequence[int] = 1, *, connectivity: int = 1, min_size: int = 0,
                 threshold: float = 0.5, fill_holes: bool = False):
        self.foreground = (foreground,) if isinstance(foreground, int) else tuple(foreground)
        self.connectivity = connectivity
        self.min_size = min_size
        self.threshold = threshold
        self.fill_holes = fill_holes

    def __call__(self, img):
        was_torch = isinstance(img, torch.Tensor)
        arr = img.detach().cpu().numpy() if was_torch else np.asarray(img)
        if arr.shape[0] == 1:
            fg = arr[0] > self.threshold
        else:
            fg = np.isin(arr.argmax(0), self.foreground)
        labels = self._label(fg)[None]
        return torch.from_numpy(labels) if was_torch else labels

    def decode_classes(self, classes: np.ndarray) -> np.ndarray:
        """Labels ``(*spatial)`` int32, numbered 1..n, for class indices ``(*spatial)``: the components of
        the ``foreground`` classes (with this transform's connectivity, min_size and fill_holes)."""
        return self._label(np.isin(np.asarray(classes), self.foreground))

    def _label(self, fg: np.ndarray) -> np.ndarray:
        labels = label_foreground(fg, connectivity=self.connectivity, min_size=self.min_size)
        if self.fill_holes:
            from unetkit.transforms.decoders import fill_label_holes  # decoders imports this module

            labels = fill_label_holes(labels)
        return labels


class AsInstancesd(MapTransform):
    """Dictionary twin of :class:`AsInstances`."""

    def __init__(self, keys: KeysCollection, foreground: int | Sequence[int] = 1, *, connectivity: int = 1,
                 min_size: int = 0, threshold: float = 0.5, fill_holes: bool = False, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.op = AsInstances(foreground, connectivity=connectivity, min_size=min_size, threshold=threshold,
                              fill_holes=fill_holes)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d
