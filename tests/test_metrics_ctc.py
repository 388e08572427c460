import numpy as np
import pytest
import torch
from scipy import ndimage

from unetkit.errors import UnetkitError
from unetkit.metrics import seg_measure, seg_measure_pooled, seg_scores


def seg_scores_reference(pred, gt):
    """The CTC definition written out with loops over objects (independent of the fast code)."""
    scores = []
    for r in np.unique(gt):
        if r == 0:
            continue
        ref = gt == r
        j = 0.0
        for s in np.unique(pred[ref]):
            if s == 0:
                continue
            seg = pred == s
            shared = np.sum(ref & seg)
            if shared > 0.5 * np.sum(ref):
                j = shared / np.sum(ref | seg)
        scores.append(j)
    return np.array(scores)


def _blobs(rng, shape, sigma=2.0, level=0.55):
    field = ndimage.gaussian_filter(rng.random(shape), sigma)
    return ndimage.label(field > np.quantile(field, level))[0]


def _perturbed(rng, labels):
    """A plausible prediction: shifted by a pixel, relabelled, two objects merged, one dropped, one added."""
    pred = np.roll(labels, 1, axis=-1)
    ids = np.unique(pred[pred > 0])
    perm = rng.permutation(ids) * 3 + 100  # scattered ids, none equal to the reference ids
    pred = np.where(pred > 0, perm[np.searchsorted(ids, pred)], 0)
    if ids.size >= 3:
        pred[pred == perm[1]] = perm[0]
        pred[pred == perm[2]] = 0
    pred[(slice(0, 2),) * pred.ndim] = 7
    return pred


def test_shared_acceptance_case_follows_the_ctc_definition_not_the_checks_arithmetic():
    # /work/shared/acceptance/bundles expects 0.5 here, claiming object 1 shares 24 <= 0.5 * 36 pixels.
    # But 24 > 18: object 1 matches object 5 with J = 24/36, and SEG = (2/3 + 1) / 2.
    gt = np.zeros((20, 20), np.int32)
    gt[2:8, 2:8] = 1
    gt[10:18, 10:18] = 2
    pred = np.zeros_like(gt)
    pred[2:8, 2:6] = 5
    pred[10:18, 10:18] = 7
    pred[0:2, 0:2] = 9
    assert seg_scores(pred, gt).tolist() == [24 / 36, 1.0]
    assert seg_measure(pred, gt) == pytest.approx((24 / 36 + 1) / 2, abs=1e-12)
    pred[2:8, 2:7] = 5  # the check's second case: 30 shared
    assert seg_measure(pred, gt) == pytest.approx((30 / 36 + 1) / 2, abs=1e-12)


def test_perfect_match_with_other_label_values_is_one():
    gt = np.zeros((9, 11), np.uint16)
    gt[1:4, 1:5] = 3
    gt[5:9, 2:10] = 8
    pred = np.where(gt == 3, 40000, np.where(gt == 8, 1, 0))
    assert seg_scores(pred, gt).tolist() == [1.0, 1.0]
    assert seg_measure(pred, gt) == 1.0


def test_exactly_half_is_not_a_match_and_one_pixel_more_is():
    gt = np.zeros((4, 8), int)
    gt[:, :4] = 1  # 16 px
    pred = np.zeros_like(gt)
    pred[:, :2] = 2  # 8 shared = exactly half: no match
    assert seg_scores(pred, gt).tolist() == [0.0]
    pred[0, 2] = 2  # 9 shared > 8: match, J = 9 / 16
    assert seg_scores(pred, gt).tolist() == [9 / 16]


def test_a_split_object_scores_its_larger_part_or_zero():
    gt = np.zeros((5, 10), int)
    gt[:, :] = 1  # 50 px
    pred = np.zeros_like(gt)
    pred[:, :6] = 1  # 30 px > 25: J = 30/50
    pred[:, 6:] = 2
    assert seg_measure(pred, gt) == 30 / 50
    pred[:, :5], pred[:, 5:] = 1, 2  # 25 / 25: neither part covers more than half
    assert seg_measure(pred, gt) == 0.0


def test_a_merged_prediction_matches_both_objects_with_lower_jaccard():
    gt = np.zeros((4, 9), int)
    gt[:, 0:4] = 1  # 16 px
    gt[:, 5:9] = 2  # 16 px
    pred = np.ones_like(gt) * 6  # one object of 36 px covering both
    assert seg_scores(pred, gt).tolist() == [16 / 36, 16 / 36]


