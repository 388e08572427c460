"""A training set indexed by step, so that a run can stop and resume bit for bit.

MONAI's datasets draw augmentations from transform state that lives in the worker processes and moves
on with every sample; resuming such a run at step k cannot replay the draws of steps 0..k-1 without
redoing them. Here sample ``i`` is a pure function of ``(seed, i)``: which image (a fresh permutation of
the data list every pass) and the seed of the random transforms. Step k of a resumed run therefore sees
exactly what step k of an uninterrupted run saw, whatever the number of workers.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from monai.transforms import Randomizable
from torch.utils.data import Dataset

__all__ = ["StepDataset"]


class StepDataset(Dataset):
    """``steps * batch_size`` samples drawn from ``data``, sample ``i`` determined by ``(seed, i)``.

    The deterministic transforms (loading, normalisation, weight map) run once per data-list item and are
    cached; the random ones (elastic deformation, rotation, crop, intensity) run per sample with a seed
    derived from ``(seed, i)``.

    Args:
        data: the data list (dicts of paths, MONAI style).
        transform: deterministic transforms, applied once per item and cached.
        random_transform: random transforms (a MONAI ``Compose``), re-seeded per sample.
        steps: number of training steps.
        batch_size: samples per step.
        seed: the run's seed.
        cache: keep the deterministic results in memory (on by default: a few frames of microscopy).

    Examples:
        >>> ds = StepDataset([{"x": 1}, {"x": 2}, {"x": 3}], transform=None, random_transform=None, steps=6)
        >>> [ds[i]["x"] for i in range(6)] == [ds[i]["x"] for i in range(6)]  # replayable
        True
        >>> sorted(ds[i]["x"] for i in range(3))  # every item once per pass
        [1, 2, 3]
    """

    def __init__(
        self,
        data: Sequence[dict],
        transform: Callable | None,
        random_transform: Callable | None,
        steps: int,
        *,
        batch_size: int = 1,
        seed: int = 0,
        cache: bool = True,
    ):
        if len(data) == 0:
            raise ValueError("the training data list is empty")
        if steps < 1 or batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {steps} and {batch_size}")
        self.data = list(data)
        self.transform = transform
        self.random_transform = random_transform
        self.steps = int(steps)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.cache = cache
        self._cache: dict[int, dict] = {}
        self.offset = 0  # samples already consumed before a resume

    def resume_at(self, step: int) -> None:
        """Start at step ``step`` (the first ``step * batch_size`` samples were seen before the resume)."""
        self.offset = int(step) * self.batch_size

    def __len__(self) -> int:
        return self.steps * self.batch_size - self.offset

    def item_index(self, i: int) -> int:
        """Which data-list item sample ``i`` uses: pass ``i // n`` is a fresh permutation."""
        n = len(self.data)
        perm = np.random.default_rng([self.seed, i // n]).permutation(n)
        return int(perm[i % n])

    def _prepared(self, k: int) -> dict:
        if k in self._cache:
            return self._cache[k]
        item = dict(self.data[k])
        if self.transform is not None:
            item = self.transform(item)
        if self.cache:
            self._cache[k] = item
        return item

    def __getitem__(self, index: int) -> dict:
        i = self.offset + int(index)
        item = dict(self._prepared(self.item_index(i)))  # shallow copy: transforms must not edit the cache
        if self.random_transform is not None:
            if isinstance(self.random_transform, Randomizable):
                seed = int(np.random.default_rng([self.seed, i, 1]).integers(2**31))
                self.random_transform.set_random_state(seed=seed)
            item = self.random_transform(item)
        if isinstance(item, list):  # MONAI's cropping transforms return a list of num_samples crops
            if len(item) != 1:
                raise ValueError(f"the random transforms made {len(item)} samples; use num_samples=1 and batch_size")
            item = item[0]
        return item
