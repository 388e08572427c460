"""Recipes, and ``bundle init``: a new bundle folder from one of unetkit's recipes.

The recipes are the repository's ``bundles/<name>`` folders (``phc_u373``, ``dic_hela``, ``isbi2012_em``,
``spleen_ct_3d``): one source of truth, the folders users read. :func:`recipe_path` finds them next to the
package (a checkout or an editable install) and, for an installed wheel, in ``unetkit/recipes/<name>``
(in a checkout a link to ``bundles/``; the wheel build copies the recipes' configs, docs and licence).

:func:`init_bundle` copies a recipe without run results, fills ``metadata.json`` (versions of this
environment, a fresh changelog, ``network_data_format`` computed from the network's geometry: 572 -> 388
for the paper's network) and writes ``docs/README.md`` and ``LICENSE`` placeholders with ``TODO`` lines
the user must fill (``bundle verify`` warns while any is left).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import unetkit
from unetkit.bundle.archive import bundle_files
from unetkit.bundle.config import COMMON, CONFIG_NAMES, read_config, write_config
from unetkit.errors import BundleError

__all__ = ["DEFAULT_RECIPE", "RECIPE_3D", "recipe_dirs", "list_recipes", "recipe_path", "init_bundle"]

log = logging.getLogger(__name__)

DEFAULT_RECIPE = "phc_u373"
RECIPE_3D = "spleen_ct_3d"
# A 2D recipe made 3D gets the 3D U-Net tile of Cicek et al. (MICCAI 2016): 132x132x116 -> 44x44x28 at
# depth 3; four levels keep a 3D tile's activations in memory where the 2D paper's five would not.
_TILE_3D = (132, 132, 116)
_LEVELS_3D = 4
_TILE_2D = (572, 572)
# What a recipe folder may hold that a new bundle must not inherit: results of a run.
_RUN_RESULTS = ("models/", "metrics.csv", "training_curves.png", "run_info.json")
_NAME = re.compile(r"[a-z0-9][a-z0-9_]*")


def recipe_dirs() -> list[Path]:
    """Where recipes are looked for: the checkout's ``bundles/``, then the package's ``recipes/``."""
    package = Path(unetkit.__file__).resolve().parent
    return [package.parent / "bundles", package / "recipes"]


def list_recipes() -> list[str]:
    """Names of the recipes found, sorted (``['dic_hela', 'isbi2012_em', 'phc_u373', ...]``)."""
    names = set()
    for d in recipe_dirs():
        if d.is_dir():
            names |= {p.name for p in d.iterdir() if (p / "configs" / "metadata.json").is_file()}
    return sorted(names)


def recipe_path(name: str) -> Path:
    """The folder of recipe ``name``.

    Raises:
        BundleError: no recipe of that name; the message lists the ones there are.

    Examples:
        >>> recipe_path("phc_u373").name
        'phc_u373'
    """
    if _NAME.fullmatch(name):
        for d in recipe_dirs():
            if (d / name / "configs" / "metadata.json").is_file():
                return d / name
    raise BundleError(f"--from {name}: no such recipe", fix=f"choose one of: {', '.join(list_recipes()) or 'none found'}")


def init_bundle(path: str | os.PathLike, *, recipe: str | None = None, spatial_dims: int = 2) -> Path:
    """Create a new bundle folder at ``path`` from a recipe; returns the folder.

    Args:
        path: the new folder; it must not exist, or be empty.
        recipe: recipe name; default ``phc_u373`` for 2D and ``spleen_ct_3d`` for 3D. A 2D recipe asked
            for in 3D is made 3D: ``spatial_dims`` 3, four levels and a 132x132x116 tile (check its
            transforms for volumes).
        spatial_dims: 2 or 3.

    Raises:
        BundleError: a bad ``spatial_dims``, an unknown recipe, a 3D recipe asked for in 2D, or ``path``
            exists and is not empty.

    Examples:
        >>> import tempfile; mine = init_bundle(Path(tempfile.mkdtemp()) / "mine")
        >>> read_config(mine / "configs" / "metadata.json")["network_data_format"]["outputs"]["pred"]["spatial_shape"]
        [388, 388]
    """
    if spatial_dims not in (2, 3):
        raise BundleError(f"--spatial-dims {spatial_dims}: expected 2 or 3")
    dest = Path(path)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BundleError("already exists and is not an empty folder", path=dest, fix="choose a new folder")
    name = recipe or (DEFAULT_RECIPE if spatial_dims == 2 else _recipe_3d())
    src = recipe_path(name)
    configs = {n: read_config(src / "configs" / n) for n in CONFIG_NAMES if (src / "configs" / n).is_file()}
    meta = read_config(src / "configs" / "metadata.json")
    made_3d = _spatial_dims(configs, src) != spatial_dims
    if made_3d and spatial_dims == 2:
        raise BundleError(f"--from {name} is a 3D recipe", fix="for 2D start from phc_u373, dic_hela or isbi2012_em")
    if made_3d:
        log.warning("making the 2D recipe %s 3D (132x132x116 tiles, 4 levels): check its transforms for volumes", name)
        _make_3d(configs)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        _copy_recipe(src, tmp)
        for n, config in configs.items():
            write_config(tmp / "configs" / n, config)
        _fill_metadata(meta, configs, tmp, recipe=name, made_3d=made_3d)
        write_config(tmp / "configs" / "metadata.json", meta)
        _write_placeholders(tmp, src, meta, recipe=name)
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _recipe_3d() -> str:
    try:
        recipe_path(RECIPE_3D)
        return RECIPE_3D
    except BundleError:
        return DEFAULT_RECIPE


def _spatial_dims(configs: dict[str, dict], src: Path) -> int:
    net = configs.get(COMMON, {}).get("network_def")
    if isinstance(net, dict) and isinstance(net.get("spatial_dims", 2), int):
        return int(net.get("spatial_dims", 2))
    raise BundleError("the recipe's configs/common.json defines no network_def", path=src / "configs")


def _make_3d(configs: dict[str, dict]) -> None:
    """The network and the tile are written once, in ``common.json``; the margin follows the network."""
    common = configs[COMMON]
    net = common["network_def"]
    net["spatial_dims"] = 3
    if isinstance(net.get("features"), list):
        net["features"] = net["features"][:_LEVELS_3D]
    common["tile"] = list(_TILE_3D)


def _copy_recipe(src: Path, dest: Path) -> None:
    for rel in bundle_files(src):
        if rel.startswith(_RUN_RESULTS) or rel in ("LICENSE", "docs/README.md"):
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dest / rel)


def _tile(config: dict, geometry, dims: int) -> tuple[int, ...]:
    tile = config.get("tile")
    if isinstance(tile, int):
        shape: Sequence[int] = (tile,) * dims
    elif isinstance(tile, list) and len(tile) == dims and all(isinstance(t, int) for t in tile):
        shape = tile
    else:
        shape = _TILE_2D if dims == 2 else _TILE_3D
    return tuple(geometry.next_valid_size(int(n)) for n in shape)


def _fill_metadata(meta: dict, configs: dict[str, dict], folder: Path, *, recipe: str, made_3d: bool) -> None:
    import monai
    import numpy
    import torch

    from unetkit.bundle.network import network_from_config

    source = folder / "configs" / COMMON
    with torch.device("meta"):  # only the geometry is needed: no memory, no initialisation cost
        net = network_from_config(configs[COMMON], bundle_root=folder, source=source)
    in_shape = _tile(configs[COMMON], net.geometry, net.spatial_dims)
    note = f"created by `unetkit bundle init` from the unetkit recipe {recipe}" + (
        ", made 3D (check its transforms and data for volumes)" if made_3d else "")
    meta.update(
        version="0.1.0",
        changelog={"0.1.0": note},
        monai_version=monai.__version__,
        pytorch_version=torch.__version__.split("+")[0],
        numpy_version=numpy.__version__,
        authors="TODO: your name(s)",
        copyright="TODO: Copyright (c) YEAR OWNER",
        eval_metrics={},
    )
    # MONAI 1.6 reads the spec's older optional_packages_version as a deprecated name of this key
    old = meta.pop("optional_packages_version", {})
    meta["required_packages_version"] = {**old, **meta.get("required_packages_version", {}), "unetkit": unetkit.__version__}
    fmt = meta.setdefault("network_data_format", {})
    _set_tensor(fmt.setdefault("inputs", {}), "image", net.in_channels, in_shape, "image")
    _set_tensor(fmt.setdefault("outputs", {}), "pred", net.out_channels, net.geometry.output_shape(in_shape), "class")


def _set_tensor(tensors: dict, default: str, channels: int, shape: Sequence[int], what: str) -> None:
    name = next(iter(tensors), default)
    spec = tensors.setdefault(name, {"type": "image", "format": "magnitude" if what == "image" else "labels",
                                     "modality": "n/a", "dtype": "float32", "value_range": [], "is_patch_data": True})
    spec.update(num_channels=int(channels), spatial_shape=[int(n) for n in shape])
    if len(spec.get("channel_def", {})) != channels:
        spec["channel_def"] = {str(i): f"{what} {i}" for i in range(channels)}


def _size(tensor: dict) -> str:
    return "x".join(map(str, tensor["spatial_shape"]))


def _write_placeholders(folder: Path, src: Path, meta: dict, *, recipe: str) -> None:
    fmt = meta["network_data_format"]
    image, pred = next(iter(fmt["inputs"].values())), next(iter(fmt["outputs"].values()))
    refs = "\n".join(f"- {r}" for r in meta.get("references", []))
    (folder / "docs").mkdir(exist_ok=True)
    (folder / "docs" / "README.md").write_text(
        f"# TODO: name of your model\n\n"
        f"Version 0.1.0: {meta['changelog']['0.1.0']}. Replace every TODO before you share it:\n"
        f"`unetkit bundle verify` warns while one is left.\n\n"
        f"## What it does\n\nTODO: the task, the data it is meant for, and what it must not be used for.\n\n"
        f"## Training data\n\nTODO: where the data came from, under which terms, how it was split.\n"
        f"The recipe's data: {meta.get('data_source', 'n/a')}\n\n"
        f"## Use\n\n    unetkit train . --data DATA_FOLDER\n    unetkit infer . 'images/*.tif' -o masks/\n\n"
        f"## Network\n\nU-Net (Ronneberger et al. 2015), {image['num_channels']} input channel(s), "
        f"{pred['num_channels']} classes; one {_size(image)} input tile gives a {_size(pred)} output tile.\n\n"
        f"## Results\n\nTODO: metrics on held-out data.\n\n## References\n\n{refs}\n"
    )
    recipe_license = (src / "LICENSE").read_text() if (src / "LICENSE").is_file() else ""
    (folder / "LICENSE").write_text(
        "TODO: the license under which you share this bundle (configs, documents and weights), e.g. the\n"
        "Apache License 2.0; put its text here and remove this line.\n\n"
        + (f"The terms of the recipe `{recipe}` this bundle was made from, for reference:\n\n{recipe_license}"
           if recipe_license else "")
    )
