"""Distributed data-parallel training under torchrun: the pieces a bundle's ``multi_gpu_train.json`` names.

MONAI's own multi-GPU configs do this with ``$`` expressions (``dist.init_process_group(...)``,
``torch.device(f'cuda:{dist.get_rank()}')``); unetkit's bundle safety scan refuses arbitrary expressions,
so the same steps are plain functions, named by ``_target_``. Devices, backends and process groups are
:mod:`unetkit.launch`'s (one launcher for training and inference); what is left here is DDP itself.
"""

from __future__ import annotations

import torch

from unetkit.launch import world_size

__all__ = ["wrap_ddp", "global_batch"]


def wrap_ddp(module: torch.nn.Module) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``module`` (already on its device); device_ids only on CUDA."""
    device = next(module.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def global_batch(batch_size: int) -> int:
    """Samples per step over all ranks: each rank loads ``batch_size`` (MONAI's convention: the batch is
    per GPU), so one step of N ranks sees ``N * batch_size`` samples."""
    return batch_size * world_size()
