"""MONAI-style transforms: loading, the paper's weight map and elastic deformation, label conversions.

Each array transform does the work; its ``d`` twin builds it and maps dictionary keys (MONAI's
``ScaleIntensity`` / ``ScaleIntensityd`` pattern), so they compose with MONAI's own transforms.
"""

from unetkit.transforms.decoders import (
    DistanceInstances,
    DistanceInstancesd,
    InstanceToDistance,
    InstanceToDistanced,
    InstanceToThreeClass,
    InstanceToThreeClassd,
    ThreeClassInstances,
    ThreeClassInstancesd,
    fill_label_holes,
    remove_small_labels,
)
from unetkit.transforms.elastic import PaperElastic, RandPaperElastic, RandPaperElasticd, dense_displacement
from unetkit.transforms.instances import AsInstances, AsInstancesd, label_foreground, mask_instances
from unetkit.transforms.intensity import PercentileNormalize, PercentileNormalized
from unetkit.transforms.labels import InstanceToSemantic, InstanceToSemanticd, separate_touching
from unetkit.transforms.weight_map import WeightMap, WeightMapd, border_cutoff, two_nearest_distances, weight_map
from unetkit.transforms.load import LoadImage, LoadImaged, crop_region, read_item
from unetkit.transforms.padding import MirrorPad, MirrorPadd
from unetkit.transforms.partial import MarkUnannotatedd, unannotated_mask
from unetkit.transforms.save import SaveMask, SaveMaskd

__all__ = [
    "SaveMask",
    "SaveMaskd",
    "AsInstances",
    "AsInstancesd",
    "DistanceInstances",
    "DistanceInstancesd",
    "InstanceToDistance",
    "InstanceToDistanced",
    "InstanceToSemantic",
    "InstanceToSemanticd",
    "InstanceToThreeClass",
    "InstanceToThreeClassd",
    "LoadImage",
    "LoadImaged",
    "crop_region",
    "read_item",
    "MarkUnannotatedd",
    "MirrorPad",
    "MirrorPadd",
    "PaperElastic",
    "PercentileNormalize",
    "PercentileNormalized",
    "RandPaperElastic",
    "RandPaperElasticd",
    "ThreeClassInstances",
    "ThreeClassInstancesd",
    "WeightMap",
    "WeightMapd",
    "border_cutoff",
    "dense_displacement",
    "fill_label_holes",
    "label_foreground",
    "mask_instances",
    "remove_small_labels",
    "separate_touching",
    "two_nearest_distances",
    "unannotated_mask",
    "weight_map",
]
