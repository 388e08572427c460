"""Recipes and peers side by side on synthetic data: train, segment the held-out sequence, score as the CTC does.

    python benchmarks/bench_recipes.py --kinds nuclei phase --seeds 3 --steps 200
    python benchmarks/bench_recipes.py --methods default monai --kinds nuclei --seeds 1 --steps 100

For each ``--kind`` of ``unetkit data demo`` and each seed, trains on sequence ``01`` (unetkit's recipes
validate on ``02`` and keep their best checkpoint by it), then segments both sequences of a second data set
of the same kind drawn with another seed (``seed + 1000``), which no method sees before, and prints pooled SEG, F1 at IoU 0.5, mean AP over IoU 0.5:0.95, the object count against the reference's and
the wall time (training and segmentation), then per kind and method the mean over seeds and the seed spread
(max - min SEG). Each seed draws its own data set, so the spread mixes the data's difficulty with the
training's luck; ``--data-seed N`` trains every seed on the one data set drawn with ``N`` (held out:
``N + 1000``), so that only the training seed varies.

``--protocol half-image`` is issue 10's real-image protocol instead, on a synthetic stand-in: one 512x512
frame of the kind, its left half sequence ``01`` (trained on), its right half ``02`` (validated on by
unetkit's recipes, segmented and scored by every method), as the issue's table was measured on a real
nuclei image. Its data set is drawn with ``(seed, 512)``, not shared with the other protocol. ``--oddity``
makes that data as users bring it: hot pixels, halves narrower than the network's margin, or 0/255 masks as
references (``half_image_data``). ``--protocol images`` trains on a user's folder of image / mask pairs
instead (``images/`` + ``masks/``, the Data Science Bowl 2018's layout: ten 256x256 images, each drawn on its
own; unetkit holds out the last fifth by name to validate on, the peers train on the same eight) and scores
five more images drawn with ``seed + 1000`` (``images_data``).
``--methods`` chooses among:

- ``default``: ``bundles/phc_u373`` at the ``make demo`` width, the default recipe, ``unetkit train`` then
  ``unetkit infer`` (the public CLI, as a user runs it);
- ``paper``: the same with the paper's configuration (``--overlay configs/paper.json``);
- ``monai``: the 30-line MONAI script of issue 10 (``monai_script`` below: BasicUNet, DiceCE, Adam 1e-3,
  ``--steps`` batches of 4 random 128x128 crops with flips, connected components), as a beginner writes it;
- ``cellpose``: Cellpose 3's CPnet trained from scratch (``train.train_seg``, its own defaults: AdamW, 224x224
  crops, 8 a step) for as many steps as fit unetkit's default *training* time on the same kind and seed, then
  its flow decoder (``CellposeModel.eval``, ``channels=[0, 0]``, the training objects' mean diameter). Its
  seconds are flow targets + training + segmentation; the one-off probe that times a step is not counted.
  A benchmark-only extra, never a dependency of unetkit: ``pip install cellpose==3.1.1.2`` (it pins
  ``numpy<2.1``; with a newer numpy install it with ``--no-deps`` plus fastremap, fill_voids, natsort, numba,
  opencv-python-headless, roifile). ``--cellpose-steps N`` trains it N steps instead. No weights are
  downloaded: ``pretrained_model=False``, its model folder is a temporary one and its downloader is replaced
  by one that raises. Without it the row says so.

"""

from __future__ import annotations

import argparse
import os
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
METHODS = [*RECIPES, "monai", "cellpose"]
CELLPOSE_PIN = "cellpose==3.1.1.2"
BUDGET_ONLY = "default-budget"  # default trained only to time Cellpose's budget, not scored


