"""MetaImage, NRRD, PNG, JPEG, BMP, DICOM (one file) ... through ITK, with spacing, origin and direction.

Arrays are numpy's view of ITK images: ``(Z,) Y, X`` order, so ``meta.spacing`` is ITK's spacing reversed and
the affine's columns follow ``z, y, x``; ``extra["origin"]`` and ``extra["direction"]`` are kept in ITK's own
``x, y, z`` order and LPS world. Multi-component pixels (RGB, vectors) become a last axis ``S``.

ITK is imported on first use: its Python wrapping takes seconds to load, which TIFF-only work should not pay.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from unetkit.errors import ImageReadError, ImageWriteError
from unetkit.io.meta import ImageMeta

__all__ = ["read_itk", "write_itk", "check_itk"]

logger = logging.getLogger(__name__)

_SCALAR_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")  # what the wheels wrap
_PNG_DTYPES = ("uint8", "uint16")
# File component type -> the pixel type to read it as: itself where the wheels wrap a reader for it, else
# the nearest wider one (int8 -> int16; 64-bit integers other than unsigned long long -> double).
_CTYPES = {"unsigned_char": "UC", "char": "SS", "unsigned_short": "US", "short": "SS", "unsigned_int": "UI",
           "int": "SI", "unsigned_long_long": "ULL", "unsigned_long": "ULL", "float": "F", "double": "D"}
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _itk():
    import itk

    return itk


def read_itk(path: Path, *, mmap: bool = False) -> tuple[np.ndarray, ImageMeta]:
    """Read an image ITK understands; ``mmap`` is ignored (ITK reads whole images)."""
    itk = _itk()
    try:
        image = _imread(itk, path)
        array = itk.array_from_image(image)
        spacing_xyz = tuple(float(s) for s in image.GetSpacing())
        origin = tuple(float(o) for o in image.GetOrigin())
        direction = itk.array_from_matrix(image.GetDirection()).astype(np.float64)
        components = int(image.GetNumberOfComponentsPerPixel())
    except Exception as e:
        raise _read_failure(e, path) from e
    ndim = len(spacing_xyz)
    axes = "TZYX"[-ndim:] + ("S" if components > 1 else "")
    spacing = spacing_xyz[::-1] + ((1.0,) if components > 1 else ())
    extra = {"origin": origin, "direction": direction.tolist(), "components": components}
    meta = ImageMeta(axes, shape=array.shape, dtype=array.dtype.name, spacing=spacing,
                     affine=_affine(spacing_xyz, origin, direction), source=str(path), format="itk", extra=extra)
    if path.suffix.lower() == ".dcm" and axes.startswith("Z") and array.shape[0] == 1:
        # ITK reads every DICOM file as a volume; one file is one slice (an X-ray, a CT slice): make it 2D.
        array, meta = array[0], meta.select(0, 0)
    return array, meta


def _imread(itk, path: Path):
    """``itk.imread`` with the pixel type named up front: left to guess, ITK answers a pixel type it has no
    wrapping for (an RGB ``.mha``, int8 voxels) by loading every wrapped module in search of one, ~15 s."""
    io = itk.ImageIOFactory.CreateImageIO(str(path), itk.CommonEnums.IOFileMode_ReadMode)
    if io is None:
        raise _NotReadable()
    io.SetFileName(str(path))
    io.ReadImageInformation()
    component = getattr(itk, _CTYPES.get(io.GetComponentTypeAsString(io.GetComponentType()), "D"))
    if io.GetNumberOfComponents() > 1:
        vector_ok = component in (itk.UC, itk.US, itk.SS, itk.F, itk.D)
        return itk.imread(str(path), itk.VariableLengthVector[component if vector_ok else itk.F])
    return itk.imread(str(path), component)


class _NotReadable(Exception):
    """No ITK image IO recognises the file's content."""


def _read_failure(e: Exception, path: Path) -> ImageReadError:
    text = " ".join(str(e).split())
    if isinstance(e, _NotReadable) or "Could not create IO object" in text:
        return ImageReadError(f"not an image ITK can read as {path.suffix}", path=path, fix="is the extension right?")
    if isinstance(e, MemoryError):
        return ImageReadError("too large to read into memory", path=path)
    found = re.search(r"ITK ERROR: \w+\(0x[0-9a-fA-F]+\): (.*)", text)
    reason = (found.group(1) if found else text).split("Reason:")[-1].strip()
    if "No such file" in reason:  # what ITK says when the pixel data stop early; the file does exist
        reason = "the pixel data stop early"
    return ImageReadError(f"truncated or corrupt image (ITK: {reason[:200]})", path=path)


