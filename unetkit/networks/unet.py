"""The U-Net of Ronneberger, Fischer and Brox (MICCAI 2015, arXiv:1505.04597), 2D and 3D.

Built like MONAI's ``BasicUNet`` from small named blocks, but as the paper draws it: unpadded 3x3
convolutions (so the output is smaller than the input), crop-and-concat skips, no normalisation, He
initialisation and dropout at the end of the contracting path. With ``spatial_dims=3`` it is the 3D U-Net
shape rule of Cicek et al. (MICCAI 2016) with the same blocks.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from unetkit.networks.geometry import UNetGeometry

__all__ = ["UNet", "TwoConv", "Down", "UpCat"]

PAPER_FEATURES = (64, 128, 256, 512, 1024)


def _conv(spatial_dims: int):
    return (nn.Conv2d, nn.Conv3d)[spatial_dims - 2]


def _norm(norm, spatial_dims: int, channels: int) -> nn.Module:
    if norm is None:
        return nn.Identity()
    from monai.networks.layers.utils import get_norm_layer

    return get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=channels)


class TwoConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (optional normalisation and) ReLU.

    With ``padding="valid"`` each convolution shrinks every spatial axis by 2 px.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *, padding: str, norm=None):
        pad = 0 if padding == "valid" else 1
        conv = _conv(spatial_dims)
        super().__init__(
            conv(in_channels, out_channels, 3, padding=pad),
            _norm(norm, spatial_dims, out_channels),
            nn.ReLU(inplace=True),
            conv(out_channels, out_channels, 3, padding=pad),
            _norm(norm, spatial_dims, out_channels),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pooling with stride 2, then :class:`TwoConv`."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *, padding: str, norm=None):
        pool = (nn.MaxPool2d, nn.MaxPool3d)[spatial_dims - 2]
        super().__init__(pool(2, 2), TwoConv(spatial_dims, in_channels, out_channels, padding=padding, norm=norm))


def center_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop the trailing spatial axes of ``x`` to ``shape`` about the centre (the paper's skip cropping)."""
    slices = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], shape):
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]


class UpCat(nn.Module):
    """2x2 up-convolution halving the channels, crop-and-concat of the skip, then :class:`TwoConv`."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, *, padding: str, norm=None):
        super().__init__()
        up = (nn.ConvTranspose2d, nn.ConvTranspose3d)[spatial_dims - 2]
        self.up = up(in_channels, out_channels, 2, stride=2)
        self.convs = TwoConv(spatial_dims, 2 * out_channels, out_channels, padding=padding, norm=norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        return self.convs(torch.cat([center_crop(skip, x.shape[2:]), x], dim=1))


class UNet(nn.Module):
    """The 2015 U-Net, with unpadded ("valid") or padded ("same") 3x3 convolutions, in 2D or 3D.

    Input ``(B, in_channels, H, W[, D])``; output logits ``(B, out_channels, H', W'[, D'])`` (no softmax).
    With the default ``padding="valid"`` the output is smaller than the input by the margin on each side,
    ``6 * 2**depth - 4`` px (92 for the paper's depth 4: 572 -> 388, 700 -> 516), and each input size
    must be valid: every 2x2 pooling must see an even size (188 + 16k at depth 4). An invalid size raises
    ``ValueError`` naming the nearest valid sizes; nothing is cropped or padded silently. Use
    :attr:`geometry` (or :meth:`output_shape`, :meth:`input_shape`, :meth:`valid_input_size`) to choose
    sizes, and :class:`unetkit.inferers.OverlapTileInferer` to segment images of any size.

    Defaults are the paper's: features 64-128-256-512-1024 (depth 4), ReLU, no normalisation, He-normal
    weights (std ``sqrt(2 / fan_in)``), zero biases, dropout 0.5 at the end of the contracting path
    (after the bottom block; inactive in ``eval()`` mode). 1 input channel and 2 classes give 23
    convolution layers and 31,030,658 parameters.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (1 for grey-value microscopy or CT).
        out_channels: classes (logit channels).
        features: channels per level, top to bottom; ``len(features) - 1`` poolings. Any depth >= 1.
        padding: ``"valid"`` (the paper) or ``"same"`` (output as large as the input; sizes must be
            multiples of ``2**depth``).
        dropout: dropout probability at the end of the contracting path; 0 turns it off.
        norm: optional normalisation after each 3x3 convolution, any name MONAI's ``get_norm_layer``
            knows (``"batch"``, ``"instance"``, ``("group", {"num_groups": 8})``); ``None`` as in the paper.

    Examples:
        >>> net = UNet(spatial_dims=2, features=(4, 8, 16, 32, 64)).eval()
        >>> net(torch.zeros(1, 1, 572, 572)).shape
        torch.Size([1, 2, 388, 388])
        >>> net.valid_input_size(570), net.output_shape((700, 572))
        (572, (516, 388))
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = PAPER_FEATURES,
        *,
        padding: str = "valid",
        dropout: float = 0.5,
        norm=None,
    ):
        super().__init__()
        features = tuple(int(f) for f in features)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(features) < 2 or min(features) < 1:
            raise ValueError(f"features needs at least two positive channel counts (one pooling), got {features}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.geometry = UNetGeometry(depth=len(features) - 1, padding=padding)

        self.inc = TwoConv(spatial_dims, in_channels, features[0], padding=padding, norm=norm)
        self.downs = nn.ModuleList(
            Down(spatial_dims, a, b, padding=padding, norm=norm) for a, b in zip(features[:-1], features[1:])
        )
        # element-wise, as Caffe's Dropout layer in the authors' model (not whole feature maps)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.ups = nn.ModuleList(
            UpCat(spatial_dims, b, a, padding=padding, norm=norm)
            for a, b in zip(features[-2::-1], features[:0:-1])
        )
        self.head = _conv(spatial_dims)(features[0], out_channels, 1)
        self.reset_parameters()

    @property
    def depth(self) -> int:
        return self.geometry.depth

    @property
    def margin(self) -> int:
        return self.geometry.margin

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Output spatial shape for an input spatial shape (572 -> 388)."""
        return self.geometry.output_shape(input_shape)

    def input_shape(self, output_shape: Sequence[int]) -> tuple[int, ...]:
        """Input spatial shape that gives exactly ``output_shape`` (388 -> 572)."""
        return self.geometry.input_shape(output_shape)

    def valid_input_size(self, n: int) -> int:
        """Smallest valid input size >= ``n`` (570 -> 572)."""
        return self.geometry.next_valid_size(n)

    def reset_parameters(self) -> None:
        """He-normal weights, std ``sqrt(2 / N)`` with N the inputs of one unit (the paper's init), zero biases.

        For the 2x2 stride-2 up-convolution every output unit sees one kernel tap per input channel, so
        N is ``in_channels``; PyTorch's own fan-in rule would count ``out_channels * 2**d`` there.
        """
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                fan_in = m.in_channels * math.prod(m.kernel_size)
            elif isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
                fan_in = m.in_channels * math.prod(m.kernel_size) // math.prod(m.stride)
            else:
                continue
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_in))
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.spatial_dims + 2:
            raise ValueError(
                f"expected input (B, C, {'H, W' if self.spatial_dims == 2 else 'H, W, D'}), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channel(s), got {x.shape[1]}")
        for axis, n in enumerate(x.shape[2:]):
            self.geometry.check_size(int(n), axis)
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        u = self.dropout(skips.pop())
        for up in self.ups:
            u = up(u, skips.pop())
        return self.head(u)
