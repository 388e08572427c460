"""The bundle's inference.json under MONAI's own runner: SaveMaskd writes what `unetkit infer` writes."""

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


def test_monai_runner_writes_the_masks_unetkit_infer_writes(tmp_path, rng):
    bundle = make_tiny_bundle(tmp_path / "b")
    (tmp_path / "in").mkdir()
    sources = [write_image(tmp_path / "in" / "a.tif", rng.integers(0, 255, (45, 61), dtype=np.uint8),
                           ImageMeta("YX", spacing=(0.3, 0.3))),
               write_image(tmp_path / "in" / "b.tif", rng.integers(0, 4000, (37, 22), dtype=np.uint16))]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
           "--bundle_root", str(bundle), "--dataset_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "monai")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    predict_files(load_bundle_model(bundle, device="cpu"), sources, tmp_path / "unetkit")
    for name in ("a_mask.tif", "b_mask.tif"):
        ours, meta = read_image(tmp_path / "unetkit" / name)
        theirs, their_meta = read_image(tmp_path / "monai" / name)
        assert theirs.dtype == ours.dtype == np.uint16 and their_meta.spacing == meta.spacing
        np.testing.assert_array_equal(theirs, ours)
