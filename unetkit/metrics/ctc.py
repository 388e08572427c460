"""The Cell Tracking Challenge SEG measure (Ulman et al., Nature Methods 2017; celltrackingchallenge.net).

A reference object ``R`` (one ground-truth label) matches the predicted object ``S`` iff
``|R and S| > 0.5 |R|``; at most one ``S`` can pass that test, so matching needs no assignment. A matched
``R`` scores the Jaccard index ``J = |R and S| / |R or S|``, an unmatched one 0. SEG is the mean of ``J``
over all reference objects; predicted objects that match nothing (false positives) cost nothing.

Over a sequence, the challenge pools: it sums ``J`` over every reference object of every annotated frame
and divides by their number, so a frame with 40 cells weighs 40 times a frame with one. That is
:func:`seg_measure_pooled`, built on :func:`seg_scores` (one ``J`` per reference object), and it is not
the mean of per-frame :func:`seg_measure` values.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from unetkit.metrics._contingency import overlap
from unetkit.metrics._inputs import as_labels, check_same_shape

__all__ = ["seg_scores", "seg_measure", "seg_measure_pooled"]


def seg_scores(pred, gt) -> np.ndarray:
    """One Jaccard index per reference object, the building block of SEG.

    Args:
        pred: predicted instance labels, shape ``(H, W)`` or ``(D, H, W)``, 0 = background.
        gt: reference instance labels, same shape, 0 = background (or not annotated).

    Returns:
        float64 array with one entry per distinct non-zero label of ``gt``, in ascending label order:
        ``|R and S| / |R or S|`` for the ``S`` covering more than half of ``R``, else 0. Empty when
        ``gt`` has no object.

    Raises:
        UnetkitError: the shapes differ, or an input is not a 2D/3D image of non-negative integers.

    Examples:
        >>> gt = np.zeros((6, 8), int); gt[0:2, 0:4] = 1; gt[3:6, 0:4] = 2; gt[3:6, 5:8] = 3
        >>> pred = np.zeros_like(gt)
        >>> pred[0:2, 0:3] = 9   # covers 6 of 8 pixels of object 1: J = 6/8
        >>> pred[3:6, 0:2] = 4   # covers 6 of 12 pixels of object 2: not > half, J = 0
        >>> pred[3:6, 4:8] = 5   # covers all of object 3 plus 3 more: J = 9/12
        >>> seg_scores(pred, gt).tolist()
        [0.75, 0.0, 0.75]
        >>> seg_scores(pred, np.zeros_like(gt)).size  # no reference objects
        0
    """
    g, p = as_labels(gt, "gt"), as_labels(pred, "pred")
    check_same_shape(p, g)
    table = overlap(g, p)
    gi, pi, shared = table.object_pairs()
    # |R and S| > 0.5 |R| in integers: the match is unique because two disjoint S cannot both cover > half
    match = 2 * shared > table.gt_sizes[gi]
    gi, pi, shared = gi[match], pi[match], shared[match]
    scores = np.zeros(table.gt_ids.size - 1, dtype=np.float64)
    scores[gi - 1] = shared / (table.gt_sizes[gi] + table.pred_sizes[pi] - shared)
    return scores


def seg_measure(pred, gt) -> float:
    """The CTC SEG measure of one image: the mean of :func:`seg_scores` over its reference objects.

    Args:
        pred: predicted instance labels, shape ``(H, W)`` or ``(D, H, W)``, 0 = background.
        gt: reference instance labels, same shape.

    Returns:
        SEG in [0, 1]. ``nan`` when ``gt`` has no object: SEG is undefined there, and the challenge
        skips such frames rather than scoring them 0 or 1 (``numpy.nanmean`` skips them too).

    Raises:
        UnetkitError: the shapes differ, or an input is not a 2D/3D image of non-negative integers.

    Examples:
        >>> gt = np.zeros((20, 20), np.int32); gt[2:8, 2:8] = 1; gt[10:18, 10:18] = 2
        >>> pred = np.zeros_like(gt); pred[2:8, 2:6] = 5; pred[10:18, 10:18] = 7; pred[0:2, 0:2] = 9
        >>> seg_measure(pred, gt)  # object 1: 24 > 18 shared, J = 24/36; object 2 exact; 9 is free
        0.8333333333333333
        >>> seg_measure(pred, np.zeros_like(gt))
        nan
    """
    scores = seg_scores(pred, gt)
    return float("nan") if scores.size == 0 else float(scores.mean())


def seg_measure_pooled(pairs: Iterable[tuple]) -> float:
    """SEG over many images, pooled the challenge's way: sum of ``J`` over all reference objects / their count.

    Args:
        pairs: iterable of ``(pred, gt)`` label images (each pair one frame; frames may differ in
            shape). Consumed once, so a generator that reads files lazily works.

    Returns:
        Pooled SEG; ``nan`` if no frame has a reference object (also for no frames at all).

    Raises:
        UnetkitError: as :func:`seg_scores`, for the first bad pair.

    Examples:
        >>> one = np.zeros((4, 4), int); one[:2, :2] = 1            # one object, missed: J = 0
        >>> many = np.zeros((4, 4), int); many[0, :] = 1; many[2, :] = 2; many[3, :] = 3
        >>> frames = [(np.zeros_like(one), one), (many, many)]     # three objects, all exact: J = 1
        >>> seg_measure_pooled(frames)  # (0 + 1 + 1 + 1) / 4, not the mean of per-frame 0 and 1
        0.75
    """
    total, count = 0.0, 0
    for pred, gt in pairs:
        scores = seg_scores(pred, gt)
        total += float(scores.sum())
        count += scores.size
    return float("nan") if count == 0 else total / count
