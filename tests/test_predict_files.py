"""unetkit.predict: one file in, masks of its shape and calibration out, for TIFF, stacks, RGB, NIfTI volumes.

Most tests use "threshold bundles": a real bundle folder whose network is a 1x1 convolution with logits
(10 - 20 x, 20 x - 10), i.e. foreground exactly where the normalised pixel exceeds 0.5. Their outputs are
known in advance, so the tests compare with a reference (scipy's connected components of the thresholded
image) rather than check shapes only.
"""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from scipy import ndimage as ndi

from unetkit.bundle.assemble import overlay
from unetkit.io import ImageMeta, read_image, write_image
from unetkit.networks import UNet
from unetkit.predict import PredictOptions, load_bundle_model, predict_file, predict_files
from unetkit.transforms import PercentileNormalize

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def _bundle(root: Path, recipe: str, network_def: dict, state: dict, **changes) -> Path:
    """The recipe with ``network_def`` and MONAI-id ``changes``, each made in the config file that has its id."""
    folder = root / recipe
    shutil.copytree(BUNDLES / recipe, folder)
    common = json.loads((folder / "configs" / "common.json").read_text())
    changes = {"network_def": network_def, **changes}
    for name in ("common.json", "inference.json"):
        path = folder / "configs" / name
        mine = {k: v for k, v in changes.items() if (k.lstrip("~").split("#")[0] in common) == (name == "common.json")}
        path.write_text(json.dumps(overlay(json.loads(path.read_text()), mine)))
    if network_def["_target_"] != "unetkit.networks.UNet":  # the paper overlay sets the UNet's norm and dropout
        (folder / "configs" / "paper.json").unlink(missing_ok=True)
    (folder / "models").mkdir()
    torch.save(state, folder / "models" / "model.pt")
    return folder


def _threshold_state(dims: int) -> dict:
    shape = (2, 1) + (1,) * dims
    return {"weight": torch.tensor([-20.0, 20.0]).reshape(shape), "bias": torch.tensor([10.0, -10.0])}


@pytest.fixture(scope="module")
def threshold2d(tmp_path_factory):
    net = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 1}
    return _bundle(tmp_path_factory.mktemp("t2"), "phc_u373", net, _threshold_state(2), **{"inferer#tile": None})


@pytest.fixture(scope="module")
def model2d(threshold2d):
    return load_bundle_model(threshold2d, device="cpu")


@pytest.fixture(scope="module")
def unet2d(tmp_path_factory):
    torch.manual_seed(0)
    net = {"_target_": "unetkit.networks.UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 2,
           "features": [4, 8, 16, 32, 64], "padding": "valid"}
    state = UNet(features=(4, 8, 16, 32, 64)).state_dict()
    paper = {"_target_": "unetkit.transforms.AsInstancesd", "keys": "pred"}  # the decoder that streams
    folder = _bundle(tmp_path_factory.mktemp("u2"), "phc_u373", net, state, decode=paper)
    return load_bundle_model(folder, device="cpu")


def _reference(image: np.ndarray, lower=1.0, upper=99.8) -> np.ndarray:
    """What the threshold bundle must give: components of (percentile-normalised image > 0.5)."""
    norm = PercentileNormalize(lower, upper)(image[None].astype(np.float32))[0]
    return ndi.label(norm > 0.5)[0]


def _cells(shape, boxes, dtype=np.uint8, fg=200, bg=10):
    img = np.full(shape, bg, dtype)
    for box in boxes:
        img[box] = fg
    return img


@pytest.mark.parametrize("dtype, shape", [(np.uint8, (33, 37)), (np.uint16, (41, 30))])
def test_tiff_masks_have_the_input_shape_and_the_reference_labels(tmp_path, model2d, dtype, shape):
    img = _cells(shape, [np.s_[3:9, 4:12], np.s_[15:30, 5:9], np.s_[20:25, 20:29]], dtype, fg=3000 if dtype == np.uint16 else 200)
    src = write_image(tmp_path / "a.tif", img, ImageMeta("YX", spacing=(0.4, 0.4)))
    r = predict_file(model2d, src, tmp_path / "out")
    mask, meta = read_image(tmp_path / "out" / "a_mask.tif")
    assert r.ok and r.objects == 3 and r.shape == shape
    assert mask.shape == shape and mask.dtype == np.uint16 and meta.spacing == (0.4, 0.4)
    np.testing.assert_array_equal(mask, _reference(img))


