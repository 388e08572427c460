"""The network a bundle declares: ``network_def`` of its inference configs (``configs/common.json`` +
``configs/inference.json``), weights ``models/model.pt``.

Used by ``bundle verify``, ``bundle export`` and ``bundle init``. MONAI's ``ConfigParser`` builds the
network, so references in ``network_def`` resolve as they do at inference; call these only on a folder
returned by :func:`~unetkit.bundle.open_bundle` (scanned, or trusted).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from unetkit.bundle.config import job_files, merged_config
from unetkit.errors import BundleError

__all__ = ["build_network", "network_from_config", "read_state_dict", "load_weights", "WEIGHTS"]

WEIGHTS = Path("models") / "model.pt"


def network_from_config(config: Mapping[str, Any], *, bundle_root: str | os.PathLike, source: str | os.PathLike) -> nn.Module:
    """Instantiate ``network_def`` of a parsed config.

    Args:
        config: the parsed config (``inference.json`` or ``train.json``).
        bundle_root: the bundle folder, for ``@bundle_root`` references.
        source: the config's path, for messages.

    Raises:
        BundleError: no ``network_def``, or MONAI cannot build it.
    """
    from monai.bundle import ConfigParser

    if "network_def" not in config:
        raise BundleError("has no network_def", path=source, fix="a bundle's configs must define network_def")
    parser = ConfigParser(copy.deepcopy(dict(config)))
    parser["bundle_root"] = str(bundle_root)
    try:
        return parser.get_parsed_content("network_def")
    except Exception as e:  # MONAI wraps the real cause in RuntimeError("Failed to instantiate ...")
        cause = e.__cause__ or e
        raise BundleError(f"network_def cannot be built ({type(cause).__name__}: {cause})", path=source) from None


def build_network(folder: str | os.PathLike) -> nn.Module:
    """The network of the bundle's inference configs, freshly initialised, on the CPU, in eval mode.

    Examples:
        >>> build_network("bundles/phc_u373").geometry.output_shape((572, 572))
        (388, 388)
    """
    folder = Path(folder)
    source = job_files(folder, "inference.json")[0]
    return network_from_config(merged_config(folder, "inference.json"), bundle_root=folder, source=source).eval()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict with ``torch.load(..., weights_only=True)`` (no pickled code can run).

    Raises:
        BundleError: missing, unreadable, or not a state dict (a training checkpoint, say).
    """
    path = Path(path)
    if not path.is_file():
        raise BundleError("no trained weights", path=path, fix="train the bundle first (`unetkit train`)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError (refused or corrupt), RuntimeError, EOFError, ...
        raise BundleError(f"cannot be read as weights ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                          path=path, fix="it is corrupt, or not saved with torch.save(state_dict)") from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = ", ".join(list(state)[:4]) if isinstance(state, Mapping) else type(state).__name__
        raise BundleError(f"is not a state dict of tensors (found {keys})", path=path,
                          fix="save the network's weights alone: torch.save(network.state_dict(), path)")
    return dict(state)


def load_weights(folder: str | os.PathLike, network: nn.Module) -> nn.Module:
    """Load ``models/model.pt`` into ``network`` strictly (every key, every shape); returns the network.

    Raises:
        BundleError: the weights are missing or unreadable, or do not fit the network.
    """
    path = Path(folder) / WEIGHTS
    state = read_state_dict(path)
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) or first[0]
        raise BundleError(f"does not fit the bundle's network_def: {detail[:300]}", path=path,
                          fix="make network_def (features, channels, spatial_dims) match the trained network") from None
    return network
