"""What ``--save-table --save-rois --save-geojson`` add to ``unetkit infer`` on a 2048² image with ~2,000 objects.

One process, one image (2048², bright discs of radius 6-14 on a noisy ground, ~2,000 of them), the same
:func:`unetkit.predict.predict_file` that ``unetkit infer`` runs, in alternating rounds:

1. the plain mask run with a U-Net bundle (the phc_u373 recipe at ``--features``, random weights): the time a
   user pays for the mask today;
2. the writers' own cost, on a mask that really holds ~2,000 objects: a threshold bundle (a 1x1 convolution,
   foreground where the normalised pixel exceeds 0.5, objects its components; a random U-Net finds no cells)
   run plain and with the three writers; the difference is what the writers add. (The random U-Net's own
   mask is speckle: ~10^5 objects of a few pixels, no cells; timing the writers on it would measure nothing
   a user meets.)

Printed: median seconds of each, the writers' added seconds, and that time as a share of the plain U-Net run
(the acceptance: below 10 %). The narrower the network, the larger the share: the default quarter width
(16..256) is a conservative case for the paper's width (64..1024), which takes ~16x longer per tile.

    python benchmarks/bench_outputs.py                 # 3 rounds, quarter-width network
    python benchmarks/bench_outputs.py --repeats 1 --features 8 16 32 64 128   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "phc_u373"


def make_image(size: int = 2048, spacing: int = 45, seed: int = 0) -> tuple[np.ndarray, int]:
    """Discs on a grid with jitter (some touch), uint16 with noise; returns the image and the disc count."""
    rng = np.random.default_rng(seed)
    img = rng.normal(300, 40, (size, size))
    yy, xx = np.ogrid[:size, :size]
    count = 0
    for cy in range(spacing // 2, size - 10, spacing):
        for cx in range(spacing // 2, size - 10, spacing):
            r = rng.integers(6, 15)
            y, x = cy + rng.integers(-6, 7), cx + rng.integers(-6, 7)
            box = (slice(max(y - r, 0), y + r + 1), slice(max(x - r, 0), x + r + 1))
            img[box][(yy[box[0]] - y) ** 2 + (xx[:, box[1]] - x) ** 2 <= r * r] += 2000
            count += 1
    return np.clip(img, 0, 65535).astype(np.uint16), count


def make_bundle(root: Path, name: str, network_def: dict, state: dict, tile=None) -> Path:
    folder = root / name
    shutil.copytree(BUNDLE, folder, ignore=shutil.ignore_patterns("models", "checkpoints", "eval"))
    for config, changes in (("common.json", {"network_def": network_def}), ("inference.json", {})):
        path = folder / "configs" / config
        data = json.loads(path.read_text())
        data.update(changes)
        if config == "inference.json" and tile == "none":
            data.setdefault("inferer", {})["tile"] = None
        path.write_text(json.dumps(data))
    (folder / "models").mkdir()
    torch.save(state, folder / "models" / "model.pt")
    return folder


def bundles(root: Path, features: list[int]) -> tuple[Path, Path]:
    from unetkit.bundle.network import build_network

    unet_def = json.loads((BUNDLE / "configs" / "common.json").read_text())["network_def"]
    unet_def["features"] = features
    unet = make_bundle(root, "unet", unet_def, {})
    torch.manual_seed(0)
    torch.save(build_network(unet).state_dict(), unet / "models" / "model.pt")
    conv = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 1}
    state = {"weight": torch.tensor([-20.0, 20.0]).reshape(2, 1, 1, 1), "bias": torch.tensor([10.0, -10.0])}
    return unet, make_bundle(root, "threshold", conv, state, tile="none")


def timed(model, src: Path, out: Path, options) -> tuple[float, int]:
    from unetkit.predict import predict_file

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    r = predict_file(model, src, out, options)
    seconds = time.perf_counter() - start
    if not r.ok:
        sys.exit(f"{src}: {r.message}")
    return seconds, int(r.objects or 0)


def load(bundle: Path):
    from unetkit.predict import load_bundle_model

    return load_bundle_model(bundle, device="cpu", trust=True)  # bundles this script wrote


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--features", type=int, nargs=5, default=[16, 32, 64, 128, 256])
    args = parser.parse_args()

    from unetkit.io import write_image
    from unetkit.predict import PredictOptions

    plain, writers = PredictOptions(), PredictOptions(table=True, rois=True, geojson=True)
    with tempfile.TemporaryDirectory(prefix="bench-outputs-") as tmp:
        root = Path(tmp)
        image, discs = make_image(args.size)
        src = write_image(root / "cells.tif", image)
        unet_dir, threshold_dir = bundles(root, args.features)
        unet, threshold = load(unet_dir), load(threshold_dir)
        timed(threshold, src, root / "warm", writers)  # imports and first-call costs out of the rounds
        times: dict[str, list[float]] = {k: [] for k in ("unet", "threshold", "threshold+writers")}
        objects = {}
        load_before = os.getloadavg()[0]
        for _ in range(args.repeats):
            for key, model, options in (("unet", unet, plain), ("threshold", threshold, plain),
                                        ("threshold+writers", threshold, writers)):
                seconds, objects[key] = timed(model, src, root / key, options)
                times[key].append(seconds)
        load_after = os.getloadavg()[0]
    med = {k: statistics.median(v) for k, v in times.items()}
    added = med["threshold+writers"] - med["threshold"]
    print(f"image {args.size}x{args.size}, {discs} discs drawn; {args.repeats} round(s); torch threads "
          f"{torch.get_num_threads()}; load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs")
    print(f"{'run':<34}{'objects':>8}{'median s':>10}{'min s':>8}{'max s':>8}")
    names = {"unet": f"U-Net {args.features[0]}..{args.features[-1]}, mask only",
             "threshold": "threshold net, mask only", "threshold+writers": "threshold net, mask + writers"}
    for key in ("unet", "threshold", "threshold+writers"):
        v = times[key]
        print(f"{names[key]:<34}{objects[key]:>8}{med[key]:>10.2f}{min(v):>8.2f}{max(v):>8.2f}")
    print(f"writers add {added:.2f} s for {objects['threshold+writers']} objects: "
          f"{100 * added / med['unet']:.1f} % of the plain U-Net run (target < 10 %)")


if __name__ == "__main__":
    main()
