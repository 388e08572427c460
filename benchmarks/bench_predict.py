"""`unetkit infer`'s per-file workflow beside MONAI's runner on the same bundle, and its streaming path's memory.

1. Where the time goes. The same bundle folder (phc_u373 recipe, random weights) segments the same TIFFs
   twice in one process: through :func:`unetkit.predict.predict_files` (what ``unetkit infer`` runs) and
   through MONAI's ``ConfigWorkflow`` on the bundle's own ``configs/inference.json`` (what
   ``python -m monai.bundle run`` runs: DataLoader, transforms, ``SupervisedEvaluator``, decollate,
   ``SaveMaskd``). Both use unetkit's overlap-tile inferer, so the network does the same work; the rest is
   orchestration: reading, normalising, labelling, writing. Printed: seconds per file, the share of wall
   time spent inside the network's forward (timed by hooks), and the ratio of the two wall times.
2. Memory of a large image. One single-plane TIFF, instance labels, in a fresh process per case: the
   in-memory path against the streaming path (memory-mapped input, outputs and scratch maps on disk):
   peak RSS (VmHWM, which counts mapped file pages while they are resident, reclaimable by the system)
   and peak heap (RssAnon, polled: memory only the process can free), above the process after a warm-up.

    python benchmarks/bench_predict.py            # 8 files 512², paper network; 8192² for memory
    python benchmarks/bench_predict.py --quick    # 3 files 256², quarter-width network; 2048²: checks it runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "phc_u373"


def make_bundle(root: Path, features: list[int]) -> Path:
    from unetkit.networks import UNet

    folder = root / "bundle"
    shutil.copytree(BUNDLE, folder)
    path = folder / "configs" / "inference.json"
    config = json.loads(path.read_text())
    config["network_def"]["features"] = features
    path.write_text(json.dumps(config))
    (folder / "models").mkdir()
    torch.manual_seed(0)
    torch.save(UNet(features=tuple(features)).state_dict(), folder / "models" / "model.pt")
    return folder


class NetworkClock:
    """Wall time spent inside a module's forward, from hooks on the module itself."""

    def __init__(self, module: torch.nn.Module):
        self.seconds, self._start = 0.0, 0.0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, *_):
        self._start = time.perf_counter()

    def _post(self, *_):
        self.seconds += time.perf_counter() - self._start


def run_unetkit(bundle: Path, paths: list[Path], out: Path) -> tuple[float, float]:
    from unetkit.predict import load_bundle_model, predict_files

    model = load_bundle_model(bundle, device="cpu")
    clock = NetworkClock(model.network)
    predict_files(model, paths[:1], out / "warm")  # oneDNN builds its kernels on the first call of a shape
    clock.seconds = 0.0
    start = time.perf_counter()
    results = predict_files(model, paths, out / "unetkit")
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    return time.perf_counter() - start, clock.seconds


def run_monai(bundle: Path, data: Path, out: Path) -> tuple[float, float]:
    from monai.bundle import ConfigWorkflow

    def workflow(target: Path, pattern: str):
        wf = ConfigWorkflow(config_file=str(bundle / "configs" / "inference.json"), workflow_type="infer",
                            logging_file=False, bundle_root=str(bundle), dataset_dir=str(data),
                            output_dir=str(target), **{"datalist#pattern": pattern})
        wf.initialize()
        return wf

    warm = workflow(out / "monai-warm", "f000.tif")
    warm.run()
    wf = workflow(out / "monai", "*.tif")
    clock = NetworkClock(wf.parser.get_parsed_content("network"))
    start = time.perf_counter()
    wf.run()
    return time.perf_counter() - start, clock.seconds


