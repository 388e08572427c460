"""Test-time augmentation: average the predictions over the flips and 90-degree rotations of each tile.

The paper's ISBI 2012 EM entry averaged over 8 rotated and flipped versions of the input (Ronneberger et
al. 2015, Sec. 4). In 2D these are the 8 symmetries of the square (4 rotations, each with and without a
flip); in 3D the 8 combinations of flips of the three axes (rotations of anisotropic volumes would mix
axes of different spacing).

What is averaged: softmax probabilities (sigmoid for one output channel), the quantity the paper's
energy function is built on; the average is returned as log-probabilities (``logit`` for one channel),
so that it is still a valid "logits" tensor: softmax and argmax downstream work unchanged.

Each transform is applied to the whole batch of input tiles and undone on the output. A 90-degree
rotation of a non-square tile swaps its axes; both sizes are valid tile sizes, and because valid sizes
keep every pooling input even, the rotated tile still pools the same pixel pairs. Averaging per tile
therefore equals rotating the whole mirror-extended image, inferring and rotating back, and it
streams like plain inference.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

__all__ = ["Symmetry", "symmetries", "tta_forward"]


class Symmetry(NamedTuple):
    """A flip of some spatial axes followed by ``turns`` quarter turns in the first two spatial axes."""

    flips: tuple[int, ...]
    turns: int

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Transform a batch ``(B, C, *spatial)``."""
        if self.flips:
            x = torch.flip(x, self.flips)
        return torch.rot90(x, self.turns, dims=(2, 3)) if self.turns else x

    def apply_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape ``(B, C, *spatial)`` takes under :meth:`apply`: odd turns swap the first two spatial axes."""
        if self.turns % 2 == 0:
            return tuple(shape)
        return (*shape[:2], shape[3], shape[2], *shape[4:])

    def undo(self, y: torch.Tensor) -> torch.Tensor:
        """Invert :meth:`apply` on a network output ``(B, K, *spatial)``."""
        if self.turns:
            y = torch.rot90(y, -self.turns, dims=(2, 3))
        return torch.flip(y, self.flips) if self.flips else y


def symmetries(spatial_dims: int) -> list[Symmetry]:
    """The 8 transforms averaged over: the square's symmetries in 2D, the 8 axis flips in 3D.

    Examples:
        >>> len(symmetries(2)), len(symmetries(3)), symmetries(2)[0]
        (8, 8, Symmetry(flips=(), turns=0))
    """
    if spatial_dims == 2:
        return [Symmetry(flips, turns) for flips in ((), (3,)) for turns in range(4)]
    if spatial_dims == 3:
        axes = (2, 3, 4)
        return [Symmetry(tuple(a for i, a in enumerate(axes) if mask >> i & 1), 0) for mask in range(8)]
    raise ValueError(f"test-time augmentation needs 2 or 3 spatial dimensions, got {spatial_dims}")


def tta_forward(forward: Callable[[torch.Tensor, Symmetry], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Average the network's probabilities over :func:`symmetries` of ``x``; return them as log-probabilities.

    Args:
        forward: the network call ``forward(tiles, symmetry)``, ``(B, C, *spatial) -> (B, K, *spatial')``
            logits; ``symmetry`` says which transform the tiles went through (for callers that need to
            know, e.g. to transform other shapes alike).
        x: a batch of input tiles ``(B, C, H, W[, D])``.

    Returns:
        Float32 ``(B, K, *spatial')``: ``log(mean softmax)``, or ``logit(mean sigmoid)`` when ``K == 1``.
    """
    total = None
    for sym in symmetries(x.ndim - 2):
        logits = sym.undo(forward(sym.apply(x), sym)).float()
        probs = torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
        total = probs if total is None else total.add_(probs)
    mean = total.div_(len(symmetries(x.ndim - 2)))
    # Probabilities of 0 or 1 in float32 would give infinite logits.
    if mean.shape[1] == 1:
        return torch.logit(mean, eps=1e-7)
    return torch.log(mean.clamp_min_(torch.finfo(mean.dtype).tiny))