def _affine(spacing_xyz, origin, direction: np.ndarray) -> np.ndarray:
    """4x4 from array indices ``(z, y, x)`` to LPS world: ITK's ``origin + D @ diag(spacing) @ (x, y, z)``."""
    n = len(spacing_xyz)
    m = direction @ np.diag(spacing_xyz)
    affine = np.eye(4)
    affine[:n, :n] = m[:, ::-1]
    affine[:n, 3] = origin
    return affine


def check_itk(path: Path, shape: tuple[int, ...], dtype: np.dtype, meta: ImageMeta, compression) -> None:
    """Refuse what ITK's wheels cannot write to ``path``'s format, before any file is made."""
    vector = meta.axes.endswith("S")
    spatial = len(shape) - vector
    if spatial not in (2, 3):
        raise ImageWriteError(f"ITK formats take 2D or 3D images, this one has {spatial} image axes", path=path,
                              fix="write .tif or .nii.gz")
    png = path.suffix.lower() == ".png"
    if vector:
        rgb = dtype.name == "uint8" and shape[-1] in (3, 4)
        ok = (rgb or (dtype.name in ("float32", "float64") and 2 <= shape[-1] <= 4)) and (rgb or not png)
        fix = "use uint8 RGB(A) or float32 vectors of 2 to 4 components"
    else:
        ok = dtype.name in (_PNG_DTYPES if png else _SCALAR_DTYPES) and not (png and spatial != 2)
        fix = "PNG takes 2D uint8/uint16" if png else f"cast to one of {', '.join(_SCALAR_DTYPES)}"
    if not ok:
        kind = f"{shape[-1]}-component {dtype.name}" if vector else f"{spatial}D {dtype.name}"
        raise ImageWriteError(f"cannot write {kind} pixels as {path.suffix}", path=path, fix=fix)


def write_itk(path: Path, array: np.ndarray, meta: ImageMeta, *, compression=None) -> None:
    """Write ``array`` with ``meta``'s spacing, origin and direction (ITK's when it came from ITK)."""
    itk = _itk()
    image = _to_itk(itk, np.ascontiguousarray(array), meta.axes.endswith("S"))
    spacing, origin, direction = _geometry(meta, image.GetImageDimension())
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(itk.matrix_from_array(direction))
    itk.imwrite(image, str(path), compression=bool(compression))


def _to_itk(itk, array: np.ndarray, vector: bool):
    if vector and array.dtype == np.uint8:
        pixel = itk.RGBPixel[itk.UC] if array.shape[-1] == 3 else itk.RGBAPixel[itk.UC]
        return itk.image_from_array(array, ttype=itk.Image[pixel, array.ndim - 1])
    return itk.image_from_array(array, is_vector=vector)


def _geometry(meta: ImageMeta, n: int) -> tuple[list[float], list[float], np.ndarray]:
    """ITK spacing, origin and direction (x, y, z order, LPS) for an ``n``-D image described by ``meta``."""
    steps = [s for a, s in zip(meta.axes, meta.spacing or ()) if a != "S"][-n:]
    spacing = [float(s) for s in steps[::-1]] if len(steps) == n else [1.0] * n
    origin, direction = [0.0] * n, np.eye(n)
    if meta.format == "itk" and len(meta.extra.get("origin", ())) == n:
        origin, direction = list(meta.extra["origin"]), np.asarray(meta.extra["direction"], dtype=np.float64)
    elif meta.format == "nifti" and meta.affine is not None and len(meta.spatial_axes) == n:
        # NIfTI arrays are (x, y, z) and RAS; the same array seen by ITK has its axes reversed, in LPS.
        lps = _RAS_TO_LPS @ meta.affine
        m = lps[:n, :n][:, ::-1]
        norms = np.linalg.norm(m, axis=0)
        spacing, direction, origin = norms.tolist(), m / norms, lps[:n, 3].tolist()
    return spacing, origin, direction
