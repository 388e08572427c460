"""Object tables: what a microscopist measures next, one CSV row per object (``--save-table``).

``<stem>_objects.csv`` has one row per object (per frame of a stack: a 2D bundle on a ``TYX`` time-lapse
measures each frame; a 3D bundle measures volumes), made by :func:`skimage.measure.regionprops_table`, and
``counts.csv`` one row per file and frame for the whole run. The columns are documented in docs/outputs.md:
``frame`` (stacks only), ``label``, ``centroid_<axis>``, ``area_px``/``area_calibrated`` (``volume_`` in 3D),
``unit``, ``bbox_<axis>_min``/``_max`` (end exclusive), ``equivalent_diameter_px``/``_calibrated``,
``intensity_mean``/``_min``/``_max`` (of the input as the network saw it, before normalisation; ``_c<k>`` per
channel of a multi-channel input), ``touches_border``. Coordinates are pixel indices along the file's axes.

Examples:
    >>> labels = np.zeros((4, 5), np.int32); labels[0:2, 0:2] = 1; labels[2:4, 2:5] = 2
    >>> image = np.arange(20, dtype=np.float32).reshape(4, 5)
    >>> t = measure_frame(labels, image, axes="YX", spacing=(0.5, 0.5))
    >>> t["label"].tolist(), t["area_px"].tolist(), t["area_calibrated"].tolist(), t["intensity_max"].tolist()
    ([1, 2], [4.0, 6.0], [1.0, 1.5], [6.0, 19.0])
    >>> t["touches_border"].tolist(), t["bbox_x_max"].tolist()
    ([True, True], [2, 5])
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from skimage.measure import regionprops_table

from unetkit.io import ImageMeta
from unetkit.io.atomic import atomic_output, prepare_target
from unetkit.io.naming import COUNTS
from unetkit.predict.layout import Layout

__all__ = ["measure_frame", "measure_file", "write_csv", "write_counts", "write_object_outputs", "run_counts",
           "length_unit", "COUNT_COLUMNS"]

COUNT_COLUMNS = ("file", "frame", "objects", "foreground_fraction")
"""The columns of ``counts.csv``."""


def length_unit(meta: ImageMeta) -> str:
    """The unit of ``meta.spacing``: the file's own (TIFF ``unit``), ``mm`` for NIfTI (millimetres unless its
    header says otherwise), ``px`` for an uncalibrated file."""
    if meta.spacing is None:
        return "px"
    unit = meta.extra.get("unit")
    if isinstance(unit, str) and unit:
        return unit
    return "mm" if meta.format == "nifti" else "px"


def measure_frame(labels: np.ndarray, image: np.ndarray | None, *, axes: str, spacing: Sequence[float] | None = None,
                  unit: str = "px") -> dict[str, np.ndarray]:
    """The table of one label image ``(*spatial)`` (2D or 3D): one entry per object, in label order.

    Args:
        labels: instance labels, 0 background.
        image: the input ``(*spatial)`` or ``(*spatial, C)`` for the intensity columns; None: none of them.
        axes: the letters of ``labels``' axes (``"YX"``, ``"ZYX"``, NIfTI's ``"XYZ"``), for the column names.
        spacing: physical step per axis of ``labels`` (None: 1, the calibrated columns equal the pixel ones).
        unit: the unit of ``spacing``, written in the ``unit`` column.

    Returns:
        Columns by name (see the module docstring), each an array with one value per object.
    """
    if len(axes) != labels.ndim:
        raise ValueError(f"axes {axes!r} do not match labels of shape {labels.shape}")
    steps = np.ones(labels.ndim) if spacing is None else np.asarray(spacing, float)
    props = ["label", "centroid", "area", "bbox"] + (["intensity_mean", "intensity_min", "intensity_max"]
                                                    if image is not None else [])
    raw = regionprops_table(labels, None if image is None else np.asarray(image), properties=props)
    names = axes.lower()
    size = "area" if labels.ndim == 2 else "volume"
    pixels = raw["area"].astype(float)
    calibrated = pixels * float(np.prod(steps))
    table = {"label": raw["label"].astype(np.int64)}
    table.update({f"centroid_{a}": raw[f"centroid-{i}"] for i, a in enumerate(names)})
    table[f"{size}_px"], table[f"{size}_calibrated"] = pixels, calibrated
    table["unit"] = np.full(len(pixels), unit, dtype=object)
    table.update({f"bbox_{a}_min": raw[f"bbox-{i}"] for i, a in enumerate(names)})
    table.update({f"bbox_{a}_max": raw[f"bbox-{i + labels.ndim}"] for i, a in enumerate(names)})
    table["equivalent_diameter_px"] = _diameter(pixels, labels.ndim)
    table["equivalent_diameter_calibrated"] = _diameter(calibrated, labels.ndim)
    if image is not None:
        table.update(_intensities(raw))
    lows = np.stack([raw[f"bbox-{i}"] for i in range(labels.ndim)], axis=-1)
    highs = np.stack([raw[f"bbox-{i + labels.ndim}"] for i in range(labels.ndim)], axis=-1)
    table["touches_border"] = (lows == 0).any(axis=-1) | (highs == np.array(labels.shape)).any(axis=-1)
    return table


def _diameter(size: np.ndarray, ndim: int) -> np.ndarray:
    """The diameter of the disc (2D) or ball (3D) of ``size``: skimage's ``equivalent_diameter_area``, here also
    for calibrated sizes (anisotropic voxels included, where scaling the pixel diameter would be wrong)."""
    return 2 * np.sqrt(size / math.pi) if ndim == 2 else np.cbrt(6 * size / math.pi)


def _intensities(raw: dict) -> dict[str, np.ndarray]:
    out = {}
    for stat in ("mean", "min", "max"):
        key = f"intensity_{stat}"
        if key in raw:
            out[key] = raw[key].astype(float)
        else:  # per channel: regionprops names them intensity_mean-0, -1, ...
            for k in range(len([c for c in raw if c.startswith(key + "-")])):
                out[f"{key}_c{k}"] = raw[f"{key}-{k}"].astype(float)
    return out


def measure_file(labels: np.ndarray, array: np.ndarray, meta: ImageMeta, layout: Layout) -> tuple[dict, list[dict]]:
    """The object table of one file's labels (the file's shape without its channel axis) and its
    ``counts.csv`` rows: ``(columns, counts)``; stacks get a ``frame`` column (0-based, in frame order)."""
    spacing = None if meta.spacing is None else [meta.spacing[a] for a in layout.spatial]
    unit = length_unit(meta)
    parts, counts = [], []
    for frame, index in enumerate(layout.frame_indices()):
        frame_labels = np.asarray(layout.output_view(labels, index))
        image = np.moveaxis(np.asarray(layout.network_input(array, index)), 0, -1)
        table = measure_frame(frame_labels, image[..., 0] if image.shape[-1] == 1 else image,
                              axes=layout.spatial_axes, spacing=spacing, unit=unit)
        if layout.frame_axes:
            table = {"frame": np.full(len(table["label"]), frame, np.int64), **table}
        parts.append(table)
        counts.append({"frame": frame, "objects": len(table["label"]),
                       "foreground_fraction": float(np.count_nonzero(frame_labels)) / max(frame_labels.size, 1)})
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return columns, counts


def write_csv(path: os.PathLike, columns: dict[str, np.ndarray]) -> Path:
    """Write ``columns`` (equal lengths) as a CSV file with a header row, atomically."""
    target = prepare_target(path, None)
    rows = zip(*(_cells(v) for v in columns.values()))
    with atomic_output(target, "CSV") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(rows)
    return target


def _cells(values: np.ndarray) -> list:
    """Plain Python values: integers without a decimal point, floats in their shortest exact form."""
    values = np.asarray(values)
    if values.dtype == bool:
        return values.astype(int).tolist()
    return values.tolist()


def write_counts(outdir: os.PathLike, rows: Iterable[dict]) -> Path:
    """Write the run's ``counts.csv`` in ``outdir`` from rows with the :data:`COUNT_COLUMNS`."""
    rows = list(rows)
    columns = {c: np.array([r[c] for r in rows], dtype=object) for c in COUNT_COLUMNS}
    return write_csv(Path(outdir) / COUNTS, columns)


