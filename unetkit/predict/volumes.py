"""Volumes on the bundle's grid and back: orientation and voxel size as the recipe says, labels returned
onto the input's own grid.

A 3D recipe trained on volumes turned to one orientation (``Orientationd(axcodes="RAS")``) and resampled
to one voxel size (``pixdim``, MONAI's ``Spacingd``) must see new volumes the same way. MONAI's
``Orientation`` and ``Spacing`` on a ``MetaTensor`` record what they did, so their inverse takes the
network's output back onto the input grid exactly: same shape, same affine. Labels go back with
nearest-neighbour interpolation (class indices must not be blended), probabilities with the forward mode
(linear), renormalised to sum to 1.

Examples:
    >>> grid = VolumeGrid(pixdim=(2.0, 2.0, 2.0), axcodes="RAS")
    >>> vol = np.zeros((1, 21, 17, 9), np.float32)
    >>> on_grid = grid.forward(vol, np.diag([1.0, 1.0, 3.0, 1.0]))
    >>> on_grid.shape
    (1, 11, 9, 13)
    >>> grid.back_labels(np.zeros(on_grid.shape[1:], np.uint8)).shape
    (21, 17, 9)
"""

from __future__ import annotations

import numpy as np
import torch

from unetkit.io import ImageMeta

__all__ = ["VolumeGrid", "world_affine"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# MONAI 1.6 warns that Orientation's default labels will change; these are today's (RAS+ world).
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def world_affine(meta: ImageMeta, spatial: tuple[int, ...]) -> np.ndarray:
    """The RAS+ affine of the array axes ``spatial`` (indices into ``meta.axes``), in that order.

    NIfTI affines are RAS+ already; ITK's are LPS and are converted; TIFF has none, so one is built from
    the axis letters and the spacing (``X`` -> R, ``Y`` -> A, ``Z`` -> S).

    Examples:
        >>> world_affine(ImageMeta("ZYX", spacing=(2.0, 0.5, 0.5)), (0, 1, 2))[:3, :3].tolist()
        [[0.0, 0.0, 0.5], [0.0, 0.5, 0.0], [2.0, 0.0, 0.0]]
    """
    letters = "".join(meta.axes[i] for i in spatial)
    if meta.affine is not None and meta.spatial_axes == letters:
        return meta.affine if meta.format != "itk" else _LPS_TO_RAS @ meta.affine
    affine = np.eye(4)
    affine[:3, :3] = 0.0
    for col, (axis, letter) in enumerate(zip(spatial, letters)):
        step = meta.spacing[axis] if meta.spacing is not None else 1.0
        affine["XYZ".index(letter), col] = step
    return affine


class VolumeGrid:
    """Resample ``(C, *spatial)`` volumes to a bundle's orientation and voxel size, and labels back.

    Args:
        pixdim: voxel size on the network's grid, per axis after orientation; None keeps the voxel size.
        axcodes: orientation to turn to first (``"RAS"``); None keeps the array's axes.

    One instance serves one volume at a time: :meth:`forward` records the transforms that
    :meth:`back_labels` and :meth:`back_probabilities` undo.
    """

    def __init__(self, *, pixdim: tuple[float, ...] | None = None, axcodes: str | None = None):
        from monai.transforms import Compose, Orientation, Spacing

        steps = []
        if axcodes:
            steps.append(Orientation(axcodes=axcodes, labels=_RAS_LABELS))
        if pixdim:
            steps.append(Spacing(pixdim=pixdim, mode="bilinear", padding_mode="border"))
        self.compose = Compose(steps)
        self.identity = not steps
        self._resampled = None

    def forward(self, volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """``volume`` ``(C, *spatial)`` with world ``affine`` on the network's grid, float32 ``(C, *grid)``."""
        if self.identity:
            return np.asarray(volume, np.float32)
        from monai.data import MetaTensor

        pixels = torch.from_numpy(np.array(volume, np.float32))  # a copy: the input may be a read-only map
        image = MetaTensor(pixels, affine=torch.tensor(np.asarray(affine, np.float64)))
        self._resampled = self.compose(image)
        return self._resampled.as_tensor().numpy()

    def back_labels(self, labels: np.ndarray) -> np.ndarray:
        """Labels ``(*grid)`` on the input grid ``(*spatial)``, nearest neighbour, the input dtype."""
        if self.identity:
            return labels
        from monai.transforms.utils import convert_applied_interp_mode

        restored = self._inverse(torch.from_numpy(labels[None].astype(np.float32)), convert_applied_interp_mode,
                                 nearest=True)
        return np.rint(restored[0]).astype(labels.dtype)

    def back_probabilities(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities ``(K, *grid)`` on the input grid ``(K, *spatial)``, linear, summing to 1."""
        if self.identity:
            return probs
        restored = self._inverse(torch.from_numpy(np.ascontiguousarray(probs, np.float32)), None, nearest=False)
        total = restored.sum(axis=0, keepdims=True)
        return (restored / np.maximum(total, 1e-12)).astype(np.float32)

    def _inverse(self, values: torch.Tensor, convert, *, nearest: bool) -> np.ndarray:
        from monai.data import MetaTensor

        if self._resampled is None:
            raise ValueError("call forward() before taking results back")
        ops = self._resampled.applied_operations
        if nearest:
            ops = convert(ops, mode="nearest", align_corners=None)
        out = MetaTensor(values, meta=self._resampled.meta, applied_operations=list(ops))
        return self.compose.inverse(out).as_tensor().numpy()
