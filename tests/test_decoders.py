"""Instance decoders (paper's components, three classes, foreground + distance) and their targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from unetkit.transforms import (
    AsInstances,
    AsInstancesd,
    DistanceInstances,
    DistanceInstancesd,
    InstanceToDistance,
    InstanceToDistanced,
    InstanceToSemantic,
    InstanceToThreeClass,
    InstanceToThreeClassd,
    ThreeClassInstances,
    ThreeClassInstancesd,
    fill_label_holes,
)

# ------------------------------------------------------------------------------------------ inputs


def touching_discs() -> np.ndarray:
    """Two discs of radius 8 whose centres are 14 px apart, split along the perpendicular bisector."""
    yy, xx = np.mgrid[:33, :37]
    d1 = np.hypot(yy - 16, xx - 11)
    d2 = np.hypot(yy - 16, xx - 25)
    lab = np.zeros((33, 37), np.int32)
    lab[(d1 <= 8) | (d2 <= 8)] = 1
    lab[(lab > 0) & (d2 < d1)] = 2
    return lab


def touching_squares() -> np.ndarray:
    """Two 14 px squares sharing an edge, and a third under both of them."""
    lab = np.zeros((33, 37), np.int32)
    lab[3:17, 4:18] = 1
    lab[3:17, 18:32] = 2
    lab[17:30, 10:26] = 3
    return lab


def touching_balls() -> np.ndarray:
    """Two balls of radius 6 whose centres are 11 px apart (3D)."""
    zz, yy, xx = np.mgrid[:17, :19, :29]
    d1 = np.sqrt((zz - 8) ** 2 + (yy - 9) ** 2 + (xx - 8) ** 2)
    d2 = np.sqrt((zz - 8) ** 2 + (yy - 9) ** 2 + (xx - 19) ** 2)
    lab = np.zeros((17, 19, 29), np.int32)
    lab[(d1 <= 6) | (d2 <= 6)] = 1
    lab[(lab > 0) & (d2 < d1)] = 2
    return lab


SHAPES = {"discs": touching_discs, "squares": touching_squares, "balls": touching_balls}


def ring() -> np.ndarray:
    """One 13 px square object with a 3x3 hole."""
    lab = np.zeros((21, 23), np.int32)
    lab[4:17, 5:18] = 1
    lab[9:12, 10:13] = 0
    return lab


def assert_recovers(pred: np.ndarray, truth: np.ndarray, min_iou: float = 0.8) -> None:
    """``pred`` has as many objects as ``truth``, numbered 1..n, each matching one true object closely."""
    assert pred.dtype == np.int32 and pred.shape == truth.shape
    n = int(truth.max())
    assert sorted(np.unique(pred[pred > 0]).tolist()) == list(range(1, n + 1))
    matched = set()
    for t in range(1, n + 1):
        counts = np.bincount(pred[truth == t], minlength=n + 1)
        counts[0] = 0
        p = int(counts.argmax())
        iou = counts[p] / np.count_nonzero((truth == t) | (pred == p))
        assert iou > min_iou, (t, p, iou)
        matched.add(p)
    assert len(matched) == n


def one_hot_logits(classes: np.ndarray, k: int) -> np.ndarray:
    return (np.eye(k, dtype=np.float32)[classes] * 4 - 2).transpose(-1, *range(classes.ndim))


def smooth_random_logits(k: int, shape=(33, 37), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([ndi.gaussian_filter(rng.normal(size=shape), 2) for _ in range(k)]).astype(np.float32)


# --------------------------------------------------------------------------- round trips: touching


@pytest.mark.parametrize("shape", SHAPES)
def test_three_class_round_trip_separates_touching(shape):
    lab = SHAPES[shape]()
    classes = InstanceToThreeClass()(lab[None])[0]
    assert_recovers(ThreeClassInstances().decode_classes(classes), lab)


@pytest.mark.parametrize("shape", SHAPES)
def test_three_class_round_trip_through_logits(shape):
    lab = SHAPES[shape]()
    logits = one_hot_logits(InstanceToThreeClass(boundary=2)(lab[None])[0], 3)
    assert_recovers(ThreeClassInstances()(logits)[0], lab)


@pytest.mark.parametrize("shape", SHAPES)
def test_distance_round_trip_separates_touching(shape):
    lab = SHAPES[shape]()
    target = InstanceToDistance()(lab[None])
    assert_recovers(DistanceInstances().decode_maps(target[0] > 0.5, target[1]), lab)


@pytest.mark.parametrize("shape", SHAPES)
def test_distance_round_trip_through_logits(shape):
    lab = SHAPES[shape]()
    target = InstanceToDistance()(lab[None])
    output = np.stack([target[0] * 8 - 4, target[1]])  # a foreground logit and the distance as it is
    assert_recovers(DistanceInstances()(output)[0], lab)


@pytest.mark.parametrize("shape", SHAPES)
def test_paper_decoder_separates_touching_after_gap(shape):
    lab = SHAPES[shape]()
    classes = InstanceToSemantic()(lab[None])[0]
    assert_recovers(AsInstances().decode_classes(classes), lab)


def test_distance_ridge_gives_one_seed():
    lab = np.zeros((15, 40), np.int32)
    lab[4:11, 2:38] = 1  # a long bar: its distance has a flat ridge of tied maxima
    target = InstanceToDistance()(lab[None])
    assert DistanceInstances().decode_maps(target[0] > 0.5, target[1]).max() == 1


# --------------------------------------------------------------------------------- argmax identity


@pytest.mark.parametrize("op, k", [(AsInstances(), 2), (AsInstances((1, 2)), 3), (ThreeClassInstances(), 3),
                                   (ThreeClassInstances(min_seed=1, min_size=3, fill_holes=True), 3),
                                   (AsInstances(min_size=4, fill_holes=True), 2)])
def test_call_equals_decode_classes_of_argmax(op, k):
    logits = smooth_random_logits(k)
    expected = op.decode_classes(logits.argmax(0).astype(np.uint8))
    assert expected.max() > 1
    np.testing.assert_array_equal(op(logits), expected[None])


def test_call_equals_decode_classes_of_argmax_3d():
    logits = smooth_random_logits(3, shape=(9, 11, 13))
    op = ThreeClassInstances(min_seed=1)
    np.testing.assert_array_equal(op(logits), op.decode_classes(logits.argmax(0).astype(np.uint8))[None])


def test_distance_call_equals_decode_maps():
    maps = smooth_random_logits(2)
    op = DistanceInstances(h=0.1)
    np.testing.assert_array_equal(op(maps), op.decode_maps(maps[0] > 0, maps[1])[None])


def test_distance_decode_classes_is_refused():
    with pytest.raises(NotImplementedError, match="decode_maps"):
        DistanceInstances().decode_classes(np.zeros((3, 4), np.uint8))


# ------------------------------------------------------------------------------ numpy in, torch in


@pytest.mark.parametrize("op, k", [(AsInstances(), 2), (ThreeClassInstances(), 3), (DistanceInstances(), 2)])
def test_output_follows_input_library(op, k):
    lab = touching_squares()
    if k == 3:
        logits = one_hot_logits(InstanceToThreeClass()(lab[None])[0], 3)
    elif isinstance(op, DistanceInstances):
        target = InstanceToDistance()(lab[None])
        logits = np.stack([target[0] * 8 - 4, target[1]])
    else:
        logits = one_hot_logits(InstanceToSemantic()(lab[None])[0], 2)
    from_numpy = op(logits)
    from_torch = op(torch.from_numpy(logits))
    assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.int32 and from_numpy.shape == (1, 33, 37)
    assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.int32
    np.testing.assert_array_equal(from_torch.numpy(), from_numpy)
    assert from_numpy.max() == 3


# ------------------------------------------------------------------------------ min_size, holes


def test_three_class_min_size_drops_specks():
    lab = touching_squares()
    lab[30:32, 33:35] = 4  # a 2x2 speck
    classes = InstanceToThreeClass()(lab[None])[0]
    assert ThreeClassInstances(min_seed=1).decode_classes(classes).max() == 4
    out = ThreeClassInstances(min_seed=1, min_size=10).decode_classes(classes)
    assert out.max() == 3 and not out[30:32, 33:35].any()


def test_distance_min_size_drops_specks():
    lab = touching_discs()
    lab[1:3, 33:35] = 3
    target = InstanceToDistance()(lab[None])
    assert DistanceInstances().decode_maps(target[0] > 0.5, target[1]).max() == 3
    out = DistanceInstances(min_size=10).decode_maps(target[0] > 0.5, target[1])
    assert out.max() == 2 and not out[1:3, 33:35].any()


def test_paper_decoder_min_size_drops_specks():
    classes = np.zeros((33, 37), np.uint8)
    classes[5:15, 5:15] = 1
    classes[30, 30] = 1
    assert AsInstances().decode_classes(classes).max() == 2
    assert AsInstances(min_size=2).decode_classes(classes).max() == 1


def test_three_class_fill_holes():
    lab = ring()
    classes = InstanceToThreeClass()(lab[None])[0]
    assert not ThreeClassInstances().decode_classes(classes)[10, 11]
    filled = ThreeClassInstances(fill_holes=True).decode_classes(classes)
    assert (filled[4:17, 5:18] == 1).all() and filled.max() == 1


def test_distance_fill_holes():
    target = InstanceToDistance()(ring()[None])
    assert not DistanceInstances().decode_maps(target[0] > 0.5, target[1])[10, 11]
    assert (DistanceInstances(fill_holes=True).decode_maps(target[0] > 0.5, target[1])[4:17, 5:18] == 1).all()


def test_paper_decoder_fill_holes_is_opt_in():
    logits = one_hot_logits((ring() > 0).astype(np.uint8), 2)
    assert AsInstances()(logits)[0, 10, 11] == 0  # default behaviour unchanged
    assert AsInstances(fill_holes=True)(logits)[0, 10, 11] == 1
    assert AsInstancesd("pred", fill_holes=True)({"pred": logits})["pred"][0, 10, 11] == 1


def test_fill_holes_leaves_gaps_between_objects():
    lab = np.zeros((9, 9), np.int32)
    lab[1:8, 1:8] = 1
    lab[1:8, 5:8] = 2
    lab[3:6, 4:6] = 0  # a hole shared by objects 1 and 2
    lab[2, 2] = 0  # a hole inside object 1
    out = fill_label_holes(lab)
    assert out[2, 2] == 1 and not out[3:6, 4:6].any()


def test_fill_holes_in_3d():
    lab = np.zeros((9, 9, 9), np.int32)
    lab[1:8, 1:8, 1:8] = 3
    lab[4, 4, 4] = 0
    assert fill_label_holes(lab)[4, 4, 4] == 3


def test_seedless_component_is_an_object():
    classes = np.zeros((11, 13), np.uint8)
    classes[1:9, 1:7] = 1
    classes[1:9, 7] = 2
    classes[3:5, 10:12] = 2  # boundary only, no interior
    out = ThreeClassInstances().decode_classes(classes)
    assert out.max() == 2 and (out[3:5, 10:12] == 2).all() and (out[1:9, 1:8] == 1).all()


@pytest.mark.parametrize("op", [AsInstances(), ThreeClassInstances(), DistanceInstances()])
def test_empty_output_gives_no_objects(op):
    k = 3 if isinstance(op, ThreeClassInstances) else 2
    logits = np.zeros((k, 9, 11), np.float32)
    logits[0] = 1 if k == 3 else 0
    if isinstance(op, DistanceInstances):
        logits[0] = -3
    out = op(logits)
    assert out.shape == (1, 9, 11) and not out.any()


# ---------------------------------------------------------------------------------------- targets


@pytest.mark.parametrize("shape", SHAPES)
def test_three_class_target(shape):
    lab = SHAPES[shape]()
    target = InstanceToThreeClass()(lab[None])
    assert target.shape == (1, *lab.shape) and target.dtype == np.uint8
    assert set(np.unique(target).tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(target[0] > 0, lab > 0)
    interiors, n = ndi.label(target[0] == 1, structure=np.ones((3,) * lab.ndim))
    assert n == lab.max()  # interiors of touching objects do not touch, even diagonally


def test_three_class_target_boundary_width():
    lab = np.zeros((1, 5, 20), np.int32)
    lab[0, :, 2:10] = 1
    lab[0, :, 10:18] = 2
    row = InstanceToThreeClass(boundary=2)(lab)[0, 2].tolist()
    assert row == [0, 0, 2, 2, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 2, 2, 0, 0]


def test_three_class_target_torch_and_ignore_value():
    lab = torch.zeros((1, 7, 9), dtype=torch.int64)
    lab[0, 1:6, 1:6] = 1
    lab[0, 1:6, 6:9] = 255
    target = InstanceToThreeClass(ignore_value=255)(lab)
    assert isinstance(target, torch.Tensor) and target.dtype == torch.uint8
    assert not target[0, :, 6:].any() and (target[0, 1:6, 5] == 2).all()


@pytest.mark.parametrize("shape", SHAPES)
def test_distance_target(shape):
    lab = SHAPES[shape]()
    target = InstanceToDistance()(lab[None])
    assert target.shape == (2, *lab.shape) and target.dtype == np.float32
    np.testing.assert_array_equal(target[0], (lab > 0).astype(np.float32))
    assert not target[1][lab == 0].any() and (target[1][lab > 0] > 0).all()
    np.testing.assert_allclose(ndi.maximum(target[1], lab, np.arange(1, lab.max() + 1)), 1)


def test_distance_target_torch():
    target = InstanceToDistance()(torch.from_numpy(touching_squares()[None]))
    assert isinstance(target, torch.Tensor) and target.dtype == torch.float32 and target.shape == (2, 33, 37)


def test_targets_reject_bad_shape():
    with pytest.raises(ValueError, match="channel"):
        InstanceToThreeClass()(np.zeros((2, 5, 5), np.int32))
    with pytest.raises(ValueError, match="channel"):
        InstanceToDistance()(np.zeros((5, 5), np.int32))


# ---------------------------------------------------------------------------------------- d twins


def test_decoder_dict_twins_map_keys():
    lab = touching_squares()
    three = one_hot_logits(InstanceToThreeClass()(lab[None])[0], 3)
    target = InstanceToDistance()(lab[None])
    dist = np.stack([target[0] * 8 - 4, target[1]])
    image = np.ones((1, 33, 37), np.float32)
    out = ThreeClassInstancesd("pred", min_size=3)({"pred": three, "image": image})
    np.testing.assert_array_equal(out["pred"], ThreeClassInstances(min_size=3)(three))
    assert out["image"] is image
    out = DistanceInstancesd(["a", "b"], h=0.2)({"a": dist, "b": torch.from_numpy(dist)})
    np.testing.assert_array_equal(out["a"], DistanceInstances(h=0.2)(dist))
    np.testing.assert_array_equal(out["b"].numpy(), out["a"])
    assert DistanceInstancesd("missing", allow_missing_keys=True)({"a": dist})["a"] is dist


def test_target_dict_twins_map_keys():
    lab = touching_discs()[None]
    d = InstanceToThreeClassd("label", boundary=2, target_key="target")({"label": lab})
    np.testing.assert_array_equal(d["target"], InstanceToThreeClass(boundary=2)(lab))
    assert d["label"] is lab
    d = InstanceToDistanced("label")({"label": lab})
    np.testing.assert_array_equal(d["label"], InstanceToDistance()(lab))
    with pytest.raises(ValueError, match="target_key"):
        InstanceToDistanced(["a", "b"], target_key="t")


# --------------------------------------------------------------------------------------- arguments


def test_arguments_are_checked_first():
    with pytest.raises(ValueError, match="min_seed"):
        ThreeClassInstances(min_seed=0)
    with pytest.raises(ValueError, match="min_size"):
        ThreeClassInstances(min_size=-1)
    with pytest.raises(ValueError, match="connectivity"):
        DistanceInstances(connectivity=4)
    with pytest.raises(ValueError, match="h must be"):
        DistanceInstances(h=0)
    with pytest.raises(ValueError, match="boundary"):
        InstanceToThreeClass(boundary=0)


def test_wrong_channel_count_names_the_shape():
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        ThreeClassInstances()(np.zeros((2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        DistanceInstances()(np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match="without a channel axis"):
        ThreeClassInstances().decode_classes(np.zeros((1, 1, 5, 5), np.uint8))
