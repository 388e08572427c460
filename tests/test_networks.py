import math

import pytest
import torch
from torch import nn

from unetkit.networks import UNet, UNetGeometry

TINY = (4, 8, 16, 32, 64)


def test_paper_network_has_31030658_parameters_and_23_convolutions():
    net = UNet(spatial_dims=2, in_channels=1, out_channels=2)
    assert sum(p.numel() for p in net.parameters()) == 31_030_658
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 23
    assert all(m.padding in ((0, 0),) for m in convs if isinstance(m, nn.Conv2d))
    assert [m.out_channels for m in convs[:10:2]] == [64, 128, 256, 512, 1024]


@pytest.mark.parametrize("size,out", [(572, 388), (700, 516), (188, 4)])
def test_valid_network_shrinks_by_the_paper_margin(size, out):
    net = UNet(features=TINY).eval()
    with torch.no_grad():
        y = net(torch.zeros(1, 1, size, size))
    assert tuple(y.shape) == (1, 2, out, out)


def test_rectangular_input_and_several_channels():
    net = UNet(in_channels=3, out_channels=5, features=TINY).eval()
    with torch.no_grad():
        y = net(torch.rand(2, 3, 204, 572))
    assert tuple(y.shape) == (2, 5, 20, 388)


@pytest.mark.parametrize("size", [570, 187, 189, 33])
def test_invalid_size_raises_naming_the_valid_neighbours(size):
    net = UNet(features=TINY)
    with pytest.raises(ValueError, match=f"input size {size} along spatial axis 1.*use .*{net.valid_input_size(size)}"):
        net(torch.zeros(1, 1, 572, size))


def test_wrong_channel_count_raises():
    with pytest.raises(ValueError, match="2 input channel"):
        UNet(in_channels=2, features=TINY)(torch.zeros(1, 1, 188, 188))


def test_3d_network_follows_the_same_rule():
    net = UNet(spatial_dims=3, features=(2, 4, 8, 16)).eval()
    with torch.no_grad():
        y = net(torch.zeros(1, 1, 132, 132, 116))
    assert tuple(y.shape) == (1, 2, 44, 44, 28)
    assert net.margin == 44


def test_same_padding_keeps_the_size_and_needs_multiples_of_2_to_the_depth():
    net = UNet(features=(4, 8, 16), padding="same").eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 36, 44)).shape[-2:] == (36, 44)
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.zeros(1, 1, 37, 44))


def test_any_depth():
    net = UNet(features=(3, 6)).eval()  # one pooling: margin 6*2-4 = 8
    assert net.margin == 8 and net.geometry.min_input_size == 20
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 20, 22)).shape[-2:] == (4, 6)


def test_he_initialisation_std_is_sqrt_2_over_fan_in():
    torch.manual_seed(0)
    net = UNet(features=(64, 128, 256, 512, 1024))
    conv = net.downs[2][1][0]  # 3x3 conv 256 -> 512: fan-in 256*9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.01)
    assert conv.weight.mean().item() == pytest.approx(0.0, abs=1e-3)
    up = net.ups[0].up  # 2x2 stride-2 up-conv 1024 -> 512: each output sees one tap per input channel
    assert up.weight.std().item() == pytest.approx(math.sqrt(2 / 1024), rel=0.01)
    assert all(float(m.bias.abs().max()) == 0 for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def test_dropout_is_active_in_training_and_off_in_eval():
    torch.manual_seed(0)
    net = UNet(features=TINY, dropout=0.5)
    x = torch.rand(1, 1, 188, 188)
    a, b = net(x), net(x)
    assert not torch.equal(a, b)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
    assert isinstance(UNet(features=TINY, dropout=0).dropout, nn.Identity)


def test_gradients_reach_every_parameter():
    net = UNet(features=TINY)
    net(torch.rand(1, 1, 188, 204)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_normalisation_option_adds_norm_layers():
    net = UNet(features=(4, 8, 16), norm="batch")
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 10
    assert not any(isinstance(m, nn.BatchNorm2d) for m in UNet(features=(4, 8, 16)).modules())


def test_geometry_helpers_agree_with_the_network():
    g = UNetGeometry(depth=4)
    assert (g.margin, g.quantum, g.min_input_size) == (92, 16, 188)
    assert g.output_size(572) == 388 and g.input_size(388) == 572 and g.input_size(516) == 700
    assert g.next_valid_size(570) == 572 and g.next_valid_size(1) == 188 and g.previous_valid_size(571) == 556
    assert g.output_shape((700, 572)) == (516, 388) and g.input_shape((4, 20)) == (188, 204)
    with pytest.raises(ValueError, match="outputs of this U-Net are 4 plus a multiple of 16"):
        g.input_size(390)
    net = UNet(features=TINY).eval()
    for n in (188, 204, 300, 572):
        m = g.next_valid_size(n)
        with torch.no_grad():
            assert net(torch.zeros(1, 1, m, 188)).shape[-2] == g.output_size(m)


def test_geometry_rejects_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        UNetGeometry(depth=4, padding="reflect")
    with pytest.raises(ValueError, match="depth"):
        UNetGeometry(depth=0)
    with pytest.raises(ValueError, match="spatial_dims"):
        UNet(spatial_dims=1)
