"""Synthetic demo data, deterministic and learnable: cells in the Cell Tracking Challenge layout and
CT-like volumes in the Medical Segmentation Decathlon layout.

The ``basic`` cells (the default, and ``fluorescence``, the same cells lit otherwise) are made for the
things the 2015 U-Net is about: irregular blobs (perturbed ellipses) of 10-25 px radius, 15-30 per
256 x 320 frame, many touching one another so that the thin background border between them (and the
weight map that stresses it) matters, some cut by the image border. Each cell is separated from its
neighbours by a visible seam, and from the background by a clear contrast, so that a small U-Net reaches a
foreground IoU above 0.9 within a few hundred SGD steps.

The other kinds imitate public data sets, harder and closer to what users bring (docs/demo_data.md says
what each imitates and where it falls short): ``nuclei`` (fluorescence nuclei, Data Science Bowl 2018),
``phase`` (phase contrast, PhC-C2DH-U373), ``dic`` (DIC, DIC-C2DH-HeLa) and ``em`` (electron microscopy
membranes, ISBI 2012). Each image is rendered from its label image, so the ground truth is exactly where
the objects are drawn.

Every frame is a pure function of ``(seed, sequence, frame)``: ``frames=10`` extends ``frames=6`` with four
new frames and leaves the first six as they were.

Examples:
    >>> image, labels = demo_frame((64, 80), seed=1)
    >>> image.dtype, labels.dtype, image.shape
    (dtype('uint8'), dtype('uint16'), (64, 80))
    >>> bool(labels.max() >= 1)
    True
    >>> image, labels = demo_frame((64, 80), seed=1, kind="nuclei")
    >>> image.dtype, bool(image[labels > 0].mean() > image[labels == 0].mean())
    (dtype('uint16'), True)
    >>> bool((demo_frame((64, 80), seed=1, kind="em")[1] == 0).mean() < 0.5)  # membranes only are background
    True
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = ["make_demo", "make_demo_volumes", "demo_frame", "demo_labels", "demo_image", "DEMO_KINDS"]

DEMO_KINDS = ("basic", "fluorescence", "nuclei", "phase", "dic", "em")
_BASIC_KINDS = ("basic", "fluorescence")
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


def demo_image(labels: np.ndarray, depth: np.ndarray, *, kind: str = "basic", seed=0) -> np.ndarray:
    """Render a microscopy-like image of the cells in ``labels`` (the ``basic`` and ``fluorescence`` kinds).

    Args:
        labels: ``(H, W)`` instance labels from :func:`demo_labels`.
        depth: the matching normalised-distance image from :func:`demo_labels`.
        kind: ``"basic"`` (uint8 phase contrast made easy: mid-grey, uneven illumination, cells darker than the
            background with a bright halo around them (or brighter with a dark rim), bright seams between
            touching cells,
            texture, noise) or ``"fluorescence"`` (uint16: bright cells on a dark background, dark seams,
            some cells out of focus, Poisson and Gaussian noise).
        seed: seed of the rendering noise.

    Returns:
        ``(H, W)`` uint8 (basic) or uint16 (fluorescence) image.
    """
    if kind not in _BASIC_KINDS:
        raise ValueError(f"kind must be one of {_BASIC_KINDS}, got {kind!r}")
    rng = np.random.default_rng(seed)
    render = _phase if kind == "basic" else _fluorescence
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


# --- Realistic kinds: imitations of public data sets (docs/demo_data.md) ---------------------------------------


class _Outline(NamedTuple):
    """A star-shaped outline: an ellipse (semi-axes ``a >= b``, angle ``theta``), Fourier harmonics ``k`` with
    relative amplitudes ``amp`` and phases, and lobes (pseudopods), rows of (angle, relative length, sharpness)."""

    a: float
    b: float
    theta: float
    k: np.ndarray
    amp: np.ndarray
    phase: np.ndarray
    lobes: np.ndarray

    @property
    def radius(self) -> float:
        return float(np.sqrt(self.a * self.b))


def _outline(rng, radius: float, *, aspect=(0.6, 1.0), wobble=0.1, harmonics=4, lobes=0) -> _Outline:
    """An outline of equivalent radius ``radius`` (area ``pi radius^2`` before wobble and lobes)."""
    q = rng.uniform(*aspect)
    k = np.arange(2, 2 + harmonics)
    amp = rng.uniform(0, wobble, k.size) * 2 / k
    lob = np.column_stack([rng.uniform(0, 2 * np.pi, lobes), rng.uniform(0.3, 0.9, lobes), rng.uniform(5, 20, lobes)])
    return _Outline(radius / np.sqrt(q), radius * np.sqrt(q), rng.uniform(0, np.pi), k, amp,
                    rng.uniform(0, 2 * np.pi, k.size), lob)


def _paint(labels, depth, label: int, centre, o: _Outline) -> None:
    """Draw outline ``o`` at ``centre`` where it is nearer (in outline-normalised distance) than what is there."""
    reach = o.a * (1 + o.amp.sum()) * (1 + o.lobes[:, 1].sum()) + 2
    (y0, x0), (y1, x1) = ([max(0, int(c - reach)) for c in centre],
                          [min(n, int(c + reach) + 1) for n, c in zip(labels.shape, centre)])
    if y1 <= y0 or x1 <= x0:
        return
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(centre[0])
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(centre[1])
    angle = np.arctan2(dy, dx) - np.float32(o.theta)
    r = o.a * o.b / np.hypot(o.b * np.cos(angle), o.a * np.sin(angle))
    for k, amp, phase in zip(o.k, o.amp, o.phase):
        r = r * (1 + amp * np.cos(k * angle + phase))
    for where, length, sharp in o.lobes:
        r = r * (1 + length * np.exp(sharp * (np.cos(angle - where) - 1)))
    d = np.hypot(dy, dx) / r
    win = depth[y0:y1, x0:x1]
    take = (d < 1) & (d < win)
    win[take] = d[take]
    labels[y0:y1, x0:x1][take] = label


def _scatter(rng, shape, radii, *, touch: float, spacing=(0.75, 0.95), apart: float = 0.7, tries: int = 30) -> list:
    """Centres for objects of the given radii, ``(y, x, index)`` for those that found room.

    With probability ``touch`` an object leans on one already placed, its centre ``spacing`` times the sum of
    the two radii away, so that the two overlap and :func:`_paint` gives them a shared border (no other centre
    closer than ``0.9 spacing[0]`` radii sums); otherwise it goes anywhere (across the border too) at least
    ``apart`` radii sums from every other centre.
    """
    placed = np.zeros((0, 3))
    out = []
    for i, r in enumerate(radii):
        for _ in range(tries):
            lean = len(placed) and rng.random() < touch
            if lean:
                y, x, other = placed[rng.integers(len(placed))]
                phi, dist = rng.uniform(0, 2 * np.pi), (r + other) * rng.uniform(*spacing)
                y, x = y + dist * np.sin(phi), x + dist * np.cos(phi)
            else:
                y, x = rng.uniform(-0.3 * r, shape[0] + 0.3 * r), rng.uniform(-0.3 * r, shape[1] + 0.3 * r)
            if not (-0.4 * r < y < shape[0] + 0.4 * r and -0.4 * r < x < shape[1] + 0.4 * r):
                continue
            closest = (0.9 * spacing[0] if lean else apart) * (placed[:, 2] + r)
            if not (np.hypot(placed[:, 0] - y, placed[:, 1] - x) < closest).any():
                placed = np.vstack([placed, [y, x, r]])
                out.append((y, x, i))
                break
    return out


def _blobs(rng, shape, outlines, *, touch, spacing, apart, min_size):
    """Scatter and draw ``outlines``: ``(labels, depth, source)``, the first two as :func:`demo_labels` returns
    them, ``source[label]`` the index in ``outlines`` of each label's outline (``source[0] = -1``)."""
    drawn = np.zeros(shape, np.int32)
    depth = np.full(shape, np.inf, np.float32)
    centres = _scatter(rng, shape, [o.radius for o in outlines], touch=touch, spacing=spacing, apart=apart)
    for label, (y, x, i) in enumerate(centres, start=1):
        _paint(drawn, depth, label, (y, x), outlines[i])
    labels = _clean(drawn, min_size=min_size)
    depth[labels == 0] = np.inf
    before = np.zeros(int(labels.max()) + 1, np.int64)
    before[labels.ravel()] = drawn.ravel()  # _clean renumbers; every pixel of a cell had the same old label
    return labels, depth, np.array([-1] + [i for *_, i in centres])[before]


