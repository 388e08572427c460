"""The paper's weight map: class balance plus a border term that peaks in the gaps between touching cells.

Ronneberger et al. (2015), eq. 2::

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))

with ``d1``/``d2`` the distances from ``x`` to the nearest and the second-nearest cell. The naive way
computes one full-image distance transform per cell; here each cell's distances are computed only in its
bounding box grown by the distance beyond which the border term falls under ``1e-6`` (about 28 px for
``w0=10, sigma=5``), which gives the same map (to within that bound) tens of times faster
(``benchmarks/bench_weight_map.py``).
"""

from __future__ import annotations

import logging
import math
from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, ensure_tuple
from scipy import ndimage as ndi

from unetkit.errors import DataError
from unetkit.transforms.labels import MAX_DENSE_LABEL, label_array, separate_touching

logger = logging.getLogger(__name__)

__all__ = ["WeightMap", "WeightMapd", "border_cutoff", "two_nearest_distances", "weight_map"]

# Absolute bound on the border term left out beyond the cut-off distance (w0 = 10: 1e-7 of w0).
_TOLERANCE = 1e-6


def border_cutoff(w0: float, sigma: float, *, tolerance: float = _TOLERANCE) -> float:
    """The distance ``d1 + d2`` beyond which ``w0 * exp(-(d1 + d2)**2 / (2 sigma**2)) < tolerance``.

    Examples:
        >>> round(border_cutoff(10.0, 5.0), 2)
        28.39
        >>> border_cutoff(1e-7, 5.0)  # the term never reaches the tolerance
        0.0
    """
    if w0 <= tolerance:
        return 0.0
    return sigma * math.sqrt(2.0 * math.log(w0 / tolerance))


