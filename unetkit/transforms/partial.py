"""Partial annotation in the Cell Tracking Challenge's gold truth: the cells a segmentation leaves out.

The challenge describes its gold truths as complementary (celltrackingchallenge.net, "Reference
Annotations"): the gold *tracking* truth (``01_GT/TRA/man_trackTTT.tif``) marks every cell of every frame
("complete cell instance coverage") but only with a marker, while the gold *segmentation* truth
(``01_GT/SEG/man_segTTT.tif``) draws exact masks for "very limited cell instance coverage": a subset of the
frames and, in many data sets, a subset of the cells of a frame. A cell that has a tracking marker but no
segmentation mask is therefore not background, it is unannotated. Trained as background, it teaches the
network to miss cells.

The rule (:func:`unannotated_mask`): in a frame with a segmentation, each tracking marker that touches no
segmented object is an unannotated cell; the region ignored is its marker grown by the typical radius of the
frame's segmented cells (the marker is a blob inside the cell, the cell reaches about one radius beyond it),
minus the segmented objects themselves (annotated pixels are never ignored). Frames without a segmentation
are not training items at all (:func:`~unetkit.data.ctc_datalist` lists annotated frames only).

:class:`MarkUnannotatedd` applies it in a training pipeline: it writes the mask to ``mask_key`` (which
:class:`~unetkit.transforms.WeightMapd` reads as ``ignore_key``: weight 0, no part in the class balance or the
border term) and, when the recipe has an ignore label (``ignore_label``, ``unetkit train --ignore-label N``),
also writes that value into the label, so every later step sees the pixels as ignored.
"""

from __future__ import annotations

import math
from typing import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy import ndimage as ndi

from unetkit.errors import DataError

__all__ = ["unannotated_mask", "MarkUnannotatedd"]


def unannotated_mask(segmentation: np.ndarray, markers: np.ndarray, *, radius: float | None = None) -> np.ndarray:
    """Pixels of cells that have a tracking marker but no segmentation: True where the label is unknown.

    Args:
        segmentation: instance labels of the frame (0 = background or not annotated), any shape.
        markers: the tracking markers of the same frame (0 = none), the same shape.
        radius: how far beyond its marker an unannotated cell reaches, in pixels; by default the median
            equivalent radius of the segmented objects (of the markers, when nothing is segmented).

    Returns:
        A boolean mask of ``segmentation``'s shape; False wherever ``segmentation`` has an object.

    Examples:
        >>> seg = np.zeros((12, 20), np.uint16); seg[2:8, 2:8] = 1            # one segmented cell
        >>> tra = np.zeros_like(seg); tra[4:6, 4:6] = 1; tra[4:6, 14:16] = 2  # two markers, one unsegmented
        >>> m = unannotated_mask(seg, tra)
        >>> bool(m[5, 15]), bool(m[5, 11]), bool(m[5, 5]), bool(m[0, 0])
        (True, True, False, False)
    """
    seg = np.asarray(segmentation)
    tra = np.asarray(markers)
    if seg.shape != tra.shape:
        raise ValueError(f"markers have shape {tra.shape} but the segmentation {seg.shape}")
    touched = np.unique(tra[(seg > 0) & (tra > 0)])
    missing = (tra > 0) & ~np.isin(tra, touched)
    if not missing.any():
        return np.zeros(seg.shape, bool)
    if radius is None:
        radius = _typical_radius(seg) or _typical_radius(tra)
    near = ndi.distance_transform_edt(~missing) <= radius
    return near & (seg == 0)


def _typical_radius(labels: np.ndarray) -> float:
    """The median equivalent radius of the objects (that of a disc or ball of their area), 0 for none."""
    counts = np.bincount(labels.ravel().astype(np.int64))[1:]
    counts = counts[counts > 0]
    if counts.size == 0:
        return 0.0
    area = float(np.median(counts))
    return math.sqrt(area / math.pi) if labels.ndim == 2 else (3 * area / (4 * math.pi)) ** (1 / 3)


class MarkUnannotatedd(MapTransform):
    """Marks the cells a partial segmentation leaves out (:func:`unannotated_mask`) as ignored.

    Reads the tracking markers from the file named by ``track_key`` (the item's ``"track"`` path, which
    :func:`~unetkit.data.ctc_datalist` sets for gold truth when ``TRA/man_trackTTT.tif`` exists; the slice
    ``"frame"`` of a 3D marker file for a slice annotation). Items without it pass unchanged.

    Args:
        keys: the label key(s) (channel-first instance labels, as :class:`~unetkit.transforms.LoadImaged` gives).
        track_key: key of the tracking-marker file path.
        mask_key: where the boolean mask ``(1, *spatial)`` goes (for ``WeightMapd(ignore_key=...)``).
        ignore_value: the recipe's ignore label; when set, the mask's pixels take this value in the label.
        frame_key: key of the slice index of a slice annotation.

    Examples:
        >>> import tempfile
        >>> from unetkit.io import ImageMeta, write_image
        >>> seg = np.zeros((1, 12, 20), np.uint16); seg[0, 2:8, 2:8] = 1
        >>> tra = np.zeros((12, 20), np.uint16); tra[4:6, 4:6] = 1; tra[4:6, 14:16] = 2
        >>> path = write_image(tempfile.mkdtemp() + "/man_track000.tif", tra, ImageMeta("YX"))
        >>> d = MarkUnannotatedd("label", ignore_value=65535)({"label": seg, "track": str(path)})
        >>> int(d["label"][0, 5, 15]), int(d["unannotated"].sum()) == int((d["label"] == 65535).sum())
        (65535, True)
    """

    def __init__(self, keys: KeysCollection, *, track_key: Hashable = "track", mask_key: Hashable = "unannotated",
                 ignore_value: int | None = None, frame_key: Hashable = "frame", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.track_key, self.mask_key, self.frame_key = track_key, mask_key, frame_key
        self.ignore_value = ignore_value

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        path = d.get(self.track_key)
        if not path:
            return d
        from unetkit.io import read_image

        markers, _meta = read_image(path)
        frame = d.get(self.frame_key)
        for key in self.key_iterator(d):
            label = np.asarray(d[key])
            spatial = label.shape[1:] if label.ndim > markers.ndim or label.shape[0] == 1 else label.shape
            tra = markers[int(frame)] if frame is not None and markers.ndim == len(spatial) + 1 else markers
            if tuple(tra.shape) != tuple(spatial):
                raise DataError(f"tracking markers of shape {tra.shape} do not match the segmentation {spatial}",
                                path=path, fix="check that the TRA and SEG folders belong to the same sequence")
            mask = unannotated_mask(label.reshape(spatial), tra)
            d[self.mask_key] = mask.reshape(label.shape).astype(np.uint8)
            if self.ignore_value is not None and mask.any():
                label = label.copy()
                label.reshape(spatial)[mask] = self.ignore_value
                d[key] = label
        return d
