"""Peak memory of inference: unetkit's streaming overlap-tile inferer beside MONAI's sliding window.

Each case runs in a fresh process that reports its own peak resident set (``ru_maxrss``) and the figure
after imports and building the network (its baseline), so the difference is what inference cost.

    python benchmarks/bench_memory.py            # 4096² uint8 TIFF and a 256³ uint8 NIfTI
    python benchmarks/bench_memory.py --quick    # 1024² and 64³: checks that it runs
    python benchmarks/bench_memory.py --cap      # unetkit infer --memory 512MiB/1GiB/2GiB: requested vs peak

- unetkit: the image is memory-mapped (``tifffile.memmap`` / nibabel's ``mmap``), labels go into a
  memory-mapped file through ``infer_to_array(..., postprocess=to_labels)``; with the default memory
  budget (the largest tile that fits a quarter of the free RAM, at most 4 GiB) and with a 256 MiB budget,
  to show the peak follows the budget, not the image or the number of classes.
- MONAI: the image read whole as float32, ``sliding_window_inference`` (512² / 96³ windows, overlap 0.25)
  with ``BasicUNet`` of the same widths, argmax, write.

With ``--cap`` each case is the command line itself, ``unetkit infer BUNDLE IMAGE -o OUT --memory SIZE``, in
a fresh process whose whole peak resident set (``ru_maxrss`` from ``wait4``) is compared with the cap: a
4096² TIFF with the 2D recipe (instance labels) and a 192³ NIfTI volume with the 3D recipe (resampled, class
indices), bundles with the narrow widths below and seeded random weights (memory does not depend on them).

Narrow networks (widths 8-128 in 2D, 4-32 in 3D) keep the run short on a CPU; the memory effects shown
(a full-size float32 logit buffer per class for MONAI, none for unetkit) do not depend on the width.
Resident pages of the memory-mapped input and output files count in RSS (the OS can drop them).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WIDTHS = {2: (8, 16, 32, 64, 128), 3: (4, 8, 16, 32)}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def make_inputs(folder: Path, size2d: int, size3d: int) -> dict[str, Path]:
    import nibabel as nib
    import tifffile

    rng = np.random.default_rng(0)
    tif = folder / f"image_{size2d}.tif"
    tifffile.imwrite(tif, rng.integers(0, 255, (size2d, size2d), dtype=np.uint8))
    half = folder / f"image_{size2d // 2}.tif"
    tifffile.imwrite(half, rng.integers(0, 255, (size2d // 2, size2d // 2), dtype=np.uint8))
    nii = folder / f"volume_{size3d}.nii"
    nib.save(nib.Nifti1Image(rng.integers(0, 255, (size3d,) * 3, dtype=np.uint8), np.eye(4)), nii)
    return {"tif": tif, "half": half, "nii": nii}


def child(case: dict) -> dict:
    """Run one case in this (fresh) process; return its figures."""
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import BasicUNet

    from unetkit.inferers import infer_to_array, to_labels
    from unetkit.networks import UNet

    torch.manual_seed(0)
    dims, classes, src, dst = case["dims"], case["classes"], Path(case["src"]), Path(case["dst"])
    features = WIDTHS[dims]
    if case["method"] == "unetkit":
        net = UNet(spatial_dims=dims, out_channels=classes, features=features).eval()
    else:  # BasicUNet always has 4 poolings: widths padded with the last one, then the output width
        widths = (*features, *[features[-1]] * (5 - len(features)), features[0])
        net = BasicUNet(spatial_dims=dims, out_channels=classes, features=widths).eval()
    baseline = _rss_mib()
    start = time.perf_counter()
    note = ""
    if case["method"] == "unetkit":
        image = _open_source(src)
        out = np.lib.format.open_memmap(dst, mode="w+", dtype=np.uint8, shape=image.shape)
        plan = infer_to_array(
            image[None], net, out, amp=False, memory_budget=case.get("budget"),
            preprocess=lambda t: t.astype(np.float32) / 255.0, postprocess=to_labels,
        )  # fmt: skip
        out.flush()
        note = f"{plan.n_tiles} x {'x'.join(map(str, plan.tile))}"
    else:
        image = torch.from_numpy(np.asarray(_open_source(src), dtype=np.float32) / 255.0)[None, None]
        roi = (512, 512) if dims == 2 else (96, 96, 96)
        with torch.no_grad():
            logits = sliding_window_inference(image, roi, 1, net, overlap=0.25)
        np.save(dst, logits[0].argmax(0).numpy().astype(np.uint8))
        note = f"roi {'x'.join(map(str, roi))}"
    return {"peak": _rss_mib(), "baseline": baseline, "seconds": time.perf_counter() - start, "note": note}


def _open_source(path: Path) -> np.ndarray:
    if path.suffix == ".nii":
        import nibabel as nib

        return np.asanyarray(nib.load(path, mmap=True).dataobj)  # a memmap for an uncompressed, unscaled file
    import tifffile

    return tifffile.memmap(path, mode="r")


def run_case(case: dict) -> dict:
    """Run ``case`` in a fresh interpreter (so earlier cases do not raise its peak)."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(case)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_bundle(dst: Path, recipe: str, features) -> Path:
    """``bundles/<recipe>`` with a narrower network and seeded random weights (no training needed)."""
    import shutil

    import torch

    from unetkit.bundle import read_config, write_config
    from unetkit.bundle.network import build_network

    repo = Path(__file__).resolve().parents[1] / "bundles" / recipe
    shutil.copytree(repo, dst, ignore=shutil.ignore_patterns("models", "checkpoints", "eval"))
    config = read_config(dst / "configs" / "common.json")
    config["network_def"]["features"] = list(features)
    write_config(dst / "configs" / "common.json", config)
    (dst / "models").mkdir()
    torch.manual_seed(0)
    torch.save(build_network(dst).state_dict(), dst / "models" / "model.pt")
    return dst


