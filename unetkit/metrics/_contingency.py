"""Overlap counts between two label images: object sizes and the pixels each (gt, pred) pair shares.

The matching metrics (CTC SEG, instance precision/recall) need, per reference object, which predicted
objects it touches and by how much. Counting is done once over the pixels with ``np.bincount`` on
compact label codes (or a sort where the label range is too sparse for a table), never with a Python loop
over pixels or objects, so it stays fast with thousands of objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Overlap", "overlap"]

# Below this many table cells a dense bincount is cheaper than sorting the pair keys.
_DENSE_CELLS = 1 << 22


@dataclass(frozen=True)
class Overlap:
    """Sparse overlap table of a ground-truth and a predicted label image.

    Attributes:
        gt_ids, pred_ids: label values present, each starting with 0 (background), ascending.
        gt_sizes, pred_sizes: pixel counts of those labels (same order).
        gt_index, pred_index, counts: one entry per (gt, pred) pair that shares pixels: indices into
            ``gt_ids`` / ``pred_ids`` and the shared pixel count. Pairs with background are included.
    """

    gt_ids: np.ndarray
    pred_ids: np.ndarray
    gt_sizes: np.ndarray
    pred_sizes: np.ndarray
    gt_index: np.ndarray
    pred_index: np.ndarray
    counts: np.ndarray

    def object_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs of two objects (neither background): gt index, pred index, shared pixels."""
        keep = (self.gt_index > 0) & (self.pred_index > 0)
        return self.gt_index[keep], self.pred_index[keep], self.counts[keep]

    def iou(self) -> np.ndarray:
        """IoU of each object pair from :meth:`object_pairs` (same order)."""
        g, p, c = self.object_pairs()
        return c / (self.gt_sizes[g] + self.pred_sizes[p] - c)


def _codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Present label values (0 always first) and each pixel's index into them."""
    flat = labels.ravel()
    top = int(flat.max())
    if top < 4 * flat.size + 1024:  # a lookup table over the label range beats sorting
        present = np.bincount(flat, minlength=1) > 0
        present[0] = True
        ids = np.flatnonzero(present)
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[ids] = np.arange(ids.size)
        return ids, lut[flat]
    ids, codes = np.unique(flat, return_inverse=True)
    codes = codes.ravel().astype(np.int64)
    if ids[0] != 0:
        ids = np.concatenate([[0], ids])
        codes += 1
    return ids, codes


def overlap(gt: np.ndarray, pred: np.ndarray) -> Overlap:
    """Count label sizes and pairwise overlaps of two same-shape non-negative integer label images."""
    gt_ids, g = _codes(gt)
    pred_ids, p = _codes(pred)
    ng, npred = gt_ids.size, pred_ids.size
    keys = g * npred + p
    if ng * npred <= max(_DENSE_CELLS, 4 * keys.size):
        table = np.bincount(keys, minlength=ng * npred)
        keys = np.flatnonzero(table)
        counts = table[keys]
    else:
        keys, counts = np.unique(keys, return_counts=True)
    return Overlap(
        gt_ids=gt_ids,
        pred_ids=pred_ids,
        gt_sizes=np.bincount(g, minlength=ng),
        pred_sizes=np.bincount(p, minlength=npred),
        gt_index=keys // npred,
        pred_index=keys % npred,
        counts=counts,
    )
