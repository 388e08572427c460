"""Synthetic instance labels for the label and weight-map tests."""

import numpy as np


def touching_cells(shape, n, radius, seed):
    """Discs (balls) of ``radius`` around random centres; where two overlap the nearer centre wins."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (n, len(shape))) * np.array(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    dist = np.sqrt(((grid[..., None, :] - centres) ** 2).sum(-1))
    labels = (dist.argmin(-1) + 1).astype(np.int32)
    labels[dist.min(-1) >= radius] = 0
    return labels