def _count(cells: int | None, rng, per_default_area: tuple[int, int], shape) -> int:
    """Objects to place: ``cells``, else a number drawn from ``per_default_area`` (for 256 x 320), scaled."""
    if cells is not None:
        return int(cells)
    return max(1, round(rng.integers(*per_default_area) * np.prod(shape) / _DEFAULT_AREA))


def _vignette(rng, shape, strength: float) -> np.ndarray:
    """Multiplicative illumination: 1 at a random point near the centre, falling off radially and along a tilt."""
    yy, xx = (np.linspace(-0.5, 0.5, n, dtype=np.float32) for n in shape)
    cy, cx = rng.uniform(-0.2, 0.2, 2)
    r2 = ((yy[:, None] - cy) ** 2 + (xx[None, :] - cx) ** 2) / 0.5
    gy, gx = rng.uniform(-0.15, 0.15, 2)
    return (1 - strength * r2) * (1 + gy * yy[:, None] + gx * xx[None, :])


def _to_uint(image: np.ndarray, dtype) -> np.ndarray:
    return np.clip(np.rint(image), 0, np.iinfo(dtype).max).astype(dtype)


# nuclei: Data Science Bowl 2018 (BBBC038) fluorescence nuclei


def _nuclei_labels(shape, rng, cells=None):
    n = _count(cells, rng, (25, 66), shape)
    median = rng.uniform(6.5, 10.5)  # radius in px: diameters 10-30 px, the frame's typical size drawn first
    radii = np.clip(median * np.exp(rng.normal(0, 0.22, n)), 5, 15)
    outlines = [_outline(rng, r, aspect=(0.6, 1.0), wobble=0.06, harmonics=5) for r in radii]
    labels, depth, _ = _blobs(rng, shape, outlines, touch=rng.uniform(0.25, 0.5), spacing=(0.72, 0.95), apart=1.05,
                              min_size=20)
    return labels, depth, None


