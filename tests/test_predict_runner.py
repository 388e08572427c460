"""The bundle's inference.json under MONAI's own runner: SaveMaskd writes what `unetkit infer` writes."""

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from unetkit.io import ImageMeta, read_image, write_image
from unetkit.predict import load_bundle_model, predict_files
from unetkit.transforms import SaveMask, SaveMaskd
from tiny_bundles import make_tiny_bundle


def test_savemask_writes_the_labels_with_the_input_calibration(tmp_path):
    src = write_image(tmp_path / "cells.tif", np.zeros((5, 33, 37), np.uint16), ImageMeta("ZYX", spacing=(2.0, 0.5, 0.5)))
    labels = torch.zeros((1, 5, 33, 37), dtype=torch.int32)
    labels[0, 1:3, 4:9, 5:7] = 70_000  # more labels than uint16 holds
    out = SaveMaskd("pred", tmp_path / "eval")({"pred": labels, "image_path": str(src)})
    mask, meta = read_image(tmp_path / "eval" / "cells_mask.tif")
    assert out["pred"] is labels and mask.dtype == np.uint32 and mask.shape == (5, 33, 37)
    assert meta.axes == "ZYX" and meta.spacing == (2.0, 0.5, 0.5) and mask.max() == 70_000


def test_savemask_keeps_a_nifti_affine_and_drops_an_rgb_channel(tmp_path):
    affine = np.diag([0.7, 0.8, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.zeros((9, 8, 7), np.int16), affine), tmp_path / "scan.nii.gz")
    SaveMask(tmp_path / "eval", kind="semantic")(np.ones((1, 9, 8, 7)), tmp_path / "scan.nii.gz")
    mask = nib.load(tmp_path / "eval" / "scan_mask.nii.gz")
    assert mask.shape == (9, 8, 7) and np.allclose(mask.affine, affine) and mask.get_data_dtype() == np.uint8
    rgb = write_image(tmp_path / "rgb.tif", np.zeros((33, 37, 3), np.uint8), ImageMeta("YXS"))
    assert tifffile.imread(SaveMask(tmp_path / "eval")(np.zeros((1, 33, 37)), rgb)).shape == (33, 37)


def test_savemaskd_asks_for_the_path_not_the_loaded_image(tmp_path):
    with pytest.raises(ValueError, match=r"needs the input file's path under 'image'.*CopyItemsd"):
        SaveMaskd("pred", tmp_path, source_key="image")({"pred": np.zeros((1, 3, 3)), "image": torch.zeros(1, 3, 3)})
    with pytest.raises(ValueError, match=r"labels of shape \(4, 4\) do not fit"):
        src = write_image(tmp_path / "a.tif", np.zeros((3, 3), np.uint8))
        SaveMask(tmp_path / "eval")(np.zeros((1, 4, 4)), src)


def _monai_run(bundle, data, out) -> None:
    """MONAI's own runner on the bundle's layered inference configs, as the model zoo's READMEs say."""
    files = [str(bundle / "configs" / n) for n in ("common.json", "inference.json")]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(files),
           "--bundle_root", str(bundle), "--dataset_dir", str(data), "--output_dir", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def _images_2d(folder, rng):
    folder.mkdir()
    return [write_image(folder / "a.tif", rng.integers(0, 255, (45, 61), dtype=np.uint8), ImageMeta("YX", spacing=(0.3, 0.3))),
            write_image(folder / "b.tif", rng.integers(0, 4000, (37, 22), dtype=np.uint16))]


def _same_masks(a, b, names) -> None:
    for name in names:
        ours, meta = read_image(a / name)
        theirs, their_meta = read_image(b / name)
        assert theirs.dtype == ours.dtype and their_meta.spacing == meta.spacing
        np.testing.assert_array_equal(theirs, ours)


def test_monai_runner_writes_the_masks_unetkit_infer_writes(tmp_path, rng):
    bundle = make_tiny_bundle(tmp_path / "b")
    sources = _images_2d(tmp_path / "in", rng)
    _monai_run(bundle, tmp_path / "in", tmp_path / "monai")
    predict_files(load_bundle_model(bundle, device="cpu"), sources, tmp_path / "unetkit")
    _same_masks(tmp_path / "unetkit", tmp_path / "monai", ("a_mask.tif", "b_mask.tif"))
    assert read_image(tmp_path / "unetkit" / "a_mask.tif")[0].dtype == np.uint16


def test_a_transform_added_to_the_recipe_reaches_both_runners(tmp_path, rng):
    """Adding a transform to a recipe's inference is one edit, in one file, and both runners pick it up."""
    bundle = make_tiny_bundle(tmp_path / "b")
    sources = _images_2d(tmp_path / "in", rng)
    predict_files(load_bundle_model(bundle, device="cpu"), sources, tmp_path / "before")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["preprocessing"]["transforms"].append(
        {"_target_": "monai.transforms.ScaleIntensityRanged", "keys": "image", "a_min": -1.0, "a_max": 1.0, "b_min": -1.0, "b_max": 3.0})
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    _monai_run(bundle, tmp_path / "in", tmp_path / "monai")
    predict_files(load_bundle_model(bundle, device="cpu"), sources, tmp_path / "unetkit")
    _same_masks(tmp_path / "unetkit", tmp_path / "monai", ("a_mask.tif", "b_mask.tif"))
    before, after = (read_image(tmp_path / d / "a_mask.tif")[0] for d in ("before", "unetkit"))
    assert not np.array_equal(before, after), "the added transform changed nothing"


def test_monai_runner_and_unetkit_infer_agree_on_a_3d_recipe(tmp_path):
    """The spleen recipe: turned to RAS, resampled, segmented, returned to the scan's grid, by both."""
    bundle = make_tiny_bundle(tmp_path / "b", recipe="spleen_ct_3d", features=[2, 4, 8, 16])
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["inferer"]["tile"] = None
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    (tmp_path / "in").mkdir()
    vol = np.random.default_rng(0).integers(-200, 300, (19, 14, 9)).astype(np.int16)
    affine = np.array([[-1.7, 0, 0, 10.0], [0, 1.2, 0, -20.0], [0, 0, 3.0, 30.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "in" / "scan.nii.gz")
    _monai_run(bundle, tmp_path / "in", tmp_path / "monai")
    model = load_bundle_model(bundle, device="cpu")
    assert not model.decode_instances  # the recipe's decode gives class indices
    [r] = predict_files(model, [tmp_path / "in" / "scan.nii.gz"], tmp_path / "unetkit")
    assert r.ok, r.message
    ours, theirs = (nib.load(tmp_path / d / "scan_mask.nii.gz") for d in ("unetkit", "monai"))
    assert ours.shape == theirs.shape == vol.shape and np.allclose(ours.affine, theirs.affine)
    np.testing.assert_array_equal(np.asarray(ours.dataobj), np.asarray(theirs.dataobj))
