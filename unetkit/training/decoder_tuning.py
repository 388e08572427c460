"""Choose the three-class decoder's seed settings on the validation set, after training.

How many seeds the watershed gets decides whether touching cells come apart, and the right setting is a
property of the data and of how far the network trained, not of the recipe: on held-out ``--kind nuclei``
frames (small touching nuclei) seeds from interior pixels above 0.9 probability raised SEG from 0.687 to
0.745, while on ``--kind phase`` (large cells, unsure interiors) the same threshold fell from 0.708 to
0.502 and seeds of at least 64 px (not 4) gave 0.739 (docs/benchmarks.md). So, as nnU-Net chooses its
postprocessing on validation, the trained network segments the validation frames through the same
pipeline as ``unetkit infer``, and every pair of ``min_seed`` (4 px upwards, doubling, no larger than half
the area of the training data's 5th-percentile object) and ``seed_threshold`` (the argmax, 0.6, 0.75, 0.9)
decodes them; the pair with the best pooled SEG goes into the bundle's ``decode``, only when it beats the
recipe's own setting. The choice is recorded in ``plan.json``.

The weights are chosen with it. Training keeps the weights of its best validation SEG, but it measures
SEG with the recipe's seeds, which judge a network still learning its boundaries unfairly: on ``--kind
phase`` (seed 0, 200 steps) validation SEG peaked at step 100 (0.686, foreground IoU 0.75) and fell while
the IoU rose to 0.88; with its seeds chosen, step 200 scored 0.783 on validation and 0.756 against 0.638 on
held-out frames. So the last checkpoint competes with the kept weights, each with its best seeds; when it
wins it becomes ``models/model.pt`` and ``models/best.json`` names its step. Cost: one validation pass per
candidate weights (training itself runs ten), and the decodes, one frame at a time.

With ``--folds`` each fold chooses on its own validation frames and the ensemble keeps fold 0's choice (not
tuned on the ensemble's own output).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from unetkit.bundle.config import get_key, read_config, write_config
from unetkit.training.handlers import _CKPT, _atomic_torch_save, kept_step, latest_checkpoint

__all__ = ["seed_candidates", "tune_decoder"]

THREE_CLASS = ("unetkit.transforms.ThreeClassInstancesd", "unetkit.transforms.ThreeClassInstances")
THRESHOLDS = (None, 0.6, 0.75, 0.9)
TUNED = ("decode::min_seed", "decode::seed_threshold")


def seed_candidates(fingerprint: Mapping) -> list[tuple[int, float | None]]:
    """``(min_seed, seed_threshold)`` pairs to try for data with this fingerprint.

    Examples:
        >>> sorted({m for m, _ in seed_candidates({"diameter": {"p5": 11.0}})})  # 95 px objects: up to 47
        [4, 8, 16, 32]
        >>> len(seed_candidates({"diameter": {"p5": 0.0}}))  # no objects measured: the threshold only
        4
    """
    p5 = float(fingerprint.get("diameter", {}).get("p5", 0.0) or 0.0)
    largest = max(4.0, math.pi * (p5 / 2) ** 2 / 2)
    seeds = [4]
    while seeds[-1] * 2 <= largest:
        seeds.append(seeds[-1] * 2)
    return [(m, t) for m in seeds for t in THRESHOLDS]


def _validation(out: Path, configs: Mapping[str, dict], dataset_dir: Path):
    """``(items, load)``: the bundle's validation items and ``load(item) -> (image (C, *spatial), reference
    labels (*spatial))``, loading as its own ``load_image`` and ``load_label`` do."""
    from monai.bundle import ConfigParser

    from unetkit.plan.settings import bundle_datalist

    items = bundle_datalist(configs, dataset_dir, "validate#datalist")
    parser = ConfigParser({**copy.deepcopy(configs.get("common.json", {})), **copy.deepcopy(configs["train.json"])})
    parser["bundle_root"], parser["dataset_dir"] = str(out), str(dataset_dir)
    load_image, load_label = parser.get_parsed_content("load_image"), parser.get_parsed_content("load_label")

    def load(item):
        d = load_label(load_image(dict(item)))
        image, label = np.asarray(d["image"]), np.asarray(d["label"])
        return image, label[0] if label.ndim == image.ndim else label

    return items, load


def tune_decoder(out: Path, dataset_dir: Path, plan, *, overridden=(), device="auto") -> dict[str, Any] | None:
    """Choose ``decode``'s ``min_seed`` and ``seed_threshold`` for the trained bundle ``out`` on its validation
    frames (module docstring); write them into its configs and ``plan`` (saved to ``plan.json``).

    Returns ``{"settings": {...}, "seg": best, "recipe_seg": the recipe's own}``, or None where nothing was
    tuned: another decoder, no validation frames or none with a reference object, or both settings set by
    the user (``overridden``: ``--set`` ids).
    """
    from unetkit.metrics import seg_scores
    from unetkit.predict.model import load_bundle_model
    from unetkit.predict.segment import instance_labels, segment
    from unetkit.transforms import ThreeClassInstances

    folder = out / "configs"
    configs = {name: read_config(folder / name) for name in ("common.json", "train.json") if (folder / name).is_file()}
    merged = {**configs.get("common.json", {}), **configs.get("train.json", {})}
    decode = get_key(merged, "decode", None)
    mine = {k.replace("#", "::") for k in overridden}
    if not isinstance(decode, dict) or decode.get("_target_") not in THREE_CLASS or set(TUNED) <= mine:
        return None
    items, load = _validation(out, configs, dataset_dir)
    if not items:
        return None
    model = load_bundle_model(out, trust=True, device=device or "auto")
    if model.preprocessing is not None:  # resampling: segment() would see another grid than the labels
        return None
    own = (int(decode.get("min_seed", 4)), decode.get("seed_threshold"))
    kept = kept_step(out / "models" / "model.pt")
    last = latest_checkpoint(out / "checkpoints")
    last_step = int(_CKPT.search(last.name).group(1)) if last is not None else None
    candidates = [("kept", kept, None)]  # the weights kept by training's validation first: they win ties
    if last is not None and kept is not None and last_step != kept:
        candidates.append(("last", last_step, last))
    pairs = seed_candidates(plan.fingerprint if plan is not None else {})
    pairs = [own] + [p for p in pairs if p != own]
    if "decode::min_seed" in mine:
        pairs = [p for p in pairs if p[0] == own[0]]
    if "decode::seed_threshold" in mine:
        pairs = [p for p in pairs if p[1] == own[1]]
    base = model.instances
    decoders = [ThreeClassInstances(min_seed=m, seed_threshold=t, min_size=base.min_size, fill_holes=base.fill_holes,
                                    connectivity=base.connectivity) for m, t in pairs]
    table, states = [], []  # per candidate weights: pooled SEG of each pair, and the weights read
    for _, _, checkpoint in candidates:
        state = None
        if checkpoint is not None:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)["network"]
            model.network.load_state_dict(state)
        states.append(state)
        totals, objects = np.zeros(len(pairs)), 0  # SEG pooled over every reference object of every frame
        for image, label in map(load, items):  # one frame's probabilities at a time
            probs = segment(model, image, probabilities=True)[1]
            for i, decoder in enumerate(decoders):  # one Jaccard index per reference object, whatever the decoder
                per_object = np.asarray(seg_scores(instance_labels(decoder.classes_from_probabilities(probs),
                                                                   decoder)[0], label), np.float64)
                totals[i] += per_object.sum()
            objects += per_object.size
        if not objects:
            return None
        table.append(totals / objects)
    table = np.stack(table)
    # the first of equals: the kept weights before the last, the recipe's own pair before the others
    which, best = np.unravel_index(int(np.argmax(table)), table.shape)
    scores = table[which]
    name, step, _ = candidates[which]
    if states[which] is not None:  # the last weights decode better: they become the model, as best.json says
        _atomic_torch_save(states[which], out / "models" / "model.pt")
        (out / "models" / "best.json").write_text(json.dumps(
            {"metric": "val_seg", "value": float(scores[best]), "step": step, "chosen_with": "decoder tuning"}) + "\n")
    chosen = dict(zip(TUNED, pairs[best]))
    if best:
        target = "train.json" if "decode" in configs.get("train.json", {}) else "common.json"
        configs[target]["decode"].update(min_seed=pairs[best][0], seed_threshold=pairs[best][1])
        write_config(folder / target, configs[target])
    recipe = float(table[0, 0])
    if plan is not None:
        why = (f"best validation SEG {scores[best]:.3f} of {len(pairs)} seed settings x {len(candidates)} weights "
               f"(chose step {step}'s; the kept weights with the recipe's min_seed {own[0]}, seed_threshold "
               f"{own[1]}: {recipe:.3f})")
        for key, value in chosen.items():
            plan.settings[key] = value
            plan.reasons[key] = why
        plan.write(out / "plan.json")
    return {"settings": chosen, "seg": float(scores[best]), "recipe_seg": recipe, "step": step, "weights": name}
