"""unetkit: the 2015 U-Net (Ronneberger, Fischer, Brox) for microscopy and medical volumes, on MONAI."""

from unetkit.errors import UnetkitError

__version__ = "0.1.0"

__all__ = ["UnetkitError", "__version__"]
