"""``unetkit bundle init|verify|pack|export``."""

from __future__ import annotations

import typer

from unetkit.errors import UnetkitError

app = typer.Typer(help="Create, verify, pack and export bundles.", no_args_is_help=True)


@app.command()
def verify() -> None:
    """Not built yet."""
    raise UnetkitError("'unetkit bundle verify' is not implemented yet")
