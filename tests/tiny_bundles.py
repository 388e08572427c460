"""A repository recipe with a tiny network and random weights: a bundle as ``unetkit train`` leaves one.

Shared by the bundle, inference and evaluation tests; the weights are seeded, so every test that builds
one gets the same network.
"""

import shutil
from pathlib import Path

import torch

from unetkit.bundle import read_config, write_config
from unetkit.networks import UNet

REPO_BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
TINY = [4, 8, 16, 32, 64]


def make_tiny_bundle(dst: Path, recipe: str = "phc_u373", features=TINY, *, seed: int = 0) -> Path:
    """Copy ``bundles/<recipe>`` to ``dst`` (without run results), narrow its network to ``features`` in
    every config that defines it, and save seeded random weights as ``models/model.pt``."""
    shutil.copytree(REPO_BUNDLES / recipe, dst, ignore=shutil.ignore_patterns("models", "checkpoints", "eval"))
    net_def = None
    for name in ("train.json", "inference.json"):
        path = dst / "configs" / name
        config = read_config(path)
        config["network_def"]["features"] = list(features)
        write_config(path, config)
        net_def = config["network_def"]
    (dst / "models").mkdir()
    torch.manual_seed(seed)
    net = UNet(net_def.get("spatial_dims", 2), net_def.get("in_channels", 1), net_def.get("out_channels", 2), list(features))
    torch.save(net.state_dict(), dst / "models" / "model.pt")
    return dst
