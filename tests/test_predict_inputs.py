"""unetkit.predict inputs and output names: files, folders, quoted globs; <stem>_mask.<ext>; dtypes; collisions."""

from pathlib import Path

import numpy as np
import pytest

from unetkit.errors import UnetkitError
from unetkit.predict import check_distinct, collect_inputs, label_dtype, output_stem, plan_outputs
from unetkit.predict.writer import check_free, semantic_dtype


def _touch(folder: Path, *names: str) -> None:
    for n in names:
        p = folder / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_a_folder_gives_its_image_files_sorted_and_not_recursively(tmp_path):
    _touch(tmp_path, "t001.tif", "t000.tif", "scan.nii.gz", "notes.txt", ".hidden.tif", "._t000.tif", "sub/t002.tif")
    assert [p.name for p in collect_inputs([tmp_path])] == ["scan.nii.gz", "t000.tif", "t001.tif"]


def test_a_quoted_glob_is_expanded_here_and_recursive_with_two_stars(tmp_path):
    _touch(tmp_path, "a/t000.tif", "a/t001.tif", "a/x.png", "a/deep/t009.tif")
    assert [p.name for p in collect_inputs([f"{tmp_path}/a/t*.tif"])] == ["t000.tif", "t001.tif"]
    assert [p.name for p in collect_inputs([f"{tmp_path}/a/**/t*.tif"])] == ["t009.tif", "t000.tif", "t001.tif"]


def test_inputs_keep_the_given_order_and_appear_once(tmp_path):
    _touch(tmp_path, "b.tif", "a.tif")
    got = collect_inputs([tmp_path / "b.tif", f"{tmp_path}/*.tif", tmp_path])
    assert [p.name for p in got] == ["b.tif", "a.tif"] and all(p.is_absolute() for p in got)


def test_a_file_named_like_a_pattern_is_a_file(tmp_path):
    _touch(tmp_path, "[1].tif")
    assert [p.name for p in collect_inputs([str(tmp_path / "[1].tif")])] == ["[1].tif"]


def test_a_missing_file_is_kept_so_the_run_reports_it(tmp_path):
    assert collect_inputs([tmp_path / "gone.tif"]) == [tmp_path / "gone.tif"]


def test_a_pattern_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(UnetkitError, match=r"no file matches the pattern '.*/\*\.tif'"):
        collect_inputs([f"{tmp_path}/*.tif"])


def test_no_images_at_all_is_an_error(tmp_path):
    _touch(tmp_path, "notes.txt")
    with pytest.raises(UnetkitError, match="no image files to segment in"):
        collect_inputs([tmp_path])


@pytest.mark.parametrize("name, stem", [("a.tif", "a"), ("scan.nii.gz", "scan"), ("s.NII.GZ", "s"),
                                        ("x.ome.tif", "x"), ("v1.2.mha", "v1.2"), ("t000.TIFF", "t000")])
def test_the_stem_drops_the_image_extensions(name, stem):
    assert output_stem(name) == stem


@pytest.mark.parametrize("name, mask", [("a.tif", "a_mask.tif"), ("b.tiff", "b_mask.tiff"), ("scan.nii.gz", "scan_mask.nii.gz"),
                                        ("v.mha", "v_mask.mha"), ("p.png", "p_mask.png"), ("photo.jpg", "photo_mask.tif"),
                                        ("slide.bmp", "slide_mask.tif")])
def test_the_mask_keeps_the_format_unless_it_cannot_hold_labels(name, mask):
    paths = plan_outputs(name, "out")
    assert paths.mask == Path("out") / mask
    assert bool(paths.note) == (not mask.endswith(Path(name).suffix)), paths.note


def test_probabilities_are_tiff_except_for_nifti():
    assert plan_outputs("a.png", "o", probabilities=True).prob.name == "a_prob.tif"
    assert plan_outputs("s.nii.gz", "o", probabilities=True).prob.name == "s_prob.nii.gz"
    assert plan_outputs("s.nii.gz", "o", preview=True).preview.name == "s_preview.png"


def test_existing_outputs_are_refused_unless_overwrite(tmp_path):
    paths = plan_outputs("a.tif", tmp_path, preview=True)
    paths.preview.write_bytes(b"old")
    with pytest.raises(UnetkitError, match=r"a_preview\.png: exists already \(pass --overwrite"):
        check_free(paths, overwrite=False)
    check_free(paths, overwrite=True)


def test_two_inputs_with_one_stem_are_refused_before_any_work(tmp_path):
    with pytest.raises(UnetkitError, match=r"x/a\.tif and y/a\.tif would both write out/a_mask\.tif"):
        check_distinct([Path("x/a.tif"), Path("y/a.tif")], "out")
    check_distinct([Path("a.tif"), Path("a.png")], "out")  # a_mask.tif and a_mask.png
    with pytest.raises(UnetkitError, match=r"a\.tif and a\.png would both write out/a_preview\.png"):
        check_distinct([Path("a.tif"), Path("a.png")], "out", preview=True)
    with pytest.raises(UnetkitError, match="is itself an input"):
        check_distinct([tmp_path / "a.tif", tmp_path / "a_mask.tif"], tmp_path)
    check_distinct([Path("x/a.tif"), Path("x/b.tif")], "out")


def test_label_dtypes_are_the_smallest_that_hold_the_labels():
    assert [label_dtype(n) for n in (0, 65_535, 65_536)] == [np.uint16, np.uint16, np.uint32]
    assert [semantic_dtype(k) for k in (2, 256, 257)] == [np.uint8, np.uint8, np.uint16]
