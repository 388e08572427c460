"""The guard on ``precision="auto"``: a network whose bfloat16 labels stray from float32 stays in float32.

bfloat16 keeps 8 bits of mantissa, so a logit pair that is close (a pixel the network is unsure about) can
swap its order. A trained network is sure about almost every pixel of real images: the demo model changes
about 2 pixels in 10,000 (99.98 % agreement). A network with random weights, or an image unlike its
training data, leaves many pixels near a tie and loses more.

So under ``"auto"`` the inferer checks before it trusts the reduced type: the first batch of tiles it
segments with a network runs twice, in float32 and under autocast, and the labels (argmax; ``> 0`` for one
channel) are compared. At :data:`~unetkit.precision.MIN_AGREEMENT` (99.9 %) or above, the inferer goes on in
the reduced type; below, in float32, and says why once. Either way that batch's output is the one of the
type chosen. An explicit ``"bf16"`` or ``"fp16"`` is never checked or overridden.

The decision is made once per network weights, device and torch version: remembered in memory while the
weights are unchanged, and in ``$UNETKIT_CACHE/precision/`` under a digest of the weights, so a machine
pays the extra pass once per model (MONAI's own runner and ``unetkit infer`` share it). It is measured on
real data, so it depends on the first image a model segments on a machine; pass ``--precision`` (or
``--exact``) where results must not depend on history. ``unetkit bundle verify`` reports the agreement on
the bundle's declared test input (random values: harder than images, so lower; it informs, the inferer
decides).
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

from unetkit.precision import MIN_AGREEMENT, dtype_name, label_agreement

__all__ = ["Agreement", "remembered", "remember", "measure_agreement", "guard_input"]

logger = logging.getLogger(__name__)

_seen: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Agreement:
    """How often labels under ``dtype`` autocast equal the float32 labels, and on what.

    Attributes:
        share: fraction of output pixels (voxels) with the same label, 0..1.
        dtype: the reduced type measured.
        on: what was segmented (``"the first 700x700 tile"``).
    """

    share: float
    dtype: torch.dtype
    on: str

    @property
    def ok(self) -> bool:
        """At least :data:`~unetkit.precision.MIN_AGREEMENT`."""
        return self.share >= MIN_AGREEMENT

    def describe(self) -> str:
        """``"bfloat16 labels equal float32's on 99.9812 % of the first 700x700 tile"``."""
        return f"{dtype_name(self.dtype)} labels equal float32's on {100 * self.share:.4f} % of {self.on}"


def _setting(dtype: torch.dtype, device: torch.device) -> tuple:
    return str(dtype), str(device)


def _signature(network: nn.Module) -> tuple:
    return tuple((p.data_ptr(), p._version) for p in network.parameters())


def remembered(network: nn.Module, dtype: torch.dtype, device: torch.device) -> Agreement | None:
    """The agreement measured before for these weights on this device (memory, then disk), or None."""
    setting = _setting(dtype, device)
    entry = _seen.get(network, {}).get(setting)
    if entry is not None and entry[0] == _signature(network):
        return entry[1]
    path = _cache_file(network, setting)
    try:
        saved = json.loads(path.read_text()) if path is not None else None
        agreement = Agreement(float(saved["share"]), dtype, str(saved["on"])) if saved else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if agreement is not None:
        _seen.setdefault(network, {})[setting] = (_signature(network), agreement)
    return agreement


def remember(network: nn.Module, device: torch.device, agreement: Agreement) -> None:
    """Keep ``agreement`` for these weights: in memory, and on disk for later runs."""
    setting = _setting(agreement.dtype, device)
    _seen.setdefault(network, {})[setting] = (_signature(network), agreement)
    path = _cache_file(network, setting)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"share": agreement.share, "on": agreement.on, "dtype": dtype_name(agreement.dtype),
                                   "torch": torch.__version__}) + "\n")
        tmp.replace(path)
    except OSError as e:
        logger.debug("could not remember the precision check in %s: %s", path, e)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from unetkit.precision import cpu_bf16

    return f"{device.type}:{cpu_bf16()[1]}"


def _cache_file(network: nn.Module, setting: tuple) -> Path | None:
    """``$UNETKIT_CACHE/precision/<digest>.json``: digest of the weights, the setting, the device, torch."""
    try:
        from unetkit.bundle.archive import cache_root

        h = hashlib.blake2b(digest_size=20)
        h.update(repr((setting, _device_name(torch.device(setting[1])), torch.__version__,
                       type(network).__name__)).encode())
        for name, t in sorted(network.state_dict().items()):
            h.update(name.encode())
            h.update(repr((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return cache_root() / "precision" / f"{h.hexdigest()}.json"
    except Exception as e:  # an odd state dict, no cache folder: decide without the cache
        logger.debug("no precision cache: %s", e)
        return None


def guard_input(shape: Sequence[int], in_channels: int, value_range: tuple[float, float] = (0.0, 1.0)) -> torch.Tensor:
    """A seeded random test input ``(1, in_channels, *shape)``, float32, uniform in ``value_range``."""
    lo, hi = value_range
    return torch.rand(1, in_channels, *shape, generator=torch.Generator().manual_seed(0)) * (hi - lo) + lo


def measure_agreement(network: Callable, dtype: torch.dtype, x: torch.Tensor, on: str) -> Agreement:
    """:class:`Agreement` of ``network`` under ``dtype`` on the input ``x`` (described as ``on``), no cache."""
    return Agreement(label_agreement(network, x, dtype), dtype, on)
