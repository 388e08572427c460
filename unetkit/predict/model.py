"""A bundle made ready to segment files: network with its weights, normalisation and inferer settings.

Everything comes from the bundle's ``configs/inference.json`` (the same file MONAI's runner reads):

- ``network_def``: the network (built by :func:`unetkit.bundle.network.build_network`), weights from
  ``models/model.pt`` (``weights_only=True``);
- ``normalize``: an array transform ``(C, *spatial)`` -> float32, e.g.
  :class:`~unetkit.transforms.PercentileNormalize` (applied tile by tile when it has ``fit``/``apply``).
  Bundles without it fall back on the intensity transforms of their ``preprocessing`` list
  (MONAI's ``ScaleIntensityRanged`` in a 3D CT recipe);
- ``instances``: :class:`~unetkit.transforms.AsInstances` (foreground classes, connectivity, ``min_size``);
- ``tile``, ``batch``, ``amp``: the inferer's defaults (``tile`` null: chosen by memory);
- ``pixdim`` and an ``Orientationd`` in ``preprocessing`` (3D): the grid volumes are resampled to.

The bundle is always opened through :func:`unetkit.bundle.open_bundle`, so a zip is checked against its
manifest and the configs pass the safety scan (unless the user trusts the bundle) before MONAI reads them.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from unetkit.bundle import open_bundle, read_config
from unetkit.bundle.network import build_network, load_weights
from unetkit.errors import BundleError, UnetkitError
from unetkit.inferers import OverlapTileInferer, network_geometry

__all__ = ["BundleModel", "InferenceSettings", "load_bundle_model", "resolve_device"]

logger = logging.getLogger(__name__)

_INTENSITY_MODULES = ("monai.transforms.intensity", "unetkit.transforms.intensity")


@dataclass(frozen=True)
class InferenceSettings:
    """How tiles are run: see :func:`unetkit.inferers.infer_to_array`.

    Attributes:
        tile: input tile edge (572: 572 in, 388 out), one per axis, or None (the largest that fits memory).
        batch: tiles per forward pass.
        amp: autocast on CUDA (bfloat16 where supported); no effect on the CPU.
        tta: average over the 8 flips/rotations (the paper's EM entry).
    """

    tile: int | tuple[int, ...] | None = None
    batch: int = 1
    amp: bool = True
    tta: bool = False


@dataclass(frozen=True)
class BundleModel:
    """A bundle's network and the recipe around it, ready for :func:`unetkit.predict.predict_file`.

    Attributes:
        folder: the (unpacked, checked) bundle folder.
        network: the network, weights loaded, in eval mode, on ``device``.
        device: where it runs.
        spatial_dims: 2 or 3.
        in_channels: channels the network takes (1 for grey).
        out_channels: classes it gives (2: background, cell).
        normalize: array transform ``(C, *spatial)`` -> float32, or None.
        instances: the bundle's :class:`~unetkit.transforms.AsInstances` (foreground classes, min_size).
        settings: the bundle's inferer defaults.
        pixdim: voxel size volumes are resampled to before the network (3D), or None.
        axcodes: orientation volumes are turned to first (``"RAS"``), or None.
    """

    folder: Path
    network: nn.Module
    device: torch.device
    spatial_dims: int
    in_channels: int
    out_channels: int
    normalize: Callable | None
    instances: Any
    settings: InferenceSettings
    pixdim: tuple[float, ...] | None = None
    axcodes: str | None = None

    def with_settings(
        self, *, tile: int | Sequence[int] | None = None, batch: int | None = None, amp: bool | None = None,
        tta: bool = False,
    ) -> "BundleModel":
        """A copy whose settings take the given values over the bundle's (None keeps the bundle's; tile 0
        means "choose by memory"). Checked against the network's tile rules now.

        Raises:
            UnetkitError: a tile the network cannot take (naming the valid ones), a batch below 1.
        """
        new = InferenceSettings(
            tile=self.settings.tile if tile is None else (None if tile == 0 else tile),
            batch=self.settings.batch if batch is None else batch,
            amp=self.settings.amp if amp is None else bool(amp),
            tta=bool(tta),
        )
        _check_settings(new, self.network, self.spatial_dims)
        return replace(self, settings=new)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a ``torch.device``.

    Raises:
        UnetkitError: an unknown name, or CUDA asked for where there is none.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("tpu")
        Traceback (most recent call last):
        ...
        unetkit.errors.UnetkitError: --device tpu: expected auto, cpu, cuda or cuda:N
    """
    name = "auto" if device is None else str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UnetkitError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UnetkitError(f"--device {name}: CUDA is not available here", fix="use --device cpu, or see `unetkit doctor`")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UnetkitError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")
    return dev


