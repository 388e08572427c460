"""The one naming rule of unetkit's outputs, and their label dtypes.

- names: ``<stem>_mask.<ext>`` (labels), ``<stem>_prob.<ext>`` (probabilities), ``<stem>_preview.png`` in
  the output folder, where the stem is the file name without its extension(s): ``a.tif`` -> ``a_mask.tif``,
  ``scan.nii.gz`` -> ``scan_mask.nii.gz``, ``cells.ome.tif`` -> ``cells_mask.tif``;
- formats: TIFF in, TIFF out; NIfTI in, NIfTI out; ``.mha``/``.mhd``/``.nrrd``/``.nhdr``/``.png`` likewise;
  inputs no label image can be written as (JPEG is lossy; BMP, DICOM, GIPL, VTK are not written by ITK's
  wheels) get TIFF outputs, and the summary says so;
- probabilities: TIFF or NIfTI as the input, other formats as TIFF;
- objects (``--save-table``, ``--save-rois``, ``--save-geojson``): ``<stem>_objects.csv``, ``<stem>_rois.zip``
  (ImageJ ROIs), ``<stem>.geojson`` (QuPath), and one ``counts.csv`` for the run.

``unetkit infer``, MONAI's runner (:class:`~unetkit.transforms.SaveMaskd`), evaluation's pairing of
predictions with references and the Cell Tracking Challenge export all read the rule from here.

Examples:
    >>> plan_outputs("in/scan.nii.gz", "out").mask.name
    'scan_mask.nii.gz'
    >>> plan_outputs("in/photo.JPG", "out", probabilities=True).prob.name
    'photo_prob.tif'
    >>> label_dtype(70_000)
    dtype('uint32')
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetkit.io.formats import image_suffix, write_format

__all__ = ["MASK", "PROB", "PREVIEW", "OBJECTS", "ROIS", "GEOJSON", "COUNTS", "OutputPaths", "output_stem",
           "plan_outputs", "label_dtype", "semantic_dtype"]

MASK, PROB, PREVIEW = "_mask", "_prob", "_preview"
OBJECTS, ROIS, GEOJSON = "_objects.csv", "_rois.zip", ".geojson"
COUNTS = "counts.csv"
"""The run's one table of objects per file and frame (``--save-table``)."""
_PROB_SUFFIXES = (".tif", ".tiff", ".nii", ".nii.gz")
_NAMES = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".dcm": "DICOM", ".gipl": "GIPL", ".vtk": "VTK"}


@dataclass(frozen=True)
class OutputPaths:
    """The files one input gives: ``mask`` always, ``prob``, ``preview``, ``table``, ``rois``, ``geojson`` when
    asked for.

    ``note`` says why the mask's format differs from the input's (``"JPEG in: mask as TIFF"``), else "".
    """

    mask: Path
    prob: Path | None = None
    preview: Path | None = None
    note: str = ""
    table: Path | None = None
    rois: Path | None = None
    geojson: Path | None = None

    def all(self) -> list[Path]:
        return [p for p in (self.mask, self.prob, self.preview, self.table, self.rois, self.geojson) if p is not None]


def output_stem(path: str | os.PathLike) -> str:
    """The file name without its image extension(s).

    Examples:
        >>> output_stem("a.tif"), output_stem("scan.nii.gz"), output_stem("x.ome.tiff"), output_stem("v1.2.mha")
        ('a', 'scan', 'x', 'v1.2')
    """
    name = Path(path).name
    suffix = image_suffix(name)
    stem = name[: len(name) - len(suffix)] if suffix else name
    if suffix in (".tif", ".tiff") and stem.lower().endswith(".ome"):
        stem = stem[:-4]
    return stem


def _mask_suffix(path) -> tuple[str, str]:
    suffix = image_suffix(path)
    if write_format(path) is not None:
        return suffix, ""
    kind = _NAMES.get(suffix, suffix.lstrip(".").upper() or "this format")
    return ".tif", f"{kind} in: written as TIFF"


def plan_outputs(
    path: str | os.PathLike, outdir: str | os.PathLike, *, probabilities: bool = False, preview: bool = False,
    table: bool = False, rois: bool = False, geojson: bool = False,
) -> OutputPaths:
    """The output files for input ``path`` in ``outdir`` (see the module docstring for the rules).

    Examples:
        >>> [p.name for p in plan_outputs("t000.tif", "out", probabilities=True, preview=True).all()]
        ['t000_mask.tif', 't000_prob.tif', 't000_preview.png']
        >>> [p.name for p in plan_outputs("a.ome.tif", "out", table=True, rois=True, geojson=True).all()]
        ['a_mask.tif', 'a_objects.csv', 'a_rois.zip', 'a.geojson']
    """
    outdir = Path(outdir)
    stem = output_stem(path)
    suffix, note = _mask_suffix(path)
    prob = None
    if probabilities:
        prob_suffix = suffix if suffix in _PROB_SUFFIXES else ".tif"
        prob = outdir / f"{stem}{PROB}{prob_suffix}"
    return OutputPaths(
        mask=outdir / f"{stem}{MASK}{suffix}",
        prob=prob,
        preview=outdir / f"{stem}{PREVIEW}.png" if preview else None,
        note=note,
        table=outdir / f"{stem}{OBJECTS}" if table else None,
        rois=outdir / f"{stem}{ROIS}" if rois else None,
        geojson=outdir / f"{stem}{GEOJSON}" if geojson else None,
    )


def label_dtype(count: int) -> np.dtype:
    """The dtype of an instance-label image with labels 1..``count``: uint16 at least (the Cell Tracking
    Challenge's 16-bit masks, and what Fiji shows as labels), uint32 beyond 65,535 objects.

    Examples:
        >>> label_dtype(0), label_dtype(65_535), label_dtype(65_536)
        (dtype('uint16'), dtype('uint16'), dtype('uint32'))
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    if count <= np.iinfo(np.uint32).max:
        return np.dtype(np.uint32)
    return np.dtype(np.uint64)


def semantic_dtype(classes: int) -> np.dtype:
    """The dtype of a class-index image for ``classes`` classes: uint8 up to 256 classes, else uint16.

    Examples:
        >>> semantic_dtype(2), semantic_dtype(300)
        (dtype('uint8'), dtype('uint16'))
    """
    return np.dtype(np.uint8 if classes <= 256 else np.uint16)
