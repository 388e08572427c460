"""``unetkit infer --memory SIZE``: a cap on the process's peak resident memory (unetkit.predict.memory)."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.tiny_bundles import make_tiny_bundle
from unetkit.errors import UnetkitError
from unetkit.inferers import activation_bytes_per_pixel, choose_tile, network_geometry
from unetkit.predict import PredictOptions, load_bundle_model, predict_file
from unetkit.predict.layout import plan_layout
from unetkit.predict.memory import current_rss, tile_budget
from unetkit.io import ImageMeta

MiB = 2**20


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("cap") / "b")


def _tile(model, shape, limit):
    array = np.zeros(shape, np.uint8)
    layout = plan_layout(ImageMeta("YX", shape=shape), spatial_dims=2, in_channels=1)
    budget, batch = tile_budget(model, array, layout, probabilities=False, instances=False, streams=False,
                                limit=limit)
    geometry = network_geometry(model.network)
    bpp = activation_bytes_per_pixel(model.network, geometry, spatial_dims=2)
    return budget, choose_tile(shape, geometry, bytes_per_pixel=bpp, budget=budget, batch=batch)


def test_the_tile_shrinks_with_the_cap_and_the_process_is_counted(bundle):
    model = load_bundle_model(bundle, device="cpu")
    shape = (6000, 6000)
    base = current_rss()
    caps = [base + extra * MiB for extra in (900, 1200, 2000)]
    results = [_tile(model, shape, cap) for cap in caps]
    budgets, tiles = [r[0] for r in results], [r[1][0] for r in results]
    assert budgets == sorted(budgets) and tiles == sorted(tiles) and tiles[0] < tiles[-1]
    # what the tile gets is the cap less this process, the image and its labels: never more than the cap itself
    assert all(b < cap - base for b, cap in zip(budgets, caps))


def test_a_cap_below_what_the_file_needs_fails_that_file_with_one_line_saying_how_much(bundle, tmp_path):
    model = load_bundle_model(bundle, device="cpu").with_settings(memory=current_rss() + 8 * MiB)
    src = tmp_path / "big.tif"
    tifffile.imwrite(src, np.zeros((3000, 3000), np.uint8))
    result = predict_file(model, src, tmp_path / "out", PredictOptions())
    assert not result.ok and "\n" not in result.message
    assert "--memory" in result.message and "needs at least" in result.message and "the image" in result.message
    assert not (tmp_path / "out" / "big_mask.tif").exists()
    with pytest.raises(UnetkitError, match="needs at least"):
        _tile(model, (3000, 3000), current_rss())


def test_a_tight_cap_takes_fewer_tiles_per_batch_rather_than_refusing(bundle):
    model = load_bundle_model(bundle, device="cpu")
    assert model.inferer.options.batch == 4
    shape = (3000, 3000)
    array = np.zeros(shape, np.uint8)
    layout = plan_layout(ImageMeta("YX", shape=shape), spatial_dims=2, in_channels=1)
    fits = [tile_budget(model, array, layout, probabilities=False, instances=False, streams=False,
                        limit=current_rss() + extra * MiB) for extra in (60, 400)]
    assert fits[0][1] < 4 and fits[1][1] == 4


def test_memory_lets_the_cap_choose_a_tile_the_bundle_fixed(bundle):
    model = load_bundle_model(bundle, device="cpu").with_settings(tile=572)
    assert model.inferer.options.tile == 572 and model.memory_limit is None
    capped = model.with_settings(memory=2**31)
    assert capped.inferer.options.tile is None and capped.memory_limit == 2**31
    assert model.with_settings(memory=2**31, tile=572).inferer.options.tile == 572


def test_the_bundle_can_set_the_cap(bundle, tmp_path):
    import json
    import shutil

    copy = Path(shutil.copytree(bundle, tmp_path / "capped"))
    config = json.loads((copy / "configs" / "inference.json").read_text())
    config["memory_limit"] = "3GiB"
    (copy / "configs" / "inference.json").write_text(json.dumps(config))
    assert load_bundle_model(copy, device="cpu").memory_limit == 3 * 2**30
