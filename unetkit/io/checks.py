"""Checks made before a library touches a file, and the one way a library's failure becomes our error.

tifffile, nibabel and ITK each fail in their own words (ITK says "No such file or directory" for a truncated
``.mha``); the user gets one line that names the file and what is wrong with it instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from unetkit.errors import ImageReadError
from unetkit.io.formats import READ_SUFFIXES, image_suffix, read_format

__all__ = ["readable_file", "read_failure"]


def readable_file(path: str | os.PathLike) -> tuple[Path, str]:
    """The absolute path of an existing, non-empty image file and its format (``"tiff"``, ``"nifti"``, ``"itk"``).

    Raises:
        ImageReadError: missing, a folder, empty, or a name no reader takes.
    """
    p = Path(os.path.abspath(os.fspath(path)))
    if p.is_dir():
        raise ImageReadError("is a folder, not an image file", path=p, fix="give the path of one image file")
    if not p.exists():
        raise ImageReadError("no such file", path=p, fix="check the path and its spelling")
    fmt = read_format(p)
    if fmt is None:
        suffix = image_suffix(p) or "(none)"
        raise ImageReadError(
            f"unsupported file type {suffix}", path=p, fix=f"convert it to one of {', '.join(READ_SUFFIXES)}"
        )
    if p.stat().st_size == 0:
        raise ImageReadError("empty file (0 bytes)", path=p, fix="an interrupted copy or download? fetch it again")
    if not os.access(p, os.R_OK):
        raise ImageReadError("permission denied", path=p, fix="check the file's permissions")
    return p, fmt


def read_failure(error: BaseException, path: Path, what: str) -> ImageReadError:
    """The :class:`ImageReadError` for a library's ``error`` while reading ``path`` as ``what`` ("TIFF", ...)."""
    if isinstance(error, PermissionError):
        return ImageReadError("permission denied", path=path, fix="check the file's permissions")
    if isinstance(error, MemoryError):
        return ImageReadError(f"too large to read into memory as {what}", path=path, fix="read it with mmap=True")
    detail = " ".join(str(error).split())[:200] or type(error).__name__
    return ImageReadError(f"truncated or corrupt {what} ({detail})", path=path, fix=None)
