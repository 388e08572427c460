"""The paper's loss: pixel-wise softmax and cross-entropy, each pixel weighted by the weight map.

E = sum_x w(x) log(p_l(x)(x)) (Ronneberger et al. 2015, eq. 1), negated and averaged over the output
pixels. A valid-convolution U-Net's output is smaller than its input (572 -> 388 in 2D) and sits at the
input's centre, so the target and weight map, which come at the input size, are cropped to the centre.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["WeightMapCrossEntropyLoss", "center_crop_to"]

_REDUCTIONS = ("mean", "sum", "none")


def center_crop_to(x: torch.Tensor, spatial_size: tuple[int, ...], *, name: str = "target") -> torch.Tensor:
    """Crop the spatial axes of ``x (B, C, *spatial)`` about the centre to ``spatial_size``.

    The start offset is ``(have - want) // 2`` per axis, as the network's own skip cropping.

    Raises:
        ValueError: ``x`` is smaller than ``spatial_size`` along some axis.

    Examples:
        >>> center_crop_to(torch.arange(5.0).view(1, 1, 5), (3,)).tolist()
        [[[1.0, 2.0, 3.0]]]
    """
    have = tuple(x.shape[2:])
    if len(have) != len(spatial_size) or any(h < w for h, w in zip(have, spatial_size)):
        raise ValueError(
            f"cannot crop {name} of spatial size {have} to the network output {tuple(spatial_size)}: "
            f"give the {name} at the network's input size (or larger)"
        )
    if have == tuple(spatial_size):
        return x
    slices = [slice(None), slice(None)]
    slices += [slice((h - w) // 2, (h - w) // 2 + w) for h, w in zip(have, spatial_size)]
    return x[tuple(slices)]


class WeightMapCrossEntropyLoss(nn.Module):
    """Softmax cross-entropy weighted per pixel: ``mean_x w(x) * -log softmax(logits)(x)[class(x)]``.

    Called as ``loss(logits, target)`` with the class index and the weight stacked in ``target``'s two
    channels (what MONAI's ``ConcatItemsd(keys=["label", "weight"])`` makes, so that ``SupervisedTrainer``
    passes them as one ``label``), or as ``loss(logits, target, weight)`` with one channel each. Target and
    weight may be at the network's input size: they are cropped to the logits' spatial size about the
    centre. The mean runs over all output pixels of the batch (not over the weights), as the paper's sum.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per pixel, ``(B, *out_spatial)``).

    Shapes:
        logits ``(B, C, H', W'[, D'])``; target ``(B, 2, H, W[, D])`` (class, weight) or ``(B, 1, H, W[, D])``
        with weight ``(B, 1, H, W[, D])``, ``H >= H'`` etc. Class indices may be stored as floats.

    Examples:
        >>> logits = torch.zeros(1, 2, 3, 3)  # p = 0.5 everywhere
        >>> target = torch.zeros(1, 2, 5, 5); target[:, 1] = 2.0  # class 0, weight 2, input 2 px larger
        >>> round(WeightMapCrossEntropyLoss()(logits, target).item(), 4)  # 2 * log 2
        1.3863
    """

    def __init__(self, *, reduction: str = "mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction={reduction!r} is not one of {', '.join(map(repr, _REDUCTIONS))}")
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        classes, weights = self._split(logits, target, weight)
        out_size = tuple(logits.shape[2:])
        classes = center_crop_to(classes, out_size, name="target")[:, 0]
        weights = center_crop_to(weights, out_size, name="weight")[:, 0]
        index = classes.round().long() if classes.is_floating_point() else classes.long()
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= logits.shape[1]):
            raise ValueError(
                f"target class indices must lie in 0..{logits.shape[1] - 1} for logits with {logits.shape[1]} "
                f"channels, got {int(index.min())}..{int(index.max())}"
            )
        loss = F.cross_entropy(logits, index, reduction="none") * weights.to(logits.dtype)
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum() if self.reduction == "sum" else loss

    @staticmethod
    def _split(logits, target, weight) -> tuple[torch.Tensor, torch.Tensor]:
        if logits.ndim < 3 or target.ndim != logits.ndim or target.shape[0] != logits.shape[0]:
            raise ValueError(
                f"logits (B, C, *spatial) and target (B, 2, *spatial) must have the same batch size and number "
                f"of axes, got logits {tuple(logits.shape)} and target {tuple(target.shape)}"
            )
        if weight is None:
            if target.shape[1] != 2:
                raise ValueError(
                    f"target {tuple(target.shape)} must have 2 channels (class index, weight) when no weight is "
                    "given; pass the weight map as the third argument or concatenate it (ConcatItemsd)"
                )
            return target[:, :1], target[:, 1:]
        if target.shape[1] != 1 or weight.ndim != target.ndim or weight.shape[:2] != target.shape[:2]:
            raise ValueError(
                f"with a separate weight, target and weight must both be (B, 1, *spatial), got target "
                f"{tuple(target.shape)} and weight {tuple(weight.shape)}"
            )
        return target, weight
