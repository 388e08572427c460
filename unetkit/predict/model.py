"""A bundle made ready to segment files: its own network, preprocessing, inferer and decoder.

``unetkit infer`` builds from a bundle's inference configs (``configs/common.json`` + ``configs/inference.json``,
merged as MONAI's runner merges them) the same objects MONAI's runner builds, by these ids:

- ``network_def``: the network (weights from ``models/model.pt``, ``weights_only=True``);
- ``preprocessing``: what is done to a loaded image (``{"image": (C, *spatial)}``) before the network: the
  normalisation, and for volumes MONAI's ``Orientationd``/``Spacingd``, whose inverse (MONAI's ``Invertd``)
  takes the labels back onto the input's own grid. Loading is not part of it (``loading`` is for MONAI's
  runner: unetkit reads files itself, frame by frame and memory-mapped). When it consists of the bundle's
  ``normalize`` alone and that has ``fit``/``apply`` (:class:`~unetkit.transforms.PercentileNormalized`),
  the statistics come from the whole image and each tile is normalised as it is read, so images larger than
  memory stream;
- ``inferer``: :class:`~unetkit.inferers.OverlapTileInferer`, whose frozen settings the CLI's ``--tile``,
  ``--batch``, ``--precision``, ``--exact``, ``--memory``, ``--tta`` override (:meth:`BundleModel.with_settings`, checked once);
- ``decode``: :class:`~unetkit.transforms.AsInstancesd` (instance labels: foreground classes, connectivity,
  ``min_size``) or MONAI's ``AsDiscreted(argmax=True)`` (class indices).

The bundle is always opened through :func:`unetkit.bundle.open_bundle`, so a zip is checked against its
manifest and the configs pass the safety scan (unless the user trusts the bundle) before MONAI reads them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from unetkit.bundle import open_bundle
from unetkit.bundle.config import job_files, merged_config
from unetkit.bundle.network import build_network, load_weights
from unetkit.errors import BundleError, UnetkitError
from unetkit.inferers import OverlapTileInferer, network_geometry
from unetkit.launch import resolve_device

__all__ = ["BundleModel", "load_bundle_model", "resolve_device", "parse_size", "PIPELINE_IDS"]

logger = logging.getLogger(__name__)

PIPELINE_IDS = ("network_def", "preprocessing", "inferer", "decode")
"""The ids of a bundle's inference configs that ``unetkit infer`` builds and runs."""


