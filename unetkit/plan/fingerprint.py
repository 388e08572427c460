"""What a training data set measures: sizes, spacing, intensities, and its objects (size, touching).

Everything is computed from the label images as they are given (instance labels, 0 = background), read
one item at a time, so a large data set costs one image's memory.

Examples:
    >>> import numpy as np
    >>> labels = np.zeros((40, 60), np.uint16)
    >>> labels[5:15, 5:15], labels[5:15, 15:25], labels[25:35, 40:50] = 1, 2, 3  # 1 and 2 touch
    >>> stats = object_stats(labels)
    >>> stats["count"], stats["touching"], [round(d, 1) for d in stats["diameters"]]
    (3, 2, [11.3, 11.3, 11.3])
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

from unetkit.transforms.instances import mask_instances
from unetkit.transforms.load import read_item

__all__ = ["fingerprint", "object_stats"]

_SAMPLE = 200_000  # pixels per image for the intensity percentiles: plenty for 0.5th/99.5th percentiles


def object_stats(labels: np.ndarray) -> dict:
    """Objects of one instance-label image: ``count``, ``touching`` (objects sharing a face with another
    object), and ``diameters`` (equivalent diameter of each: the disc's, or the ball's in 3D, of its area).
    """
    labels = np.asarray(labels)
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    if labels.ndim == 2:
        diameters = 2 * np.sqrt(areas / math.pi)
    else:
        diameters = np.cbrt(6 * areas / math.pi)
    touching: set[int] = set()
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        lo, hi = a[:-1], a[1:]
        meet = (lo != hi) & (lo > 0) & (hi > 0)
        touching.update(np.unique(lo[meet]).tolist())
        touching.update(np.unique(hi[meet]).tolist())
    return {"count": int(len(ids)), "touching": len(touching), "diameters": diameters.tolist()}


def _label_array(array: np.ndarray) -> tuple[np.ndarray, bool]:
    """Instance labels, and whether the file was a mask read as its connected parts."""
    labels = np.squeeze(np.asarray(array))
    if labels.dtype.kind == "f":
        labels = labels.astype(np.int64)
    instances = mask_instances(labels)  # a binary mask: its components are the objects
    return instances, instances is not labels


def fingerprint(items: Iterable[Mapping], *, unannotated: int = 0, held_out: int = 0) -> dict:
    """Measure a data list (``{"image": path, "label": path[, "frame": i][, "region": ...]}`` items, as a
    bundle's datalists give them).

    Returns:
        ``images`` (count), ``sizes`` (distinct spatial shapes), ``spacing`` (distinct pixel sizes),
        ``intensity`` (0.5th, 1st, 50th, 99th, 99.8th, 99.5th percentiles over all images), ``objects``,
        ``diameter`` (median, 5th and 95th percentiles, in pixels), ``touching_fraction``, ``annotated``
        and ``unannotated`` frames, ``held_out`` (annotated frames kept for validation, as given),
        ``mask_labels``: label images that were masks (one foreground value), read as their connected parts,
        and ``image_parts``: items that are a part (``"region"``) of an image, the rest held out.
    """
    sizes, spacings, samples, diameters = set(), set(), [], []
    count = touching = images = masks = parts = 0
    rng = np.random.default_rng(0)
    for item in items:
        (image, meta), (label, _) = read_item(item, "image"), read_item(item, "label")
        parts += "region" in item  # the training part of a single annotated image
        images += 1
        sizes.add(tuple(int(n) for n in np.squeeze(label).shape))
        if meta.spacing is not None:
            spacings.add(tuple(round(float(s), 4) for s in meta.spacing[-np.squeeze(label).ndim:]))
        flat = np.asarray(image).reshape(-1)
        pick = rng.choice(flat.size, size=min(_SAMPLE, flat.size), replace=False) if flat.size > _SAMPLE else slice(None)
        samples.append(np.asarray(flat[pick], np.float64))
        labels, is_mask = _label_array(label)
        masks += is_mask
        stats = object_stats(labels)
        count, touching = count + stats["count"], touching + stats["touching"]
        diameters.extend(stats["diameters"])
    values = np.concatenate(samples) if samples else np.zeros(1)
    d = np.asarray(diameters) if diameters else np.zeros(1)
    percentiles = (0.5, 1.0, 50.0, 99.0, 99.5, 99.8)
    return {
        "images": images,
        "sizes": sorted(sizes),
        "spacing": sorted(spacings),
        "intensity": {str(p): float(v) for p, v in zip(percentiles, np.percentile(values, percentiles))},
        "objects": count,
        "diameter": {"median": float(np.median(d)), "p5": float(np.percentile(d, 5)),
                     "p95": float(np.percentile(d, 95))},
        "touching_fraction": round(touching / count, 3) if count else 0.0,
        "annotated": images,
        "unannotated": int(unannotated),
        "held_out": int(held_out),
        "mask_labels": masks,
        "image_parts": parts,
    }
