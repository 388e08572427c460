"""``unetkit bundle init|verify|pack|export``: make, check and share bundles."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from unetkit.cli.console import out
from unetkit.errors import UnetkitError

app = typer.Typer(help="Create, verify, pack and export bundles.", no_args_is_help=True)

_TRUST_HELP = "Skip the safety scan of the configs (only for bundles you wrote or whose author you trust)."
_STYLES = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


class ExportFormat(str, Enum):
    torchscript = "torchscript"
    onnx = "onnx"
    bioimageio = "bioimageio"


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="The new bundle folder (must not exist, or be empty).")],
    recipe: Annotated[
        Optional[str],
        typer.Option("--from", help="Recipe: phc_u373, dic_hela, isbi2012_em, spleen_ct_3d (default: phc_u373 in 2D, spleen_ct_3d in 3D)."),
    ] = None,
    spatial_dims: Annotated[int, typer.Option("--spatial-dims", help="2 or 3.")] = 2,
) -> None:
    """Create a bundle folder from a recipe; fill the TODOs in docs/README.md, LICENSE and metadata.json."""
    from unetkit.bundle import init_bundle, read_config

    folder = init_bundle(path, recipe=recipe, spatial_dims=spatial_dims)
    fmt = read_config(folder / "configs" / "metadata.json")["network_data_format"]
    image, pred = next(iter(fmt["inputs"].values())), next(iter(fmt["outputs"].values()))
    out.print(str(folder), soft_wrap=True, markup=False)
    out.print(f"tile {'x'.join(map(str, image['spatial_shape']))} -> {'x'.join(map(str, pred['spatial_shape']))}; "
              "next: fill the TODOs in docs/README.md, LICENSE and configs/metadata.json", highlight=False)


@app.command()
def verify(
    path: Annotated[str, typer.Argument(help="Bundle folder or zip.")],
    trust: Annotated[bool, typer.Option("--trust", help="Build and run the network even if the safety scan finds something.")] = False,
) -> None:
    """Check checksums, metadata, safety, weights and a forward pass; exit code 1 if a check fails."""
    from unetkit.bundle import verify_bundle

    checks = verify_bundle(path, trust=trust)
    table = Table("check", "result", "detail", title=f"bundle {path}")
    table.columns[2].overflow = "fold"
    for c in checks:
        table.add_row(c.name, Text(c.status, style=_STYLES.get(c.status, "")), Text(c.detail))
    out.print(table)
    failed = [c.name for c in checks if c.failed]
    if failed:
        out.print(Text(f"FAILED: {', '.join(failed)}", style="bold red"))
        raise typer.Exit(code=1)
    out.print(Text("all checks passed", style="green"))


@app.command()
def pack(
    path: Annotated[Path, typer.Argument(help="Bundle folder.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="NAME.zip to write (default: FOLDER_NAME.zip here).")] = None,
) -> None:
    """Zip a bundle with a SHA-256 manifest of every file; the same folder gives the same bytes."""
    from unetkit.bundle import pack_bundle

    output = output or Path(f"{path.resolve().name}.zip")
    zip_path = pack_bundle(path, output)
    out.print(str(zip_path), soft_wrap=True, markup=False)


@app.command()
def export(
    path: Annotated[str, typer.Argument(help="Trained bundle folder (pack it again afterwards); a folder or zip for bioimageio.")],
    format: Annotated[ExportFormat, typer.Option("--format", help="torchscript -> models/model.ts, onnx -> models/model.onnx, bioimageio -> a bioimage.io model package (-o NAME.zip) for deepImageJ, ilastik, napari and bioimageio.core, which `unetkit infer` runs too.")] = ExportFormat.torchscript,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="bioimageio only: the package to write, NAME.zip.")] = None,
    sample: Annotated[Optional[Path], typer.Option("--sample", help="bioimageio only: a 2D image for the package's test tensors and cover (default: a seeded demo image).")] = None,
    trust: Annotated[bool, typer.Option("--trust", help=_TRUST_HELP)] = False,
) -> None:
    """Export the trained network with dynamic input size, checked against PyTorch at two sizes; or, with
    --format bioimageio, as a bioimage.io model package (class probabilities; `unetkit infer` gives instances)."""
    from unetkit.bundle import export_bundle

    if format is ExportFormat.bioimageio:
        return _export_bioimageio(path, output, sample=sample, trust=trust)
    if output is not None or sample is not None:
        raise UnetkitError(f"--{'output' if output is not None else 'sample'} is for --format bioimageio; "
                           f"--format {format.value} writes into the bundle's models/ folder")
    result = export_bundle(path, format=format.value, trust=trust)
    out.print(str(result.path), soft_wrap=True, markup=False)
    for shape, diff in result.checks:
        out.print(f"input {'x'.join(map(str, shape))}: max abs diff vs PyTorch {diff:.3g}", highlight=False)


def _export_bioimageio(path: str, output: Optional[Path], *, sample: Optional[Path], trust: bool) -> None:
    from unetkit.predict.bioimageio import export_bioimageio

    if output is None:
        raise UnetkitError("--format bioimageio needs -o NAME.zip, the package to write")
    result = export_bioimageio(path, output, sample=sample, trust=trust)
    out.print(str(result.path), soft_wrap=True, markup=False)
    shape = lambda s: "x".join(map(str, s))  # noqa: E731
    out.print(f"test input {shape(result.input_shape)} -> class probabilities {shape(result.output_shape)} "
              f"(halo {result.margin}); TorchScript vs PyTorch max abs diff {result.max_abs_diff:.3g}", highlight=False)
