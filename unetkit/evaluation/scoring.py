"""Scores of one prediction against its reference, and of a whole set (with the CTC's pooled SEG)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from unetkit.errors import DataError
from unetkit.evaluation.pairing import Pair
from unetkit.io import read_image
from unetkit.metrics import (
    dice,
    instance_scores,
    iou,
    rand_error,
    seg_scores,
    variation_of_information,
    warping_error,
)
from unetkit.transforms.instances import mask_instances

__all__ = ["ImageScore", "score_pair", "score_arrays", "summarise", "COLUMNS"]

COLUMNS = ("iou", "dice", "seg", "f1_50", "rand_error", "vi_split", "vi_merge", "warping_error")


@dataclass
class ImageScore:
    """The scores of one image (or one slice of a stack); ``seg_j`` keeps the per-object Jaccard indices."""

    name: str
    scores: dict[str, float]
    seg_j: np.ndarray = field(repr=False)
    n_objects: int = 0


def _instances(a: np.ndarray) -> np.ndarray:
    # a binary mask (ISBI's 0/255, a --semantic prediction) names no objects: its 4-connected components do
    return mask_instances(a).astype(np.int64, copy=False)


def score_arrays(pred: np.ndarray, gt: np.ndarray, name: str) -> ImageScore:
    """All measures for one 2D image or 3D volume (``pred``/``gt`` label images or masks, same shape)."""
    if pred.shape != gt.shape:
        raise DataError(f"prediction {pred.shape} and reference {gt.shape} differ in shape", path=name)
    p, g = _instances(pred), _instances(gt)
    j = seg_scores(p, g)
    split, merge = variation_of_information(p, g)
    scores = {
        "iou": iou(p, g),
        "dice": dice(p, g),
        "seg": float(j.mean()) if j.size else math.nan,
        "f1_50": instance_scores(p, g, thresholds=(0.5,))[0.5].f1,
        "rand_error": rand_error(p, g),
        "vi_split": split,
        "vi_merge": merge,
        "warping_error": warping_error(p > 0, g > 0) if p.ndim == 2 else math.nan,
    }
    return ImageScore(name, scores, np.asarray(j), int(p.max()))


def _load(path) -> tuple[np.ndarray, str]:
    a, meta = read_image(path)
    return np.squeeze(np.asarray(a)), meta.format  # channel and other singleton axes


def score_pair(pair: Pair, *, volume: bool = False) -> list[ImageScore]:
    """Scores of a file pair: one per image; a 3D TIFF stack is scored frame by frame unless ``volume``.

    Microscopy stacks (time-lapse, ISBI 2012's slices, the 2D-annotated slices of CTC 3D sets) are
    evaluated per 2D frame by their challenges; NIfTI and other volumes are scored in 3D.
    """
    pred, _ = _load(pair.pred)
    gt, fmt = _load(pair.gt)
    if gt.ndim == 3 and fmt == "tiff" and not volume and pred.shape == gt.shape:
        return [score_arrays(pred[i], gt[i], f"{pair.name}#{i}") for i in range(gt.shape[0])]
    return [score_arrays(pred, gt, pair.name)]


def summarise(results: list[ImageScore]) -> dict[str, float]:
    """Means over images, except SEG: pooled over all reference objects of all images, as the CTC does."""
    out = {}
    for col in COLUMNS:
        values = [r.scores[col] for r in results if not math.isnan(r.scores[col])]
        out[col] = float(np.mean(values)) if values else math.nan
    j = np.concatenate([r.seg_j for r in results]) if results else np.empty(0)
    out["seg"] = float(j.mean()) if j.size else math.nan
    return out
