"""Object-level detection scores: match predicted to reference objects by IoU, then precision, recall, F1.

The matching is StarDist's (``stardist.matching.matching``, Schmidt et al., MICCAI 2018): a predicted
and a reference object form a true positive when they are paired one-to-one and their IoU is at least
the threshold. Above 0.5 the pairing is forced (an object can have IoU > 0.5 with one partner at most);
at or below 0.5 the pairing maximises the number of such pairs with the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``), IoU breaking ties.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from unetkit.metrics._contingency import overlap
from unetkit.metrics._inputs import as_labels, check_same_shape

__all__ = ["InstanceScores", "instance_scores"]


class InstanceScores(NamedTuple):
    """Detection counts and scores at one IoU threshold.

    ``tp``, ``fp``, ``fn`` are object counts; summing them over images and recomputing the scores
    pools a data set the way StarDist's ``matching_dataset`` does.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float


def _scores(tp: int, n_pred: int, n_gt: int) -> InstanceScores:
    fp, fn = n_pred - tp, n_gt - tp
    # With nothing to find and nothing found the prediction is right: 1.0 (StarDist returns 0 here).
    # Everywhere else these equal StarDist's definitions.
    precision = tp / n_pred if n_pred else float(n_gt == 0)
    recall = tp / n_gt if n_gt else float(n_pred == 0)
    f1 = 2 * tp / (n_pred + n_gt) if n_pred + n_gt else 1.0
    return InstanceScores(tp, fp, fn, precision, recall, f1)


def _matched(gi: np.ndarray, pi: np.ndarray, iou: np.ndarray, threshold: float) -> int:
    """Number of one-to-one pairs with IoU >= threshold, maximised over pairings."""
    ok = iou >= threshold
    if threshold > 0.5:  # IoU > 0.5 pairs are unique on both sides: no assignment needed
        return int(np.count_nonzero(ok))
    gi, pi, iou = gi[ok], pi[ok], iou[ok]
    if iou.size == 0:
        return 0
    rows, gi = np.unique(gi, return_inverse=True)
    cols, pi = np.unique(pi, return_inverse=True)
    # Objects only compete within a connected group of candidate pairs; solving each group on its own
    # keeps the cost matrices small where one dense matrix would grow with the square of the object count.
    n = rows.size + cols.size
    graph = coo_array((np.ones(iou.size), (gi, rows.size + pi)), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    pair_group = group[gi]
    sizes = np.bincount(pair_group)
    tp = int(np.count_nonzero(sizes[pair_group] == 1))  # a lone candidate pair is simply matched
    for g in np.flatnonzero(sizes > 1):
        sel = pair_group == g
        r, r_idx = np.unique(gi[sel], return_inverse=True)
        c, c_idx = np.unique(pi[sel], return_inverse=True)
        cost = np.zeros((r.size, c.size))
        # count first, IoU as the tie-breaker (StarDist's costs); non-candidates cost 0 and never count
        cost[r_idx, c_idx] = -1.0 - iou[sel] / (2 * min(r.size, c.size))
        rr, cc = linear_sum_assignment(cost)
        tp += int(np.count_nonzero(cost[rr, cc] < 0))
    return tp


def instance_scores(pred, gt, *, thresholds: Sequence[float] = (0.5, 0.75, 0.9)) -> dict[float, InstanceScores]:
    """Precision, recall and F1 of object detection at several IoU thresholds.

    Args:
        pred: predicted instance labels, shape ``(H, W)`` or ``(D, H, W)``, 0 = background.
        gt: reference instance labels, same shape, 0 = background.
        thresholds: IoU thresholds in (0, 1]; a pair matches when its IoU is >= the threshold.

    Returns:
        ``{threshold: InstanceScores(tp, fp, fn, precision, recall, f1)}`` in the order given, with
        ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``, ``f1 = 2 tp / (2 tp + fp + fn)``.
        Empty prediction: precision, recall and F1 are 0 (every reference object is missed). Empty
        reference: all 0 too (every predicted object is false). Both empty: all 1.0, the prediction is
        exactly right (StarDist returns 0 there).

    Raises:
        UnetkitError: the shapes differ, or an input is not a 2D/3D image of non-negative integers.
        ValueError: ``thresholds`` is empty or holds a value outside (0, 1].

    Examples:
        >>> gt = np.zeros((4, 9), int); gt[:, 0:3] = 1; gt[:, 6:9] = 2
        >>> pred = np.zeros_like(gt); pred[:, 0:3] = 4; pred[:, 3:5] = 5  # 2 missed, 5 extra
        >>> s = instance_scores(pred, gt, thresholds=[0.5])[0.5]
        >>> s.tp, s.fp, s.fn, s.precision, s.recall, s.f1
        (1, 1, 1, 0.5, 0.5, 0.5)
        >>> instance_scores(np.zeros((3, 3), int), np.zeros((3, 3), int))[0.5].f1
        1.0
    """
    levels = [float(t) for t in thresholds]
    if not levels or not all(0.0 < t <= 1.0 for t in levels):
        raise ValueError(f"thresholds must be a non-empty sequence of IoU values in (0, 1], got {thresholds!r}")
    g, p = as_labels(gt, "gt"), as_labels(pred, "pred")
    check_same_shape(p, g)
    table = overlap(g, p)
    gi, pi, _ = table.object_pairs()
    iou = table.iou()
    n_gt, n_pred = table.gt_ids.size - 1, table.pred_ids.size - 1
    return {t: _scores(_matched(gi, pi, iou, t), n_pred, n_gt) for t in levels}
