"""The evaluation's outputs: a CSV of per-image scores and a PNG of scores and worst cases."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from unetkit.evaluation.pairing import Pair
from unetkit.evaluation.scoring import COLUMNS, ImageScore

__all__ = ["write_csv", "write_figure"]


def write_csv(path: str | os.PathLike, results: list[ImageScore], summary: dict[str, float]) -> Path:
    """One row per image (``image``, ``objects``, then the measures) and a last row ``ALL`` (SEG pooled)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "objects", *COLUMNS])
        for r in results:
            w.writerow([r.name, r.n_objects, *(_fmt(r.scores[c]) for c in COLUMNS)])
        w.writerow(["ALL", sum(r.n_objects for r in results), *(_fmt(summary[c]) for c in COLUMNS)])
    os.replace(tmp, path)
    return path


def _fmt(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.6g}"


def _overlay(ax, pair: Pair, name: str, title: str) -> None:
    from skimage.segmentation import find_boundaries

    from unetkit.io import read_image

    pred = np.squeeze(np.asarray(read_image(pair.pred)[0]))
    gt = np.squeeze(np.asarray(read_image(pair.gt)[0]))
    if "#" in name and pred.ndim == 3:
        i = int(name.rsplit("#", 1)[1])
        pred, gt = pred[i], gt[i]
    elif pred.ndim == 3:
        pred, gt = pred[pred.shape[0] // 2], gt[gt.shape[0] // 2]
    rgb = np.zeros(gt.shape + (3,))
    rgb[gt > 0] = 0.25
    rgb[find_boundaries(gt, mode="inner")] = (0.0, 1.0, 0.0)
    rgb[find_boundaries(pred, mode="inner")] = (1.0, 0.0, 1.0)
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def write_figure(path: str | os.PathLike, results: list[ImageScore], pairs: dict[str, Pair], *,
                 key: str = "iou", worst: int = 3) -> Path:
    """Per-image scores (IoU and SEG) and the ``worst`` images by ``key`` with outlines (green reference,
    magenta prediction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(results, key=lambda r: (math.isnan(r.scores[key]), r.scores[key]))[:worst]
    fig = plt.figure(figsize=(4 + 3 * len(order), 4), constrained_layout=True)
    grid = fig.add_gridspec(1, 1 + len(order))
    ax = fig.add_subplot(grid[0, 0])
    x = np.arange(len(results))
    for col, marker in (("iou", "o"), ("seg", "s")):
        ax.plot(x, [r.scores[col] for r in results], marker, label=col, alpha=0.8)
    ax.set(ylim=(0, 1.02), xlabel="image", ylabel="score", title="per image")
    ax.legend(loc="lower left")
    for i, r in enumerate(order):
        _overlay(fig.add_subplot(grid[0, 1 + i]), pairs[r.name.split("#")[0]], r.name, f"{r.name}: {key} {r.scores[key]:.3f}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
    return path
