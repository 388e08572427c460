import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from unetkit.errors import UnetkitError
from unetkit.metrics import (
    ThresholdResult,
    label_above_threshold,
    rand_error,
    rand_error_thresholds,
    variation_of_information,
    warp_ground_truth,
    warping_error,
)
from unetkit.metrics.isbi import simple_point_table

CROSS = ndimage.generate_binary_structure(2, 1)
SQUARE = ndimage.generate_binary_structure(2, 2)


# --- independent references -------------------------------------------------------------------------


def _restricted(pred, gt):
    """gt-foreground pixels only, each predicted boundary pixel given its own id (a loop, on purpose)."""
    g = gt.ravel()
    p = pred.ravel().astype(np.int64)
    g, p = g[g != 0], p[g != 0].copy()
    fresh = p.max(initial=0) + 1
    for k in range(p.size):
        if p[k] == 0:
            p[k], fresh = fresh, fresh + 1
    return g, p


def rand_error_reference(pred, gt):
    """1 - F-score over all ordered pixel pairs (self-pairs included) of the gt foreground."""
    g, p = _restricted(pred, gt)
    same_g = g[:, None] == g[None, :]
    same_p = p[:, None] == p[None, :]
    both = np.sum(same_g & same_p)
    precision, recall = both / same_p.sum(), both / same_g.sum()
    return 1 - 2 * precision * recall / (precision + recall)


def vi_reference(pred, gt):
    """(H(pred|gt), H(gt|pred)) in bits from pair counts."""
    g, p = _restricted(pred, gt)
    pairs, n_ij = np.unique(np.stack([g, p]), axis=1, return_counts=True)
    p_ij = n_ij / g.size
    p_g = {a: np.mean(g == a) for a in np.unique(g)}
    p_p = {b: np.mean(p == b) for b in np.unique(p)}
    split = -sum(v * np.log2(v / p_g[a]) for (a, b), v in zip(pairs.T, p_ij))
    merge = -sum(v * np.log2(v / p_p[b]) for (a, b), v in zip(pairs.T, p_ij))
    return split, merge


def _counts(mask):
    """Foreground 4-components and background 8-components, outside the image counting as background."""
    padded = np.pad(mask, 1)
    return ndimage.label(padded, CROSS)[1], ndimage.label(~padded, SQUARE)[1]


def _simple_by_counting(patch, fg_conn):
    """Flip the centre of a 3x3 patch placed in a 5x5 background: do the component counts change?"""
    big = np.zeros((5, 5), bool)
    big[1:4, 1:4] = patch
    fg, bg = (CROSS, SQUARE) if fg_conn == 4 else (SQUARE, CROSS)

    def counts(b):
        return ndimage.label(b, fg)[1], ndimage.label(~b, bg)[1]

    flipped = big.copy()
    flipped[2, 2] = ~flipped[2, 2]
    return counts(big) == counts(flipped)


def _isbi_like(rng, shape=(41, 43), cells=9):
    """Cells of a Voronoi tessellation separated by one-pixel membranes (0), like ISBI 2012 labels."""
    seeds = np.zeros(shape, int)
    seeds[rng.integers(0, shape[0], cells), rng.integers(0, shape[1], cells)] = np.arange(1, cells + 1)
    _, (ri, ci) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    cells_ = seeds[ri, ci]
    membrane = ndimage.grey_dilation(cells_, size=(2, 2)) != ndimage.grey_erosion(cells_, size=(2, 2))
    return np.where(membrane, 0, cells_)


# --- Rand error --------------------------------------------------------------------------------------


def test_rand_error_is_zero_for_the_same_partition_with_other_ids():
    gt = np.array([[1, 1, 1, 0, 2, 2, 2]])
    assert rand_error(np.array([[9, 9, 9, 0, 4, 4, 4]]), gt) == 0.0
    assert rand_error(gt, gt) == 0.0


def test_rand_error_of_a_merge_and_a_split_by_hand():
    gt = np.array([[1, 1, 1, 0, 2, 2, 2]])  # sum a_i^2 = 9 + 9
    merged = np.array([[5, 5, 5, 5, 5, 5, 5]])  # n = [[3], [3]]: sum n^2 = 18, sum b^2 = 36
    assert rand_error(merged, gt) == pytest.approx(1 - 2 * 18 / (18 + 36))
    split = np.array([[1, 2, 2, 0, 3, 3, 3]])  # sum n^2 = 1 + 4 + 9 = 14 = sum b^2
    assert rand_error(split, gt) == pytest.approx(1 - 2 * 14 / (18 + 14))


