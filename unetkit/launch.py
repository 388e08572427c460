"""Devices and torchrun, once for the whole package: training (``unetkit train --nproc``) and batch
inference (``unetkit infer --nproc``) both come through here.

- :func:`resolve_device`: the one check of a ``--device`` value for one process.
- :func:`check_launch`: the one check of ``--device`` with ``--nproc``/``--nnodes`` before anything starts.
- :func:`rank_device`: inside a rank, its own device: ``cuda:LOCAL_RANK`` for GPU ranks, else the CPU.
- :func:`backend_for`: the process-group backend follows the rank's device (NCCL for CUDA tensors, gloo for
  CPU tensors), never merely whether CUDA exists.
- :func:`join_process_group` / :func:`leave_process_group`: what each rank does first and last.
- :func:`torchrun`: start ``nproc`` ranks of a module with PyTorch's launcher (``torch.distributed.run``).

The device of a launch is a *kind* (``auto``, ``cpu``, ``cuda``): each rank takes its own GPU, so a numbered
``cuda:N`` makes sense for one process only.

Examples:
    >>> backend_for(torch.device("cpu")), backend_for(torch.device("cuda", 1))
    ('gloo', 'nccl')
    >>> check_launch(2, "cuda:1")
    Traceback (most recent call last):
    ...
    unetkit.errors.UnetkitError: --device cuda:1 with --nproc 2: each process takes its own GPU (use --device cuda, or auto)
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Sequence

import torch
import torch.distributed as dist

from unetkit.errors import UnetkitError

__all__ = ["resolve_device", "check_launch", "rank_device", "backend_for", "join_process_group",
           "leave_process_group", "under_torchrun", "torchrun_command", "torchrun", "world_size", "rank"]

KINDS = ("auto", "cpu", "cuda")


def _gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a ``torch.device``.

    Raises:
        UnetkitError: an unknown name, or CUDA asked for where there is none (or not that many GPUs).

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("tpu")
        Traceback (most recent call last):
        ...
        unetkit.errors.UnetkitError: --device tpu: expected auto, cpu, cuda or cuda:N
    """
    name = "auto" if device is None else str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UnetkitError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not _gpus():
            raise UnetkitError(f"--device {name}: CUDA is not available here", fix="use --device cpu, or see `unetkit doctor`")
        if dev.index is not None and dev.index >= _gpus():
            raise UnetkitError(f"--device {name}: this machine has {_gpus()} GPU(s), numbered from 0")
    return dev


def check_launch(nproc: int, device: str = "auto", *, nnodes: int = 1) -> None:
    """Check ``--nproc``/``--nnodes`` against ``--device`` before any process starts.

    Raises:
        UnetkitError: counts below 1; a numbered GPU for several processes; CUDA asked for where there is
            none; more GPU processes on this machine than GPUs.
    """
    for flag, n in (("--nproc", nproc), ("--nnodes", nnodes)):
        if n < 1:
            raise UnetkitError(f"{flag} {n}: must be at least 1")
    name = "auto" if device is None else str(device)
    if nproc * nnodes > 1 and name not in KINDS:
        if name.startswith("cuda:"):
            raise UnetkitError(f"--device {name} with --nproc {nproc}: each process takes its own GPU",
                               fix="use --device cuda, or auto")
        raise UnetkitError(f"--device {name}: expected auto, cpu or cuda with --nproc")
    resolve_device(name)
    gpu_ranks = name == "cuda" or (name == "auto" and _gpus() > 0)
    if nproc * nnodes > 1 and gpu_ranks and nproc > _gpus():
        raise UnetkitError(f"--nproc {nproc} on {_gpus()} GPU(s): one process per GPU",
                           fix=f"use --nproc {_gpus()}, or --device cpu for CPU processes")


def rank_device(device: str = "auto") -> torch.device:
    """This rank's device for a launch of kind ``device``: ``cuda:LOCAL_RANK`` for ``cuda`` (and for
    ``auto`` where CUDA exists), else the CPU. Outside torchrun ``LOCAL_RANK`` is 0.

    Examples:
        >>> rank_device("cpu")
        device(type='cpu')
    """
    name = "auto" if device is None else str(device)
    if name == "cpu" or (name == "auto" and not _gpus()):
        return torch.device("cpu")
    if name.startswith("cuda:") and not under_torchrun():
        return resolve_device(name)
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def backend_for(device: torch.device | str) -> str:
    """``"nccl"`` for CUDA ranks, ``"gloo"`` for CPU ranks."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def join_process_group(device: torch.device | str) -> bool:
    """Join the group torchrun set up (``MASTER_ADDR``, ``RANK``, ...), with the backend of ``device``.

    Returns True, so that a config's ``initialize`` list can name it.
    """
    device = torch.device(device)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend_for(device))
    return True


def leave_process_group() -> bool:
    """Leave the process group, if any (a config's ``finalize`` list names it)."""
    if dist.is_available() and dist.is_initialized():
        # every rank reaches this point before any tears its connections down: a rank that leaves while its peer
        # still talks to it can abort the peer ("terminate called without an active exception", seen once
        # under load in the two-rank test)
        try:
            dist.barrier()
        except Exception:  # a peer already gone (torchrun stops the others when one rank fails): leave anyway
            pass
        dist.destroy_process_group()
    return True


def under_torchrun() -> bool:
    """True in a process started by torchrun with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def world_size() -> int:
    """Processes in the group (1 outside one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    """This process's rank (0 outside a group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", 0))


def torchrun_command(module: str, args: Sequence[str], *, nproc: int, nnodes: int = 1, node_rank: int = 0,
                     master_addr: str | None = None, master_port: int = 29500) -> list[str]:
    """The command line that starts ``nproc`` ranks of ``python -m module args...`` on this machine.

    Raises:
        UnetkitError: ``nnodes > 1`` without ``master_addr``.

    Examples:
        >>> torchrun_command("unetkit.predict.worker", ["job.json"], nproc=2)[2:]
        ['torch.distributed.run', '--nproc_per_node=2', '--standalone', '-m', 'unetkit.predict.worker', 'job.json']
    """
    if nnodes > 1 and not master_addr:
        raise UnetkitError("--nnodes > 1 needs --master-addr (the address of the machine with --node-rank 0)")
    where = ["--standalone"] if nnodes == 1 else [f"--nnodes={nnodes}", f"--node_rank={node_rank}",
                                                   f"--master_addr={master_addr}", f"--master_port={master_port}"]
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", *where, "-m", module, *args]


def torchrun(command: list[str], *, nproc: int, **popen) -> subprocess.Popen:
    """Start ``command`` (from :func:`torchrun_command`); each rank gets its share of the CPU threads."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.Popen(command, env=env, **popen)
