"""Image files in and out, metadata kept: TIFF (tifffile), NIfTI (nibabel), and what ITK reads.

- :func:`read_image` ``(path, *, mmap=False) -> (array, ImageMeta)``: the file's own axis order and dtype.
- :func:`write_image` ``(path, array, meta=None, *, compression=None) -> Path``: atomic, keeps spacing/affine,
  never overwrites the image ``meta`` was read from.
- :func:`open_output` ``(path, shape, dtype, meta=None)``: a context manager yielding an array to fill tile by
  tile; a memory-mapped file for TIFF, so huge outputs never sit in memory.
- :class:`ImageMeta`: axes, shape, dtype, spacing, affine, source, format and format-specific extras.

Bad input raises :class:`~unetkit.errors.ImageReadError` / :class:`~unetkit.errors.ImageWriteError` with one
line naming the file, the problem and the fix.

Examples:
    >>> import tempfile, numpy as np
    >>> from unetkit.io import ImageMeta, read_image, write_image
    >>> p = write_image(tempfile.mkdtemp() + "/stack.tif", np.ones((5, 33, 37), np.uint8),
    ...                 ImageMeta("ZYX", spacing=(2.0, 0.25, 0.25)))
    >>> arr, meta = read_image(p)
    >>> arr.shape, meta.axes, meta.spacing, meta.format
    ((5, 33, 37), 'ZYX', (2.0, 0.25, 0.25), 'tiff')
"""

from unetkit.io.formats import READ_SUFFIXES, WRITE_SUFFIXES
from unetkit.io.image import read_image, write_image
from unetkit.io.meta import ImageMeta
from unetkit.io.stream import open_output

__all__ = ["ImageMeta", "read_image", "write_image", "open_output", "READ_SUFFIXES", "WRITE_SUFFIXES"]
