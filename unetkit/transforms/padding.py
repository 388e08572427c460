"""The paper's mirror extension of a training image, for borders of any width.

A training tile of the valid-convolution U-Net needs the network's margin (92 px for the paper's depth 4)
of context beyond the image, which the paper fills by mirroring (Fig. 2), as the overlap-tile inferer does.
MONAI's ``BorderPadd(mode="reflect")`` pads with ``torch.nn.functional.pad``, which refuses a reflection
wider than the image (a 64 px wide training image and a 92 px margin: "Padding size should be less than
the corresponding input dimension"), and MONAI falls back to ``numpy.pad`` for other errors only. Small
images are normal in microscopy (a crop around a few cells, half of a small frame), so :class:`MirrorPad`
reads the padded image as one tile of the mirror-extended image with the inferer's own
:func:`~unetkit.inferers.tiling.gather_tile`: ``numpy.pad``'s reflection, repeated where the border is wider
than the image. Where the border fits, the result is
``BorderPadd``'s, value for value.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import ensure_tuple_rep

__all__ = ["MirrorPad", "MirrorPadd", "PAD_MODES"]

PAD_MODES = ("reflect", "constant")


class MirrorPad(Transform):
    """Pad each spatial side of a channel-first array by ``spatial_border`` pixels.

    Args:
        spatial_border: pixels per side, one number or one per spatial axis.
        mode: ``"reflect"`` (``numpy.pad``'s reflection, repeated for borders wider than the image; for
            images) or ``"constant"`` (zeros; for labels and weights).

    Examples:
        >>> x = torch.arange(3.0).reshape(1, 1, 3)
        >>> MirrorPad((0, 5))(x)                        # wider than the 3 px axis: the reflection repeats
        tensor([[[1., 0., 1., 2., 1., 0., 1., 2., 1., 0., 1., 2., 1.]]])
        >>> MirrorPad(1, mode="constant")(x).shape
        torch.Size([1, 3, 5])
    """

    def __init__(self, spatial_border: int | Sequence[int], mode: str = "reflect"):
        if mode not in PAD_MODES:
            raise ValueError(f"mode must be one of {PAD_MODES}, got {mode!r}")
        self.spatial_border, self.mode = spatial_border, mode

    def __call__(self, img):
        x = torch.as_tensor(img)
        spatial = x.ndim - 1
        border = ensure_tuple_rep(self.spatial_border, spatial)
        if any(int(b) < 0 for b in border):
            raise ValueError(f"spatial_border must be >= 0, got {self.spatial_border}")
        if self.mode == "constant":
            flat = [int(b) for b in reversed(border) for _ in range(2)]  # torch pads the last axis first
            return torch.nn.functional.pad(x, flat, mode="constant", value=0)
        from unetkit.inferers.tiling import gather_tile

        origin = [-int(b) for b in border]
        shape = [n + 2 * int(b) for n, b in zip(x.shape[1:], border)]
        return torch.as_tensor(gather_tile(np.asarray(x.cpu()), origin, shape), device=x.device)


class MirrorPadd(MapTransform):
    """Dictionary twin of :class:`MirrorPad`: ``mode`` one for all ``keys`` or one per key (MONAI's
    ``BorderPadd`` arguments, so a recipe swaps one for the other).

    Examples:
        >>> d = {"image": torch.ones(1, 4, 4), "label": torch.ones(1, 4, 4)}
        >>> out = MirrorPadd(["image", "label"], spatial_border=6, mode=["reflect", "constant"])(d)
        >>> tuple(out["image"].shape), float(out["image"].min()), float(out["label"][0, 0, 0])
        ((1, 16, 16), 1.0, 0.0)
    """

    def __init__(self, keys: KeysCollection, spatial_border: int | Sequence[int],
                 mode: str | Sequence[str] = "reflect", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        modes = ensure_tuple_rep(mode, len(self.keys))
        self.pads = {key: MirrorPad(spatial_border, m) for key, m in zip(self.keys, modes)}

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.pads[key](d[key])
        return d
