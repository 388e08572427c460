"""``unetkit bundle init|verify|pack|export``: exit codes, files written, one-line refusals."""

import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unetkit.bundle import read_config, write_config
from unetkit.cli.app import app
from tiny_bundles import make_tiny_bundle

runner = CliRunner()


@pytest.fixture
def bundle(tmp_path) -> Path:
    return make_tiny_bundle(tmp_path / "trained")


def _invoke(*args):
    return runner.invoke(app, list(map(str, args)), env={"COLUMNS": "200"})


def test_init_writes_a_bundle_and_prints_its_tile(tmp_path):
    r = _invoke("bundle", "init", tmp_path / "mine", "--from", "phc_u373")
    assert r.exit_code == 0, r.output
    assert "tile 572x572 -> 388x388" in r.output
    assert read_config(tmp_path / "mine" / "configs" / "metadata.json")["network_data_format"]["inputs"]["image"]["spatial_shape"] == [572, 572]


def test_init_refuses_an_unknown_recipe_in_one_line(tmp_path):
    r = _invoke("bundle", "init", tmp_path / "mine", "--from", "nope")
    assert r.exit_code == 2 and "error: --from nope: no such recipe" in r.output and "Traceback" not in r.output


def test_pack_then_verify_passes_with_exit_code_0(bundle, tmp_path):
    r = _invoke("bundle", "pack", bundle, "-o", tmp_path / "shared.zip")
    assert r.exit_code == 0, r.output
    assert zipfile.ZipFile(tmp_path / "shared.zip").namelist()[0] == "shared/LICENSE"
    r = _invoke("bundle", "verify", tmp_path / "shared.zip")
    assert r.exit_code == 0, r.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in r.output.splitlines() if line.count("│") == 4}
    assert rows == {"checksums": "pass", "metadata": "pass", "safety scan": "pass", "weights": "pass",
                    "forward pass": "pass", "precision": "warn", "docs": "pass"}  # warn: a tiny random network
    assert "all checks passed" in r.output


def test_pack_default_output_is_named_after_the_folder(bundle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _invoke("bundle", "pack", bundle)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "trained.zip").is_file()


def test_verify_of_a_tampered_zip_exits_1(bundle, tmp_path):
    _invoke("bundle", "pack", bundle, "-o", tmp_path / "b.zip")
    with zipfile.ZipFile(tmp_path / "b.zip") as zi, zipfile.ZipFile(tmp_path / "t.zip", "w") as zo:
        for info in zi.infolist():
            data = zi.read(info)
            zo.writestr(info, data[:-64] + bytes(64) if info.filename.endswith("models/model.pt") else data)
    r = _invoke("bundle", "verify", tmp_path / "t.zip")
    assert r.exit_code == 1 and "FAILED: checksums" in r.output
    assert "SHA-256 does not match" in " ".join(r.output.split())


def test_export_prints_the_file_and_the_differences(bundle):
    r = _invoke("bundle", "export", bundle, "--format", "torchscript")
    assert r.exit_code == 0, r.output
    assert "model.ts" in r.output and "input 572x572: max abs diff vs PyTorch 0" in r.output
    assert "input 188x204:" in r.output and (bundle / "models" / "model.ts").is_file()


def test_export_of_a_hostile_bundle_is_refused_in_one_line_and_nothing_runs(bundle, tmp_path):
    config = read_config(bundle / "configs" / "inference.json")
    config["pwn"] = {"_target_": "subprocess.run", "args": ["touch", str(tmp_path / "PWNED")]}
    write_config(bundle / "configs" / "inference.json", config)
    r = _invoke("bundle", "export", bundle, "--format", "onnx")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "pwn::_target_: 'subprocess.run' is outside the allow-list" in r.output and "--trust" in r.output
    assert not (tmp_path / "PWNED").exists() and not (bundle / "models" / "model.onnx").exists()


def test_export_rejects_an_unknown_format(bundle):
    r = _invoke("bundle", "export", bundle, "--format", "tflite")
    assert r.exit_code == 2 and "tflite" in r.output
