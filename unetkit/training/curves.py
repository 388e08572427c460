"""Training curves as a PNG: loss and validation measures against the step."""

from __future__ import annotations

import csv
import os
from pathlib import Path


def plot_curves(csv_path: str | os.PathLike, png_path: str | os.PathLike) -> Path:
    """Draw ``metrics.csv`` (step, loss, val_*) into ``png_path``: loss on the left, validation on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    loss_csv = Path(csv_path).with_name("loss.csv")  # the loss every 1 % of the steps, where it was logged
    if loss_csv.is_file():
        with open(loss_csv, newline="") as f:
            dense = list(csv.DictReader(f))
        ax_loss.plot([int(r["step"]) for r in dense], [float(r["loss"]) for r in dense], lw=1)
    else:
        ax_loss.plot(steps, [float(r["loss"]) for r in rows], marker="o")
    ax_loss.set(xlabel="step", ylabel="training loss (weighted CE)", title="loss")
    for key in [k for k in (rows[0] if rows else {}) if k.startswith("val_")]:
        ax_val.plot(steps, [float(r[key]) for r in rows], marker="o", label=key)
    ax_val.set(xlabel="step", ylim=(0, 1), title="validation")
    ax_val.legend(loc="lower right")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
