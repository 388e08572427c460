import sys

from typer.testing import CliRunner

from unetkit.cli.app import app
from unetkit.diagnostics import run_checks

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