def _nuclei_image(labels, depth, _, rng) -> np.ndarray:
    """uint16 widefield fluorescence: DNA stain, PSF blur, vignetting, Poisson-Gaussian noise."""
    n, fg = int(labels.max()), labels > 0
    d = np.where(fg, depth, 1.0)
    dim = rng.uniform(150, 400)  # photons above background at the centre of the dimmest nucleus
    peak = np.concatenate([[0.0], dim * rng.uniform(6, 12) ** rng.random(n)])  # ~10x spread in one image
    chromatin = 1 + 0.2 * _smooth_field(rng, labels.shape, 1.0) + 0.1 * _smooth_field(rng, labels.shape, 3.0)
    spots = ndi.gaussian_filter((rng.random(labels.shape) < 0.006).astype(np.float32), 1.0) * 8
    signal = peak[labels] * (1 - 0.3 * d**2) * np.maximum(chromatin + spots, 0.2)
    signal *= np.where(_seams(labels), rng.uniform(0.45, 1.0), 1.0)  # a thin dark gap between some, none others
    psf = rng.uniform(0.9, 1.6)
    defocused = np.concatenate([[False], rng.random(n) < 0.15])[labels]
    signal = ndi.gaussian_filter(signal * ~defocused, psf) + ndi.gaussian_filter(signal * defocused, psf + 1.5)
    background = rng.uniform(60, 250) * (1 + 0.1 * _smooth_field(rng, labels.shape, max(labels.shape) / 8))
    light = _vignette(rng, labels.shape, rng.uniform(0.1, 0.4)) * (signal + background)
    gain = rng.uniform(0.6, 2.5)  # grey values per photon
    image = gain * rng.poisson(np.maximum(light, 0) / gain) + rng.normal(100, rng.uniform(2, 8), labels.shape)
    return _to_uint(image, np.uint16)


