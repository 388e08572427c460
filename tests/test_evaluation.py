import csv

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from unetkit.cli.app import app
from unetkit.errors import DataError
from unetkit.evaluation import evaluate_pairs, pair_folders, pair_key, score_arrays, summarise
from tiny_bundles import make_tiny_bundle

runner = CliRunner()


def _gt():
    gt = np.zeros((20, 24), np.uint16)
    gt[2:8, 2:8] = 1
    gt[10:18, 10:18] = 2
    return gt


@pytest.mark.parametrize("name,key", [("t007_mask.tif", 7), ("man_seg007.tif", 7), ("mask0007.tif", 7),
                                      ("cells_mask.tif", "cells"), ("cells.tif", "cells"), ("vol.nii.gz", "vol")])
def test_pairing_keys_follow_infer_and_ctc_names(name, key):
    assert pair_key(name) == key


def test_a_perfect_prediction_scores_perfectly():
    s = score_arrays(_gt(), _gt(), "x").scores
    assert s["iou"] == s["dice"] == s["seg"] == s["f1_50"] == 1.0
    assert s["rand_error"] == 0.0 and s["warping_error"] == 0.0 and s["vi_split"] == s["vi_merge"] == 0.0


def test_binary_masks_are_cut_into_objects():
    # a 0/255 reference (ISBI style) and a semantic 0/1 prediction: objects are their connected components
    gt = (_gt() > 0).astype(np.uint8) * 255
    s = score_arrays((gt > 0).astype(np.uint8), gt, "x")
    assert s.scores["seg"] == 1.0 and s.n_objects == 2


def test_seg_is_pooled_over_objects_not_averaged_over_images():
    one = score_arrays(_gt(), _gt(), "a")  # two objects, J = 1 each
    gt = np.zeros((20, 24), np.uint16)
    gt[2:8, 2:8] = 1
    missed = score_arrays(np.zeros_like(gt), gt, "b")  # one object, J = 0
    summary = summarise([one, missed])
    assert summary["seg"] == pytest.approx(2 / 3)  # (1 + 1 + 0) / 3, not (1 + 0) / 2
    assert summary["iou"] == pytest.approx(0.5)


def _ctc_like(tmp_path):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "01_GT" / "SEG"
    pred_dir.mkdir()
    gt_dir.mkdir(parents=True)
    for t in (0, 3):
        tifffile.imwrite(gt_dir / f"man_seg{t:03d}.tif", _gt())
    pred = _gt()
    pred[2:8, 2:5] = 0  # object 1 half missed: 18 of 36 px is not > 18 -> no match
    tifffile.imwrite(pred_dir / "t000_mask.tif", pred)
    tifffile.imwrite(pred_dir / "t003_mask.tif", _gt())
    tifffile.imwrite(pred_dir / "t005_mask.tif", _gt())  # not annotated: left out
    return pred_dir, gt_dir


def test_folders_pair_by_ctc_frame_number_and_write_csv_and_png(tmp_path):
    pred_dir, gt_dir = _ctc_like(tmp_path)
    pairs = pair_folders(pred_dir, gt_dir)
    assert [(p.pred.name, p.gt.name) for p in pairs] == [("t000_mask.tif", "man_seg000.tif"), ("t003_mask.tif", "man_seg003.tif")]
    results, summary, csv_path, png_path = evaluate_pairs(pairs, output=tmp_path / "ev")
    assert summary["seg"] == pytest.approx(3 / 4)
    rows = list(csv.DictReader(open(csv_path)))
    assert [r["image"] for r in rows] == ["man_seg000", "man_seg003", "ALL"]
    assert float(rows[-1]["seg"]) == pytest.approx(0.75)
    assert png_path.stat().st_size > 0 and png_path.read_bytes()[:4] == b"\x89PNG"


def test_a_reference_without_prediction_is_an_error(tmp_path):
    pred_dir, gt_dir = _ctc_like(tmp_path)
    (pred_dir / "t003_mask.tif").unlink()
    with pytest.raises(DataError, match="1 reference.*no prediction.*man_seg003"):
        pair_folders(pred_dir, gt_dir)


