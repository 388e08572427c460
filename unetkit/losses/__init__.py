"""Losses: the paper's weight-map cross-entropy."""

from unetkit.losses.weighted_ce import WeightMapCrossEntropyLoss, center_crop_to

__all__ = ["WeightMapCrossEntropyLoss", "center_crop_to"]
