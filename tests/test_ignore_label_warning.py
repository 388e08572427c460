"""A label value covering more than half of the annotated area (a likely ignore label) is named at training
start, once, as one yellow line that names --ignore-label."""

import importlib
import json
import logging
from pathlib import Path

import numpy as np
import tifffile

from unetkit.training.checks import warn_likely_ignore_label

weight_map = importlib.import_module("unetkit.transforms.weight_map")  # the package's weight_map is the function

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def _labels(tmp_path: Path, value: int) -> list[dict]:
    items = []
    for t in range(3):
        lab = np.zeros((40, 44), np.uint16)
        lab[2:6, 2:6], lab[10:14, 2:6], lab[2:6, 30:34] = 1, 2, 3
        lab[20:, :] = value  # one "object" larger than all the others together: unannotated pixels
        tifffile.imwrite(tmp_path / f"man_seg{t:03d}.tif", lab)
        items.append({"image": "unused", "label": str(tmp_path / f"man_seg{t:03d}.tif")})
    return items


def test_the_value_is_named_once_with_the_flag(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(weight_map, "_WARNED", set())
    data = _labels(tmp_path, 9)
    with caplog.at_level(logging.WARNING):
        assert warn_likely_ignore_label(data) == 9
        warn_likely_ignore_label(data)
        weight_map.WeightMap()(tifffile.imread(data[0]["label"])[None])  # a data-loader worker forked after it
    lines = [r.getMessage() for r in caplog.records if "covers" in r.getMessage()]
    assert len(lines) == 1 and "label 9 covers" in lines[0] and "--ignore-label 9" in lines[0]


def test_nothing_is_said_with_an_ignore_label_or_for_ordinary_labels(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(weight_map, "_WARNED", set())
    with caplog.at_level(logging.WARNING):
        assert warn_likely_ignore_label(_labels(tmp_path, 9), ignore_label=9) is None
        ordinary = tmp_path / "ordinary"
        ordinary.mkdir()
        assert warn_likely_ignore_label(_labels(ordinary, 0)) is None
    assert "covers" not in caplog.text


def test_every_recipe_checks_its_training_labels_at_the_start(tmp_path):
    for name in ("phc_u373", "dic_hela", "isbi2012_em", "spleen_ct_3d"):
        steps = json.loads((BUNDLES / name / "configs" / "train.json").read_text())["initialize"]
        checks = [s for s in steps if s.get("_target_") == "unetkit.training.checks.warn_likely_ignore_label"]
        assert checks == [{"_target_": "unetkit.training.checks.warn_likely_ignore_label", "data": "@train#datalist",
                           "ignore_label": "@ignore_label"}], name


def test_the_cli_shows_unetkit_warnings_as_one_yellow_line(capsys, monkeypatch):
    from unetkit.cli.app import _show_library_warnings

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    _show_library_warnings()
    _show_library_warnings()  # once per process, however many commands run
    logging.getLogger("unetkit.transforms.weight_map").warning("label %d covers 80%% of it: --ignore-label %d", 7, 7)
    err = capsys.readouterr().err
    assert err.count("label 7 covers") == 1 and len(err.strip().splitlines()) == 1
    assert "\x1b[33m" in err  # yellow
