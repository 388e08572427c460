"""Networks: the paper's U-Net and its tile geometry."""

from unetkit.networks.geometry import UNetGeometry, network_margin
from unetkit.networks.ensemble import UNetEnsemble
from unetkit.networks.unet import UNet

__all__ = ["UNet", "UNetEnsemble", "UNetGeometry", "network_margin"]