# phase: Cell Tracking Challenge PhC-C2DH-U373


def _phase_labels(shape, rng, cells=None):
    n = _count(cells, rng, (6, 15), shape)
    radii = rng.uniform(14, 30, n)
    rounded = rng.random(n) < 0.1  # cells rounding up to divide: small, round, thick
    radii[rounded] = rng.uniform(8, 12, rounded.sum())
    outlines = [
        _outline(rng, r, aspect=(0.9, 1.0), wobble=0.02, harmonics=2) if up
        else _outline(rng, r, aspect=(0.35, 0.9), wobble=0.2, harmonics=6, lobes=int(rng.integers(0, 4)))
        for r, up in zip(radii, rounded)
    ]
    labels, depth, source = _blobs(rng, shape, outlines, touch=rng.uniform(0.1, 0.3), spacing=(0.8, 1.0), apart=1.2,
                                   min_size=150)
    return labels, depth, np.append(rounded, False)[source]  # source -1 (the background): not rounded


def _phase_image(labels, depth, rounded, rng) -> np.ndarray:
    """uint8 Zernike phase contrast: flat cells a little darker than the substrate, bright halos around them
    (the optical path minus its low-pass, the halo and shade-off of phase contrast), rounded cells bright."""
    n, fg = int(labels.max()), labels > 0
    d = np.where(fg, depth, 1.0)
    lamella = np.clip((1 - d) / 0.25, 0, 1) ** 0.5
    body = np.where(rounded[labels], lamella, 0.5 * lamella + 0.5 * np.exp(-((d / 0.5) ** 2)))
    thick = np.concatenate([[0.0], rng.uniform(0.7, 1.2, n)])
    height = thick[labels] * body * (1 + 0.12 * _smooth_field(rng, labels.shape, 3)) * fg
    height *= np.where(_seams(labels), 0.3, 1.0)  # cells thin out where they meet: a faint bright line
    height = ndi.gaussian_filter(height, 0.7)
    image = rng.uniform(90, 130) * _vignette(rng, labels.shape, rng.uniform(0.05, 0.2))
    image -= rng.uniform(110, 160) * (height - ndi.gaussian_filter(height, rng.uniform(4, 7)))
    image -= rng.uniform(5, 15) * height * ~rounded[labels]
    image += rng.uniform(110, 150) * ndi.gaussian_filter(np.where(rounded[labels], 1 - d**2, 0), 1.0)
    image += 1.5 * _smooth_field(rng, labels.shape, 10)  # the substrate is not quite even
    image = ndi.gaussian_filter(image, 0.6) + rng.normal(0, rng.uniform(2, 4), labels.shape)
    return _to_uint(image, np.uint8)


# dic: Cell Tracking Challenge DIC-C2DH-HeLa


def _dic_labels(shape, rng, cells=None):
    n = _count(cells, rng, (40, 76), shape)
    radii = np.clip(rng.uniform(17, 24) * np.exp(rng.normal(0, 0.2, n)), 10, 34)
    outlines = [_outline(rng, r, aspect=(0.55, 1.0), wobble=0.12, harmonics=5) for r in radii]
    labels, depth, _ = _blobs(rng, shape, outlines, touch=rng.uniform(0.85, 0.97), spacing=(0.65, 0.85), apart=0.8,
                              min_size=120)
    return labels, depth, None


