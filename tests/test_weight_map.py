import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage as ndi

from unetkit.errors import DataError
from unetkit.transforms import WeightMap, WeightMapd, separate_touching, two_nearest_distances
from synthetic_cells import touching_cells


def naive_weight_map(labels, *, w0=10.0, sigma=5.0, spacing=None, gap=1, class_balance=True, valid=None):
    """The definition, spelled out: one full-image distance transform per cell, two smallest per pixel."""
    target_bg = separate_touching(labels, gap=gap) == 0
    valid = np.ones(labels.shape, bool) if valid is None else valid
    if class_balance:
        n_bg, n = (target_bg & valid).sum(), valid.sum()
        wc = np.where(target_bg, n / (2 * n_bg), n / (2 * (n - n_bg)))
    else:
        wc = np.ones(labels.shape)
    ids = [i for i in np.unique(labels) if i != 0]
    if len(ids) >= 2:
        d = np.stack([ndi.distance_transform_edt(labels != i, sampling=spacing) for i in ids])
        d.sort(0)
        wc = wc + w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2)) * target_bg
    return np.where(valid, wc, 0.0)


@pytest.mark.parametrize("seed,gap", [(0, 1), (1, 1), (2, 0), (3, 2)])
def test_equals_naive_definition_on_touching_discs_2d(seed, gap):
    lab = touching_cells((61, 67), 9, 12, seed)
    w = WeightMap(gap=gap)(lab[None])
    np.testing.assert_allclose(w[0], naive_weight_map(lab, gap=gap), rtol=0, atol=1e-5)


@pytest.mark.parametrize("w0,sigma", [(50.0, 12.0), (3.0, 2.0), (10.0, 5.0)])
def test_equals_naive_definition_for_other_w0_and_sigma(w0, sigma):
    lab = touching_cells((71, 53), 7, 10, 4)
    w = WeightMap(w0=w0, sigma=sigma)(lab[None])
    np.testing.assert_allclose(w[0], naive_weight_map(lab, w0=w0, sigma=sigma), rtol=0, atol=1e-5)


def test_equals_naive_definition_in_3d_with_anisotropic_spacing():
    lab = touching_cells((13, 29, 31), 6, 9, 5)
    spacing = (2.5, 1.0, 0.8)
    w = WeightMap(sigma=4.0, spacing=spacing)(lab[None])
    np.testing.assert_allclose(w[0], naive_weight_map(lab, sigma=4.0, spacing=spacing), rtol=0, atol=1e-5)


def test_spacing_changes_the_map_in_2d():
    lab = touching_cells((41, 43), 5, 9, 6)
    w = WeightMap(spacing=(1.0, 0.5))(lab[None])
    np.testing.assert_allclose(w[0], naive_weight_map(lab, spacing=(1.0, 0.5)), rtol=0, atol=1e-5)
    assert not np.allclose(w, WeightMap()(lab[None]))


def test_shared_acceptance_check():
    lab = touching_cells((97, 101), 14, 13, 7)
    ids = [i for i in np.unique(lab) if i != 0]
    d = np.stack([ndi.distance_transform_edt(lab != i) for i in ids])
    d.sort(0)
    border = 10 * np.exp(-((d[0] + d[1]) ** 2) / (2 * 5.0**2)) * (lab == 0)
    w = np.asarray(WeightMap(w0=10.0, sigma=5.0)(lab[None])).squeeze()
    wc = w - border
    far = (lab == 0) & ~ndi.binary_dilation(lab > 0, iterations=2)
    assert far.sum() > 100
    assert np.ptp(wc[far]) < 1e-4 and wc[far].min() > 0


def test_no_cells_gives_uniform_weight_one():
    w = WeightMap()(np.zeros((1, 9, 7), np.uint16))
    np.testing.assert_array_equal(w, np.ones((1, 9, 7), np.float32))


def test_one_cell_has_class_weights_only():
    lab = np.zeros((1, 15, 17), np.int32)
    lab[0, 3:9, 4:12] = 5
    w = WeightMap()(lab)[0]
    n, n_fg = lab.size, 48
    expected = np.where(lab[0] > 0, n / (2 * n_fg), n / (2 * (n - n_fg)))
    np.testing.assert_allclose(w, expected, rtol=1e-6)


def test_class_weights_are_balanced_and_constant_per_class():
    lab = touching_cells((45, 49), 6, 7, 8)
    w = WeightMap(w0=0.0)(lab[None])[0]
    fg = separate_touching(lab) > 0
    assert np.ptp(w[fg]) == 0 and np.ptp(w[~fg]) == 0
    # each class carries half of the total weight, so the mean weight is 1
    assert w[fg].sum() == pytest.approx(w[~fg].sum(), rel=1e-5)
    assert w.mean() == pytest.approx(1.0, rel=1e-5)


