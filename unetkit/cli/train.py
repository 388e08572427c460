"""``unetkit train BUNDLE``: train a bundle's recipe, with a progress bar and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from unetkit.cli.console import err, out, show_progress


def train(
    bundle: Annotated[str, typer.Argument(help="Bundle folder (or zip), e.g. bundles/phc_u373.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Data set folder, in the layout the recipe reads; the 2D recipes take images/ beside masks/ (same file names; the last fifth validates), or the Cell Tracking Challenge layout (01/ trains, 02/ validates). Default: the bundle's.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where the trained bundle goes (default: the bundle folder, unless it holds a trained model).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Training steps (default: the bundle's max_steps).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Passes over the training data, instead of --steps.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint in the output folder.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start afresh: remove checkpoints of an earlier run, and replace a trained model in the output folder.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a config value: KEY=VALUE (MONAI ids, e.g. optimizer::lr=0.01).")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the run (default: the bundle's).")] = None,
    overlay: Annotated[Optional[list[str]], typer.Option("--overlay", help="An extra config layered after train.json, e.g. configs/paper.json (the paper's exact optimiser and decoder); repeatable.")] = None,
    no_plan: Annotated[bool, typer.Option("--no-plan", help="Keep the bundle exactly as written: no plan from the data (sizes, object diameter) adapts it.")] = False,
    finetune: Annotated[bool, typer.Option("--finetune", help="Start from BUNDLE's trained weights (a folder or zip, scanned as any shared bundle) with the plan's fine-tuning schedule: 100 steps per annotated frame (300-2000), the recipe's rate after a 5 % warm-up. The new bundle's metadata records its parent. --set freeze_encoder=true also keeps the contracting path.")] = False,
    folds: Annotated[Optional[int], typer.Option("--folds", help="K-fold cross-validation: train K folds of the training frames (whole sequences per fold when there are K), report each fold's and the pooled validation, and make the output one bundle that averages the folds' probabilities.")] = None,
    fold: Annotated[Optional[int], typer.Option("--fold", help="With --folds: train this fold only (0..K-1), e.g. one per machine; copy the folds/fold_<i> folders together and run --folds K to assemble.")] = None,
    ignore_label: Annotated[Optional[int], typer.Option("--ignore-label", help="Label value of unannotated pixels: they weigh nothing in the loss (partial annotation, as the Cell Tracking Challenge's gold truth).")] = None,
    precision: Annotated[Optional[Literal["auto", "fp32", "bf16", "fp16"]], typer.Option("--precision", help="auto: bfloat16 autocast where this machine computes it natively (`unetkit doctor` says), float32 elsewhere; fp32, bf16, or fp16 (CUDA only, with the trainer's gradient scaler). The loss and weight map stay float32. Default: the bundle's (auto).")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="The bit-exact path, the earlier default: float32 in NCHW layout, and validation equal to whole-image passes bit for bit on this machine.")] = False,
    deterministic: Annotated[bool, typer.Option("--deterministic", help="Deterministic algorithms only (torch.use_deterministic_algorithms); slower on GPUs.")] = False,
    trust: Annotated[bool, typer.Option("--trust", help="Skip the safety scan of the bundle's configs (only for bundles you trust).")] = False,
    nproc: Annotated[int, typer.Option("--nproc", help="Processes on this machine (DDP through torchrun: one per GPU, gloo ranks on the CPU).")] = 1,
    nnodes: Annotated[int, typer.Option("--nnodes", help="Machines taking part (run the same command on each).")] = 1,
    node_rank: Annotated[int, typer.Option("--node-rank", help="This machine's rank among --nnodes (0 on the master).")] = 0,
    master_addr: Annotated[Optional[str], typer.Option("--master-addr", help="Address of the --node-rank 0 machine (with --nnodes > 1).")] = None,
    master_port: Annotated[int, typer.Option("--master-port", help="Port on the master machine.")] = 29500,
) -> None:
    """Train BUNDLE with its configs/train.json and write a complete, runnable bundle."""
    from unetkit.bundle import parse_overrides
    from unetkit.errors import UnetkitError
    from unetkit.training import train_bundle

    overrides = parse_overrides(set_ or [])
    if deterministic:
        overrides["deterministic"] = True
    if ignore_label is not None:
        overrides["ignore_label"] = ignore_label
    if exact and precision in ("bf16", "fp16"):
        raise UnetkitError(f"--precision {precision} and --exact exclude each other: exact results are float32")
    if precision is not None:
        overrides["precision"] = precision
        if precision == "fp16":
            overrides["amp"] = True  # MONAI's gradient scaler: float16 gradients underflow without it
    if exact:
        overrides["exact"] = True
    kwargs = dict(data=data, output=output, steps=steps, epochs=epochs, device=device, resume=resume,
                  overwrite=overwrite, overrides=overrides, seed=seed, use_plan=not no_plan, overlays=overlay or [], trust=trust, nproc=nproc, nnodes=nnodes,
                  node_rank=node_rank, master_addr=master_addr, master_port=master_port)
    if fold is not None and folds is None:
        raise UnetkitError("--fold needs --folds K (how many folds the data is split into)")
    if folds is not None:
        if finetune:
            raise UnetkitError("--folds and --finetune exclude each other: fine-tune one bundle, or train folds")
        _train_folds(bundle, folds, fold, kwargs)
        return
    kwargs["finetune"] = finetune
    if show_progress() and nproc * nnodes == 1:
        with _Bar() as bar:
            result = train_bundle(bundle, progress=bar.update, **kwargs)
    else:
        result = train_bundle(bundle, progress=_log_validations, **kwargs)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    out.print(f"trained {result.steps} steps; the model's validation: {shown or 'no validation ran'}")
    if result.decoder is not None:
        chosen = ", ".join(f"{k.split('::')[-1]} {v}" for k, v in result.decoder["settings"].items())
        out.print(f"decoder: {chosen}, chosen on validation (SEG {result.decoder['seg']:.4f}; the recipe's "
                  f"{result.decoder['recipe_seg']:.4f})")
    out.print(f"bundle: {result.output}  (weights: {result.model.relative_to(result.output)})")


def _train_folds(bundle, folds, fold, kwargs) -> None:
    from rich.table import Table

    from unetkit.training.folds import train_folds

    bars: list[_Bar] = []  # one bar per fold; the last one closes when the run ends

    def close_bars():
        while bars:
            bars.pop().__exit__(None, None, None)

    def on_fold(i, k):
        close_bars()
        err.print(f"[bold]fold {i}[/] of {k}")
        if show_progress() and kwargs["nproc"] * kwargs["nnodes"] == 1:
            bars.append(_Bar().__enter__())
            return bars[-1].update
        return _log_validations

    try:
        result = train_folds(bundle, folds=folds, fold=fold, on_fold=on_fold, **kwargs)
    finally:
        close_bars()
    names = sorted({n for f in result.folds for n in f["metrics"] if n.startswith("val_")})
    table = Table(title=f"{folds} folds (split by {result.split_by})")
    for col in ("fold", "validation frames", *names):
        table.add_column(col, justify="right" if col != "fold" else "left")
    for f in result.folds:
        table.add_row(str(f["fold"]), str(len(f["validation"])), *(f"{f['metrics'].get(n, float('nan')):.4f}" for n in names))
    if len(result.folds) > 1:
        table.add_row("pooled", str(sum(len(f["validation"]) for f in result.folds)),
                      *(f"{result.pooled.get(n, float('nan')):.4f}" for n in names))
    out.print(table)
    if result.ensemble is not None:
        out.print(f"ensemble of {folds} folds: {result.ensemble}  (weights: models/model.pt; splits: folds.json)")
    else:
        out.print(f"fold(s) trained in {result.output / 'folds'}; run --folds {folds} without --fold to assemble "
                  "the ensemble when all are there")


def _log_validations(*, step, total, loss, metrics) -> None:
    if metrics is not None:
        err.print(f"step {step}/{total}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))


class _Bar:
    """A rich progress bar: step, loss, last validation IoU, it/s and ETA."""

    def __init__(self):
        self.progress = Progress(
            TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("val_iou {task.fields[val]}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err.get(),
        )
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, *, step, total, loss, metrics) -> None:
        if self.task is None:
            self.task = self.progress.add_task("train", total=total, completed=step, loss="-", val="-", rate="")
        fields = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if metrics:
            fields["val"] = f"{metrics.get('val_iou', float('nan')):.3f}"
        speed = self.progress.tasks[self.task].speed
        fields["rate"] = f"{speed:.2f} it/s" if speed else ""
        self.progress.update(self.task, completed=step, **fields)
