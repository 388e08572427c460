"""``unetkit doctor``: what is installed, what works, and the fix for what does not."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from unetkit.cli.console import out

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def doctor(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="An output folder to check for write access.")] = None,
) -> None:
    """Check Python, torch, CUDA (build, driver, GPUs, free memory), MONAI, optional packages (and what each is
    for), folders and a forward pass; say which precision --precision auto takes on each device, and why."""
    from unetkit.diagnostics import run_checks

    checks = run_checks(output=output)
    table = Table(title="unetkit doctor")
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")  # paths and pip commands wrap whole at 80 columns
    for c in checks:
        table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status}[/]", c.detail, c.fix)
    out.print(table)
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        out.print(f"[bold red]broken:[/] {', '.join(failed)}: train/infer will not work until fixed")
        raise typer.Exit(code=1)
    out.print("ready: train and infer can run here" + ("" if any(c.name.startswith("cuda:") for c in checks) else " (CPU only)"))
