"""``unetkit infer``: masks written, the summary table, exit codes 0/1/2, zips, hostile bundles, flags."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

from unetkit.bundle import pack_bundle
from unetkit.cli.app import app
from tiny_bundles import REPO_BUNDLES, make_tiny_bundle

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """phc_u373 with a tiny network and random weights: a trained bundle as `unetkit train` leaves it."""
    return make_tiny_bundle(tmp_path_factory.mktemp("bundles") / "tiny")


@pytest.fixture
def images(tmp_path, rng) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", rng.integers(0, 255, (45, 61), dtype=np.uint8))
    tifffile.imwrite(folder / "b.tif", rng.integers(0, 4000, (37, 22), dtype=np.uint16))
    return folder


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_tiff_masks_have_the_input_shapes_and_the_table_lists_them(bundle, images, tmp_path):
    r = _invoke("infer", bundle, images / "a.tif", images / "b.tif", "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert tifffile.imread(tmp_path / "out" / "a_mask.tif").shape == (45, 61)
    assert tifffile.imread(tmp_path / "out" / "b_mask.tif").shape == (37, 22)
    rows = [line for line in r.output.splitlines() if ".tif" in line]
    assert any("a.tif" in row and "45x61" in row and " ok " in row for row in rows), r.output
    assert any("b.tif" in row and "37x22" in row for row in rows) and "2 of 2 file(s) segmented" in r.output


def test_a_folder_and_a_quoted_glob_are_expanded(bundle, images, tmp_path):
    r = _invoke("infer", bundle, f"{images}/a*.tif", images, "-o", tmp_path / "out")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_mask.tif", "b_mask.tif"]


def test_an_unreadable_file_is_a_failed_row_exit_code_1_and_the_others_are_written(bundle, images, tmp_path):
    (images / "broken.tif").write_bytes(b"II*\x00" + bytes(20))
    r = _invoke("infer", bundle, images, "-o", tmp_path / "out")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "failed: " in r.output and "broken.tif" in r.output and "2 of 3 file(s) segmented; 1 failed" in r.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_mask.tif", "b_mask.tif"]


def test_existing_masks_fail_without_overwrite_and_are_replaced_with_it(bundle, images, tmp_path):
    out = tmp_path / "out"
    assert _invoke("infer", bundle, images / "a.tif", "-o", out).exit_code == 0
    (out / "a_mask.tif").write_bytes(b"keep me")
    r = _invoke("infer", bundle, images / "a.tif", "-o", out)
    assert r.exit_code == 2 and "1 output file(s) of this run exist already" in r.output
    assert (out / "a_mask.tif").read_bytes() == b"keep me"
    r = _invoke("infer", bundle, images / "a.tif", "-o", out, "--overwrite")
    assert r.exit_code == 0 and tifffile.imread(out / "a_mask.tif").shape == (45, 61)


def test_semantic_probabilities_and_preview_flags(bundle, images, tmp_path):
    r = _invoke("infer", bundle, images / "b.tif", "-o", tmp_path / "out", "--semantic", "--save-probabilities",
                "--preview", "--tile", "252", "--batch", "2", "--no-amp")
    assert r.exit_code == 0, r.output
    mask = tifffile.imread(tmp_path / "out" / "b_mask.tif")
    probs = tifffile.imread(tmp_path / "out" / "b_prob.tif")
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2}  # background, interior, boundary
    assert probs.shape == (3, 37, 22) and probs.dtype == np.float32
    np.testing.assert_array_equal(probs.argmax(0), mask)
    assert (tmp_path / "out" / "b_preview.png").is_file()


def test_tta_averages_to_other_probabilities(bundle, images, tmp_path):
    for name, extra in (("plain", ()), ("tta", ("--tta",))):
        r = _invoke("infer", bundle, images / "b.tif", "-o", tmp_path / name, "--save-probabilities", *extra)
        assert r.exit_code == 0, r.output
    plain, tta = (tifffile.imread(tmp_path / n / "b_prob.tif") for n in ("plain", "tta"))
    np.testing.assert_allclose(tta.sum(0), 1.0, atol=1e-5)
    assert not np.allclose(plain, tta, atol=1e-4)


def test_a_zip_bundle_gives_the_masks_of_its_folder(bundle, images, tmp_path):
    archive = pack_bundle(bundle, tmp_path / "shared.zip")
    assert _invoke("infer", bundle, images / "a.tif", "-o", tmp_path / "folder").exit_code == 0
    r = _invoke("infer", archive, images / "a.tif", "-o", tmp_path / "zip")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "zip" / "a_mask.tif"),
                                  tifffile.imread(tmp_path / "folder" / "a_mask.tif"))


def test_a_hostile_bundle_is_refused_in_one_line_and_nothing_runs(bundle, images, tmp_path):
    evil = tmp_path / "evil"
    shutil.copytree(bundle, evil)
    path = evil / "configs" / "inference.json"
    config = json.loads(path.read_text())
    config["pwn"] = {"_target_": "subprocess.run", "args": [["touch", str(tmp_path / "PWNED")]]}
    config["pwn2"] = f"$__import__('pathlib').Path('{tmp_path / 'PWNED2'}').touch()"
    path.write_text(json.dumps(config))
    r = _invoke("infer", evil, images / "a.tif", "-o", tmp_path / "out")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "subprocess.run" in r.output and "--trust" in r.output and len(r.output.strip().splitlines()) <= 3
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "PWNED2").exists()
    assert not (tmp_path / "out").exists()


def test_trust_lets_a_bundle_outside_the_allow_list_run(bundle, images, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(bundle, odd)
    path = odd / "configs" / "inference.json"
    config = json.loads(path.read_text())
    config["extra"] = {"_target_": "collections.OrderedDict"}  # harmless, but not on the allow-list
    path.write_text(json.dumps(config))
    assert _invoke("infer", odd, images / "a.tif", "-o", tmp_path / "refused").exit_code == 2
    r = _invoke("infer", odd, images / "a.tif", "-o", tmp_path / "out", "--trust")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "a_mask.tif").is_file()


@pytest.mark.parametrize("args, message", [
    (("--tile", "570"), "not a valid input tile"),
    (("--batch", "0"), "--batch must be a positive int (tiles per forward pass), got 0"),
    (("--device", "tpu"), "--device tpu: expected auto, cpu, cuda or cuda:N"),
])
def test_bad_options_are_one_line_and_exit_code_2(bundle, images, tmp_path, args, message):
    r = _invoke("infer", bundle, images / "a.tif", "-o", tmp_path / "out", *args)
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_cuda_where_there_is_none_is_refused(bundle, images, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = _invoke("infer", bundle, images / "a.tif", "-o", tmp_path / "out", "--device", "cuda")
    assert r.exit_code == 2 and "--device cuda: CUDA is not available here" in r.output


def test_an_untrained_bundle_and_an_empty_folder_are_refused(images, tmp_path):
    r = _invoke("infer", REPO_BUNDLES / "phc_u373", images / "a.tif", "-o", tmp_path / "out")
    assert r.exit_code == 2 and "no trained weights" in r.output
    (tmp_path / "empty").mkdir()
    r = _invoke("infer", REPO_BUNDLES / "phc_u373", tmp_path / "empty", "-o", tmp_path / "out")
    assert r.exit_code == 2 and "no image files to segment" in r.output
