"""One rank of ``unetkit infer --nproc N``: torchrun starts N of these on the job the command wrote.

    python -m torch.distributed.run --standalone --nproc_per_node N -m unetkit.predict.worker JOB.json RESULTS.json

Each rank loads the bundle (safety scan included), segments its share of the files, reports each finished
file on stderr (one ``unetkit-infer-done {json}`` line, for the parent's progress bar), and rank 0 writes
every rank's results to ``RESULTS.json``. A bundle or option problem is one ``error (rank R): ...`` line and
exit code 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from unetkit.errors import UnetkitError
from unetkit.predict.distributed import PROGRESS_PREFIX
from unetkit.predict.predict import ProgressHooks


class _ReportDone(ProgressHooks):
    """Prints each finished file for the launching process."""

    def end_file(self, result):
        print(PROGRESS_PREFIX + json.dumps(result.to_dict()), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    from unetkit.launch import join_process_group, leave_process_group, rank_device
    from unetkit.predict.distributed import predict_sharded
    from unetkit.predict.model import load_bundle_model
    from unetkit.predict.predict import PredictOptions

    job_file, result_file = (sys.argv[1:] if argv is None else argv)[:2]
    job = json.loads(Path(job_file).read_text())
    device = rank_device(job["device"])
    rank = int(os.environ.get("RANK", 0))
    try:
        join_process_group(device)
        model = load_bundle_model(job["bundle"], trust=job["trust"], device=device).with_settings(**job["settings"])
        results = predict_sharded(model, job["paths"], job["outdir"], PredictOptions(**job["options"]), hooks=_ReportDone())
        if rank == 0:
            tmp = Path(f"{result_file}.tmp")
            tmp.write_text(json.dumps([r.to_dict() for r in results]))
            os.replace(tmp, result_file)
    except UnetkitError as e:
        print(f"error (rank {rank}): {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        leave_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
