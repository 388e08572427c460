"""``unetkit infer --memory SIZE``: a cap on the process's peak resident memory (unetkit.predict.memory)."""

import os
import subprocess
import sys
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


# The child reports its own peak (VmHWM: the high-water mark of its address space, which exec starts
# afresh). Not ru_maxrss from wait4: Linux folds the forked parent's resident set into the child's maxrss
# at exec, so a child of a large pytest worker (napari and Qt loaded: 1.2 GiB) "peaks" at the worker's size.
_REPORT_PEAK = """
import atexit, sys
def _peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print("VMHWM", line.split()[1], file=sys.stderr)
atexit.register(_peak)
from unetkit.cli.app import main
sys.argv = ["unetkit", *sys.argv[1:]]
main()
"""


def _infer(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _REPORT_PEAK, "infer", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "COLUMNS": "400", **(env or {})})


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="VmHWM is Linux's /proc")
def test_peak_rss_of_unetkit_infer_stays_within_the_cap(bundle, tmp_path):
    """A fresh ``unetkit infer --memory`` process on a 2048² image: its whole peak within 15 % of the cap, the
    cap set a little above what the image needs so that the tile is what it limits."""
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, np.random.default_rng(0).integers(0, 255, (2048, 2048), dtype=np.uint8))
    probe = _infer(bundle, src, "-o", tmp_path / "probe", "--memory", "1MiB", "--semantic")
    need = probe.stdout[probe.stdout.index("needs at least"):].split()[3:5]
    cap = int(float(need[0]) * (2**30 if need[1].startswith("GiB") else MiB)) + 160 * MiB
    run = _infer(bundle, src, "-o", tmp_path / "out", "--memory", cap, "--semantic")
    assert run.returncode == 0, run.stdout + run.stderr
    peak = int(run.stderr.rsplit("VMHWM", 1)[1].split()[0]) * 1024
    assert peak <= cap * 1.15, (peak / MiB, cap / MiB)