def load_bundle_model(path: str | os.PathLike, *, trust: bool = False, device: str | torch.device | None = "auto") -> BundleModel:
    """Open, check and load a bundle folder or zip for inference.

    Args:
        path: bundle folder or zip (``unetkit bundle pack``).
        trust: skip the safety scan of the configs (bundles you wrote or whose author you trust).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    Raises:
        BundleError: not a bundle, no ``inference.json``, no or unfitting weights, a bad config value.
        UnsafeBundleError: the configs ask for code outside the allow-list and ``trust`` is false.
        UnetkitError: a bad ``device``.

    Examples:
        >>> load_bundle_model("bundles/phc_u373")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        unetkit.errors.BundleError: .../phc_u373/models/model.pt: no trained weights (train the bundle first ...)
    """
    dev = resolve_device(device)
    folder = open_bundle(path, trust=trust)
    config_path = folder / "configs" / "inference.json"
    config = read_config(config_path)
    network = load_weights(folder, build_network(folder)).to(dev).eval()
    parser = _parser(config, folder)
    net_def = config.get("network_def") if isinstance(config.get("network_def"), dict) else {}
    spatial_dims = _spatial_dims(net_def, network)
    if spatial_dims not in (2, 3):
        raise BundleError(f"network_def::spatial_dims is {spatial_dims}; unetkit infers 2D and 3D networks", path=config_path)
    settings = InferenceSettings(
        tile=_tile(_parsed(parser, "tile", None, config_path)),
        batch=int(_parsed(parser, "batch", 1, config_path)),
        amp=bool(_parsed(parser, "amp", True, config_path)),
    )
    _check_settings(settings, network, spatial_dims, source=config_path)
    return BundleModel(
        folder=folder,
        network=network,
        device=dev,
        spatial_dims=spatial_dims,
        in_channels=int(net_def.get("in_channels", getattr(network, "in_channels", 1))),
        out_channels=int(net_def.get("out_channels", getattr(network, "out_channels", 2))),
        normalize=_normalize(parser, config, config_path),
        instances=_instances(parser, config_path),
        settings=settings,
        pixdim=_pixdim(_parsed(parser, "pixdim", None, config_path), spatial_dims, config_path),
        axcodes=_axcodes(config),
    )


def _spatial_dims(net_def: dict, network: nn.Module) -> int:
    """``network_def::spatial_dims`` (MONAI's name), else the network's own, else its first convolution's."""
    if "spatial_dims" in net_def:
        return int(net_def["spatial_dims"])
    if hasattr(network, "spatial_dims"):
        return int(network.spatial_dims)
    conv = next((m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    return 3 if isinstance(conv, nn.Conv3d) else 2


def _parser(config: dict, folder: Path):
    from monai.bundle import ConfigParser

    parser = ConfigParser(copy.deepcopy(config))
    parser["bundle_root"] = str(folder)
    return parser


def _parsed(parser, key: str, default, source: Path):
    if key not in parser:
        return default
    try:
        return parser.get_parsed_content(key)
    except Exception as e:  # MONAI wraps the cause in "Failed to instantiate ..."
        cause = e.__cause__ or e
        raise BundleError(f"{key} cannot be built ({type(cause).__name__}: {cause})", path=source) from None


def _tile(value) -> int | tuple[int, ...] | None:
    if value is None or isinstance(value, int):
        return value
    return tuple(int(v) for v in value)


def _check_settings(settings: InferenceSettings, network, spatial_dims: int, source=None) -> None:
    name = "tile" if source is not None else "--tile"
    tile = settings.tile
    if tile is not None and not isinstance(tile, int) and len(tile) != spatial_dims:
        raise UnetkitError(f"{name} {list(tile)}: give one size, or {spatial_dims} (one per axis)", path=source)
    if isinstance(settings.batch, bool) or settings.batch < 1:
        raise UnetkitError(f"{'batch' if source else '--batch'} {settings.batch}: must be at least 1", path=source)
    try:
        OverlapTileInferer(tile=tile, batch=settings.batch, geometry=network_geometry(network))
    except ValueError as e:
        raise UnetkitError(f"{name}: {e}", path=source) from None


def _normalize(parser, config: dict, source: Path) -> Callable | None:
    if "normalize" in config:
        return _parsed(parser, "normalize", None, source)
    preprocessing = _parsed(parser, "preprocessing", None, source) if "preprocessing" in config else None
    found = [t for t in getattr(preprocessing, "transforms", ()) if type(t).__module__.startswith(_INTENSITY_MODULES)]
    if not found:
        logger.warning("%s has no 'normalize' and no intensity transform in 'preprocessing': raw intensities", source)
        return None
    return _DictIntensity(found)


class _DictIntensity:
    """The intensity dict transforms of a bundle's ``preprocessing``, applied to a plain array."""

    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img):
        for t in self.transforms:
            data = t({k: img for k in t.keys})
            img = data[t.keys[0]]
        return img.numpy() if isinstance(img, torch.Tensor) else np.asarray(img, np.float32)


def _instances(parser, source: Path):
    from unetkit.transforms import AsInstances

    found = _parsed(parser, "instances", None, source)
    return found if found is not None else AsInstances()


def _pixdim(value, spatial_dims: int, source: Path) -> tuple[float, ...] | None:
    if value is None:
        return None
    values = (value,) * spatial_dims if isinstance(value, (int, float)) else tuple(value)
    if len(values) != spatial_dims or not all(isinstance(v, (int, float)) and v > 0 for v in values):
        raise BundleError(f"pixdim {value!r}: expected null or {spatial_dims} positive sizes", path=source)
    if spatial_dims != 3:
        logger.info("%s: pixdim is used for 3D bundles only", source)
        return None
    return tuple(float(v) for v in values)


def _axcodes(config: dict) -> str | None:
    pre = config.get("preprocessing")
    items = pre.get("transforms", []) if isinstance(pre, dict) else pre if isinstance(pre, list) else []
    for item in items:
        if isinstance(item, dict) and str(item.get("_target_", "")).split(".")[-1] in ("Orientationd", "Orientation"):
            codes = item.get("axcodes")
            return codes if isinstance(codes, str) else None
    return None
