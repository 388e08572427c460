"""Training around MONAI's SupervisedTrainer: step-indexed data, handlers, validation measures, the workflow."""

from unetkit.training.dataset import StepDataset
from unetkit.training.handlers import (
    FreezeEncoder,
    MetricsLogger,
    StepCheckpointer,
    StepLRSchedule,
    StopOnNonFinite,
    TrainingProgress,
    ValidateEvery,
    latest_checkpoint,
)
from unetkit.training.validation import ForegroundDice, ForegroundIoU, SEGMeasure
from unetkit.training.workflow import TrainResult, train_bundle

__all__ = [
    "StepDataset",
    "ValidateEvery",
    "StepCheckpointer",
    "MetricsLogger",
    "StopOnNonFinite",
    "StepLRSchedule",
    "FreezeEncoder",
    "TrainingProgress",
    "latest_checkpoint",
    "ForegroundIoU",
    "ForegroundDice",
    "SEGMeasure",
    "train_bundle",
    "TrainResult",
]