def write_object_outputs(outputs, array: np.ndarray, meta: ImageMeta, layout: Layout) -> list[dict]:
    """The object outputs of one segmented file (``outputs.table``/``rois``/``geojson``, those not None),
    measured on the mask as written, so that every file agrees with it; returns the file's ``counts.csv`` rows
    (without the ``file`` column).

    Args:
        outputs: the file's :class:`~unetkit.io.naming.OutputPaths` (its mask written already).
        array: the input image as read (file axis order), for the intensities.
        meta: its metadata.
        layout: its :class:`~unetkit.predict.layout.Layout`.
    """
    from unetkit.io import read_image
    from unetkit.predict.shapes import trace_planes, write_geojson, write_rois

    labels = read_image(outputs.mask, mmap=True)[0].reshape(layout.output_shape)
    columns, counts = None, []
    if outputs.table is not None or outputs.geojson is not None:  # ROIs alone need no measurements
        columns, counts = measure_file(labels, array, meta, layout)
    if outputs.table is not None:
        write_csv(outputs.table, columns)
    if outputs.rois is None and outputs.geojson is None:
        return counts
    axes = "".join(a for i, a in enumerate(meta.axes) if i != layout.channel_axis)
    outlines = trace_planes(np.asarray(labels), axes)
    if outputs.rois is not None:
        write_rois(outputs.rois, outlines)
    if outputs.geojson is not None:
        write_geojson(outputs.geojson, outlines, _row_lookup(columns, axes, layout))
    return counts


def _row_lookup(columns: dict, axes: str, layout: Layout):
    """``measurements(plane, label)``: the numeric columns of the object's table row, for GeoJSON."""
    numeric = [k for k, v in columns.items() if np.asarray(v).dtype != object]
    frames = columns.get("frame", np.zeros(len(columns["label"]), np.int64))
    rows = {(int(f), int(lab)): i for i, (f, lab) in enumerate(zip(frames, columns["label"]))}
    values = {k: np.asarray(columns[k]).tolist() for k in numeric}
    # the plane's frame: its index along the axes that are frames (all but Y and X in 2D; T, not Z, in 3D)
    others = [a for a in axes if a not in "YX"]
    is_frame = [a not in layout.spatial_axes for a in others]

    def measurements(plane, label: int) -> dict:
        index = [i for i, keep in zip(plane.index, is_frame) if keep]
        frame = int(np.ravel_multi_index(index, layout.frames)) if index else 0
        row = rows[(frame, label)]
        return {k: (float(values[k][row]) if not isinstance(values[k][row], bool) else int(values[k][row]))
                for k in numeric}

    return measurements


def run_counts(results) -> list[dict]:
    """The ``counts.csv`` rows of a run: each segmented file's rows, with its name, in input order."""
    return [{"file": r.path.name, **row} for r in results if r.ok for row in r.counts]
