"""The recipes are made from one source (recipes/: a base and one overlay each) and each value is written once."""

import json
from pathlib import Path

import pytest

from unetkit.bundle.assemble import GENERATED, assemble, overlay, recipe_names, stale
from unetkit.errors import BundleError

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def test_the_bundles_configs_are_current_with_their_source():
    assert not stale(), "bundles/ is out of date with recipes/: run `make bundles`"


def test_every_recipe_folder_has_an_overlay_and_every_overlay_a_folder():
    folders = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())
    assert recipe_names() == folders


@pytest.mark.parametrize("name", recipe_names())
def test_each_bundle_defines_its_network_once(name):
    texts = [p.read_text() for p in (BUNDLES / name / "configs").glob("*.json")]
    assert sum(t.count('"network_def":') for t in texts) == 1
    assert "network_def" in json.loads((BUNDLES / name / "configs" / "common.json").read_text())


@pytest.mark.parametrize("name", recipe_names())
def test_the_normalisation_numbers_are_written_once(name):
    common = assemble(name)["common.json"]["normalize"]
    numbers = {k: v for k, v in common.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    texts = "".join(p.read_text() for p in (BUNDLES / name / "configs").glob("*.json"))
    assert texts.count(common["_target_"]) == 1 and numbers


def test_an_overlay_sets_reaches_into_lists_and_removes():
    base = {"a": {"b": [1, {"c": 2}]}, "d": 3}
    assert overlay(base, {"a#b#1#c": 5, "~d": None, "e": [1]}) == {"a": {"b": [1, {"c": 5}]}, "e": [1]}
    assert base == {"a": {"b": [1, {"c": 2}]}, "d": 3}, "the base must not change"


def test_an_overlay_key_into_nothing_is_refused():
    with pytest.raises(BundleError, match="'a#b#7'.*no list item"):
        overlay({"a": {"b": [1]}}, {"a#b#7": 0})
    with pytest.raises(BundleError, match="nothing there to remove"):
        overlay({"a": 1}, {"~z": None})


def test_a_recipe_can_leave_a_file_out(tmp_path):
    (tmp_path / "base").mkdir()
    for f in GENERATED:
        (tmp_path / "base" / f).write_text("{}")
    (tmp_path / "volume.json").write_text(json.dumps({"paper.json": None, "common.json": {"tile": [8, 8, 8]}}))
    made = assemble("volume", source=tmp_path)
    assert "paper.json" not in made and made["common.json"] == {"tile": [8, 8, 8]}
