"""A repository recipe with a tiny network and random weights: a bundle as ``unetkit train`` leaves one.

Shared by the bundle, inference and evaluation tests; the weights are seeded, so every test that builds
one gets the same network.
"""

import shutil
from pathlib import Path

import torch

from unetkit.bundle import read_config, write_config
from unetkit.bundle.network import build_network

REPO_BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
TINY = [4, 8, 16, 32, 64]


def make_tiny_bundle(dst: Path, recipe: str = "phc_u373", features=TINY, *, seed: int = 0) -> Path:
    """Copy ``bundles/<recipe>`` to ``dst`` (without run results), narrow its network (``common.json``) to
    ``features``, and save seeded random weights as ``models/model.pt``."""
    shutil.copytree(REPO_BUNDLES / recipe, dst, ignore=shutil.ignore_patterns("models", "checkpoints", "eval"))
    path = dst / "configs" / "common.json"
    config = read_config(path)
    config["network_def"]["features"] = list(features)
    write_config(path, config)
    (dst / "models").mkdir()
    torch.manual_seed(seed)
    torch.save(build_network(dst).state_dict(), dst / "models" / "model.pt")
    return dst
