import re
import sys
from pathlib import Path

from typer.testing import CliRunner

import unetkit
from unetkit.cli.app import app
from unetkit.diagnostics import OPTIONAL, run_checks

runner = CliRunner()


def test_doctor_reports_cuda_and_a_working_cpu_forward_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("UNETKIT_CACHE", str(tmp_path / "cache"))
    r = runner.invoke(app, ["doctor", "--output", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "CUDA" in r.output and "forward pass (cpu)" in r.output and "ready" in r.output


def test_doctor_fails_with_the_fix_when_a_required_folder_is_not_writable(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("UNETKIT_CACHE", str(blocker / "cache"))
    checks = {c.name: c for c in run_checks()}
    assert checks["cache folder"].status == "fail" and "UNETKIT_CACHE" in checks["cache folder"].fix
    r = runner.invoke(app, ["doctor"])
    assert r.exit_code == 1 and "broken" in r.output


def test_doctor_fails_when_monai_cannot_be_imported(monkeypatch):
    monkeypatch.setitem(sys.modules, "monai", None)  # import raises ImportError
    checks = {c.name: c for c in run_checks()}
    assert checks["monai"].status == "fail" and "pip install monai" in checks["monai"].fix
    assert "forward pass (cpu)" not in checks


def test_a_missing_optional_package_says_what_it_is_for(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)
    checks = {c.name: c for c in run_checks()}
    assert checks["h5py"].status == "warn" and checks["h5py"].fix == "pip install h5py"
    assert checks["h5py"].detail.startswith("not installed - only needed") and "isbi2012" in checks["h5py"].detail


def test_every_optional_package_doctor_names_is_used_by_unetkit():
    root = Path(unetkit.__file__).parent
    code = "\n".join(p.read_text() for p in root.rglob("*.py") if p.name != "diagnostics.py")
    for name in OPTIONAL:
        assert re.search(rf"^\s*import {name}\b", code, re.MULTILINE), f"{name} is not imported anywhere"


def test_doctor_says_which_precision_auto_takes_here_and_why(monkeypatch):
    import unetkit.precision as precision

    monkeypatch.setattr(precision, "cpu_bf16", lambda: (True, "this CPU has amx_bf16 and avx512_bf16"))
    check = {c.name: c for c in run_checks()}["precision (cpu)"]
    assert check.status == "ok"
    assert check.detail == ("auto runs bfloat16 autocast, channels-last: this CPU has amx_bf16 and avx512_bf16 "
                            "(--exact: float32, bit for bit)")
    monkeypatch.setattr(precision, "cpu_bf16", lambda: (False, "this CPU has neither avx512_bf16 nor amx_bf16"))
    check = {c.name: c for c in run_checks()}["precision (cpu)"]
    assert check.detail == "auto runs float32: this CPU has neither avx512_bf16 nor amx_bf16"
