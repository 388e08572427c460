"""Tiled inference equals one whole-image pass over the mirrored image (the issue's reference), in every variant.

``exact=True`` (float32, NCHW, the whole image's CPU kernels) equals it bit for bit on this machine (within
1e-6 of the largest logit: the reference itself is a float32 pass); the default fast path (channels-last,
bfloat16 where native) agrees with the exact path up to rounding.
"""

import logging

import numpy as np
import pytest
import torch
from monai.networks.nets import BasicUNet

from unetkit.errors import UnetkitError
from unetkit.inferers import OverlapTileInferer, covering_tile_shape, symmetries, tile_halo
from unetkit.inferers.engine import to_layout
from unetkit.networks import UNet, UNetGeometry

TINY = (4, 8, 16, 32, 64)


def whole_image_pass(net, x, geometry, layout=torch.contiguous_format):
    """The reference: mirror (numpy reflect) by the halo plus what the far side needs to reach a valid size,
    one forward pass (weights in ``layout``), keep the image's pixels."""
    to_layout(net, layout)
    halo = tile_halo(geometry)
    crop = 0 if geometry.padding == "valid" else halo
    spatial = x.shape[2:]
    pads = [(halo, size - n - halo) for n, size in zip(spatial, covering_tile_shape(geometry, spatial))]
    padded = np.pad(x.numpy(), [(0, 0), (0, 0), *pads], mode="reflect")
    with torch.no_grad():
        y = net(torch.from_numpy(padded).contiguous(memory_format=layout))
    return y[(..., *[slice(crop, crop + n) for n in spatial])]


def relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def net2d():
    torch.manual_seed(0)
    return UNet(spatial_dims=2, features=TINY).eval()


@pytest.mark.parametrize(
    "shape,tile", [((61, 45), 220), ((37, 83), 204), ((5, 3), 572), ((1, 70), 236), ((90, 90), 572)]
)
def test_2d_tiles_equal_the_whole_image_pass(net2d, shape, tile):
    x = torch.rand(1, 1, *shape)
    out = OverlapTileInferer(tile=tile, exact=True)(x, net2d)
    assert out.shape == (1, 2, *shape)
    assert relative(out, whole_image_pass(net2d, x, net2d.geometry)) <= 1e-6


def test_naive_butting_of_output_tiles_is_not_exact(net2d):
    # 220 -> 36 outputs; butting them puts every other tile 36 px (not a multiple of 16) along the pooling grid
    x = torch.rand(1, 1, 72, 72)
    ref = whole_image_pass(net2d, x, net2d.geometry)
    padded = torch.from_numpy(np.pad(x.numpy(), [(0, 0), (0, 0), (92, 92 + 36), (92, 92 + 36)], mode="reflect"))
    naive = torch.empty_like(ref)
    with torch.no_grad():
        for i in (0, 36):
            for j in (0, 36):
                naive[..., i : i + 36, j : j + 36] = net2d(padded[..., i : i + 220, j : j + 220])
    assert relative(naive, ref) > 1e-3
    assert relative(OverlapTileInferer(tile=220, exact=True)(x, net2d), ref) <= 1e-6


def test_several_channels_batches_of_tiles_and_several_images():
    torch.manual_seed(1)
    net = UNet(in_channels=3, out_channels=4, features=TINY).eval()
    x = torch.rand(2, 3, 49, 67)
    out = OverlapTileInferer(tile=204, batch=3, exact=True)(x, net)
    assert out.shape == (2, 4, 49, 67)
    for b in range(2):  # the reference is one pass per image: a batch of images takes other CPU kernels
        assert relative(out[b : b + 1], whole_image_pass(net, x[b : b + 1], net.geometry)) <= 1e-6


@pytest.mark.parametrize("features,shape,tile", [((2, 4, 8), (23, 14, 30), 52), ((2, 4, 8, 16), (30, 9, 17), 108)])
def test_3d_tiles_equal_the_whole_image_pass(features, shape, tile):
    torch.manual_seed(2)
    net = UNet(spatial_dims=3, features=features).eval()
    x = torch.rand(1, 1, *shape)
    out = OverlapTileInferer(tile=tile, exact=True)(x, net)
    assert out.shape == (1, 2, *shape)
    assert relative(out, whole_image_pass(net, x, net.geometry)) <= 1e-6


def test_same_padding_network_with_halo_equals_its_whole_image_pass():
    torch.manual_seed(3)
    net = UNet(features=TINY, padding="same").eval()
    x = torch.rand(1, 1, 77, 41)
    out = OverlapTileInferer(tile=224, exact=True)(x, net)
    assert relative(out, whole_image_pass(net, x, net.geometry)) <= 1e-6


def test_monai_basic_unet_runs_as_same_padding_depth_4():
    torch.manual_seed(4)
    net = BasicUNet(spatial_dims=2, features=(4, 4, 8, 16, 32, 4), norm="batch").eval()
    x = torch.rand(1, 1, 50, 33)
    out = OverlapTileInferer(tile=208, exact=True)(x, net)
    assert out.shape == (1, 2, 50, 33)
    assert relative(out, whole_image_pass(net, x, UNetGeometry(4, padding="same"))) <= 1e-6


