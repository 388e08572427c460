"""``unetkit plan DATA [--bundle B]``: what the training data measure, and the settings derived from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from unetkit.cli.console import out


def plan(
    data: Annotated[Path, typer.Argument(help="The training data set folder (the layout the bundle reads: CTC, ISBI 2012, MSD).")],
    bundle: Annotated[str, typer.Option("--bundle", "-b", help="The bundle whose recipe is planned (default: phc_u373).")] = "bundles/phc_u373",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where plan.json goes (default: DATA/plan.json).")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Training steps the plan is for (default: the bundle's).")] = None,
    trust: Annotated[bool, typer.Option("--trust", help="Skip the safety scan of the bundle's configs.")] = False,
) -> None:
    """Measure DATA (sizes, intensities, object diameter, touching objects) and show the settings `unetkit train` takes from it."""
    from unetkit.bundle import open_bundle, read_config
    from unetkit.bundle.config import CONFIG_NAMES
    from unetkit.bundle.recipes import recipe_path
    from unetkit.plan import plan_bundle

    source = Path(bundle) if Path(bundle).exists() else recipe_path(bundle)
    folder = open_bundle(source, trust=trust)
    configs = {n: read_config(folder / "configs" / n) for n in CONFIG_NAMES if (folder / "configs" / n).is_file()}
    result = plan_bundle(configs, data, max_steps=steps)
    path = result.write(output or Path(data) / "plan.json")
    fp = result.fingerprint
    facts = Table(title=f"fingerprint of {data}", show_header=False)
    d = fp["diameter"]
    annotated = ("one image, cut in two: a part to train on, the rest held out for validation"  # split_image
                 if fp.get("image_parts") else f"{fp['annotated']} to train on, {fp.get('held_out', 0)} held out for validation")
    for name, value in (
        ("annotated images", f"{annotated} (+{fp['unannotated']} without labels)"),
        ("image sizes", ", ".join("x".join(map(str, s)) for s in fp["sizes"])),
        ("pixel size", ", ".join("x".join(map(str, s)) for s in fp["spacing"]) or "not recorded"),
        ("intensity 1st / 50th / 99.8th", " / ".join(f"{fp['intensity'][k]:.4g}" for k in ("1.0", "50.0", "99.8"))),
        ("objects", str(fp["objects"])),
        ("object diameter (median, 5th-95th pct)", f"{d['median']:.1f} px ({d['p5']:.1f}-{d['p95']:.1f})"),
        ("touching objects", f"{100 * fp['touching_fraction']:.0f}%"),
        *([("labels", f"{fp['mask_labels']} of {fp['annotated']} are masks (one value), read as their connected "
                      "parts: touching objects in them stay one; instance labels separate them")]
          if fp.get("mask_labels") else []),
    ):
        facts.add_row(name, value)
    out.print(facts)
    chosen = Table(title="settings for training", show_header=True)
    for column in ("config id", "value", "why"):
        chosen.add_column(column, overflow="fold")
    for key, value in result.settings.items():
        chosen.add_row(key, str(value), result.reasons.get(key, ""))
    out.print(chosen)
    out.print(f"plan: {path}  (`unetkit train` applies it; --set wins over it, --no-plan skips it)")
