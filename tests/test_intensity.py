"""PercentileNormalize(d): the bundles' intensity normalisation, whole images and tile by tile."""

import numpy as np
import pytest
import torch

from unetkit.transforms import PercentileNormalize, PercentileNormalized


def test_percentiles_map_to_the_requested_range():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4000, (1, 64, 80)).astype(np.uint16)
    lo, hi = np.percentile(img, [1.0, 99.8])
    out = PercentileNormalize(1.0, 99.8, b_min=-1.0, b_max=1.0)(img)
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_allclose(out, (img - lo) / (hi - lo) * 2 - 1, atol=1e-5)
    assert np.mean(out < -1) == pytest.approx(0.01, abs=0.005)  # not clipped: the tails go beyond the range


def test_default_range_is_zero_to_one():
    x = np.linspace(0, 50, 101, dtype=np.float32).reshape(1, 1, 101)
    out = PercentileNormalize(lower=0, upper=100)(x)
    assert float(out.min()) == 0.0 and float(out.max()) == pytest.approx(1.0)


def test_a_tile_normalised_with_whole_image_statistics_equals_the_slice_of_the_whole():
    rng = np.random.default_rng(1)
    img = rng.normal(100, 20, (1, 90, 70)).astype(np.float32)
    norm = PercentileNormalize(b_min=-1.0, b_max=1.0)
    stats = norm.fit(img)
    np.testing.assert_array_equal(norm.apply(img[:, 10:40, 5:25], *stats), norm(img)[:, 10:40, 5:25])
    tile = norm.apply(torch.from_numpy(img[:, 10:40, 5:25]), *stats)
    assert isinstance(tile, torch.Tensor)
    np.testing.assert_allclose(tile.numpy(), norm(img)[:, 10:40, 5:25], atol=1e-6)


def test_channels_get_their_own_percentiles_unless_told_otherwise():
    img = np.stack([np.arange(100.0), np.arange(100.0) * 10]).reshape(2, 10, 10)
    per_channel = PercentileNormalize(0, 100)(img)
    assert np.allclose(per_channel[0], per_channel[1])
    joint = PercentileNormalize(0, 100, channel_wise=False)(img)
    assert float(joint[0].max()) == pytest.approx(0.1, abs=1e-6)


def test_dictionary_twin_passes_its_range_on():
    d = PercentileNormalized("image", 0, 100, b_min=-1.0, b_max=1.0)({"image": np.arange(11.0).reshape(1, 1, 11), "x": 3})
    assert float(d["image"].min()) == -1.0 and float(d["image"].max()) == pytest.approx(1.0) and d["x"] == 3


@pytest.mark.parametrize("kwargs,match", [(dict(lower=50, upper=10), "lower < upper"),
                                          (dict(b_min=1.0, b_max=1.0), "b_min < b_max"),
                                          (dict(clip_range=(3, -3)), "low < high"),
                                          (dict(clip_range=(3,)), "low < high")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PercentileNormalize(**kwargs)


def test_clip_range_bounds_hot_pixels_and_leaves_the_rest_as_it_was():
    rng = np.random.default_rng(2)
    img = rng.normal(300, 40, (1, 128, 128)).astype(np.uint16)
    img[0, ::32, ::32] = 65535  # 16 hot pixels (0.1 %), too few to move the 99.8th percentile
    plain = PercentileNormalize(b_min=-1.0, b_max=1.0)(img)
    clipped = PercentileNormalize(b_min=-1.0, b_max=1.0, clip_range=(-3, 3))(img)
    assert float(plain.max()) > 100 and float(clipped.max()) == 3.0
    inside = np.abs(plain) <= 3
    np.testing.assert_array_equal(clipped[inside], plain[inside])
    stats = PercentileNormalize(clip_range=(-3, 3), b_min=-1.0, b_max=1.0).fit(img)
    crop = torch.from_numpy(img[:, :20, :20].astype(np.float32))
    tile = PercentileNormalize(clip_range=(-3, 3), b_min=-1.0, b_max=1.0).apply(crop, *stats)
    np.testing.assert_allclose(tile.numpy(), clipped[:, :20, :20], atol=1e-6)  # tile by tile as whole
    d = PercentileNormalized("image", b_min=-1.0, b_max=1.0, clip_range=[-3, 3])({"image": img})
    assert float(d["image"].max()) == 3.0


def test_the_microscopy_bundles_clip_what_they_feed_the_network():
    from pathlib import Path

    from monai.bundle import ConfigParser

    for name in ("phc_u373", "dic_hela", "isbi2012_em"):
        parser = ConfigParser()
        parser.read_config(Path(__file__).resolve().parents[1] / "bundles" / name / "configs" / "common.json")
        img = np.full((1, 32, 32), 100, np.uint16)
        img[0, 8:24, 8:24] = 400
        img[0, 3, 3] = 60000
        out = parser.get_parsed_content("normalize")({"image": img})["image"]
        assert float(out.max()) == 3.0 and float(out[0, 10, 10]) == pytest.approx(1.0, abs=0.01), name