@dataclass(frozen=True)
class BundleModel:
    """A bundle's network and the pipeline around it, ready for :func:`unetkit.predict.predict_file`.

    Attributes:
        folder: the (unpacked, checked) bundle folder.
        network: the network, weights loaded, in eval mode, on ``device``.
        device: where it runs.
        spatial_dims: 2 or 3.
        in_channels: channels the network takes (1 for grey).
        out_channels: classes it gives (2: background, cell).
        inferer: the bundle's :class:`~unetkit.inferers.OverlapTileInferer`, settings checked against the network.
        normalize: an array transform with ``fit``/``apply``, applied tile by tile, when the bundle's
            ``preprocessing`` is its ``normalize`` alone; else None.
        preprocessing: the bundle's ``preprocessing`` (a MONAI dict transform on ``"image"``) when it cannot
            run tile by tile; else None.
        instances: the array twin of the bundle's ``decode``, whose ``decode_classes`` turns class indices into
            instance labels (:class:`~unetkit.transforms.AsInstances`, ``ThreeClassInstances``); a default
            :class:`~unetkit.transforms.AsInstances` for a class-index decode.
        decode_instances: True when the bundle's ``decode`` gives instance labels, False for class indices.
        memory_limit: a cap, in bytes, on the process's peak resident memory while a file is segmented
            (``--memory``, or the bundle's ``memory_limit`` inference setting): the tile is chosen from what the
            process, the image and its outputs leave (:mod:`unetkit.predict.memory`); None: no cap.
    """

    folder: Path | None
    network: nn.Module
    device: torch.device
    spatial_dims: int
    in_channels: int
    out_channels: int
    inferer: OverlapTileInferer
    normalize: Callable | None = None
    preprocessing: Callable | None = None
    instances: Any = None
    decode_instances: bool = True
    memory_limit: int | None = None

    def with_settings(
        self, *, tile: int | Sequence[int] | None = None, batch: int | None = None, amp: bool | None = None,
        tta: bool = False, memory: int | None = None, precision: str | None = None, exact: bool | None = None,
    ) -> "BundleModel":
        """A copy whose inferer takes the given settings over the bundle's (None keeps the bundle's; tile 0
        means "choose by memory"; ``memory``: a cap in bytes on the process's peak resident memory, see
        :attr:`memory_limit`, which also lets the tile be chosen by memory unless ``tile`` is given),
        checked against the network's tile rules here, once.

        ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``, ``"fp16"``: :mod:`unetkit.precision`) replaces the
        bundle's precision and its older ``amp``/``amp_dtype`` switches; ``amp`` is the older form of it
        (``False``: ``"fp32"``, ``True``: ``"auto"``). ``exact=True`` takes the bit-exact path (float32, NCHW):
        equal to one whole-image pass bit for bit on this machine.

        Raises:
            UnetkitError: a tile the network cannot take (naming the valid ones), a batch below 1, a precision
                that contradicts ``amp`` or ``exact``.
        """
        changes: dict[str, Any] = {"tta": bool(tta)}
        limit = self.memory_limit
        if memory is not None:
            limit = int(memory)
            if tile is None:  # a bundle's fixed tile may not fit the cap: the cap chooses it
                changes["tile"] = None
        if tile is not None:
            changes["tile"] = None if tile == 0 else (tile if isinstance(tile, int) else tuple(tile))
        if batch is not None:
            changes["batch"] = batch
        if amp is not None:
            if precision is not None and (precision == "fp32") != (not amp):
                raise UnetkitError(f"--{'' if amp else 'no-'}amp contradicts --precision {precision}: give --precision alone")
            precision = precision or ("auto" if amp else "fp32")
        if exact:
            precision = precision or "fp32"
            changes.update(exact=True, channels_last=None)
        elif exact is not None:
            changes["exact"] = False
        if precision is not None:  # replaces the bundle's older switches too
            changes.update(precision=precision, amp=True, amp_dtype=None)
        return replace(self, inferer=_checked(self.inferer, self.network, self.spatial_dims, changes, "--"),
                       memory_limit=limit)


_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "KIB": 2**10, "M": 1e6, "MB": 1e6, "MIB": 2**20, "G": 1e9, "GB": 1e9,
          "GIB": 2**30, "T": 1e12, "TB": 1e12, "TIB": 2**40}


def parse_size(text: str, *, option: str = "--memory") -> int:
    """``"512MiB"``, ``"2GiB"``, ``"1.5GB"``, ``"1000000"`` -> bytes.

    Examples:
        >>> parse_size("512MiB"), parse_size("1.5 GB")
        (536870912, 1500000000)
        >>> parse_size("lots")
        Traceback (most recent call last):
        ...
        unetkit.errors.UnetkitError: --memory lots: expected a size such as 512MiB or 2GiB
    """
    import re

    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else None
    if m is None or unit not in _UNITS or float(m.group(1)) <= 0:
        raise UnetkitError(f"{option} {text}: expected a size such as 512MiB or 2GiB")
    return int(float(m.group(1)) * _UNITS[unit])


def load_bundle_model(path: str | os.PathLike, *, trust: bool = False, device: str | torch.device | None = "auto") -> BundleModel:
    """Open, check and load a bundle folder or zip for inference.

    Args:
        path: bundle folder or zip (``unetkit bundle pack``).
        trust: skip the safety scan of the configs (bundles you wrote or whose author you trust).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.

    Raises:
        BundleError: not a bundle, no ``inference.json``, no or unfitting weights, a pipeline id missing or
            of a kind unetkit cannot run.
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
    source = job_files(folder, "inference.json")[-1]
    network = load_weights(folder, build_network(folder)).to(dev).eval()
    parser = _parser(merged_config(folder, "inference.json"), folder)
    spatial_dims = _spatial_dims(parser, network)
    if spatial_dims not in (2, 3):
        raise BundleError(f"network_def::spatial_dims is {spatial_dims}; unetkit infers 2D and 3D networks", path=source)
    inferer = _parsed(parser, "inferer", source)
    if not isinstance(inferer, OverlapTileInferer):
        raise BundleError(f"inferer is a {type(inferer).__name__}; unetkit infer runs unetkit.inferers.OverlapTileInferer",
                          path=source)
    inferer = _checked(inferer, network, spatial_dims, {"device": dev}, "inferer#")
    normalize, preprocessing = _preprocessing(parser, source)
    instances, decode_instances = _decoder(parser, source)
    limit = _memory_limit(parser, source)
    if limit is not None:
        inferer = _checked(inferer, network, spatial_dims, {"tile": None}, "inferer#")
    return BundleModel(
        folder=folder, network=network, device=dev, spatial_dims=spatial_dims,
        in_channels=int(getattr(network, "in_channels", 1)), out_channels=int(getattr(network, "out_channels", 2)),
        inferer=inferer, normalize=normalize, preprocessing=preprocessing, instances=instances,
        decode_instances=decode_instances, memory_limit=limit,
    )


def _memory_limit(parser, source: Path) -> int | None:
    """The bundle's ``memory_limit`` inference setting (``"2GiB"`` or bytes), or None."""
    if "memory_limit" not in parser or parser["memory_limit"] is None:
        return None
    value = parser["memory_limit"]
    try:
        return parse_size(str(value), option="memory_limit")
    except UnetkitError as e:
        raise BundleError(str(e), path=source) from None


