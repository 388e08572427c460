import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage as ndi

from unetkit.transforms import PaperElastic, RandPaperElastic, RandPaperElasticd, dense_displacement


def keys_cubic_matrix(n_in, n_out, a=-0.75):
    """(n_out, n_in) matrix of torch's align_corners bicubic in 1D: Keys kernel, clamped border taps."""
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        base = int(np.floor(src))
        t = src - base
        for k, x in zip(range(-1, 3), (1 + t, t, 1 - t, 2 - t)):
            x = abs(x)
            w = ((a + 2) * x - (a + 3)) * x * x + 1 if x <= 1 else ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
            m[i, min(max(base + k, 0), n_in - 1)] += w
    return m


def blob_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.random(shape).astype(np.float32)
    return img[None]


def square_pair(shape=(41, 47)):
    label = np.zeros((1, *shape), np.uint8)
    label[0, 12:28, 15:33] = 1
    return label.astype(np.float32) * 200 + 10, label


def test_no_displacement_returns_image_and_label_unchanged():
    image, label = square_pair()
    warp = PaperElastic(np.zeros((2, 3, 3)))
    np.testing.assert_array_equal(warp(image), image)
    np.testing.assert_array_equal(warp(label, mode="nearest"), label)


@pytest.mark.parametrize("mode", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("axis,shift", [(0, 2), (1, 3), (1, -1)])
def test_uniform_displacement_shifts_along_the_named_axis(mode, axis, shift):
    image = blob_image((23, 27))
    disp = np.zeros((2, 3, 3), np.float32)
    disp[axis] = shift
    out = PaperElastic(disp, mode=mode)(image)
    # output(p) = input(p + u): compare where p + u stays inside the image
    src = [slice(None), slice(None), slice(None)]
    dst = [slice(None), slice(None), slice(None)]
    src[axis + 1] = slice(max(shift, 0), image.shape[axis + 1] + min(shift, 0))
    dst[axis + 1] = slice(max(-shift, 0), image.shape[axis + 1] - max(shift, 0))
    np.testing.assert_allclose(out[tuple(dst)], image[tuple(src)], atol=2e-5)


def test_uniform_displacement_in_3d_shifts_along_each_axis():
    image = blob_image((9, 11, 13), seed=1)
    for axis in range(3):
        disp = np.zeros((3, 3, 3, 3), np.float32)
        disp[axis] = 2.0
        out = PaperElastic(disp, mode="bilinear")(image)
        moved, source = np.moveaxis(out, axis + 1, 1), np.moveaxis(image, axis + 1, 1)
        np.testing.assert_allclose(moved[:, :-2], source[:, 2:], atol=2e-5)


def test_dense_field_is_bicubic_interpolation_of_the_control_grid_spanning_the_image():
    rng = np.random.default_rng(2)
    disp = rng.normal(0, 10, (2, 3, 3)).astype(np.float32)
    field = dense_displacement(torch.from_numpy(disp), (17, 21)).numpy()
    my, mx = keys_cubic_matrix(3, 17), keys_cubic_matrix(3, 21)
    np.testing.assert_allclose(field, np.einsum("yi,xj,cij->cyx", my, mx, disp), atol=1e-4)
    np.testing.assert_allclose(field[:, [0, 8, 16]][:, :, [0, 10, 20]], disp, atol=1e-4)  # control points hit


def test_dense_field_in_3d_is_tricubic():
    rng = np.random.default_rng(3)
    disp = rng.normal(0, 10, (3, 3, 3, 3)).astype(np.float32)
    field = dense_displacement(torch.from_numpy(disp), (7, 9, 11)).numpy()
    mz, my, mx = keys_cubic_matrix(3, 7), keys_cubic_matrix(3, 9), keys_cubic_matrix(3, 11)
    np.testing.assert_allclose(field, np.einsum("zi,yj,xk,cijk->czyx", mz, my, mx, disp), atol=1e-4)


def test_same_field_moves_image_and_label_together():
    image, label = square_pair()
    t = RandPaperElasticd(["image", "label", "copy"], sigma=6.0, mode=("bilinear", "nearest", "nearest"))
    out = t.set_random_state(seed=3)({"image": image, "label": label, "copy": image})
    assert not np.array_equal(out["label"], label)  # it did deform
    np.testing.assert_array_equal(out["copy"] > 110, out["label"] == 1)  # same field, same mode: identical
    moved = out["label"][0] == 1
    edge = ndi.binary_dilation(moved) & ~ndi.binary_erosion(moved)
    mismatch = (out["image"][0] > 110) != moved
    assert not (mismatch & ~edge).any()  # bilinear vs nearest differ at most on the square's edge
    other_field = RandPaperElasticd(["label"], sigma=6.0, mode="nearest").set_random_state(seed=4)
    other = other_field({"label": label})["label"][0] == 1
    assert ((out["image"][0] > 110) != other).sum() > 20  # while another field would not line up


def test_labels_stay_in_their_original_set_and_dtype():
    label = np.zeros((1, 35, 39), np.uint16)
    label[0, 5:15, 5:20] = 7
    label[0, 18:30, 10:35] = 65535
    label[0, 15:18, 5:20] = 3
    for seed in range(3):
        out = RandPaperElastic(mode="nearest").set_random_state(seed=seed)(label)
        assert out.dtype == np.uint16 and set(np.unique(out)) <= {0, 3, 7, 65535}


def test_large_label_ids_survive_nearest_sampling():
    label = np.full((1, 19, 21), 2**31 - 5, np.int64)
    label[0, :9] = 2**31 - 3
    out = RandPaperElastic(mode="nearest").set_random_state(seed=1)(label)
    assert set(np.unique(out)) <= {2**31 - 5, 2**31 - 3}


def test_same_seed_same_deformation_other_seed_other_deformation():
    image = blob_image((33, 37))
    a = RandPaperElastic().set_random_state(seed=7)(image)
    b = RandPaperElastic().set_random_state(seed=7)(image)
    c = RandPaperElastic().set_random_state(seed=8)(image)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fixed_transform_replays_the_last_draw():
    image, label = square_pair()
    rand = RandPaperElastic().set_random_state(seed=4)
    warped = rand(image)
    again = rand.fixed_transform()(image)
    np.testing.assert_array_equal(warped, again)
    d = RandPaperElasticd(["image", "label"]).set_random_state(seed=4)({"image": image, "label": label})
    np.testing.assert_array_equal(d["image"], warped)  # the dict twin draws the same field for the same seed
    np.testing.assert_array_equal(d["label"], rand.fixed_transform()(label, mode="nearest"))


def test_control_displacements_have_the_papers_grid_and_spread():
    rand = RandPaperElastic(grid=3, sigma=10.0).set_random_state(seed=0)
    draws = []
    for _ in range(300):
        rand.randomize(2)
        draws.append(rand.displacement)
    draws = np.stack(draws)
    assert draws.shape == (300, 2, 3, 3)
    assert draws.std() == pytest.approx(10.0, rel=0.05) and abs(draws.mean()) < 0.3
    rand.randomize(3)
    assert rand.displacement.shape == (3, 3, 3, 3)


def test_prob_zero_is_identity():
    image, label = square_pair()
    data = {"image": image, "label": label}
    out = RandPaperElasticd(["image", "label"], prob=0.0)(data)
    assert out["image"] is image and out["label"] is label
    assert RandPaperElastic(prob=0.0)(image) is image


def test_3d_volume_keeps_its_shape():
    image = blob_image((11, 13, 15))
    label = (image > 0.5).astype(np.int16)
    out = RandPaperElasticd(["image", "label"], sigma=3.0).set_random_state(seed=5)({"image": image, "label": label})
    assert out["image"].shape == image.shape and out["label"].shape == label.shape
    assert out["label"].dtype == np.int16 and set(np.unique(out["label"])) <= {0, 1}
    assert not np.allclose(out["image"], image)


def test_shapes_and_multichannel_images_are_kept():
    image = np.random.default_rng(0).random((3, 29, 31)).astype(np.float32)
    out = RandPaperElastic(mode="bicubic").set_random_state(seed=6)(image)
    assert out.shape == (3, 29, 31) and out.dtype == np.float32
    # every channel got the same warp
    single = RandPaperElastic(mode="bicubic").set_random_state(seed=6)(image[1:2])
    np.testing.assert_allclose(out[1:2], single, atol=1e-6)


def test_torch_input_returns_tensor_on_its_device_with_metadata():
    image = MetaTensor(torch.rand(1, 21, 23), meta={"filename_or_obj": "t000.tif"})
    out = RandPaperElastic(device="cpu").set_random_state(seed=2)(image)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "t000.tif" and out.device == image.device
    ref = RandPaperElastic().set_random_state(seed=2)(image.numpy())
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)


