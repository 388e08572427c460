"""Checks made before a library touches a file, and the one way a library's failure becomes our error.

tifffile, nibabel and ITK each fail in their own words (ITK says "No such file or directory" for a truncated
``.mha``); the user gets one line that names the file and what is wrong with it instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from unetkit.errors import ImageReadError
from unetkit.io.formats import READ_SUFFIXES, image_suffix, read_format

__all__ = ["readable_file", "read_failure", "count_nonfinite", "fill_nonfinite"]


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


def count_nonfinite(array) -> int:
    """How many pixels are NaN or +-inf (0 for integer images, which cannot hold them), read block by block so
    that a memory-mapped image is never loaded whole.

    Examples:
        >>> import numpy as np
        >>> count_nonfinite(np.array([[1.0, np.nan], [np.inf, -np.inf]])), count_nonfinite(np.zeros(3, np.uint8))
        (3, 0)
    """
    import numpy as np

    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.complexfloating):
        return 0
    flat = array.reshape(-1) if array.flags.c_contiguous else np.ravel(array)
    step = 1 << 24
    return int(sum(np.count_nonzero(~np.isfinite(flat[i:i + step])) for i in range(0, flat.size, step)))


def fill_nonfinite(array):
    """A float32 copy of ``array`` with its NaN and +-inf pixels set to the median of the finite ones (0 when
    none is finite): a neutral value for percentile normalisation, so one bad patch cannot blank a mask.

    Examples:
        >>> import numpy as np
        >>> fill_nonfinite(np.array([1.0, np.nan, 3.0, np.inf, 5.0])).tolist()
        [1.0, 3.0, 3.0, 3.0, 5.0]
    """
    import numpy as np

    out = np.array(array, dtype=np.float32)
    bad = ~np.isfinite(out)
    out[bad] = float(np.median(out[~bad])) if (~bad).any() else 0.0
    return out
