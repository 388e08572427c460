"""The guard on ``precision="auto"``: a network whose bfloat16 labels stray from float32 stays in float32.

bfloat16 keeps 8 bits of mantissa, so a logit pair that is close (a pixel the network is unsure about) can
swap its order. For the paper's network that is about 1 pixel in 100,000; a network with few channels or
weak weights may lose more. Before the first tile runs in the reduced type, the inferer runs the network
twice, in float32 and under autocast, on one seeded random test input (values uniform in -1..1, the
shape of one tile whose output is 388 px per axis in 2D, 44 in 3D: 572 x 572 for the paper's network,
the test input the 2D bundles declare) and compares the labels (argmax; ``> 0`` for one channel). Below
:data:`~unetkit.precision.MIN_AGREEMENT` (99.9 %) ``"auto"`` runs float32 and says why; an explicit
``"bf16"`` or ``"fp16"`` is never overridden.

The measurement lives in the inferer, not in a bundle loader, so that MONAI's own runner and
``unetkit infer`` take the same decision from the same config. It is made once per network and weights
(remembered in memory while the weights are unchanged, and in ``$UNETKIT_CACHE/precision/`` under a
digest of the weights, the device and torch's version), so a CLI run pays it once per machine.
``unetkit bundle verify`` reports the same measurement on the bundle's declared test input.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from unetkit.inferers.tiling import covering_tile_shape
from unetkit.networks.geometry import UNetGeometry
from unetkit.precision import MIN_AGREEMENT, dtype_name, label_agreement

__all__ = ["Agreement", "measure_agreement", "guard_shape", "guard_input", "in_channels_of"]

logger = logging.getLogger(__name__)

GUARD_OUTPUT = {2: 388, 3: 44}
"""Output edge of the guard's test tile per spatial dimensionality."""

_seen: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Agreement:
    """How often labels under ``dtype`` autocast equal the float32 labels on one test input.

    Attributes:
        share: fraction of output pixels (voxels) with the same label, 0..1.
        dtype: the reduced type measured.
        shape: the test input's spatial shape.
    """

    share: float
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def ok(self) -> bool:
        """At least :data:`~unetkit.precision.MIN_AGREEMENT`."""
        return self.share >= MIN_AGREEMENT

    def describe(self) -> str:
        """``"bfloat16 labels equal float32's on 99.9990 % of a seeded random 572x572 test input"``."""
        size = "x".join(map(str, self.shape))
        return f"{dtype_name(self.dtype)} labels equal float32's on {100 * self.share:.4f} % of a seeded random {size} test input"


def guard_shape(geometry: UNetGeometry, spatial_dims: int) -> tuple[int, ...]:
    """The guard's test input shape: one tile whose output covers 388 px (2D) or 44 voxels (3D) per axis.

    Examples:
        >>> guard_shape(UNetGeometry(4), 2)
        (572, 572)
    """
    return covering_tile_shape(geometry, (GUARD_OUTPUT[spatial_dims],) * spatial_dims)


def guard_input(shape: Sequence[int], in_channels: int, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """The seeded random test input ``(1, in_channels, *shape)``, float32, uniform in ``value_range``."""
    lo, hi = value_range
    return torch.rand(1, in_channels, *shape, generator=torch.Generator().manual_seed(0)) * (hi - lo) + lo


def in_channels_of(network: Callable) -> int | None:
    """Input channels of the network's first convolution; None when it has none."""
    if not isinstance(network, nn.Module):
        return None
    conv = next((m for m in network.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return None if conv is None else int(conv.in_channels)


def measure_agreement(network: nn.Module, dtype: torch.dtype, shape: Sequence[int], *, device: torch.device,
                      layout: torch.memory_format = torch.contiguous_format,
                      value_range: tuple[float, float] = (-1.0, 1.0),
                      forward: Callable | None = None) -> Agreement:
    """:class:`Agreement` of ``network`` under ``dtype`` on the test input of ``shape`` (cached, see above).

    Args:
        network: the module (its current mode: put it in eval mode first).
        dtype: the reduced autocast type.
        shape: the test input's spatial shape (:func:`guard_shape`, or a bundle's declared one).
        device: where the network is.
        layout: memory layout of the test input (the one the tiles will have).
        value_range: of the test input's values.
        forward: how to call the network (default ``network``), e.g. with extra arguments.
    """
    shape = tuple(int(n) for n in shape)
    setting = (str(dtype), shape, tuple(value_range), str(device), str(layout))
    signature = tuple((p.data_ptr(), p._version) for p in network.parameters())
    remembered = _seen.setdefault(network, {})
    if remembered.get(setting, (None,))[0] == signature:
        return remembered[setting][1]
    path = _cache_file(network, setting, device)
    agreement = _read(path, dtype, shape)
    if agreement is None:
        x = guard_input(shape, in_channels_of(network) or 1, value_range).to(device).contiguous(memory_format=layout)
        agreement = Agreement(label_agreement(forward or network, x, dtype), dtype, shape)
        _write(path, agreement)
    remembered[setting] = (signature, agreement)
    return agreement


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from unetkit.precision import cpu_bf16

    return f"{device.type}:{cpu_bf16()[1]}"


def _cache_file(network: nn.Module, setting: tuple, device: torch.device) -> Path | None:
    """``$UNETKIT_CACHE/precision/<digest>.json``: digest of the weights, the setting, the device, torch."""
    try:
        from unetkit.bundle.archive import cache_root

        h = hashlib.blake2b(digest_size=20)
        h.update(repr((setting, _device_name(device), torch.__version__, type(network).__name__)).encode())
        for name, t in sorted(network.state_dict().items()):
            h.update(name.encode())
            h.update(repr((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return cache_root() / "precision" / f"{h.hexdigest()}.json"
    except Exception as e:  # an odd state dict, no cache folder: measure without the cache
        logger.debug("no precision cache: %s", e)
        return None


def _read(path: Path | None, dtype: torch.dtype, shape: tuple[int, ...]) -> Agreement | None:
    try:
        return Agreement(float(json.loads(path.read_text())["share"]), dtype, shape) if path else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write(path: Path | None, agreement: Agreement) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"share": agreement.share, "dtype": dtype_name(agreement.dtype),
                                   "shape": list(agreement.shape), "torch": torch.__version__}) + "\n")
        tmp.replace(path)
    except OSError as e:
        logger.debug("could not remember the precision check in %s: %s", path, e)
