"""``unetkit train BUNDLE --folds K``: k-fold cross-validation, and one bundle that ensembles the folds.

Each fold is a whole bundle, trained by :func:`~unetkit.training.train_bundle` in ``OUT/folds/fold_<i>``
with the recipe's training data list split by :func:`unetkit.data.fold_datalist` (whole sequences per fold
when there are enough, else contiguous runs of frames): fold ``i`` validates on its part and trains on the
rest. The split is written into each fold's ``train.json`` (``train#datalist`` / ``validate#datalist``), so
a fold retrains as it was split, and listed in ``OUT/folds.json``.

When every fold holds its weights, ``OUT`` becomes the ensemble bundle, as nnU-Net ensembles its folds:
``network_def`` is a :class:`~unetkit.networks.UNetEnsemble` of the K networks (the mean of their class
probabilities), ``models/model.pt`` holds the K state dicts, and the configs are fold 0's with the recipe's
own data lists back in place. ``unetkit infer`` and MONAI's runner run it as any bundle; ``bundle pack``
leaves ``folds/`` out (the weights are all in ``models/model.pt``).

``--fold N`` trains one fold (folds can run on several machines; copy the ``folds/fold_<i>`` folders into
one ``OUT`` and run ``--folds K`` there: trained folds are kept, and the ensemble is assembled).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from unetkit.bundle.config import CONFIG_NAMES, read_config, write_config
from unetkit.bundle.loader import open_bundle
from unetkit.errors import TrainingError

__all__ = ["train_folds", "FoldsResult"]

logger = logging.getLogger(__name__)

_REGRESSION_DECODERS = ("unetkit.transforms.DistanceInstancesd", "unetkit.transforms.DistanceInstances")


@dataclass
class FoldsResult:
    """What ``train_folds`` left: per-fold results, their pooled validation, and the ensemble (if assembled)."""

    output: Path
    split_by: str
    folds: list[dict] = field(default_factory=list)
    pooled: dict[str, float] = field(default_factory=dict)
    ensemble: Path | None = None


def train_folds(
    bundle: str | os.PathLike,
    *,
    folds: int,
    fold: int | None = None,
    data: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    overwrite: bool = False,
    resume: bool = False,
    overrides: Mapping[str, Any] | None = None,
    trust: bool = False,
    on_fold: Callable[[int, int], Callable | None] | None = None,
    **train_kwargs,
) -> FoldsResult:
    """Train ``folds`` folds of a bundle (or only fold ``fold``) and assemble their ensemble bundle.

    Args:
        bundle: bundle folder or zip (scanned once, as any shared bundle).
        folds: K >= 2.
        fold: train this fold only; the ensemble is assembled when all K folds are then present.
        data, output, overrides, trust: as :func:`~unetkit.training.train_bundle`; ``output`` holds
            ``folds/fold_<i>/`` and becomes the ensemble bundle.
        overwrite: retrain folds that are already trained, and replace the ensemble.
        resume: continue folds that have checkpoints (trained folds are kept, untouched folds start).
        on_fold: called as ``on_fold(i, K)`` before fold ``i`` trains; returns the progress callback for
            that fold's :func:`~unetkit.training.train_bundle` (or None).
        train_kwargs: passed on to :func:`~unetkit.training.train_bundle` (steps, seed, device, ...).

    Raises:
        UnetkitError: too few frames for K folds, a fold index out of range, a trained ensemble in
            ``output`` without ``overwrite``, a recipe whose head is not a class head.
    """
    from unetkit.data import fold_groups
    from unetkit.plan.settings import bundle_datalist
    from unetkit.training.handlers import latest_checkpoint
    from unetkit.training.workflow import _dataset_dir, _read_bundle, train_bundle

    if output is None and Path(bundle).is_file():
        raise TrainingError("a zipped bundle is unpacked to a cache folder: say where the folds go",
                            path=bundle, fix="pass --output DIR")
    if fold is not None and not 0 <= fold < folds:
        raise TrainingError(f"--fold {fold}: must be between 0 and {folds - 1} for --folds {folds}")
    src = open_bundle(bundle, trust=trust)
    out = Path(output).resolve() if output is not None else src
    if (out / "models" / "model.pt").is_file() and not overwrite and fold is None:
        raise TrainingError("holds a trained model, which the fold ensemble would replace",
                            path=out / "models" / "model.pt",
                            fix="pass --output DIR for the new bundle, or --overwrite to replace it")
    configs, metadata = _read_bundle(src)
    decode = json.dumps(configs.get("common.json", {}).get("decode", {}))
    if any(name in decode for name in _REGRESSION_DECODERS):
        raise TrainingError("this recipe's head is a distance map: its folds cannot be ensembled by averaging "
                            "class probabilities", fix="train without --folds, or choose a class decoder")
    dataset_dir = _dataset_dir(configs["train.json"], metadata, data)
    original = {key: copy.deepcopy(configs["train.json"][key]["datalist"]) for key in ("train", "validate")}
    whole = copy.deepcopy(original["train"])  # what the folds split
    if isinstance(whole, dict) and whole.get("_target_") == "unetkit.data.annotated_datalist":
        whole["part"] = "all"  # image / mask pairs: the folds split every pair, the held-out fifth too
    train_json = {**configs["train.json"], "train": {**configs["train.json"]["train"], "datalist": whole}}
    items = bundle_datalist({**configs, "train.json": train_json}, dataset_dir, "train#datalist")
    split_by, groups = fold_groups(items, folds)

    result = FoldsResult(output=out, split_by=split_by)
    for i in range(folds) if fold is None else [fold]:
        fold_out = out / "folds" / f"fold_{i}"
        trained = (fold_out / "models" / "model.pt").is_file()
        if trained and not overwrite and fold is None:
            logger.info("fold %d: already trained in %s, kept (--overwrite retrains it)", i, fold_out)
            metrics = _fold_metrics(fold_out)
        else:
            progress = on_fold(i, folds) if on_fold is not None else None
            split = {f"{key}::datalist": {"_target_": "unetkit.data.fold_datalist", "data": whole,
                                          "folds": folds, "fold": i, "part": part}
                     for key, part in (("train", "train"), ("validate", "validation"))}
            again = resume and not trained and latest_checkpoint(fold_out / "checkpoints") is not None
            run = train_bundle(src, data=dataset_dir, output=fold_out, overrides={**(overrides or {}), **split},
                               overwrite=overwrite, resume=again, trust=True, progress=progress, **train_kwargs)
            metrics = run.metrics
        result.folds.append({"fold": i, "bundle": str(fold_out), "metrics": metrics,
                             "validation": [_item_name(x, dataset_dir) for x in groups[i]]})
    result.pooled = _pooled(result.folds)
    if all((out / "folds" / f"fold_{i}" / "models" / "model.pt").is_file() for i in range(folds)):
        result.ensemble = _assemble(src, out, folds, original, result, groups, dataset_dir)
    return result


def _pooled(folds: list[dict]) -> dict[str, float]:
    """Each validation measure over all folds' validation frames: the folds' figures weighted by their frames."""
    sizes = [len(f["validation"]) for f in folds]
    names = sorted({k for f in folds for k in f["metrics"] if k.startswith("val_")})
    return {k: sum(f["metrics"].get(k, 0.0) * n for f, n in zip(folds, sizes)) / max(1, sum(sizes)) for k in names}


def _item_name(item: Mapping, root: Path) -> str:
    path = Path(item["image"])
    name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
    return f"{name}#{item['frame']}" if "frame" in item else name


def _fold_metrics(fold_out: Path) -> dict[str, float]:
    from unetkit.training.workflow import _model_metrics

    return _model_metrics(fold_out)


def _assemble(src: Path, out: Path, k: int, original: Mapping, result: FoldsResult, groups, dataset_dir: Path) -> Path:
    """Make ``out`` the ensemble bundle of its K folds."""
    from unetkit.bundle.archive import file_sha256
    from unetkit.bundle.network import read_state_dict
    from unetkit.training.handlers import _atomic_torch_save
    from unetkit.training.workflow import _write_bundle

    first = out / "folds" / "fold_0"
    configs = {n: read_config(first / "configs" / n) for n in CONFIG_NAMES if (first / "configs" / n).is_file()}
    for key, datalist in original.items():  # the recipe's own data, not fold 0's split
        configs["train.json"][key]["datalist"] = copy.deepcopy(datalist)
    found = False
    for config in configs.values():
        net = config.get("network_def")
        if isinstance(net, dict) and net.get("_target_") in ("unetkit.networks.UNet", "unetkit.networks.UNetEnsemble"):
            config["network_def"] = {"_target_": "unetkit.networks.UNetEnsemble", "members": k,
                                     **{a: v for a, v in net.items() if a not in ("_target_", "members")}}
            found = True
    if not found:
        raise TrainingError("the folds' network_def is not unetkit's UNet, so they cannot be ensembled", path=first)
    _write_bundle(src, out, configs)
    state, members = {}, []
    for i in range(k):
        weights = out / "folds" / f"fold_{i}" / "models" / "model.pt"
        state.update({f"members.{i}.{name}": v for name, v in read_state_dict(weights).items()})
        members.append({"fold": i, "sha256": file_sha256(weights)})
    (out / "models").mkdir(parents=True, exist_ok=True)
    _atomic_torch_save(state, out / "models" / "model.pt")
    (out / "models" / "best.json").unlink(missing_ok=True)  # fold 0's best step says nothing of the ensemble
    if (first / "plan.json").is_file():
        shutil.copy2(first / "plan.json", out / "plan.json")
    by_fold = {f["fold"]: f for f in result.folds}
    record = {
        "folds": k,
        "split_by": result.split_by,
        "dataset_dir": str(dataset_dir),
        "members": [{**m, "validation": [_item_name(x, dataset_dir) for x in groups[m["fold"]]],
                     "metrics": by_fold[m["fold"]]["metrics"] if m["fold"] in by_fold
                     else _fold_metrics(out / "folds" / f"fold_{m['fold']}")}
                    for m in members],
    }
    result.pooled = _pooled(record["members"])  # all K folds, also those trained by earlier runs (--fold N)
    record["pooled"] = {n: round(v, 4) for n, v in result.pooled.items()}
    (out / "folds.json").write_text(json.dumps(record, indent=2) + "\n")
    meta_path = out / "configs" / "metadata.json"
    if meta_path.is_file():
        meta = read_config(meta_path)
        meta.setdefault("unetkit", {})["folds"] = {key: record[key] for key in ("folds", "split_by", "pooled")}
        meta["eval_metrics"] = record["pooled"]
        write_config(meta_path, meta)
    return out