def _dic_image(labels, depth, _, rng) -> np.ndarray:
    """uint8 Nomarski DIC: the derivative of the optical path along the shear, shadow-cast relief."""
    n, fg = int(labels.max()), labels > 0
    d = np.where(fg, depth, 1.0)
    thick = np.concatenate([[0.0], rng.uniform(0.7, 1.3, n)])
    nucleus = np.exp(-((d / 0.45) ** 6))  # a flat, raised nucleus in the middle of a flat cell
    nucleoli = ndi.gaussian_filter(((rng.random(labels.shape) < 0.004) & (d < 0.35)).astype(np.float32), 1.2) * 8
    height = thick[labels] * ((1 - d**4) + 0.5 * nucleus + nucleoli + 0.08 * _smooth_field(rng, labels.shape, 1.5))
    height *= np.where(_seams(labels), 0.35, 1.0) * fg  # a groove where two cells meet
    height = ndi.gaussian_filter(height, 1.2)
    shear = 0.75 * np.pi + rng.uniform(-0.2, 0.2)
    gy, gx = np.gradient(height)
    image = rng.uniform(100, 140) + rng.uniform(100, 170) * (np.cos(shear) * gx + np.sin(shear) * gy)
    image += 8 * _illumination(rng, labels.shape, 1.0) + 1.5 * _smooth_field(rng, labels.shape, 1.0)
    image += rng.normal(0, rng.uniform(1.5, 3), labels.shape)
    return _to_uint(image, np.uint8)


# em: ISBI 2012 (serial-section TEM of the Drosophila first-instar larva ventral nerve cord)


def _em_labels(shape, rng, cells=None):
    """A dense tiling: multiplicatively weighted Voronoi regions (circular walls) on warped coordinates, walls
    thickened into membranes of 2-5 px (label 0); every other pixel belongs to a cell, numbered 1..N."""
    from scipy.spatial import cKDTree
    from skimage.measure import label as connected

    n = _count(cells, rng, (70, 120), shape)
    radii = rng.uniform(10, 16) * np.exp(rng.normal(0, 0.45, n))
    placed = _scatter(rng, shape, radii, touch=0.0, apart=0.6, tries=10)
    seeds, weight = np.array([p[:2] for p in placed]), radii[[p[2] for p in placed]]
    warp = rng.uniform(3, 7)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    points = np.column_stack([(yy + warp * _smooth_field(rng, shape, 10)).ravel(),
                              (xx + warp * _smooth_field(rng, shape, 10)).ravel()])
    dist, idx = cKDTree(seeds).query(points, k=min(6, len(seeds)))
    dist, idx = dist.reshape(len(points), -1), idx.reshape(len(points), -1)
    region = idx[np.arange(len(points)), np.argmin(dist / weight[idx], axis=1)].reshape(shape)
    wall = np.zeros(shape, bool)  # one side of every 4-neighbour pair that differs: removing it separates them
    wall[:, :-1] |= region[:, :-1] != region[:, 1:]
    wall[:-1] |= region[:-1] != region[1:]
    half = np.clip(rng.uniform(0.9, 1.9) + 0.5 * _smooth_field(rng, shape, 8), 0.3, 2.5)
    membrane = ndi.distance_transform_edt(~wall) < half
    labels = connected(np.where(membrane, 0, region + 1), background=0, connectivity=1)
    sizes = np.bincount(labels.ravel())
    keep = sizes >= 20
    keep[0] = False
    renumber = np.where(keep, np.cumsum(keep), 0).astype(np.uint16)
    return renumber[labels], None, None


def _em_image(labels, depth, _, rng) -> np.ndarray:
    """uint8 TEM: grey grainy cytoplasm, dark membranes, dark mitochondria-like blobs and vesicles."""
    n, membrane = int(labels.max()), labels == 0
    level = rng.normal(rng.uniform(160, 195), 12, n + 1) - 45 * (rng.random(n + 1) < 0.08)  # a few dark (glial) cells
    inner = ndi.distance_transform_edt(~membrane)
    mitochondria = (_smooth_field(rng, labels.shape, 2.5) > 2.0) & (inner > 4)
    vesicles = ndi.binary_dilation((rng.random(labels.shape) < 0.002) & (inner > 4)) & ~mitochondria
    image = level[labels] - 60 * mitochondria - 45 * vesicles
    image = np.where(membrane, rng.uniform(35, 70) + 10 * _smooth_field(rng, labels.shape, 4), image)
    image += rng.uniform(10, 18) * _smooth_field(rng, labels.shape, 0.8)  # grain of the stain
    image = ndi.gaussian_filter(image, 0.8) * rng.uniform(0.85, 1.1) + rng.normal(0, 5, labels.shape)
    return _to_uint(image, np.uint8)


