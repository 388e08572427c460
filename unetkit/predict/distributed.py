"""Many files over several processes (``unetkit infer --nproc N``): shard, segment, gather.

The input list is split round-robin over the ranks (rank ``r`` of ``N`` takes files ``r, r + N, ...``), so
each output is written by exactly one process; the results are gathered so that every rank holds the
whole table (rank 0 prints it). The processes come from PyTorch's launcher, ``torch.distributed.run``
(torchrun, through :mod:`unetkit.launch` as training does): :func:`launch_sharded` starts ``N`` of them on this
machine, or ``unetkit infer`` started under torchrun by the user (``WORLD_SIZE``/``RANK`` set) uses the ranks it
is given. Each rank takes its own device (:func:`unetkit.launch.rank_device`) and the backend that device needs.

Examples:
    >>> shard(["a", "b", "c", "d", "e"], rank=1, world=2)
    [1, 3]
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch.distributed as dist

from unetkit.errors import UnetkitError
from unetkit.launch import check_launch, torchrun, torchrun_command
from unetkit.predict.model import BundleModel
from unetkit.predict.predict import FileResult, PredictOptions, ProgressHooks, predict_files

__all__ = ["shard", "predict_sharded", "launch_sharded", "PROGRESS_PREFIX"]

logger = logging.getLogger(__name__)

PROGRESS_PREFIX = "unetkit-infer-done "
"""Workers report each finished file on stderr as this prefix and the result as JSON, for the parent's bar."""


def shard(items: Sequence, rank: int, world: int) -> list[int]:
    """Indices of ``items`` that rank ``rank`` of ``world`` takes: round-robin, so sizes differ by one at most."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank must be in 0..world-1, got rank={rank}, world={world}")
    return list(range(rank, len(items), world))


def predict_sharded(
    model: BundleModel, paths: Sequence[os.PathLike], outdir: os.PathLike, options: PredictOptions = PredictOptions(),
    *, hooks: ProgressHooks | None = None,
) -> list[FileResult]:
    """This rank's share of ``paths``, then every rank's results gathered on every rank, in input order.

    Call it on every rank of an initialised process group, with the same ``paths`` everywhere.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = shard(paths, rank, world)
    results = predict_files(model, [paths[i] for i in mine], outdir, options, hooks=hooks, rank=rank)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, [(i, r.to_dict()) for i, r in zip(mine, results)])
    merged = sorted((pair for part in gathered for pair in part), key=lambda pair: pair[0])
    return [FileResult.from_dict(d) for _, d in merged]


def launch_sharded(
    bundle: str | os.PathLike, paths: Sequence[os.PathLike], outdir: os.PathLike, options: PredictOptions, *,
    nproc: int, device: str = "auto", trust: bool = False, settings: dict | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> list[FileResult]:
    """Segment ``paths`` with ``nproc`` processes on this machine (torchrun), each file by one of them.

    Args:
        bundle: the bundle folder or zip (each process opens it, safety scan included).
        paths: the input files.
        outdir: the output folder.
        options: what to write.
        nproc: processes; on GPUs at most one per GPU.
        device: ``auto``, ``cpu`` or ``cuda`` (one GPU per process).
        trust: as :func:`~unetkit.predict.model.load_bundle_model`.
        settings: ``tile``/``batch``/``amp``/``tta`` for :meth:`~unetkit.predict.model.BundleModel.with_settings`.
        on_result: called in this process as each file finishes, in any process.

    Returns:
        One result per path, in order.

    Raises:
        UnetkitError: bad ``nproc``/``device``, or a process failed as a whole (its message is given).
    """
    check_launch(nproc, device)
    with tempfile.TemporaryDirectory(prefix="unetkit-infer-") as tmp:
        job, result_file = Path(tmp) / "job.json", Path(tmp) / "results.json"
        job.write_text(json.dumps({
            "bundle": os.fspath(bundle), "paths": [os.fspath(p) for p in paths], "outdir": os.fspath(outdir),
            "options": vars(options), "device": device, "trust": trust, "settings": settings or {},
        }))
        cmd = torchrun_command("unetkit.predict.worker", [str(job), str(result_file)], nproc=nproc)
        code, errors = _run(cmd, nproc, on_result)
        if code or not result_file.is_file():
            detail = errors[0] if errors else f"exit code {code}"
            raise UnetkitError(f"inference over {nproc} processes failed: {detail}")
        return [FileResult.from_dict(d) for d in json.loads(result_file.read_text())]


def _run(cmd: list[str], nproc: int, on_result) -> tuple[int, list[str]]:
    """Run torchrun, turning its workers' progress lines into ``on_result`` calls; torchrun's own chatter
    (and its launcher traceback when a worker fails) is kept back, the workers' error lines returned."""
    errors, tail = [], []
    with torchrun(cmd, nproc=nproc, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        for line in proc.stderr:
            line = line.rstrip("\n")
            if line.startswith(PROGRESS_PREFIX):
                if on_result is not None:
                    on_result(FileResult.from_dict(json.loads(line[len(PROGRESS_PREFIX):])))
            elif line.startswith("error (rank"):
                errors.append(line.split(": ", 1)[-1])
            elif line.strip():
                tail = (tail + [line])[-20:]
    if proc.returncode and not errors:
        logger.warning("torchrun said:\n%s", "\n".join(tail))
    return proc.returncode, errors
