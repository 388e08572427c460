import logging

import pytest
import torch
from monai.networks.nets import BasicUNet

from unetkit.inferers import activation_bytes_per_pixel, choose_tile, memory_budget, plan_tiles
from unetkit.inferers.tile_size import CPU_BUDGET_CAP
from unetkit.networks import UNet, UNetGeometry

VALID4 = UNetGeometry(depth=4)


def test_a_512_image_gets_one_700_tile_when_memory_allows_more():
    tile = choose_tile((512, 512), VALID4, bytes_per_pixel=1800, budget=8 * 2**30)
    assert tile == (700, 700)
    assert plan_tiles((512, 512), VALID4, tile).n_tiles == 1


def test_the_tile_is_the_largest_valid_one_within_the_budget():
    bpp, budget = 1000.0, 500 * 2**20
    (t, t2) = choose_tile((8000, 8000), VALID4, bytes_per_pixel=bpp, budget=budget)
    assert t == t2 and VALID4.is_valid_size(t)
    assert t * t * bpp <= budget < (t + 16) ** 2 * bpp


def test_a_batch_of_tiles_shares_the_budget():
    one = choose_tile((8000, 8000), VALID4, bytes_per_pixel=1000, budget=2**30)
    four = choose_tile((8000, 8000), VALID4, bytes_per_pixel=1000, budget=2**30, batch=4)
    assert 4 * four[0] ** 2 * 1000 <= 2**30 and four[0] < one[0]


def test_an_axis_one_tile_covers_gives_its_memory_to_the_others():
    g3 = UNetGeometry(depth=3)
    tile = choose_tile((2000, 2000, 30), g3, bytes_per_pixel=300, budget=2**32)
    assert tile[2] == 124  # 30 + 2 * 44 = 118 -> 124, the smallest covering size
    assert tile[0] == tile[1] > 124 and tile[0] * tile[1] * tile[2] * 300 <= 2**32


def test_a_budget_below_the_smallest_tile_warns_and_uses_the_smallest_that_advances(caplog):
    with caplog.at_level(logging.WARNING):
        tile = choose_tile((5000, 5000), VALID4, bytes_per_pixel=1800, budget=2**20)
    assert tile == (204, 204)
    assert "too small" in caplog.text


def test_footprint_of_the_paper_network_counts_its_level_0_maps():
    net = UNet()
    bpp = activation_bytes_per_pixel(net, net.geometry)
    # skip + up-conv + concatenation + conv output at 64 channels, plus the level below: ~ 5 x 64 floats
    assert 5 * 64 * 4 < bpp < 8 * 64 * 4
    half = activation_bytes_per_pixel(net, net.geometry, dtype_bytes=2)
    assert half == pytest.approx(bpp / 2)


def test_footprint_of_an_unknown_network_is_measured_and_grows_with_its_width():
    small = BasicUNet(spatial_dims=2, features=(4, 4, 8, 16, 32, 4))
    wide = BasicUNet(spatial_dims=2, features=(16, 16, 32, 64, 128, 16))
    g = UNetGeometry(4, padding="same")
    a, b = activation_bytes_per_pixel(small, g), activation_bytes_per_pixel(wide, g)
    assert 0 < a < b


def test_cpu_budget_is_capped():
    assert 0 < memory_budget("cpu") <= CPU_BUDGET_CAP
    assert memory_budget(torch.device("cpu")) <= CPU_BUDGET_CAP
