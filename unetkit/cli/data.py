"""``unetkit data fetch|list|demo|export-ctc``."""

from __future__ import annotations

import typer

from unetkit.errors import UnetkitError

app = typer.Typer(help="Public data sets and the embedded demo data.", no_args_is_help=True)


@app.command()
def fetch() -> None:
    """Not built yet."""
    raise UnetkitError("'unetkit data fetch' is not implemented yet")