def _parser(config: dict, folder: Path):
    from monai.bundle import ConfigParser

    parser = ConfigParser(config)
    parser["bundle_root"] = str(folder)
    return parser


def _parsed(parser, key: str, source: Path, *, required: bool = True):
    if key not in parser:
        if required:
            raise BundleError(f"has no {key!r}: unetkit infer builds {', '.join(PIPELINE_IDS)} from a bundle's "
                              "inference configs", path=source)
        return None
    try:
        return parser.get_parsed_content(key)
    except Exception as e:  # MONAI wraps the cause in "Failed to instantiate ..."
        cause = e.__cause__ or e
        raise BundleError(f"{key} cannot be built ({type(cause).__name__}: {cause})", path=source) from None


def _spatial_dims(parser, network: nn.Module) -> int:
    """``network_def::spatial_dims`` (MONAI's name), else the network's own, else its first convolution's."""
    if "network_def::spatial_dims" in parser:
        return int(parser["network_def::spatial_dims"])
    if hasattr(network, "spatial_dims"):
        return int(network.spatial_dims)
    conv = next((m for m in network.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    return 3 if isinstance(conv, nn.Conv3d) else 2


def _checked(inferer: OverlapTileInferer, network, spatial_dims: int, changes: dict, prefix: str) -> OverlapTileInferer:
    """The inferer with ``changes``, its tile checked against the network (the one check of the settings)."""
    tile = changes.get("tile", inferer.options.tile)
    if tile is not None and not isinstance(tile, int) and len(tile) != spatial_dims:
        raise UnetkitError(f"{prefix}tile {list(tile)}: give one size, or {spatial_dims} (one per axis)")
    try:
        return inferer.with_settings(geometry=network_geometry(network), **changes)
    except ValueError as e:
        raise UnetkitError(f"{prefix}{e}") from None


def _preprocessing(parser, source: Path) -> tuple[Callable | None, Callable | None]:
    """``(normalize, preprocessing)``: the tile-wise normaliser when ``preprocessing`` is ``normalize``
    alone (and it has fit/apply), else the whole ``preprocessing`` transform."""
    preprocessing = _parsed(parser, "preprocessing", source)
    normalize = _parsed(parser, "normalize", source, required=False)
    steps = list(getattr(preprocessing, "transforms", [preprocessing]))
    op = getattr(normalize, "op", None)
    if steps == [normalize] and callable(getattr(op, "fit", None)) and callable(getattr(op, "apply", None)):
        return op, None
    return None, preprocessing


def _decoder(parser, source: Path) -> tuple[Any, bool]:
    """The array decoder of the bundle's ``decode`` (anything whose ``op`` turns class indices into instances
    with ``decode_classes``: the paper's components, the three-class watershed), or class indices."""
    from monai.transforms import AsDiscreted

    from unetkit.transforms import AsInstances

    decode = _parsed(parser, "decode", source)
    if callable(getattr(getattr(decode, "op", None), "decode_classes", None)):
        return decode.op, True
    if isinstance(decode, AsDiscreted) and all(decode.argmax):
        return AsInstances(), False
    raise BundleError(f"decode is a {type(decode).__name__}; unetkit infer runs decoders of class indices "
                      "(unetkit.transforms.AsInstancesd, ThreeClassInstancesd) or monai.transforms.AsDiscreted "
                      "with argmax (class indices)", path=source)