def test_mode_sequence_is_extended_with_its_last_entry():
    weight = np.zeros((1, 25, 27), np.float32)
    weight[0, 5:20, 5:20] = 1.25
    weight[0, 10:15, 10:15] = 9.5
    t = RandPaperElasticd(["image", "label", "weight"]).set_random_state(seed=9)
    assert t.mode == ("bilinear", "nearest", "nearest")
    assert RandPaperElasticd(["image"]).mode == ("bilinear",)
    out = t({"image": weight, "label": weight, "weight": weight})
    assert set(np.unique(out["weight"])) <= {0.0, 1.25, 9.5}
    assert len(np.unique(out["image"])) > 3


def test_argument_errors_name_the_argument():
    with pytest.raises(ValueError, match="mode='cubic' is not one of"):
        RandPaperElastic(mode="cubic")
    with pytest.raises(ValueError, match="mode has 3 entries for 2 keys"):
        RandPaperElasticd(["a", "b"], mode=("bilinear", "nearest", "nearest"))
    with pytest.raises(ValueError, match="grid=0"):
        RandPaperElastic(grid=0)
    with pytest.raises(ValueError, match="sigma=-1"):
        RandPaperElastic(sigma=-1)
    with pytest.raises(ValueError, match=r"displacement must have shape \(2, gh, gw\)"):
        PaperElastic(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match=r"2 spatial axes, got shape \(5, 5\)"):
        PaperElastic(np.ones((2, 3, 3)))(np.zeros((5, 5)))
    with pytest.raises(ValueError, match="'bicubic' is 2D only"):
        PaperElastic(np.ones((3, 3, 3, 3)), mode="bicubic")(np.zeros((1, 5, 5, 5)))
    with pytest.raises(ValueError, match=r"grid=\(3, 3\) gives 2 sizes for an image with 3 spatial axes"):
        RandPaperElastic(grid=(3, 3))(np.zeros((1, 5, 5, 5)))