def run_cli(args: list[str]) -> tuple[int, float, float, str]:
    """``unetkit ARGS`` in a fresh process: (exit code, its peak RSS in MiB, seconds, last line)."""
    import os

    start = time.perf_counter()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("unetkit")), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    output = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    needs = [ln[ln.index("needs at least"):].split("(")[0].strip() for ln in lines if "needs at least" in ln]
    return proc.returncode, usage.ru_maxrss / 1024, time.perf_counter() - start, (needs or lines or [""])[-1]


def cap_cases(tmp: Path, size2d: int, size3d: int, caps: list[str]) -> None:
    import nibabel as nib
    import tifffile

    from unetkit.predict.model import parse_size

    rng = np.random.default_rng(0)
    tif = tmp / f"image_{size2d}.tif"
    tifffile.imwrite(tif, rng.integers(0, 255, (size2d, size2d), dtype=np.uint8))
    nii = tmp / f"volume_{size3d}.nii"
    nib.save(nib.Nifti1Image(rng.normal(50, 80, (size3d,) * 3).astype(np.int16), np.eye(4)), nii)
    bundles = {2: make_bundle(tmp / "b2d", "phc_u373", WIDTHS[2]), 3: make_bundle(tmp / "b3d", "spleen_ct_3d", WIDTHS[3])}
    print(f"{'input':>7s} {'output':>9s} {'--memory':>9s} {'peak MiB':>9s} {'peak/cap':>9s} {'seconds':>8s}  result")
    runs = ((2, tif, f"{size2d}²", "instances"), (2, tif, f"{size2d}²", "semantic"), (3, nii, f"{size3d}³", "classes"))
    for dims, src, shown, output in runs:
        for cap in caps:
            out = tmp / f"out_{dims}_{output}_{cap}"
            extra = ["--semantic"] if output == "semantic" else []
            rc, peak, seconds, last = run_cli(["infer", str(bundles[dims]), str(src), "-o", str(out), "--memory", cap,
                                               *extra])
            ratio = peak * 2**20 / parse_size(cap)
            result = "ok" if rc == 0 else f"refused: {last}"
            print(f"{shown:>7s} {output:>9s} {cap:>9s} {peak:9.0f} {ratio:9.2f} {seconds:8.1f}  {result}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1024² and 64³: checks that it runs")
    parser.add_argument("--cap", action="store_true", help="unetkit infer --memory: the cap against the peak")
    parser.add_argument("--caps", default="512MiB,1GiB,2GiB", help="the --memory values of --cap")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if args.cap:
        with tempfile.TemporaryDirectory() as tmp:
            cap_cases(Path(tmp), *((1024, 64) if args.quick else (4096, 192)), args.caps.split(","))
        return
    size2d, size3d = (1024, 64) if args.quick else (4096, 256)
    budget = 256 * 2**20
    with tempfile.TemporaryDirectory() as tmp:
        inputs = make_inputs(Path(tmp), size2d, size3d)
        cases = [
            ("unetkit", 2, "tif", 2, None),
            ("unetkit", 2, "tif", 2, budget),
            ("unetkit", 2, "tif", 8, budget),
            ("unetkit", 2, "half", 2, budget),
            ("MONAI", 2, "tif", 2, None),
            ("MONAI", 2, "tif", 8, None),
            ("MONAI", 2, "half", 2, None),
            ("unetkit", 3, "nii", 2, None),
            ("unetkit", 3, "nii", 2, budget),
            ("MONAI", 3, "nii", 2, None),
        ]
        sizes = {"tif": f"{size2d}²", "half": f"{size2d // 2}²", "nii": f"{size3d}³"}
        print(f"{'input':>7s} {'method':8s} {'classes':>7s} {'budget':>8s} {'peak MiB':>9s} {'above base':>10s} "
              f"{'seconds':>8s}  note")  # fmt: skip
        for method, dims, key, classes, limit in cases:
            case = {"method": method, "dims": dims, "classes": classes, "budget": limit}
            case.update(src=str(inputs[key]), dst=str(Path(tmp) / "out.npy"))
            r = run_case(case)
            shown = "-" if method == "MONAI" else ("default" if limit is None else f"{limit >> 20} MiB")
            above = r["peak"] - r["baseline"]
            print(f"{sizes[key]:>7s} {method:8s} {classes:>7d} {shown:>8s} {r['peak']:9.0f} {above:10.0f} "
                  f"{r['seconds']:8.1f}  {r['note']}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
