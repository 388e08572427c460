"""The overlap-tile plan: where each tile starts, what it keeps, and the mirror index mapping.

The paper's overlap-tile strategy (Ronneberger et al. 2015, Fig. 2): extend the image by mirroring at
its borders, cut input tiles that overlap by the network's margin, and keep output tiles that butt
together. For a valid-convolution U-Net one more rule makes the stitched result *equal* to a single
whole-image pass: every tile must start at a multiple of ``2**depth`` from the start of the mirrored
image, so that each 2x2 pooling groups the same pixels as in the whole-image pass. Output tiles of a
depth-4 network are ``4 + 16k`` wide (388 for 572), so butting them would shift the pooling phase by 4
px per tile; instead tiles advance by ``16k`` (384) and each keeps that many outputs, the last one keeps
what is left. With that rule any tile size, and any mix of them, gives the same numbers as one pass
over the mirrored image.

Tiles are read straight from the source with :func:`mirror_index`, so neither the padded image nor a
copy of a memory-mapped source is ever made.

Examples:
    >>> from unetkit.networks import UNetGeometry
    >>> plan = plan_tiles((613, 701), UNetGeometry(depth=4), 572)
    >>> plan.tile, plan.stride, plan.n_tiles          # 2 x 2 tiles, shrunk from 572 to what they need
    ((508, 540), (320, 352), 4)
    >>> mirror_index(np.arange(-3, 6), 4)             # numpy.pad(mode="reflect") for a 4-px axis
    array([3, 2, 1, 0, 1, 2, 3, 2, 1])
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator, NamedTuple, Sequence

import numpy as np

from unetkit.networks.geometry import UNetGeometry

__all__ = [
    "mirror_index",
    "gather_tile",
    "tile_halo",
    "valid_tile_sizes",
    "covering_tile",
    "covering_tile_shape",
    "check_tile",
    "Tile",
    "TilePlan",
    "plan_tiles",
]


def mirror_index(coords: np.ndarray | Sequence[int], n: int) -> np.ndarray:
    """Map coordinates outside ``[0, n)`` into it the way ``numpy.pad(mode="reflect")`` extends an axis.

    Reflection about the first and last pixel (the edge pixel is not repeated) is periodic with period
    ``2 (n - 1)``; numpy repeats the reflection for pads wider than the axis, which the period gives
    for free. An axis of one pixel repeats that pixel.

    Args:
        coords: integer coordinates, any sign and size.
        n: length of the axis, ``>= 1``.

    Returns:
        Indices in ``[0, n)``, the shape of ``coords``.

    Examples:
        >>> mirror_index([-2, -1, 0, 2, 3, 4], 3)
        array([2, 1, 0, 2, 1, 0])
        >>> mirror_index([-5, 7], 1)
        array([0, 0])
    """
    coords = np.asarray(coords, dtype=np.int64)
    if n < 1:
        raise ValueError(f"axis length must be >= 1, got {n}")
    if n == 1:
        return np.zeros_like(coords)
    period = 2 * (n - 1)
    r = np.mod(coords, period)
    return np.where(r < n, r, period - r)


def gather_tile(source: np.ndarray, origin: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """Read one tile of the mirror-extended ``source`` without padding the source.

    Args:
        source: array ``(C, *spatial)``, e.g. an ``np.memmap``; only the pixels the tile needs are read.
        origin: first pixel of the tile per spatial axis, in source coordinates (may be negative).
        shape: tile size per spatial axis.

    Returns:
        Array ``(C, *shape)`` equal to ``np.pad(source, ..., mode="reflect")`` cut at ``origin``.

    Examples:
        >>> gather_tile(np.arange(5)[None], (-2,), (9,))
        array([[2, 1, 0, 1, 2, 3, 4, 3, 2]])
    """
    box, local = [], []
    for lo, size, n in zip(origin, shape, source.shape[1:]):
        if lo >= 0 and lo + size <= n:  # the common case: a plain slice, no index arrays
            box.append(slice(lo, lo + size))
            local.append(None)
            continue
        idx = mirror_index(np.arange(lo, lo + size), n)
        first = int(idx.min())
        box.append(slice(first, int(idx.max()) + 1))
        local.append(idx - first)
    # Read the bounding box once (contiguous for a memmap), then mirror it in memory, axis by axis.
    tile = np.asarray(source[(slice(None), *box)])
    for axis, idx in enumerate(local):
        if idx is not None:
            tile = np.take(tile, idx, axis=axis + 1)
    return tile


def tile_halo(geometry: UNetGeometry) -> int:
    """Input pixels a tile needs on each side of the outputs it keeps.

    A valid network consumes exactly its margin (92 px at depth 4). A same-padding network keeps its
    size, but the zeros it pads at a tile's border reach ``margin + 2`` px inwards (3x3 convolutions
    at every level, rounded up by the poolings); with a halo of ``6 * 2**depth`` px (96 at depth 4) the
    kept centres equal the whole-image pass, as for valid networks.

    Examples:
        >>> tile_halo(UNetGeometry(4)), tile_halo(UNetGeometry(4, padding="same"))
        (92, 96)
    """
    return geometry.margin if geometry.padding == "valid" else 6 * geometry.quantum


def _extent(geometry: UNetGeometry, t: int) -> int:
    """Outputs a tile of input size ``t`` can keep (``t - 2 * halo``)."""
    return t - 2 * tile_halo(geometry)


def _stride(geometry: UNetGeometry, t: int) -> int:
    """Step between tiles: the kept extent rounded down to the pooling quantum (388 -> 384)."""
    return _extent(geometry, t) // geometry.quantum * geometry.quantum


def valid_tile_sizes(geometry: UNetGeometry, *, up_to: int) -> list[int]:
    """Tile sizes the inferer accepts for ``geometry``, smallest first, up to ``up_to``.

    Valid networks take their valid input sizes (188, 204, ... at depth 4); same-padding networks take
    multiples of ``2**depth`` that leave at least one output pixel past the halo on each side.

    Examples:
        >>> valid_tile_sizes(UNetGeometry(4), up_to=240)
        [188, 204, 220, 236]
        >>> valid_tile_sizes(UNetGeometry(4, padding="same"), up_to=240)
        [208, 224, 240]
    """
    return list(range(_smallest_tile(geometry), up_to + 1, geometry.quantum))


def _smallest_tile(geometry: UNetGeometry) -> int:
    return geometry.next_valid_size(max(geometry.min_input_size, 2 * tile_halo(geometry) + 1))


def covering_tile(geometry: UNetGeometry, n: int) -> int:
    """Smallest tile whose kept outputs cover ``n`` px (the whole-image pass): 512 -> 700 at depth 4."""
    return max(_smallest_tile(geometry), geometry.next_valid_size(n + 2 * tile_halo(geometry)))


def covering_tile_shape(geometry: UNetGeometry, shape: Sequence[int]) -> tuple[int, ...]:
    """Input shape of the whole-image pass the tiles reproduce: :func:`covering_tile` per axis.

    Examples:
        >>> covering_tile_shape(UNetGeometry(4), (301, 257))
        (492, 444)
    """
    return tuple(covering_tile(geometry, int(n)) for n in shape)


def _smallest_striding_tile(geometry: UNetGeometry) -> int:
    """Smallest tile whose stride is at least one quantum, so that tiles can advance (204 at depth 4)."""
    t = _smallest_tile(geometry)
    while _stride(geometry, t) < geometry.quantum:
        t += geometry.quantum
    return t


def check_tile(geometry: UNetGeometry, t: int, axis: int) -> None:
    """Raise ``ValueError`` if ``t`` is not a tile size for ``geometry``, naming the nearest valid ones."""
    q, smallest = geometry.quantum, _smallest_tile(geometry)
    if t >= smallest and geometry.is_valid_size(t):
        return
    above = max(smallest, geometry.next_valid_size(t))
    below = f"{above - q} or " if above - q >= smallest and above - q < t else ""
    raise ValueError(
        f"tile {t} along spatial axis {axis} is not a valid input tile for a {geometry.padding}-padding "
        f"U-Net of depth {geometry.depth} (valid tiles: {smallest} + a multiple of {q}); use {below}{above}"
    )


class Tile(NamedTuple):
    """One tile of a plan.

    Attributes:
        origin: first input pixel per spatial axis, in image coordinates (negative in the mirrored border).
        region: the image region the tile's kept outputs fill, one slice per spatial axis.
        local: the same pixels within the tile's kept outputs (the network's output less ``TilePlan.crop``
            on each side), one slice per spatial axis.
    """

    origin: tuple[int, ...]
    region: tuple[slice, ...]
    local: tuple[slice, ...]


@dataclass(frozen=True)
class TilePlan:
    """Overlap-tile plan for one image: tile size, tile starts per axis and what each tile keeps.

    Attributes:
        shape: image spatial shape.
        tile: input tile shape (every tile of the plan has it, so tiles batch).
        halo: input pixels beyond the kept outputs on each side (the margin for valid networks).
        crop: network output pixels dropped on each side of a tile (0 for valid, the halo for same).
        stride: step between tile starts per axis, a multiple of ``2**depth``.
        starts: output start (image coordinates) of the tiles along each axis.
    """

    shape: tuple[int, ...]
    tile: tuple[int, ...]
    halo: int
    crop: int
    stride: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]

    @property
    def n_tiles(self) -> int:
        return int(np.prod([len(s) for s in self.starts]))

    @property
    def extent(self) -> tuple[int, ...]:
        """Outputs a tile can keep per axis, ``tile - 2 * halo`` (388 for 572 at depth 4)."""
        return tuple(t - 2 * self.halo for t in self.tile)

    @property
    def waste(self) -> float:
        """Computed input pixels per output pixel (1 would be no overlap and no border)."""
        return self.n_tiles * float(np.prod(self.tile)) / float(np.prod(self.shape))

    def __len__(self) -> int:
        return self.n_tiles

    def __iter__(self) -> Iterator[Tile]:
        for corner in itertools.product(*self.starts):
            origin, region, local = [], [], []
            for start, axis_starts, stride, n in zip(corner, self.starts, self.stride, self.shape):
                keep = n - start if start == axis_starts[-1] else stride
                origin.append(start - self.halo)
                region.append(slice(start, start + keep))
                local.append(slice(0, keep))
            yield Tile(tuple(origin), tuple(region), tuple(local))


def _axis_plan(geometry: UNetGeometry, n: int, largest: int, axis: int) -> tuple[int, tuple[int, ...]]:
    """Tile size and starts along one axis: as few tiles as ``largest`` allows, each as small as possible."""
    one = covering_tile(geometry, n)
    if one <= largest:  # one tile covers the axis: the smallest that does (512 px -> 700, not 4 x 572)
        return one, (0,)
    sizes = valid_tile_sizes(geometry, up_to=largest)
    stride = _stride(geometry, largest)
    if stride < geometry.quantum:
        raise ValueError(
            f"tile {largest} along spatial axis {axis} keeps {_extent(geometry, largest)} output px, fewer than "
            f"the {geometry.quantum}-px step tiles must advance by; use at least {_smallest_striding_tile(geometry)}"
        )
    count = 1 + -(-(n - _extent(geometry, largest)) // stride)
    # Same number of tiles, smallest size: spreads the work evenly instead of a full-size last tile.
    t = next(
        t
        for t in sizes
        if _stride(geometry, t) >= geometry.quantum and (count - 1) * _stride(geometry, t) + _extent(geometry, t) >= n
    )
    return t, tuple(k * _stride(geometry, t) for k in range(count))


def plan_tiles(shape: Sequence[int], geometry: UNetGeometry, tile: int | Sequence[int]) -> TilePlan:
    """Plan the tiles for an image of spatial ``shape``.

    Args:
        shape: image spatial shape ``(H, W[, D])``, any sizes ``>= 1``.
        geometry: the network's size rules.
        tile: the largest input tile edge, one int or one per axis (572: 572 in, 388 out). Along each axis
            the plan uses the fewest tiles this allows, each the smallest valid size that still covers the
            axis with that many tiles (a 512-px axis gets one 700 tile, not two 572 tiles).

    Returns:
        The :class:`TilePlan`.

    Raises:
        ValueError: ``tile`` is not a valid tile size (the message names the nearest valid ones), or too
            small to advance (stride below ``2**depth``) on an axis it does not cover in one tile.

    Examples:
        >>> p = plan_tiles((512, 512), UNetGeometry(4), 1020)
        >>> p.tile, p.n_tiles, round(p.waste, 2)
        ((700, 700), 1, 1.87)
        >>> p = plan_tiles((512, 512), UNetGeometry(4), 572)
        >>> p.tile, p.n_tiles
        ((444, 444), 4)
        >>> p = plan_tiles((1000,), UNetGeometry(4), 572)
        >>> p.tile, p.starts, [t.region for t in p]
        ((524,), ((0, 336, 672),), [(slice(0, 336, None),), (slice(336, 672, None),), (slice(672, 1000, None),)])
    """
    shape = tuple(int(n) for n in shape)
    tiles = (int(tile),) * len(shape) if np.isscalar(tile) else tuple(int(t) for t in tile)
    if len(tiles) != len(shape):
        raise ValueError(f"tile {tuple(tiles)} has {len(tiles)} sizes for an image with {len(shape)} spatial axes")
    if min(shape) < 1:
        raise ValueError(f"image spatial shape {shape} has an empty axis")
    for axis, t in enumerate(tiles):
        check_tile(geometry, t, axis)
    sizes, starts = zip(*(_axis_plan(geometry, n, t, a) for a, (n, t) in enumerate(zip(shape, tiles))))
    halo = tile_halo(geometry)
    stride = tuple(_stride(geometry, t) if len(s) > 1 else _extent(geometry, t) for t, s in zip(sizes, starts))
    crop = 0 if geometry.padding == "valid" else halo
    return TilePlan(shape, tuple(sizes), halo, crop, stride, tuple(starts))
