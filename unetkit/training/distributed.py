"""Distributed data-parallel training under torchrun: the pieces a bundle's ``multi_gpu_train.json`` names.

MONAI's own multi-GPU configs do this with ``$`` expressions (``dist.init_process_group(...)``,
``torch.device(f'cuda:{dist.get_rank()}')``); unetkit's bundle safety scan refuses arbitrary expressions,
so the same steps are plain functions here, named by ``_target_``. NCCL on GPUs, gloo on the CPU.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["init_process_group", "destroy_process_group", "local_device", "wrap_ddp", "global_batch",
           "world_size", "rank"]


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", 0))


def init_process_group(backend: str | None = None) -> bool:
    """Join the process group torchrun set up (env ``MASTER_ADDR``, ``RANK``, ...); NCCL with CUDA, else gloo.

    Returns:
        True (so a config's ``initialize`` list can call it).
    """
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
    return True


def destroy_process_group() -> bool:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return True


def local_device() -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def wrap_ddp(module: torch.nn.Module) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``module`` (already on its device); device_ids only on CUDA."""
    device = next(module.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)


def global_batch(batch_size: int) -> int:
    """Samples per step over all ranks: each rank loads ``batch_size`` (MONAI's convention: the batch is
    per GPU), so one step of N ranks sees ``N * batch_size`` samples."""
    return batch_size * world_size()
