"""Synthetic demo data, deterministic and learnable: cells in the Cell Tracking Challenge layout and
CT-like volumes in the Medical Segmentation Decathlon layout.

The cells are made for the things the 2015 U-Net is about: irregular blobs (perturbed ellipses) of
10-25 px radius, 15-30 per 256 x 320 frame, many touching one another so that the thin background
border between them (and the weight map that stresses it) matters, some cut by the image border. Each
cell is separated from its neighbours by a visible seam, and from the background by a clear contrast,
so that a small U-Net reaches a foreground IoU above 0.9 within a few hundred SGD steps.

Every frame is a pure function of ``(seed, sequence, frame)``: ``frames=10`` extends ``frames=6`` with four
new frames and leaves the first six as they were.

Examples:
    >>> image, labels = demo_frame((64, 80), seed=1)
    >>> image.dtype, labels.dtype, image.shape
    (dtype('uint8'), dtype('uint16'), (64, 80))
    >>> bool(labels.max() >= 1)
    True
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = ["make_demo", "make_demo_volumes", "demo_frame", "demo_labels", "demo_image", "DEMO_KINDS"]

DEMO_KINDS = ("phase", "fluorescence")
_DEFAULT_AREA = 256 * 320
_SEQUENCES = ("01", "02")


def _check_shape(shape: Sequence[int], ndim: int, smallest: int, name: str = "shape") -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim or min(shape) < smallest:
        raise ValueError(f"{name} must be {ndim} sizes of at least {smallest}, got {shape}")
    return shape


def _cell_outline(rng: np.random.Generator, r_lo: float, r_hi: float):
    """Semi-axes, orientation and a few Fourier harmonics that make an ellipse irregular."""
    a = rng.uniform(r_lo, r_hi)
    b = a * rng.uniform(0.6, 1.0)
    k = np.arange(2, 6)
    amp = rng.uniform(0.0, 0.14, size=k.size) / k * 2
    phase = rng.uniform(0, 2 * np.pi, size=k.size)
    return a, b, rng.uniform(0, np.pi), k, amp, phase


def _place(rng, shape, cells, a, b) -> tuple[float, float] | None:
    """A centre for a new cell: often leaning on an existing one (overlapping, so they touch)."""
    size = (a + b) / 2
    for _ in range(40):
        if cells and rng.random() < 0.65:
            cy, cx, other = cells[rng.integers(len(cells))][:3]
            phi, dist = rng.uniform(0, 2 * np.pi), (other + size) * rng.uniform(0.62, 0.85)
            y, x = cy + dist * np.sin(phi), cx + dist * np.cos(phi)
        else:
            y = rng.uniform(-0.3 * a, shape[0] + 0.3 * a)
            x = rng.uniform(-0.3 * a, shape[1] + 0.3 * a)
        inside = -0.4 * a < y < shape[0] + 0.4 * a and -0.4 * a < x < shape[1] + 0.4 * a
        # Centres closer than 0.6 (r1 + r2) would let one cell swallow most of the other.
        if inside and all(np.hypot(y - c[0], x - c[1]) > 0.6 * (c[2] + size) for c in cells):
            return y, x
    return None


def demo_labels(
    shape: Sequence[int] = (256, 320), *, seed: int | Sequence[int] = 0, cells: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Random touching cells as an instance-label image.

    Each pixel goes to the cell whose outline-normalised distance ``d = |x - c| / r(angle)`` is smallest
    among those with ``d < 1``, so overlapping cells share a border with no gap. Fragments left by a
    neighbour or the image border are dropped (cells smaller than 30 px, or 1/4 of the smallest cell
    for tiny images).

    Args:
        shape: ``(H, W)``, each at least 16.
        seed: seed (or seed sequence) of the draw.
        cells: number of cells to try to place; default 15-30, scaled with the image area relative to
            256 x 320. Radii are 10-25 px, shrunk for images smaller than 100 px.

    Returns:
        ``(labels, depth)``: ``labels`` uint16 ``(H, W)``, 0 = background, cells numbered 1..N without
        gaps; ``depth`` float32 ``(H, W)``, the normalised distance ``d`` (0 at a centre, 1 at the outline,
        ``inf`` in the background), used to shade the cells.
    """
    shape = _check_shape(shape, 2, 16)
    rng = np.random.default_rng(seed)
    scale = min(1.0, min(shape) / 100)
    r_lo, r_hi = max(3.0, 10 * scale), max(4.0, 25 * scale)
    if cells is None:
        cells = max(1, round(rng.integers(15, 31) * np.prod(shape) / _DEFAULT_AREA / max(scale, 0.25) ** 2))
    labels = np.zeros(shape, np.int32)
    depth = np.full(shape, np.inf, np.float32)
    placed = []
    for _ in range(cells):
        a, b, theta, k, amp, phase = _cell_outline(rng, r_lo, r_hi)
        centre = _place(rng, shape, placed, a, b)
        if centre is None:
            continue
        placed.append((*centre, (a + b) / 2))
        _rasterise(labels, depth, len(placed), centre, a, b, theta, k, amp, phase)
    labels = _clean(labels, min_size=min(30, int(np.pi * r_lo**2 / 4)))
    depth[labels == 0] = np.inf  # where _clean dropped a fragment
    return labels, depth