_REALISTIC = {
    "nuclei": (_nuclei_labels, _nuclei_image),
    "phase": (_phase_labels, _phase_image),
    "dic": (_dic_labels, _dic_image),
    "em": (_em_labels, _em_image),
}



def demo_frame(
    shape: Sequence[int] = (256, 320), *, seed: int | Sequence[int] = 0, kind: str = "basic", cells: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic frame and its instance labels, without writing anything.

    Args:
        shape: ``(H, W)``, each at least 16.
        seed: seed (or seed sequence); the same seed gives the same cells for ``basic`` and ``fluorescence``.
        kind: one of :data:`DEMO_KINDS`. ``"basic"`` and ``"fluorescence"``: the easy cells of ``make demo``
            (see :func:`demo_image`). The others imitate public data sets (docs/demo_data.md): ``"nuclei"``
            (uint16 fluorescence nuclei, Data Science Bowl 2018), ``"phase"`` (uint8 phase contrast,
            PhC-C2DH-U373), ``"dic"`` (uint8 DIC, DIC-C2DH-HeLa), ``"em"`` (uint8 electron microscopy,
            ISBI 2012: cells tile the image, membranes are label 0).
        cells: number of objects to try to place (default: drawn per frame, scaled with the area relative
            to 256 x 320: basic 15-30, nuclei 25-65, phase 6-14, dic 22-39, em 70-119 Voronoi seeds).

    Returns:
        ``(image, labels)``: ``(H, W)`` uint8 or uint16 image, ``(H, W)`` uint16 labels (0 = background),
        objects numbered 1..N without gaps.

    Examples:
        >>> image, labels = demo_frame((96, 96), seed=3, cells=5)
        >>> int(labels.max()) <= 5
        True
        >>> bool((demo_frame((96, 96), seed=3, cells=5)[0] == image).all())  # deterministic
        True
    """
    if kind not in DEMO_KINDS:
        raise ValueError(f"kind must be one of {DEMO_KINDS}, got {kind!r}")
    if cells is not None and cells < 1:
        raise ValueError(f"cells must be at least 1 (or None for the kind's own count), got {cells}")
    seq = np.random.SeedSequence(seed)
    cell_seed, noise_seed = seq.spawn(2)
    if kind in _REALISTIC:
        draw, render = _REALISTIC[kind]
        labels, depth, flags = draw(_check_shape(shape, 2, 16), np.random.default_rng(cell_seed), cells)
        return render(labels, depth, flags, np.random.default_rng(noise_seed)), labels
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
    kind: str = "basic",
    frames: int = 6,
    shape: Sequence[int] = (256, 320),
) -> Path:
    """Write a synthetic Cell Tracking Challenge data set: sequence ``01`` to train on, ``02`` to validate.

    Layout, as the challenge's: ``root/01/t000.tif ...`` (uint8, or uint16 for ``fluorescence`` and ``nuclei``)
    and ``root/01_GT/SEG/man_seg000.tif ...`` (uint16 instance labels, 0 = background, every frame
    annotated), the same for ``02`` with other cells. Frames are independent draws (more variety to
    learn from than moving cells would give). Existing files of the same names are replaced.

    Args:
        root: folder to write into (created).
        seed: the data set's seed.
        kind: one of :data:`DEMO_KINDS`, see :func:`demo_frame`; ``"basic"`` is the easy default of
            ``make demo``, ``"nuclei"``, ``"phase"``, ``"dic"`` and ``"em"`` imitate public data sets.
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
