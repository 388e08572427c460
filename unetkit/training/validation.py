"""Validation measures as ignite metrics, pooled over the validation set and across ranks.

Both sum counts over all validation images (and all processes, under DDP) before dividing: the
foreground IoU is total intersection over total union, and SEG is the CTC's pooled mean over all
reference objects (not a mean of per-image means).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from monai.handlers import from_engine

__all__ = ["ForegroundIoU", "ForegroundDice", "SEGMeasure"]


def _pairs(output):
    preds, labels = output
    if isinstance(preds, torch.Tensor) and preds.ndim >= 4:  # a batch (B, 1, *spatial)
        preds, labels = list(preds), list(labels)
    for p, g in zip(preds, labels):
        p = p.detach().cpu().numpy() if isinstance(p, torch.Tensor) else np.asarray(p)
        g = g.detach().cpu().numpy() if isinstance(g, torch.Tensor) else np.asarray(g)
        yield p.squeeze(0) if p.shape[0] == 1 else p, g.squeeze(0) if g.shape[0] == 1 else g


class ForegroundIoU(Metric):
    """Foreground intersection over union (the paper's Table 2 measure), pooled over images.

    ``update`` takes ``(preds, labels)``: label images (instances or 0/1), non-zero = foreground.
    """

    def __init__(self, output_transform: Callable = from_engine(["pred", "label"]), device="cpu"):
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self):
        self._inter = torch.zeros((), dtype=torch.float64, device=self._device)
        self._union = torch.zeros((), dtype=torch.float64, device=self._device)

    @reinit__is_reduced
    def update(self, output):
        for p, g in _pairs(output):
            p, g = p != 0, g != 0
            self._inter += float(np.count_nonzero(p & g))
            self._union += float(np.count_nonzero(p | g))

    @sync_all_reduce("_inter", "_union")
    def compute(self) -> float:
        return 1.0 if self._union == 0 else float(self._inter / self._union)


class ForegroundDice(ForegroundIoU):
    """Foreground Dice coefficient, pooled over images: 2 |P and G| / (|P| + |G|) from the same counts."""

    @sync_all_reduce("_inter", "_union")
    def compute(self) -> float:
        # |P| + |G| = |P or G| + |P and G|
        total = self._union + self._inter
        return 1.0 if total == 0 else float(2 * self._inter / total)


class SEGMeasure(Metric):
    """The Cell Tracking Challenge SEG measure, pooled over all reference objects of all images.

    ``update`` takes ``(preds, labels)``: instance-label images. Returns nan when no image has a reference
    object (the CTC skips such frames).
    """

    def __init__(self, output_transform: Callable = from_engine(["pred", "label"]), device="cpu"):
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self):
        self._sum = torch.zeros((), dtype=torch.float64, device=self._device)
        self._count = torch.zeros((), dtype=torch.float64, device=self._device)

    @reinit__is_reduced
    def update(self, output):
        from unetkit.metrics import seg_scores

        for p, g in _pairs(output):
            scores = np.asarray(seg_scores(p, g))
            self._sum += float(scores.sum())
            self._count += float(scores.size)

    @sync_all_reduce("_sum", "_count")
    def compute(self) -> float:
        return float("nan") if self._count == 0 else float(self._sum / self._count)
