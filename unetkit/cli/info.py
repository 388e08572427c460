"""``unetkit info``: versions and devices, as a table."""

from __future__ import annotations

import platform

from rich.table import Table

import unetkit
from unetkit.cli.console import out


def info() -> None:
    """Versions of unetkit, Python, torch and MONAI, and whether CUDA is available (with its devices)."""
    import monai
    import torch

    table = Table(title="unetkit", show_header=True)
    table.add_column("component")
    table.add_column("version / state")
    table.add_row("unetkit", unetkit.__version__)
    table.add_row("python", platform.python_version())
    table.add_row("torch", torch.__version__)
    table.add_row("monai", monai.__version__)
    cuda = torch.cuda.is_available()
    table.add_row("CUDA available", "yes" if cuda else "no (CPU only)")
    table.add_row("CUDA build", str(torch.version.cuda or "none (CPU build of torch)"))
    if cuda:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            table.add_row(f"cuda:{i}", f"{p.name}, {p.total_memory / 2**30:.1f} GiB")
    table.add_row("CPU threads (torch)", str(torch.get_num_threads()))
    out.print(table)