def test_a_unet_bundle_gives_masks_of_odd_sized_inputs(tmp_path, unet2d, rng):
    paths = [write_image(tmp_path / "a.tif", rng.integers(0, 255, (45, 61), dtype=np.uint8)),
             write_image(tmp_path / "b.tif", rng.integers(0, 4000, (37, 22), dtype=np.uint16))]
    results = predict_files(unet2d, paths, tmp_path / "out")
    assert [r.status for r in results] == ["ok", "ok"]
    assert tifffile.imread(tmp_path / "out" / "a_mask.tif").shape == (45, 61)
    assert tifffile.imread(tmp_path / "out" / "b_mask.tif").shape == (37, 22)


def test_a_time_lapse_stack_is_segmented_frame_by_frame(tmp_path, model2d):
    frames = np.stack([_cells((33, 37), [np.s_[2 + t:8 + t, 3:9], np.s_[20:30, 10 + 3 * t:16 + 3 * t]]) for t in range(3)])
    frames[1, 12:16, 25:30] = 200  # a third cell in frame 1 only
    src = write_image(tmp_path / "movie.tif", frames, ImageMeta("TYX"))
    r = predict_file(model2d, src, tmp_path / "out")
    mask, meta = read_image(tmp_path / "out" / "movie_mask.tif")
    assert r.ok and r.objects == 7 and mask.shape == (3, 33, 37) and meta.axes == "TYX"
    for t in range(3):  # each frame numbered on its own, as the Cell Tracking Challenge's masks are
        np.testing.assert_array_equal(mask[t], _reference(frames[t]))


def test_touching_cells_are_separate_instances_but_one_class(tmp_path, model2d):
    # Two cells sharing an edge except for the one-pixel gap the paper's weight map teaches the network.
    img = _cells((33, 37), [np.s_[5:25, 5:15], np.s_[5:25, 16:30]])
    src = write_image(tmp_path / "pair.tif", img)
    inst = predict_file(model2d, src, tmp_path / "inst")
    sem = predict_file(model2d, src, tmp_path / "sem", PredictOptions(instances=False))
    labels = tifffile.imread(tmp_path / "inst" / "pair_mask.tif")
    classes = tifffile.imread(tmp_path / "sem" / "pair_mask.tif")
    assert inst.objects == 2 and sem.objects is None
    assert set(np.unique(labels[5:25, 5:15])) == {1} and set(np.unique(labels[5:25, 16:30])) == {2}
    assert classes.dtype == np.uint8 and set(np.unique(classes)) == {0, 1}
    np.testing.assert_array_equal(classes, labels > 0)


def test_probabilities_are_float32_with_the_class_axis_first_and_sum_to_one(tmp_path, unet2d, rng):
    src = write_image(tmp_path / "a.tif", rng.integers(0, 255, (33, 37), dtype=np.uint8))
    r = predict_file(unet2d, src, tmp_path / "out", PredictOptions(probabilities=True, instances=False))
    probs, meta = read_image(tmp_path / "out" / "a_prob.tif")
    classes = tifffile.imread(tmp_path / "out" / "a_mask.tif")
    assert r.ok and probs.dtype == np.float32 and probs.shape == (2, 33, 37) and meta.axes == "CYX"
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(probs.argmax(0), classes)


def test_the_preview_is_an_rgb_png_of_the_input_size_with_outlines(tmp_path, model2d):
    src = write_image(tmp_path / "a.tif", _cells((33, 37), [np.s_[5:20, 5:15]]))
    r = predict_file(model2d, src, tmp_path / "out", PredictOptions(preview=True))
    png = Image.open(tmp_path / "out" / "a_preview.png")
    assert r.ok and png.mode == "RGB" and png.size == (37, 33)
    rgb = np.asarray(png)
    assert rgb[5, 5].tolist() == [255, 220, 0] and rgb[10, 10].tolist() == [255, 255, 255]
    assert rgb[30, 30].tolist() == [0, 0, 0]


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, model2d):
    src = write_image(tmp_path / "a.tif", _cells((33, 37), [np.s_[5:20, 5:15]]))
    mask = tmp_path / "out" / "a_mask.tif"
    mask.parent.mkdir()
    mask.write_bytes(b"an earlier result")
    refused = predict_file(model2d, src, tmp_path / "out")
    assert refused.status == "failed" and "exists already" in refused.message and "--overwrite" in refused.message
    assert mask.read_bytes() == b"an earlier result"
    replaced = predict_file(model2d, src, tmp_path / "out", PredictOptions(overwrite=True))
    assert replaced.ok and tifffile.imread(mask).shape == (33, 37)


