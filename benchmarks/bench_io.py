"""unetkit.io against MONAI's LoadImage / plain in-memory writing, in one run: time and peak memory.

Cases (each in its own process, so that peak RSS is its own):

- ``write-stream``: a ``N x N`` uint16 label TIFF filled band by band through ``open_output`` (memory-mapped).
- ``write-memory``: the same image built in memory and written with ``write_image`` (what a naive writer does).
- ``read-mmap``: ``read_image(..., mmap=True)`` of that TIFF and one 512 x 512 tile of it summed.
- ``read-full``: ``read_image`` of that TIFF.
- ``monai-read``: MONAI ``LoadImage`` (its default reader choice) of that TIFF.
- ``stack-read`` / ``monai-stack-read``: a 30 x 512 x 512 uint8 stack (ISBI 2012's shape), ours and MONAI's,
  with the shape each returns (mean of 10 reads).

MONAI's ``LoadImage`` is used as a user would call it (defaults: its reader choice, float32 output), so its
memory includes the float32 copy that ``read_image`` (file dtype) does not make.

Figures are MiB above the process's own after imports and a warm-up read (library loading is not counted):
peak RSS (VmHWM, which also counts file pages mapped in, reclaimable by the OS) and heap (RssAnon: memory
that only the process can free) at the fullest point.

Usage:
    python benchmarks/bench_io.py            # N = 16384 (the 16k x 16k case of docs/benchmarks.md)
    python benchmarks/bench_io.py --quick    # N = 2048, a few seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


_STACK_REPEATS = 10  # the stack reads take milliseconds: report the mean of several


def _status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmHWM = peak RSS, RssAnon = heap, not files)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _case(name: str, folder: Path, n: int) -> dict:
    """Run one case in this process: seconds, peak RSS and anonymous memory at the fullest point, in MiB above
    the figures after imports and a warm-up read (so library loading, e.g. ITK's, is not counted)."""
    import warnings

    warnings.simplefilter("ignore")
    from monai.transforms import LoadImage

    from unetkit.io import open_output, read_image, write_image

    big, stack, tiny = folder / "big.tif", folder / "stack.tif", folder / "tiny.tif"
    LoadImage(image_only=True)(str(tiny)) if name.startswith("monai") else read_image(tiny)
    base_peak, base_anon = _status_mib("VmHWM"), _status_mib("RssAnon")
    anon = {}
    t0 = time.perf_counter()
    extra = {}
    if name == "write-stream":
        with open_output(big, (n, n), np.uint16) as out:
            for y in range(0, n, 512):
                out[y : y + 512] = (np.arange(y, min(y + 512, n), dtype=np.uint16)[:, None] % 7)
            anon["fullest"] = _status_mib("RssAnon")
    elif name == "write-memory":
        arr = np.empty((n, n), np.uint16)
        for y in range(0, n, 512):
            arr[y : y + 512] = (np.arange(y, min(y + 512, n), dtype=np.uint16)[:, None] % 7)
        anon["fullest"] = _status_mib("RssAnon")
        write_image(folder / "big-memory.tif", arr)
    elif name == "read-mmap":
        arr, _ = read_image(big, mmap=True)
        extra["tile_sum"] = int(arr[n // 2 : n // 2 + 512, n // 2 : n // 2 + 512].sum())
    elif name == "read-full":
        arr, _ = read_image(big)
        extra["shape"] = list(arr.shape)
    elif name == "monai-read":
        arr = LoadImage(image_only=True)(str(big))
        extra["shape"], extra["dtype"] = list(arr.shape), str(arr.dtype)
    elif name == "stack-read":
        for _ in range(_STACK_REPEATS):
            arr, _ = read_image(stack)
        extra["shape"] = list(arr.shape)
    elif name == "monai-stack-read":
        for _ in range(_STACK_REPEATS):
            arr = LoadImage(image_only=True)(str(stack))
        extra["shape"], extra["dtype"] = list(arr.shape), str(arr.dtype)
    seconds = (time.perf_counter() - t0) / (_STACK_REPEATS if "stack" in name else 1)
    anon.setdefault("fullest", _status_mib("RssAnon"))
    return {"case": name, "seconds": seconds, "peak_rss": _status_mib("VmHWM") - base_peak,
            "anon": anon["fullest"] - base_anon, **extra}


def _prepare_stack(folder: Path) -> None:
    import tifffile

    rng = np.random.default_rng(0)
    tifffile.imwrite(folder / "stack.tif", rng.integers(0, 255, (30, 512, 512), dtype=np.uint8))
    tifffile.imwrite(folder / "tiny.tif", np.zeros((8, 8), np.uint16))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 2048 instead of 16384")
    parser.add_argument("--size", type=int, default=None, help="image side N")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    n = args.size or (2048 if args.quick else 16384)
    if args.case:  # child process
        print(json.dumps(_case(args.case, Path(args.folder), n)))
        return
    cases = ["write-stream", "write-memory", "read-mmap", "read-full", "monai-read", "stack-read", "monai-stack-read"]
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        _prepare_stack(Path(folder))
        print(f"image {n} x {n} uint16 ({n * n * 2 / 2**20:.0f} MiB), stack 30 x 512 x 512 uint8")
        print(f"{'case':18s} {'seconds':>8s} {'peak RSS MiB':>13s} {'heap MiB':>9s}  notes")
        for case in cases:
            cmd = [sys.executable, __file__, "--case", case, "--folder", folder, "--size", str(n)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{case:18s} failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            notes = {k: v for k, v in r.items() if k not in ("case", "seconds", "peak_rss", "anon")}
            print(f"{case:18s} {r['seconds']:8.3f} {r['peak_rss']:13.1f} {r['anon']:9.1f}  {notes or ''}")


if __name__ == "__main__":
    main()
