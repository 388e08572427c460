"""Partial annotation in Cell Tracking Challenge layouts: cells with a tracking marker and no segmentation are
ignored in training (unetkit.transforms.partial), wired through the recipes' ignore label."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from unetkit.bundle.config import merged_config
from unetkit.data import ctc_datalist
from unetkit.transforms import LoadImaged, MarkUnannotatedd, unannotated_mask

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "phc_u373"
CELLS = {1: (slice(6, 22), slice(6, 22)), 2: (slice(30, 46), slice(8, 24)), 3: (slice(10, 26), slice(36, 52))}


def _cells(ids) -> np.ndarray:
    lab = np.zeros((56, 60), np.uint16)
    for i in ids:
        lab[CELLS[i]] = i
    return lab


def _markers() -> np.ndarray:
    """The tracking truth: a small blob inside every cell (CTC TRA markers are not the cell's outline)."""
    tra = np.zeros((56, 60), np.uint16)
    for i, (ys, xs) in CELLS.items():
        cy, cx = (ys.start + ys.stop) // 2, (xs.start + xs.stop) // 2
        tra[cy - 2:cy + 2, cx - 2:cx + 2] = i
    return tra


@pytest.fixture
def ctc(tmp_path) -> Path:
    """Sequence 01: two frames, gold SEG of frame 0 draws cell 1 only, TRA marks all three in both frames;
    silver SEG of both frames draws all three. Sequence 02 (validation) alike."""
    root = tmp_path / "CTC"
    rng = np.random.default_rng(0)
    for seq in ("01", "02"):
        for sub in (seq, f"{seq}_GT/SEG", f"{seq}_GT/TRA", f"{seq}_ST/SEG"):
            (root / sub).mkdir(parents=True)
        for t in (0, 1):
            tifffile.imwrite(root / seq / f"t{t:03d}.tif", rng.integers(0, 255, (56, 60), dtype=np.uint8))
            tifffile.imwrite(root / f"{seq}_GT/TRA/man_track{t:03d}.tif", _markers())
            tifffile.imwrite(root / f"{seq}_ST/SEG/man_seg{t:03d}.tif", _cells((1, 2, 3)))
        tifffile.imwrite(root / f"{seq}_GT/SEG/man_seg000.tif", _cells((1,)))
    return root


def test_gold_items_carry_the_frames_tracking_markers_and_silver_items_do_not(ctc):
    gold = ctc_datalist(ctc, ("01",), truth="GT")
    assert [Path(i["track"]).name for i in gold] == ["man_track000.tif"]
    assert all("track" not in i for i in ctc_datalist(ctc, ("01",), truth="ST"))


def test_cells_with_a_marker_and_no_segmentation_are_unannotated_to_their_edge():
    seg, tra = _cells((1,)), _markers()
    mask = unannotated_mask(seg, tra)
    for i in (2, 3):  # the marker grown by the segmented cells' radius covers the whole unsegmented cell
        assert mask[CELLS[i]].mean() > 0.95
    assert not mask[seg > 0].any()  # annotated pixels are never ignored
    assert mask.mean() < 0.5  # background far from any unannotated cell stays background
    assert not unannotated_mask(_cells((1, 2, 3)), tra).any()  # a complete segmentation leaves nothing out


@pytest.mark.parametrize("ignore_label", [None, 65535])
def test_the_recipe_gives_unannotated_cells_no_weight(ctc, ignore_label):
    """bundles/phc_u373's own training preprocessing on the layout: weight 0 over cells 2 and 3 (marked, not
    segmented), with or without an ignore label; with one, the label carries it there too."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(merged_config(BUNDLE, "train.json"))
    parser["bundle_root"], parser["dataset_dir"], parser["ignore_label"] = str(BUNDLE), str(ctc), ignore_label
    items = parser.get_parsed_content("train#datalist")
    out = parser.get_parsed_content("train#preprocessing")(dict(items[0]))
    seen = MarkUnannotatedd("label", ignore_value=ignore_label)(LoadImaged("label", dtype=None)(dict(items[0])))
    weight = np.asarray(out["weight"])[0]
    for i in (2, 3):
        assert weight[CELLS[i]].max() == 0
    assert (weight[CELLS[1]] > 0).all() and (weight[_cells((1, 2, 3)) == 0][:200] > 0).all()
    assert "unannotated" not in out and "track" not in out  # dropped before the random transforms
    if ignore_label is not None:
        assert (np.asarray(seen["label"])[0][CELLS[2]] == ignore_label).mean() > 0.95
