"""The allow-list table: every recipe passes with it, every row is real, and docs/bundles.md shows it."""

import inspect
import pydoc
from pathlib import Path

import pytest

from unetkit.bundle import scan_bundle
from unetkit.bundle.allowlist import ALLOWLIST, DATA, RISKY_NAMES, _row, allowlist_markdown
from unetkit.bundle.safety import ALLOWED_ROOTS, _absolute, check_target

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "bundles").iterdir() if (p / "configs").is_dir())


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_recipe_passes_the_scan(recipe):
    findings = [str(f) for f in scan_bundle(recipe)]
    assert findings == [], f"a recipe uses something the allow-list lacks: add a row to unetkit/bundle/allowlist.py ({findings[0]})"


def test_the_docs_show_the_current_table():
    assert allowlist_markdown() in (ROOT / "docs" / "bundles.md").read_text(), \
        "docs/bundles.md is stale: run `make docs`"


@pytest.mark.parametrize("target", sorted(ALLOWLIST))
def test_every_row_names_a_callable_under_the_allowed_packages(target):
    obj = pydoc.locate(target)  # how MONAI resolves a _target_
    assert callable(obj) and not inspect.ismodule(obj), f"{target} does not resolve to a class or function"
    home = getattr(obj, "__module__", "") or ""
    assert home.split(".")[0] in ALLOWED_ROOTS, f"{target} lives in {home}"


@pytest.mark.parametrize("target", sorted(ALLOWLIST))
def test_every_listed_argument_is_a_parameter(target):
    try:
        params = inspect.signature(pydoc.locate(target)).parameters
    except ValueError:  # a builtin without a signature (torch.Generator)
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # passed on to another callable (monai.data.DataLoader -> torch's); the row still lists each name
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    assert set(ALLOWLIST[target].args) <= named, f"{target}: not parameters: {set(ALLOWLIST[target].args) - named}"


def test_no_row_takes_a_risky_argument_without_its_own_check():
    # a risky-looking name gets a check (or a described "any value", reviewed) of its own, never the default
    loose = [(r.target, n) for r in ALLOWLIST.values() for n, s in r.args.items()
             if RISKY_NAMES.fullmatch(n) and s is DATA and n != "load_dict"]
    assert loose == []


def test_a_row_is_one_line_and_a_risky_name_needs_a_check():
    row = _row("monai.transforms.RandFlipd", "keys prob spatial_axis")
    assert list(row.args) == ["keys", "prob", "spatial_axis"]
    with pytest.raises(ValueError, match="argument 'reader' looks risky"):
        _row("monai.transforms.LoadImage", "reader")


@pytest.mark.parametrize("target", ["torch.nn.Conv2d", "torch.nn.Conv3d", "monai.networks.nets.BasicUNet",
                                    "monai.handlers.CheckpointLoader", "monai.transforms.ScaleIntensityRanged",
                                    "unetkit.data.dataset_path"])
def test_the_targets_the_tests_bundles_use_are_allowed(target):
    assert check_target(target) is None


@pytest.mark.parametrize("at, value", [("a::b", "@::c"), ("a::b::c", "@::::x"), ("a", "@::x"), ("a::b", "%::x"),
                                       ("a::b", "$@::x + @::::y"), ("a", "@::::x"), ("a::b", "@net#x"), ("", "plain")])
def test_relative_ids_resolve_as_monai_resolves_them(at, value):
    from monai.bundle import ConfigParser

    def resolve(fn):
        try:
            return fn()
        except ValueError:
            return ValueError

    assert resolve(lambda: _absolute(value, at)) == resolve(lambda: ConfigParser.resolve_relative_ids(at, value))
