"""Colour images for a grey-value network: when an RGB(A) file is turned to grey, and how.

Training (:class:`~unetkit.transforms.LoadImage` with ``channels``) and inference
(:mod:`unetkit.predict.layout`) both decide here, so a network trained on RGB files converted to grey sees
the same grey values when it segments them.

- :data:`LUMA`: ITU-R BT.601 weights of R, G, B.
- :func:`needs_grey` ``(meta, channel_axis, in_channels) -> bool``: True for an RGB(A) image (an ``S`` axis of 3
  or 4 samples) given to a one-channel network; False when the channel count already fits; otherwise
  :class:`~unetkit.errors.ImageReadError` (a multi-channel ``C`` image: which channel to use is the user's call).
- :func:`to_grey` ``(array, axis) -> float32 array``: the luma of the first three samples along ``axis``, kept as
  an axis of length 1 (alpha dropped).

Examples:
    >>> from unetkit.io import ImageMeta
    >>> needs_grey(ImageMeta("YXS", shape=(4, 5, 3)), 2, 1), needs_grey(ImageMeta("YX", shape=(4, 5)), None, 1)
    (True, False)
    >>> to_grey(np.full((4, 5, 4), 100, np.uint8), axis=2).shape  # RGBA: alpha dropped
    (4, 5, 1)
"""

from __future__ import annotations

import numpy as np

from unetkit.errors import ImageReadError
from unetkit.io.meta import ImageMeta

__all__ = ["LUMA", "needs_grey", "to_grey"]

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
"""ITU-R BT.601 weights of R, G, B in grey (what PIL's ``convert("L")`` and scikit-image's ``rgb2gray`` for
video use)."""


def needs_grey(meta: ImageMeta, channel_axis: int | None, in_channels: int) -> bool:
    """Whether the image ``meta`` describes (channels along ``channel_axis``, None for a grey image) must be
    turned to grey for a network of ``in_channels`` inputs.

    Raises:
        ImageReadError: the channel count fits neither the network nor the RGB(A) to grey rule.
    """
    n = 1 if channel_axis is None else meta.shape[channel_axis]
    if n == in_channels:
        return False
    if in_channels == 1 and channel_axis is not None and meta.axes[channel_axis] == "S" and n in (3, 4):
        return True
    what = "channel" if channel_axis is None or meta.axes[channel_axis] == "C" else "colour sample"
    raise ImageReadError(
        f"has {n} {what}(s) (axes {meta.axes}) but the bundle's network takes {in_channels}",
        path=meta.source,
        fix=f"save the image with {in_channels} channel(s) first (e.g. the channel to segment)",
    )


def to_grey(array: np.ndarray, axis: int) -> np.ndarray:
    """The BT.601 luma of the R, G, B samples along ``axis`` (a fourth, alpha, is dropped), float32, with
    ``axis`` kept at length 1."""
    rgb = np.moveaxis(np.asarray(array), axis, 0)[:3]
    return np.expand_dims(np.tensordot(LUMA, rgb, axes=(0, 0)).astype(np.float32), axis)
