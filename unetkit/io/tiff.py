"""TIFF through tifffile: every page of a stack, ImageJ hyperstacks, OME-TIFF, RGB, spacing kept.

We read with tifffile directly rather than through MONAI's readers: its PIL reader keeps only the first page
of a multi-page stack (a 30-slice ISBI volume comes back as one slice), its ITK reader returns stacks
transposed to ``(X, Y, Z)`` with no axis names, so a time-lapse or a channel axis cannot be told from depth.

Writing keeps the calibration in the flavour the input came in, as far as the array allows:

- OME-TIFF when the input was OME (``meta.extra["ome"]``) or the output is named ``*.ome.tif(f)``: axes and
  ``PhysicalSizeX/Y/Z`` (with their unit) and ``TimeIncrement`` in the OME-XML, plus resolution tags in pixels
  per centimetre, which ImageJ's plain TIFF reader shows in micrometres;
- else an ImageJ hyperstack (Fiji then shows the spacing) when the dtype and axis order allow;
- else a plain TIFF with the axes and exact spacing in tifffile's JSON description and resolution tags.

Units never stop a write. OME keeps any unit OME knows (micrometre spellings become ``µm``); ImageJ's header
must be ASCII, so micrometre spellings become ``um`` and other non-ASCII length units (``Å``) are converted to
``um``; a unit neither can express is dropped with a logged warning and the spacing numbers are kept.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tifffile

from unetkit.errors import ImageReadError, ImageWriteError
from unetkit.io.checks import read_failure
from unetkit.io.meta import ImageMeta

__all__ = ["read_tiff", "write_tiff", "check_tiff", "tiff_options"]

logger = logging.getLogger(__name__)

_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF, both byte orders
_IMAGEJ_ORDER = "TZCYXS"
_IMAGEJ_DTYPES = ("uint8", "uint16", "float32")
# Spacing in these units is converted to micrometres; "inch" (a scanner's or screen's dpi) is kept as is.
_TO_UM = {"CENTIMETER": 1e4, "MILLIMETER": 1e3, "MICROMETER": 1.0}
_UM_PER_UNIT = {"um": 1.0, "µm": 1.0, "μm": 1.0, "\\u00B5m": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
                "micrometre": 1.0, "Å": 1e-4, "pm": 1e-6, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "dm": 1e5, "m": 1e6,
                "km": 1e9, "inch": 25400.0, "in": 25400.0}
# Length units of the OME schema (UnitsLength) that a microscope image might carry; "inch" is OME's "in".
_OME_UNITS = ("pm", "Å", "nm", "µm", "mm", "cm", "dm", "m", "km", "in", "ft", "thou", "pixel", "reference frame")
_OME_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64")
# Lossless only: an output must read back equal (JPEG-compressed labels would not be labels any more).
LOSSLESS_CODECS = ("zlib", "deflate", "lzw", "zstd", "lzma", "packbits")
_BIGTIFF_BYTES = 2**32 - 2**25  # leave room for the tags of a classic TIFF's 4 GiB


def read_tiff(path: Path, *, mmap: bool = False) -> tuple[np.ndarray, ImageMeta]:
    """Read the first series of a TIFF (all its pages) and its metadata; see :func:`unetkit.io.read_image`."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head not in _MAGIC:
        raise ImageReadError(f"not a TIFF file (it starts with {head!r})", path=path, fix="is the extension right?")
    with _TifffileWarnings() as warnings:
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                _check_complete(tif, series, path, warnings)
                axes = _normal_axes(series.axes)
                spacing, extra = _calibration(tif, series, axes)
                array = _memmap(path, series) if mmap else None
                if array is None:
                    array = series.asarray()
        except ImageReadError:
            raise
        except Exception as e:
            raise read_failure(e, path, "TIFF") from e
    for message in warnings:  # the file was fine after all: pass tifffile's remarks on, naming the file
        logger.warning("%s: %s", path, message)
    meta = ImageMeta(axes, shape=array.shape, dtype=array.dtype.name, spacing=spacing, source=str(path),
                     format="tiff", extra=extra)
    return array, meta


class _TifffileWarnings(logging.Filter):
    """Collects (and holds back) what tifffile logs while one file is read.

    tifffile does not raise on a broken page chain: it logs "invalid page offset" and returns the pages
    before the break, so a truncated 30-slice stack would read as a shorter stack. These messages are how
    we notice; they are held back because the error we raise says it in one line.
    """

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.messages.append(record.getMessage())
        return False

    def __enter__(self) -> list[str]:
        logging.getLogger("tifffile").addFilter(self)
        return self.messages

    def __exit__(self, *exc) -> None:
        logging.getLogger("tifffile").removeFilter(self)


