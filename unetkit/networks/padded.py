"""The U-Net with the overlap-tile strategy's mirroring built in: output as large as the input.

A valid-convolution U-Net loses ``margin`` pixels per side, and its 2x2 poolings make it shift-equivariant
only by multiples of ``2**depth``, so its output depends on where the pooling grid starts. unetkit's
overlap-tile inferer mirrors the image by ``margin`` (the paper's Fig. 2) and starts the grid there. A
model run by other tools (a bioimage.io package) must do the same to give the same numbers, so
:class:`MirrorPaddedUNet` mirrors inside ``forward``: its output for an image equals what
``unetkit infer`` computes for that image in one pass. Its weights are :class:`~unetkit.networks.UNet`'s
(same parameter names), so one state dict loads into either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unetkit.networks.unet import UNet

__all__ = ["MirrorPaddedUNet"]


class MirrorPaddedUNet(UNet):
    """:class:`~unetkit.networks.UNet` (``padding="valid"``) that mirrors its input by ``margin`` first.

    Input ``(B, C, H, W[, D])`` with each size ``n`` such that ``n + 2 * margin`` is a valid U-Net input and
    ``n > margin`` (reflection needs that much image); output logits ``(B, K, H, W[, D])``.

    Examples:
        >>> net = MirrorPaddedUNet(spatial_dims=2, features=(4, 8, 16)).eval()
        >>> net.margin, net.min_size, net(torch.zeros(1, 1, 36, 44)).shape
        (20, 24, torch.Size([1, 2, 36, 44]))
        >>> plain = UNet(spatial_dims=2, features=(4, 8, 16)).eval()
        >>> _ = plain.load_state_dict(net.state_dict())
        >>> x = torch.rand(1, 1, 36, 44)
        >>> bool((net(x) == plain(F.pad(x, [20] * 4, mode="reflect"))).all())
        True
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.geometry.padding != "valid":
            raise ValueError("MirrorPaddedUNet mirrors a valid-convolution U-Net; padding must be 'valid'")

    @property
    def min_size(self) -> int:
        """The smallest input size: above ``margin``, and valid once mirrored (sizes step by ``2**depth``)."""
        g = self.geometry
        n = g.min_input_size - 2 * g.margin
        while n <= g.margin:
            n += g.quantum
        return n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.geometry.margin
        return super().forward(F.pad(x, [m, m] * self.spatial_dims, mode="reflect"))
