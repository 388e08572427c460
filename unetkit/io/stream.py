"""Outputs too large to hold in memory: a writable array backed by the output file itself."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import tifffile

from unetkit.errors import ImageWriteError
from unetkit.io.atomic import commit, temp_folder
from unetkit.io.image import output_format, check_writable, meta_for_array, write_image
from unetkit.io.meta import ImageMeta
from unetkit.io.tiff import tiff_options

__all__ = ["open_output"]


@contextmanager
def open_output(
    path: str | os.PathLike, shape, dtype, meta: ImageMeta | None = None
) -> Iterator[np.ndarray]:
    """A zero-filled array to fill (tile by tile) that becomes the image file ``path`` when the block ends.

    For TIFF targets the array is a memory map of the output file itself (uncompressed, written under a
    temporary name beside ``path``), so the process's own memory does not grow with the image: filled pages
    belong to the file's page cache, which the operating system writes back and reclaims when memory runs
    short (they still show in RSS while resident). The file is renamed onto ``path`` when the block ends
    without an exception and deleted when it raises. Other formats get an in-memory array written with
    :func:`write_image` at the end. The same checks as :func:`write_image` run first, including the refusal
    to overwrite ``meta.source``. Do not use the array after the block.

    Args:
        path: output file (any extension :func:`write_image` takes).
        shape: the output's shape, e.g. ``(H, W)``, in ``meta``'s axis order.
        dtype: its dtype (bool is stored as uint8).
        meta: axes and calibration, as for :func:`write_image`.

    Yields:
        The writable array of ``shape`` and ``dtype``.

    Raises:
        ImageWriteError: as :func:`write_image`; raised before the block runs when the target is refused.

    Examples:
        >>> import tempfile
        >>> from unetkit.io import read_image
        >>> p = tempfile.mkdtemp() + "/labels.tif"
        >>> with open_output(p, (33, 37), "uint16") as out:
        ...     for y in range(0, 33, 16):  # one band of rows at a time
        ...         out[y:y + 16] = y
        >>> arr, meta = read_image(p)
        >>> int(arr[32, 0]), meta.axes
        (32, 'YX')
    """
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(np.uint8 if np.dtype(dtype) == np.bool_ else dtype)
    fmt = output_format(path)
    meta = meta_for_array(meta, shape, dtype, fmt)
    target = check_writable(path, fmt, shape, dtype, meta, None)
    if fmt != "tiff":
        out = np.zeros(shape, dtype)
        yield out
        write_image(target, out, meta)
        return
    folder = temp_folder(target)
    try:
        try:
            out = tifffile.memmap(folder / target.name, shape=shape, dtype=dtype, **tiff_options(shape, dtype, meta))
        except Exception as e:
            raise ImageWriteError(f"could not create the TIFF ({e})", path=target) from e
        yield out
        out.flush()
        del out  # drop our mapping before the rename
        try:
            commit(folder, target)
        except OSError as e:
            raise ImageWriteError(f"could not move the TIFF into place ({e.strerror or e})", path=target) from e
    finally:
        shutil.rmtree(folder, ignore_errors=True)
