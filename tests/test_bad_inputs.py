"""Bad input never passes silently: NaN/inf pixels, an unwritable output folder, a rerun into old outputs,
and a mixed folder of good and bad files (every bad one named, every good one written, no input changed)."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from unetkit.cli.app import app
from unetkit.predict import PredictOptions, load_bundle_model, predict_file
from tiny_bundles import make_tiny_bundle

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundles") / "tiny")


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _nan_patch(path: Path) -> Path:
    a = np.random.default_rng(0).random((60, 70)).astype(np.float32)
    a[10:30, 10:30] = np.nan
    tifffile.imwrite(path, a)
    return path


def test_a_nan_patch_fails_the_file_with_its_count_and_the_fix(bundle, tmp_path):
    r = predict_file(load_bundle_model(bundle, device="cpu"), _nan_patch(tmp_path / "nan.tif"), tmp_path / "out")
    assert r.status == "failed" and "400 non-finite pixel(s)" in r.message and "9.52%" in r.message
    assert "--fill-nonfinite" in r.message and not (tmp_path / "out" / "nan_mask.tif").exists()


def test_filled_nans_give_a_mask_and_a_warning(bundle, tmp_path):
    model = load_bundle_model(bundle, device="cpu")
    src = _nan_patch(tmp_path / "nan.tif")
    r = predict_file(model, src, tmp_path / "out", PredictOptions(fill_nonfinite=True))
    clean = tifffile.imread(src)
    clean[np.isnan(clean)] = np.nanmedian(clean)
    tifffile.imwrite(tmp_path / "clean.tif", clean)
    ref = predict_file(model, tmp_path / "clean.tif", tmp_path / "ref")
    assert r.ok and any("filled with the median" in n for n in r.notes)
    np.testing.assert_array_equal(tifffile.imread(r.outputs[0]), tifffile.imread(ref.outputs[0]))


def test_an_output_path_that_is_a_file_is_refused_before_any_network_runs(bundle, tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(3):
        tifffile.imwrite(tmp_path / "in" / f"f{i}.tif", np.zeros((40, 41), np.uint8))
    (tmp_path / "taken").write_text("")
    r = _invoke("infer", bundle, tmp_path / "in", "-o", tmp_path / "taken")
    assert r.exit_code == 2 and "is a file, not a folder" in r.output and "Traceback" not in r.output
    assert "f1.tif" not in r.output  # one line for the run, not one per file


def test_a_rerun_into_old_outputs_stops_with_one_line_for_the_run(bundle, tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(3):
        tifffile.imwrite(tmp_path / "in" / f"f{i}.tif", np.zeros((40, 41), np.uint8))
    assert _invoke("infer", bundle, tmp_path / "in", "-o", tmp_path / "out").exit_code == 0
    r = _invoke("infer", bundle, tmp_path / "in", "-o", tmp_path / "out")
    assert r.exit_code == 2 and "3 output file(s) of this run exist already" in r.output and "--overwrite" in r.output
    assert r.output.count("exist") == 1
    assert _invoke("infer", bundle, tmp_path / "in", "-o", tmp_path / "out", "--overwrite").exit_code == 0


def test_a_mixed_folder_names_every_bad_file_writes_every_good_one_and_changes_no_input(bundle, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(1)
    tifffile.imwrite(d / "good.tif", rng.integers(0, 255, (40, 45), dtype=np.uint8))
    tifffile.imwrite(d / "rgb.tif", rng.integers(0, 255, (40, 45, 3), dtype=np.uint8), photometric="rgb")
    (d / "empty.tif").write_bytes(b"")
    (d / "text.tif").write_text("not an image")
    good = (d / "good.tif").read_bytes()
    (d / "truncated.tif").write_bytes(good[: len(good) // 3])
    _nan_patch(d / "nan.tif")
    tifffile.imwrite(d / "allnan.tif", np.full((30, 30), np.nan, np.float32))
    tifffile.imwrite(d / "inf.tif", np.where(rng.random((30, 31)) > 0.5, np.inf, 1.0).astype(np.float32))
    tifffile.imwrite(d / "tiny.tif", np.zeros((1, 1), np.uint8))
    tifffile.imwrite(d / "fived.tif", np.zeros((2, 2, 2, 20, 20), np.uint8), imagej=True, metadata={"axes": "TZCYX"})
    (d / "broken.nii.gz").write_bytes(b"\x1f\x8b" + bytes(30))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}
    r = _invoke("infer", bundle, d, "-o", tmp_path / "out")
    assert r.exit_code == 1 and "Traceback" not in r.output
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"good_mask.tif", "rgb_mask.tif"} <= written
    for bad in ("empty.tif", "text.tif", "truncated.tif", "nan.tif", "allnan.tif", "inf.tif", "broken.nii.gz"):
        assert bad in r.output and f"{bad.split('.')[0]}_mask" not in " ".join(written), bad
    assert before == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in d.iterdir()}
