"""Does augmentation keep up with training? Loader samples/s beside training steps/s, same run, same config.

The loader is the bundle's own ``train#dataloader`` (phc_u373: load, normalise, weight map, mirror-pad,
elastic 3x3 grid, rotation, flips, gray-value changes, at 572 x 572) on the embedded demo data, timed
alone with 0 and with the config's worker count. A training step is forward + backward + SGD update of
the bundle's network on one 572 x 572 tile, timed alone on a fixed batch, at the paper's width (64..1024)
and at the demo's (16..256). Ratio > 1: the loader produces samples faster than the network consumes
them, so augmentation does not starve training; below 1 it does, and more ``num_workers`` help.

    python benchmarks/bench_loader.py                  # CPU: ~3 min on 2 cores
    python benchmarks/bench_loader.py --device cuda    # the ratio that matters on a GPU machine
    python benchmarks/bench_loader.py --quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from bench_training import steps_per_second  # one timing loop (CUDA synchronised) for the training benchmarks
from unetkit.data import make_demo
from unetkit.losses import WeightMapCrossEntropyLoss
from unetkit.networks import UNet

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "phc_u373"


def loader_rate(data: Path, workers: int, n: int) -> float:
    """Samples per second of the bundle's training data loader (after its first batch)."""
    parser = ConfigParser()
    parser.read_config(BUNDLE / "configs" / "train.json")
    parser["dataset_dir"], parser["max_steps"], parser["num_workers"] = str(data), n + 2, workers
    loader = parser.get_parsed_content("train#dataloader")
    it = iter(loader)
    next(it)  # worker start-up and the first item's preprocessing are not the steady state
    start = time.perf_counter()
    count = sum(1 for _ in it)
    return count / (time.perf_counter() - start)


def step_rate(features, device: str, n: int) -> float:
    """Training steps per second of the network on one 572 x 572 tile (forward, backward, SGD)."""
    torch.manual_seed(0)
    net = UNet(2, 1, 2, features).to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99)
    loss_fn = WeightMapCrossEntropyLoss()
    x = torch.randn(1, 1, 572, 572, device=device)
    target = torch.stack([torch.randint(0, 2, (1, 572, 572)), torch.ones(1, 572, 572)], 1).float().to(device)

    def step():
        opt.zero_grad()
        loss_fn(net(x), target).backward()
        opt.step()

    step()  # warm-up: the first step allocates and picks kernels
    return steps_per_second(step, n, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="few samples and steps, to check that it runs")
    args = parser.parse_args()
    n_samples, n_steps = (6, 2) if args.quick else (40, 8)
    workers = ConfigParser.load_config_file(BUNDLE / "configs" / "train.json")["num_workers"]

    with tempfile.TemporaryDirectory() as tmp:
        data = make_demo(Path(tmp) / "demo", seed=0)
        loads = {w: loader_rate(data, w, n_samples) for w in sorted({0, workers})}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    for w, rate in loads.items():
        print(f"loader, num_workers={w}: {rate:7.2f} samples/s")
    for name, features in (("paper width 64..1024", [64, 128, 256, 512, 1024]), ("demo width 16..256", [16, 32, 64, 128, 256])):
        rate = step_rate(features, args.device, n_steps)
        ratios = ", ".join(f"{loads[w] / rate:.1f}x with {w} workers" for w in loads)
        print(f"training, {name}: {rate:7.2f} steps/s -> loader/steps ratio {ratios}")


if __name__ == "__main__":
    main()
