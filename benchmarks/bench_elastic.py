"""Elastic augmentation: unetkit's RandPaperElasticd beside MONAI's Rand2DElasticd, same data, same run.

One sample = one 572 x 572 single-channel float32 image (bilinear) plus its label (nearest), the paper's
training tile. The comparison is set up to be fair: MONAI gets ``spacing=(286, 286)``, the control-point
distance of the paper's 3 x 3 grid over 572 px, ``magnitude_range=(10, 10)`` (its offsets are N(0, 1)
times the magnitude, i.e. N(0, 10 px) as the paper's), no affine part, ``prob=1`` and the same modes and
padding. MONAI's grid has 6 x 6 points there (it adds points beyond the borders) and is upsampled to a
field larger than the image before cropping; ours is 3 x 3 upsampled straight to the image.

    python benchmarks/bench_elastic.py            # full run
    python benchmarks/bench_elastic.py --quick    # a few samples, to check that it runs
    python benchmarks/bench_elastic.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from monai.transforms import Rand2DElasticd

from unetkit.transforms import RandPaperElasticd


def time_interleaved(transforms, data, n, sync):
    """Seconds per sample of each transform, run in turn so that machine noise hits all of them alike."""
    times = [[] for _ in transforms]
    for i in range(n):
        for t, log in zip(transforms, times):
            t.set_random_state(seed=i)
            start = time.perf_counter()
            t(dict(data))
            sync()
            log.append(time.perf_counter() - start)
    return [statistics.median(log) for log in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few samples: checks that it runs")
    parser.add_argument("--samples", type=int, default=60, help="samples timed per transform")
    parser.add_argument("--size", type=int, default=572, help="tile size (the paper's: 572)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n = 5 if args.quick else args.samples
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, args.size, args.size, generator=g).to(device)
    label = (torch.rand(1, args.size, args.size, generator=g) > 0.5).float().to(device)
    data = {"image": image, "label": label}
    keys, modes = ["image", "label"], ("bilinear", "nearest")
    spacing = (args.size - 1) / 2
    ours = RandPaperElasticd(keys, prob=1.0, grid=3, sigma=10.0, mode=modes, padding_mode="reflection", device=device)
    ours_cubic = RandPaperElasticd(keys, prob=1.0, grid=3, sigma=10.0, mode=("bicubic", "nearest"), device=device)
    monai = Rand2DElasticd(
        keys, spacing=(spacing, spacing), magnitude_range=(10, 10), prob=1.0, mode=modes,
        padding_mode="reflection", device=device,
    )
    rows = [
        ("MONAI Rand2DElasticd (bilinear/nearest)", monai),
        ("unetkit RandPaperElasticd (bilinear/nearest)", ours),
        ("unetkit RandPaperElasticd (bicubic/nearest)", ours_cubic),
    ]
    time_interleaved([t for _, t in rows], data, 2, sync)  # warm-up
    seconds = time_interleaved([t for _, t in rows], data, n, sync)
    threads = torch.get_num_threads()
    print(f"{args.size}x{args.size} image + label, {device}, {threads} thread(s), median of {n} samples")
    print(f"{'transform':46s} {'samples/s':>10s} {'ms/sample':>10s} {'vs MONAI':>9s}")
    for (name, _), sec in zip(rows, seconds):
        print(f"{name:46s} {1 / sec:10.1f} {1e3 * sec:10.2f} {seconds[0] / sec:8.1f}x")


if __name__ == "__main__":
    main()
