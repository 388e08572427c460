"""Recipes side by side on synthetic data: train, segment the held-out sequence, score it as the CTC does.

    python benchmarks/bench_recipes.py --kinds nuclei phase --seeds 3 --steps 200

For each ``--kind`` of ``unetkit data demo`` and each seed, trains ``bundles/phc_u373`` at the ``make demo``
width with (1) the default recipe and (2) the paper's (``--overlay configs/paper.json``), segments sequence
``02`` with ``unetkit infer`` and prints pooled SEG, F1 at IoU 0.5, mean AP over IoU 0.5:0.95, the object
count against the reference's and the wall time. Peers named by the issue (a 30-line MONAI script, Cellpose 3
from scratch) are not here yet: the table says so rather than leaving them out silently.

Everything goes through the public CLI, as a user would run it; a run takes minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from unetkit.metrics import seg_measure_pooled
from unetkit.metrics.instances import instance_scores

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"default": [], "paper": ["--overlay", "configs/paper.json"]}


def _run(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-c", "from unetkit.cli.app import main; main()", *args],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"unetkit {' '.join(args[:2])} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")


def score(pred_dir: Path, data: Path) -> dict[str, float]:
    """Pooled SEG, mean F1@0.5, mean AP over IoU 0.5:0.95, objects found and in the reference."""
    pairs = []
    for ref in sorted((data / "02_GT" / "SEG").glob("man_seg*.tif")):
        frame = ref.stem[len("man_seg"):]
        pairs.append((tifffile.imread(pred_dir / f"t{frame}_mask.tif"), tifffile.imread(ref)))
    thresholds = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))
    ap = [np.mean([s.precision * s.recall / max(s.precision + s.recall - s.precision * s.recall, 1e-9)
                   for s in instance_scores(p, g, thresholds=thresholds).values()]) for p, g in pairs]
    return {"seg": seg_measure_pooled(pairs),
            "f1": float(np.mean([instance_scores(p, g)[0.5].f1 for p, g in pairs])),
            "ap": float(np.mean(ap)),
            "found": sum(int(p.max()) for p, _ in pairs),
            "objects": sum(len(np.unique(g)) - 1 for _, g in pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["nuclei", "phase"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    print("peers not measured here yet: MONAI BasicUNet script, Cellpose 3 from scratch")
    print(f"{'kind':8} {'seed':>4} {'recipe':8} {'SEG':>6} {'F1@0.5':>7} {'AP':>6} {'found/ref':>10} {'s':>6}")
    with tempfile.TemporaryDirectory(prefix="bench-recipes-") as tmp:
        for kind in args.kinds:
            for seed in range(args.seeds):
                data = Path(tmp) / f"{kind}_{seed}"
                _run(["data", "demo", str(data), "--kind", kind, "--seed", str(seed)])
                for name in args.recipes:
                    run, pred = Path(tmp) / f"run_{kind}_{seed}_{name}", Path(tmp) / f"pred_{kind}_{seed}_{name}"
                    start = time.perf_counter()
                    _run(["train", "bundles/phc_u373", "--data", str(data), "--steps", str(args.steps), "--output",
                          str(run), "--seed", str(seed), "--set", "network_def::features=[16,32,64,128,256]",
                          *RECIPES[name]])
                    _run(["infer", str(run), str(data / "02"), "-o", str(pred)])
                    s = score(pred, data)
                    print(f"{kind:8} {seed:>4} {name:8} {s['seg']:6.3f} {s['f1']:7.3f} {s['ap']:6.3f} "
                          f"{s['found']:>4}/{s['objects']:<5} {time.perf_counter() - start:6.0f}", flush=True)


if __name__ == "__main__":
    main()
