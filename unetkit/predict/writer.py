"""Where a prediction goes: the refusal to overwrite, and two inputs never writing one output.

The names themselves follow :mod:`unetkit.io.naming` (``<stem>_mask.<ext>``, ``_prob``, ``_preview.png``).

Examples:
    >>> from unetkit.io.naming import plan_outputs
    >>> check_free(plan_outputs("a.tif", "/nonexistent"), overwrite=False)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from unetkit.errors import ImageWriteError, UnetkitError
from unetkit.io.naming import (
    COUNTS, MASK, PREVIEW, PROB, OutputPaths, label_dtype, output_stem, plan_outputs, semantic_dtype,
)

__all__ = ["OutputPaths", "OutputExistsError", "output_stem", "plan_outputs", "check_free", "check_distinct",
           "check_output_folder", "check_no_outputs", "label_dtype", "semantic_dtype", "MASK", "PROB", "PREVIEW"]


class OutputExistsError(ImageWriteError):
    """An output file exists already and ``overwrite`` was not given."""


def check_free(paths: OutputPaths, *, overwrite: bool) -> None:
    """Refuse, before any work, to replace existing outputs unless ``overwrite``.

    Raises:
        OutputExistsError: the first output that exists, with the fix.
    """
    if overwrite:
        return
    for p in paths.all():
        if p.exists():
            raise OutputExistsError("exists already", path=p, fix="pass --overwrite to replace it, or use another -o")


def check_distinct(inputs: Sequence[Path], outdir: str | os.PathLike, **kinds) -> None:
    """Refuse, before any work, a set of inputs whose outputs would collide: two inputs with one stem
    (``a.tif`` and ``a.png``, or ``a.tif`` in two folders), or an output that is itself one of the inputs.

    Args:
        inputs: the input files.
        outdir: the output folder.
        kinds: ``probabilities``/``preview`` as for :func:`plan_outputs`.

    Raises:
        UnetkitError: naming both files and the fix.

    Examples:
        >>> check_distinct([Path("x/a.tif"), Path("y/a.tif")], "out")
        Traceback (most recent call last):
        ...
        unetkit.errors.UnetkitError: x/a.tif and y/a.tif would both write out/a_mask.tif (...)
    """
    owner: dict[Path, Path] = {}
    sources = {Path(os.path.abspath(p)): p for p in inputs}
    for path in inputs:
        for out in plan_outputs(path, outdir, **kinds).all():
            key = Path(os.path.abspath(out))
            if key in owner:
                raise UnetkitError(f"{owner[key]} and {path} would both write {out}",
                                   fix="segment them into different output folders, or rename one")
            if key in sources:
                raise UnetkitError(f"the output {out} of {path} is itself an input", fix="choose another -o folder")
            owner[key] = path


def check_output_folder(outdir: str | os.PathLike) -> Path:
    """Make sure, before any network runs, that ``outdir`` is (or can be made as) a folder this process can
    write into; nothing is created here, so a run refused later leaves no folder behind. Returns it.

    Raises:
        UnetkitError: a file is in the way, or the folder (or the one it would be made in) is not writable.

    Examples:
        >>> import tempfile
        >>> check_output_folder(tempfile.mkdtemp() + "/masks/today").name
        'today'
    """
    out = Path(os.path.abspath(outdir))
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file, not a folder" if existing == out else f"cannot be made: {existing} is a file"
        raise UnetkitError(where, path=out, fix="give -o a folder (it is made if missing)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UnetkitError(f"cannot be written ({existing} is not writable)", path=out,
                           fix="choose a folder you can write to with -o")
    return out


def check_no_outputs(inputs: Sequence[Path], outdir: str | os.PathLike, **kinds) -> None:
    """Refuse, in one line for the whole run, to replace outputs of an earlier run (without ``--overwrite``);
    with ``table=True`` the run's ``counts.csv`` is one of them.

    Raises:
        OutputExistsError: how many of the outputs exist, the first of them, and the fix.
    """
    found = [p for path in inputs for p in plan_outputs(path, outdir, **kinds).all() if p.exists()]
    if kinds.get("table") and (Path(outdir) / COUNTS).exists():
        found.append(Path(outdir) / COUNTS)
    if found:
        raise OutputExistsError(
            f"{len(found)} output file(s) of this run exist already in {outdir} (the first: {found[0].name})",
            fix="pass --overwrite to replace them, or use another -o")