def _consecutive(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n when the ids are too large for ``ndi.find_objects``'s per-id list."""
    if not labels.size or int(labels.max()) <= MAX_DENSE_LABEL:
        return labels
    ids, inverse = np.unique(labels, return_inverse=True)
    return (inverse + int(ids[0] != 0)).reshape(labels.shape)


def two_nearest_distances(
    labels: np.ndarray, *, max_distance: float, spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``d1``, ``d2`` from each pixel to its nearest and second-nearest cell, where they matter.

    Exact wherever ``d1 + d2 < max_distance``, which is all the border term needs; elsewhere the pair
    only satisfies ``d1 + d2 >= max_distance`` (either may be ``inf``). Inside a cell ``d1 = 0``.

    How: if ``d1 + d2 < max_distance`` then both cells lie within ``max_distance`` of the pixel and of each
    other. So each cell's Euclidean distance transform is computed only in its bounding box grown by
    ``max_distance`` (per axis, in pixels of that axis), cells with no other cell in that window are
    skipped, and a running pair of minima keeps the two smallest distances per pixel. That costs about
    as much as two or three full-image transforms instead of one per cell.

    Args:
        labels: instance labels ``(H, W[, D])``, 0 = background, >= 0.
        max_distance: the bound on ``d1 + d2`` below which the results are exact (units of ``spacing``).
        spacing: physical size of a pixel along each axis (anisotropic volumes); 1 per axis if None.

    Returns:
        ``(d1, d2)``, float64 arrays of the shape of ``labels``.

    Examples:
        >>> d1, d2 = two_nearest_distances(np.array([[1, 0, 0, 2]]), max_distance=10)
        >>> d1.tolist(), d2.tolist()
        ([[0.0, 1.0, 1.0, 0.0]], [[3.0, 2.0, 2.0, 3.0]])
        >>> two_nearest_distances(np.array([[1, 0, 0, 0]]), max_distance=10)[1].tolist()  # one cell: no d2
        [[inf, inf, inf, inf]]
    """
    step = np.ones(labels.ndim) if spacing is None else np.asarray(spacing, dtype=float)
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    margins = [min(int(math.ceil(max_distance / s)), n) for s, n in zip(step, labels.shape)]
    dense = _consecutive(labels)
    for index, box in enumerate(ndi.find_objects(dense)):
        if box is None:
            continue
        window = tuple(slice(max(b.start - m, 0), min(b.stop + m, n)) for b, m, n in zip(box, margins, labels.shape))
        patch = dense[window]
        outside = patch != index + 1
        if not (outside & (patch != 0)).any():  # no other cell within reach: never part of a close pair
            continue
        d = ndi.distance_transform_edt(outside, sampling=spacing)
        first, second = d1[window], d2[window]  # views: the updates below write into d1 and d2
        np.minimum(second, np.maximum(first, d), out=second)
        np.minimum(first, d, out=first)
    return d1, d2


def weight_map(
    labels: np.ndarray,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_balance: bool = True,
    spacing: Sequence[float] | None = None,
    ignore: np.ndarray | None = None,
    gap: int = 1,
) -> np.ndarray:
    """The paper's weight map for instance labels ``(H, W[, D])``; see :class:`WeightMap`.

    ``ignore`` (boolean, same shape) marks pixels that get weight 0 and count for neither class; their
    labels must already be 0. Returns float32 of the shape of ``labels``.
    """
    target_bg = separate_touching(labels, gap=gap) == 0
    w_bg = w_fg = 1.0
    if class_balance:
        n_bg = int(np.count_nonzero(target_bg if ignore is None else target_bg & ~ignore))
        n_all = labels.size if ignore is None else labels.size - int(np.count_nonzero(ignore))
        n_fg = n_all - n_bg
        classes = (n_bg > 0) + (n_fg > 0)
        if classes:  # N / (K n_c): "balanced" class weights, their mean over the valid pixels is 1
            w_bg, w_fg = n_all / (classes * max(n_bg, 1)), n_all / (classes * max(n_fg, 1))
    weights = np.where(target_bg, w_bg, w_fg)
    cutoff = border_cutoff(w0, sigma)
    if cutoff > 0:
        d1, d2 = two_nearest_distances(labels, max_distance=cutoff, spacing=spacing)
        total = np.add(d1, d2, out=d1)
        near = np.flatnonzero((total < cutoff) & target_bg)
        close = total.ravel()[near]
        weights.ravel()[near] += w0 * np.exp(close * close * (-0.5 / sigma**2))
    if ignore is not None:
        weights[ignore] = 0.0
    return weights.astype(np.float32)


class WeightMap(Transform):
    """Instance labels ``(1, H, W[, D])`` -> the paper's pixel weights ``(1, H, W[, D])`` float32.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 sigma**2))`` (Ronneberger et al. 2015, eq. 2):

    - ``w_c`` balances the two classes of the training target that
      :class:`~unetkit.transforms.InstanceToSemantic` makes with the same ``gap`` (foreground = cells
      after the separation band; background = the rest). We use ``w_c = N / (2 n_c)`` (``n_c`` pixels of
      class ``c`` among the ``N`` labelled ones): constant per class within an image, mean 1 over the
      image, background below 1 when it dominates. An image with one class only gets ``w_c = 1``.
      ``class_balance=False`` sets ``w_c = 1``.
    - The border term is added on the target's background pixels only (Fig. 3d): the true background and
      the separation band. ``d1``/``d2`` are distances to the nearest / second-nearest cell of the
      *instance* labels, so in the band (which lies inside a cell) ``d1 = 0`` and ``d2`` is the distance
      to the neighbouring cell: the band gets about ``w_c + w0``, the highest weight in the image. With
      fewer than two cells ``d2`` is infinite and the term is 0.
    - Pixels labelled ``ignore_value`` (or marked in the ``ignore`` mask) get weight 0 and count for
      neither class: partial annotations, e.g. the Cell Tracking Challenge's gold SEG, which outlines
      only some cells.

    The result equals the naive definition (one full-image distance transform per cell) to within
    ``1e-6`` before rounding to float32: each cell's distances are computed only within
    :func:`border_cutoff` of it (28.4 px for ``w0=10, sigma=5``).

    Args:
        w0: height of the border term (paper: 10).
        sigma: its width, in pixels or in the units of ``spacing`` (paper: "approximately 5 pixels").
        class_balance: add the class-balancing ``w_c`` (else ``w_c = 1``).
        spacing: pixel size per spatial axis, for anisotropic volumes; distances and ``sigma`` are then
            in its units.
        ignore_value: label of unannotated pixels (weight 0); not a cell.
        gap: width of the separation band, as given to :class:`~unetkit.transforms.InstanceToSemantic`.

    Examples:
        >>> lab = np.zeros((1, 9, 11), np.uint16); lab[0, 2:7, 1:5] = 1; lab[0, 2:7, 6:10] = 2
        >>> w = WeightMap()(lab)
        >>> w.shape, w.dtype
        ((1, 9, 11), dtype('float32'))
        >>> bool(w[0, 4, 5] > w[0, 4, 2] > 0)  # the gap between the cells outweighs a cell's inside
        True
        >>> float(WeightMap()(np.zeros((1, 4, 4), int)).max())  # no cells: all background, no border
        1.0
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        w0: float = 10.0,
        sigma: float = 5.0,
        *,
        class_balance: bool = True,
        spacing: Sequence[float] | None = None,
        ignore_value: int | None = None,
        gap: int = 1,
    ):
        if not (math.isfinite(w0) and w0 >= 0):
            raise ValueError(f"w0 must be a finite number >= 0, got {w0!r} (the paper uses 10)")
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a finite number > 0, got {sigma!r} (the paper uses about 5 px)")
        if spacing is not None:
            spacing = tuple(float(s) for s in ensure_tuple(spacing))
            if not all(math.isfinite(s) and s > 0 for s in spacing):
                raise ValueError(f"spacing must be positive numbers, one per spatial axis, got {spacing}")
        if gap < 0 or int(gap) != gap:
            raise ValueError(f"gap must be a whole number of pixels >= 0, got {gap!r}")
        self.w0 = float(w0)
        self.sigma = float(sigma)
        self.class_balance = bool(class_balance)
        self.spacing = spacing
        self.ignore_value = ignore_value
        self.gap = int(gap)

    def __call__(self, img: NdarrayOrTensor, ignore: NdarrayOrTensor | None = None) -> NdarrayOrTensor:
        """Weights for the instance labels ``img`` ``(1, *spatial)``.

        Args:
            img: instance labels, 0 = background, numpy or torch.
            ignore: optional mask ``(1, *spatial)`` (or ``spatial``); its non-zero pixels get weight 0.

        Returns:
            ``(1, *spatial)`` float32 in the array library (and device) of ``img``.
        """
        labels = label_array(img, ignore_value=self.ignore_value)
        if self.spacing is not None and len(self.spacing) != labels.ndim:
            raise ValueError(
                f"spacing {self.spacing} has {len(self.spacing)} entries but the labels {tuple(img.shape)} "
                f"have {labels.ndim} spatial axes: give one per axis"
            )
        mask = self._ignore_mask(labels, ignore)
        if mask is not None:
            labels = np.where(mask, 0, labels)
        elif self.ignore_value is None:
            _warn_if_one_label_dominates(labels)
        weights = weight_map(
            labels,
            w0=self.w0,
            sigma=self.sigma,
            class_balance=self.class_balance,
            spacing=self.spacing,
            ignore=mask,
            gap=self.gap,
        )
        out, *_ = convert_to_dst_type(weights[None], dst=img, dtype=weights.dtype)
        return out

    def _ignore_mask(self, labels: np.ndarray, ignore: NdarrayOrTensor | None) -> np.ndarray | None:
        mask = None if self.ignore_value is None else labels == self.ignore_value
        if ignore is None:
            return mask
        extra = ignore.detach().cpu().numpy() if isinstance(ignore, torch.Tensor) else np.asarray(ignore)
        if extra.shape == (1, *labels.shape):
            extra = extra[0]
        if extra.shape != labels.shape:
            raise DataError(
                f"ignore mask has shape {extra.shape} but the labels are {(1, *labels.shape)}",
                fix="give a mask of the label image's size",
            )
        if not extra.any():  # an empty mask ignores nothing (and leaves the likely-ignore-label check on)
            return mask
        return extra != 0 if mask is None else mask | (extra != 0)


_WARNED: set[int] = set()


def dominant_label(labels: np.ndarray) -> tuple[int, float] | None:
    """``(value, share)`` of a label covering more than half of the annotated (non-zero) area among at least
    three objects, else None."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= MAX_DENSE_LABEL:
        return None
    counts = np.bincount(labels.ravel())
    if np.count_nonzero(counts[1:]) < 3:
        return None
    top = int(np.argmax(counts[1:])) + 1
    annotated = counts[1:].sum()
    return (top, float(counts[top] / annotated)) if counts[top] > annotated / 2 else None


def warn_dominant_label(value: int, share: float) -> None:
    """The warning of :func:`dominant_label`'s finding, said once per value and process."""
    _WARNED.add(value)
    logger.warning("label %d covers %.0f%% of the annotated area: if it marks unannotated pixels, train with "
                   "--ignore-label %d", value, 100 * share, value)


def _warn_if_one_label_dominates(labels: np.ndarray) -> None:
    """One label covering most of the annotated area among several objects is likely an "unannotated"
    value (the Cell Tracking Challenge's gold truth is partial): trained as one huge cell, it teaches the
    network nonsense. Said once per value, as a hint to pass it as the ignore label."""
    found = dominant_label(labels)
    if found is not None and found[0] not in _WARNED:
        warn_dominant_label(*found)


class WeightMapd(MapTransform):
    """Dict twin of :class:`WeightMap`: reads instance labels from ``keys``, writes weights to ``weight_key``.

    Args:
        keys: key(s) of the instance-label images.
        weight_key: where to write the weights; one per key when there are several keys.
        w0, sigma, class_balance, spacing, ignore_value, gap: as for :class:`WeightMap`.
        ignore_key: key of a mask whose non-zero pixels get weight 0 (e.g. unannotated regions,
            :class:`~unetkit.transforms.MarkUnannotatedd`); items without that key have none.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.

    Examples:
        >>> lab = np.zeros((1, 9, 11), np.uint16); lab[0, 2:7, 1:5] = 1; lab[0, 2:7, 6:10] = 2
        >>> d = WeightMapd("label", weight_key="weight")({"label": lab})
        >>> d["weight"].shape, d["label"] is lab
        ((1, 9, 11), True)
    """

    backend = WeightMap.backend

    def __init__(
        self,
        keys: KeysCollection,
        *,
        weight_key: Hashable | Sequence[Hashable] = "weight",
        w0: float = 10.0,
        sigma: float = 5.0,
        class_balance: bool = True,
        spacing: Sequence[float] | None = None,
        ignore_value: int | None = None,
        gap: int = 1,
        ignore_key: Hashable | None = None,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.weight_keys = ensure_tuple(weight_key)
        if len(self.weight_keys) != len(self.keys):
            raise ValueError(
                f"weight_key {list(self.weight_keys)} must name one output per key in {list(self.keys)}"
            )
        self.weight_map = WeightMap(
            w0, sigma, class_balance=class_balance, spacing=spacing, ignore_value=ignore_value, gap=gap
        )
        self.ignore_key = ignore_key

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        # an item without the mask has nothing unannotated (MarkUnannotatedd writes it only where it knows)
        ignore = None if self.ignore_key is None else d.get(self.ignore_key)
        for key, weight_key in self.key_iterator(d, self.weight_keys):
            d[weight_key] = self.weight_map(d[key], ignore)
        return d
