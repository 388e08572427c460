"""Training speed: unetkit's default precision policy against the old settings (float32, NCHW), same run.

A training step is what the bundles' ``SupervisedTrainer`` does per iteration: the trainer's inferer
(:class:`unetkit.inferers.AutocastInferer`) runs the network on one 572 x 572 tile, the weight-map cross
entropy is computed in float32 on its float32 logits, then backward and an SGD (momentum 0.99) update.
"default" is ``precision="auto"`` (bfloat16 autocast where the hardware does it natively, else float32;
channels-last weights and tiles); "old" is ``exact=True``, what every step was before: float32, NCHW, the
network called as it is (MONAI's ``SimpleInferer``). Each setting trains its own copy of the same network
on the same fixed batch; the settings take turns, ``--rounds`` times, and the best rate of each counts, so
load from other processes hits both alike.

    python benchmarks/bench_training.py                   # CPU: paper width 64..1024 and demo width 16..256
    python benchmarks/bench_training.py --widths 16       # the demo width only (~1 min on 2 cores)
    python benchmarks/bench_training.py --device cuda     # on a GPU machine
    python benchmarks/bench_training.py --quick
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import torch

from unetkit.inferers import AutocastInferer
from unetkit.losses import WeightMapCrossEntropyLoss
from unetkit.networks import UNet
from unetkit.precision import dtype_name, resolve_precision


def make_step(net, inferer, x, target):
    """One SGD step of ``net`` through ``inferer`` on the fixed batch; returns the loss."""
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.99)
    loss_fn = WeightMapCrossEntropyLoss()

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        logits = inferer(x, net)
        loss = loss_fn(logits, target)  # float32 logits, float32 weight map
        loss.backward()
        opt.step()
        return loss.item()

    return step


def steps_per_second(step, n: int, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def compare(width: int, device: str, tile: int, steps: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    base = UNet(2, 1, 2, [width * 2**k for k in range(5)]).to(device).train()
    x = torch.randn(1, 1, tile, tile, device=device)
    out = tile - 2 * base.geometry.margin
    labels = torch.randint(0, 2, (1, 1, out, out), device=device).float()
    target = torch.cat([labels, torch.ones_like(labels)], 1)  # label + weight map, as the bundles concatenate them
    settings = {"default (auto, channels-last)": AutocastInferer("auto"), "old (float32, NCHW)": AutocastInferer(exact=True)}
    steps_of = {name: make_step(copy.deepcopy(base), inferer, x, target) for name, inferer in settings.items()}
    for step in steps_of.values():  # warm-up: oneDNN/cuDNN kernels, momentum buffers
        step()
    best = {name: 0.0 for name in steps_of}
    for _ in range(rounds):
        for name, step in steps_of.items():
            best[name] = max(best[name], steps_per_second(step, steps, device))
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--widths", type=int, nargs="*", default=None, help="first-level widths (default 64 16)")
    parser.add_argument("--tile", type=int, default=572)
    parser.add_argument("--steps", type=int, default=None, help="steps per timed run (default 2 at width 64, else 5)")
    parser.add_argument("--rounds", type=int, default=3, help="turns each setting takes; the best rate counts")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--quick", action="store_true", help="width 8 on a 252 tile: checks that it runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    widths = args.widths or ([8] if args.quick else [64, 16])
    tile = 252 if args.quick else args.tile
    dtype, why = resolve_precision("auto", args.device)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.device}; precision auto here: {why}")
    print(f"{'width':>6s} {'tile':>5s} {'setting':32s} {'steps/s':>8s} {'s/step':>7s}")
    for width in widths:
        steps = args.steps or (2 if width >= 64 else 5)
        best = compare(width, args.device, tile, steps, 1 if args.quick else args.rounds)
        for name, rate in best.items():
            print(f"{width:>6d} {tile:>5d} {name:32s} {rate:8.2f} {1 / rate:7.2f}", flush=True)
        default, old = best.values()
        print(f"{'':12s} default is {default / old:.2f}x the old settings' steps/s ({dtype_name(dtype)} autocast)")


if __name__ == "__main__":
    main()
