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

__all__ = ["AsInstances", "AsInstancesd", "label_foreground"]


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

    Examples:
        >>> logits = np.zeros((2, 3, 4), np.float32); logits[1, :, :2] = 1; logits[1, :, 3] = 1
        >>> AsInstances()(logits)[0].tolist()
        [[1, 1, 0, 2], [1, 1, 0, 2], [1, 1, 0, 2]]
    """

    def __init__(self, foreground: int | Sequence[int] = 1, *, connectivity: int = 1, min_size: int = 0,
                 threshold: float = 0.5):
        self.foreground = (foreground,) if isinstance(foreground, int) else tuple(foreground)
        self.connectivity = connectivity
        self.min_size = min_size
        self.threshold = threshold

    def __call__(self, img):
        was_torch = isinstance(img, torch.Tensor)
        arr = img.detach().cpu().numpy() if was_torch else np.asarray(img)
        if arr.shape[0] == 1:
            fg = arr[0] > self.threshold
        else:
            fg = np.isin(arr.argmax(0), self.foreground)
        labels = label_foreground(fg, connectivity=self.connectivity, min_size=self.min_size)[None]
        return torch.from_numpy(labels) if was_torch else labels


class AsInstancesd(MapTransform):
    """Dictionary twin of :class:`AsInstances`."""

    def __init__(self, keys: KeysCollection, foreground: int | Sequence[int] = 1, *, connectivity: int = 1,
                 min_size: int = 0, threshold: float = 0.5, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.op = AsInstances(foreground, connectivity=connectivity, min_size=min_size, threshold=threshold)

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.op(d[key])
        return d
