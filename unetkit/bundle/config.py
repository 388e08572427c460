"""Reading a bundle's JSON configs and applying ``--set KEY=VALUE`` overrides to them.

A bundle's configs are layered as the MONAI model zoo's are: ``configs/common.json`` holds what training
and inference share (network, normalisation, tile, device), and each job's file adds its own part; a job
runs on ``[common.json, <job>.json]`` (:func:`job_files`), merged by MONAI's own rule
(:func:`merged_config`: later files set ids, ``a#b`` keys reach into earlier ones), so MONAI's runner
(``--config_file "['configs/common.json','configs/inference.json']"``) and unetkit read the same thing.

Override keys use MONAI's id syntax, ``network_def::features`` (``#`` works too). Each value is written
once, so a key names one place; a key that no config has is refused: a typo must not silently train the
default recipe.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from unetkit.errors import BundleError

__all__ = ["CONFIG_NAMES", "COMMON", "read_config", "write_config", "job_files", "merged_config", "parse_overrides",
           "apply_overrides", "get_key"]

COMMON = "common.json"
CONFIG_NAMES = (COMMON, "train.json", "inference.json", "evaluate.json", "multi_gpu_train.json")


def read_config(path: str | os.PathLike) -> dict:
    """Load one JSON config, refusing anything that is not a JSON object with a clear line."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError("config file not found", path=path, fix="is this a bundle folder with configs/?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"not valid JSON ({e})", path=path) from None
    if not isinstance(data, dict):
        raise BundleError("a config must be a JSON object at the top level", path=path)
    return data


def write_config(path: str | os.PathLike, config: Mapping) -> None:
    """Write a config as indented JSON, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(config, indent=4) + "\n")
    os.replace(tmp, path)


def job_files(folder: str | os.PathLike, *names: str) -> list[Path]:
    """The config files a job reads, in merge order: ``configs/common.json`` (where the bundle has one),
    then ``names`` (``"train.json"``, ``"multi_gpu_train.json"``).

    Raises:
        BundleError: one of ``names`` is missing.

    Examples:
        >>> [p.name for p in job_files("bundles/phc_u373", "inference.json")]
        ['common.json', 'inference.json']
    """
    configs = Path(folder) / "configs"
    files = [configs / COMMON] if (configs / COMMON).is_file() else []
    for name in names:
        if not (configs / name).is_file():
            raise BundleError(f"this bundle has no configs/{name}", path=folder)
        files.append(configs / name)
    return files


def merged_config(folder: str | os.PathLike, *names: str) -> dict:
    """The raw (not instantiated) config of a job: :func:`job_files` merged as MONAI's runner merges them.

    Examples:
        >>> merged_config("bundles/phc_u373", "inference.json")["network_def"]["features"]
        [64, 128, 256, 512, 1024]
    """
    from monai.bundle import ConfigParser

    merged = ConfigParser(config={})
    for path in job_files(folder, *names):
        for key, value in read_config(path).items():
            merged[key] = value
    return merged.get()


def parse_overrides(pairs: Iterable[str]) -> dict[str, Any]:
    """``["a::b=[1,2]", "lr=0.1", "name=x"]`` -> ``{"a::b": [1, 2], "lr": 0.1, "name": "x"}``.

    Values are JSON where they parse as JSON (numbers, lists, true/false/null, quoted strings), else
    plain strings.

    Examples:
        >>> parse_overrides(["network_def#features=[4, 8]", "optimizer::lr=0.05", "truth=ST"])
        {'network_def::features': [4, 8], 'optimizer::lr': 0.05, 'truth': 'ST'}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("#", "::")
        if not sep or not key:
            raise BundleError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set optimizer::lr=0.01")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = value
    return out


def _walk(config: Any, key: str):
    """(parent, last) of ``key`` in ``config``, or None when the path does not exist."""
    parts = key.split("::")
    node = config
    for part in parts[:-1]:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    last = parts[-1]
    if isinstance(node, dict) and last in node:
        return node, last
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        return node, int(last)
    return None


def get_key(config: Mapping, key: str, default: Any = None) -> Any:
    """The raw value at ``key`` (``a::b::0``) in a config, or ``default``."""
    found = _walk(config, key.replace("#", "::"))
    return default if found is None else found[0][found[1]]


def apply_overrides(configs: Mapping[str, dict], overrides: Mapping[str, Any]) -> None:
    """Set each override in every config (by file name) that has its key; refuse keys no config has."""
    for key, value in overrides.items():
        hits = 0
        for config in configs.values():
            found = _walk(config, key)
            if found is not None:
                parent, last = found
                parent[last] = value
                hits += 1
        if not hits:
            raise BundleError(
                f"--set {key}: no config of this bundle has that key",
                fix=f"check the spelling against configs/{' '.join(sorted(configs))}",
            )
