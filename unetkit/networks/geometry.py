"""Tile geometry of the U-Net: which input sizes are valid and what output size they give.

A valid-convolution U-Net of depth ``D`` (``D`` poolings) loses 4 px per level on the way down and up and
4 px at the bottom, each at that level's scale, so in input pixels it loses ``12 * 2**D - 8`` in all: a
margin of ``6 * 2**D - 4`` per side (92 px for the paper's ``D = 4``: 572 -> 388). Every 2x2 pooling must
see an even size, so valid inputs are ``2**D * b + 4 * (2**D - 1)`` with a bottom size ``b >= 8`` (the
smallest bottom that keeps every up-path size positive): 188, 204, ..., 572, ..., 700 for ``D = 4``, and
outputs are ``4 + 2**D * k``. With ``padding="same"`` every size that ``2**D`` divides is valid and the
output is as large as the input.

The inferer tiles with these rules; nothing here crops or pads silently, invalid sizes raise
``ValueError`` naming the size and its valid neighbours.

Examples:
    >>> g = UNetGeometry(depth=4)
    >>> g.margin, g.output_size(572), g.input_size(388), g.next_valid_size(570)
    (92, 388, 572, 572)
    >>> g.output_shape((700, 572))
    (516, 388)
    >>> UNetGeometry(depth=3).output_shape((132, 132, 116))
    (44, 44, 28)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["UNetGeometry", "MIN_BOTTOM", "network_margin"]

# The smallest bottom size (after the last pooling) that keeps all up-path sizes >= 4: 8 -> 4 -> 4 -> ...
MIN_BOTTOM = 8


@dataclass(frozen=True)
class UNetGeometry:
    """Size rules of a U-Net with ``depth`` poolings.

    Args:
        depth: number of 2x2 poolings (``len(features) - 1``; 4 in the paper).
        padding: ``"valid"`` (the paper: unpadded 3x3 convolutions) or ``"same"``.
    """

    depth: int
    padding: str = "valid"

    def __post_init__(self):
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if self.padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {self.padding!r}")

    @property
    def quantum(self) -> int:
        """Step between valid sizes, ``2**depth``; tile strides must be multiples of it."""
        return 2**self.depth

    @property
    def margin(self) -> int:
        """Pixels lost per side by a valid network (92 for depth 4); for "same" the halo to tile with."""
        return 6 * self.quantum - 4

    @property
    def min_input_size(self) -> int:
        """Smallest valid input size (188 for a depth-4 valid network, 16 for "same")."""
        if self.padding == "same":
            return self.quantum
        return self.quantum * MIN_BOTTOM + 4 * (self.quantum - 1)

    def is_valid_size(self, n: int) -> bool:
        """Whether an input of size ``n`` along one axis goes through without an odd-sized pooling."""
        if n < self.min_input_size:
            return False
        return (n - self.min_input_size) % self.quantum == 0

    def next_valid_size(self, n: int) -> int:
        """The smallest valid input size >= ``n``."""
        k = max(0, -(-(n - self.min_input_size) // self.quantum))
        return self.min_input_size + k * self.quantum

    def previous_valid_size(self, n: int) -> int:
        """The largest valid input size <= ``n``; ``ValueError`` if ``n`` is below the smallest."""
        if n < self.min_input_size:
            raise ValueError(f"no valid input size <= {n}: the smallest is {self.min_input_size}")
        return self.min_input_size + (n - self.min_input_size) // self.quantum * self.quantum

    def check_size(self, n: int, axis: int | None = None) -> None:
        """Raise ``ValueError`` if ``n`` is not a valid input size, naming the valid sizes around it."""
        if self.is_valid_size(n):
            return
        where = "" if axis is None else f" along spatial axis {axis}"
        below = f"{self.previous_valid_size(n)} or " if n >= self.min_input_size else ""
        rule = "a multiple of" if self.padding == "same" else f"{self.min_input_size} plus a multiple of"
        raise ValueError(
            f"input size {n}{where} is not valid for a {self.padding}-padding U-Net of depth {self.depth}: "
            f"sizes must be {rule} {self.quantum}; use {below}{self.next_valid_size(n)} "
            "(or an overlap-tile inferer, which pads for you)"
        )

    def output_size(self, n: int) -> int:
        """Output size for a valid input size ``n`` (572 -> 388 at depth 4, valid)."""
        self.check_size(n)
        return n if self.padding == "same" else n - 2 * self.margin

    def input_size(self, out: int) -> int:
        """The input size that gives exactly ``out`` outputs (388 -> 572); ``ValueError`` if none does."""
        n = out if self.padding == "same" else out + 2 * self.margin
        if not self.is_valid_size(n):
            smallest = self.quantum if self.padding == "same" else 4
            raise ValueError(
                f"no input gives an output of {out}: outputs of this U-Net are {smallest} plus a multiple "
                f"of {self.quantum} (e.g. {self.output_size(self.next_valid_size(n))})"
            )
        return n

    def output_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Output spatial shape for an input spatial shape; each axis must be valid."""
        for axis, n in enumerate(shape):
            self.check_size(int(n), axis)
        return tuple(self.output_size(int(n)) for n in shape)

    def input_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Input spatial shape that gives exactly the output spatial shape ``shape``."""
        return tuple(self.input_size(int(n)) for n in shape)


def network_margin(network) -> int:
    """Pixels a valid-convolution network loses per side (0 for same padding): what a training crop is
    mirror-padded by, derived from the network so that a recipe never restates its depth.

    Examples:
        >>> from unetkit.networks import UNet
        >>> network_margin(UNet(features=(4, 8, 16, 32, 64))), network_margin(UNet(features=(4, 8, 16)))
        (92, 20)
    """
    geometry = getattr(getattr(network, "module", network), "geometry", None)
    return 0 if geometry is None else int(geometry.margin)
