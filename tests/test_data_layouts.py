import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from unetkit.data import (annotated_datalist, ctc_datalist, ctc_frames, image_datalist, isbi2012_datalist,
                          msd_datalist, pairs_datalist)
from unetkit.errors import DataError
from unetkit.transforms import LoadImaged


def _tif(path: Path, shape=(5, 7), dtype=np.uint8):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, np.zeros(shape, dtype), photometric="minisblack")


def _ctc(root: Path, seq="01", frames=(0, 1, 2, 3), annotated=(1, 3), digits=3, truth="GT"):
    for t in frames:
        _tif(root / seq / f"t{t:0{digits}d}.tif")
    for t in annotated:
        _tif(root / f"{seq}_{truth}" / "SEG" / f"man_seg{t:0{digits}d}.tif", dtype=np.uint16)
    return root


def _names(items, key):
    return [Path(i[key]).name for i in items]


def test_ctc_datalist_lists_only_annotated_frames_paired_by_index(tmp_path):
    _ctc(tmp_path, annotated=(3, 1))
    items = ctc_datalist(tmp_path)
    assert _names(items, "image") == ["t001.tif", "t003.tif"]
    assert _names(items, "label") == ["man_seg001.tif", "man_seg003.tif"]
    assert all(Path(i["image"]).is_absolute() and set(i) == {"image", "label"} for i in items)
    assert Path(items[0]["label"]).parent == tmp_path / "01_GT" / "SEG"


def test_ctc_datalist_pairs_four_digit_frames(tmp_path):
    _ctc(tmp_path, frames=(0, 1234), annotated=(1234,), digits=4)
    (item,) = ctc_datalist(tmp_path)
    assert Path(item["image"]).name == "t1234.tif" and Path(item["label"]).name == "man_seg1234.tif"


def test_ctc_datalist_joins_sequences_in_order(tmp_path):
    _ctc(tmp_path, "01", annotated=(2,))
    _ctc(tmp_path, "02", annotated=(0,))
    items = ctc_datalist(tmp_path, ("02", "01"))
    assert [Path(i["image"]).parent.name for i in items] == ["02", "01"]


def test_ctc_datalist_reads_silver_truth(tmp_path):
    _ctc(tmp_path, annotated=(0,))
    _ctc(tmp_path, annotated=(0, 1, 2, 3), truth="ST")
    assert len(ctc_datalist(tmp_path, truth="ST")) == 4
    assert len(ctc_datalist(tmp_path, truth="GT")) == 1


def test_ctc_datalist_slice_annotations_of_3d_frames_carry_the_slice_index(tmp_path):
    for t in (0, 1):
        _tif(tmp_path / "01" / f"t{t:03d}.tif", shape=(9, 5, 7))
    for name in ("man_seg_001_007.tif", "man_seg_001_002.tif", "man_seg_000_004.tif"):
        _tif(tmp_path / "01_GT" / "SEG" / name, dtype=np.uint16)
    items = ctc_datalist(tmp_path)
    assert [(Path(i["image"]).name, i["frame"]) for i in items] == [("t000.tif", 4), ("t001.tif", 2), ("t001.tif", 7)]
    assert all(type(i["frame"]) is int for i in items)


def test_ctc_datalist_ignores_other_files_in_the_mask_folder(tmp_path):
    _ctc(tmp_path, annotated=(1,))
    (tmp_path / "01_GT" / "SEG" / "notes.txt").write_text("x")
    (tmp_path / "01_GT" / "SEG" / "man_track.txt").write_text("x")
    assert len(ctc_datalist(tmp_path)) == 1


def test_ctc_datalist_missing_sequence_names_the_folder_and_the_fetch_command(tmp_path):
    with pytest.raises(DataError, match=r"01.*no sequence folder.*unetkit data fetch phc_u373"):
        ctc_datalist(tmp_path)


def test_own_data_with_one_sequence_is_told_how_to_hold_out_a_second(tmp_path):
    _ctc(tmp_path, annotated=(1,))
    with pytest.raises(DataError, match=r"no sequence folder '02'.*sequence 01 only, and the recipes validate on 02: "
                                        r"put annotated frames held out from training in 02/ and their masks in "
                                        r"02_GT/SEG/"):
        ctc_datalist(tmp_path, sequences=["02"])


def test_ctc_datalist_missing_mask_folder_is_an_error(tmp_path):
    _ctc(tmp_path, annotated=())
    with pytest.raises(DataError, match="01_ST.*silver truth"):
        ctc_datalist(tmp_path, truth="ST")


def test_ctc_datalist_without_any_annotated_frame_is_an_error(tmp_path):
    _ctc(tmp_path, annotated=())
    (tmp_path / "01_GT" / "SEG").mkdir(parents=True)
    with pytest.raises(DataError, match="no annotated frame"):
        ctc_datalist(tmp_path)


def test_ctc_datalist_mask_without_its_image_is_an_error(tmp_path):
    _ctc(tmp_path, frames=(0, 1), annotated=(1, 5))
    with pytest.raises(DataError, match=r"man_seg005\.tif: mask of frame 5 has no image t005\.tif"):
        ctc_datalist(tmp_path)


