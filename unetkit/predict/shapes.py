"""Object outlines for Fiji and QuPath: ImageJ ROI zips (``--save-rois``) and GeoJSON (``--save-geojson``).

Both take the pixel-edge polygons of :mod:`unetkit.predict.outlines`, in pixel coordinates with the origin at
the top-left corner of the image (how Fiji and QuPath place them), one shape per object and ``YX`` plane (each
frame of a stack, each slice of a volume).

- ImageJ: one ROI per object and plane, named by its label (``"12"``; in stacks ``"0003-12"``: the 1-based
  stack position, then the label), the plane in the ROI's position (``position`` for a single stack axis, else
  ``t``/``z`` positions). Every ROI is one traced polygon (what Fiji's wand gives). An object with holes (or in
  several pieces) gets a "keyhole" polygon: from the outer ring a cut along a straight line to the nearest
  vertex of the hole, around the hole, and back along the same line. The cut has no width, so the polygon's
  area is the pixel count and ImageJ, which fills polygons even-odd, selects exactly the object's pixels;
  Fiji draws the cut as a line. (A composite ``ShapeRoi`` would keep holes without the line, but readers of
  the zip such as roifile's ``coordinates()`` then see only its largest ring, whose area includes the holes.)
- GeoJSON: a ``FeatureCollection`` of ``Polygon`` features (``MultiPolygon`` for an object in pieces), holes as
  interior rings, exterior rings counter-clockwise; ``properties`` as QuPath reads them: ``objectType:
  "detection"``, ``name`` (the label), ``measurements`` (the object's row of the table: a name -> number map);
  in stacks the plane in ``geometry.plane`` (QuPath's ``{"c", "z", "t"}``).

Examples:
    >>> from unetkit.predict.outlines import ring_area, trace_object
    >>> labels = np.zeros((6, 7), np.uint16); labels[1:5, 1:5] = 3; labels[2, 2] = 0
    >>> roi = imagej_roi(trace_object(labels == 3), "3")
    >>> roi.name, roi.roitype.name, len(roi.coordinates()), ring_area(roi.coordinates().astype(float))
    ('3', 'TRACED', 10, 15.0)
    >>> feature = geojson_feature(trace_object(labels == 3), {"objectType": "detection"})
    >>> feature["geometry"]["type"], [len(ring) for ring in feature["geometry"]["coordinates"]]
    ('Polygon', [5, 5])
"""

from __future__ import annotations

import gc
import json
import os
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import roifile

from unetkit.io.atomic import atomic_output, prepare_target
from unetkit.predict.outlines import trace_outlines

__all__ = ["PlaneOutlines", "trace_planes", "imagej_roi", "keyhole", "write_rois", "geojson_feature", "write_geojson"]

@dataclass(frozen=True)
class PlaneOutlines:
    """The outlines of one ``YX`` plane's objects.

    Attributes:
        index: the plane's index over the label image's other axes, in file order (``()`` for a 2D image).
        position: its 0-based stack position (flat, file order: ImageJ's order for a ``TZYX`` stack).
        z, t: its ``Z``/``T`` index where the image has such an axis, else None.
        shapes: by label, the object's parts as :func:`~unetkit.predict.outlines.trace_object` gives them.
    """

    index: tuple[int, ...]
    position: int
    z: int | None
    t: int | None
    shapes: dict[int, list[list[np.ndarray]]]


def trace_planes(labels: np.ndarray, axes: str) -> list[PlaneOutlines]:
    """The outlines of every ``YX`` plane of a label image whose axes are ``axes`` (traced once, for both
    writers)."""
    if "Y" not in axes or "X" not in axes or len(axes) != labels.ndim:
        raise ValueError(f"labels of shape {labels.shape} need Y and X among axes {axes!r} for outlines")
    y, x = axes.index("Y"), axes.index("X")
    others = [a for a in axes if a not in "YX"]
    stacked = np.moveaxis(labels, (y, x), (-2, -1))
    out = []
    for index in np.ndindex(stacked.shape[:-2]):
        found = {a: i for a, i in zip(others, index)}
        flat = int(np.ravel_multi_index(index, stacked.shape[:-2])) if index else 0
        out.append(PlaneOutlines(index, flat, found.get("Z"), found.get("T"),
                                 trace_outlines(np.asarray(stacked[index]))))
    return out


def imagej_roi(parts: list[list[np.ndarray]], name: str, *, position: int | None = None,
               z: int | None = None, t: int | None = None) -> roifile.ImagejRoi:
    """The ImageJ ROI of one object's parts (as :func:`~unetkit.predict.outlines.trace_object` gives them): a
    traced polygon, holes and further parts joined by zero-width cuts (:func:`keyhole`). Positions are 0-based."""
    roi = roifile.ImagejRoi.frompoints(keyhole(parts).astype(np.int32), name=name)
    roi.roitype = roifile.ROI_TYPE.TRACED  # integer vertices on pixel corners, as Fiji's wand traces
    roi.options = roifile.ROI_OPTIONS(0)
    if position is not None:
        roi.position = position + 1
    if z is not None:
        roi.z_position = z + 1
    if t is not None:
        roi.t_position = t + 1
    return roi


