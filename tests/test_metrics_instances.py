import itertools

import numpy as np
import pytest
from scipy import ndimage

from unetkit.errors import UnetkitError
from unetkit.metrics import InstanceScores, instance_scores


def best_tp_reference(pred, gt, threshold):
    """Most one-to-one pairs with IoU >= threshold, by trying every assignment (tiny inputs only)."""
    g_ids = [i for i in np.unique(gt) if i]
    p_ids = [j for j in np.unique(pred) if j]
    iou = {}
    for i in g_ids:
        for j in p_ids:
            a, b = gt == i, pred == j
            iou[i, j] = np.sum(a & b) / np.sum(a | b)
    best = 0
    for chosen in itertools.permutations(p_ids + [None] * len(g_ids), len(g_ids)):
        best = max(best, sum(1 for i, j in zip(g_ids, chosen) if j is not None and iou[i, j] >= threshold))
    return best


def _three_cells():
    gt = np.zeros((6, 14), np.int32)
    gt[1:5, 0:4] = 1
    gt[1:5, 5:9] = 2
    gt[1:5, 10:14] = 3
    return gt


def test_perfect_match_scores_one_at_every_threshold():
    gt = _three_cells()
    pred = np.where(gt > 0, gt + 10, 0)
    scores = instance_scores(pred, gt)
    assert list(scores) == [0.5, 0.75, 0.9]
    assert all(s == InstanceScores(3, 0, 0, 1.0, 1.0, 1.0) for s in scores.values())


def test_one_false_positive_and_one_miss():
    gt = _three_cells()
    pred = gt.copy()
    pred[gt == 3] = 0  # cell 3 missed
    pred[0, 0:3] = 7  # an extra object in the background row
    s = instance_scores(pred, gt, thresholds=[0.5])[0.5]
    assert s == InstanceScores(tp=2, fp=1, fn=1, precision=2 / 3, recall=2 / 3, f1=4 / 6)


def test_the_threshold_decides_whether_a_sloppy_object_counts():
    gt = _three_cells()
    pred = gt.copy()
    pred[1:5, 3] = 0  # cell 1 loses a column: IoU 12/16 = 0.75
    scores = instance_scores(pred, gt, thresholds=[0.75, 0.76])
    assert scores[0.75].tp == 3  # IoU >= threshold counts, as in StarDist
    assert scores[0.76] == InstanceScores(2, 1, 1, 2 / 3, 2 / 3, 2 / 3)


def test_a_split_leaves_one_half_matched_at_0_5_and_none_above():
    gt = np.zeros((4, 8), int)
    gt[:, :] = 1
    pred = np.zeros_like(gt)
    pred[:, :4], pred[:, 4:] = 1, 2  # each half has IoU exactly 0.5
    scores = instance_scores(pred, gt, thresholds=[0.5, 0.6])
    assert scores[0.5] == InstanceScores(1, 1, 0, 0.5, 1.0, 2 / 3)
    assert scores[0.6] == InstanceScores(0, 2, 1, 0.0, 0.0, 0.0)


def test_a_merge_matches_at_most_one_of_the_merged_cells():
    gt = np.zeros((4, 9), int)
    gt[:, :4], gt[:, 5:] = 1, 2
    pred = np.ones_like(gt)  # IoU 16/36 with each cell
    assert instance_scores(pred, gt, thresholds=[0.4])[0.4] == InstanceScores(1, 0, 1, 1.0, 0.5, 2 / 3)
    assert instance_scores(pred, gt, thresholds=[0.5])[0.5].tp == 0


def test_low_thresholds_use_the_optimal_pairing_not_the_greedy_one():
    gt = np.array([[1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 0]])
    pred = np.array([[1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 0, 0]])
    # IoU: (g1, p1) 3/8, (g2, p1) 5/11, (g2, p2) 2/8. Greedy takes the best pair (g2, p1) and stops at
    # one match; pairing g1-p1 and g2-p2 gives two.
    assert instance_scores(pred, gt, thresholds=[0.25])[0.25].tp == 2
    assert best_tp_reference(pred, gt, 0.25) == 2


def test_matches_the_brute_force_pairing_on_random_images(rng):
    compared = 0
    while compared < 6:
        field = ndimage.gaussian_filter(rng.random((15, 17)), 1.2)
        noisy = np.roll(field, 1, axis=1) + 0.03 * rng.standard_normal(field.shape)  # a sloppy prediction
        gt = ndimage.label(field > np.quantile(field, 0.6))[0]
        pred = ndimage.label(noisy > np.quantile(noisy, 0.6))[0]
        if not 3 <= max(gt.max(), pred.max()) <= 6:
            continue  # some objects to pair, few enough for the permutation search
        compared += 1
        for t, s in instance_scores(pred, gt, thresholds=[0.1, 0.3, 0.5, 0.7]).items():
            assert s.tp == best_tp_reference(pred, gt, t)
            assert s.tp + s.fp == pred.max() and s.tp + s.fn == gt.max()


def test_empty_cases():
    gt = _three_cells()
    empty = np.zeros_like(gt)
    assert instance_scores(empty, empty)[0.5] == InstanceScores(0, 0, 0, 1.0, 1.0, 1.0)
    assert instance_scores(empty, gt)[0.5] == InstanceScores(0, 0, 3, 0.0, 0.0, 0.0)
    assert instance_scores(gt, empty)[0.5] == InstanceScores(0, 3, 0, 0.0, 0.0, 0.0)


def test_3d_labels():
    gt = np.zeros((3, 5, 5), int)
    gt[:, 1:4, 1:4] = 5
    pred = gt.copy()
    pred[0] = 0  # loses a third: IoU 2/3
    scores = instance_scores(pred, gt, thresholds=[0.6, 0.7])
    assert scores[0.6].tp == 1 and scores[0.7].tp == 0


def test_bad_arguments_are_refused():
    gt = _three_cells()
    with pytest.raises(ValueError, match=r"IoU values in \(0, 1\]"):
        instance_scores(gt, gt, thresholds=[0.0])
    with pytest.raises(ValueError, match="non-empty"):
        instance_scores(gt, gt, thresholds=[])
    with pytest.raises(UnetkitError, match="pred has shape"):
        instance_scores(gt[:, :5], gt)
