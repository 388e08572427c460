"""Which library handles a file, decided by its name (``.tif`` -> tifffile, ``.nii.gz`` -> nibabel, ...)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["READ_SUFFIXES", "WRITE_SUFFIXES", "image_suffix", "read_format", "write_format", "images_in_folder"]

_TIFF = (".tif", ".tiff")
_NIFTI = (".nii", ".nii.gz")
# What the ITK wheels on PyPI read. JPEG and BMP are read but not written: JPEG is lossy and ITK's BMP
# writer stores grey images as palettes that come back as RGB, so neither gives a label image back.
_ITK_READ = (".mha", ".mhd", ".nrrd", ".nhdr", ".png", ".jpg", ".jpeg", ".bmp", ".dcm", ".gipl", ".vtk")
_ITK_WRITE = (".mha", ".mhd", ".nrrd", ".nhdr", ".png")

READ_SUFFIXES: tuple[str, ...] = _TIFF + _NIFTI + _ITK_READ
"""File name endings :func:`~unetkit.io.read_image` accepts (lower case; matching ignores case)."""
WRITE_SUFFIXES: tuple[str, ...] = _TIFF + _NIFTI + _ITK_WRITE
"""File name endings :func:`~unetkit.io.write_image` accepts."""


def image_suffix(path: str | os.PathLike) -> str:
    """The format-deciding ending of ``path``, lower case, double for compressed NIfTI.

    Examples:
        >>> image_suffix("scan.NII.GZ"), image_suffix("t000.tif"), image_suffix("notes")
        ('.nii.gz', '.tif', '')
    """
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def read_format(path: str | os.PathLike) -> str | None:
    """``"tiff"``, ``"nifti"`` or ``"itk"`` for a file name :func:`~unetkit.io.read_image` takes, else None."""
    return _format(image_suffix(path), _ITK_READ)


def write_format(path: str | os.PathLike) -> str | None:
    """``"tiff"``, ``"nifti"`` or ``"itk"`` for a file name :func:`~unetkit.io.write_image` takes, else None."""
    return _format(image_suffix(path), _ITK_WRITE)


def _format(suffix: str, itk_suffixes: tuple[str, ...]) -> str | None:
    if suffix in _TIFF:
        return "tiff"
    if suffix in _NIFTI:
        return "nifti"
    if suffix in itk_suffixes:
        return "itk"
    return None


def images_in_folder(folder: str | os.PathLike) -> list[Path]:
    """The image files directly in ``folder`` (those :func:`read_format` names), sorted by name; hidden files and
    macOS ``._`` companions skipped. The one listing that ``unetkit infer``, training data lists, the plan and
    ``unetkit evaluate`` share, so that they all see the same files in a folder.

    Raises:
        UnetkitError: ``folder`` is not a folder.
    """
    from unetkit.errors import UnetkitError

    folder = Path(folder)
    if not folder.is_dir():
        raise UnetkitError("not a folder", path=folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and read_format(p) is not None)
