import numpy as np
import pytest
import torch

from unetkit.errors import UnetkitError
from unetkit.metrics import dice, iou, pixel_error


def _pair():
    # gt: 2x3 block (6 px); pred: 2x3 block shifted right by one: 4 shared, 8 in either, 4 differ
    gt = np.zeros((4, 5), np.uint8)
    gt[1:3, 1:4] = 1
    pred = np.zeros((4, 5), np.int32)
    pred[1:3, 2:5] = 7
    return pred, gt


def test_hand_worked_values_on_a_shifted_block():
    pred, gt = _pair()
    assert iou(pred, gt) == 0.5
    assert dice(pred, gt) == pytest.approx(8 / 12)
    assert pixel_error(pred, gt) == 4 / 20


def test_perfect_match_whatever_the_label_values():
    gt = np.zeros((5, 7), np.uint16)
    gt[1:3, 1:3] = 1
    gt[3:5, 4:7] = 2
    pred = np.where(gt > 0, 255, 0)  # a 0/255 mask of the same foreground
    assert iou(pred, gt) == 1.0
    assert dice(pred, gt) == 1.0
    assert pixel_error(pred, gt) == 0.0


def test_both_empty_is_a_perfect_score():
    empty = np.zeros((3, 5), np.uint8)
    assert iou(empty, empty) == 1.0
    assert dice(empty, empty) == 1.0
    assert pixel_error(empty, empty) == 0.0


def test_empty_prediction_and_empty_reference_score_zero():
    _, gt = _pair()
    empty = np.zeros_like(gt)
    assert iou(empty, gt) == 0.0 and iou(gt, empty) == 0.0
    assert dice(empty, gt) == 0.0 and dice(gt, empty) == 0.0
    assert pixel_error(empty, gt) == 6 / 20


def test_one_false_positive_object_lowers_iou_by_its_area():
    _, gt = _pair()
    pred = gt.copy()
    pred[0, 0] = 3  # one extra pixel
    assert iou(pred, gt) == 6 / 7
    assert pixel_error(pred, gt) == 1 / 20


def test_ignore_leaves_pixels_out_of_both_images():
    pred, gt = _pair()
    ignore = np.zeros(gt.shape, bool)
    ignore[:, 4] = True  # hides the 2 predicted pixels that stick out on the right
    assert iou(pred, gt, ignore=ignore) == 4 / 6
    assert dice(pred, gt, ignore=ignore) == 8 / 10
    assert pixel_error(pred, gt, ignore=ignore) == 2 / 16


def test_ignore_everything_gives_the_empty_conventions():
    pred, gt = _pair()
    everything = np.ones(gt.shape, bool)
    assert iou(pred, gt, ignore=everything) == 1.0
    assert np.isnan(pixel_error(pred, gt, ignore=everything))


def test_dice_and_iou_agree_through_their_identity(rng):
    for _ in range(5):
        pred = rng.random((33, 37)) > 0.6
        gt = rng.random((33, 37)) > 0.4
        j = iou(pred, gt)
        assert dice(pred, gt) == pytest.approx(2 * j / (1 + j))


def test_3d_volumes_and_torch_tensors_give_the_numpy_value(rng):
    pred = rng.random((5, 9, 11)) > 0.5
    gt = rng.random((5, 9, 11)) > 0.5
    expected = np.sum(pred & gt) / np.sum(pred | gt)
    assert iou(pred, gt) == pytest.approx(expected)
    assert iou(torch.from_numpy(pred.astype(np.float32)), torch.from_numpy(gt)) == pytest.approx(expected)


def test_results_are_python_floats():
    pred, gt = _pair()
    assert all(type(f(pred, gt)) is float for f in (iou, dice, pixel_error))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(UnetkitError, match=r"pred has shape \(4, 5\) but gt has shape \(4, 6\)"):
        iou(np.zeros((4, 5)), np.zeros((4, 6)))
    with pytest.raises(UnetkitError, match=r"ignore has shape \(2, 2\) but gt has shape \(4, 5\)"):
        dice(np.zeros((4, 5)), np.zeros((4, 5)), ignore=np.zeros((2, 2)))


def test_batch_and_channel_axes_are_refused_with_a_fix():
    with pytest.raises(UnetkitError, match=r"pred has shape \(1, 1, 4, 5\).*drop batch and channel axes"):
        pixel_error(np.zeros((1, 1, 4, 5)), np.zeros((1, 1, 4, 5)))


def test_non_numeric_input_is_refused():
    with pytest.raises(UnetkitError, match="gt has dtype <U1"):
        iou(np.zeros((2, 2)), np.array([["a", "b"], ["c", "d"]]))
