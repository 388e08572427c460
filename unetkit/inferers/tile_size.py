"""Choosing the tile size: the largest tile whose activations fit a memory budget.

Bigger tiles waste less: a depth-4 valid U-Net computes ``(T / (T - 188))**2`` input pixels per output
pixel with tiles of size ``T`` (2.2 at 572, 1.4 at 1212). So the inferer takes the largest valid tile
that fits the memory at hand: the free GPU memory on CUDA, a RAM budget on the CPU, divided by the
network's activation footprint per input pixel. The tile is then clamped to what the image needs
(:func:`~unetkit.inferers.tiling.plan_tiles`), so a 512x512 image runs as one 700 tile.

Examples:
    >>> from unetkit.networks import UNet
    >>> net = UNet(features=(64, 128, 256, 512, 1024))
    >>> bpp = activation_bytes_per_pixel(net, net.geometry)
    >>> round(bpp)                                  # about 1.8 kB per input pixel in float32
    1795
    >>> choose_tile((4096, 4096), net.geometry, bytes_per_pixel=bpp, budget=2**30)
    (764, 764)
"""

from __future__ import annotations

import logging
import math
import os
import weakref
from typing import Sequence

import torch
from torch import nn

from unetkit.inferers.tiling import _smallest_striding_tile, covering_tile
from unetkit.networks.geometry import UNetGeometry

__all__ = ["activation_bytes_per_pixel", "memory_budget", "choose_tile", "CPU_BUDGET_CAP"]

logger = logging.getLogger(__name__)

# The CPU gains little from tiles beyond ~2k px (waste is already ~1.2 there) and the machine is shared
# with the reader, the writer and other processes: a quarter of the free RAM, at most this much.
CPU_BUDGET_CAP = 4 * 2**30
# Room left on a GPU for cuDNN workspaces, the allocator's fragmentation and the caller's tensors.
CUDA_BUDGET_FRACTION = 0.7
# Slack over the counted activations: allocator rounding, oneDNN/cuDNN reorders, the input batch copies.
SLACK = 1.25

_probed: "weakref.WeakKeyDictionary[nn.Module, float]" = weakref.WeakKeyDictionary()


def _unet_channels_per_pixel(features: Sequence[int], spatial_dims: int, in_ch: int, out_ch: int) -> float:
    """Peak live channels per input pixel of a U-Net forward pass under ``torch.inference_mode``.

    On the way up, level ``l`` holds the skip (f), the up-convolution (f), their concatenation (2f) and
    the first convolution's output (f), plus the lower level's output and the skips still waiting above;
    a map at level ``l`` has ``2**(-d l)`` pixels per input pixel. Level 0 dominates: about 5 f0.
    """
    r = 2.0**-spatial_dims
    peak = 0.0
    for level in range(len(features) - 1):
        waiting = sum(f * r**k for k, f in enumerate(features[:level]))
        here = 5 * features[level] * r**level + features[level + 1] * r ** (level + 1)
        peak = max(peak, waiting + here)
    # Input tile (numpy gather, torch copy, channels-last copy) and the logits at full resolution.
    return peak + 3 * in_ch + 2 * out_ch