def test_stacks_are_scored_frame_by_frame(tmp_path):
    stack = np.stack([_gt(), _gt(), np.zeros_like(_gt())])
    tifffile.imwrite(tmp_path / "s_mask.tif", stack)
    tifffile.imwrite(tmp_path / "s.tif", np.stack([_gt(), _gt(), _gt()]))
    r = runner.invoke(app, ["evaluate", str(tmp_path / "s_mask.tif"), str(tmp_path / "s.tif"), "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(open(tmp_path / "ev" / "evaluation.csv")))
    assert [r["image"] for r in rows] == ["s#0", "s#1", "s#2", "ALL"]
    assert float(rows[2]["seg"]) == 0.0 and float(rows[-1]["seg"]) == pytest.approx(4 / 6)


def test_cli_reports_seg_for_a_ctc_prediction_folder(tmp_path):
    pred_dir, gt_dir = _ctc_like(tmp_path)
    r = runner.invoke(app, ["evaluate", str(pred_dir), str(gt_dir)])
    assert r.exit_code == 0, r.output
    assert "SEG pooled" in r.output and "seg" in r.output
    rows = list(csv.DictReader(open(pred_dir / "evaluation" / "evaluation.csv")))
    assert rows[-1]["image"] == "ALL" and float(rows[-1]["seg"]) == pytest.approx(0.75)
    r = runner.invoke(app, ["evaluate", str(pred_dir)])
    assert r.exit_code == 2 and "missing GT" in r.output


def _tiny_bundle(tmp_path, recipe):
    """A repo bundle with a tiny network and random weights: predictions are poor but real."""
    return make_tiny_bundle(tmp_path / recipe, recipe, [2, 4, 8, 16, 32])


def test_evaluate_bundle_segments_the_validation_sequence_and_scores_what_it_wrote(tmp_path):
    from unetkit.data import make_demo
    from unetkit.evaluation import score_pair
    from unetkit.evaluation.pairing import Pair

    data = make_demo(tmp_path / "demo", frames=2, shape=(48, 64))
    bundle = _tiny_bundle(tmp_path, "phc_u373")
    r = runner.invoke(app, ["evaluate", str(bundle), "--data", str(data), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    written = sorted(p.name for p in (bundle / "eval" / "predictions").iterdir())
    assert written == ["t000_mask.tif", "t001_mask.tif"]  # sequence 02, the bundle's validation split
    assert tifffile.imread(bundle / "eval" / "predictions" / "t000_mask.tif").shape == (48, 64)
    rows = list(csv.DictReader(open(bundle / "eval" / "evaluation.csv")))
    assert [r["image"] for r in rows] == ["02/0", "02/1", "ALL"]
    again = score_pair(Pair("x", bundle / "eval" / "predictions" / "t001_mask.tif", data / "02_GT" / "SEG" / "man_seg001.tif"))
    assert float(rows[1]["iou"]) == pytest.approx(again[0].scores["iou"], abs=1e-6)  # the CSV keeps 6 decimals


def test_evaluate_bundle_cuts_stack_slices_for_isbi(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "isbi"
    data.mkdir()
    tifffile.imwrite(data / "train-volume.tif", rng.integers(0, 255, (7, 40, 44), dtype=np.uint8))
    tifffile.imwrite(data / "train-labels.tif", np.where(rng.random((7, 40, 44)) < 0.8, 255, 0).astype(np.uint8))
    bundle = _tiny_bundle(tmp_path, "isbi2012_em")
    r = runner.invoke(app, ["evaluate", str(bundle), "--data", str(data), "--device", "cpu", "-o", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    # the bundle holds out the last 5 slices
    assert sorted(p.name for p in (tmp_path / "ev" / "reference").iterdir()) == [f"train-volume_{i:03d}.tif" for i in range(2, 7)]
    ref = tifffile.imread(tmp_path / "ev" / "reference" / "train-volume_004.tif")
    assert (ref == tifffile.imread(data / "train-labels.tif")[4]).all()
    assert len(list((tmp_path / "ev" / "predictions").glob("*_mask.tif"))) == 5


def test_evaluate_bundle_without_the_data_says_how_to_get_it(tmp_path):
    bundle = _tiny_bundle(tmp_path, "phc_u373")
    r = runner.invoke(app, ["evaluate", str(bundle), "--data", str(tmp_path / "nowhere"), "--device", "cpu"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "nowhere" in r.output


def test_the_table_fits_80_columns_without_cutting_long_names(tmp_path):
    name = "2024-03-15_HeLa_H2B-GFP_position07_timelapse_after_treatment"
    tifffile.imwrite(tmp_path / f"{name}_mask.tif", _gt())
    tifffile.imwrite(tmp_path / f"{name}.tif", _gt())
    args = ["evaluate", str(tmp_path / f"{name}_mask.tif"), str(tmp_path / f"{name}.tif"), "-o", str(tmp_path / "ev")]
    r = runner.invoke(app, args, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    assert max(len(line) for line in r.output.splitlines()) <= 80 and "…" not in r.output
    first_column = [line.split("│")[1].strip() for line in r.output.splitlines() if line.startswith("│")]
    assert name in "".join(first_column)  # folded over lines, whole
    assert "rand_error, warping_error: in the CSV" in r.output
