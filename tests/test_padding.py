"""MirrorPad(d): the training tile's mirror extension, for borders wider than the image too."""

import numpy as np
import pytest
import torch
from monai.transforms import BorderPadd

from unetkit.transforms import MirrorPad, MirrorPadd


def test_where_the_border_fits_it_equals_monai_borderpadd():
    rng = np.random.default_rng(0)
    d = {"image": torch.from_numpy(rng.normal(size=(1, 40, 52)).astype(np.float32)),
         "label": torch.from_numpy(rng.integers(0, 5, (1, 40, 52)).astype(np.float32))}
    ours = MirrorPadd(["image", "label"], spatial_border=(12, 30), mode=["reflect", "constant"])(d)
    theirs = BorderPadd(["image", "label"], spatial_border=(12, 30), mode=["reflect", "constant"])(d)
    for key in d:
        np.testing.assert_array_equal(np.asarray(ours[key]), np.asarray(theirs[key]))


@pytest.mark.parametrize("shape", [(1, 7, 3), (1, 1, 5), (2, 9, 30)])
def test_a_border_wider_than_the_image_repeats_the_reflection_as_numpy_does(shape):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    out = MirrorPad(20)(torch.from_numpy(x))
    np.testing.assert_array_equal(out.numpy(), np.pad(x, [(0, 0), (20, 20), (20, 20)], mode="reflect"))


def test_constant_mode_pads_zeros_and_keeps_the_values_inside():
    x = torch.full((1, 3, 4), 7.0)
    out = MirrorPad((2, 50), mode="constant")(x)
    assert out.shape == (1, 7, 104) and float(out.sum()) == 7.0 * 12 and float(out[0, 2:5, 50:54].min()) == 7.0


def test_3d_and_other_keys_untouched():
    d = MirrorPadd("image", spatial_border=2)({"image": torch.ones(1, 2, 3, 4), "meta": "kept"})
    assert d["image"].shape == (1, 6, 7, 8) and d["meta"] == "kept"


@pytest.mark.parametrize("kwargs,match", [(dict(spatial_border=1, mode="edge"), "mode must be"),
                                          (dict(spatial_border=-1), ">= 0")])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MirrorPad(**kwargs)(torch.zeros(1, 4, 4))
