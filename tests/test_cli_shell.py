import re

from typer.testing import CliRunner

import unetkit
from unetkit.cli.app import app
from unetkit.errors import UnetkitError

runner = CliRunner()


def test_version_prints_the_package_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"unetkit {unetkit.__version__}"


def test_info_lists_versions_and_cuda():
    r = runner.invoke(app, ["info"])
    assert r.exit_code == 0
    for word in ("unetkit", "torch", "monai", "CUDA"):
        assert word in r.output


def test_help_lists_every_command_group():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("train", "infer", "evaluate", "bundle", "data", "info", "doctor"):
        assert re.search(rf"\b{cmd}\b", r.output)


def _errors_app(exc):
    import typer

    from unetkit.cli.app import _ErrorsToOneLine

    def boom():
        raise exc

    t = typer.Typer(cls=_ErrorsToOneLine)
    t.command("boom")(boom)
    t.command("other")(lambda: None)
    return t


def test_library_errors_become_one_line_and_exit_code_2():
    r = runner.invoke(_errors_app(UnetkitError("cannot read", path="x.tif", fix="check the file")), ["boom"])
    assert r.exit_code == 2
    assert "x.tif: cannot read (check the file)" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_unexpected_errors_become_one_line_asking_for_a_report():
    r = runner.invoke(_errors_app(KeyError("oops")), ["boom"])
    assert r.exit_code == 1
    assert "internal error: KeyError" in r.output and "--debug" in r.output
    assert "Traceback" not in r.output


def test_usage_errors_stay_usage_errors_with_exit_code_2():
    r = runner.invoke(app, ["data", "demo"])  # missing argument
    assert r.exit_code == 2
    assert "internal error" not in r.output and "Missing argument" in r.output