def overhead(args, tmp: Path) -> None:
    n, size, features = (3, 256, [16, 32, 64, 128, 256]) if args.quick else (8, 512, [64, 128, 256, 512, 1024])
    bundle = make_bundle(tmp, features)
    data = tmp / "in"
    data.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(data / f"f{i:03d}.tif")
        tifffile.imwrite(paths[-1], rng.integers(0, 255, (size, size), dtype=np.uint8))
    ours, ours_net = run_unetkit(bundle, paths, tmp)
    theirs, theirs_net = run_monai(bundle, data, tmp)
    same = all(np.array_equal(tifffile.imread(tmp / "unetkit" / f"f{i:03d}_mask.tif"),
                              tifffile.imread(tmp / "monai" / f"f{i:03d}_mask.tif")) for i in range(n))
    print(f"\n{n} files {size}², features {features[0]}..{features[-1]}, {torch.get_num_threads()} thread(s); "
          f"masks identical: {same}")
    print(f"{'workflow':28s} {'s/file':>8s} {'network s/file':>15s} {'network share':>14s} {'wall vs MONAI':>14s}")
    for name, wall, net in (("unetkit predict_files", ours, ours_net), ("MONAI runner (same bundle)", theirs, theirs_net)):
        print(f"{name:28s} {wall / n:8.3f} {net / n:15.3f} {100 * net / wall:13.1f}% {theirs / wall:13.2f}x")


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class HeapPeak:
    """Highest RssAnon (memory only the process can free; mapped file pages excluded) seen, polled every 5 ms."""

    def __init__(self):
        import threading

        self.peak, self._stop = _status_mib("RssAnon"), threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _status_mib("RssAnon"))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _status_mib("RssAnon"))


def child(case: dict) -> dict:
    from unetkit.predict import PredictOptions, load_bundle_model, predict_file

    model = load_bundle_model(case["bundle"], device="cpu").with_settings(tile=case["tile"])
    predict_file(model, case["warm"], case["out"] + "-warm")  # imports and oneDNN kernels out of the figure
    base_rss, base_heap = _status_mib("VmRSS"), _status_mib("RssAnon")
    heap = HeapPeak()
    start = time.perf_counter()
    result = predict_file(model, case["src"], case["out"], PredictOptions(stream_pixels=case["stream_pixels"]))
    seconds = time.perf_counter() - start
    assert result.ok, result.message
    return {"rss": _status_mib("VmHWM") - base_rss, "heap": heap.stop() - base_heap, "seconds": seconds,
            "objects": result.objects}


def memory(args, tmp: Path) -> None:
    size, tile = (2048, 572) if args.quick else (8192, 572)
    bundle = make_bundle(tmp / "mem", [4, 8, 16, 32, 64])
    src, warm = tmp / "big.tif", tmp / "warm.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(warm, rng.integers(0, 255, (600, 600), dtype=np.uint8))
    image = tifffile.memmap(src, shape=(size, size), dtype=np.uint8)
    for y in range(0, size, 1024):
        image[y:y + 1024] = rng.integers(0, 255, image[y:y + 1024].shape, dtype=np.uint8)
    image.flush()
    del image
    print(f"\n{size}² uint8 TIFF ({size * size / 2**20:.0f} Mpx), instance labels, features 4..64, {tile} tiles; "
          "MiB above the process after a warm-up file")
    print(f"{'path':10s} {'peak RSS':>9s} {'peak heap':>10s} {'seconds':>8s} {'objects':>9s}")
    for name, threshold in (("in memory", 2**62), ("streamed", 0)):
        case = {"bundle": str(bundle), "src": str(src), "warm": str(warm), "out": str(tmp / name.replace(" ", "_")),
                "stream_pixels": threshold, "tile": tile}
        done = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], check=True,
                              capture_output=True, text=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:10s} {r['rss']:9.0f} {r['heap']:10.0f} {r['seconds']:8.1f} {r['objects']:9d}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs and network: checks that it runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    os.environ.setdefault("MPLBACKEND", "Agg")
    with tempfile.TemporaryDirectory() as tmp:
        overhead(args, Path(tmp))
        memory(args, Path(tmp))


if __name__ == "__main__":
    main()
