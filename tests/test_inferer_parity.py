"""KernelParity: a tile's CPU convolutions use the kernel PyTorch picks for the whole image, so values match."""

import pytest
import torch
from torch import nn

from unetkit.inferers.parity import KernelParity


def _crop(y, like):
    return y[(slice(None), slice(None), *[slice(0, n) for n in like.shape[2:]])]


def _run(layer, whole, tile):
    """The whole-image output cropped to the tile, the tile by PyTorch's choice, the tile under parity."""
    torch.manual_seed(0)
    net = nn.Sequential(layer).eval()
    image = torch.rand(whole)
    tiles = torch.cat([image[(slice(None), slice(None), *[slice(0, n) for n in tile[2:]])]] * tile[0])
    with torch.no_grad():
        reference = net(image)
        plain = net(tiles)
        with KernelParity(net)(whole):
            matched = net(tiles)
    return torch.cat([_crop(reference, plain)] * tile[0]), plain, matched


@pytest.mark.parametrize(
    "layer,whole,tile",
    [
        # PyTorch: oneDNN for the whole (N*C*D*H = 22500 > 20480), its native kernel for the tile (10000)
        (nn.Conv3d(1, 2, 3), (1, 1, 150, 150, 6), (1, 1, 100, 100, 6)),
        # a batch of tiles goes to oneDNN; the one-image whole pass (N*C*H*W = 1800) does not
        (nn.Conv2d(2, 4, 3), (1, 2, 30, 30), (3, 2, 20, 20)),
    ],
)
def test_tile_convolutions_match_the_whole_image_pass_bit_for_bit(layer, whole, tile):
    # PyTorch's own kernel choice for the tile rounds differently from the whole on some CPUs and not on
    # others (oneDNN's dispatch depends on the instruction set); under parity the values match on all
    expected, _, matched = _run(layer, whole, tile)
    assert torch.equal(matched, expected)


def test_transposed_convolutions_forced_to_onednn_keep_their_values():
    # oneDNN for the whole (C*D*H = 25600), native for the tile; no public oneDNN entry: a batch of two
    expected, _, matched = _run(nn.ConvTranspose3d(4, 2, 2, stride=2), (1, 4, 80, 80, 3), (1, 4, 40, 40, 3))
    assert torch.equal(matched, expected)


def test_networks_that_cannot_be_traced_run_untouched():
    class NeedsData(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent: impossible on the meta device
                return self.conv(x)
            return -self.conv(x)

    net = NeedsData()
    x = torch.rand(1, 1, 20, 20)
    with torch.no_grad(), KernelParity(net)((1, 1, 40, 40)):
        y = net(x)
    assert torch.equal(y, net(x).detach())
