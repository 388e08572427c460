"""The ``unetkit`` command: the Typer app, its command groups and its one error path.

Every command parses its options, calls the library and prints. A :class:`~unetkit.errors.UnetkitError`
raised anywhere below reaches the user as one red line and exit code 2; anything unexpected as one line
that asks for a report, exit code 1. ``unetkit --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated, Optional

import typer
from rich.markup import escape
from typer.core import TyperGroup

import unetkit
from unetkit.cli.console import err
from unetkit.errors import UnetkitError

__all__ = ["app", "main"]

_state = {"debug": False}


def _is_click_flow(e: BaseException) -> bool:
    """Usage errors and exits of click, which Typer may vendor (``typer._click``): click reports those itself."""
    return any(c.__name__ in ("ClickException", "Exit", "Abort") for c in type(e).__mro__)


class _ErrorsToOneLine(TyperGroup):
    """Turns exceptions from any command into one line and an exit code (no traceback unless --debug)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UnetkitError as e:
            if _state["debug"]:
                raise
            err.print(f"[bold red]error:[/] {e}", markup=True, soft_wrap=True, highlight=False)
            raise typer.Exit(code=2) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt, BrokenPipeError):
            raise
        except Exception as e:  # a bug of ours, or a library failing in a way we did not foresee
            if _state["debug"] or _is_click_flow(e):
                raise
            err.print(
                f"[bold red]internal error:[/] {type(e).__name__}: {e} "
                "(run again with 'unetkit --debug ...' for the traceback, and please report it)",
                soft_wrap=True,
                highlight=False,
            )
            raise typer.Exit(code=1) from None


app = typer.Typer(
    cls=_ErrorsToOneLine,
    name="unetkit",
    help="The 2015 U-Net for microscopy and medical volumes: train, infer, evaluate and share MONAI bundles.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool):
    if value:
        typer.echo(f"unetkit {unetkit.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    max_bundle_size: Annotated[Optional[str], typer.Option("--max-bundle-size", help="Largest unpacked size of a bundle zip (default 4GiB), e.g. 8GiB.")] = None,
    max_bundle_files: Annotated[Optional[int], typer.Option("--max-bundle-files", help="Most entries in a bundle zip (default 10000).")] = None,
):
    _state["debug"] = debug
    _show_library_warnings()
    if max_bundle_size is not None or max_bundle_files is not None:
        from unetkit.bundle import archive
        from unetkit.predict.model import parse_size

        if max_bundle_size is not None:
            archive.MAX_UNPACKED_BYTES = parse_size(max_bundle_size, option="--max-bundle-size")
        if max_bundle_files is not None:
            archive.MAX_FILES = int(max_bundle_files)


def _register() -> None:
    # One module per command group (Typer's own layout); imported here so `unetkit --help` lists them all.
    from unetkit.cli import bundle, data, doctor, evaluate, infer, info, plan, train

    app.command("plan")(plan.plan)
    app.command("train")(train.train)
    app.command("infer")(infer.infer)
    app.command("evaluate")(evaluate.evaluate)
    app.add_typer(bundle.app, name="bundle")
    app.add_typer(data.app, name="data")
    app.command("info")(info.info)
    app.command("doctor")(doctor.doctor)


_register()


class _WarningLine(logging.Handler):
    """unetkit's own warnings (a likely ignore label, the precision kept) as one yellow line on stderr, instead
    of logging's bare fallback."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            err.print(f"[yellow]{escape(record.getMessage())}[/]", soft_wrap=True, highlight=False)
        except Exception:  # a warning must never stop the command
            self.handleError(record)


def _show_library_warnings() -> None:
    log = logging.getLogger("unetkit")
    if not any(isinstance(h, _WarningLine) for h in log.handlers):
        handler = _WarningLine(logging.WARNING)
        log.addHandler(handler)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:
        # the reader went away (`unetkit infer --help | head`): nothing more to say, and no traceback at exit
        # when Python flushes stdout into the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
