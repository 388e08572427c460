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
_CORE = 4  # iou, dice, seg, f1_50: what a narrow terminal shows; the CSV has everything
_NAME_MIN = 16  # a name column narrower than this is folded into too many lines to read


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
    table, hidden = _table(results, summary, out.width)
    out.print(table)
    if hidden:
        out.print(f"{', '.join(hidden)}: in the CSV (too wide for this terminal)")
    out.print("all: means over images; SEG pooled over all reference objects, as the Cell Tracking Challenge does")
    out.print(f"scores: {csv_path}\nplot:   {png_path}")


def _table(results, summary: dict[str, float], width: int) -> tuple[Table, list[str]]:
    """The scores table for a terminal ``width`` wide, and the measures left out to fit it (the CSV has them).

    All measures when the names fit whole beside them, else the first :data:`_CORE` (IoU and SEG, then IoU
    alone, on very narrow terminals); names that do not fit are folded over lines, never cut.
    """
    names = [r.name for r in results] + ["all"]
    longest = max(map(len, names))
    folded = min(longest, _NAME_MIN)
    options = [(_SHOWN, longest), (_SHOWN[:_CORE], longest), (_SHOWN[:_CORE], folded), (("iou", "seg"), folded)]
    shown = next((cols for cols, name in options if _width(name, cols) <= width), _SHOWN[:1])
    table = Table(title=f"{len(results)} image(s)")
    table.add_column("image", overflow="fold", min_width=folded, ratio=1)
    table.add_column("objects", justify="right", no_wrap=True)
    for col in shown:
        table.add_column(col, justify="right", no_wrap=True)
    for r in results:
        table.add_row(r.name, str(r.n_objects), *(_fmt(r.scores[c]) for c in shown))
    table.add_row("[bold]all", str(sum(r.n_objects for r in results)), *(f"[bold]{_fmt(summary[c])}" for c in shown))
    return table, [c for c in _SHOWN if c not in shown]


def _width(name: int, shown: tuple[str, ...]) -> int:
    """Characters a table needs: each column its widest cell plus a border and two spaces, one closing border."""
    widths = [name, len("objects"), *(max(len(c), len("0.0000")) for c in shown)]
    return sum(w + 3 for w in widths) + 1


def _fmt(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.4f}"
