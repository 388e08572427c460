"""NIfTI-1/2 (``.nii``, ``.nii.gz``) through nibabel, in nibabel's array order (``"XYZ"``), affine kept.

Intensity scaling (``scl_slope``/``scl_inter``) is applied here rather than by nibabel: nibabel returns
float64 for any scaling, which doubles the memory of a 512^3 CT volume for no precision gain. Unscaled
data keep their on-disk dtype; integer scaling (CT's slope 1, intercept -1024) stays integer; other
scaling of 8/16-bit data gives float32 (exact for those integers), of wider data float64.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from unetkit.errors import ImageReadError, ImageWriteError
from unetkit.io.checks import read_failure
from unetkit.io.meta import ImageMeta, SPATIAL

__all__ = ["read_nifti", "write_nifti", "check_nifti", "NIFTI_AXES"]

logger = logging.getLogger(__name__)

NIFTI_AXES = "XYZTCUV"  # dims 1-7 of a NIfTI header; 5 is the vector (intent) dimension
_WRITE_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64")
_HEADER_SIZES = (348, 540)  # sizeof_hdr of NIfTI-1 and NIfTI-2
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_SPACE_UNITS = {"um": "micron", "µm": "micron", "micron": "micron", "mm": "mm", "m": "meter"}


def read_nifti(path: Path, *, mmap: bool = False) -> tuple[np.ndarray, ImageMeta]:
    """Read a NIfTI volume and its metadata; see :func:`unetkit.io.read_image`."""
    _check_magic(path)
    try:
        img = nib.load(path, mmap="r" if mmap else False)
        proxy, header = img.dataobj, img.header
        raw = proxy.get_unscaled()
        array = _scaled(raw if mmap else _native(np.asarray(raw)), proxy.slope, proxy.inter)
        affine = _decimal(img.affine) if header["sform_code"] > 0 else img.affine
        zooms = _decimal(header.get_zooms()[: array.ndim])
        codes = {"sform_code": int(header["sform_code"]), "qform_code": int(header["qform_code"])}
        units = header.get_xyzt_units()
    except ImageReadError:
        raise
    except Exception as e:
        raise read_failure(e, path, "NIfTI") from e
    axes = NIFTI_AXES[: array.ndim]
    if array.dtype.names:  # RGB24 / RGBA32 voxels are structured; samples become the last axis
        array = np.stack([array[name] for name in array.dtype.names], axis=-1)
        axes, zooms = axes + "S", (*zooms, 1.0)
    extra = {**codes, "xyzt_units": units}
    if codes["qform_code"] > 0:
        extra["qform"] = header.get_qform()
    if (proxy.slope, proxy.inter) != (1.0, 0.0):
        extra["scl_slope"], extra["scl_inter"] = float(proxy.slope), float(proxy.inter)
    spacing = tuple(z if np.isfinite(z) and z > 0 else 1.0 for z in zooms)
    meta = ImageMeta(axes, shape=array.shape, dtype=array.dtype.name, spacing=spacing, affine=affine,
                     source=str(path), format="nifti", extra=extra)
    return array, meta


def _check_magic(path: Path) -> None:
    """Tell "not a NIfTI file" from "a damaged one" before nibabel says "Cannot work out file type"."""
    gz = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
    except (OSError, EOFError) as e:
        raise ImageReadError("not a gzip-compressed file", path=path, fix="name it .nii if it is not compressed") from e
    if len(head) == 4 and not {int.from_bytes(head, "little"), int.from_bytes(head, "big")} & set(_HEADER_SIZES):
        raise ImageReadError("not a NIfTI file (no NIfTI header)", path=path, fix="is the extension right?")


def _native(arr: np.ndarray) -> np.ndarray:
    """Big-endian files give big-endian arrays, which torch refuses; in memory we can afford native order."""
    return arr if arr.dtype.isnative else arr.astype(arr.dtype.newbyteorder("="))


def _decimal(values):
    """float32 header fields as the shortest decimals that give them back (0.7, not 0.699999988079071), so
    that what was written as 0.7 reads as 0.7; the value stored in the file is the same either way."""
    arr = np.asarray(values, dtype=np.float32)
    out = np.array([float(str(v)) for v in arr.ravel()]).reshape(arr.shape)
    return tuple(out.tolist()) if arr.ndim == 1 else out


def _scaled(raw: np.ndarray, slope: float, inter: float) -> np.ndarray:
    if slope == 1.0 and inter == 0.0:
        return raw
    if raw.dtype.kind in "iu" and float(slope).is_integer() and float(inter).is_integer() and raw.size:
        lo, hi = sorted((float(raw.min()) * slope + inter, float(raw.max()) * slope + inter))
        for dtype in (np.int16, np.int32, np.int64):
            if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
                return raw.astype(dtype) * dtype(slope) + dtype(inter)
    dtype = np.float32 if raw.dtype.kind in "iu" and raw.dtype.itemsize <= 2 else np.float64
    return raw.astype(dtype) * dtype(slope) + dtype(inter)


def check_nifti(path: Path, shape: tuple[int, ...], dtype: np.dtype, meta: ImageMeta, compression) -> None:
    """Refuse what NIfTI cannot hold, before any file is made."""
    if dtype.name not in _WRITE_DTYPES:
        raise ImageWriteError(f"NIfTI cannot hold {dtype.name} voxels", path=path,
                              fix=f"cast to one of {', '.join(_WRITE_DTYPES)}")
    if not 1 <= len(shape) <= 7:
        raise ImageWriteError(f"NIfTI holds 1 to 7 dimensions, the array has {len(shape)}", path=path)


def write_nifti(path: Path, array: np.ndarray, meta: ImageMeta, *, compression=None) -> None:
    """Write ``array`` with ``meta``'s affine and codes (or one built from its spacing); gzip from the name."""
    affine = _affine(meta)
    img = nib.Nifti1Image(array, None, dtype=array.dtype)
    header = img.header
    header.set_data_dtype(array.dtype)
    if meta.spacing is not None:
        header.set_zooms(meta.spacing)
    sform_code = int(meta.extra.get("sform_code", 2)) if meta.format == "nifti" else 2
    qform_code = int(meta.extra.get("qform_code", 0)) if meta.format == "nifti" else 0
    qform = meta.extra.get("qform", affine) if meta.format == "nifti" else affine
    img.set_sform(affine, code=sform_code)
    img.set_qform(qform, code=qform_code)
    if meta.format == "nifti" and "xyzt_units" in meta.extra:
        header.set_xyzt_units(*meta.extra["xyzt_units"])
    elif meta.extra.get("unit") in _SPACE_UNITS:  # a TIFF's micrometres
        header.set_xyzt_units(_SPACE_UNITS[meta.extra["unit"]])
    nib.save(img, path)


def _affine(meta: ImageMeta) -> np.ndarray:
    """``meta``'s affine in RAS+ (ITK's LPS converted), else the spacing of its spatial axes, else identity."""
    if meta.affine is not None and meta.format in ("nifti", "itk"):
        return meta.affine if meta.format == "nifti" else _LPS_TO_RAS @ meta.affine
    affine = np.eye(4)
    if meta.spacing is not None:
        steps = [s for a, s in zip(meta.axes, meta.spacing) if a in SPATIAL][:3]
        affine[: len(steps), : len(steps)] = np.diag(steps)
    return affine