def test_class_balance_off_gives_one_plus_border():
    lab = touching_cells((39, 41), 5, 9, 9)
    w = WeightMap(class_balance=False)(lab[None])[0]
    np.testing.assert_allclose(w, naive_weight_map(lab, class_balance=False), rtol=0, atol=1e-5)
    assert w[lab > 0].min() == 1.0


def test_separation_band_between_touching_cells_gets_nearly_w0():
    lab = np.zeros((1, 21, 23), np.int32)
    lab[0, 5:16, 1:11] = 1  # 110 px: the larger cell gives up its touching column, column 10
    lab[0, 5:16, 11:20] = 2  # 99 px
    w = WeightMap(w0=10.0, sigma=5.0)(lab)[0]
    band = w[5:16, 10]
    n_fg = 110 + 99 - 11
    wc_bg = lab.size / (2 * (lab.size - n_fg))
    np.testing.assert_allclose(band, wc_bg + 10 * np.exp(-1 / 50), rtol=1e-6)  # d1 = 0, d2 = 1
    assert band.min() >= w.max() - 1e-6  # the highest weights in the image


def test_ignore_value_gets_zero_weight_and_counts_for_no_class():
    lab = touching_cells((41, 45), 6, 9, 10)
    lab[:8, :] = 255  # a region nobody annotated
    w = WeightMap(ignore_value=255)(lab[None])[0]
    assert (w[:8] == 0).all()
    expected = naive_weight_map(np.where(lab == 255, 0, lab), valid=lab != 255)
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-5)


def test_dict_twin_writes_weights_and_honours_ignore_key():
    lab = touching_cells((33, 37), 4, 8, 11)
    mask = np.zeros((1, 33, 37), np.uint8)
    mask[0, :, :5] = 1
    d = WeightMapd("label", weight_key="w", ignore_key="mask")({"label": lab[None], "mask": mask})
    assert d["label"].shape == (1, 33, 37) and d["w"].dtype == np.float32
    assert (d["w"][0, :, :5] == 0).all() and (d["w"][0, :, 5:] > 0).all()
    np.testing.assert_array_equal(d["label"][0], lab)


def test_torch_input_gives_float32_tensor_with_metadata():
    lab = torch.from_numpy(touching_cells((25, 27), 3, 7, 12))[None]
    img = MetaTensor(lab, meta={"filename_or_obj": "man_seg000.tif"})
    w = WeightMap()(img)
    assert isinstance(w, MetaTensor) and w.dtype == torch.float32 and w.meta["filename_or_obj"] == "man_seg000.tif"
    np.testing.assert_allclose(w.numpy(), WeightMap()(lab.numpy()), atol=0)


def test_large_sparse_label_ids_give_the_same_map():
    lab = touching_cells((31, 33), 4, 8, 13)
    big = np.where(lab > 0, lab.astype(np.int64) * 1_000_000_007, 0)
    np.testing.assert_allclose(WeightMap()(big[None]), WeightMap()(lab[None]), atol=1e-6)


def test_float_labels_with_whole_values_are_accepted():
    lab = touching_cells((21, 23), 3, 6, 14)
    np.testing.assert_array_equal(WeightMap()(lab[None].astype(np.float32)), WeightMap()(lab[None]))


def test_input_is_not_modified():
    lab = touching_cells((21, 23), 3, 6, 15)[None]
    before = lab.copy()
    WeightMap(ignore_value=1)(lab)
    np.testing.assert_array_equal(lab, before)


def test_two_nearest_distances_exact_where_the_border_term_needs_them():
    lab = touching_cells((49, 51), 8, 8, 16)
    d1, d2 = two_nearest_distances(lab, max_distance=15.0)
    d = np.stack([ndi.distance_transform_edt(lab != i) for i in np.unique(lab) if i])
    d.sort(0)
    close = d[0] + d[1] < 15.0
    assert close.sum() > 500
    np.testing.assert_array_equal(d1[close], d[0][close])
    np.testing.assert_array_equal(d2[close], d[1][close])
    assert (d1[~close] + d2[~close] >= 15.0).all()


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"expected an instance-label image of shape \(1, H, W\).*got \(2, 5, 5\)"):
        WeightMap()(np.zeros((2, 5, 5), int))
    with pytest.raises(DataError, match="whole numbers"):
        WeightMap()(np.full((1, 5, 5), 0.5))
    with pytest.raises(ValueError, match="sigma must be"):
        WeightMap(sigma=0.0)
    with pytest.raises(ValueError, match="w0 must be"):
        WeightMap(w0=-1.0)
    with pytest.raises(ValueError, match=r"spacing \(1.0, 1.0, 1.0\) has 3 entries"):
        WeightMap(spacing=(1, 1, 1))(np.zeros((1, 5, 5), int))
    with pytest.raises(DataError, match="ignore mask has shape"):
        WeightMap()(np.zeros((1, 5, 5), int), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="one output per key"):
        WeightMapd(["a", "b"], weight_key="w")
