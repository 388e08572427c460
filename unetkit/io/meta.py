"""What an image file says about its array: axes, spacing, world affine, where it came from.

:class:`ImageMeta` travels beside every array that :func:`~unetkit.io.read_image` returns and goes back
into :func:`~unetkit.io.write_image`, so an output keeps its input's calibration. It describes the array
next to it: ``len(meta.axes) == array.ndim``, ``meta.spacing[i]`` is the step along ``array`` axis ``i``.
The methods :meth:`ImageMeta.select`, :meth:`ImageMeta.move_axis` and :meth:`ImageMeta.insert_axis` give the
meta of ``array[i]``, ``np.moveaxis(array, ...)`` and ``array[None]`` so that it stays true after a transform.

Axis letters (tifffile's, upper case, unique): ``X``, ``Y``, ``Z`` spatial, ``T`` time, ``C`` channel,
``S`` samples of an RGB(A) pixel. The affine maps the indices of the spatial axes, in the order they appear in
``axes``, to world coordinates in the file's own convention (NIfTI: RAS+, ITK: LPS); TIFF has none.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

__all__ = ["ImageMeta", "SPATIAL", "CHANNEL"]

SPATIAL = "XYZ"
CHANNEL = "CS"


@dataclass(frozen=True, eq=False)
class ImageMeta:
    """Metadata of one image array, as read from (or to be written to) a file.

    Args:
        axes: one letter per array axis, e.g. ``"YX"``, ``"ZYX"``, ``"TYX"``, ``"YXS"`` (RGB), ``"TZCYX"``;
            NIfTI arrays are ``"XYZ"`` (nibabel's order), ITK arrays ``"ZYX"`` (numpy view of ITK's x, y, z).
        shape: the array's shape, if known.
        dtype: the array's dtype name (``"uint16"``), if known.
        spacing: physical step per array axis, same order as the array (1.0 on axes without one,
            e.g. ``C``/``S``); None when the file has no calibration.
        affine: 4x4 array, indices of the spatial axes (in ``axes`` order) to world; None for TIFF.
        source: absolute path the image was read from; :func:`~unetkit.io.write_image` never overwrites it.
        format: ``"tiff"``, ``"nifti"`` or ``"itk"``; None for a meta built by hand.
        extra: format-specific things worth keeping (TIFF ``unit``/``resolution``/``imagej``, ``ome`` (True for an
            OME-TIFF, whose outputs are then written as OME-TIFF too), NIfTI
            ``qform_code``/``sform_code``/``xyzt_units``, ITK ``origin``/``direction``). Treat it as read-only:
            copies made with :meth:`replace` share it.

    Examples:
        >>> m = ImageMeta("ZYX", shape=(5, 64, 65), dtype="uint16", spacing=(2.0, 0.5, 0.5))
        >>> m.replace(dtype="uint8").dtype, m.spatial_axes
        ('uint8', 'ZYX')
        >>> s = m.select(0, 3)  # the meta of array[3]
        >>> s.axes, s.shape, s.spacing
        ('YX', (64, 65), (0.5, 0.5))
        >>> c = s.insert_axis(0, "C")  # the meta of array[3][None]
        >>> c.axes, c.shape, c.spacing
        ('CYX', (1, 64, 65), (1.0, 0.5, 0.5))
        >>> ImageMeta("YX", spacing=(1.0,))
        Traceback (most recent call last):
        ...
        ValueError: spacing has 1 values for axes 'YX' (one per axis needed)
    """

    axes: str
    shape: tuple[int, ...] | None = None
    dtype: str | None = None
    spacing: tuple[float, ...] | None = None
    affine: np.ndarray | None = None
    source: str | None = None
    format: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        axes = str(self.axes)
        if not axes.isalpha() or not axes.isupper() or len(set(axes)) != len(axes):
            raise ValueError(f"axes must be unique upper-case letters such as 'ZYX', got {self.axes!r}")
        set_ = object.__setattr__  # frozen: normalise types once, here
        set_(self, "axes", axes)
        if self.shape is not None:
            set_(self, "shape", tuple(int(n) for n in self.shape))
            if len(self.shape) != len(axes):
                raise ValueError(f"shape {self.shape} has {len(self.shape)} axes but axes is {axes!r}")
        if self.dtype is not None:
            set_(self, "dtype", np.dtype(self.dtype).name)
        if self.spacing is not None:
            spacing = tuple(float(s) for s in self.spacing)
            if len(spacing) != len(axes):
                raise ValueError(f"spacing has {len(spacing)} values for axes {axes!r} (one per axis needed)")
            if not all(math.isfinite(s) and s > 0 for s in spacing):
                raise ValueError(f"spacing must be finite and > 0, got {spacing}")
            set_(self, "spacing", spacing)
        if self.affine is not None:
            affine = np.array(self.affine, dtype=np.float64)
            if affine.shape != (4, 4):
                raise ValueError(f"affine must be 4x4, got shape {affine.shape}")
            affine.flags.writeable = False  # shared between copies, so nobody edits it in place
            set_(self, "affine", affine)

    def __eq__(self, other) -> bool:
        if not isinstance(other, ImageMeta):
            return NotImplemented
        return all(_same(getattr(self, f.name), getattr(other, f.name)) for f in dataclasses.fields(self))

    __hash__ = None

    @property
    def spatial_axes(self) -> str:
        """The spatial letters in array order (``"ZYX"`` for ``"TZCYX"``); the affine's columns follow them."""
        return "".join(a for a in self.axes if a in SPATIAL)

    def replace(self, **changes) -> ImageMeta:
        """A copy with some fields changed (``meta.replace(dtype="uint8")``); ``extra`` is shared."""
        return dataclasses.replace(self, **changes)

    def select(self, axis: int, index: int = 0) -> ImageMeta:
        """The meta of ``np.take(array, index, axis)``: the axis is gone, the affine's origin moves to ``index``.

        Examples:
            >>> m = ImageMeta("XYZ", spacing=(1.0, 1.0, 3.0), affine=np.diag([1.0, 1.0, 3.0, 1.0]))
            >>> m.select(2, 4).affine[:3, 3].tolist()  # slice 4 of a z step of 3 sits at z = 12
            [0.0, 0.0, 12.0]
        """
        axis = _axis_index(axis, len(self.axes))
        letter = self.axes[axis]
        affine = self.affine
        if affine is not None and letter in SPATIAL:
            old = self.spatial_axes
            k = old.index(letter)
            affine = affine.copy()
            affine[:3, 3] += index * affine[:3, k]
            # The dropped axis' column becomes the unused normal column after the kept ones (NIfTI's layout
            # for 2D images), so the matrix stays 4x4 and invertible.
            order = [i for i in range(len(old)) if i != k] + [k] + list(range(len(old), 3))
            affine[:, :3] = affine[:, order]
        return self.replace(
            axes=_drop(self.axes, axis),
            shape=None if self.shape is None else _drop(self.shape, axis),
            spacing=None if self.spacing is None else _drop(self.spacing, axis),
            affine=affine,
        )

    def move_axis(self, source: int, destination: int) -> ImageMeta:
        """The meta of ``np.moveaxis(array, source, destination)``."""
        n = len(self.axes)
        order = list(range(n))
        order.insert(_axis_index(destination, n), order.pop(_axis_index(source, n)))
        return self._permuted(order)

    def insert_axis(self, position: int, letter: str, size: int = 1) -> ImageMeta:
        """The meta of ``np.expand_dims(array, position)`` (``size`` 1) with the new axis called ``letter``.

        Examples:
            >>> ImageMeta("YX", shape=(3, 4)).insert_axis(0, "C").shape
            (1, 3, 4)
        """
        pos = _axis_index(position, len(self.axes) + 1)
        return self.replace(
            axes=self.axes[:pos] + letter + self.axes[pos:],
            shape=None if self.shape is None else (*self.shape[:pos], size, *self.shape[pos:]),
            spacing=None if self.spacing is None else (*self.spacing[:pos], 1.0, *self.spacing[pos:]),
        )

    def _permuted(self, order: Sequence[int]) -> ImageMeta:
        axes = "".join(self.axes[i] for i in order)
        affine = self.affine
        if affine is not None:
            old, new = self.spatial_axes, "".join(a for a in axes if a in SPATIAL)
            affine = affine.copy()
            affine[:, : len(new)] = affine[:, [old.index(a) for a in new]]
        return self.replace(
            axes=axes,
            shape=None if self.shape is None else tuple(self.shape[i] for i in order),
            spacing=None if self.spacing is None else tuple(self.spacing[i] for i in order),
            affine=affine,
        )


def _axis_index(axis: int, n: int) -> int:
    i = axis + n if axis < 0 else axis
    if not 0 <= i < n:
        raise ValueError(f"axis {axis} is out of range for {n} axes")
    return i


def _drop(seq, i: int):
    return seq[:i] + seq[i + 1 :]


def _same(a, b) -> bool:
    """Equality that also works for arrays nested in ``extra``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return a is not None and b is not None and np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)
