"""Segmentation measures on label images: plain functions on numpy arrays or torch tensors.

- Overlap of foreground masks: :func:`iou` (the paper's Table 2), :func:`dice`, :func:`pixel_error`.
- Cell Tracking Challenge: :func:`seg_measure` (SEG), :func:`seg_scores` (one Jaccard index per
  reference object) and :func:`seg_measure_pooled` (the challenge's pooling over frames).
- ISBI 2012 EM challenge: :func:`rand_error`, :func:`rand_error_thresholds`,
  :func:`variation_of_information`, :func:`warping_error` (with :func:`warp_ground_truth`), and
  :func:`label_above_threshold` to cut a probability map into objects.
- Object detection: :func:`instance_scores` (IoU matching; precision, recall, F1 per threshold).

Images are ``(H, W)`` or ``(D, H, W)``; 0 is background (or boundary), any other value an object id or
foreground. Bad inputs raise :class:`unetkit.errors.UnetkitError` naming the argument and the fix.
"""

from unetkit.metrics.ctc import seg_measure, seg_measure_pooled, seg_scores
from unetkit.metrics.instances import InstanceScores, instance_scores
from unetkit.metrics.isbi import (
    ThresholdResult,
    label_above_threshold,
    rand_error,
    rand_error_thresholds,
    variation_of_information,
    warp_ground_truth,
    warping_error,
)
from unetkit.metrics.overlap import dice, iou, pixel_error

__all__ = [
    "iou",
    "dice",
    "pixel_error",
    "seg_scores",
    "seg_measure",
    "seg_measure_pooled",
    "rand_error",
    "rand_error_thresholds",
    "variation_of_information",
    "label_above_threshold",
    "warp_ground_truth",
    "warping_error",
    "ThresholdResult",
    "instance_scores",
    "InstanceScores",
]
