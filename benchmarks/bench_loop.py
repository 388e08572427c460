"""The annotation loop on synthetic data: fine-tuning a shared model on one frame, and a fold ensemble.

    python benchmarks/bench_loop.py                     # both parts
    python benchmarks/bench_loop.py --part finetune     # or --part folds

Fine-tuning (issue 15's first measure): a bundle trained on ``--kind phase`` (the "shared model"), then on
one annotated frame of ``--kind nuclei``: (1) the shared bundle untuned, (2) ``--finetune`` from it,
(3) a bundle trained from scratch on the same frame with the same number of steps. All three segment the
held-out nuclei sequence ``02``; pooled SEG, F1@0.5 and mean AP as in ``bench_recipes.py``.

Folds (its second): ``--folds 5`` on ``--kind phase``; each fold's bundle and the ensemble segment the
held-out sequence ``02``, and the ensemble's SEG is printed beside the mean of the folds'.

Everything goes through the public CLI at the ``make demo`` width, as a user would run it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipes import _run, score  # noqa: E402  (one scoring for every benchmark of recipes)

WIDTH = ["--set", "network_def::features=[16,32,64,128,256]"]


def _one_frame(src: Path, dst: Path) -> Path:
    """``src`` with sequence 01 cut to its first frame (and its gold truth), sequence 02 whole."""
    shutil.copytree(src, dst)
    for f in sorted((dst / "01").glob("t*.tif"))[1:]:
        f.unlink()
    for f in sorted((dst / "01_GT" / "SEG").glob("man_seg*.tif"))[1:]:
        f.unlink()
    return dst


def _segment(bundle: Path, data: Path, out: Path) -> dict:
    _run(["infer", str(bundle), str(data / "02"), "-o", str(out / "02"), "--overwrite"])
    return score(out, data, sequences=("02",))  # 01 is what the bundles trained on


def _row(name: str, s: dict, seconds: float | None) -> str:
    t = f"{seconds:.0f}" if seconds is not None else "-"
    return f"| {name} | {s['seg']:.3f} | {s['f1']:.3f} | {s['ap']:.3f} | {s['found']} / {s['objects']} | {t} |"


def finetune(tmp: Path, steps: int, tune_steps: int, seed: int) -> list[str]:
    _run(["data", "demo", str(tmp / "phase"), "--kind", "phase", "--seed", str(seed)])
    _run(["data", "demo", str(tmp / "nuclei_all"), "--kind", "nuclei", "--seed", str(seed + 1)])
    nuclei = _one_frame(tmp / "nuclei_all", tmp / "nuclei")
    rows = []
    t = time.perf_counter()
    _run(["train", "bundles/phc_u373", "--data", str(tmp / "phase"), "--steps", str(steps), "--output",
          str(tmp / "shared"), "--seed", str(seed), *WIDTH])
    rows.append(_row(f"shared bundle ({steps} steps on phase), untuned", _segment(tmp / "shared", nuclei, tmp / "o1"),
                     time.perf_counter() - t))
    t = time.perf_counter()
    _run(["train", str(tmp / "shared"), "--data", str(nuclei), "--finetune", "--steps", str(tune_steps),
          "--output", str(tmp / "tuned"), "--seed", str(seed)])
    rows.append(_row(f"`--finetune` on 1 nuclei frame, {tune_steps} steps", _segment(tmp / "tuned", nuclei, tmp / "o2"),
                     time.perf_counter() - t))
    t = time.perf_counter()
    _run(["train", "bundles/phc_u373", "--data", str(nuclei), "--steps", str(tune_steps), "--output",
          str(tmp / "scratch"), "--seed", str(seed), *WIDTH])
    rows.append(_row(f"from scratch on the same frame, {tune_steps} steps", _segment(tmp / "scratch", nuclei, tmp / "o3"),
                     time.perf_counter() - t))
    return rows


def folds(tmp: Path, k: int, steps: int, seed: int) -> list[str]:
    _run(["data", "demo", str(tmp / "phase"), "--kind", "phase", "--seed", str(seed)])  # 6 annotated frames
    t = time.perf_counter()
    _run(["train", "bundles/phc_u373", "--data", str(tmp / "phase"), "--folds", str(k), "--steps", str(steps),
          "--output", str(tmp / "ens"), "--seed", str(seed), *WIDTH])
    seconds = time.perf_counter() - t
    rows, segs = [], []
    for i in range(k):
        s = _segment(tmp / "ens" / "folds" / f"fold_{i}", tmp / "phase", tmp / f"f{i}")
        segs.append(s["seg"])
        rows.append(_row(f"fold {i} ({steps} steps)", s, None))
    rows.append(f"| mean of the {k} folds | {np.mean(segs):.3f} | | | | |")
    rows.append(_row(f"ensemble of the {k} folds", _segment(tmp / "ens", tmp / "phase", tmp / "fe"), seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["finetune", "folds", "both"], default="both")
    parser.add_argument("--steps", type=int, default=200, help="steps of the shared bundle and of each fold")
    parser.add_argument("--tune-steps", type=int, default=100, help="steps of fine-tuning and of the scratch run")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    header = ["| run | SEG | F1@0.5 | mean AP | objects | s |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.part in ("finetune", "both"):
            print("\n".join(header + finetune(tmp / "ft", args.steps, args.tune_steps, args.seed)), flush=True)
        if args.part in ("folds", "both"):
            print("\n".join(header + folds(tmp / "k", args.folds, args.steps, args.seed)), flush=True)


if __name__ == "__main__":
    main()