def _check_complete(tif: tifffile.TiffFile, series, path: Path, warnings: list[str]) -> None:
    """Refuse a stack whose page chain breaks or whose pixel data run past the end of the file."""
    fix = "an interrupted copy or download? fetch it again"
    if any("invalid page offset" in m or "corrupted" in m for m in warnings):
        raise ImageReadError("truncated or corrupt TIFF (its chain of pages is broken)", path=path, fix=fix)
    size = tif.filehandle.size
    if series.dataoffset is not None:
        end = series.dataoffset + series.nbytes
    else:
        end = max(
            (o + n for page in series.pages if page is not None for o, n in zip(page.dataoffsets, page.databytecounts)),
            default=0,
        )
    if end > size:
        raise ImageReadError(f"truncated TIFF (image data end at byte {end}, the file has {size})", path=path, fix=fix)


def _memmap(path: Path, series) -> np.ndarray | None:
    """A read-only memory map of the series, or None when its data are compressed or scattered."""
    if series.dataoffset is None:
        return None
    try:
        mapped = tifffile.memmap(path, mode="r")
    except ValueError:  # tifffile: "not memory-mappable" (tiles, predictor, odd bit depths)
        return None
    return mapped.reshape(series.shape) if mapped.shape != series.shape else mapped


def _normal_axes(axes: str) -> str:
    """tifffile's axes with its generic letters ('I' for a page sequence, 'Q' unknown) named Z, T or C."""
    out = []
    for a in axes:
        if a not in _IMAGEJ_ORDER or a in out:
            a = next((c for c in "ZTC" + "ABDEFGHJKLMNOPQRUVW" if c not in axes and c not in out), a)
        out.append(a)
    return "".join(out)


def _calibration(tif: tifffile.TiffFile, series, axes: str) -> tuple[tuple[float, ...] | None, dict]:
    """Spacing per array axis and the ``extra`` metadata, from OME, ImageJ, our JSON or resolution tags."""
    page = series.keyframe
    extra = {"photometric": page.photometric.name, "compression": page.compression.name,
             "resolution": tuple(float(r) for r in page.resolution), "resolution_unit": page.resolutionunit.name}
    steps, unit = {}, None
    if tif.is_ome:
        extra["ome"] = True  # written back as OME-TIFF
        steps, unit = _ome_steps(tif.ome_metadata)
    elif tif.is_imagej:
        ij = tif.imagej_metadata or {}
        extra["imagej"] = {k: v for k, v in ij.items() if isinstance(v, (int, float, str, bool))}
        unit = ij.get("unit")
        if unit is not None or page.resolution != (1.0, 1.0):
            steps.update(_steps_from_resolution(page.resolution, 1.0))
        if "spacing" in ij:
            steps["Z"] = float(ij["spacing"])
        if "finterval" in ij:
            steps["T"] = float(ij["finterval"])
    elif tif.is_shaped and _own_spacing(tif.shaped_metadata[0], axes):
        shaped = tif.shaped_metadata[0]
        steps, unit = dict(zip(axes, shaped["spacing"])), shaped.get("unit")
    elif page.resolutionunit.name != "NONE" or page.resolution != (1.0, 1.0):
        to_um = _TO_UM.get(page.resolutionunit.name)
        steps = _steps_from_resolution(page.resolution, to_um or 1.0)
        unit = "um" if to_um else page.resolutionunit.name.lower()
        unit = None if unit == "none" else unit
    if unit is not None:
        extra["unit"] = unit
    steps = {a: s for a, s in steps.items() if a in axes and np.isfinite(s) and s > 0}
    if not steps:
        return None, extra
    return tuple(float(steps.get(a, 1.0)) for a in axes), extra


def _own_spacing(shaped: dict, axes: str) -> bool:
    spacing = shaped.get("spacing")
    return isinstance(spacing, list) and len(spacing) == len(axes)


def _steps_from_resolution(resolution, scale: float) -> dict[str, float]:
    """Pixel sizes from resolution tags (pixels per unit), rounded to 9 digits: the tags are rationals, so
    1 / (1 / 0.65) comes back as 0.6499999999999999 without the rounding."""
    steps = {}
    for axis, res in zip("XY", resolution):
        if res > 0:
            steps[axis] = float(f"{scale / res:.9g}")
    return steps


