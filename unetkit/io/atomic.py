"""Outputs appear whole or not at all, and never on top of the image they were made from.

Writers write into a fresh hidden folder beside the target (same file system, so the final
:func:`os.replace` is atomic) under the target's own name: formats whose header names a companion data file
(``.mhd`` + ``.raw``) stay consistent. On success every file written there is moved into place, the target
last; on any failure, Ctrl-C included, the folder is removed and an existing target is left as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from unetkit.errors import ImageWriteError, UnetkitError

__all__ = ["prepare_target", "atomic_output", "temp_folder", "commit"]


def prepare_target(path: str | os.PathLike, source: str | os.PathLike | None) -> Path:
    """The absolute output path, its folder created (``mkdir -p``), checked not to be ``source``.

    Raises:
        ImageWriteError: the target is a folder, is the image's own source file, or its folder cannot be made.
    """
    target = Path(os.path.abspath(os.fspath(path)))
    if target.is_dir():
        raise ImageWriteError("is a folder", path=target, fix="give an output file name such as out/mask.tif")
    if source is not None and _same_file(target, Path(source)):
        raise ImageWriteError(
            "would overwrite the input image it was read from", path=target, fix="write to another name or folder"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ImageWriteError(f"cannot create the output folder ({e.strerror or e})", path=target.parent) from e
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # sees through symlinks and hard links
    except OSError:  # one of them does not exist (yet)
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def temp_folder(target: Path) -> Path:
    """A new hidden folder beside ``target`` to write into; the caller removes it."""
    try:
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    except OSError as e:
        raise ImageWriteError(f"cannot write in this folder ({e.strerror or e})", path=target.parent) from e


def commit(folder: Path, target: Path) -> None:
    """Move every file of ``folder`` beside ``target``, ``target``'s own file last (headers after their data)."""
    written = sorted(folder.iterdir(), key=lambda p: p.name == target.name)
    if not any(p.name == target.name for p in written):
        raise ImageWriteError("the writer produced no file", path=target)
    for p in written:
        os.replace(p, target.parent / p.name)


@contextmanager
def atomic_output(target: Path, what: str) -> Iterator[Path]:
    """Yield a temporary path to write ``target``'s content to; move it onto ``target`` when the block succeeds.

    Any error in the block other than an :class:`~unetkit.errors.UnetkitError` becomes an
    :class:`~unetkit.errors.ImageWriteError` naming ``target`` and ``what`` was being written ("TIFF", ...).
    """
    folder = temp_folder(target)
    try:
        yield folder / target.name
        commit(folder, target)
    except UnetkitError:
        raise
    except Exception as e:
        detail = " ".join(str(e).split())[:200] or type(e).__name__
        raise ImageWriteError(f"could not write {what} ({detail})", path=target) from e
    finally:
        shutil.rmtree(folder, ignore_errors=True)
