"""Outlines of labelled objects along pixel edges: the polygons Fiji's wand and QuPath draw around a mask.

A pixel ``(x, y)`` is the square ``[x, x + 1] x [y, y + 1]`` (ImageJ's and QuPath's pixel coordinates, origin at
the top-left corner of the first pixel), so an outline's vertices are whole numbers and the area of the polygon
(outer ring minus holes) is the object's pixel count exactly, not the smaller area of a contour through pixel
centres.

How: every unit edge between an object and anything else, over the whole image at once, directed so that
outer rings run with positive area; each edge linked to the next edge of its object; the cycles numbered and
put in order by pointer doubling; the corners kept. Array operations throughout: a 2048² image with 2,000
objects takes a fraction of a second, where scikit-image's ``find_contours`` on each object's crop (which
assembles its segments in Python, and cuts corners diagonally besides) took several times longer. Object
pixels are 4-connected, as for Fiji's wand: two pixels touching only at a corner are two parts; a ring that
touches itself at such a corner is cut there, so that every ring is simple and the polygons are valid for
shapely/JTS (QuPath's geometry library).

Examples:
    >>> labels = np.zeros((5, 6), np.int32)
    >>> labels[1:4, 1:4] = 1; labels[2, 2] = 0   # a 3x3 ring: 8 pixels and a hole
    >>> labels[1, 5] = 2
    >>> shapes = trace_outlines(labels)
    >>> [len(parts) for parts in shapes.values()], [ring_area(r) for r in shapes[1][0]]
    ([1, 1], [9.0, -1.0])
    >>> shapes[2][0][0].tolist()
    [[5.0, 1.0], [6.0, 1.0], [6.0, 2.0], [5.0, 2.0]]
"""

from __future__ import annotations

import numpy as np
from skimage.measure import points_in_poly

__all__ = ["trace_outlines", "trace_object", "ring_area"]


def ring_area(ring: np.ndarray) -> float:
    """Signed area of a ring ``(n, 2)`` of ``(x, y)`` vertices (shoelace): positive for the outer rings of
    :func:`trace_outlines`, negative for holes."""
    x, y = ring[:, 0], ring[:, 1]
    return float(0.5 * (x[:-1] @ y[1:] - y[:-1] @ x[1:] + x[-1] * y[0] - y[-1] * x[0]))


def trace_object(mask: np.ndarray, offset: tuple[int, int] = (0, 0)) -> list[list[np.ndarray]]:
    """The pixel-edge polygons of one object's mask ``(H, W)``.

    Args:
        mask: bool, True on the object.
        offset: ``(y, x)`` of ``mask[0, 0]`` in the image (a bounding-box crop's corner).

    Returns:
        One entry per 4-connected part: ``[outer, hole, ...]``, each ring ``(n, 2)`` float64 ``(x, y)`` vertices
        (not repeated at the end), corners only; outer rings have positive :func:`ring_area`, holes negative.
    """
    parts = trace_outlines(np.asarray(mask, np.uint8)).get(1, [])
    return [[ring + (offset[1], offset[0]) for ring in part] for part in parts]


# the four directions of a unit edge: 0 right, 1 down, 2 left, 3 up (x right, y down)
_DX, _DY = np.array([1, 0, -1, 0]), np.array([0, 1, 0, -1])


def trace_outlines(labels: np.ndarray) -> dict[int, list[list[np.ndarray]]]:
    """:func:`trace_object` of every object of a 2D label image ``(H, W)``, by label, in label order."""
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2D (H, W), got shape {labels.shape}")
    lab, x, y, d = _unit_edges(np.asarray(labels))
    if not len(lab):
        return {}
    width = labels.shape[1] + 3  # corners of the padded image: 0 .. W + 2
    nodes = (labels.shape[0] + 3) * width
    start = lab * nodes + y * width + x
    nxt = _successors(start, lab * nodes + (y + _DY[d]) * width + (x + _DX[d]), d)
    rep, pos = _order_cycles(nxt)
    order = np.lexsort((pos, rep))
    return _rings_by_label(lab[order], x[order] - 1, y[order] - 1, d[order], rep[order])


