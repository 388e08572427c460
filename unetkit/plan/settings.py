"""Settings from a fingerprint: what a recipe should change for this data, and why.

The rules are few and each follows one measured fact (nnU-Net's approach, for the paper's network):

- ``weight_map#sigma``: the weight map's border term (Ronneberger et al., eq. 2) reaches about ``2 sigma``
  into the gap between cells; the paper's 5 px suits its ~50 px cells. It is scaled to a quarter of the
  median object diameter, 2 to 10 px, so small nuclei get a narrow border and large cells a wide one.
- ``decode#min_size``: objects smaller than a quarter of the 5th-percentile object's area are specks, not
  cells (the decoder drops them).
- ``make_target#boundary``: the three-class target takes ``boundary`` px off each side of an object; the
  median object keeps an interior of at least two thirds of its diameter, so objects under 12 px across get
  a 1 px boundary (the recipe's 2 px is the most). Measured on nuclei at half scale (7 px across, the
  half-image protocol, 400 steps): SEG 0.573 / F1 0.722 with 2 px, 0.714 / 0.889 with 1 px; at 2.5x (42 px
  across) a 4 px boundary gained nothing (0.582 against 0.567), so the rule only narrows it.
- ``tile``: no larger than the largest image plus the network's margin needs (a larger training tile is
  mirrored padding, computed for nothing). With a batch of several crops (``batch_size`` > 1, the default
  recipe's batch normalisation), each crop's output covers ``max(128, 2 x p95 diameter)`` px: a few objects
  and their neighbours, as the MONAI and Cellpose recipes crop, and no whole image per crop, which costs
  ``batch_size`` times the compute per step for the same number of objects seen.
- ``val_interval``: ten validations per run, so the best weights can be kept and a curve drawn.

Examples:
    >>> fp = {"diameter": {"median": 18.0, "p5": 11.0, "p95": 26.0}, "sizes": [(256, 320)]}
    >>> settings, why = plan_settings(fp, tile=[572, 572], max_steps=200, valid_size=lambda n: n + (-n % 16) + 4)
    >>> settings["weight_map#sigma"], settings["decode#min_size"], settings["val_interval"], settings["tile"]
    (4.5, 24, 20, [452, 516])
    >>> plan_settings(fp, tile=[572, 572], max_steps=200, valid_size=lambda n: n + (-n % 16) + 4, batch=4)[0]["tile"]
    [324, 324]
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from unetkit.bundle.config import get_key
from unetkit.errors import DataError, UnetkitError
from unetkit.plan.fingerprint import fingerprint

__all__ = ["Plan", "plan_settings", "plan_bundle", "finetune_settings"]


@dataclass
class Plan:
    """What the data measured (``fingerprint``), the settings chosen (``settings``: MONAI ids -> values) and
    why (``reasons``: id -> one line); ``overridden``: ids the user set with ``--set``, which win."""

    fingerprint: dict
    settings: dict = field(default_factory=dict)
    reasons: dict = field(default_factory=dict)
    overridden: list = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"fingerprint": self.fingerprint, "settings": self.settings, "reasons": self.reasons,
                           "overridden": self.overridden}, indent=2, default=list) + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(self.to_json())
        os.replace(tmp, path)
        return path


# the smallest output of a crop in a batch: the 30-line MONAI script's 128 px crops; on --kind nuclei a batch of
# four 316 px tiles (132 px out) beat one whole-image tile per step (docs/benchmarks.md)
MIN_CROP = 128


def plan_settings(fp: Mapping, *, tile, max_steps: int, valid_size: Callable[[int], int],
                  margin: int = 92, batch: int = 1, boundary: int | None = None) -> tuple[dict, dict]:
    """``(settings, reasons)`` for a fingerprint; see the module docstring for the rules. ``boundary``: the
    recipe's three-class boundary width (None: the recipe has none)."""
    d = fp["diameter"]
    settings: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    if d["median"] > 0:
        sigma = min(10.0, max(2.0, round(d["median"] / 4 * 2) / 2))
        settings["weight_map#sigma"] = sigma
        reasons["weight_map#sigma"] = f"a quarter of the median object diameter ({d['median']:.1f} px), 2..10"
        min_size = max(1, int(round(0.25 * math.pi * (d["p5"] / 2) ** 2)))
        settings["decode#min_size"] = min_size
        reasons["decode#min_size"] = f"a quarter of the area of the 5th-percentile object ({d['p5']:.1f} px across)"
        if boundary is not None and int(d["median"] // 6) < boundary:
            settings["make_target#boundary"] = max(1, int(d["median"] // 6))
            reasons["make_target#boundary"] = (f"an interior of two thirds of the median object ({d['median']:.1f} px "
                                               "across) at least")
    sizes = fp.get("sizes") or []
    if sizes and isinstance(tile, (list, tuple)) and all(len(s) == len(tile) for s in sizes):
        need = [max(s[i] for s in sizes) + 2 * margin for i in range(len(tile))]
        planned = [min(int(t), valid_size(n)) for t, n in zip(tile, need)]
        why = f"the largest image ({'x'.join(map(str, need))} with the margin) needs no more"
        if batch > 1 and d["p95"] > 0:
            out = max(MIN_CROP, int(math.ceil(2 * d["p95"])))
            crop = valid_size(out + 2 * margin)
            if any(crop < p for p in planned):
                planned = [min(p, crop) for p in planned]
                why = (f"a batch of {batch} crops, each {out} px out: twice the 95th-percentile object "
                       f"({d['p95']:.1f} px across), at least {MIN_CROP}")
        if batch > 1 and len(planned) == 2 and planned[0] != planned[1]:  # crops turned by 90 degrees must stack
            planned = [max(planned)] * len(planned)
            why += "; square, so that crops turned by 90 degrees stack into one batch"
        if planned != list(tile):
            settings["tile"] = planned
            reasons["tile"] = why
    settings["val_interval"] = max(1, int(max_steps) // 10)
    reasons["val_interval"] = f"ten validations in {max_steps} steps, to keep the best weights"
    return settings, reasons


def finetune_settings(fp: Mapping, *, learning_rate: float) -> tuple[dict, dict]:
    """``(settings, reasons)`` for fine-tuning trained weights on this data (``unetkit train --finetune``).

    The weights start near a solution, so the run is shorter than training from scratch, as in Cellpose
    2.0's human-in-the-loop training (100 epochs instead of 500 for a few corrected images):

    - ``max_steps``: 100 per annotated frame, 300 to 2000, since a handful of frames is the normal case;
    - ``lr_warmup``: the first 5 % of the steps, since Adam's first updates are full-size whatever the
      gradient, which would knock the trained weights off their minimum;
    - ``learning_rate``: the recipe's own peak rate (the poly decay over the shorter run lowers it from
      there). A lower peak was measured and lost: from a bundle trained on ``--kind phase``, 100 steps on
      one ``--kind nuclei`` frame reached validation SEG 0.15 at a fifth of the rate, 0.25 at half and 0.40
      at the full rate (0.39 from scratch); at 300 steps, 0.70 against 0.65 from scratch
      (docs/benchmarks.md, "Fine-tuning").
    - ``val_interval``: ten validations in the shorter run.

    Examples:
        >>> s, _ = finetune_settings({"annotated": 1}, learning_rate=5e-4)
        >>> s["learning_rate"], s["max_steps"], s["lr_warmup"], s["val_interval"]
        (0.0005, 300, 15, 30)
    """
    frames = int(fp.get("annotated", 1))
    steps = max(300, min(2000, 100 * frames))
    settings = {"learning_rate": float(learning_rate), "max_steps": steps,
                "lr_warmup": steps // 20, "val_interval": max(1, steps // 10)}
    reasons = {
        "learning_rate": f"the recipe's peak rate {learning_rate:g}, decaying over the shorter run (a lower peak "
                         "measured worse)",
        "max_steps": f"100 per annotated frame ({frames}), 300..2000",
        "lr_warmup": "the first 5 % of the steps: Adam's first updates are full-size",
        "val_interval": f"ten validations in {steps} steps, to keep the best weights",
    }
    return settings, reasons


def bundle_datalist(configs: Mapping[str, dict], data: Path, key: str) -> list[dict]:
    """The data list the bundle's ``key`` (``train#datalist``, ``validate#datalist``) makes for the folder ``data``."""
    from monai.bundle import ConfigParser

    from unetkit.errors import find_user_error

    merged = {**copy.deepcopy(configs.get("common.json", {})), **copy.deepcopy(configs["train.json"])}
    parser = ConfigParser(merged)
    parser["dataset_dir"] = str(data)
    parser["bundle_root"] = "."
    try:
        return [dict(i) for i in parser.get_parsed_content(key)]
    except Exception as e:
        mine = find_user_error(e)
        raise (mine or DataError(f"the bundle's {key} could not be built from this folder: {e}", path=data)) from None


def _batch(config: Mapping) -> int:
    """The recipe's ``batch_size`` where it is a number (an expression is the recipe's own choice: 1)."""
    b = get_key(config, "batch_size", 1)
    return int(b) if isinstance(b, (int, float)) and not isinstance(b, bool) else 1


def _unannotated(items: list[dict], held_out: list[dict] = ()) -> int:
    """Images beside the training items that no item of training or validation lists: frames without a
    mask (a CTC sequence's), images without one (images/ beside masks/, whose held-out pairs share it)."""
    from unetkit.io.formats import images_in_folder

    folders = {Path(i["image"]).parent for i in items if "frame" not in i}
    listed = {Path(i["image"]) for i in [*items, *held_out] if "frame" not in i}
    files = {p for f in folders for p in images_in_folder(f)}
    masks = {Path(i["label"]) for i in [*items, *held_out] if "label" in i}  # NAME_masks.tif beside NAME.tif
    return len(files - listed - masks)


def plan_bundle(configs: Mapping[str, dict], data: str | os.PathLike, *, max_steps: int | None = None,
                overridden: Mapping[str, Any] | None = None, finetune: bool = False) -> Plan:
    """Fingerprint the bundle's training data list at ``data`` and choose settings for it.

    Args:
        configs: the bundle's configs by file name (``common.json``, ``train.json``), as they will be run.
        data: the data set folder.
        max_steps: the run's steps (default: the config's ``max_steps``).
        overridden: the user's ``--set`` overrides: planned settings they name are left to them.
        finetune: the run starts from trained weights: add the fine-tuning schedule
            (:func:`finetune_settings`); ``max_steps`` given means the user chose the steps.
    """
    import torch
    from monai.bundle import ConfigParser

    data = Path(data)
    items = bundle_datalist(configs, data, "train#datalist")
    try:
        held_out = bundle_datalist(configs, data, "validate#datalist")
    except UnetkitError:  # no validation data yet: the plan still describes the training data
        held_out = []
    fp = fingerprint(items, unannotated=_unannotated(items, held_out), held_out=len(held_out))
    common = ConfigParser(copy.deepcopy(configs.get("common.json", configs["train.json"])))
    common["bundle_root"] = "."
    with torch.device("meta"):
        net = common.get_parsed_content("network_def")
    geometry = getattr(net, "geometry", None)
    tile = common["tile"] if "tile" in common else None
    steps = int(max_steps if max_steps is not None else configs["train.json"].get("max_steps", 1000))
    merged = {**configs.get("common.json", {}), **configs["train.json"]}
    boundary = get_key(merged, "make_target#boundary", None)
    settings, reasons = plan_settings(
        fp, tile=tile, max_steps=steps, margin=getattr(geometry, "margin", 0), batch=_batch(merged),
        boundary=int(boundary) if isinstance(boundary, int) and not isinstance(boundary, bool) else None,
        valid_size=(lambda n: geometry.next_valid_size(n)) if geometry is not None else (lambda n: n),
    )
    if finetune:
        tuned, why = finetune_settings(fp, learning_rate=float(get_key({**configs.get("common.json", {}), **configs["train.json"]},
                                                                         "learning_rate", 1e-3)))
        if max_steps is not None:  # the user's --steps: the schedule follows it
            tuned.pop("max_steps"), why.pop("max_steps")
            tuned["lr_warmup"], tuned["val_interval"] = steps // 20, max(1, steps // 10)
            why["val_interval"] = f"ten validations in {steps} steps, to keep the best weights"
        settings.update(tuned)
        reasons.update(why)
    settings = {k.replace("#", "::"): v for k, v in settings.items()}
    reasons = {k.replace("#", "::"): v for k, v in reasons.items()}
    missing = object()
    settings = {k: v for k, v in settings.items() if get_key(merged, k, missing) is not missing}  # ids this recipe has
    mine = {m.replace("#", "::") for m in (overridden or {})}
    taken = sorted(k for k in settings if k in mine)
    for k in taken:
        settings.pop(k)
    return Plan(fp, settings, {k: v for k, v in reasons.items() if k in settings}, taken)
