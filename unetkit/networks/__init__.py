"""Networks: the paper's U-Net and its tile geometry."""

from unetkit.networks.geometry import UNetGeometry
from unetkit.networks.unet import UNet

__all__ = ["UNet", "UNetGeometry"]