def _unit_edges(labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every unit pixel edge between an object and anything else: ``(label, x, y, direction)``, ``(x, y)`` its
    start corner in the image padded by one pixel, directed so that an object's outer rings have positive
    area (top sides run right, right sides down, bottom sides left, left sides up) and its holes negative."""
    p = np.pad(labels, 1)
    r, c = np.nonzero(p[:-1] != p[1:])  # between p[r, c] (above) and p[r + 1, c]: corner row r + 1
    up, down = p[r, c], p[r + 1, c]
    v, u = np.nonzero(p[:, :-1] != p[:, 1:])  # between p[v, u] (left) and p[v, u + 1]: corner column u + 1
    left, right = p[v, u], p[v, u + 1]
    pieces = [(down, c, r + 1, 0), (up, c + 1, r + 1, 2), (right, u + 1, v + 1, 3), (left, u + 1, v, 1)]
    lab, x, y, d = [], [], [], []
    for owner, xs, ys, direction in pieces:
        keep = owner != 0
        lab.append(owner[keep].astype(np.int64))
        x.append(xs[keep])
        y.append(ys[keep])
        d.append(np.full(int(keep.sum()), direction))
    return tuple(np.concatenate(a).astype(np.int64) for a in (lab, x, y, d))


def _successors(start: np.ndarray, end: np.ndarray, d: np.ndarray) -> np.ndarray:
    """For each edge, the index of the edge of the same object that starts where it ends."""
    order = np.argsort(start, kind="stable")
    ranked = start[order]
    first = np.searchsorted(ranked, end)
    nxt = order[first]
    saddle = np.flatnonzero(np.searchsorted(ranked, end, "right") - first == 2)
    if len(saddle):
        # a corner where two diagonal pixels of one object meet: stay with the incoming edge's own pixel (turn
        # to the object's side), so that parts are 4-connected and rings never cross
        a, b = order[first[saddle]], order[first[saddle] + 1]
        nxt[saddle] = np.where(d[a] == (d[saddle] + 1) % 4, a, b)
    return nxt


def _order_cycles(nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rep, pos)`` of a permutation made of cycles: each element's cycle (named by its smallest index) and
    its place in the cycle counted from there, by pointer doubling (log2 of the longest cycle rounds)."""
    n = len(nxt)
    index = np.arange(n)
    rep, jump = index, nxt.copy()
    while True:  # the minimum over 2^k successors; once a round changes nothing, no later one will
        new = np.minimum(rep, rep[jump])
        jump = jump[jump]
        if np.array_equal(new, rep):
            break
        rep = new
    is_rep = rep == index
    ptr = np.where(is_rep, index, nxt)
    steps = (~is_rep).astype(np.int64)  # steps from each element forward to its cycle's representative
    while True:
        active = ~is_rep[ptr]
        if not active.any():
            break
        steps = steps + np.where(active, steps[ptr], 0)
        ptr = np.where(active, ptr[ptr], ptr)
    length = np.bincount(rep, minlength=n)[rep]
    return rep, (length - steps) % length


def _rings_by_label(lab, x, y, d, rep) -> dict[int, list[list[np.ndarray]]]:
    """Edges in cycle order -> the corners of each ring, outer rings and holes grouped by label."""
    new_ring = np.r_[True, rep[1:] != rep[:-1]]
    starts = np.flatnonzero(new_ring)
    ends = np.r_[starts[1:], len(rep)]
    previous = np.roll(d, 1)
    previous[starts] = d[ends - 1]
    corner = d != previous
    corners = np.column_stack([x[corner], y[corner]]).astype(np.float64)
    bounds = np.searchsorted((np.cumsum(new_ring) - 1)[corner], np.arange(len(starts) + 1))
    shapes: dict[int, list] = {}
    holes: dict[int, list] = {}
    for i, label in enumerate(lab[starts].tolist()):
        for ring in _split_pinches(corners[bounds[i]:bounds[i + 1]]):
            if ring_area(ring) > 0:
                shapes.setdefault(label, []).append([ring])
            else:
                holes.setdefault(label, []).append(ring)
    for label, found in holes.items():
        outers = [part[0] for part in shapes[label]]
        for hole in found:
            shapes[label][_owner(hole, outers)].append(hole)
    return dict(sorted(shapes.items()))


def _split_pinches(ring: np.ndarray) -> list[np.ndarray]:
    """``ring`` cut into simple rings where it passes a vertex twice.

    Where two background pixels meet the object only at a corner (a saddle), the pixel-edge ring touches
    itself there; OGC (shapely, JTS, QuPath) calls such a ring invalid, but a shell with a hole touching it at
    that point valid, and the areas add up the same.
    """
    keys = np.sort(ring[:, 0].astype(np.int64) * (1 << 32) + ring[:, 1].astype(np.int64))
    if not (keys[1:] == keys[:-1]).any():
        return [ring]
    rings, path, seen = [], [], {}
    for point in map(tuple, ring.tolist()):
        if point in seen:  # close the loop since its first visit; the path goes on from that point
            start = seen[point]
            rings.append(np.array(path[start:]))
            for dropped in path[start + 1:]:
                del seen[dropped]
            del path[start + 1:]
        else:
            seen[point] = len(path)
            path.append(point)
    rings.append(np.array(path))
    return [r for r in rings if len(r) >= 4]


def _owner(hole: np.ndarray, outers: list[np.ndarray]) -> int:
    """Index of the outer ring around ``hole`` (the first with the hole's first vertex nudged inside it)."""
    if len(outers) == 1:
        return 0
    # a point just inside the hole's first edge, off every pixel edge, so inside/outside is unambiguous
    edge = hole[1] - hole[0]
    probe = hole[0] + edge / np.abs(edge).sum() * 0.5 + np.array([edge[1], -edge[0]]) / np.abs(edge).sum() * 0.5
    for i, outer in enumerate(outers):
        if points_in_poly(probe[None], outer)[0]:
            return i
    return 0
