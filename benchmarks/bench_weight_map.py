"""Weight map: unetkit's windowed distance transforms beside the naive loop, same labels, same run.

The naive loop is the paper's definition as most U-Net ports write it: one full-image Euclidean distance
transform per cell, sort, keep the two smallest. Both give the same map (the largest difference is
printed); unetkit computes each cell's distances only within the cut-off where the border term is
still above 1e-6.

    python benchmarks/bench_weight_map.py            # full run
    python benchmarks/bench_weight_map.py --quick    # a few repeats, to check that it runs

Cases: 512 x 512 with 50 touching discs of radius 25 (30 % foreground, like DIC-HeLa frames) and of
radius 40 (58 % foreground, packed), and a 3D volume with anisotropic spacing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from scipy import ndimage as ndi

from unetkit.transforms import WeightMap, separate_touching


def touching_cells(shape, n, radius, seed):
    """Discs (balls) of ``radius`` around random centres; where two overlap the nearer centre wins."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (n, len(shape))) * np.array(shape)
    labels = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf)
    grid = np.indices(shape, dtype=np.float32)
    for i, c in enumerate(centres):
        d = np.sqrt(sum((g - x) ** 2 for g, x in zip(grid, c)))
        inside = (d < radius) & (d < best)
        labels[inside], best[inside] = i + 1, d[inside]
    return labels


def naive_weight_map(labels, *, w0=10.0, sigma=5.0, spacing=None, gap=1):
    """One full-image distance transform per cell; same class weights and band as unetkit's."""
    target_bg = separate_touching(labels, gap=gap) == 0
    n_bg = target_bg.sum()
    wc = np.where(target_bg, labels.size / (2 * n_bg), labels.size / (2 * (labels.size - n_bg)))
    ids = [i for i in np.unique(labels) if i != 0]
    d = np.stack([ndi.distance_transform_edt(labels != i, sampling=spacing) for i in ids])
    d.sort(0)
    return (wc + w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2)) * target_bg).astype(np.float32)


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times) * 1e3, statistics.median(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats, no 3D case: checks that it runs")
    parser.add_argument("--repeats", type=int, default=30, help="repeats of the fast map per case")
    args = parser.parse_args()
    repeats, naive_repeats = (3, 1) if args.quick else (args.repeats, 3)
    cases = [("512x512, 50 cells r=25", (512, 512), 50, 25, None), ("512x512, 50 cells r=40", (512, 512), 50, 40, None)]
    if not args.quick:
        cases.append(("48x160x160, 40 cells, spacing (2,1,1)", (48, 160, 160), 40, 18, (2.0, 1.0, 1.0)))

    print(f"scipy EDT, single thread; {os.cpu_count()} CPUs visible; best (median) of {repeats} / {naive_repeats} runs")
    print(f"{'case':40s} {'fg':>5s} {'naive ms':>16s} {'unetkit ms':>16s} {'speed-up':>9s} {'max |diff|':>11s}")
    for name, shape, n, radius, spacing in cases:
        labels = touching_cells(shape, n, radius, seed=0)
        wm = WeightMap(w0=10.0, sigma=5.0, spacing=spacing)
        wm(labels[None])  # warm-up
        fast, fast_best, fast_med = timed(lambda: wm(labels[None])[0], repeats)
        ref, naive_best, naive_med = timed(lambda: naive_weight_map(labels, spacing=spacing), naive_repeats)
        diff = float(np.abs(fast - ref).max())
        print(
            f"{name:40s} {(labels > 0).mean():5.0%} {naive_best:8.1f} ({naive_med:5.1f})"
            f" {fast_best:8.2f} ({fast_med:5.2f})"
            f" {naive_best / fast_best:8.1f}x {diff:11.1e}"
        )


if __name__ == "__main__":
    main()