def test_an_unreadable_file_fails_alone(tmp_path, model2d):
    good = write_image(tmp_path / "good.tif", _cells((33, 37), [np.s_[5:20, 5:15]]))
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00 truncated")
    results = predict_files(model2d, [bad, good], tmp_path / "out")
    assert [r.status for r in results] == ["failed", "ok"]
    assert "bad.tif" in results[0].message and not (tmp_path / "out" / "bad_mask.tif").exists()
    assert (tmp_path / "out" / "good_mask.tif").is_file()


def test_rgb_is_converted_to_grey_and_said_so(tmp_path, model2d):
    rgb = np.zeros((33, 37, 3), np.uint8)
    rgb[5:20, 5:15] = (200, 150, 90)  # grey 0.299*200 + 0.587*150 + 0.114*90 = 158
    src = write_image(tmp_path / "c.tif", rgb, ImageMeta("YXS"))
    r = predict_file(model2d, src, tmp_path / "out")
    mask = tifffile.imread(tmp_path / "out" / "c_mask.tif")
    assert r.ok and "RGB -> grey" in r.notes and mask.shape == (33, 37) and r.objects == 1


def test_a_multichannel_image_the_bundle_cannot_take_is_refused(tmp_path, model2d):
    src = write_image(tmp_path / "two.tif", np.zeros((2, 33, 37), np.uint16), ImageMeta("CYX"))
    r = predict_file(model2d, src, tmp_path / "out")
    assert r.status == "failed" and "has 2 channel(s)" in r.message and "takes 1" in r.message


def test_a_jpeg_gives_a_tiff_mask_and_says_so(tmp_path, model2d):
    Image.fromarray(_cells((33, 37), [np.s_[5:20, 5:15]])).save(tmp_path / "photo.jpg", quality=95)
    r = predict_file(model2d, tmp_path / "photo.jpg", tmp_path / "out")
    assert r.ok and r.outputs == [tmp_path / "out" / "photo_mask.tif"] and "JPEG in: written as TIFF" in r.notes
    assert tifffile.imread(r.outputs[0]).shape == (33, 37)


# ---------------------------------------------------------------- 3D volumes


def _bundle3d(root: Path, pixdim) -> Path:
    """The spleen recipe with a threshold for a network; no Spacingd in its preprocessing when ``pixdim`` is None."""
    net = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 2, "kernel_size": 1}
    changes = {"inferer#tile": None, "pixdim": pixdim}
    if pixdim is None:
        changes["~preprocessing#transforms#1"] = None
    return _bundle(root, "spleen_ct_3d", net, _threshold_state(3), **changes)