def _rasterise(labels, depth, label, centre, a, b, theta, k, amp, phase) -> None:
    reach = a * (1 + amp.sum()) + 2
    y0, x0 = (max(0, int(c - reach)) for c in centre)
    y1, x1 = min(labels.shape[0], int(centre[0] + reach) + 1), min(labels.shape[1], int(centre[1] + reach) + 1)
    if y1 <= y0 or x1 <= x0:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - centre[0], xx - centre[1]
    angle = np.arctan2(dy, dx) - theta
    ellipse = a * b / np.hypot(b * np.cos(angle), a * np.sin(angle))
    wobble = 1 + (amp[:, None, None] * np.cos(k[:, None, None] * angle + phase[:, None, None])).sum(0)
    d = np.hypot(dy, dx) / (ellipse * wobble)
    win = depth[y0:y1, x0:x1]
    take = (d < 1) & (d < win)
    win[take] = d[take]
    labels[y0:y1, x0:x1][take] = label


def _clean(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Keep each cell's largest piece, drop tiny cells, number cells 1..N."""
    out = np.zeros(labels.shape, np.uint16)
    n = 0
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        pieces, count = ndi.label(labels[sl] == i)
        if count == 0:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        if sizes.max() < min_size:
            continue
        n += 1
        out[sl][pieces == 1 + int(np.argmax(sizes))] = n
    return out


def _seams(labels: np.ndarray) -> np.ndarray:
    """Cell pixels that touch a different cell (the borders the weight map stresses)."""
    fg = labels > 0
    hi = ndi.maximum_filter(labels, size=3)
    lo = ndi.minimum_filter(np.where(fg, labels, np.iinfo(labels.dtype).max), size=3)
    return fg & (((hi != labels) & (hi > 0)) | ((lo != labels) & (lo != np.iinfo(labels.dtype).max)))


def _smooth_field(rng, shape, sigma: float) -> np.ndarray:
    """Smooth random field of unit standard deviation."""
    f = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return f / (f.std() + 1e-12)


def demo_image(labels: np.ndarray, depth: np.ndarray, *, kind: str = "phase", seed=0) -> np.ndarray:
    """Render a microscopy-like image of the cells in ``labels``.

    Args:
        labels: ``(H, W)`` instance labels from :func:`demo_labels`.
        depth: the matching normalised-distance image from :func:`demo_labels`.
        kind: ``"phase"`` (uint8 phase contrast: mid-grey, uneven illumination, cells darker than the
            background with a bright halo around them (or brighter with a dark rim), bright seams between
            touching cells,
            texture, noise) or ``"fluorescence"`` (uint16: bright cells on a dark background, dark seams,
            some cells out of focus, Poisson and Gaussian noise).
        seed: seed of the rendering noise.

    Returns:
        ``(H, W)`` uint8 (phase) or uint16 (fluorescence) image.
    """
    if kind not in DEMO_KINDS:
        raise ValueError(f"kind must be one of {DEMO_KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    render = _phase if kind == "phase" else _fluorescence
    return render(labels, np.where(np.isfinite(depth), depth, 1.0).astype(np.float32), rng)


def _illumination(rng, shape, amplitude: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    gy, gx = rng.uniform(-1, 1, 2)
    plane = (gy * (yy / shape[0] - 0.5) + gx * (xx / shape[1] - 0.5)) * amplitude
    return plane + 0.5 * amplitude * _smooth_field(rng, shape, max(shape) / 6)


def _phase(labels, depth, rng) -> np.ndarray:
    fg = labels > 0
    n = int(labels.max())
    # Darker cells, one in twenty brighter (a rounded, mitotic-looking cell); at least 30 grey values from
    # the background at the centre. Bright cells are the hard case (they resemble the halo): rare enough that
    # a few hundred training steps see mostly the common one, present so that the demo is not trivial.
    offset = np.concatenate([[0.0], np.where(rng.random(n) < 0.95, rng.uniform(-50, -30, n), rng.uniform(30, 45, n))])
    image = 128 + _illumination(rng, labels.shape, 10)
    image += offset[labels] * (1 - 0.35 * depth**2)
    image += fg * 7 * _smooth_field(rng, labels.shape, 1.5)  # granular cytoplasm
    gap, nearest = ndi.distance_transform_edt(~fg, return_indices=True)
    # The phase-contrast halo: bright around the dark cells; a bright cell gets a dark rim instead, else its
    # edge would vanish into its own halo (a boundary no one could draw, which no network could learn).
    bright = (offset > 0)[labels[tuple(nearest)]]
    image += np.where(bright, -40.0, 48.0) * np.exp(-np.maximum(gap - 1, 0) / 1.6) * ~fg
    image += 30 * _seams(labels)
    image = ndi.gaussian_filter(image, 0.8) + rng.normal(0, 4, labels.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _fluorescence(labels, depth, rng) -> np.ndarray:
    n = int(labels.max())
    brightness = np.concatenate([[0.0], rng.uniform(700, 2000, n)])
    cells = brightness[labels] * (1 - 0.3 * depth**2) * (1 + 0.12 * _smooth_field(rng, labels.shape, 2))
    cells *= np.where(_seams(labels), 0.55, 1.0)
    # Some cells lie out of the focal plane: their own light is blurred more.
    blurred = np.concatenate([[False], rng.random(n) < 0.2])[labels]
    image = ndi.gaussian_filter(cells * ~blurred, 0.8) + ndi.gaussian_filter(cells * blurred, 1.8)
    image += 100 + _illumination(rng, labels.shape, 30)
    image = rng.poisson(np.maximum(image, 0)).astype(np.float32) + rng.normal(0, 8, labels.shape)
    return np.clip(np.rint(image), 0, 65535).astype(np.uint16)


def demo_frame(
    shape: Sequence[int] = (256, 320), *, seed: int | Sequence[int] = 0, kind: str = "phase", cells: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic frame and its instance labels, without writing anything.

    Args:
        shape: ``(H, W)``.
        seed: seed (or seed sequence); the same seed gives the same cells for both kinds.
        kind: ``"phase"`` or ``"fluorescence"``, see :func:`demo_image`.
        cells: number of cells to place (default 15-30 per 256 x 320).

    Returns:
        ``(image, labels)``: ``(H, W)`` uint8 or uint16 image, ``(H, W)`` uint16 labels (0 = background).

    Examples:
        >>> image, labels = demo_frame((96, 96), seed=3, cells=5)
        >>> int(labels.max()) <= 5
        True
        >>> bool((demo_frame((96, 96), seed=3, cells=5)[0] == image).all())  # deterministic
        True
    """
    if kind not in DEMO_KINDS:
        raise ValueError(f"kind must be one of {DEMO_KINDS}, got {kind!r}")
    seq = np.random.SeedSequence(seed)
    cell_seed, noise_seed = seq.spawn(2)
    labels, depth = demo_labels(shape, seed=cell_seed, cells=cells)
    return demo_image(labels, depth, kind=kind, seed=noise_seed), labels


def _write_tiff(path: Path, array: np.ndarray) -> None:
    import tifffile

    tmp = path.with_name(path.name + ".tmp")
    tifffile.imwrite(tmp, array, photometric="minisblack")
    os.replace(tmp, path)


def make_demo(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    kind: str = "phase",
    frames: int = 6,
    shape: Sequence[int] = (256, 320),
) -> Path:
    """Write a synthetic Cell Tracking Challenge data set: sequence ``01`` to train on, ``02`` to validate.

    Layout, as the challenge's: ``root/01/t000.tif ...`` (uint8 phase contrast or uint16 fluorescence)
    and ``root/01_GT/SEG/man_seg000.tif ...`` (uint16 instance labels, 0 = background, every frame
    annotated), the same for ``02`` with other cells. Frames are independent draws (more variety to
    learn from than moving cells would give). Existing files of the same names are replaced.

    Args:
        root: folder to write into (created).
        seed: the data set's seed.
        kind: ``"phase"`` or ``"fluorescence"``.
        frames: frames per sequence.
        shape: ``(H, W)`` of each frame.

    Returns:
        ``root``, ready for :func:`unetkit.data.ctc_datalist` and ``unetkit train --data``.

    Examples:
        >>> import tempfile
        >>> root = make_demo(tempfile.mkdtemp(), frames=2, shape=(48, 64))
        >>> sorted(p.name for p in (root / "01_GT" / "SEG").iterdir())
        ['man_seg000.tif', 'man_seg001.tif']
    """
    if kind not in DEMO_KINDS:
        raise ValueError(f"kind must be one of {DEMO_KINDS}, got {kind!r}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    shape = _check_shape(shape, 2, 16)
    root = Path(root)
    digits = 3 if frames <= 1000 else 4
    for s, seq in enumerate(_SEQUENCES):
        (root / seq).mkdir(parents=True, exist_ok=True)
        (root / f"{seq}_GT" / "SEG").mkdir(parents=True, exist_ok=True)
        for t in range(frames):
            image, labels = demo_frame(shape, seed=(seed, s, t), kind=kind)
            _write_tiff(root / seq / f"t{t:0{digits}d}.tif", image)
            _write_tiff(root / f"{seq}_GT" / "SEG" / f"man_seg{t:0{digits}d}.tif", labels)
    return root


def _ct_volume(rng, shape, spacing) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like ``(Z, Y, X)`` volume in Hounsfield units and its organ mask."""
    zz, yy, xx = (np.arange(n, dtype=np.float32) * s for n, s in zip(shape, spacing))
    extent = np.array(shape, np.float32) * np.asarray(spacing, np.float32)
    z, y, x = np.meshgrid(zz, yy, xx, indexing="ij", sparse=True)
    cy, cx = extent[1] / 2 + rng.uniform(-0.03, 0.03, 2) * extent[1:]
    ry, rx = extent[1:] * rng.uniform(0.36, 0.42, 2)
    body = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2
    hu = np.where(body < 1, -90.0, -1000.0) + np.zeros(shape, np.float32)  # fat under the skin
    hu[np.broadcast_to(body < 0.8, shape)] = 40.0  # soft tissue
    spine = ((y - (cy + 0.6 * ry)) ** 2 + (x - cx) ** 2) < (0.14 * rx) ** 2
    hu[np.broadcast_to(spine, shape)] = 500.0
    # The organ: an irregular ellipsoid on one side, about 100 HU (a spleen in portal-venous phase).
    side = rng.choice([-1, 1])
    centre = np.array([extent[0] * rng.uniform(0.4, 0.6), cy - 0.1 * ry, cx + side * 0.45 * rx])
    radii = np.array([extent[0] * rng.uniform(0.22, 0.3), 0.3 * ry, 0.25 * rx]) * rng.uniform(0.85, 1.15, 3)
    wobble = 0.12 * _smooth_field(rng, shape, 3)
    r2 = ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + ((x - centre[2]) / radii[2]) ** 2
    organ = (r2 + wobble < 1) & (body < 0.8)
    hu[organ] = 100.0
    hu += np.where(body < 1, 8 * _smooth_field(rng, shape, 4), 0)  # tissue inhomogeneity
    hu = ndi.gaussian_filter(hu, 0.6) + rng.normal(0, 12, shape)  # partial volume, then quantum noise
    return hu.astype(np.float32), organ.astype(np.uint8)


def make_demo_volumes(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    n: int = 4,
    shape: Sequence[int] = (48, 64, 64),
    spacing: Sequence[float] = (2.5, 0.8, 0.8),
) -> Path:
    """Write synthetic CT-like volumes in the Medical Segmentation Decathlon layout.

    ``root/dataset.json``, ``root/imagesTr/vol_000.nii.gz`` (float32 Hounsfield units: air -1000, fat
    -90, soft tissue 40, bone 500, the organ about 100, noise of 12 HU) and ``root/labelsTr/vol_000.nii.gz``
    (uint8, 1 = organ). ``shape`` and ``spacing`` are given slices first, ``(Z, Y, X)``, as a scan is
    described (48 slices of 2.5 mm); the files store the array as nibabel and the Decathlon do,
    ``(X, Y, Z)``, with the spacing on the affine's diagonal (so ``nib.load(f).header.get_zooms()`` is
    ``(0.8, 0.8, 2.5)``, stored as float32).

    Args:
        root: folder to write into (created).
        seed: the data set's seed.
        n: number of volumes.
        shape: ``(Z, Y, X)`` voxels, each at least 8.
        spacing: ``(Z, Y, X)`` voxel size in mm.

    Returns:
        ``root``, ready for :func:`unetkit.data.msd_datalist`.

    Examples:
        >>> import tempfile, nibabel as nib
        >>> root = make_demo_volumes(tempfile.mkdtemp(), n=1, shape=(8, 16, 24))
        >>> img = nib.load(root / "imagesTr" / "vol_000.nii.gz")
        >>> img.shape, tuple(round(float(z), 3) for z in img.header.get_zooms())
        ((24, 16, 8), (0.8, 0.8, 2.5))
    """
    import nibabel as nib

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    shape = _check_shape(shape, 3, 8)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive sizes in mm, got {spacing}")
    root = Path(root)
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    affine = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    training = []
    for i in range(n):
        hu, organ = _ct_volume(np.random.default_rng((seed, 3, i)), shape, spacing)
        name = f"vol_{i:03d}.nii.gz"
        for sub, array in (("imagesTr", hu), ("labelsTr", organ)):
            img = nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)), affine)
            img.header.set_xyzt_units("mm")
            img.set_qform(affine, code=1)
            img.set_sform(affine, code=1)
            tmp = root / sub / f".{name}.tmp.nii.gz"
            nib.save(img, tmp)
            os.replace(tmp, root / sub / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    meta = {
        "name": "unetkit demo CT",
        "description": "synthetic CT-like volumes with one organ, written by unetkit.data.make_demo_volumes",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", "1": "organ"},
        "numTraining": n,
        "numTest": 0,
        "training": training,
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return root
