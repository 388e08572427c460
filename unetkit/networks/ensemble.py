"""Several U-Nets of one architecture, as one network: the folds of ``unetkit train --folds K``.

The ensemble averages its members' class probabilities (nnU-Net's fold ensemble: softmax, then the mean)
and returns their logarithm, so that whatever follows the network sees logits as usual:
``softmax(log(mean p)) == mean p`` because the mean of probabilities already sums to one, and the argmax is
the argmax of the mean probability. Every consumer of a network (the overlap-tile inferer, the decoders,
MONAI's runner, the precision guard) runs an ensemble unchanged.

Members share one :class:`~unetkit.networks.UNetGeometry`, so tiles, margins and valid sizes are those of
one member. Averaging probabilities fits heads whose channels are classes (the two- and three-class
recipes); a regression head (distance maps) would need the mean of raw outputs instead, and is refused
where the folds are assembled.
"""

from __future__ import annotations

import torch
from torch import nn

from unetkit.networks.unet import UNet

__all__ = ["UNetEnsemble"]


class UNetEnsemble(nn.Module):
    """``members`` :class:`~unetkit.networks.UNet` s with the same settings; the log of their mean softmax.

    Takes :class:`~unetkit.networks.UNet`'s keyword arguments (``unet_args``), so a bundle's ``network_def``
    becomes an ensemble by its ``_target_`` and one ``members`` count. Weights are
    ``members.<i>.<the UNet's names>``.

    Examples:
        >>> ens = UNetEnsemble(members=2, spatial_dims=2, features=(4, 8, 16)).eval()
        >>> x = torch.rand(1, 1, 60, 60)
        >>> mean = torch.stack([m(x).softmax(1) for m in ens.members]).mean(0)
        >>> bool(torch.allclose(ens(x).softmax(1), mean, atol=1e-6)), ens(x).shape, ens.geometry.margin
        (True, torch.Size([1, 2, 20, 20]), 20)
    """

    def __init__(self, members: int = 5, **unet_args):
        super().__init__()
        if int(members) < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        self.members = nn.ModuleList(UNet(**unet_args) for _ in range(int(members)))
        first = self.members[0]
        self.spatial_dims, self.in_channels, self.out_channels = first.spatial_dims, first.in_channels, first.out_channels
        self.features, self.geometry = first.features, first.geometry

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 for the mean and the log whatever the autocast dtype: bfloat16 probabilities near 0 lose
        # the digits that the log of a small mean needs
        probs = sum(m(x).float().softmax(1) for m in self.members) / len(self.members)
        return torch.log(probs.clamp_min(torch.finfo(torch.float32).tiny))
