"""``evaluate_pairs``: score every pair and write the report files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from unetkit.evaluation.pairing import Pair
from unetkit.evaluation.report import write_csv, write_figure
from unetkit.evaluation.scoring import ImageScore, score_pair, summarise

__all__ = ["evaluate_pairs"]


def evaluate_pairs(
    pairs: Sequence[Pair],
    *,
    output: str | os.PathLike,
    volume: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[ImageScore], dict[str, float], Path, Path]:
    """Score every pair; write ``evaluation.csv`` and ``evaluation.png`` into ``output``.

    Returns:
        The per-image scores, the summary (means, SEG pooled), and the two files' paths.
    """
    results: list[ImageScore] = []
    for i, pair in enumerate(pairs):
        results.extend(score_pair(pair, volume=volume))
        if progress is not None:
            progress(i + 1, len(pairs))
    summary = summarise(results)
    out = Path(output)
    csv_path = write_csv(out / "evaluation.csv", results, summary)
    png_path = write_figure(out / "evaluation.png", results, {p.name: p for p in pairs})
    return results, summary, csv_path, png_path
