"""Networks: the paper's U-Net and its tile geometry."""

from unetkit.networks.geometry import UNetGeometry, network_margin
from unetkit.networks.unet import UNet

__all__ = ["UNet", "UNetGeometry", "network_margin"]