def _volume(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    vol = np.full((21, 17, 9), -57, np.int16)  # (X, Y, Z); the spleen recipe maps -57..164 to 0..1
    vol[4:16, 3:12, 2:7] = 164
    affine = np.array([[-0.8, 0, 0, 10.0], [0, 0.9, 0, -20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(vol, affine), path)
    return path, vol, affine


@pytest.mark.parametrize("pixdim", [None, [1.5, 1.5, 2.0]])
def test_a_nifti_volume_gives_a_mask_with_its_shape_and_affine(tmp_path, pixdim):
    model = load_bundle_model(_bundle3d(tmp_path, pixdim), device="cpu")
    assert model.spatial_dims == 3 and model.preprocessing is not None
    path, vol, affine = _volume(tmp_path)
    r = predict_file(model, path, tmp_path / "out", PredictOptions(probabilities=True, instances=True))
    mask = nib.load(tmp_path / "out" / "scan_mask.nii.gz")
    probs = nib.load(tmp_path / "out" / "scan_prob.nii.gz")
    assert r.ok and r.objects == 1
    assert mask.shape == vol.shape and np.allclose(mask.affine, affine)
    assert probs.shape == (*vol.shape, 2) and probs.get_fdata(dtype=np.float32).dtype == np.float32
    np.testing.assert_allclose(probs.get_fdata().sum(-1), 1.0, atol=1e-5)
    found, truth = np.asarray(mask.dataobj) > 0, vol > 100
    if pixdim is None:  # orientation is a permutation: exact
        np.testing.assert_array_equal(found, truth)
    else:  # resampled there and back: the box, up to its border voxels
        assert (found & truth).sum() / (found | truth).sum() > 0.8


def test_a_tiff_stack_is_a_volume_for_a_3d_bundle(tmp_path):
    model = load_bundle_model(_bundle3d(tmp_path, [1.0, 1.0, 1.0]), device="cpu")
    vol = np.full((9, 17, 21), -500, np.int16)
    vol[2:7, 3:12, 4:16] = 150
    src = write_image(tmp_path / "v.tif", vol, ImageMeta("ZYX", spacing=(2.0, 0.5, 0.5)))
    r = predict_file(model, src, tmp_path / "out", PredictOptions(instances=True))
    mask, meta = read_image(tmp_path / "out" / "v_mask.tif")
    assert r.ok and mask.shape == vol.shape and meta.spacing == (2.0, 0.5, 0.5) and r.objects == 1


def test_a_2d_image_is_refused_by_a_3d_bundle(tmp_path):
    model = load_bundle_model(_bundle3d(tmp_path, None), device="cpu")
    src = write_image(tmp_path / "flat.tif", np.zeros((33, 37), np.uint8))
    r = predict_file(model, src, tmp_path / "out")
    assert r.status == "failed" and "is not a 3D image" in r.message


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("kind", [dict(), dict(instances=False), dict(probabilities=True)])
def test_streaming_gives_the_labels_of_the_in_memory_path(tmp_path, unet2d, rng, kind):
    img = rng.integers(0, 255, (67, 93), dtype=np.uint8)
    src = write_image(tmp_path / "big.tif", img, ImageMeta("YX", spacing=(0.3, 0.3)))
    whole = predict_file(unet2d, src, tmp_path / "memory", PredictOptions(**kind))
    streamed = predict_file(unet2d, src, tmp_path / "stream", PredictOptions(**kind, stream_pixels=100))
    assert "streamed" in streamed.notes and "streamed" not in whole.notes
    assert whole.objects == streamed.objects
    for name in [p.name for p in whole.outputs]:
        a, meta_a = read_image(tmp_path / "memory" / name)
        b, meta_b = read_image(tmp_path / "stream" / name)
        assert a.dtype == b.dtype and meta_a.spacing == meta_b.spacing and meta_a.spacing[-2:] == (0.3, 0.3)
        np.testing.assert_array_equal(a, b)
    assert not list((tmp_path / "stream").glob(".*")), "scratch files left behind"


def test_streaming_drops_small_objects_as_the_bundle_says(tmp_path, rng):
    torch.manual_seed(1)
    net = {"_target_": "unetkit.networks.UNet", "features": [4, 8, 16, 32, 64]}
    paper = {"_target_": "unetkit.transforms.AsInstancesd", "keys": "pred", "min_size": 5}
    folder = _bundle(tmp_path, "phc_u373", net, UNet(features=(4, 8, 16, 32, 64)).state_dict(), decode=paper)
    model = load_bundle_model(folder, device="cpu")
    src = write_image(tmp_path / "big.tif", rng.integers(0, 255, (57, 71), dtype=np.uint8))
    whole = predict_file(model, src, tmp_path / "memory")
    streamed = predict_file(model, src, tmp_path / "stream", PredictOptions(stream_pixels=100))
    a, b = tifffile.imread(whole.outputs[0]), tifffile.imread(streamed.outputs[0])
    np.testing.assert_array_equal(a, b)
    assert whole.objects == streamed.objects == a.max() and np.bincount(a.ravel())[1:].min() >= 5




def test_a_decoder_that_cannot_stream_segments_a_large_image_in_memory(tmp_path, rng):
    torch.manual_seed(1)
    net = {"_target_": "unetkit.networks.UNet", "features": [4, 8, 16, 32, 64], "out_channels": 3}
    folder = _bundle(tmp_path, "phc_u373", net, UNet(out_channels=3, features=(4, 8, 16, 32, 64)).state_dict())
    model = load_bundle_model(folder, device="cpu")  # the default recipe's three-class watershed
    src = write_image(tmp_path / "big.tif", rng.integers(0, 255, (57, 71), dtype=np.uint8))
    r = predict_file(model, src, tmp_path / "out", PredictOptions(stream_pixels=100))
    assert r.ok and "streamed" not in r.notes and tifffile.imread(r.outputs[0]).shape == (57, 71)
