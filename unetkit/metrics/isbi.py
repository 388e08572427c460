"""The ISBI 2012 EM segmentation challenge measures: foreground-restricted Rand error, variation of
information, and the warping error of Jain et al. (CVPR 2010).

The challenge (Arganda-Carreras et al., Front. Neuroanat. 2015) scores cell-membrane maps: the ground
truth is 255 on cells and 0 on thin membranes; a submission is a cell-probability map, thresholded and cut
into connected components (:func:`label_above_threshold`). Two conventions make its Rand error and VI
"foreground-restricted":

- pixels where the ground truth is boundary (label 0) are left out;
- pixels where the *prediction* is boundary (label 0) each count as a segment of their own (a singleton).
  ``skimage.metrics.adapted_rand_error`` instead treats predicted label 0 as one segment, so the
  boundary pixels inside all cells count as one object spanning them (a huge false merge); on
  predictions with thick or eroded boundaries the two readings differ widely. Here singletons are made
  explicit before counting.

The U-Net paper reports Rand error 0.0382 and warping error 0.000353 on the challenge's test set (whose
labels are secret). The challenge's later ranking on "V_Rand after border thinning" is not reproduced:
thinning of predicted boundaries is not implemented.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components
from skimage.metrics import contingency_table
from skimage.metrics import variation_of_information as _skimage_vi

from unetkit.errors import UnetkitError
from unetkit.metrics._inputs import as_image, as_labels, as_mask, check_same_shape

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ThresholdResult",
    "label_above_threshold",
    "rand_error",
    "rand_error_thresholds",
    "variation_of_information",
    "simple_point_table",
    "warp_ground_truth",
    "warping_error",
]

# Fiji's ISBI evaluation sweeps the cell-probability threshold from 0.0 to 1.0 in steps of 0.1.
DEFAULT_THRESHOLDS = tuple(i / 10 for i in range(11))


class ThresholdResult(NamedTuple):
    """Best value of a measure over thresholds, and the threshold that gave it (the first on ties)."""

    error: float
    threshold: float


def label_above_threshold(image, threshold: float = 0.5, *, connectivity: int = 1) -> np.ndarray:
    """Instance labels from a cell-probability map or mask: connected components of ``image > threshold``.

    Args:
        image: cell probabilities (or a 0/1, 0/255 mask), shape ``(H, W)`` or ``(D, H, W)``.
        threshold: pixels strictly above it are foreground (Fiji's ``<= threshold`` is background).
        connectivity: neighbours that join a component, as in ``skimage.measure.label``: 1 joins along
            axes only (4-neighbours in 2D, as Fiji's evaluation does), ``image.ndim`` also diagonally.

    Returns:
        int label image of the same shape, 0 = background, objects 1..N.

    Examples:
        >>> prob = np.array([[0.9, 0.2, 0.8], [0.7, 0.1, 0.6], [0.1, 0.9, 0.1]])
        >>> label_above_threshold(prob, 0.5).tolist()
        [[1, 0, 2], [1, 0, 2], [0, 3, 0]]
        >>> int(label_above_threshold(prob, 0.5, connectivity=2).max())  # diagonal contacts join 3 to 1 and 2
        1
    """
    a = as_image(image, "image")
    if not 1 <= connectivity <= a.ndim:
        raise ValueError(f"connectivity must be between 1 and {a.ndim} for a {a.ndim}D image, got {connectivity}")
    return connected_components(a > threshold, connectivity=connectivity)


def _restricted_labels(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    """The gt and pred labels of the gt-foreground pixels (1D), each predicted 0 given a fresh id."""
    g, p = as_labels(gt, "gt"), as_labels(pred, "pred")
    check_same_shape(p, g)
    inside = g != 0
    g, p = g[inside], p[inside].astype(np.int64)
    lone = p == 0
    # each predicted boundary pixel becomes its own segment: fresh ids above every existing label
    p[lone] = (p.max(initial=0) + 1) + np.arange(np.count_nonzero(lone))
    return g, p


def rand_error(pred, gt) -> float:
    """Foreground-restricted Rand error of the ISBI 2012 challenge: ``1 - F``-score of the Rand index.

    Over the pixels where ``gt`` is not boundary, with every predicted boundary pixel a singleton,
    ``F = 2 sum_ij n_ij^2 / (sum_i a_i^2 + sum_j b_j^2)`` where ``n_ij`` counts pixels in reference object
    ``i`` and predicted segment ``j``, and ``a_i``, ``b_j`` are the row and column sums (Rand precision
    ``sum n_ij^2 / sum b_j^2``, recall ``sum n_ij^2 / sum a_i^2``). Pixel pairs are counted with their
    self-pairs (the N^2 normalisation of Fiji's ``RandError`` used for the challenge);
    ``skimage.metrics.adapted_rand_error`` drops self-pairs and merges predicted label 0 into one
    segment, so its numbers differ, most on small images.

    Args:
        pred: predicted instance labels, shape ``(H, W)`` or ``(D, H, W)``; 0 = boundary.
        gt: reference instance labels, same shape; 0 = boundary (left out). A binary mask such as
            ISBI's ``train-labels.tif`` must be cut into cells first: ``label_above_threshold(mask, 0)``.

    Returns:
        The error in [0, 1]: 0 for the same partition of the foreground, whatever the label values.
        ``nan`` when ``gt`` has no foreground pixel (nothing to compare).

    Raises:
        UnetkitError: the shapes differ, or an input is not a 2D/3D image of non-negative integers.

    Examples:
        >>> gt = np.array([[1, 1, 1, 0, 2, 2, 2]])
        >>> rand_error(np.array([[5, 5, 5, 0, 6, 6, 6]]), gt)  # same partition, other ids
        0.0
        >>> round(rand_error(np.array([[3, 3, 3, 3, 3, 3, 3]]), gt), 4)  # a merge: 1 - 2 * 18 / (18 + 36)
        0.3333
        >>> rand_error(np.zeros_like(gt), gt)  # all boundary, 6 singletons: 1 - 2 * 6 / (18 + 6)
        0.5
        >>> rand_error(gt, np.zeros_like(gt))
        nan
    """
    g, p = _restricted_labels(pred, gt)
    if g.size == 0:
        return float("nan")
    table = contingency_table(g, p, sparse_type="array")
    sum_ij = float(table.data @ table.data)
    sum_a = float(np.square(np.asarray(table.sum(axis=1), dtype=np.float64)).sum())
    sum_b = float(np.square(np.asarray(table.sum(axis=0), dtype=np.float64)).sum())
    return 1.0 - 2.0 * sum_ij / (sum_a + sum_b)


def rand_error_thresholds(
    prob, gt, *, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, connectivity: int = 1
) -> ThresholdResult:
    """The challenge's score of a probability map: the smallest :func:`rand_error` over thresholds.

    Each threshold cuts ``prob`` into components with :func:`label_above_threshold`; the best (lowest) error
    wins, as the ISBI 2012 evaluation reports the maximal Rand F-score.

    Args:
        prob: cell-probability map (high on cells, low on membranes), shape ``(H, W)`` or ``(D, H, W)``.
        gt: reference instance labels, same shape, 0 = boundary.
        thresholds: thresholds to try; default 0.0, 0.1, ..., 1.0 as Fiji's evaluation script.
        connectivity: passed to :func:`label_above_threshold` (1: 4-neighbours in 2D, as Fiji).

    Returns:
        ``ThresholdResult(error, threshold)``; ``error`` is nan if ``gt`` has no foreground.

    Raises:
        UnetkitError: the shapes differ or an input is not a 2D/3D image.
        ValueError: ``thresholds`` is empty or holds a non-finite value.

    Examples:
        >>> gt = np.array([[1, 1, 0, 2, 2]])
        >>> prob = np.array([[0.9, 0.8, 0.4, 0.7, 0.9]])
        >>> rand_error_thresholds(prob, gt)  # 0.4 <= t < 0.7 splits the two cells at the membrane
        ThresholdResult(error=0.0, threshold=0.4)
    """
    levels = [float(t) for t in thresholds]
    if not levels or not np.all(np.isfinite(levels)):
        raise ValueError(f"thresholds must be a non-empty sequence of finite numbers, got {thresholds!r}")
    p = as_image(prob, "prob")
    g = as_labels(gt, "gt")
    check_same_shape(p, g, pred_name="prob")
    best = ThresholdResult(float("nan"), levels[0])
    for t in levels:
        err = rand_error(label_above_threshold(p, t, connectivity=connectivity), g)
        if not err >= best.error:  # also replaces the initial nan
            best = ThresholdResult(err, t)
    return best


def variation_of_information(pred, gt) -> tuple[float, float]:
    """Foreground-restricted variation of information, as the pair ``(split, merge)`` in bits.

    ``split = H(pred | gt)``: how much the prediction cuts reference objects apart (over-segmentation);
    ``merge = H(gt | pred)``: how much it lumps them together (under-segmentation). Their sum is the VI.
    The order is that of ``skimage.metrics.variation_of_information(gt, pred)``, which computes them;
    the ISBI conventions are applied first (gt boundary left out, predicted boundary pixels singletons).

    Args:
        pred: predicted instance labels, shape ``(H, W)`` or ``(D, H, W)``; 0 = boundary.
        gt: reference instance labels, same shape; 0 = boundary (left out).

    Returns:
        ``(split, merge)``, both >= 0 and 0 for the same partition. ``(nan, nan)`` when ``gt`` has no
        foreground pixel.

    Raises:
        UnetkitError: the shapes differ, or an input is not a 2D/3D image of non-negative integers.

    Examples:
        >>> gt = np.array([[1, 1, 0, 2, 2]])
        >>> variation_of_information(np.array([[1, 2, 0, 3, 3]]), gt)  # object 1 cut in two halves
        (0.5, 0.0)
        >>> variation_of_information(np.array([[4, 4, 4, 4, 4]]), gt)  # the two objects merged
        (0.0, 1.0)
    """
    g, p = _restricted_labels(pred, gt)
    if g.size == 0:
        return float("nan"), float("nan")
    split, merge = _skimage_vi(g, p)
    # rounding can leave skimage's entropies at -0.0 or -1e-16 for a perfect match
    return max(0.0, float(split)), max(0.0, float(merge))


# --- warping error ---------------------------------------------------------------------------------

_CROSS = ndimage.generate_binary_structure(2, 1)
_SQUARE = ndimage.generate_binary_structure(2, 2)
_FOUR_NEIGHBOURS = (np.array([0, 1, 1, 2]), np.array([1, 0, 2, 1]))


def _topological_number(patch: np.ndarray, connectivity: int) -> int:
    """Bertrand & Malandain's T_4 / T_8 of the centre of a 3x3 boolean patch.

    The number of ``connectivity``-connected components of the patch's set pixels around the centre
    (centre excluded) that are adjacent to the centre; with 8-connectivity every ring pixel is adjacent.
    """
    ring = patch.copy()
    ring[1, 1] = False
    labels, n = ndimage.label(ring, structure=_CROSS if connectivity == 4 else _SQUARE)
    if connectivity == 8:
        return n
    touching = labels[_FOUR_NEIGHBOURS]
    return np.unique(touching[touching > 0]).size


@functools.lru_cache(maxsize=2)
def simple_point_table(foreground_connectivity: int = 4) -> np.ndarray:
    """Which 3x3 neighbourhoods make their centre a simple point, as a 512-entry lookup table.

    A pixel is simple when flipping it changes no topology: no object or hole appears, vanishes, splits
    or merges. In 2D that holds iff ``T_fg(x, X) == 1`` and ``T_bg(x, not X) == 1`` (Bertrand & Malandain,
    Pattern Recognit. Lett. 1994), with 4/8 or 8/4 connectivity for foreground/background. Independent of
    the centre's own value, so flips both ways use one table. It agrees with Fiji's
    ``WarpingError.simple2DBertrand(patch, 4)`` on all 512 neighbourhoods (checked when written).

    Args:
        foreground_connectivity: 4 (background 8; the ISBI setting, where 8-connected one-pixel
            membranes separate 4-connected cells) or 8 (background 4).

    Returns:
        Read-only bool array of 512 entries; bit ``3 * r + c`` of the index is the pixel at row ``r``,
        column ``c`` of the neighbourhood.

    Examples:
        >>> table = simple_point_table(4)
        >>> def bits(rows):  # rows of the neighbourhood as strings, top to bottom
        ...     return sum(1 << (3 * r + c) for r, row in enumerate(rows) for c, v in enumerate(row) if v == "1")
        >>> bool(table[bits(["110", "110", "000"])])  # a corner of a blob: removable
        True
        >>> bool(table[bits(["010", "010", "010"])])  # the middle of a one-pixel line: would split it
        False
        >>> bool(table[bits(["111", "101", "111"])])  # a one-pixel hole: filling it removes the hole
        False
    """
    if foreground_connectivity not in (4, 8):
        raise ValueError(f"foreground_connectivity must be 4 or 8, got {foreground_connectivity}")
    background_connectivity = 12 - foreground_connectivity
    table = np.zeros(512, dtype=bool)
    for index in range(512):
        patch = ((index >> np.arange(9)) & 1).astype(bool).reshape(3, 3)
        table[index] = (
            _topological_number(patch, foreground_connectivity) == 1
            and _topological_number(~patch, background_connectivity) == 1
        )
    table.flags.writeable = False
    return table


def _binary_pair_2d(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p, g = as_mask(pred, "pred"), as_mask(gt, "gt")
    check_same_shape(p, g)
    if p.ndim != 2:
        raise UnetkitError(
            f"the warping error is defined here for 2D images only; pred and gt have shape {p.shape}",
            fix="score a stack slice by slice, e.g. np.mean([warping_error(p, g) for p, g in zip(pred, gt)])",
        )
    return p, g


def warp_ground_truth(pred, gt, *, foreground_connectivity: int = 4) -> np.ndarray:
    """Warp ``gt`` toward ``pred`` by flipping only simple points, until no more flip is possible.

    Jain et al., "Boundary learning by optimization with topological constraints" (CVPR 2010); Fiji's
    ``WarpingError.simplePointWarp2d`` is the reference. Pixels where the warped ground truth still
    disagrees with ``pred`` are the topological errors (splits, merges, missing or extra objects and holes).

    Outside the image counts as background, as in Fiji. Fiji flips mismatched simple pixels one at a
    time in scan order; here all of them on one of the four ``(row % 2, col % 2)`` sub-grids flip at
    once, sub-grid after sub-grid. Two pixels of one sub-grid never lie in each other's 3x3
    neighbourhood, so a simultaneous flip equals flipping them one by one: each flip keeps topology.
    Where several warps are possible (the last pixel of a two-pixel bridge, say) the two orders may
    settle on different, equally valid results.

    Args:
        pred: predicted mask, shape ``(H, W)``; non-zero = foreground (cell).
        gt: reference mask, same shape; non-zero = foreground.
        foreground_connectivity: 4 (default, background 8) or 8 (background 4).

    Returns:
        The warped ground truth, a bool array of shape ``(H, W)``.

    Raises:
        UnetkitError: the shapes differ, or the images are not 2D.
        ValueError: ``foreground_connectivity`` is not 4 or 8.

    Examples:
        >>> gt = np.zeros((5, 7), bool); gt[1:4, 1:3] = True; gt[1:4, 4:6] = True  # two cells
        >>> pred = np.zeros_like(gt); pred[1:4, 1:6] = True  # one merged blob
        >>> int((warp_ground_truth(pred, gt) != pred).sum())  # no pixel of the membrane can go alone
        3
    """
    table = simple_point_table(foreground_connectivity)
    target, g = _binary_pair_2d(pred, gt)
    return _warp(g, target, table)


def _warp(gt: np.ndarray, target: np.ndarray, table: np.ndarray) -> np.ndarray:
    h, w = gt.shape
    padded = np.zeros((h + 2, w + 2), dtype=np.uint16)
    padded[1:-1, 1:-1] = gt
    while True:
        flips = 0
        for r0, c0 in ((0, 0), (0, 1), (1, 0), (1, 1)):
            here = padded[1 + r0 : h + 1 : 2, 1 + c0 : w + 1 : 2]  # a view: writes go to padded
            want = target[r0::2, c0::2]
            wrong = here != want
            if not wrong.any():
                continue
            index = np.zeros(here.shape, dtype=np.uint16)
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    shifted = padded[1 + r0 + dr : h + 1 + dr : 2, 1 + c0 + dc : w + 1 + dc : 2]
                    index |= shifted << (3 * (dr + 1) + (dc + 1))
            flip = wrong & table[index]
            here[flip] = want[flip]
            flips += int(np.count_nonzero(flip))
        if flips == 0:  # every flip fixes one mismatch, so this is reached after finitely many sweeps
            return padded[1:-1, 1:-1].astype(bool)


def warping_error(pred, gt, *, foreground_connectivity: int = 4) -> float:
    """Warping error: fraction of pixels where the simple-point-warped ground truth still disagrees.

    :func:`warp_ground_truth` moves the reference boundaries toward the prediction wherever that keeps
    the topology; what remains are topological errors. Pixels that are merely misplaced boundary cost
    nothing; a merge of two cells costs the membrane pixels that would join them, a split the last pixel
    of the cut, a missing object one pixel, an extra object all of its pixels. The warp is greedy, as Jain
    et al.'s algorithm and Fiji: only pixels that disagree with the prediction flip, so a one-pixel
    membrane that the prediction moves by two pixels or more also counts. 2D only (the challenge is
    scored per slice).

    Args:
        pred: predicted mask, shape ``(H, W)``; non-zero = foreground (cell). Threshold a probability map
            first, e.g. ``prob > 0.5``.
        gt: reference mask, same shape; non-zero = foreground (ISBI: 255 = cell, 0 = membrane).
        foreground_connectivity: 4 (default, background 8) or 8 (background 4).

    Returns:
        The error in [0, 1]; 0 when the prediction has the reference's topology.

    Raises:
        UnetkitError: the shapes differ, or the images are not 2D (3D has its own simple points,
            not implemented).
        ValueError: ``foreground_connectivity`` is not 4 or 8.

    Examples:
        >>> gt = np.zeros((5, 7), bool); gt[1:4, 1:3] = True; gt[1:4, 4:6] = True  # two cells
        >>> shifted = np.zeros_like(gt); shifted[1:4, 1:2] = True; shifted[1:4, 3:6] = True
        >>> warping_error(shifted, gt)  # the membrane moved one pixel left: no topological error
        0.0
        >>> merged = np.zeros_like(gt); merged[1:4, 1:6] = True
        >>> round(warping_error(merged, gt), 4)  # the merge costs its 3 membrane pixels of 35
        0.0857
    """
    table = simple_point_table(foreground_connectivity)
    target, g = _binary_pair_2d(pred, gt)
    return float(np.count_nonzero(_warp(g, target, table) != target) / target.size)
