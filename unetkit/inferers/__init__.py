"""Inferers: the paper's overlap-tile strategy for valid-convolution U-Nets, as a MONAI ``Inferer``.

- :class:`OverlapTileInferer`: ``inferer(image, network)``, ``(B, C, *spatial)`` -> ``(B, K, *spatial)``.
- :func:`infer_to_array`: streams a (memory-mapped) ``(C, *spatial)`` array into a preallocated one.
- :class:`AutocastInferer`: one network call under the precision policy (:mod:`unetkit.precision`), for training.
- :func:`plan_tiles`, :func:`mirror_index`, :func:`choose_tile`: the pieces, for tools and benchmarks.
"""

from unetkit.inferers.autocast import AutocastInferer, autocast_forward
from unetkit.inferers.engine import DEFAULT_GEOMETRY, network_geometry
from unetkit.inferers.overlap_tile import (
    OverlapTileInferer,
    infer_to_array,
    overlap_tile_inference,
    to_labels,
    to_probabilities,
)
from unetkit.inferers.tile_size import activation_bytes_per_pixel, choose_tile, memory_budget
from unetkit.inferers.tiling import (
    Tile,
    TilePlan,
    covering_tile_shape,
    gather_tile,
    mirror_index,
    plan_tiles,
    tile_halo,
)
from unetkit.inferers.tta import symmetries, tta_forward

__all__ = [
    "OverlapTileInferer",
    "AutocastInferer",
    "autocast_forward",
    "overlap_tile_inference",
    "infer_to_array",
    "to_labels",
    "to_probabilities",
    "network_geometry",
    "DEFAULT_GEOMETRY",
    "plan_tiles",
    "TilePlan",
    "Tile",
    "mirror_index",
    "gather_tile",
    "tile_halo",
    "covering_tile_shape",
    "choose_tile",
    "activation_bytes_per_pixel",
    "memory_budget",
    "symmetries",
    "tta_forward",
]
