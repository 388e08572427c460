"""``unetkit data fetch|list|demo|export-ctc``: public data sets, demo data, challenge results."""

from __future__ import annotations

from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlparse

import typer
from rich.table import Table
from rich.text import Text

from unetkit.cli.console import err, out, show_progress

app = typer.Typer(help="Public data sets and the embedded demo data.", no_args_is_help=True)

_DIR_HELP = "Folder holding the data sets (default: $UNETKIT_DATA, else ~/.cache/unetkit/data)."


class DemoKind(str, Enum):
    basic = "basic"
    fluorescence = "fluorescence"
    nuclei = "nuclei"
    phase = "phase"
    dic = "dic"
    em = "em"
    ct = "ct"


@contextmanager
def _progress_bar(description: str):
    """A rich download bar on a terminal; on a pipe or in a log, no callback at all."""
    if not show_progress():
        yield None
        return
    from rich import progress as rp

    columns = (rp.TextColumn("{task.description}"), rp.BarColumn(), rp.DownloadColumn(), rp.TransferSpeedColumn())
    with rp.Progress(*columns, rp.TimeRemainingColumn(), console=err.get(), transient=True) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Data set: phc_u373, dic_hela, isbi2012 or msd_spleen.")],
    data_dir: Annotated[Optional[Path], typer.Option("--dir", help=_DIR_HELP)] = None,
    archive: Annotated[
        Optional[Path],
        typer.Option("--archive", help="Unpack this file, downloaded by hand, instead of downloading."),
    ] = None,
) -> None:
    """Download a public data set, check its checksum and unpack it; prints its folder."""
    from unetkit.data import fetch as fetch_dataset

    with _progress_bar(f"downloading {name}") as progress:
        path = fetch_dataset(name, data_dir, progress=progress, archive=archive)
    out.print(str(path), soft_wrap=True, markup=False)


@app.command("list")
def list_datasets(data_dir: Annotated[Optional[Path], typer.Option("--dir", help=_DIR_HELP)] = None) -> None:
    """List the data sets unetkit can fetch and whether they are on disk."""
    from unetkit.data import DATASETS, dataset_path, is_present

    table = Table("name", "title", "source", "on disk")
    table.columns[0].no_wrap = True
    table.columns[2].overflow = table.columns[3].overflow = "fold"  # hosts and paths stay whole
    for name, info in DATASETS.items():
        where = str(dataset_path(name, data_dir)) if is_present(name, data_dir) else "not fetched"
        table.add_row(name, info.title, urlparse(info.url).netloc, Text(where))  # Text: a path is not markup
    out.print(table)


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Folder to write the demo data set into.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed: the same seed writes the same data.")] = 0,
    kind: Annotated[
        DemoKind,
        typer.Option(
            "--kind",
            help="CTC layout: basic (easy cells, phase-contrast look) or fluorescence (the same cells); "
            "nuclei, phase, dic, em: imitations of DSB 2018 nuclei, PhC-C2DH-U373, DIC-C2DH-HeLa and "
            "ISBI 2012 EM (docs/demo_data.md). ct: volumes, MSD layout.",
        ),
    ] = DemoKind.basic,
) -> None:
    """Write synthetic, learnable demo data; prints the folder."""
    from unetkit.data import make_demo, make_demo_volumes

    if kind is DemoKind.ct:
        path = make_demo_volumes(folder, seed=seed)
    else:
        path = make_demo(folder, seed=seed, kind=kind.value)
    out.print(str(path), soft_wrap=True, markup=False)


@app.command("export-ctc")
def export_ctc(
    pred_dir: Annotated[Path, typer.Argument(help="Folder of tTTT_mask.tif files written by `unetkit infer`.")],
    out_dir: Annotated[Path, typer.Argument(help="Results root; SEQUENCE_RES/ is written inside it.")],
    sequence: Annotated[str, typer.Option("--sequence", help="Sequence name, 01 or 02.")] = "01",
) -> None:
    """Write predicted masks in the Cell Tracking Challenge results layout (SEQUENCE_RES/maskTTT.tif)."""
    from unetkit.data import export_ctc_folder

    out.print(str(export_ctc_folder(pred_dir, out_dir, sequence=sequence)), soft_wrap=True, markup=False)