def keyhole(parts: list[list[np.ndarray]]) -> np.ndarray:
    """One ring ``(n, 2)`` for an object's outer rings and holes: each further ring joined to the ring so far
    by a cut between their closest vertices, walked there and back.

    A cut walked both ways adds nothing to the shoelace area and crosses any ray twice, so the even-odd fill
    (ImageJ's, java.awt's) and the signed area are those of the rings themselves: the pixel count.

    Examples:
        >>> from unetkit.predict.outlines import ring_area
        >>> outer = np.array([[0, 0], [3, 0], [3, 3], [0, 3]], float)
        >>> hole = np.array([[1, 1], [1, 2], [2, 2], [2, 1]], float)
        >>> ring = keyhole([[outer, hole]])
        >>> len(ring), ring_area(ring)
        (10, 8.0)
    """
    rings = [ring for part in parts for ring in part]
    merged = rings[0]
    for ring in rings[1:]:
        gaps = np.abs(merged[:, None, :] - ring[None, :, :]).sum(axis=-1)
        i, j = np.unravel_index(np.argmin(gaps), gaps.shape)
        turned = np.roll(ring, -j, axis=0)
        merged = np.concatenate([merged[: i + 1], turned, turned[:1], merged[i:]])
    return merged


def write_rois(path: os.PathLike, outlines: list[PlaneOutlines]) -> Path:
    """Write one ImageJ ROI per object and plane into a zip Fiji's ROI Manager opens (*File > Open* or drag and
    drop), atomically; an image without objects gives an empty zip."""
    target = prepare_target(path, None)
    stack = len(outlines) > 1 or bool(outlines and outlines[0].index)
    rois = []
    for plane in outlines:
        for label, parts in plane.shapes.items():
            if not stack:
                rois.append(imagej_roi(parts, str(label)))
            elif len(plane.index) == 1:
                rois.append(imagej_roi(parts, f"{plane.position + 1:04d}-{label}", position=plane.position))
            else:  # a hyperstack: ImageJ places the ROI by its z and t
                rois.append(imagej_roi(parts, f"{plane.position + 1:04d}-{label}", z=plane.z, t=plane.t))
    with atomic_output(target, "ImageJ ROIs") as tmp:
        if rois:
            roifile.roiwrite(tmp, rois, mode="w")
        else:
            zipfile.ZipFile(tmp, "w").close()
    return target


def geojson_feature(parts: list[list[np.ndarray]], properties: dict, plane: dict | None = None) -> dict:
    """One GeoJSON ``Feature`` of an object's parts: a ``Polygon`` (``MultiPolygon`` for several parts) with
    closed rings of ``[x, y]`` pixel coordinates."""
    polygons = [[_closed(ring) for ring in part] for part in parts]
    geometry = ({"type": "Polygon", "coordinates": polygons[0]} if len(polygons) == 1
                else {"type": "MultiPolygon", "coordinates": polygons})
    if plane is not None:
        geometry["plane"] = plane
    return {"type": "Feature", "geometry": geometry, "properties": properties}


@contextmanager
def _no_gc():
    """The garbage collector paused: building ~10^5 small coordinate lists otherwise sets off collections that
    walk every list made so far, which made the GeoJSON several times slower than encoding it."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _closed(ring: np.ndarray) -> list:
    # whole numbers: the vertices are pixel corners, and ints keep the file small
    closed = ring.astype(np.int64).tolist()
    return closed + closed[:1]


def write_geojson(path: os.PathLike, outlines: list[PlaneOutlines], measurements=None) -> Path:
    """Write the objects as a QuPath GeoJSON ``FeatureCollection``, atomically.

    Args:
        path: the ``.geojson`` file.
        outlines: from :func:`trace_planes`.
        measurements: ``measurements(plane, label) -> dict`` of numbers for the object ``label`` in ``plane``
            (its row of the table), or None.
    """
    target = prepare_target(path, None)
    with _no_gc():
        features = []
        for plane in outlines:
            where = {"c": -1, "z": plane.z or 0, "t": plane.t or 0} if plane.index else None
            for label, parts in plane.shapes.items():
                props = {"objectType": "detection", "name": str(label)}
                if measurements is not None:
                    props["measurements"] = measurements(plane, label)
                features.append(geojson_feature(parts, props, where))
    with atomic_output(target, "GeoJSON") as tmp:
        # json.dumps, not json.dump: dump streams through the pure-Python encoder, ~10x slower here
        text = json.dumps({"type": "FeatureCollection", "features": features}, separators=(",", ":"))
        Path(tmp).write_text(text, encoding="utf-8")
    return target
