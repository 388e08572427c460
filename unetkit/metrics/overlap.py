"""Foreground overlap of two masks: IoU (the paper's Table 2 measure), Dice, and the ISBI 2012 pixel error.

All three take label images or masks of shape ``(H, W)`` or ``(D, H, W)`` (numpy arrays or torch tensors)
and look only at foreground versus background: any non-zero value is foreground, so instance labels and
0/1 or 0/255 masks can be mixed freely.
"""

from __future__ import annotations

import numpy as np

from unetkit.metrics._inputs import as_mask, check_same_shape

__all__ = ["iou", "dice", "pixel_error"]


def _masks(pred, gt, ignore) -> tuple[np.ndarray, np.ndarray]:
    p, g = as_mask(pred, "pred"), as_mask(gt, "gt")
    check_same_shape(p, g)
    if ignore is not None:
        keep = ~as_mask(ignore, "ignore")
        check_same_shape(keep, g, pred_name="ignore")
        p, g = p[keep], g[keep]
    return p, g


def iou(pred, gt, *, ignore=None) -> float:
    """Foreground intersection over union, ``|P and G| / |P or G|``.

    The measure of the paper's Table 2 (ISBI cell tracking 2015: 0.9203 on PhC-U373, 0.7756 on
    DIC-HeLa). Any non-zero value is foreground.

    Args:
        pred: predicted labels or mask, shape ``(H, W)`` or ``(D, H, W)``.
        gt: reference labels or mask, same shape.
        ignore: optional mask, same shape; its non-zero pixels are left out of both images (e.g. the
            unannotated part of a partially labelled frame).

    Returns:
        The IoU in [0, 1]. When neither image has foreground (after ``ignore``), 1.0: the prediction
        is exactly right, and a frame with nothing to find should not drag a mean down.

    Raises:
        UnetkitError: the shapes differ, or an input is not a 2D/3D numeric image.

    Examples:
        >>> gt = np.zeros((4, 5), int); gt[1:3, 1:4] = 1
        >>> pred = np.zeros((4, 5), int); pred[1:3, 2:5] = 7
        >>> iou(pred, gt)  # 4 shared of 8 pixels in either
        0.5
        >>> iou(np.zeros((3, 3)), np.zeros((3, 3)))  # both empty
        1.0
        >>> iou(np.zeros((3, 3)), np.eye(3))  # empty prediction, non-empty reference
        0.0
    """
    p, g = _masks(pred, gt, ignore)
    union = np.count_nonzero(p | g)
    return 1.0 if union == 0 else float(np.count_nonzero(p & g) / union)


def dice(pred, gt, *, ignore=None) -> float:
    """Foreground Dice coefficient, ``2 |P and G| / (|P| + |G|)``.

    Args:
        pred: predicted labels or mask, shape ``(H, W)`` or ``(D, H, W)``; non-zero = foreground.
        gt: reference labels or mask, same shape.
        ignore: optional mask of pixels to leave out, same shape.

    Returns:
        Dice in [0, 1]; 1.0 when neither image has foreground (as :func:`iou`). Dice and IoU are
        monotone in each other: ``dice = 2 iou / (1 + iou)``.

    Raises:
        UnetkitError: the shapes differ, or an input is not a 2D/3D numeric image.

    Examples:
        >>> gt = np.zeros((4, 5), int); gt[1:3, 1:4] = 1
        >>> pred = np.zeros((4, 5), int); pred[1:3, 2:5] = 1
        >>> round(dice(pred, gt), 4)  # 2 * 4 / (6 + 6)
        0.6667
        >>> dice(np.zeros((3, 3)), np.zeros((3, 3)))
        1.0
    """
    p, g = _masks(pred, gt, ignore)
    total = np.count_nonzero(p) + np.count_nonzero(g)
    return 1.0 if total == 0 else float(2 * np.count_nonzero(p & g) / total)


def pixel_error(pred, gt, *, ignore=None) -> float:
    """Fraction of pixels whose foreground/background class differs (the ISBI 2012 pixel error).

    Args:
        pred: predicted labels or mask, shape ``(H, W)`` or ``(D, H, W)``; non-zero = foreground.
        gt: reference labels or mask, same shape. For ISBI 2012 (255 = cell, 0 = membrane) pass the
            label image as it is and a prediction that is non-zero on cells.
        ignore: optional mask of pixels to leave out, same shape.

    Returns:
        The error in [0, 1]; 0.0 for identical masks, empty or not. If ``ignore`` leaves no pixel,
        nan (there is nothing to count).

    Raises:
        UnetkitError: the shapes differ, or an input is not a 2D/3D numeric image.

    Examples:
        >>> gt = np.zeros((4, 5), int); gt[1:3, 1:4] = 255
        >>> pred = np.zeros((4, 5), int); pred[1:3, 2:5] = 1
        >>> pixel_error(pred, gt)  # 4 of 20 pixels differ
        0.2
        >>> pixel_error(np.zeros((3, 3)), np.zeros((3, 3)))
        0.0
    """
    p, g = _masks(pred, gt, ignore)
    return float("nan") if p.size == 0 else float(np.count_nonzero(p != g) / p.size)
