"""``unetkit evaluate PRED GT`` and ``unetkit evaluate BUNDLE --data DIR``: scores as a table, a CSV and a PNG."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from unetkit.cli.console import out
from unetkit.errors import UnetkitError

_SHOWN = ("iou", "dice", "seg", "f1_50", "rand_error", "warping_error")


def evaluate(
    pred: Annotated[Path, typer.Argument(help="Predictions (file or folder), or a bundle folder/zip with --data.")],
    gt: Annotated[Optional[Path], typer.Argument(help="References (file or folder), matched by name or CTC frame number.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="With a BUNDLE: the data set to segment and score (its validation split).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where evaluation.csv and evaluation.png go (default: PRED/evaluation or the bundle's eval/).")] = None,
    volume: Annotated[bool, typer.Option("--volume", help="Score 3D TIFF stacks as volumes, not frame by frame.")] = False,
    device: Annotated[str, typer.Option("--device", help="With a BUNDLE: auto, cpu, cuda or cuda:N.")] = "auto",
    trust: Annotated[bool, typer.Option("--trust", help="With a BUNDLE: skip the safety scan of its configs.")] = False,
) -> None:
    """Score predictions against references: IoU, Dice, CTC SEG (pooled), F1, Rand error, VI, warping error."""
    from unetkit.evaluation import evaluate_pairs, pair_files, pair_folders

    if data is not None:
        if gt is not None:
            raise UnetkitError("give either PRED GT or BUNDLE --data DIR, not both")
        from unetkit.evaluation.bundle import predict_validation

        pairs, default_out = predict_validation(pred, data, output=output, device=device, trust=trust)
    elif gt is None:
        raise UnetkitError("missing GT: `unetkit evaluate PRED GT`, or `unetkit evaluate BUNDLE --data DIR`")
    elif pred.is_dir() or gt.is_dir():
        pairs, default_out = pair_folders(pred, gt), (pred if pred.is_dir() else pred.parent) / "evaluation"
    else:
        pairs, default_out = pair_files(pred, gt), pred.parent / "evaluation"
    results, summary, csv_path, png_path = evaluate_pairs(pairs, output=output or default_out, volume=volume)
    table = Table(title=f"{len(results)} image(s)")
    table.add_column("image")
    table.add_column("objects", justify="right")
    for col in _SHOWN:
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r.name, str(r.n_objects), *(_fmt(r.scores[c]) for c in _SHOWN))
    table.add_row("[bold]all", str(sum(r.n_objects for r in results)), *(f"[bold]{_fmt(summary[c])}" for c in _SHOWN))
    out.print(table)
    out.print("all: means over images; SEG pooled over all reference objects, as the Cell Tracking Challenge does")
    out.print(f"scores: {csv_path}\nplot:   {png_path}")


def _fmt(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.4f}"