def _ome_steps(xml: str | None) -> tuple[dict[str, float], str | None]:
    """Physical sizes (in the X unit; a Z given in another length unit is converted) and time step from OME-XML."""
    if not xml:
        return {}, None
    image = tifffile.xml2dict(xml).get("OME", {}).get("Image", {})
    pixels = (image[0] if isinstance(image, list) else image).get("Pixels", {})
    steps = {a: float(pixels[k]) for a, k in (("X", "PhysicalSizeX"), ("Y", "PhysicalSizeY"), ("Z", "PhysicalSizeZ"),
                                               ("T", "TimeIncrement")) if k in pixels}
    if not any(a in steps for a in "XYZ"):
        return steps, None
    unit = str(pixels.get("PhysicalSizeXUnit", "µm"))  # OME's default length unit
    for axis in "YZ":
        own = str(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if axis in steps and own != unit and own in _UM_PER_UNIT and unit in _UM_PER_UNIT:
            steps[axis] = float(f"{steps[axis] * _UM_PER_UNIT[own] / _UM_PER_UNIT[unit]:.9g}")
    return steps, unit


def check_tiff(path: Path, shape: tuple[int, ...], dtype: np.dtype, meta: ImageMeta, compression) -> None:
    """Refuse what tifffile cannot write, before any file is made."""
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise ImageWriteError(f"TIFF cannot hold {dtype.name} pixels", path=path,
                              fix="cast to an integer or float type")
    if compression is not None and str(compression).lower() not in LOSSLESS_CODECS:
        raise ValueError(f"compression must be None or one of {', '.join(LOSSLESS_CODECS)}, got {compression!r}")


def write_tiff(path: Path, array: np.ndarray, meta: ImageMeta, *, compression=None) -> None:
    """Write ``array`` as described by ``meta``: OME-TIFF for an OME input or a ``*.ome.tif`` name, else an ImageJ
    hyperstack when possible, else a plain TIFF (see the module's docstring)."""
    ome = True if ".ome.tif" in Path(path).name.lower() else None
    options = tiff_options(array.shape, array.dtype, meta, ome=ome)
    if compression is not None:
        options["compression"] = str(compression).lower()
    tifffile.imwrite(path, array, **options)


def tiff_options(shape: tuple[int, ...], dtype: np.dtype, meta: ImageMeta, *, ome: bool | None = None) -> dict:
    """Keyword arguments for ``tifffile.imwrite`` / ``tifffile.memmap`` that store ``meta`` in the file.

    Args:
        shape, dtype: the array to be written.
        meta: its metadata (``meta.axes`` fits ``shape``).
        ome: write OME-TIFF if the axes and dtype allow; None: when ``meta`` was read from an OME-TIFF.

    Examples:
        >>> m = ImageMeta("YX", spacing=(0.65, 0.65), format="tiff", extra={"ome": True, "unit": "µm"})
        >>> tiff_options((33, 37), np.dtype("uint16"), m)["metadata"]
        {'axes': 'YX', 'PhysicalSizeY': 0.65, 'PhysicalSizeYUnit': 'µm', 'PhysicalSizeX': 0.65, 'PhysicalSizeXUnit': 'µm'}
        >>> tiff_options((33, 37), np.dtype("uint16"), m.replace(extra={"unit": "µm"}))["metadata"]["unit"]
        'um'
    """
    dtype = np.dtype(dtype)
    rgb = meta.axes.endswith("S") and shape[-1] in (3, 4)
    options: dict = {"photometric": "rgb" if rgb else "minisblack"}
    if (meta.extra.get("ome") if ome is None else ome) and _ome_ok(meta.axes, dtype):
        return {**options, **_ome_options(meta), "bigtiff": _needs_bigtiff(shape, dtype)}
    if _imagej_ok(meta.axes, dtype, shape):
        return {**options, **_imagej_options(meta)}
    return {**options, **_plain_options(meta), "bigtiff": _needs_bigtiff(shape, dtype)}


def _ome_options(meta: ImageMeta) -> dict:
    """OME-XML physical sizes (and time step) in an OME unit, plus resolution tags for non-OME readers."""
    metadata: dict = {"axes": meta.axes}
    if meta.spacing is None:
        return {"ome": True, "metadata": metadata}
    step = dict(zip(meta.axes, meta.spacing))
    unit, scale = _ome_unit(_unit(meta))
    for axis in (a for a in meta.axes if a in "XYZ"):
        metadata[f"PhysicalSize{axis}"] = step[axis] * scale
        if unit is not None:
            metadata[f"PhysicalSize{axis}Unit"] = unit
    if "T" in step:
        metadata["TimeIncrement"] = step["T"]
    spatial = {a: step[a] * scale for a in "XY" if a in step}
    return {"ome": True, "metadata": metadata, **_resolution_tags(spatial, unit)}


def _imagej_options(meta: ImageMeta) -> dict:
    """ImageJ hyperstack metadata: axes, an ASCII unit, Z spacing, frame interval, pixels per unit in X and Y."""
    metadata: dict = {"axes": meta.axes}
    options: dict = {"imagej": True, "metadata": metadata}
    if meta.spacing is None:
        return options
    step = dict(zip(meta.axes, meta.spacing))
    unit, scale = _ascii_unit(_unit(meta))
    if unit is not None:
        metadata["unit"] = unit
    options["resolution"] = (1.0 / (step["X"] * scale), 1.0 / (step["Y"] * scale))
    if "Z" in step:
        metadata["spacing"] = step["Z"] * scale
    if "T" in step:
        metadata["finterval"] = step["T"]
    return options


def _plain_options(meta: ImageMeta) -> dict:
    """tifffile's JSON description with the axes and the exact spacing, and resolution tags."""
    metadata: dict = {"axes": meta.axes}
    if meta.spacing is None:
        return {"ome": False, "metadata": metadata}
    unit = _unit(meta)
    metadata.update(spacing=list(meta.spacing), unit=unit)  # JSON escapes any non-ASCII unit
    step = dict(zip(meta.axes, meta.spacing))
    return {"ome": False, "metadata": metadata, **_resolution_tags({a: step[a] for a in "XY" if a in step}, unit)}


def _resolution_tags(step: dict[str, float], unit: str | None) -> dict:
    """XResolution/YResolution in pixels per centimetre for a length unit, else per (unknown) unit."""
    if "X" not in step or "Y" not in step:
        return {}
    per_um = _UM_PER_UNIT.get(unit)
    scale = 1.0 if per_um is None else 1e4 / per_um
    return {"resolution": (scale / step["X"], scale / step["Y"]),
            "resolutionunit": "NONE" if per_um is None else "CENTIMETER"}


def _needs_bigtiff(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    return int(np.prod(shape)) * dtype.itemsize > _BIGTIFF_BYTES


def _ascii_unit(unit: str | None) -> tuple[str | None, float]:
    """A unit ImageJ's ASCII header can hold and the factor to apply to the spacing; never fails.

    Examples:
        >>> _ascii_unit("µm"), _ascii_unit("nm"), _ascii_unit("Å")
        (('um', 1.0), ('nm', 1.0), ('um', 0.0001))
    """
    if unit is None or unit.isascii():
        return unit, 1.0
    per_um = _UM_PER_UNIT.get(unit)
    if per_um is None:
        logger.warning("spacing unit %r cannot be written to an ImageJ TIFF header (ASCII only): "
                       "the spacing is kept without a unit", unit)
        return None, 1.0
    return "um", per_um


def _ome_unit(unit: str | None) -> tuple[str | None, float]:
    """An OME length unit for ``unit`` and the factor to apply to the spacing; never fails.

    Examples:
        >>> _ome_unit("um"), _ome_unit("micron"), _ome_unit("mm"), _ome_unit("inch")
        (('µm', 1.0), ('µm', 1.0), ('mm', 1.0), ('in', 1.0))
    """
    if unit is None:
        return None, 1.0
    per_um = _UM_PER_UNIT.get(unit)
    if per_um == 1.0:
        return "µm", 1.0
    if unit in _OME_UNITS:
        return unit, 1.0
    if unit == "inch":
        return "in", 1.0
    if per_um is not None:
        return "µm", per_um
    logger.warning("spacing unit %r is not an OME length unit: the spacing is written without one "
                   "(OME readers take it as µm)", unit)
    return None, 1.0


def _unit(meta: ImageMeta) -> str | None:
    """The length unit of ``meta.spacing``: its TIFF unit, NIfTI's xyz unit, millimetres for ITK, else um."""
    if "unit" in meta.extra:
        unit = meta.extra["unit"]
        return (str(unit).strip() or None) if unit is not None else None
    if meta.format == "nifti":
        return {"meter": "m", "mm": "mm", "micron": "um"}.get(meta.extra.get("xyzt_units", ("unknown",))[0], "mm")
    return "mm" if meta.format == "itk" else "um"


def _ome_ok(axes: str, dtype: np.dtype) -> bool:
    """OME-TIFF through tifffile: any order of TZC before YX (or YXS), pixel types OME has."""
    return dtype.name in _OME_DTYPES and set(axes) <= set(_IMAGEJ_ORDER) and (axes.endswith("YX") or axes.endswith("YXS"))


def _imagej_ok(axes: str, dtype: np.dtype, shape: tuple[int, ...]) -> bool:
    """ImageJ hyperstacks: uint8/uint16/float32, axes a subsequence of TZCYXS ending in YX (or YXS for 8-bit RGB)."""
    if dtype.name not in _IMAGEJ_DTYPES or not set(axes) <= set(_IMAGEJ_ORDER):
        return False
    in_order = [_IMAGEJ_ORDER.index(a) for a in axes] == sorted(_IMAGEJ_ORDER.index(a) for a in axes)
    if axes.endswith("S"):
        return in_order and axes.endswith("YXS") and dtype.name == "uint8" and shape[-1] == 3
    return in_order and axes.endswith("YX")
