"""One rank of ``unetkit train --nproc N``: torchrun starts N of these on a bundle that ``train_bundle``
has already prepared (configs written, data checked), and each runs the bundle's ``train.json`` merged
with its ``multi_gpu_train.json``.

    python -m torch.distributed.run --nproc_per_node N -m unetkit.training.worker OUT RUNTIME_JSON [--resume]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from unetkit.errors import UnetkitError


def _print_validation(*, step, total, loss, metrics) -> None:
    if metrics is not None:
        print(f"step {step}/{total}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from unetkit.launch import rank
    from unetkit.training.workflow import run_workflow

    args = sys.argv[1:] if argv is None else argv
    out, runtime = Path(args[0]), json.loads(args[1])
    try:
        run_workflow(out, runtime, resume="--resume" in args, distributed=True,
                     progress=_print_validation if rank() == 0 else None)
    except UnetkitError as e:
        print(f"error (rank {rank()}): {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
