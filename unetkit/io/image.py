"""``read_image`` and ``write_image``: one entry point each, one module per format behind them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unetkit.errors import ImageWriteError
from unetkit.io import itk_io, nifti, tiff
from unetkit.io.atomic import atomic_output, prepare_target
from unetkit.io.checks import readable_file
from unetkit.io.formats import WRITE_SUFFIXES, image_suffix, write_format
from unetkit.io.meta import CHANNEL, ImageMeta

__all__ = ["read_image", "write_image", "meta_for_array", "check_writable", "output_format"]

_READERS = {"tiff": tiff.read_tiff, "nifti": nifti.read_nifti, "itk": itk_io.read_itk}
_WRITERS = {"tiff": tiff.write_tiff, "nifti": nifti.write_nifti, "itk": itk_io.write_itk}
_CHECKS = {"tiff": tiff.check_tiff, "nifti": nifti.check_nifti, "itk": itk_io.check_itk}
_NAMES = {"tiff": "TIFF", "nifti": "NIfTI", "itk": "image"}
_DEFAULT_AXES = {1: "X", 2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}


def read_image(path: str | os.PathLike, *, mmap: bool = False) -> tuple[np.ndarray, ImageMeta]:
    """Read an image file into a numpy array and its :class:`ImageMeta`.

    TIFF (``.tif``/``.tiff``, tifffile): the first series with all its pages, axes from ImageJ/OME/tifffile
    (``"YX"``, ``"ZYX"``, ``"TYX"``, ``"YXS"`` for RGB, ...), spacing from OME, ImageJ or resolution tags.
    NIfTI (``.nii``/``.nii.gz``, nibabel): nibabel's ``"XYZ"`` order, on-disk dtype when unscaled, affine and
    zooms. Others (``.mha``, ``.mhd``, ``.nrrd``, ``.png``, ``.jpg``, ``.bmp``, ``.dcm``, ...; ITK): ``(Z,) Y, X``
    order with spacing, origin and direction.

    Args:
        path: the image file.
        mmap: return a read-only ``np.memmap`` when the pixels lie uncompressed and contiguous in the file
            (uncompressed TIFF series, ``.nii``), so a huge image can be processed tile by tile without being
            loaded; otherwise (compressed data, ITK formats) the image is read whole as usual.

    Returns:
        ``(array, meta)``: the array in the file's own axis order and dtype, and its metadata
        (``meta.source`` is the absolute path, ``meta.shape == array.shape``).

    Raises:
        ImageReadError: missing file, folder, empty file, unsupported extension, not an image of its type,
            truncated or corrupt; the message names the file and the problem.

    Examples:
        >>> import tempfile, numpy as np
        >>> p = write_image(tempfile.mkdtemp() + "/a.tif", np.zeros((3, 33, 37), np.uint16),
        ...                 ImageMeta("ZYX", spacing=(2.0, 0.5, 0.5)))
        >>> arr, meta = read_image(p)
        >>> arr.shape, meta.axes, meta.spacing, meta.dtype
        ((3, 33, 37), 'ZYX', (2.0, 0.5, 0.5), 'uint16')
        >>> read_image(p.with_name("missing.tif"))
        Traceback (most recent call last):
        ...
        unetkit.errors.ImageReadError: /.../missing.tif: no such file (check the path and its spelling)
    """
    p, fmt = readable_file(path)
    return _READERS[fmt](p, mmap=mmap)


def write_image(
    path: str | os.PathLike, array, meta: ImageMeta | None = None, *, compression: str | None = None
) -> Path:
    """Write ``array`` to ``path`` atomically, in the format its extension names, keeping ``meta``'s calibration.

    The file appears whole or not at all (written beside the target, then renamed onto it); missing output
    folders are created; the file ``meta.source`` (the image ``meta`` was read from) is never overwritten.
    TIFF is written as OME-TIFF when ``meta`` came from one (or the name ends in ``.ome.tif``), else as an
    ImageJ hyperstack when the dtype (uint8, uint16, float32) and axis order allow, so Fiji shows the spacing,
    else as a plain TIFF carrying axes and spacing; a unit a flavour cannot hold is converted or dropped with a
    logged warning, never an error. NIfTI with ``meta``'s affine
    and sform/qform codes (an ITK affine converted from LPS, else a diagonal one from the spacing, else
    identity); ITK formats with spacing, origin and direction. Reading the file back gives the same array,
    axes and spacing. Boolean arrays are written as uint8.

    Args:
        path: output file; ``.tif``/``.tiff``, ``.nii``/``.nii.gz``, ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``,
            ``.png``.
        array: numpy array (or anything ``np.asarray`` takes: a CPU tensor), in the axis order of ``meta``.
        meta: axes, spacing, affine... of ``array``; default ``"YX"``/``"ZYX"``/... (NIfTI ``"XYZ"``...) with
            no calibration. A ``meta`` with one channel axis (``C`` or ``S``) more than ``array`` has, such as
            an RGB input's meta used for its label image, describes ``array`` with that axis left out.
        compression: TIFF codec name (``"zlib"``, ``"zstd"``, ``"lzw"``...); for ITK formats any value turns on
            the format's own compression; NIfTI is compressed exactly when the name ends in ``.gz``.

    Returns:
        The absolute path written.

    Raises:
        ImageWriteError: unsupported extension or dtype, target is the input file or a folder, the folder
            cannot be created, or the library failed (no partial file is left behind).
        ValueError: ``meta.axes`` does not fit ``array.ndim``, or an unknown TIFF codec.

    Examples:
        >>> import tempfile, numpy as np
        >>> folder = tempfile.mkdtemp()
        >>> img = np.arange(33 * 37, dtype=np.uint16).reshape(33, 37)
        >>> p = write_image(f"{folder}/new/sub/a.png", img)  # folders are made
        >>> np.array_equal(read_image(p)[0], img)
        True
        >>> _, meta = read_image(p)
        >>> write_image(p, img, meta)
        Traceback (most recent call last):
        ...
        unetkit.errors.ImageWriteError: /.../a.png: would overwrite the input image it was read from (...)
    """
    fmt = output_format(path)
    array = np.asarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    meta = meta_for_array(meta, array.shape, array.dtype, fmt)
    target = check_writable(path, fmt, array.shape, array.dtype, meta, compression)
    with atomic_output(target, _NAMES[fmt]) as tmp:
        _WRITERS[fmt](tmp, array, meta, compression=compression)
    return target


def output_format(path) -> str:
    """``"tiff"``, ``"nifti"`` or ``"itk"`` for an output name; ImageWriteError for any other extension."""
    fmt = write_format(path)
    if fmt is None:
        suffix = image_suffix(path) or "(none)"
        raise ImageWriteError(f"cannot write {suffix} files", path=os.path.abspath(os.fspath(path)),
                              fix=f"use one of {', '.join(WRITE_SUFFIXES)}")
    return fmt


def check_writable(path, fmt: str, shape: tuple[int, ...], dtype: np.dtype, meta: ImageMeta, compression) -> Path:
    """Everything checkable before writing: format limits, then the target path (folder made). Returns it."""
    _CHECKS[fmt](Path(os.path.abspath(os.fspath(path))), tuple(shape), np.dtype(dtype), meta, compression)
    return prepare_target(path, meta.source)


def meta_for_array(meta: ImageMeta | None, shape: tuple[int, ...], dtype, fmt: str) -> ImageMeta:
    """``meta`` fitted to an array of ``shape`` and ``dtype`` (a default one when None).

    A meta with exactly one channel axis (``C`` or ``S``) more than the array loses that axis, so an RGB
    image's meta serves for its label image; any other mismatch is a ``ValueError``.

    Examples:
        >>> meta_for_array(None, (4, 5, 6), "uint8", "tiff").axes, meta_for_array(None, (4, 5), "uint8", "nifti").axes
        ('ZYX', 'XY')
        >>> meta_for_array(ImageMeta("YXS", spacing=(0.5, 0.5, 1.0)), (4, 5), "uint16", "tiff").spacing
        (0.5, 0.5)
    """
    ndim = len(shape)
    dtype = np.dtype(dtype).name
    if meta is None:
        axes = nifti.NIFTI_AXES[:ndim] if fmt == "nifti" else _DEFAULT_AXES.get(ndim)
        if not axes or len(axes) != ndim:
            raise ValueError(f"cannot guess the axes of a {ndim}-D array; pass meta=ImageMeta(axes=...)")
        return ImageMeta(axes, shape=shape, dtype=dtype)
    channels = [i for i, a in enumerate(meta.axes) if a in CHANNEL]
    if len(meta.axes) == ndim + 1 and len(channels) == 1:
        meta = meta.select(channels[0], 0)
    if len(meta.axes) != ndim:
        raise ValueError(
            f"meta.axes {meta.axes!r} does not fit a {ndim}-D array of shape {tuple(shape)}; "
            "pass a meta whose axes match the array (meta.select(...) drops one)"
        )
    return meta.replace(shape=tuple(shape), dtype=dtype)
