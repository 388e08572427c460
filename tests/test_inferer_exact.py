"""Tiled inference equals one whole-image pass over the mirrored image (the issue's reference), in every variant."""

import logging

import numpy as np
import pytest
import torch
from monai.networks.nets import BasicUNet

from unetkit.errors import UnetkitError
from unetkit.inferers import OverlapTileInferer, covering_tile_shape, symmetries, tile_halo
from unetkit.networks import UNet, UNetGeometry

TINY = (4, 8, 16, 32, 64)


def whole_image_pass(net, x, geometry):
    """The reference: mirror (numpy reflect) by the halo plus what the far side needs to reach a valid size,
    one forward pass, keep the image's pixels."""
    halo = tile_halo(geometry)
    crop = 0 if geometry.padding == "valid" else halo
    spatial = x.shape[2:]
    pads = [(halo, size - n - halo) for n, size in zip(spatial, covering_tile_shape(geometry, spatial))]
    padded = np.pad(x.numpy(), [(0, 0), (0, 0), *pads], mode="reflect")
    with torch.no_grad():
        y = net(torch.from_numpy(padded))
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
    out = OverlapTileInferer(tile=tile)(x, net2d)
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
    assert relative(OverlapTileInferer(tile=220)(x, net2d), ref) <= 1e-6


def test_several_channels_batches_of_tiles_and_several_images():
    torch.manual_seed(1)
    net = UNet(in_channels=3, out_channels=4, features=TINY).eval()
    x = torch.rand(2, 3, 49, 67)
    out = OverlapTileInferer(tile=204, batch=3)(x, net)
    assert out.shape == (2, 4, 49, 67)
    for b in range(2):  # the reference is one pass per image: a batch of images takes other CPU kernels
        assert relative(out[b : b + 1], whole_image_pass(net, x[b : b + 1], net.geometry)) <= 1e-6


@pytest.mark.parametrize("features,shape,tile", [((2, 4, 8), (23, 14, 30), 52), ((2, 4, 8, 16), (30, 9, 17), 108)])
def test_3d_tiles_equal_the_whole_image_pass(features, shape, tile):
    torch.manual_seed(2)
    net = UNet(spatial_dims=3, features=features).eval()
    x = torch.rand(1, 1, *shape)
    out = OverlapTileInferer(tile=tile)(x, net)
    assert out.shape == (1, 2, *shape)
    assert relative(out, whole_image_pass(net, x, net.geometry)) <= 1e-6


def test_same_padding_network_with_halo_equals_its_whole_image_pass():
    torch.manual_seed(3)
    net = UNet(features=TINY, padding="same").eval()
    x = torch.rand(1, 1, 77, 41)
    out = OverlapTileInferer(tile=224)(x, net)
    assert relative(out, whole_image_pass(net, x, net.geometry)) <= 1e-6


def test_monai_basic_unet_runs_as_same_padding_depth_4():
    torch.manual_seed(4)
    net = BasicUNet(spatial_dims=2, features=(4, 4, 8, 16, 32, 4), norm="batch").eval()
    x = torch.rand(1, 1, 50, 33)
    out = OverlapTileInferer(tile=208)(x, net)
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
    with torch.no_grad():
        probs = sum(torch.softmax(s.undo(net2d(s.apply(padded))), 1) for s in symmetries(2)) / 8
    ref = torch.log(probs)[..., :41, :29]
    # non-square tiles: a quarter turn swaps the tile's axes
    out = OverlapTileInferer(tile=(204, 236), tta=True)(x, net2d)
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


def test_bf16_autocast_on_cpu_is_close_but_not_identical(net2d):
    x = torch.rand(1, 1, 40, 40)
    ref = OverlapTileInferer(tile=220, amp=False)(x, net2d)
    default = OverlapTileInferer(tile=220)(x, net2d)  # amp=True: autocast on CUDA only
    assert torch.equal(default, ref)
    bf16 = OverlapTileInferer(tile=220, amp_dtype=torch.bfloat16)(x, net2d)
    assert bf16.dtype == torch.float32
    assert 0 < relative(bf16, ref) < 5e-2


def test_channels_last_equals_a_channels_last_whole_pass():
    torch.manual_seed(6)
    net = UNet(in_channels=2, features=TINY).eval()
    x = torch.rand(1, 2, 97, 88)
    nchw = OverlapTileInferer(tile=204)(x, net)
    out = OverlapTileInferer(tile=204, channels_last=True, device="cpu")(x, net)
    assert net.inc[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert relative(out, whole_image_pass(net, x.contiguous(memory_format=torch.channels_last), net.geometry)) <= 1e-6
    assert relative(out, nchw) < 1e-4  # the two layouts round differently, nothing more


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
        out = OverlapTileInferer(tile=268)(x, flaky)
    assert flaky.seen[0] == (268, 268) and max(flaky.seen[-1]) <= 230
    assert "out of memory" in caplog.text
    assert relative(out, whole_image_pass(net2d, x, net2d.geometry)) <= 1e-6


def test_out_of_memory_with_the_smallest_tile_is_a_clear_error(net2d):
    with pytest.raises(UnetkitError, match="out of memory on cpu even with .*tiles.*batch=1"):
        OverlapTileInferer(tile=236)(torch.rand(1, 1, 70, 70), _OutOfMemoryAbove(net2d, limit=100))