def test_predicted_boundary_pixels_are_singletons_unlike_skimage():
    # gt: two cells of 4 px; the prediction draws a thick boundary through the middle
    gt = np.array([[1, 1, 1, 1, 0, 2, 2, 2, 2]])
    pred = np.array([[1, 1, 0, 0, 0, 0, 0, 2, 2]])
    # singletons: n_ij = 2, 1, 1 | 1, 1, 2 -> sum n^2 = 12 = sum b^2; sum a^2 = 32 -> 1 - 24/44
    assert rand_error(pred, gt) == pytest.approx(20 / 44)
    # skimage: the four predicted 0 pixels inside cells are one segment, and self-pairs are dropped
    assert adapted_rand_error(gt, pred)[0] == pytest.approx(0.6)
    # thickening the predicted boundary costs here; as one segment it would merge both cells
    assert rand_error(np.zeros_like(pred), gt) == pytest.approx(1 - 2 * 8 / (32 + 8))


def test_pixels_on_the_reference_boundary_are_left_out():
    gt = np.array([[1, 1, 0, 0, 2, 2]])
    a = np.array([[1, 1, 0, 0, 2, 2]])
    b = np.array([[1, 1, 1, 2, 2, 2]])  # differs only where gt is boundary
    assert rand_error(a, gt) == rand_error(b, gt) == 0.0


def test_rand_error_is_nan_without_reference_foreground():
    gt = np.zeros((3, 4), int)
    assert np.isnan(rand_error(np.ones_like(gt), gt))


def test_rand_error_matches_the_pair_counting_reference(rng):
    for _ in range(4):
        gt = _isbi_like(rng, (13, 17), cells=5)
        pred = _isbi_like(rng, (13, 17), cells=6)
        pred[rng.random(pred.shape) < 0.1] = 0  # scattered boundary pixels become singletons
        assert rand_error(pred, gt) == pytest.approx(rand_error_reference(pred, gt), abs=1e-12)


def test_rand_error_on_3d_and_torch_inputs(rng):
    gt = np.stack([_isbi_like(rng, (11, 13), cells=4) for _ in range(3)])
    pred = np.roll(gt, 1, axis=2)
    expected = rand_error_reference(pred, gt)
    assert rand_error(torch.from_numpy(pred), torch.from_numpy(gt)) == pytest.approx(expected, abs=1e-12)


# --- thresholds ---------------------------------------------------------------------------------------


def test_label_foreground_uses_4_connectivity_by_default():
    prob = np.array([[0.9, 0.1], [0.1, 0.9]])
    assert label_above_threshold(prob).tolist() == [[1, 0], [0, 2]]
    assert label_above_threshold(prob, connectivity=2).tolist() == [[1, 0], [0, 1]]
    assert label_above_threshold(prob, 0.95).max() == 0
    with pytest.raises(ValueError, match="connectivity must be between 1 and 2"):
        label_above_threshold(prob, connectivity=3)


def test_rand_error_thresholds_finds_the_threshold_that_opens_the_membrane():
    gt = np.array([[1, 1, 1, 0, 2, 2, 2]])
    prob = np.array([[0.9, 0.8, 0.9, 0.35, 0.9, 0.6, 0.9]])
    # at 0.3 the membrane pixel joins both cells (a merge); above 0.6 cell 2 breaks; between: exact
    best = rand_error_thresholds(prob, gt, thresholds=[0.3, 0.5, 0.7])
    assert best == ThresholdResult(error=0.0, threshold=0.5)
    assert rand_error_thresholds(prob, gt, thresholds=[0.3]).error == pytest.approx(1 / 3)


def test_rand_error_thresholds_is_the_minimum_over_the_listed_thresholds(rng):
    gt = _isbi_like(rng, (21, 23), cells=5)
    prob = ndimage.gaussian_filter((gt > 0).astype(float), 1.0) + 0.2 * rng.random(gt.shape)
    levels = (0.2, 0.4, 0.6, 0.8)
    errors = [rand_error(label_above_threshold(prob, t), gt) for t in levels]
    best = rand_error_thresholds(prob, gt, thresholds=levels)
    assert best.error == min(errors)
    assert best.threshold == levels[int(np.argmin(errors))]


def test_rand_error_thresholds_refuses_an_empty_threshold_list():
    with pytest.raises(ValueError, match="thresholds must be a non-empty sequence"):
        rand_error_thresholds(np.zeros((3, 3)), np.zeros((3, 3), int), thresholds=[])


# --- variation of information ---------------------------------------------------------------------------


def test_vi_returns_split_then_merge():
    gt = np.array([[1, 1, 0, 2, 2]])
    assert variation_of_information(gt, gt) == (0.0, 0.0)
    assert variation_of_information(np.array([[1, 2, 0, 3, 3]]), gt) == (0.5, 0.0)  # cell 1 halved
    assert variation_of_information(np.array([[4, 4, 4, 4, 4]]), gt) == (0.0, 1.0)  # cells merged


def test_vi_counts_predicted_boundary_pixels_as_singletons():
    gt = np.array([[1, 1, 1, 1, 0, 2, 2, 2, 2]])
    # every pixel its own segment: H(pred|gt) = log2(4) = 2 bits; nothing is merged
    assert variation_of_information(np.zeros_like(gt), gt) == (2.0, 0.0)


