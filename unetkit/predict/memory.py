"""``unetkit infer --memory SIZE``: a cap on the whole process's peak resident memory, not only the tile's.

The peak of segmenting one file is the sum of what is resident at once:

- the baseline: the interpreter, torch, the network's weights, read from ``/proc/self/status`` (``VmRSS``) when
  the file starts, so it is this run's own figure, not a guess;
- the image: memory-mapped or read, every page of it is touched by the tiles, plus a float32 copy where the
  bundle's preprocessing cannot run tile by tile (resampled volumes) or the image is converted to grey;
- the outputs while the network runs: the label array (int32 for instances), the per-frame class indices, the
  probabilities when saved (float32 per class, twice: the frame's and the file's);
- the tile's working set (:func:`~unetkit.inferers.tile_size.activation_bytes_per_pixel` x tile pixels x batch).

The tile gets what the first three leave: :func:`tile_budget` returns the budget handed to the inferer, which
picks the largest valid tile that fits it. After the network, the instance decoder needs a few int32 copies of
one frame; that phase is checked too. When even the smallest tile that advances does not fit, the file fails
with one line that says how much memory it needs.
"""

from __future__ import annotations

import math
import resource

import numpy as np

from unetkit.errors import UnetkitError
from unetkit.inferers import activation_bytes_per_pixel, network_geometry
from unetkit.inferers.tiling import _smallest_striding_tile, covering_tile

__all__ = ["current_rss", "tile_budget", "format_size"]

MiB = 2**20
# Bytes per pixel of one frame that an instance decoder holds at its peak, labels returned included
# (measured on 2048² frames of ~900 cells): connected components need the foreground and scipy's int32 labels;
# the seeded watersheds (three-class, distance) add a float64 distance map, scipy's int32 index arrays and
# skimage's queue. Decoders not listed are counted as a watershed.
DECODE_BYTES = {"AsInstances": 12, "ThreeClassInstances": 56, "DistanceInstances": 56}
WATERSHED_BYTES = 56
# What the allocator keeps and the libraries add per run that no array accounts for (oneDNN's kernels and
# scratch, thread arenas, tifffile's write buffers): 24 MiB above the starting figure for a 150x170 image,
# tile included,
# the tile estimate's 25 % slack covering what grows with the tile (benchmarks/bench_memory.py --cap).
RESERVE = 16 * MiB


def current_rss() -> int:
    """This process's resident memory now, in bytes (``VmRSS``; the peak so far where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def format_size(n: float) -> str:
    """Bytes as MiB or GiB, rounded up (a need is never understated)."""
    return f"{math.ceil(n / MiB)} MiB" if n < 2**30 else f"{math.ceil(100 * n / 2**30) / 100:.2f} GiB"


def tile_budget(model, array: np.ndarray, layout, *, probabilities: bool, instances: bool, streams: bool,
                limit: int, option: str = "--memory") -> tuple[int, int]:
    """``(bytes, batch)``: what is left for the tile's working set when the process may use ``limit`` bytes in
    all, and the batch of tiles that fits it (the bundle's, or fewer).

    Args:
        model: the :class:`~unetkit.predict.model.BundleModel`.
        array: the file's array (a memory map or in memory).
        layout: its :class:`~unetkit.predict.layout.Layout`.
        probabilities, instances: what is written.
        streams: the file goes through :mod:`unetkit.predict.stream` (outputs in mapped files, one frame).
        limit: the cap on the process's peak resident memory.
        option: how the user set it, for the error.

    Raises:
        UnetkitError: not even the smallest tile fits; the line says how much would.
    """
    frame = math.prod(layout.frame_shape)
    frames = max(1, math.prod(layout.frames)) if layout.frame_axes else 1
    classes = model.out_channels
    parts = {"this process": current_rss() + RESERVE, "the image": int(array.nbytes)}
    if layout.grey or model.preprocessing is not None or not _streams_normalisation(model):
        # a float32 copy of the network input (grey conversion, whole-image normalisation); resampling by the
        # bundle's preprocessing holds the input and its resampled copy
        parts["the image"] += frame * 4 * (2 if model.preprocessing is not None else 1)
    if streams:
        out = frame * ((1 + 4 + 2) if instances else 1)  # mapped files: foreground, int32 labels, the mask
        out += frame * classes * 4 if probabilities else 0
        after = 0
    else:
        out = frame * frames * (4 if instances else 1) + frame  # the file's labels + this frame's classes
        out += (frame * frames + frame) * classes * 4 if probabilities else 0
        # decoding runs after the tiles are freed
        after = frame * DECODE_BYTES.get(type(model.instances).__name__, WATERSHED_BYTES) if instances else 0
    parts["its labels" + (" and probabilities" if probabilities else "")] = out
    fixed = sum(parts.values())
    spatial = model.spatial_dims
    geometry = network_geometry(model.network)
    bpp = activation_bytes_per_pixel(model.network, geometry, spatial_dims=spatial, device=model.device)
    # one tile, the smallest that advances (or the one covering an axis when that is smaller): the batch is
    # only speed, and shrinks to what the budget holds
    floor = _smallest_striding_tile(geometry)
    smallest = bpp * math.prod(min(floor, covering_tile(geometry, int(n))) for n in layout.frame_shape)
    need = fixed + max(smallest, after)
    if need > limit:
        shown = ", ".join(f"{k} {format_size(v)}" for k, v in parts.items())
        tile = f"the smallest tile {format_size(smallest)}"
        if after > smallest:
            tile = f"then decoding the labels {format_size(after)}"
        raise UnetkitError(f"{option} {format_size(limit)} is too small for this file: it needs at least "
                           f"{format_size(need)} ({shown}, {tile})")
    budget = int(limit - fixed)
    return budget, max(1, min(model.inferer.options.batch, int(budget // smallest)))


def _streams_normalisation(model) -> bool:
    """True when the bundle's normalisation runs tile by tile (no whole-image float32 copy)."""
    norm = model.normalize
    return norm is None or (callable(getattr(norm, "fit", None)) and callable(getattr(norm, "apply", None)))