def test_ctc_datalist_rejects_an_unknown_truth():
    with pytest.raises(ValueError, match="truth"):
        ctc_datalist(".", truth="gold")


def test_ctc_frames_lists_every_frame_in_time_order(tmp_path):
    _ctc(tmp_path, "02", frames=(10, 2, 0), annotated=())
    (tmp_path / "02" / "thumbs.db").write_text("x")
    assert _names([{"i": p} for p in ctc_frames(tmp_path, "02")], "i") == ["t000.tif", "t002.tif", "t010.tif"]


def test_ctc_frames_of_a_missing_or_empty_sequence_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no sequence folder '02'"):
        ctc_frames(tmp_path, "02")
    (tmp_path / "02").mkdir()
    with pytest.raises(DataError, match="no frame named"):
        ctc_frames(tmp_path, "02")


def test_isbi2012_datalist_has_one_item_per_slice(tmp_path):
    _tif(tmp_path / "train-volume.tif", shape=(3, 8, 8))
    _tif(tmp_path / "train-labels.tif", shape=(3, 8, 8))
    items = isbi2012_datalist(tmp_path)
    assert [i["frame"] for i in items] == [0, 1, 2]
    assert items[2] == {
        "image": str(tmp_path / "train-volume.tif"),
        "label": str(tmp_path / "train-labels.tif"),
        "frame": 2,
    }


def test_isbi2012_datalist_missing_file_names_it(tmp_path):
    _tif(tmp_path / "train-volume.tif", shape=(3, 8, 8))
    with pytest.raises(DataError, match=r"train-labels\.tif: missing.*fetch isbi2012"):
        isbi2012_datalist(tmp_path)


def test_isbi2012_datalist_stacks_of_different_length_are_an_error(tmp_path):
    _tif(tmp_path / "train-volume.tif", shape=(3, 8, 8))
    _tif(tmp_path / "train-labels.tif", shape=(2, 8, 8))
    with pytest.raises(DataError, match="3 slices but train-labels.tif has 2"):
        isbi2012_datalist(tmp_path)


def _msd(root: Path, names=("spleen_2", "spleen_10"), labels=None):
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
    for n in names:
        (root / "imagesTr" / f"{n}.nii.gz").write_bytes(b"x")
        (root / "imagesTr" / f"._{n}.nii.gz").write_bytes(b"mac")  # resource forks from the archive
    for n in names if labels is None else labels:
        (root / "labelsTr" / f"{n}.nii.gz").write_bytes(b"x")
    (root / "dataset.json").write_text(json.dumps({"name": "Spleen"}))
    return root


def test_msd_datalist_pairs_images_and_labels_and_skips_macos_files(tmp_path):
    items = msd_datalist(_msd(tmp_path))
    assert _names(items, "image") == ["spleen_10.nii.gz", "spleen_2.nii.gz"]
    assert items[0]["label"] == str(tmp_path / "labelsTr" / "spleen_10.nii.gz")


def test_msd_datalist_image_without_label_is_an_error(tmp_path):
    _msd(tmp_path, labels=("spleen_2",))
    with pytest.raises(DataError, match="1 image.*without a label.*spleen_10"):
        msd_datalist(tmp_path)


def test_msd_datalist_without_dataset_json_is_not_a_task_folder(tmp_path):
    _msd(tmp_path)
    (tmp_path / "dataset.json").unlink()
    with pytest.raises(DataError, match="no dataset.json.*fetch msd_spleen"):
        msd_datalist(tmp_path)


def test_image_datalist_lists_matching_images_sorted_without_macos_files(tmp_path):
    for name in ("b.tif", "a.tif", "._a.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert image_datalist(tmp_path) == [{"image": str(tmp_path / "a.tif")}, {"image": str(tmp_path / "b.tif")}]


def test_image_datalist_without_a_match_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"no file matches '\*\.png'"):
        image_datalist(tmp_path, "*.png")
    with pytest.raises(DataError, match="no such folder"):
        image_datalist(tmp_path / "missing")


# --- a user's own image / mask pairs ---------------------------------------------------------------------------


def _pairs(root: Path, names=("a", "b", "c"), masks="masks", mask_name="{}.tif", image_name="{}.tif"):
    for n in names:
        _tif(root / "images" / image_name.format(n))
        _tif(root / masks / mask_name.format(n), dtype=np.uint16)
    return root


def test_pairs_datalist_pairs_images_and_masks_by_name(tmp_path):
    _pairs(tmp_path, names=("b", "a"))
    _tif(tmp_path / "images" / "z.tif")  # no mask: not annotated, not listed
    items = pairs_datalist(tmp_path)
    assert _names(items, "image") == ["a.tif", "b.tif"] and _names(items, "label") == ["a.tif", "b.tif"]
    assert all(Path(i["image"]).parent == tmp_path / "images" and Path(i["label"]).parent == tmp_path / "masks"
               for i in items)


