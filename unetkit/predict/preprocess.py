"""A bundle's ``preprocessing`` applied to one network input, and its inverse to the results.

A 3D recipe trained on volumes turned to one orientation (``Orientationd``) and resampled to one voxel size
(``Spacingd``) must see new volumes the same way: unetkit runs the bundle's own ``preprocessing`` on each
input, and MONAI's ``Invertd`` takes the network's output back onto the input grid exactly (labels with
nearest-neighbour interpolation: class indices must not be blended).
"""

from __future__ import annotations

import numpy as np
import torch

from unetkit.io import ImageMeta

__all__ = ["Preprocessed", "world_affine"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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
    for col in range(len(spatial), 3):  # a 2D image: the world axes it has no array axis for, unit steps
        affine["XYZ".index(next(a for a in "XYZ" if not affine["XYZ".index(a), :3].any())), col] = 1.0
    return affine


class Preprocessed:
    """One network input run through a bundle's ``preprocessing``, and results taken back onto its grid.

    The input becomes a MONAI ``MetaTensor`` with its world affine, so ``Orientationd``/``Spacingd`` in the
    bundle's ``preprocessing`` act on it as MONAI's runner would and record what they did; MONAI's ``Invertd``
    then returns labels (nearest neighbour) and probabilities (linear, renormalised to sum to 1) to the
    input's own grid: same shape, same affine. A 2D normalisation alone changes no grid, and nothing is
    inverted.

    Args:
        preprocessing: the bundle's ``preprocessing``, a dict transform on ``"image"``; None for none.
        image: ``(C, *spatial)``, any real dtype.
        affine: the input's RAS+ world affine (:func:`world_affine`).

    Examples:
        >>> from monai.transforms import Compose, Spacingd
        >>> p = Preprocessed(Compose([Spacingd("image", pixdim=(2.0, 2.0, 2.0))]), np.zeros((1, 21, 17, 9)),
        ...                  np.diag([1.0, 1.0, 3.0, 1.0]))
        >>> p.image.shape, p.back_labels(np.zeros(p.image.shape[1:], np.uint8)).shape
        ((1, 11, 9, 13), (21, 17, 9))
    """

    def __init__(self, preprocessing, image: np.ndarray, affine: np.ndarray):
        from monai.data import MetaTensor

        self.preprocessing = preprocessing
        if preprocessing is None:
            self.image, self._meta = np.asarray(image, np.float32), None
            return
        pixels = torch.from_numpy(np.array(image, np.float32))  # a copy: the input may be a read-only map
        out = preprocessing({"image": MetaTensor(pixels, affine=torch.tensor(np.asarray(affine, np.float64)))})["image"]
        self._meta = out if isinstance(out, MetaTensor) and out.applied_operations else None
        values = out.as_tensor() if isinstance(out, MetaTensor) else out
        self.image = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        self.image = self.image.astype(np.float32, copy=False)

    def back_labels(self, labels: np.ndarray) -> np.ndarray:
        """Labels ``(*grid)`` on the input grid ``(*spatial)``, nearest neighbour, the input dtype."""
        if self._meta is None:
            return labels
        restored = self._invert(torch.from_numpy(labels[None].astype(np.float32)), nearest=True)
        return np.rint(restored[0]).astype(labels.dtype)

    def back_probabilities(self, probs: np.ndarray | None) -> np.ndarray | None:
        """Probabilities ``(K, *grid)`` on the input grid ``(K, *spatial)``, linear, summing to 1."""
        if self._meta is None or probs is None:
            return probs
        restored = self._invert(torch.from_numpy(np.ascontiguousarray(probs, np.float32)), nearest=False)
        total = restored.sum(axis=0, keepdims=True)
        return (restored / np.maximum(total, 1e-12)).astype(np.float32)

    def _invert(self, values: torch.Tensor, *, nearest: bool) -> np.ndarray:
        from monai.data import MetaTensor
        from monai.transforms import Invertd

        invert = Invertd("pred", transform=self.preprocessing, orig_keys="image", nearest_interp=nearest)
        out = invert({"image": self._meta, "pred": MetaTensor(values, meta=self._meta.meta)})["pred"]
        return (out.as_tensor() if isinstance(out, MetaTensor) else torch.as_tensor(out)).numpy()
