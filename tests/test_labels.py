import logging

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage as ndi

from unetkit.transforms import InstanceToSemantic, InstanceToSemanticd, separate_touching
from synthetic_cells import touching_cells


def different_neighbours(labels, gap):
    """Pixels with a different non-zero label within ``gap`` px (Chebyshev): what the band must remove."""
    size = 2 * gap + 1
    lo = ndi.minimum_filter(np.where(labels > 0, labels, labels.max() + 1), size=size, mode="constant", cval=10**9)
    hi = ndi.maximum_filter(labels, size=size, mode="constant", cval=0)
    return (labels > 0) & ((lo < labels) | (hi > labels))


def full_components(mask):
    return ndi.label(mask, structure=np.ones((3,) * mask.ndim))[1]


@pytest.mark.parametrize("shape,n,radius,seed", [((61, 67), 12, 12, 0), ((45, 53), 20, 9, 1), ((17, 19, 21), 7, 7, 2)])
def test_touching_cells_become_separate_components_and_none_vanishes(shape, n, radius, seed):
    lab = touching_cells(shape, n, radius, seed)
    assert different_neighbours(lab, 1).any()  # the input really has touching cells
    target = InstanceToSemantic()(lab[None])[0]
    n_cells = len(np.unique(lab)) - 1
    assert full_components(target) == n_cells
    sep = separate_touching(lab)
    assert set(np.unique(sep)) == set(np.unique(lab))
    assert not different_neighbours(sep, 1).any()
    np.testing.assert_array_equal(target, (sep > 0).astype(np.uint8))


def test_isolated_cells_stay_whole():
    lab = np.zeros((1, 25, 31), np.uint16)
    lab[0, 2:9, 3:12] = 4
    lab[0, 11:20, 3:8] = 9  # one background pixel from cell 4
    lab[0, 5:22, 15:28] = 2
    np.testing.assert_array_equal(InstanceToSemantic()(lab), (lab > 0).astype(np.uint8))


def test_only_the_larger_cell_gives_up_a_one_pixel_band():
    lab = np.zeros((9, 12), np.int32)
    lab[2:7, 1:6] = 1  # 25 px
    lab[2:7, 6:11] = 2  # 25 px: equal size, the higher label yields
    sep = separate_touching(lab)
    assert (sep[2:7, 6] == 0).all()  # exactly one column between the cells
    np.testing.assert_array_equal(sep[2:7, 1:6], 1)
    np.testing.assert_array_equal(sep[2:7, 7:11], 2)
    lab[2:7, 6:11] = 0
    lab[2:5, 6:9] = 2  # now smaller: cell 1 yields the column beside it and the diagonal neighbour
    sep = separate_touching(lab)
    np.testing.assert_array_equal(sep[2:5, 6:9], 2)
    assert (sep[2:6, 5] == 0).all() and (sep[6, 5] == 1)


@pytest.mark.parametrize("gap", [2, 3])
def test_wider_gap_leaves_exactly_gap_background_pixels(gap):
    lab = np.zeros((1, 11, 20), np.int32)
    lab[0, 2:9, 1:10] = 1  # larger: it yields
    lab[0, 2:9, 10:18] = 2
    sep = InstanceToSemantic(gap=gap)(lab)[0]
    row = sep[5]
    assert row[1:10 - gap].all() and not row[10 - gap:10].any() and row[10:18].all()
    assert not different_neighbours(separate_touching(lab[0], gap=gap), gap).any()


def test_gap_zero_is_plain_foreground():
    lab = touching_cells((23, 29), 5, 8, 3)
    np.testing.assert_array_equal(InstanceToSemantic(gap=0)(lab[None])[0], lab > 0)


def test_thin_cell_hemmed_in_by_smaller_cells_is_kept():
    lab = np.zeros((9, 6), np.int32)
    lab[1:8, 3] = 1  # a 1 px wide cell of 7 px
    lab[1:4, 1:3] = 2  # 6 px, touching it
    lab[5:8, 1:3] = 3  # 6 px, touching it; together they reach every pixel of cell 1
    sep = separate_touching(lab)
    assert set(np.unique(sep)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(sep[1:8, 3], 1)
    assert not different_neighbours(sep, 1).any()


def test_cells_that_cannot_be_separated_are_reported(caplog):
    with caplog.at_level(logging.WARNING, logger="unetkit.transforms.labels"):
        separate_touching(np.array([[1, 2]]))
    assert "vanished" in caplog.text


def test_torch_input_keeps_type_device_and_metadata():
    lab = MetaTensor(torch.from_numpy(touching_cells((21, 23), 4, 7, 4))[None], meta={"filename_or_obj": "a.tif"})
    out = InstanceToSemantic()(lab)
    assert isinstance(out, MetaTensor) and out.dtype == torch.uint8 and out.meta["filename_or_obj"] == "a.tif"
    assert set(out.unique().tolist()) == {0, 1}
    np.testing.assert_array_equal(out.numpy(), InstanceToSemantic()(lab.numpy()))


def test_ignore_value_is_background_and_separates_nothing():
    lab = np.zeros((1, 7, 9), np.int32)
    lab[0, 1:6, 1:4] = 1
    lab[0, 1:6, 4:8] = 99  # unannotated, touching cell 1
    out = InstanceToSemantic(ignore_value=99)(lab)[0]
    np.testing.assert_array_equal(out, (lab[0] == 1).astype(np.uint8))


def test_dict_twin_replaces_or_adds_the_target():
    lab = touching_cells((19, 23), 4, 7, 5)[None]
    d = InstanceToSemanticd("label")({"label": lab, "image": 1})
    np.testing.assert_array_equal(d["label"], InstanceToSemantic()(lab))
    d = InstanceToSemanticd("label", target_key="target")({"label": lab})
    assert d["label"] is lab and d["target"].dtype == np.uint8


def test_input_is_not_modified():
    lab = touching_cells((19, 23), 4, 7, 6)
    before = lab.copy()
    separate_touching(lab)
    InstanceToSemantic()(lab[None])
    np.testing.assert_array_equal(lab, before)


def test_errors():
    with pytest.raises(ValueError, match="gap must be a whole number"):
        InstanceToSemantic(gap=-1)
    with pytest.raises(ValueError, match=r"got \(3, 4, 4\)"):
        InstanceToSemantic()(np.zeros((3, 4, 4), int))
    with pytest.raises(ValueError, match="target_key needs exactly one key"):
        InstanceToSemanticd(["a", "b"], target_key="t")


def test_large_sparse_ids_separate_like_small_ones():
    lab = touching_cells((31, 37), 8, 8, 7)
    big = np.where(lab > 0, lab.astype(np.int64) * 1_000_000_007, 0)
    np.testing.assert_array_equal(separate_touching(big) // 1_000_000_007, separate_touching(lab))
