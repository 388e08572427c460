"""Turning what users pass to a metric (numpy arrays, torch tensors, nested lists) into checked arrays.

Every public metric validates its inputs here first, before any counting, so a bad input fails fast with
a message that names the argument (``pred``, ``gt``, ``ignore``), the problem and the fix.
"""

from __future__ import annotations

import numpy as np

from unetkit.errors import UnetkitError

__all__ = ["as_image", "as_mask", "as_labels", "check_same_shape"]


def as_image(x, name: str) -> np.ndarray:
    """``x`` as a numeric numpy array of shape ``(H, W)`` or ``(D, H, W)``; torch tensors come to the CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise UnetkitError(f"{name} has dtype {a.dtype}, not a number type", fix="pass a numeric label image or mask")
    if a.ndim not in (2, 3):
        raise UnetkitError(
            f"{name} has shape {a.shape}: expected a 2D (H, W) or 3D (D, H, W) image",
            fix="drop batch and channel axes first, e.g. x[0, 0]",
        )
    if a.size == 0:
        raise UnetkitError(f"{name} has shape {a.shape} and holds no pixels")
    return a


def as_mask(x, name: str) -> np.ndarray:
    """``x`` as a boolean foreground mask: any non-zero value is foreground."""
    return as_image(x, name) != 0


def as_labels(x, name: str) -> np.ndarray:
    """``x`` as a label image of non-negative integers (0 = background); integral floats are accepted."""
    a = as_image(x, name)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise UnetkitError(
                f"{name} holds non-integer values: a label image holds whole object ids",
                fix="threshold or argmax the network output first",
            )
        a = a.astype(np.int64)
    low = a.min()
    if low < 0:
        raise UnetkitError(f"{name} has negative labels (min {low})", fix="use labels >= 0, with 0 = background")
    if a.dtype == np.uint64:
        # np.bincount and index arithmetic need int64; ids above 2**63 do not occur in practice
        a = a.astype(np.int64)
    return a


def check_same_shape(pred: np.ndarray, gt: np.ndarray, *, pred_name: str = "pred", gt_name: str = "gt") -> None:
    """Raise if the two images differ in shape, naming both shapes."""
    if pred.shape != gt.shape:
        raise UnetkitError(
            f"{pred_name} has shape {pred.shape} but {gt_name} has shape {gt.shape}",
            fix="compare a prediction with the label image of the same size",
        )
