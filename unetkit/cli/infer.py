"""``unetkit infer BUNDLE INPUT... -o OUTDIR``: segment image files with a bundle, then a summary table.

Bundle and option problems are one red line and exit code 2 (the app's error path); a file that cannot be
segmented is a table row and exit code 1, and the others are still written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from unetkit.cli.console import err, out, show_progress

Precision = Literal["auto", "fp32", "bf16", "fp16"]  # unetkit.precision.PRECISIONS, without importing torch for --help

_TRUST_HELP = "Skip the safety scan of the bundle's configs (only for bundles you wrote or whose author you trust)."


def infer(
    bundle: Annotated[str, typer.Argument(help="Bundle folder or zip (made by `unetkit bundle pack`).")],
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders (their image files, not recursive) or quoted glob patterns ('frames/*.tif').")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder: <stem>_mask.<ext> per input.")],
    device: Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda or cuda:N.")] = "auto",
    tile: Annotated[Optional[int], typer.Option("--tile", help="Input tile edge (572: 572 in, 388 out); 0 chooses by memory. Default: the bundle's.")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="Tiles per forward pass. Default: the bundle's.")] = None,
    precision: Annotated[Optional[Precision], typer.Option("--precision", help="auto: bfloat16 where this machine computes it natively (CPUs with AVX512-BF16/AMX or ARM BF16, GPUs from Ampere on; `unetkit doctor` says which), float32 elsewhere or for a network whose bfloat16 labels stray; fp32, bf16 or fp16 as named. Default: the bundle's (auto).")] = None,
    exact: Annotated[bool, typer.Option("--exact", help="Equal to one whole-image pass bit for bit on this machine: float32, NCHW, the whole image's CPU kernels (slower: ~3x on a bfloat16 CPU).")] = False,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="Deprecated: --no-amp is --precision fp32, --amp is --precision auto.")] = None,
    memory: Annotated[Optional[str], typer.Option("--memory", help="Cap on the peak memory of the process (512MiB, 2GiB): the tile is chosen from what the process, the image and its outputs leave; a file that cannot fit fails saying how much it needs. Default: the bundle's memory_limit, else the tile takes up to a quarter of what is free.")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average over the 8 flips and rotations of each tile (8x the work).")] = False,
    save_probabilities: Annotated[bool, typer.Option("--save-probabilities", help="Also write <stem>_prob.<ext>: float32 class probabilities (class axis before Y, X in TIFF; last in NIfTI).")] = False,
    instances: Annotated[Optional[bool], typer.Option("--instances/--semantic", help="Instance labels (touching cells apart) or class indices. Default: what the bundle's decode gives.")] = None,
    preview: Annotated[bool, typer.Option("--preview", help="Also write <stem>_preview.png: the image with the mask's outlines.")] = False,
    save_table: Annotated[bool, typer.Option("--save-table", help="Also write <stem>_objects.csv (one row per object, per frame of a stack: centroid, area in pixels and in the file's units, bounding box, equivalent diameter, input intensity, touching the border) and one counts.csv for the run (objects and foreground fraction per file and frame). Columns: docs/outputs.md.")] = False,
    save_rois: Annotated[bool, typer.Option("--save-rois", help="Also write <stem>_rois.zip: one ImageJ ROI per object (per frame position in stacks) along pixel edges, named by label, for Fiji's ROI Manager.")] = False,
    save_geojson: Annotated[bool, typer.Option("--save-geojson", help="Also write <stem>.geojson: the objects as QuPath detections (polygons along pixel edges, holes kept, the table's measurements), in pixel coordinates.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace outputs of an earlier run (else the run stops before it starts, saying so).")] = False,
    fill_nonfinite: Annotated[bool, typer.Option("--fill-nonfinite", help="Replace NaN and inf pixels with the image's median (noted in the table) instead of failing such files.")] = False,
    trust: Annotated[bool, typer.Option("--trust", help=_TRUST_HELP)] = False,
    nproc: Annotated[int, typer.Option("--nproc", help="Processes sharing the files (torchrun: one per GPU, or gloo ranks on the CPU).")] = 1,
) -> None:
    """Segment image files (TIFF, NIfTI, what ITK reads) with BUNDLE; masks keep the inputs' shape and calibration."""
    from unetkit.launch import under_torchrun
    from unetkit.predict import PredictOptions, check_distinct, check_no_outputs, check_output_folder, collect_inputs
    from unetkit.predict.model import parse_size

    paths = collect_inputs(inputs)
    options = PredictOptions(instances=instances, probabilities=save_probabilities, preview=preview, overwrite=overwrite,
                             fill_nonfinite=fill_nonfinite, table=save_table, rois=save_rois, geojson=save_geojson)
    kinds = dict(probabilities=save_probabilities, preview=preview, table=save_table, rois=save_rois,
                 geojson=save_geojson)
    check_distinct(paths, output, **kinds)
    check_output_folder(output)
    if not overwrite and not under_torchrun():  # under torchrun other ranks may have written already
        check_no_outputs(paths, output, **kinds)
    if amp is not None:
        err.print(f"[yellow]--{'' if amp else 'no-'}amp is deprecated: use --precision {'auto' if amp else 'fp32'}[/]")
    settings = dict(tile=tile, batch=batch, amp=amp, tta=tta, memory=parse_size(memory) if memory else None,
                    precision=precision, exact=exact or None)

    if under_torchrun():
        results, printer = _under_torchrun(bundle, paths, output, options, device=device, trust=trust, settings=settings)
    elif nproc > 1:
        results, printer = _launch(bundle, paths, output, options, nproc=nproc, device=device, trust=trust, settings=settings), True
    else:
        results, printer = _single(bundle, paths, output, options, device=device, trust=trust, settings=settings), True
    if printer and save_table:  # one table for the run, written once all processes are done
        from unetkit.predict.objects import run_counts, write_counts

        write_counts(output, run_counts(results))
    if printer:
        _summary(results, output)
    if any(not r.ok for r in results):
        raise typer.Exit(code=1)