def test_wrong_geometry_for_the_network_is_reported():
    net = UNet(features=TINY).eval()  # depth 4; 220 is valid at depth 3 too, where it would give 132 outputs
    with pytest.raises(ValueError, match=r"returned spatial shape \(36, 36\) for input tiles \(220, 220\).*geometry="):
        OverlapTileInferer(tile=220, geometry=UNetGeometry(3))(torch.rand(1, 1, 130, 130), net)


def test_tta_equals_averaging_over_rotations_of_the_mirrored_image(net2d):
    x = torch.rand(1, 1, 41, 29)
    halo = 92
    pads = [(halo, size - n - halo) for n, size in zip(x.shape[2:], covering_tile_shape(net2d.geometry, x.shape[2:]))]
    padded = torch.from_numpy(np.pad(x.numpy(), [(0, 0), (0, 0), *pads], mode="reflect"))
    to_layout(net2d, torch.contiguous_format)
    with torch.no_grad():
        probs = sum(torch.softmax(s.undo(net2d(s.apply(padded))), 1) for s in symmetries(2)) / 8
    ref = torch.log(probs)[..., :41, :29]
    # non-square tiles: a quarter turn swaps the tile's axes
    out = OverlapTileInferer(tile=(204, 236), tta=True, exact=True)(x, net2d)
    assert relative(out, ref) <= 1e-6
    assert torch.allclose(out.exp().sum(1), torch.ones(1, 41, 29), atol=1e-5)


def test_tta_in_3d_averages_the_8_flips():
    torch.manual_seed(5)
    net = UNet(spatial_dims=3, out_channels=1, features=(2, 4, 8)).eval()
    x = torch.rand(1, 1, 9, 14, 11)
    plain = OverlapTileInferer(tile=60)(x, net)
    flipped = OverlapTileInferer(tile=60)(torch.flip(x, (2, 4)), net)
    out = OverlapTileInferer(tile=60, tta=True)(x, net)
    assert out.shape == (1, 1, 9, 14, 11)
    assert not torch.allclose(out, plain, atol=1e-4)
    # one output channel: the sigmoid is averaged; the mean lies between the 8 members
    p = torch.sigmoid(out)
    members = torch.stack([torch.sigmoid(plain), torch.sigmoid(torch.flip(flipped, (2, 4)))])
    assert (p <= members.max(0).values.max() + 1e-6).all() and (p >= members.min(0).values.min() - 1e-6).all()


def agreement(a, b):
    return float((a.argmax(1) == b.argmax(1)).double().mean())