def test_false_positives_cost_nothing():
    gt = np.zeros((8, 8), int)
    gt[1:4, 1:4] = 1
    pred = gt.copy()
    before = seg_measure(pred, gt)
    pred[5:8, 5:8] = 2
    assert seg_measure(pred, gt) == before == 1.0


def test_empty_reference_is_nan_and_empty_prediction_is_zero():
    gt = np.zeros((6, 6), int)
    gt[1:3, 1:3] = 4
    empty = np.zeros_like(gt)
    assert seg_scores(gt, empty).size == 0
    assert np.isnan(seg_measure(gt, empty))
    assert seg_measure(empty, gt) == 0.0


def test_pooling_sums_over_objects_not_over_frames():
    dense = np.zeros((6, 9), int)  # frame 1: three objects, all found exactly
    dense[0:2, :], dense[2:4, :], dense[4:6, :] = 1, 2, 3
    sparse = np.zeros((6, 9), int)  # frame 2: one object, half of it found: J = 0 (not > half)
    sparse[0:2, 0:4] = 1
    half = np.zeros_like(sparse)
    half[0:2, 0:2] = 1
    pairs = [(dense, dense), (half, sparse)]
    pooled = seg_measure_pooled(pairs)
    assert pooled == 3 / 4
    assert pooled != np.mean([seg_measure(p, g) for p, g in pairs])  # 0.5


def test_pooling_accepts_a_generator_and_skips_frames_without_objects():
    gt = np.zeros((5, 5), int)
    gt[1:4, 1:4] = 1
    empty = np.zeros_like(gt)
    frames = ((p, g) for p, g in [(gt, gt), (gt, empty), (empty, empty)])
    assert seg_measure_pooled(frames) == 1.0
    assert np.isnan(seg_measure_pooled([(empty, empty)]))
    assert np.isnan(seg_measure_pooled([]))


@pytest.mark.parametrize("shape,sigma,level", [((33, 37), 2.0, 0.55), ((7, 19, 23), 1.0, 0.7)])
def test_matches_the_object_loop_reference_on_random_label_images(rng, shape, sigma, level):
    for _ in range(3):
        gt = _blobs(rng, shape, sigma, level)
        pred = _perturbed(rng, gt)
        np.testing.assert_allclose(seg_scores(pred, gt), seg_scores_reference(pred, gt), atol=1e-12)


def test_huge_sparse_label_values_give_the_same_scores(rng):
    gt = _blobs(rng, (33, 37))
    pred = _perturbed(rng, gt)
    expected = seg_scores(pred, gt)
    big_gt = np.where(gt > 0, gt.astype(np.int64) * 2**40 + 12345, 0)  # far beyond a lookup table
    big_pred = np.where(pred > 0, pred.astype(np.uint64) * 2**33, 0).astype(np.uint64)
    np.testing.assert_array_equal(seg_scores(big_pred, big_gt), expected)


def test_many_objects_against_the_reference(rng):
    gt = _blobs(rng, (160, 170), sigma=1.0, level=0.7)  # several hundred small objects
    pred = _perturbed(rng, gt)
    assert gt.max() > 300
    np.testing.assert_allclose(seg_scores(pred, gt), seg_scores_reference(pred, gt), atol=1e-12)


def test_torch_tensors_and_integral_floats_are_accepted():
    gt = np.zeros((6, 6), np.int64)
    gt[1:5, 1:5] = 2
    pred = np.zeros_like(gt)
    pred[1:5, 1:4] = 1  # 12 of 16: J = 12/16
    assert seg_measure(torch.from_numpy(pred), torch.from_numpy(gt.astype(np.float32))) == 0.75


def test_bad_labels_are_refused_naming_the_argument():
    gt = np.zeros((4, 4))
    with pytest.raises(UnetkitError, match="pred holds non-integer values"):
        seg_measure(np.full((4, 4), 0.5), gt)
    with pytest.raises(UnetkitError, match=r"gt has negative labels \(min -1\)"):
        seg_measure(np.zeros((4, 4), int), -np.ones((4, 4), int))
    with pytest.raises(UnetkitError, match=r"pred has shape \(4, 5\) but gt has shape \(4, 4\)"):
        seg_scores(np.zeros((4, 5), int), gt)