def _single(bundle, paths, output, options, *, device, trust, settings):
    from unetkit.predict import load_bundle_model, predict_files

    model = load_bundle_model(bundle, trust=trust, device=device).with_settings(**settings)
    if not show_progress():
        return predict_files(model, paths, output, options)
    with _Bars(len(paths)) as bars:
        return predict_files(model, paths, output, options, hooks=bars)


def _launch(bundle, paths, output, options, *, nproc, device, trust, settings):
    from unetkit.predict import launch_sharded, load_bundle_model

    # Bundle and option errors surface here, as one line, before any process starts.
    load_bundle_model(bundle, trust=trust, device="cpu").with_settings(**settings)
    if not show_progress():
        return launch_sharded(bundle, paths, output, options, nproc=nproc, device=device, trust=trust, settings=settings)
    with _Bars(len(paths), tiles=False) as bars:
        return launch_sharded(bundle, paths, output, options, nproc=nproc, device=device, trust=trust,
                              settings=settings, on_result=bars.end_file)


def _under_torchrun(bundle, paths, output, options, *, device, trust, settings):
    import torch.distributed as dist

    from unetkit.launch import join_process_group, leave_process_group, rank_device
    from unetkit.predict import load_bundle_model, predict_sharded

    device = rank_device(device)
    join_process_group(device)
    try:
        model = load_bundle_model(bundle, trust=trust, device=device).with_settings(**settings)
        results = predict_sharded(model, paths, output, options)
        return results, dist.get_rank() == 0
    finally:
        # as unetkit's own workers do (predict/worker.py): a rank that exits with its gloo group still open can
        # abort at teardown while its peer still talks to it (SIGABRT, seen under load in the torchrun test)
        leave_process_group()


class _Bars:
    """Two rich bars on stderr: files, and the tiles of the current file."""

    def __init__(self, total: int, *, tiles: bool = True):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[name]}"), TimeElapsedColumn(), TimeRemainingColumn(), console=err.get(),
        )
        self.files = self.progress.add_task("files", total=total, name="")
        self.tile_task = self.progress.add_task("tiles", total=None, name="", visible=False) if tiles else None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def start_file(self, path, index, total):
        self.progress.update(self.files, name=path.name)
        if self.tile_task is not None:
            self.progress.reset(self.tile_task, total=None, visible=False)

    def tiles(self, done, total):
        if self.tile_task is not None:
            self.progress.update(self.tile_task, completed=done, total=total, visible=total > 1)

    def end_file(self, result):
        self.progress.advance(self.files)


def _summary(results, output: Path) -> None:
    table = Table(title=f"{len(results)} file(s) -> {output}")
    ranks = len({r.rank for r in results}) > 1
    columns = (("file", "left"), ("shape", "left"), ("objects", "right"), ("seconds", "right"), ("status", "left"))
    for name, justify in columns + ((("rank", "right"),) if ranks else ()):
        table.add_column(name, justify=justify, overflow="fold")
    for r in results:
        shape = "x".join(map(str, r.shape)) if r.shape else "-"
        objects = "-" if r.objects is None else str(r.objects)
        if r.ok:
            status = Text("ok" + (f" ({'; '.join(r.notes)})" if r.notes else ""), style="green")
        else:
            status = Text(f"failed: {r.message}", style="red")
        table.add_row(Text(r.path.name), shape, objects, f"{r.seconds:.2f}", status, *([str(r.rank)] if ranks else []))
    out.print(table)
    failed = sum(not r.ok for r in results)
    line = f"{len(results) - failed} of {len(results)} file(s) segmented"
    out.print(line + (f"; {failed} failed (see the table)" if failed else ""))