def _probe_bytes_per_pixel(network: nn.Module, geometry: UNetGeometry, spatial_dims: int, device) -> float:
    """Bytes of all leaf-module outputs of one forward pass per input pixel: an upper bound for networks
    whose structure we do not know (everything kept alive), measured once per network on a small tile."""
    if network in _probed:
        return _probed[network]
    in_ch = next((m.in_channels for m in network.modules() if hasattr(m, "in_channels")), 1)
    size = _smallest_striding_tile(geometry)
    x = torch.zeros((1, in_ch) + (size,) * spatial_dims, device=device)
    total = [0]

    def count(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    leaves = [m for m in network.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.inference_mode():
            network(x)
    finally:
        for h in hooks:
            h.remove()
    _probed[network] = total[0] / x[0, 0].numel()
    return _probed[network]


def activation_bytes_per_pixel(
    network: nn.Module, geometry: UNetGeometry, *, spatial_dims: int = 2, dtype_bytes: int = 4, device="cpu"
) -> float:
    """Estimated peak working memory of one forward pass, in bytes per input pixel of a tile.

    For unetkit's :class:`~unetkit.networks.UNet` (or any network with ``features``, ``in_channels`` and
    ``out_channels`` attributes) it is counted from the feature widths; for other networks (MONAI's
    ``BasicUNet``) one forward pass on a small tile is measured with hooks, which overestimates.

    Args:
        network: the network (possibly wrapped in ``DataParallel``/``DistributedDataParallel``).
        geometry: its size rules.
        spatial_dims: 2 or 3.
        dtype_bytes: bytes per activation value (4 for float32, 2 under bf16/fp16 autocast).
        device: where a probe pass runs, for networks without ``features``.

    Returns:
        Bytes per input pixel, including a 25% slack.
    """
    net = getattr(network, "module", network)
    features = getattr(net, "features", None)
    if features is not None and hasattr(net, "in_channels") and hasattr(net, "out_channels"):
        channels = _unet_channels_per_pixel(tuple(features), spatial_dims, net.in_channels, net.out_channels)
        return SLACK * dtype_bytes * channels
    return SLACK * _probe_bytes_per_pixel(net, geometry, spatial_dims, device) * dtype_bytes / 4


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # not Linux: free pages are a smaller but safe figure
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget(device: torch.device | str) -> int:
    """Bytes the inferer may spend on activations: 70% of the free memory of a CUDA device, else a quarter
    of the available RAM, at most :data:`CPU_BUDGET_CAP` (4 GiB)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(CUDA_BUDGET_FRACTION * free)
    return int(min(_available_ram() // 4, CPU_BUDGET_CAP))


def choose_tile(
    shape: Sequence[int], geometry: UNetGeometry, *, bytes_per_pixel: float, budget: int, batch: int = 1
) -> tuple[int, ...]:
    """The largest tile, per spatial axis, whose batch of activations fits ``budget``.

    Axes that one tile covers get the smallest tile that covers them, and the memory they leave goes to
    the other axes (a 2000 x 2000 x 40 volume gets tiles as thin as its 40 slices need and as wide as
    the budget then allows). Below the smallest usable tile the smallest is returned, with a warning.

    Args:
        shape: image spatial shape.
        geometry: the network's size rules.
        bytes_per_pixel: from :func:`activation_bytes_per_pixel`.
        budget: bytes, from :func:`memory_budget` or the caller.
        batch: tiles per forward pass.

    Returns:
        The largest tile per axis, to give to :func:`~unetkit.inferers.tiling.plan_tiles`.

    Examples:
        >>> choose_tile((512, 512), UNetGeometry(4), bytes_per_pixel=1800, budget=2**30)
        (700, 700)
        >>> choose_tile((2000, 2000, 40), UNetGeometry(3), bytes_per_pixel=300, budget=2**32)
        (324, 324, 132)
    """
    pixels = budget / (bytes_per_pixel * batch)
    covering = [covering_tile(geometry, int(n)) for n in shape]
    tile, free = list(covering), set(range(len(shape)))
    while free:  # water-filling: axes that fit in one tile take only that, the others share the rest
        fixed = math.prod(tile[a] for a in range(len(shape)) if a not in free)
        edge = (pixels / fixed) ** (1.0 / len(free))
        fits = {a for a in free if covering[a] <= edge}
        if not fits:
            for a in free:
                tile[a] = geometry.previous_valid_size(int(edge)) if edge >= geometry.min_input_size else 0
            break
        free -= fits
    floor = _smallest_striding_tile(geometry)
    if any(t < floor for t in tile):
        logger.warning(
            "a memory budget of %.0f MiB is too small for a batch of %d tile(s) of this network; "
            "using the smallest tiles that advance (%d px)",
            budget / 2**20,
            batch,
            floor,
        )
        tile = [max(t, floor) for t in tile]
    return tuple(tile)
