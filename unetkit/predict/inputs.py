"""The files to segment, from what the user typed: files, folders and (quoted) glob patterns.

One function per kind (:func:`images_in_folder`, :func:`expand_glob`) and :func:`collect_inputs`, which
tells them apart. Folders give their image files, not recursively, sorted; hidden files and macOS ``._``
companions are skipped. A pattern is expanded here (quoted, the shell leaves it to us), with ``**`` for
recursion. A named file is kept whatever its extension: if it cannot be read, the run reports it in its
table and goes on with the others.

Examples:
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for n in ("b.tif", "a.tif", "notes.txt", ".hidden.tif"):
    ...     _ = (d / n).write_bytes(b"x")
    >>> [p.name for p in collect_inputs([str(d)])]
    ['a.tif', 'b.tif']
    >>> [p.name for p in collect_inputs([f"{d}/b*", str(d / "a.tif"), str(d / "b.tif")])]
    ['b.tif', 'a.tif']
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Iterable

from unetkit.errors import UnetkitError
from unetkit.io.formats import READ_SUFFIXES, images_in_folder

__all__ = ["collect_inputs", "images_in_folder", "expand_glob", "is_glob"]


def is_glob(text: str) -> bool:
    """True if ``text`` holds a glob wildcard (``*``, ``?``, ``[``).

    Examples:
        >>> is_glob("frames/*.tif"), is_glob("frames/t000.tif")
        (True, False)
    """
    return glob.has_magic(text)


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def expand_glob(pattern: str) -> list[Path]:
    """The files matching ``pattern`` (``**`` recurses), sorted; folders among the matches are left out.

    Raises:
        UnetkitError: nothing matches.
    """
    matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(pattern), recursive=True))
    files = [m for m in matches if m.is_file() and _visible(m)]
    if not files:
        raise UnetkitError(f"no file matches the pattern {pattern!r}", fix="check the folder and the pattern")
    return files


def collect_inputs(items: Iterable[str | os.PathLike]) -> list[Path]:
    """The input files for ``items`` (files, folders, glob patterns), in the order given, each once.

    A name that exists is taken as it is (a file named ``[1].tif`` is not a pattern); a missing name with
    wildcards is expanded; any other missing name is kept, so that the run reports it as unreadable.

    Raises:
        UnetkitError: nothing to segment (no items, or folders without image files), or a pattern that
            matches nothing.
    """
    items = [os.fspath(i) for i in items]
    found: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found += images_in_folder(p)
        elif not p.exists() and is_glob(item):
            found += expand_glob(item)
        else:
            found.append(p)
    unique = list(dict.fromkeys(Path(os.path.abspath(p)) for p in found))
    if not unique:
        where = ", ".join(items) or "(none given)"
        raise UnetkitError(f"no image files to segment in {where}",
                           fix=f"give image files, folders holding {', '.join(READ_SUFFIXES[:4])}... or patterns")
    return unique
