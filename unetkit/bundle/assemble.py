"""The recipes' configs from one source: a shared base plus a small overlay per recipe.

Each folder under ``bundles/`` is a self-contained MONAI bundle (it must be: people share them), but the
recipes share most of their plumbing. That plumbing is written once, in ``recipes/base/`` (one file per
config: ``common.json``, ``train.json``, ``inference.json``, ``multi_gpu_train.json``), and each recipe
says only what it changes, in ``recipes/<name>.json``::

    {
        "about": "what the recipe is, in a sentence or two (not copied into the bundle)",
        "train.json": {"dataset_dir#name": "dic_hela"},
        "common.json": {"tile": [132, 132, 116], "~margin": null}
    }

Keys are MONAI ids (``#`` or ``::`` between levels, list items by index); a value replaces what the base
has there (or adds it), and a key starting with ``~`` removes it; ``"paper.json": null`` leaves that file
out of the recipe. ``make bundles`` (``python -m
unetkit.bundle.assemble``) writes ``bundles/<name>/configs/``; a test checks that the written files are
current, as it does for ``docs/cli.md``. ``metadata.json``, ``docs/`` and ``LICENSE`` are each recipe's own.

Examples:
    >>> overlay({"a": {"b": [1, 2]}, "c": 3}, {"a#b#1": 5, "~c": None, "d": 4})
    {'a': {'b': [1, 5]}, 'd': 4}
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, Mapping

from unetkit.errors import BundleError

__all__ = ["GENERATED", "overlay", "assemble", "assemble_all", "write_all", "stale"]

GENERATED = ("common.json", "train.json", "inference.json", "multi_gpu_train.json", "paper.json")
"""The config files made from the base and an overlay; the others are the recipe's own. ``paper.json`` is
an overlay of its own: ``unetkit train --overlay configs/paper.json`` trains the paper's exact optimiser,
two classes and its decoder instead of the default."""

_REPO = Path(__file__).resolve().parents[2]
SOURCE = _REPO / "recipes"
TARGET = _REPO / "bundles"


def _parts(key: str) -> list[str]:
    return key.replace("::", "#").split("#")


def overlay(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict:
    """A copy of ``base`` with each ``id: value`` of ``changes`` set (``~id``: removed).

    Raises:
        BundleError: a path through something that is not a dict or list, or a list index out of range.
    """
    out = copy.deepcopy(dict(base))
    for key, value in changes.items():
        delete = key.startswith("~")
        *path, last = _parts(key[1:] if delete else key)
        node: Any = out
        for part in path:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise BundleError(f"overlay key {key!r}: {part!r} is not a level of the base config")
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise BundleError(f"overlay key {key!r}: no list item {last!r}")
            if delete:
                del node[int(last)]
            else:
                node[int(last)] = copy.deepcopy(value)
        elif delete:
            if last not in node:
                raise BundleError(f"overlay key {key!r}: the base has nothing there to remove")
            del node[last]
        else:
            node[last] = copy.deepcopy(value)
    return out


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"cannot read ({e})", path=path) from None


def assemble(name: str, *, source: Path = SOURCE) -> dict[str, dict]:
    """The generated configs of recipe ``name``: file name -> config."""
    changes = _read(source / f"{name}.json")
    unknown = set(changes) - set(GENERATED) - {"about"}
    if unknown:
        raise BundleError(f"unknown config file(s) {sorted(unknown)}; expected {list(GENERATED)}",
                          path=source / f"{name}.json")
    # a file whose overlay is null is not part of this recipe (the 3D recipe has no paper.json)
    return {f: overlay(_read(source / "base" / f), changes.get(f) or {}) for f in GENERATED
            if not (f in changes and changes[f] is None)}


def recipe_names(source: Path = SOURCE) -> list[str]:
    """The recipes that have an overlay, sorted."""
    return sorted(p.stem for p in source.glob("*.json"))


def render(config: Mapping) -> str:
    """The text a config is written as (the bundles' one JSON style)."""
    return json.dumps(config, indent=4) + "\n"


def assemble_all(source: Path = SOURCE) -> dict[Path, str]:
    """Every generated file: its path under ``bundles/`` -> its text."""
    return {TARGET / name / "configs" / f: render(c)
            for name in recipe_names(source) for f, c in assemble(name, source=source).items()}


def stale(source: Path = SOURCE) -> list[Path]:
    """Generated files whose text differs from what :func:`assemble_all` makes (missing ones included)."""
    return [p for p, text in assemble_all(source).items() if not p.is_file() or p.read_text() != text]


def write_all(source: Path = SOURCE) -> list[Path]:
    """Write every stale generated file; returns the ones written."""
    written = []
    for path, text in assemble_all(source).items():
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            written.append(path)
    return written


if __name__ == "__main__":
    done = write_all()
    print("\n".join(f"wrote {p.relative_to(_REPO)}" for p in done) or "bundles/ is current")
    sys.exit(0)