@pytest.mark.parametrize("masks, mask_name", [("labels", "{}.tif"), ("masks", "{}_mask.tif"), ("masks", "{}.png")])
def test_pairs_datalist_takes_a_labels_folder_mask_suffixes_and_other_formats(tmp_path, masks, mask_name):
    from PIL import Image

    for n in ("a", "b"):
        _tif(tmp_path / "images" / f"{n}.tif")
        (tmp_path / masks).mkdir(exist_ok=True)
        Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / masks / mask_name.format(n))
    assert _names(pairs_datalist(tmp_path), "label") == [mask_name.format("a"), mask_name.format("b")]


def test_pairs_datalist_reads_one_folder_of_cellpose_and_unetkit_mask_names(tmp_path):
    for n, suffix in (("x", "_masks"), ("y", "_mask")):
        _tif(tmp_path / f"{n}.tif")
        _tif(tmp_path / f"{n}{suffix}.tif", dtype=np.uint16)
    _tif(tmp_path / "unlabelled.tif")
    items = pairs_datalist(tmp_path)
    assert _names(items, "image") == ["x.tif", "y.tif"] and _names(items, "label") == ["x_masks.tif", "y_mask.tif"]


def test_pairs_datalist_names_a_stray_mask_and_refuses_two_mask_folders(tmp_path):
    _pairs(tmp_path)
    _tif(tmp_path / "masks" / "d.tif")
    with pytest.raises(DataError, match=r"d.tif.*has no image of the same name in images/"):
        pairs_datalist(tmp_path)
    (tmp_path / "masks" / "d.tif").unlink()
    _tif(tmp_path / "images" / "a.tiff")
    with pytest.raises(DataError, match="two images named a"):
        pairs_datalist(tmp_path)
    (tmp_path / "images" / "a.tiff").unlink()
    _tif(tmp_path / "masks" / "a_mask.tif")
    with pytest.raises(DataError, match="two masks named a: a.tif and a_mask.tif"):
        pairs_datalist(tmp_path)
    (tmp_path / "masks" / "a_mask.tif").unlink()
    _pairs(tmp_path, masks="labels")
    with pytest.raises(DataError, match="both masks/ and labels/"):
        pairs_datalist(tmp_path)


def test_annotated_datalist_holds_out_the_last_pairs_by_name_for_validation(tmp_path):
    _pairs(tmp_path, names=[f"img{i:02d}" for i in range(10)])
    train = annotated_datalist(tmp_path, ["01"], part="train")
    val = annotated_datalist(tmp_path, ["02"], part="validation")
    assert _names(val, "image") == ["img08.tif", "img09.tif"] and len(train) == 8   # a fifth, by default
    assert not {i["image"] for i in train} & {i["image"] for i in val}
    assert _names(annotated_datalist(tmp_path, part="validation", holdout=3), "image")[0] == "img07.tif"
    assert len(annotated_datalist(tmp_path, part="all")) == 10   # --folds splits them itself


def test_annotated_datalist_reads_a_ctc_folder_by_its_sequences(tmp_path):
    _ctc(tmp_path, "01")
    _ctc(tmp_path, "02", annotated=(0,))
    assert annotated_datalist(tmp_path, ["02"], part="validation") == ctc_datalist(tmp_path, ["02"])
    assert annotated_datalist(tmp_path, ["01"], part="train") == ctc_datalist(tmp_path, ["01"])


def test_a_single_annotated_image_is_split_along_its_longest_axis(tmp_path):
    image = np.arange(40 * 60, dtype=np.uint16).reshape(40, 60)
    labels = np.zeros((40, 60), np.uint16)
    labels[5:15, 45:55] = 7  # one object in the held-out strip
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "images" / "only.tif", image)
    tifffile.imwrite(tmp_path / "masks" / "only.tif", labels)
    train, = annotated_datalist(tmp_path, part="train")
    val, = annotated_datalist(tmp_path, part="validation")
    assert (train["region"], val["region"]) == ([[0, 40], [0, 48]], [[0, 40], [48, 60]])  # the last fifth of x
    assert annotated_datalist(tmp_path, part="validation", holdout=0.5)[0]["region"] == [[0, 40], [30, 60]]
    load = LoadImaged(["image", "label"], dtype=None, region_key="region")
    got = load(val)
    np.testing.assert_array_equal(got["image"][0], image[:, 48:])
    assert np.unique(got["label"]).tolist() == [0, 7] and load(train)["label"].shape == (1, 40, 48)
    with pytest.raises(DataError, match="holdout 2 counts images, and this folder has one annotated image"):
        annotated_datalist(tmp_path, part="train", holdout=2)
    assert len(annotated_datalist(tmp_path, part="all")) == 1


def test_annotated_datalist_says_what_is_missing(tmp_path):
    _ctc(tmp_path, "01")
    _pairs(tmp_path, names=("only",))
    with pytest.raises(DataError, match="both Cell Tracking Challenge sequences .* and image / mask pairs"):
        annotated_datalist(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="neither a Cell Tracking Challenge folder") as e:
        annotated_datalist(empty)
    assert "images/" in str(e.value) and "masks/" in str(e.value)