def test_exact_keeps_nchw_and_converts_channels_last_weights_back(net2d):
    x = torch.rand(1, 1, 40, 40)
    OverlapTileInferer(tile=220)(x, net2d)  # the default converts the weights to channels-last in place
    assert net2d.inc[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not net2d.inc[3].weight.is_contiguous()  # 4 input channels: the layouts differ
    OverlapTileInferer(tile=220, exact=True)(x, net2d)
    assert all(p.is_contiguous() for p in net2d.parameters())


def test_fp32_fast_path_agrees_with_the_exact_path_within_float_rounding(net2d):
    x = torch.rand(1, 1, 97, 61)
    exact = OverlapTileInferer(tile=204, exact=True)(x, net2d)
    fast = OverlapTileInferer(tile=204, precision="fp32")(x, net2d)
    assert 0 < relative(fast, exact) < 1e-5  # the two layouts round differently, nothing more
    assert agreement(fast, exact) >= 0.999


def test_bf16_fast_path_agrees_with_the_exact_path_up_to_bf16_rounding(net2d):
    x = torch.rand(1, 1, 97, 61)
    exact = OverlapTileInferer(tile=204, exact=True)(x, net2d)
    bf16 = OverlapTileInferer(tile=204, precision="bf16")(x, net2d)
    assert bf16.dtype == torch.float32
    assert 0 < relative(bf16, exact) < 5e-2
    assert agreement(bf16, exact) >= 0.99  # a tiny random network: logits close together, so more ties


def test_the_default_is_bf16_where_the_cpu_has_it_and_fp32_elsewhere(monkeypatch):
    import unetkit.precision as precision

    torch.manual_seed(0)
    net = UNet(features=TINY).eval()
    x = torch.rand(1, 1, 40, 40)
    fp32 = OverlapTileInferer(tile=220, precision="fp32")(x, net)
    bf16 = OverlapTileInferer(tile=220, precision="bf16")(x, net)
    monkeypatch.setattr(precision, "labels_agree", lambda a, b: 1.0)  # as a trained network on its images
    monkeypatch.setattr(precision, "cpu_bf16", lambda: (False, "no bf16 here"))
    assert torch.equal(OverlapTileInferer(tile=220)(x, net), fp32)
    monkeypatch.setattr(precision, "cpu_bf16", lambda: (True, "bf16 here"))
    assert torch.equal(OverlapTileInferer(tile=220)(x, net), bf16)
    assert torch.equal(OverlapTileInferer(tile=220, amp=False)(x, net), fp32)  # the older switch: float32


def test_auto_keeps_float32_for_a_network_whose_bf16_labels_stray(monkeypatch, caplog):
    import unetkit.precision as precision

    monkeypatch.setattr(precision, "cpu_bf16", lambda: (True, "bf16 here"))
    torch.manual_seed(0)
    net = UNet(features=TINY).eval()
    x = torch.rand(1, 1, 300, 300)
    # random weights: the two logits are close, bf16 swaps them on ~0.2 % of the first tile's 308x308 pixels
    with caplog.at_level(logging.WARNING):
        auto = OverlapTileInferer(tile=572)(x, net)
    assert torch.equal(auto, OverlapTileInferer(tile=572, precision="fp32")(x, net))
    assert "runs this network in float32: bfloat16 labels equal float32's on 99." in caplog.text
    assert "of the first 492x492 tile segmented with these weights, below 99.9 %" in caplog.text  # shrunk to fit
    assert not torch.equal(OverlapTileInferer(tile=572, precision="bf16")(x, net), auto)  # never overridden


def test_the_check_runs_once_per_weights_and_is_remembered_on_disk(monkeypatch, cache):
    import unetkit.inferers.guard as guard
    import unetkit.precision as precision

    monkeypatch.setattr(precision, "cpu_bf16", lambda: (True, "bf16 here"))
    torch.manual_seed(0)
    net = UNet(features=TINY).eval()
    calls = []
    net.register_forward_pre_hook(lambda m, a: calls.append(a[0].device.type))
    x = torch.rand(1, 1, 40, 40)
    first = OverlapTileInferer(tile=220, batch=4)(x, net)
    assert calls.count("cpu") == 2  # the one batch, in bf16 and in float32
    assert len(list((cache / "precision").iterdir())) == 1
    guard._seen.clear()  # as a new process would start: the decision comes from the disk
    calls.clear()
    assert torch.equal(OverlapTileInferer(tile=220, batch=4)(x, net), first) and calls.count("cpu") == 1
    with torch.no_grad():
        net.inc[0].weight.mul_(1.5)  # new weights: checked again
    calls.clear()
    OverlapTileInferer(tile=220, batch=4)(x, net)
    assert calls.count("cpu") == 2


def test_channels_last_equals_a_channels_last_whole_pass_within_rounding():
    torch.manual_seed(6)
    net = UNet(in_channels=2, features=TINY).eval()
    x = torch.rand(1, 2, 97, 88)
    nchw = OverlapTileInferer(tile=204, exact=True)(x, net)
    out = OverlapTileInferer(tile=204, precision="fp32", device="cpu")(x, net)
    assert net.inc[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert relative(out, whole_image_pass(net, x, net.geometry, torch.channels_last)) <= 1e-5
    assert relative(out, nchw) < 1e-4


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"precision": "bf16", "exact": True}, "exclude each other: exact results are float32"),
        ({"channels_last": True, "exact": True}, "exact=True runs in NCHW layout"),
        ({"amp": False, "precision": "bf16"}, r"amp=False \(float32\) contradicts precision='bf16'"),
        ({"amp_dtype": torch.float16, "precision": "bf16"}, "contradicts precision='bf16'"),
        ({"precision": "half"}, "precision must be one of auto, fp32, bf16, fp16"),
    ],
)
def test_contradictory_precision_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OverlapTileInferer(**kwargs)


class _OutOfMemoryAbove(torch.nn.Module):
    """Raises CUDA's out-of-memory error for tiles larger than ``limit`` px, as a GPU would."""

    def __init__(self, net, limit):
        super().__init__()
        self.net, self.limit, self.seen = net, limit, []
        self.geometry = net.geometry

    def forward(self, x):
        if x.device.type == "meta":  # the inferer's shape-only trace allocates nothing
            return self.net(x)
        self.seen.append(tuple(x.shape[2:]))
        if max(x.shape[2:]) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.net(x)


def test_out_of_memory_retries_with_the_next_smaller_tile(net2d, caplog):
    x = torch.rand(1, 1, 70, 70)
    flaky = _OutOfMemoryAbove(net2d, limit=230)
    with caplog.at_level(logging.WARNING):
        out = OverlapTileInferer(tile=268, exact=True)(x, flaky)
    assert flaky.seen[0] == (268, 268) and max(flaky.seen[-1]) <= 230
    assert "out of memory" in caplog.text
    assert relative(out, whole_image_pass(net2d, x, net2d.geometry)) <= 1e-6


def test_out_of_memory_with_the_smallest_tile_is_a_clear_error(net2d):
    with pytest.raises(UnetkitError, match="out of memory on cpu even with .*tiles.*batch=1"):
        OverlapTileInferer(tile=236)(torch.rand(1, 1, 70, 70), _OutOfMemoryAbove(net2d, limit=100))
