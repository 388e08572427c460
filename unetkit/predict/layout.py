"""How a file's array becomes network inputs: which axes are spatial, which are channels, which are frames.

An image file comes in its own axis order (:class:`~unetkit.io.ImageMeta` names them); a network wants
``(C, *spatial)``. For a 2D bundle the spatial axes are ``Y`` and ``X`` and every other axis but the channel
one (``T`` of a time-lapse, ``Z`` of a stack or a NIfTI volume) is a frame: the file is segmented frame by
frame. For a 3D bundle the spatial axes are ``X``, ``Y`` and ``Z`` and a ``T`` axis gives frames. Spatial axes
stay in the file's order (no copy); the label image has the file's shape without its channel axis.

Colour: an RGB(A) image (``S`` axis of 3 or 4) given to a one-channel bundle is converted to grey with the
ITU-R BT.601 luma weights (0.299 R + 0.587 G + 0.114 B, alpha dropped), and the run's summary says so;
a multi-channel image (``C`` axis) whose channel count differs from the bundle's is refused: which
channel to use is the user's call (:mod:`unetkit.io.colour`, the rule training's loader follows too).

Examples:
    >>> from unetkit.io import ImageMeta
    >>> lay = plan_layout(ImageMeta("TYX", shape=(5, 33, 37)), spatial_dims=2, in_channels=1)
    >>> lay.frames, lay.output_shape, lay.spatial_axes
    ((5,), (5, 33, 37), 'YX')
    >>> plan_layout(ImageMeta("YXS", shape=(33, 37, 3)), spatial_dims=2, in_channels=1).grey
    True
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from unetkit.errors import ImageReadError
from unetkit.io import ImageMeta
from unetkit.io.colour import needs_grey, to_grey
from unetkit.io.meta import CHANNEL

__all__ = ["Layout", "plan_layout"]


@dataclass(frozen=True)
class Layout:
    """Where the frames, channels and spatial axes of one file's array are.

    Attributes:
        shape: the file's array shape.
        frame_axes: axes iterated over, one network input per index.
        channel_axis: the ``C``/``S`` axis, or None (grey).
        spatial: the spatial axes, in file order.
        spatial_axes: their letters (``"YX"``, ``"XYZ"``).
        grey: convert RGB(A) to grey before the network.
    """

    shape: tuple[int, ...]
    frame_axes: tuple[int, ...]
    channel_axis: int | None
    spatial: tuple[int, ...]
    spatial_axes: str
    grey: bool = False

    @property
    def frames(self) -> tuple[int, ...]:
        """The frame counts along ``frame_axes`` (``()`` for a single image)."""
        return tuple(self.shape[a] for a in self.frame_axes)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The label image's shape: the file's without the channel axis."""
        return tuple(n for a, n in enumerate(self.shape) if a != self.channel_axis)

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """The spatial shape of one network input."""
        return tuple(self.shape[a] for a in self.spatial)

    def frame_indices(self) -> Iterator[tuple[int, ...]]:
        """Every frame's index along ``frame_axes`` (one empty tuple for a single image)."""
        return itertools.product(*(range(n) for n in self.frames))

    def network_input(self, array: np.ndarray, index: tuple[int, ...] = ()) -> np.ndarray:
        """The frame ``index`` as ``(C, *spatial)``: a view of ``array`` (a memory map stays one) unless
        it is converted to grey (float32 copy)."""
        image = array.transpose(self._input_order())[index]
        if self.channel_axis is None:
            return image[None]
        if self.grey:
            return to_grey(image, axis=0)
        return image

    def output_view(self, labels: np.ndarray, index: tuple[int, ...] = (), *, lead: int = 0) -> np.ndarray:
        """The frame ``index`` of a label image of :attr:`output_shape` as ``(*spatial)``, a writable view.

        ``lead`` leading axes (the classes of a ``(K, *output_shape)`` probability array) are kept in front.
        """
        kept = [a for a in range(len(self.shape)) if a != self.channel_axis]
        order = [*range(lead), *(lead + kept.index(a) for a in (*self.frame_axes, *self.spatial))]
        return labels.transpose(order)[(slice(None),) * lead + tuple(index)]

    def _input_order(self) -> tuple[int, ...]:
        channel = () if self.channel_axis is None else (self.channel_axis,)
        return (*self.frame_axes, *channel, *self.spatial)


def plan_layout(meta: ImageMeta, *, spatial_dims: int, in_channels: int) -> Layout:
    """The :class:`Layout` of an array described by ``meta`` (axes and shape) for a bundle's network.

    Raises:
        ImageReadError: an image without the axes the bundle needs (a 2D image for a 3D bundle), or with
            a channel count the bundle does not take.
    """
    axes, shape = meta.axes, tuple(meta.shape)
    channels = [i for i, a in enumerate(axes) if a in CHANNEL]
    if len(channels) > 1:
        raise ImageReadError(f"has both a channel and a sample axis (axes {axes})", path=meta.source,
                             fix="merge or split the channels first")
    channel = channels[0] if channels else None
    wanted = "YX" if spatial_dims == 2 else "XYZ"
    spatial = tuple(i for i, a in enumerate(axes) if a in wanted)
    if len(spatial) != spatial_dims:
        raise ImageReadError(
            f"is not a {spatial_dims}D image (axes {axes}, shape {shape}) but the bundle segments {spatial_dims}D "
            "images", path=meta.source, fix="use a bundle made for this kind of image",
        )
    frames = tuple(i for i in range(len(axes)) if i != channel and i not in spatial)
    grey = needs_grey(meta, channel, in_channels)
    return Layout(shape, frames, channel, spatial, "".join(axes[i] for i in spatial), grey)
