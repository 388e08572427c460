"""``unetkit infer --nproc N``: the files are sharded over gloo ranks, each output written once, one table."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from unetkit.cli.app import app
from unetkit.errors import UnetkitError
from unetkit.predict import PredictOptions, launch_sharded, load_bundle_model, predict_files, shard
from tiny_bundles import make_tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("in")
    for i in range(5):
        tifffile.imwrite(folder / f"f{i}.tif", np.random.default_rng(i).integers(0, 255, (40 + i, 47), dtype=np.uint8))
    return sorted(folder.iterdir())


@pytest.mark.parametrize("n, world", [(5, 2), (2, 3), (0, 2), (7, 1)])
def test_shards_cover_every_item_exactly_once(n, world):
    parts = [shard(range(n), r, world) for r in range(world)]
    assert sorted(i for p in parts for i in p) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_infer_nproc_2_writes_each_output_once_and_lists_every_file(bundle, images, tmp_path):
    r = CliRunner().invoke(app, ["infer", str(bundle), str(images[0].parent), "-o", str(tmp_path / "two"),
                                 "--nproc", "2", "--device", "cpu"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    rows = [line.split("│") for line in r.output.splitlines() if ".tif" in line]
    assert [row[1].strip() for row in rows] == [f"f{i}.tif" for i in range(5)]
    assert [row[-2].strip() for row in rows] == ["0", "1", "0", "1", "0"]  # the rank column: round-robin
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [f"f{i}_mask.tif" for i in range(5)]
    single = predict_files(load_bundle_model(bundle, device="cpu"), images, tmp_path / "one")
    for i, result in enumerate(single):
        assert rows[i][3].strip() == str(result.objects)
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "two" / f"f{i}_mask.tif"),
                                      tifffile.imread(tmp_path / "one" / f"f{i}_mask.tif"))


def test_unetkit_infer_under_torchrun_uses_its_ranks_and_prints_one_table(bundle, images, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python",
           str(Path(sys.executable).with_name("unetkit")), "infer", str(bundle), str(images[0].parent),
           "-o", str(tmp_path / "out")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("5 of 5 file(s) segmented") == 1, r.stdout  # rank 0 alone prints
    assert all(r.stdout.count(f"f{i}.tif") == 1 for i in range(5)) and "rank" in r.stdout
    assert len(list((tmp_path / "out").glob("*_mask.tif"))) == 5


def test_the_cli_refuses_one_gpu_for_several_processes(bundle, images, tmp_path):
    r = CliRunner().invoke(app, ["infer", str(bundle), str(images[0]), "-o", str(tmp_path / "o"), "--nproc", "2",
                                 "--device", "cuda:0"])
    assert r.exit_code == 2 and "each process takes its own GPU" in r.output
    with pytest.raises(UnetkitError, match="--nproc 0: must be at least 1"):
        launch_sharded(bundle, images, tmp_path / "o", PredictOptions(), nproc=0)


def test_a_torchrun_rank_leaves_its_process_group_when_done(bundle, images, tmp_path, monkeypatch):
    # a rank exiting with its gloo group open can abort at teardown while its peer still talks to it
    import torch.distributed as dist

    from unetkit.cli.infer import _under_torchrun

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(29400 + os.getpid() % 500))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    try:
        results, printer = _under_torchrun(bundle, images[:2], tmp_path / "out", PredictOptions(), device="cpu",
                                           trust=False, settings={})
        assert printer and [r.ok for r in results] == [True, True]
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