def _run(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-c", "from unetkit.cli.app import main; main()", *args],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"unetkit {' '.join(args[:2])} failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")


HELD_OUT = ("01", "02")  # the held-out data set's sequences, all scored
ODDITIES = ("none", "hot-pixels", "narrow", "mask-labels")
HALF = 512  # --protocol half-image: the frame's side; each half is HALF x HALF/2, as in the issue's image
IMAGES, TESTS, SIDE = 10, 5, 256  # --protocol images: annotated images, test images, their side


def half_image_data(root: Path, kind: str, seed: int, oddity: str = "none") -> Path:
    """Issue 10's real-image protocol on a synthetic frame: the left half of one ``HALF`` x ``HALF`` frame of
    ``kind`` is sequence ``01``, its right half ``02``, each one frame with its reference (objects cut by the
    middle line keep their part on each side).

    ``oddity`` makes the data as users bring it rather than as the generator draws it: ``hot-pixels`` sets
    0.08 % of the pixels of every image to the dtype's maximum (a camera's hot pixels); ``narrow`` cuts a
    ``HALF`` x 128 frame, so each half is 64 px wide, less than the network's 92 px margin; ``mask-labels``
    writes every reference as a 0/255 mask (touching objects merged), as thresholding tools export them.
    """
    from skimage.segmentation import relabel_sequential

    from unetkit.data import demo_frame

    image, labels = demo_frame((HALF, 128 if oddity == "narrow" else HALF), seed=(seed, HALF), kind=kind)
    if oddity == "hot-pixels":
        hot = np.random.default_rng(seed).random(image.shape) < 0.0008
        image[hot] = np.iinfo(image.dtype).max
    width = image.shape[1]
    for seq, half in (("01", np.s_[:, :width // 2]), ("02", np.s_[:, width // 2:])):
        (root / seq).mkdir(parents=True)
        (root / f"{seq}_GT" / "SEG").mkdir(parents=True)
        tifffile.imwrite(root / seq / "t000.tif", image[half])
        reference = relabel_sequential(labels[half])[0].astype(np.uint16)
        if oddity == "mask-labels":
            reference = (reference > 0).astype(np.uint8) * 255
        tifffile.imwrite(root / f"{seq}_GT" / "SEG" / "man_seg000.tif", reference)
    return root


def images_data(root: Path, test: Path, kind: str, seed: int) -> Path:
    """A user's folder of ``IMAGES`` image / mask pairs (``root/images/``, ``root/masks/``, same file names),
    each a ``SIDE`` x ``SIDE`` frame drawn on its own with ``(seed, SIDE, i)`` (its own object size,
    brightness and crowding, as the Data Science Bowl's images differ), and ``TESTS`` more drawn with
    ``seed + 1000`` as the Cell Tracking Challenge sequence ``test/02`` (what ``score`` reads)."""
    from unetkit.data import demo_frame

    for folder in (root / "images", root / "masks", test / "02", test / "02_GT" / "SEG"):
        folder.mkdir(parents=True)
    for i in range(IMAGES):
        image, labels = demo_frame((SIDE, SIDE), seed=(seed, SIDE, i), kind=kind)
        tifffile.imwrite(root / "images" / f"field_{i:02d}.tif", image)
        tifffile.imwrite(root / "masks" / f"field_{i:02d}.tif", labels)
    for i in range(TESTS):
        image, labels = demo_frame((SIDE, SIDE), seed=(seed + 1000, SIDE, i), kind=kind)
        tifffile.imwrite(test / "02" / f"t{i:03d}.tif", image)
        tifffile.imwrite(test / "02_GT" / "SEG" / f"man_seg{i:03d}.tif", labels)
    return root


def score(pred_dir: Path, data: Path, sequences: tuple[str, ...] = HELD_OUT) -> dict[str, float]:
    """Pooled SEG, mean F1@0.5, mean AP over IoU 0.5:0.95, objects found and in the reference, over the
    ``sequences`` of the held-out data set ``data``, segmented into ``pred_dir/<seq>``."""
    pairs = []
    for seq in sequences:
        for ref in sorted((data / f"{seq}_GT" / "SEG").glob("man_seg*.tif")):
            frame = ref.stem[len("man_seg"):]
            pairs.append((tifffile.imread(pred_dir / seq / f"t{frame}_mask.tif"), tifffile.imread(ref)))
    thresholds = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))
    ap = [np.mean([s.precision * s.recall / max(s.precision + s.recall - s.precision * s.recall, 1e-9)
                   for s in instance_scores(p, g, thresholds=thresholds).values()]) for p, g in pairs]
    return {"seg": seg_measure_pooled(pairs),
            "f1": float(np.mean([instance_scores(p, g)[0.5].f1 for p, g in pairs])),
            "ap": float(np.mean(ap)),
            "found": sum(int(p.max()) for p, _ in pairs),
            "objects": sum(len(np.unique(g)) - 1 for _, g in pairs)}


def _annotated(data: Path, seq: str = "01") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """What unetkit trains on in ``data`` (the annotated frames of CTC sequence ``seq``, or the image / mask
    pairs it does not hold out), as images and instance labels."""
    from unetkit.data import annotated_datalist

    items = annotated_datalist(data, [seq], part="train")
    return [tifffile.imread(i["image"]) for i in items], [tifffile.imread(i["label"]) for i in items]


def segment_held_out(segment, test: Path, out: Path, sequences: tuple[str, ...] = HELD_OUT) -> None:
    """Write ``segment(image)``'s labels for every frame of ``test``'s ``sequences`` into ``out/<seq>``."""
    for seq in sequences:
        (out / seq).mkdir(parents=True, exist_ok=True)
        for f in sorted((test / seq).glob("t*.tif")):
            tifffile.imwrite(out / seq / f"{f.stem}_mask.tif", segment(tifffile.imread(f)).astype(np.uint16))


def monai_script(data: Path, test: Path, seed: int, steps: int, out: Path,
                 sequences: tuple[str, ...] = HELD_OUT) -> None:
    """Issue 10's 30-line MONAI peer, as a beginner writes it: foreground U-Net, then connected components."""
    import torch
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.networks.nets import BasicUNet
    from skimage.measure import label

    def norm(x):
        lo, hi = np.percentile(x, (1, 99.8))
        return ((x - lo) / max(hi - lo, 1e-6)).astype(np.float32)

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    images, labels = _annotated(data)
    images, fgs = [norm(x) for x in images], [(y > 0).astype(np.float32) for y in labels]
    net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(16, 16, 32, 64, 128, 16))
    loss_fn, opt = DiceCELoss(to_onehot_y=True, softmax=True), torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(4):
            i = rng.integers(len(images))
            r, c = rng.integers(images[i].shape[0] - 127), rng.integers(images[i].shape[1] - 127)
            x, y = images[i][r:r + 128, c:c + 128], fgs[i][r:r + 128, c:c + 128]
            for axis in (0, 1):
                if rng.random() < 0.5:
                    x, y = np.flip(x, axis), np.flip(y, axis)
            xs.append(x.copy())
            ys.append(y.copy())
        loss = loss_fn(net(torch.from_numpy(np.stack(xs))[:, None]), torch.from_numpy(np.stack(ys))[:, None])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()

    def segment(image):
        with torch.no_grad():
            p = sliding_window_inference(torch.from_numpy(norm(image))[None, None], (256, 256), 4, net, overlap=0.25)
        return label(p.argmax(1)[0].numpy() > 0)

    segment_held_out(segment, test, out, sequences)


def _import_cellpose(model_dir: str):
    """Cellpose's ``models``, ``train`` and ``dynamics`` with no way to download weights, or None if absent."""
    os.environ["CELLPOSE_LOCAL_MODELS_PATH"] = model_dir  # read at import: its model folder, empty
    try:
        from cellpose import dynamics, models, train, utils
    except ImportError:
        return None

    def refuse(url, dst, progress=True):
        raise RuntimeError(f"benchmark: Cellpose tried to download {url}; it must train from scratch")

    utils.download_url_to_file = refuse
    return models, train, dynamics


def cellpose_peer(data: Path, test: Path, seed: int, budget_s: float | None, out: Path, work: Path,
                  steps: int | None = None, sequences: tuple[str, ...] = HELD_OUT) -> tuple[int, float] | None:
    """Cellpose 3 from scratch on ``01``'s frames for ``budget_s`` seconds of training (or ``steps`` steps),
    its decoder on ``test``.

    Returns the training steps (epochs of one batch of 8) and the seconds (flow targets, training,
    segmentation), or None if cellpose is not installed.
    """
    cp = _import_cellpose(str(work / "cellpose_models"))
    if cp is None:
        return None
    import torch
    models, train, dynamics = cp
    images, labels = _annotated(data)
    images = [x.astype(np.float32) for x in images]
    kw = dict(train_data=images, channels=[0, 0], batch_size=8, nimg_per_epoch=8, save_path=str(work),
              min_train_masks=1)

    def fresh():
        torch.manual_seed(seed)
        np.random.seed(seed)
        return models.CellposeModel(gpu=False, pretrained_model=False, nchan=2)

    start = time.perf_counter()
    flows = dynamics.labels_to_flows([y.astype(np.int32) for y in labels], device=torch.device("cpu"))
    flow_s = time.perf_counter() - start
    if steps is None:
        probe, t = fresh(), time.perf_counter()  # time a step: 3 epochs of one batch, thrown away
        train.train_seg(probe.net, train_labels=flows, n_epochs=3, model_name="probe", **kw)
        step_s = (time.perf_counter() - t) / 3
        steps = max(10, int((budget_s - flow_s) / step_s))
    start = time.perf_counter() - flow_s
    model = fresh()
    train.train_seg(model.net, train_labels=flows, n_epochs=steps, model_name="scratch", **kw)
    diameter = float(model.net.diam_labels.item())
    segment_held_out(lambda x: model.eval(x.astype(np.float32), channels=[0, 0], diameter=diameter)[0], test, out,
                     sequences)
    return steps, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=["nuclei", "phase"])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--methods", "--recipes", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--data-seed", type=int, default=None,
                        help="draw one data set with this seed for every seed, so that only the training seed "
                             "varies (the recipe's own spread); default: each seed draws its own data set")
    parser.add_argument("--cellpose-steps", type=int, default=None,
                        help="train Cellpose this many steps instead of unetkit's default training time "
                             "(the issue's real-image run gave it 150)")
    parser.add_argument("--protocol", choices=("held-out", "half-image", "images"), default="held-out",
                        help="held-out: train on 01 of one data set, score both sequences of another; "
                             "half-image: the issue's real-image protocol; images: a folder of image / mask "
                             "pairs (see the module's docstring)")
    parser.add_argument("--oddity", choices=ODDITIES, default="none",
                        help="half-image only: data as users bring it (hot-pixels, narrow, mask-labels; see "
                             "half_image_data)")
    args = parser.parse_args()
    if args.oddity != "none" and args.protocol != "half-image":
        parser.error("--oddity needs --protocol half-image")
    print(f"{'kind':8} {'seed':>4} {'method':8} {'SEG':>6} {'F1@0.5':>7} {'AP':>6} {'found/ref':>10} {'s':>6}")
    rows: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-recipes-") as tmp:
        for kind in args.kinds:
            for seed in range(args.seeds):
                drawn = seed if args.data_seed is None else args.data_seed
                data = Path(tmp) / f"{kind}_{drawn}_{args.protocol}_{args.oddity}"
                if args.protocol == "half-image":
                    test, scored = data, ("02",)
                    if not data.exists():
                        half_image_data(data, kind, drawn, args.oddity)
                    if args.oddity == "mask-labels":  # scored against the instances the masks were made from
                        test = data.with_name(data.name + "_instances")
                        if not test.exists():
                            half_image_data(test, kind, drawn)
                elif args.protocol == "images":
                    test, scored = data.with_name(data.name + "_test"), ("02",)
                    if not data.exists():
                        images_data(data, test, kind, drawn)
                else:
                    test, scored = Path(tmp) / f"{kind}_{drawn}_held_out", HELD_OUT
                    if not data.exists():
                        _run(["data", "demo", str(data), "--kind", kind, "--seed", str(drawn)])
                        _run(["data", "demo", str(test), "--kind", kind, "--seed", str(drawn + 1000)])
                train_s = None  # unetkit's default training time: Cellpose's budget
                order = [m for m in METHODS if m in args.methods]
                if "cellpose" in order and "default" not in order and args.cellpose_steps is None:
                    order.insert(0, BUDGET_ONLY)
                for name in order:
                    pred = Path(tmp) / f"pred_{kind}_{seed}_{name}"
                    note = ""
                    start = time.perf_counter()
                    if name in RECIPES or name == BUDGET_ONLY:
                        recipe = "default" if name == BUDGET_ONLY else name
                        run = Path(tmp) / f"run_{kind}_{seed}_{recipe}"
                        _run(["train", "bundles/phc_u373", "--data", str(data), "--steps", str(args.steps),
                              "--output", str(run), "--seed", str(seed),
                              "--set", "network_def::features=[16,32,64,128,256]", *RECIPES[recipe]])
                        if recipe == "default":
                            train_s = time.perf_counter() - start
                        if name == BUDGET_ONLY:
                            continue
                        for seq in scored:
                            _run(["infer", str(run), str(test / seq), "-o", str(pred / seq)])
                        seconds = time.perf_counter() - start
                    elif name == "monai":
                        monai_script(data, test, seed, args.steps, pred, scored)
                        seconds = time.perf_counter() - start
                    else:
                        work = Path(tmp) / f"cellpose_{kind}_{seed}"
                        work.mkdir()
                        done = cellpose_peer(data, test, seed, train_s, pred, work, steps=args.cellpose_steps,
                                             sequences=scored)
                        if done is None:
                            print(f"{kind:8} {seed:>4} {name:8} not installed: pip install {CELLPOSE_PIN}",
                                  flush=True)
                            continue
                        steps, seconds = done
                        note = (f"  ({steps} steps of 8 x 224^2" + (f" in unetkit's {train_s:.0f} s of training)"
                                                                   if args.cellpose_steps is None else ")"))
                    s = score(pred, test, scored)
                    s["s"] = seconds
                    rows.setdefault((kind, name), []).append(s)
                    print(f"{kind:8} {seed:>4} {name:8} {s['seg']:6.3f} {s['f1']:7.3f} {s['ap']:6.3f} "
                          f"{s['found']:>4}/{s['objects']:<5} {seconds:6.0f}{note}", flush=True)
    print(f"\nmean over {args.seeds} seed(s); spread = max - min SEG over seeds")
    print(f"{'kind':8} {'method':8} {'SEG':>6} {'F1@0.5':>7} {'AP':>6} {'found/ref':>10} {'s':>6} {'spread':>6}")
    for (kind, name), rs in rows.items():
        m = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        spread = max(r["seg"] for r in rs) - min(r["seg"] for r in rs)
        print(f"{kind:8} {name:8} {m['seg']:6.3f} {m['f1']:7.3f} {m['ap']:6.3f} "
              f"{m['found']:>4.0f}/{m['objects']:<5.0f} {m['s']:6.0f} {spread:6.3f}")


if __name__ == "__main__":
    main()
