import os

import pytest
import torch

# Small, deterministic, CPU: tests never need more than this, and 2 threads is what CI has.
torch.set_num_threads(min(2, os.cpu_count() or 1))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)