def test_vi_matches_the_entropy_reference(rng):
    gt = _isbi_like(rng, (15, 17), cells=5)
    pred = _isbi_like(rng, (15, 17), cells=7)
    pred[rng.random(pred.shape) < 0.05] = 0
    np.testing.assert_allclose(variation_of_information(pred, gt), vi_reference(pred, gt), atol=1e-12)


def test_vi_is_nan_without_reference_foreground():
    split, merge = variation_of_information(np.ones((2, 2), int), np.zeros((2, 2), int))
    assert np.isnan(split) and np.isnan(merge)


# --- warping error ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fg_conn", [4, 8])
def test_simple_point_table_agrees_with_component_counting(fg_conn):
    table = simple_point_table(fg_conn)
    assert table.shape == (512,) and not table.flags.writeable
    for index in range(512):
        patch = ((index >> np.arange(9)) & 1).astype(bool).reshape(3, 3)
        assert table[index] == _simple_by_counting(patch, fg_conn), (index, patch.astype(int))


def _two_cells():
    gt = np.zeros((7, 11), bool)
    gt[1:6, 1:5] = True
    gt[1:6, 6:10] = True  # membrane at column 5
    return gt


def test_identical_masks_have_no_warping_error():
    gt = _two_cells()
    assert warping_error(gt, gt) == 0.0
    np.testing.assert_array_equal(warp_ground_truth(gt, gt), gt)


def test_a_shifted_boundary_costs_nothing():
    gt = _two_cells()
    pred = np.zeros_like(gt)
    pred[1:6, 1:4] = True
    pred[1:6, 5:10] = True  # membrane moved one pixel left: cell 1 shrinks, cell 2 grows
    assert warping_error(pred, gt) == 0.0
    np.testing.assert_array_equal(warp_ground_truth(pred, gt), pred)
    cell = np.zeros((15, 17), bool)
    cell[4:10, 5:12] = True
    cell[6:8, 3:5] = True
    assert warping_error(ndimage.binary_dilation(cell, iterations=3), cell) == 0.0
    assert warping_error(ndimage.binary_erosion(cell), cell) == 0.0


def test_a_membrane_jumping_two_pixels_is_not_warped_greedily():
    # Only pixels that disagree flip (Jain et al.'s greedy algorithm, as Fiji): column 4 agrees, so
    # it never leaves cell 1, the old membrane (5 px) cannot join cell 2, and one pixel of the new
    # membrane must stay to hold column 4 to cell 1.
    gt = _two_cells()
    pred = np.zeros_like(gt)
    pred[1:6, 1:3] = True
    pred[1:6, 4:10] = True
    assert warping_error(pred, gt) == 6 / 77


def test_a_merge_costs_the_membrane_that_cannot_be_removed():
    gt = _two_cells()
    pred = gt.copy()
    pred[1:6, 5] = True  # membrane gone: the two cells merge
    # every membrane pixel joins two cells when flipped alone, so all 5 stay wrong
    assert warping_error(pred, gt) == 5 / 77


def test_a_split_costs_one_pixel_of_the_cut():
    gt = np.zeros((7, 11), bool)
    gt[1:6, 1:10] = True
    pred = gt.copy()
    pred[1:6, 5] = False  # a false membrane across the cell
    # the cut can be warped in from both ends but its last pixel would split the cell
    assert warping_error(pred, gt) == 1 / 77


def test_a_missing_object_shrinks_to_one_pixel_and_an_extra_object_counts_whole():
    gt = np.zeros((9, 9), bool)
    gt[2:5, 2:5] = True
    assert warping_error(np.zeros_like(gt), gt) == 1 / 81  # deleting the last pixel removes the object
    assert warping_error(gt, np.zeros_like(gt)) == 9 / 81  # no pixel of a new object is simple


def test_warping_keeps_topology_and_stops_only_at_non_simple_mismatches(rng):
    table = simple_point_table(4)
    for _ in range(3):
        gt = _isbi_like(rng, (31, 33), cells=7) > 0
        pred = _isbi_like(rng, (31, 33), cells=8) > 0
        warped = warp_ground_truth(pred, gt)
        assert _counts(warped) == _counts(gt)
        padded = np.pad(warped, 1).astype(int)
        for r, c in zip(*np.nonzero(warped != pred)):
            patch = padded[r : r + 3, c : c + 3]
            assert not table[int(np.sum(patch.ravel() << np.arange(9)))]
        assert warping_error(pred, gt) == np.mean(warped != pred)


def test_warping_error_is_2d_only_and_checks_its_connectivity():
    gt = np.zeros((2, 5, 5), bool)
    with pytest.raises(UnetkitError, match=r"2D images only.*\(2, 5, 5\).*slice by slice"):
        warping_error(gt, gt)
    with pytest.raises(ValueError, match="foreground_connectivity must be 4 or 8"):
        warping_error(gt[0], gt[0], foreground_connectivity=6)
