"""Inference speed: unetkit's overlap-tile pipeline beside MONAI's sliding window and a naive tile loop.

All run end to end on the same TIFF in the same process: read, pad/tile, network, stitch, argmax, write a
label TIFF. FLOPs are counted analytically from the convolutions actually run (2 x MACs per tile or window,
shapes traced on the ``meta`` device), so FLOP/s compare work done, and seconds per output megapixel compare
what a user waits for.

    python benchmarks/bench_inference.py --sizes 512 2048    # the issue's two sizes, paper network
    python benchmarks/bench_inference.py                     # 512², 2048², 4096² (half width)
    python benchmarks/bench_inference.py --quick             # 512² and 1024², quarter-width networks

- peak: a large float32 matmul and conv-only runs (3x3 convolutions on small maps with many channels,
  oneDNN, channels-last) give the machine's attainable float32 GFLOP/s; the larger is "peak".
- unetkit: ``infer_to_array`` with its defaults (channels-last; the precision ``"auto"`` takes on this CPU for a
  trained network: bfloat16 autocast with AVX512-BF16/AMX, else float32; see :func:`auto_settings`) from a
  memory-mapped TIFF into a memory-mapped label TIFF, tile chosen for the default memory budget. ``--exact``
  adds a row for the bit-exact path (float32, NCHW).
- bare network: the same network on the same tiles (same precision and layout), forward passes only, no
  reading, gathering, argmax or writing: what the end-to-end figure is measured against.
- MONAI: ``sliding_window_inference`` (512² windows, overlap 0.25) with ``BasicUNet`` of the same widths, as
  a user runs it (float32, NCHW); ``--monai-same-precision`` adds a row with unetkit's precision and layout.
- naive (``--naive``): np.pad the whole image, loop over 572 tiles one at a time (stride 384, so the result is
  right), float32 logits for the whole image, argmax, write.
- ``--ablation``: one forward pass of the paper network on a 700 tile: NCHW vs channels-last, float32 vs
  bfloat16, oneDNN off, 1 thread; and channels-last on 572 to 1212 tiles (rate against tile size).

Each method is warmed up first (on the same image up to 1024², else on a 300² one): oneDNN builds its
kernels on the first call of each shape.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import BasicUNet

from unetkit.inferers import infer_to_array, to_labels
from unetkit.inferers.engine import to_layout
from unetkit.networks import UNet
from unetkit.precision import autocast, dtype_name, resolve_precision


def conv_flops(network: torch.nn.Module, shape) -> int:
    """2 x multiply-adds of every convolution for one input of ``shape``, from a shape-only (meta) pass."""
    total = [0]

    def count(m, inputs, output):
        if isinstance(m, torch.nn.modules.conv._ConvTransposeNd):
            macs = inputs[0].numel() * m.out_channels // m.groups * math.prod(m.kernel_size)
        else:
            macs = output.numel() * m.in_channels // m.groups * math.prod(m.kernel_size)
        total[0] += 2 * macs

    hooks = [m.register_forward_hook(count) for m in network.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    tensors = dict(network.named_parameters(), **dict(network.named_buffers()))
    meta = {k: torch.empty_like(v, device="meta") for k, v in tensors.items()}
    try:
        with torch.no_grad():
            torch.func.functional_call(network, meta, (torch.empty(tuple(shape), device="meta"),))
    finally:
        for h in hooks:
            h.remove()
    return total[0]


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure_peak(quick: bool) -> dict[str, float]:
    """GFLOP/s of a large float32 matmul and the best of a few compute-bound 3x3 convolutions (oneDNN,
    channels-last; small maps, many channels, so that they run from cache at the FMA units' rate)."""
    n = 2048 if quick else 4096
    a, b = torch.rand(n, n), torch.rand(n, n)
    matmul = 2 * n**3 / best_of(lambda: a @ b, 2 if quick else 5) / 1e9
    conv_rates = []
    for channels, size in ((64, 256), (128, 128), (256, 64)):
        conv = torch.nn.Conv2d(channels, channels, 3).eval().to(memory_format=torch.channels_last)
        x = torch.rand(1, channels, size, size).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            seconds = best_of(lambda: conv(x), 3 if quick else 10)
        conv_rates.append(conv_flops(conv, x.shape) / seconds / 1e9)
    return {"matmul": matmul, "conv": max(conv_rates)}


def cell_image(size: int, seed: int = 0) -> np.ndarray:
    """A phase-contrast-like uint8 image: bright blobs on a noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = rng.normal(60, 12, (size, size)).astype(np.float32)
    for cy, cx, r in zip(*rng.uniform(0, size, (2, size * size // 4000)), rng.uniform(8, 25, size * size // 4000)):
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, size))
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, size))
        blob = np.exp(-((yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2) / (r * r))
        img[y0:y1, x0:x1] += 120 * blob
    return np.clip(img, 0, 255).astype(np.uint8)


def run_unetkit(src: Path, dst: Path, net, **settings) -> tuple[float, int, str]:
    start = time.perf_counter()
    image = tifffile.memmap(src, mode="r")
    out = tifffile.memmap(dst, shape=image.shape, dtype=np.uint8)
    plan = infer_to_array(
        image[None], net, out, **settings,
        preprocess=lambda tile: tile.astype(np.float32) / 255.0, postprocess=to_labels,
    )  # fmt: skip
    out.flush()
    del out
    seconds = time.perf_counter() - start
    work = plan.n_tiles * conv_flops(net, (1, 1, *plan.tile))
    return seconds, work, f"{plan.n_tiles} x {plan.tile[0]}x{plan.tile[1]}, waste {plan.waste:.2f}"


def auto_settings() -> tuple[dict, str]:
    """unetkit's default on this machine for a trained network: ``precision="auto"`` resolved for the CPU.

    The benchmark's networks have random weights, whose two logits nearly tie everywhere; the inferer's
    check on the first tile (:mod:`unetkit.inferers.guard`) would keep them in float32, as it should. A
    trained network's labels agree (the demo model: 99.98 %), so the precision ``auto`` picks for the
    hardware is set explicitly here."""
    dtype, reason = resolve_precision("auto", "cpu")
    return {"precision": {None: "fp32", torch.bfloat16: "bf16"}[dtype]}, reason


def run_bare(net, tile: tuple[int, int], n_tiles: int, dtype, layout) -> tuple[float, int, str]:
    """The network alone on ``n_tiles`` tiles of ``tile`` (one timed forward pass, times the count; the shape
    is warm: unetkit's run before it ran the same tiles)."""
    to_layout(net, layout)
    x = torch.rand(1, 1, *tile).contiguous(memory_format=layout)
    with torch.inference_mode(), autocast(torch.device("cpu"), dtype):
        start = time.perf_counter()
        net(x)
        seconds = (time.perf_counter() - start) * n_tiles
    return seconds, n_tiles * conv_flops(net, x.shape), f"{n_tiles} x {tile[0]}x{tile[1]} forward passes only"


def run_naive(src: Path, dst: Path, net, tile: int = 572) -> tuple[float, int, str]:
    margin = net.geometry.margin
    out_tile = tile - 2 * margin
    stride = out_tile // net.geometry.quantum * net.geometry.quantum
    start = time.perf_counter()
    image = tifffile.imread(src).astype(np.float32) / 255.0
    h, w = image.shape
    ny, nx = [1 + max(0, -(-(n - out_tile) // stride)) for n in (h, w)]
    need = [(k - 1) * stride + tile for k in (ny, nx)]
    padded = np.pad(image, [(margin, need[0] - h - margin), (margin, need[1] - w - margin)], mode="reflect")
    logits = np.zeros((net.out_channels, h, w), np.float32)
    with torch.no_grad():
        for i in range(ny):
            for j in range(nx):
                y0, x0 = i * stride, j * stride
                x = torch.from_numpy(padded[None, None, y0 : y0 + tile, x0 : x0 + tile].copy())
                y = net(x)[0].numpy()
                keep_y = min(stride if i < ny - 1 else out_tile, h - y0)
                keep_x = min(stride if j < nx - 1 else out_tile, w - x0)
                logits[:, y0 : y0 + keep_y, x0 : x0 + keep_x] = y[:, :keep_y, :keep_x]
    tifffile.imwrite(dst, logits.argmax(0).astype(np.uint8))
    seconds = time.perf_counter() - start
    work = ny * nx * conv_flops(net, (1, 1, tile, tile))
    return seconds, work, f"{ny * nx} x {tile}x{tile}, waste {ny * nx * tile * tile / (h * w):.2f}"


def run_monai(src: Path, dst: Path, net, roi: int = 512, dtype=None) -> tuple[float, int, str]:
    calls = []
    hook = net.register_forward_pre_hook(lambda m, inputs: calls.append(tuple(inputs[0].shape)))
    try:
        start = time.perf_counter()
        image = torch.from_numpy(tifffile.imread(src).astype(np.float32) / 255.0)[None, None]
        with torch.no_grad(), autocast(torch.device("cpu"), dtype):
            logits = sliding_window_inference(image, (roi, roi), 1, net, overlap=0.25).float()
        tifffile.imwrite(dst, logits[0].argmax(0).numpy().astype(np.uint8))
        seconds = time.perf_counter() - start
    finally:
        hook.remove()
    work = sum(conv_flops(net, (1, *shape[1:])) * shape[0] for shape in calls)
    h, w = image.shape[2:]
    windows = sum(s[0] for s in calls)
    return seconds, work, f"{windows} x {calls[0][2]}x{calls[0][3]}, waste {windows * roi * roi / (h * w):.2f}"


def ablation(peak: float) -> None:
    net = UNet().eval()
    cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    cases = [("NCHW float32 (--exact)", net, 700, {}), ("channels-last float32", cl, 700, {}),
             ("channels-last bfloat16", cl, 700, {"dtype": torch.bfloat16}),
             ("NCHW bfloat16", net, 700, {"dtype": torch.bfloat16}), ("NCHW, oneDNN off", net, 700, {"mkldnn": False})]
    cases.append(("channels-last, 1 thread", cl, 700, {"threads": 1}))
    cases += [(f"channels-last bf16, {t}² tile", cl, t, {"dtype": torch.bfloat16}) for t in (572, 956, 1212)]
    print("\nablation: paper network, one tile, best of 2 (s / MPx: per output megapixel of the tile; % of the "
          "float32 peak)")
    for name, model, size, opts in cases:
        x = torch.rand(1, 1, size, size)
        work = conv_flops(net, x.shape)
        torch.set_num_threads(opts.get("threads", threads))
        with torch.backends.mkldnn.flags(enabled=opts.get("mkldnn", True)), torch.inference_mode(), \
                autocast(torch.device("cpu"), opts.get("dtype")):
            seconds = best_of(lambda: model(x), 2)
        torch.set_num_threads(threads)
        rate, per_mpx = work / seconds / 1e9, seconds / ((size - 184) ** 2 / 1e6)
        print(f"  {name:30s} {size:5d}² {seconds:7.2f} s {per_mpx:6.2f} s/MPx {rate:7.1f} GFLOP/s "
              f"{100 * rate / peak:5.1f} % of peak")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images and narrow networks: checks that it runs")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all CPUs)")
    parser.add_argument("--sizes", type=int, nargs="*", help="image sizes (default 512 2048 4096; quick: 512 1024)")
    parser.add_argument("--exact", action="store_true", help="add a row for unetkit's bit-exact path (float32, NCHW)")
    parser.add_argument("--naive", action="store_true", help="add a row for a naive 572 tile loop")
    parser.add_argument("--monai-same-precision", action="store_true",
                        help="add a row for MONAI's sliding window with unetkit's precision and layout")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of all methods in turn; best of each (default 2)")
    parser.add_argument("--ablation", action="store_true", help="one-tile ablation of layout, precision, tile size")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    peaks = measure_peak(args.quick)
    peak = max(peaks.values())
    print(f"torch {torch.__version__}, {args.threads} thread(s); float32 peak: matmul {peaks['matmul']:.1f} GFLOP/s, "
          f"conv-only {peaks['conv']:.1f} GFLOP/s -> peak {peak:.1f} GFLOP/s")  # fmt: skip

    def nets(width):
        f = [width * 2**k for k in range(5)]
        basic = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(*f, f[0]))
        return UNet(features=f).eval(), basic.eval()

    sizes = args.sizes or ([512, 1024] if args.quick else [512, 2048, 4096])
    width = {s: (16 if args.quick else 64 if s <= 2048 else 32) for s in sizes}
    print(f"{'image':>10s} {'method':34s} {'net':>5s} {'seconds':>8s} {'s/MPx':>7s} {'GFLOP':>7s} {'GFLOP/s':>8s} "
          f"{'% peak':>6s}  tiles")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "warm.tif"
        tifffile.imwrite(small, cell_image(300))
        for size in sizes:
            src = Path(tmp) / f"in_{size}.tif"
            tifffile.imwrite(src, cell_image(size))
            net, basic = nets(width[size])
            settings, reason = auto_settings()
            dtype, layout, layout_name = resolve_precision(settings["precision"], "cpu")[0], torch.channels_last, "CL"
            default = f"unetkit default, {dtype_name(dtype)} {layout_name}"
            print(f"{'':10s} unetkit's default here: {reason}, channels-last", flush=True)
            runs = [(default, lambda p: run_unetkit(p, Path(tmp) / "a.tif", net, **settings))]
            if args.exact:
                exact_net = copy.deepcopy(net)  # its own copy: exact converts the weights back to NCHW in place
                runs.append(("unetkit exact, float32 NCHW",
                             lambda p: run_unetkit(p, Path(tmp) / "e.tif", exact_net, exact=True)))
            runs.append(("MONAI sliding window, float32", lambda p: run_monai(p, Path(tmp) / "c.tif", basic)))
            if args.monai_same_precision:
                fast = copy.deepcopy(basic).to(memory_format=torch.channels_last)
                runs.append((f"MONAI sliding window, {dtype_name(dtype)} {layout_name}",
                             lambda p: run_monai(p, Path(tmp) / "d.tif", fast, dtype=dtype)))
            if args.naive:
                runs.append(("naive 572 loop, float32", lambda p: run_naive(p, Path(tmp) / "b.tif", net)))
            # oneDNN builds kernels on the first call of each shape: warm up on this image where that is cheap,
            # else on a small one (the cold cost, ~0.5 s, is then <1 % of the run); then the methods take turns,
            # --repeats rounds, best of each, so that load from other processes hits them alike
            for name, run in runs:
                run(src if size <= 1024 else small)
            plan_note = run_unetkit(src, Path(tmp) / "a.tif", net, **settings)[2]
            n_tiles, tile = int(plan_note.split(" x ")[0]), int(plan_note.split(" x ")[1].split("x")[0])
            bare = f"bare network, {dtype_name(dtype)} {layout_name}"
            runs.append((bare, lambda p: run_bare(net, (tile, tile), n_tiles, dtype, layout)))
            best: dict[str, tuple[float, int, str]] = {}
            for _ in range(args.repeats):
                for name, run in runs:
                    seconds, work, note = run(src)
                    if name not in best or seconds < best[name][0]:
                        best[name] = (seconds, work, note)
            for name, _ in runs:
                _row(size, name, width[size], *best[name], peak)
            ours = best[default][0]
            ratios = [f"{best[name][0] / ours:.2f}x {name}" for name, _ in runs if name not in (default, bare)]
            print(f"{'':10s} unetkit's default, seconds per output megapixel: {', '.join(ratios)}; end to end at "
                  f"{100 * best[bare][0] / ours:.0f} % of the bare network's rate", flush=True)  # fmt: skip
    if args.ablation:
        ablation(peak)


def _row(size, name, width, seconds, work, note, peak) -> None:
    rate = work / seconds / 1e9
    per_mpx = seconds / (size * size / 1e6)
    print(f"{size:>5d}²     {name:34s} {width:>5d} {seconds:8.2f} {per_mpx:7.2f} {work / 1e9:7.0f} {rate:8.1f} "
          f"{100 * rate / peak:6.1f}  {note}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
