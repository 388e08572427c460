import numpy as np
import pytest

from unetkit.inferers import gather_tile, mirror_index, plan_tiles, tile_halo
from unetkit.networks import UNetGeometry

VALID4 = UNetGeometry(depth=4)
SAME4 = UNetGeometry(depth=4, padding="same")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
def test_mirror_index_equals_numpy_reflect_for_pads_wider_than_the_axis(n):
    a = np.arange(n) * 10
    for left, right in [(0, 0), (1, 2), (n + 3, 2 * n + 5), (17, 0), (0, 23)]:
        expected = np.pad(a, (left, right), mode="reflect")
        assert np.array_equal(a[mirror_index(np.arange(-left, n + right), n)], expected), (n, left, right)


def test_mirror_index_of_a_one_pixel_axis_repeats_it():
    assert mirror_index([-7, -1, 0, 1, 9], 1).tolist() == [0, 0, 0, 0, 0]


def test_gather_tile_equals_cropping_the_padded_image(rng):
    src = rng.random((2, 7, 5)).astype(np.float32)
    padded = np.pad(src, [(0, 0), (30, 30), (30, 30)], mode="reflect")
    for origin, shape in [((-12, -9), (25, 21)), ((3, 1), (4, 3)), ((-3, 2), (9, 28)), ((6, -30), (1, 40))]:
        expected = padded[:, 30 + origin[0] : 30 + origin[0] + shape[0], 30 + origin[1] : 30 + origin[1] + shape[1]]
        assert np.array_equal(gather_tile(src, origin, shape), expected), (origin, shape)


def test_gather_tile_reads_a_memmap_without_changing_it(tmp_path, rng):
    data = rng.integers(0, 255, (1, 9, 11), dtype=np.uint8)
    mm = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.uint8, shape=data.shape)
    mm[:] = data
    mm.flush()
    src = np.load(tmp_path / "a.npy", mmap_mode="r")
    tile = gather_tile(src, (-4, 6), (17, 9))
    assert tile.dtype == np.uint8
    assert np.array_equal(tile, np.pad(data, [(0, 0), (4, 4), (0, 4)], mode="reflect")[:, :17, 6:15])


def test_a_512_image_with_a_large_tile_runs_as_one_700_tile():
    plan = plan_tiles((512, 512), VALID4, 1212)
    assert plan.tile == (700, 700) and plan.n_tiles == 1
    assert plan.waste == pytest.approx(700**2 / 512**2)


@pytest.mark.parametrize("shape,tile", [((613, 701), 572), ((1000, 33), 572), ((301, 257), 204), ((50, 37), 236)])
def test_tiles_partition_the_image_and_start_on_the_pooling_grid(shape, tile):
    plan = plan_tiles(shape, VALID4, tile)
    hits = np.zeros(shape, np.int32)
    for t in plan:
        hits[t.region] += 1
        # input tiles start a multiple of 2**depth px from the mirrored image's first pixel (-margin)
        assert all((o + plan.halo) % VALID4.quantum == 0 for o in t.origin)
        assert all(loc.stop - loc.start == r.stop - r.start <= e for loc, r, e in zip(t.local, t.region, plan.extent))
    assert (hits == 1).all()
    assert all(VALID4.is_valid_size(t) and t <= tile for t in plan.tile)
    assert all(s % VALID4.quantum == 0 for s, st in zip(plan.stride, plan.starts) if len(st) > 1)


def test_388_outputs_advance_by_384_and_the_last_tile_keeps_the_rest():
    plan = plan_tiles((1150,), VALID4, 572)
    assert plan.tile == (572,) and plan.stride == (384,)
    assert [t.region[0] for t in plan] == [slice(0, 384), slice(384, 768), slice(768, 1150)]


def test_tiles_shrink_to_the_smallest_size_that_keeps_the_tile_count():
    # 613 px need two tiles of at most 572; two 508 tiles (324 out, stride 320) already cover 644 px
    plan = plan_tiles((613,), VALID4, 572)
    assert plan.tile == (508,) and plan.n_tiles == 2


def test_same_padding_tiles_overlap_by_the_halo_and_keep_their_centres():
    plan = plan_tiles((500,), SAME4, 320)
    assert plan.halo == plan.crop == tile_halo(SAME4) == 96
    assert plan.extent == (plan.tile[0] - 192,)
    assert all(t.origin[0] == t.region[0].start - 96 for t in plan)


@pytest.mark.parametrize("tile,nearest", [(570, "use 556 or 572"), (187, "use 188"), (33, "use 188")])
def test_invalid_tile_raises_naming_the_nearest_valid_sizes(tile, nearest):
    with pytest.raises(ValueError, match=f"tile {tile} along spatial axis 0 .*{nearest}"):
        plan_tiles((300, 300), VALID4, tile)


def test_same_padding_tile_must_leave_room_past_the_halo():
    with pytest.raises(ValueError, match="tile 192 .*use 208"):
        plan_tiles((300, 300), SAME4, 192)


def test_a_tile_too_small_to_advance_raises_naming_the_smallest_that_does():
    assert plan_tiles((4, 4), VALID4, 188).n_tiles == 1  # one 188 tile gives 4 x 4: fine
    with pytest.raises(ValueError, match="tile 188 along spatial axis 1 keeps 4 output px.*at least 204"):
        plan_tiles((4, 30), VALID4, 188)


def test_tile_needs_one_size_per_spatial_axis():
    with pytest.raises(ValueError, match=r"tile \(572, 572, 572\) has 3 sizes for an image with 2 spatial axes"):
        plan_tiles((300, 300), VALID4, (572, 572, 572))
