"""LoadImage / LoadImaged: channel-first arrays, dtypes, frames of a stack, metas that travel with the data."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from monai.data import list_data_collate
from torch.utils.data import DataLoader

from unetkit.errors import DataError, ImageReadError
from unetkit.io import ImageMeta, read_image, write_image
from unetkit.transforms.load import LoadImage, LoadImaged

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "phc_u373"


def test_grey_2d_image_gets_a_leading_channel_axis_as_float32(tmp_path, rng):
    arr = rng.integers(0, 4000, (33, 37)).astype(np.uint16)
    img, meta = LoadImage().load(write_image(tmp_path / "a.tif", arr))
    assert img.shape == (1, 33, 37) and img.dtype == np.float32 and np.array_equal(img[0], arr)
    assert (meta.axes, meta.shape, meta.dtype) == ("CYX", (1, 33, 37), "float32")


def test_labels_keep_their_integer_dtype_with_dtype_none(tmp_path, rng):
    arr = rng.integers(0, 60000, (33, 37)).astype(np.uint16)
    img = LoadImage(dtype=None)(write_image(tmp_path / "labels.tif", arr))
    assert img.dtype == np.uint16 and np.array_equal(img[0], arr)


@pytest.mark.parametrize("value", [1, 255])
def test_a_mask_loaded_as_instances_becomes_its_connected_parts(tmp_path, value):
    mask = np.zeros((20, 30), np.uint8)
    mask[2:8, 2:8] = mask[2:8, 8:12] = mask[12:18, 20:28] = value   # two parts, the first of two squares
    path = write_image(tmp_path / "mask.tif", mask)
    img = LoadImaged("label", dtype=None, instances=True)({"label": str(path)})["label"]
    assert img.shape == (1, 20, 30) and sorted(np.unique(img).tolist()) == [0, 1, 2]
    assert len(np.unique(img[0, 2:8, 2:12])) == 1 and img[0, 15, 25] != img[0, 5, 5]
    labels = mask.astype(np.uint16) * 0
    labels[2:8, 2:8], labels[2:8, 8:12] = 4, 9                       # instance labels: kept as they are
    kept = LoadImage(dtype=None, instances=True)(write_image(tmp_path / "labels.tif", labels))
    assert np.array_equal(kept[0], labels)


def test_a_label_image_of_another_size_than_its_image_is_refused_naming_both(tmp_path, rng):
    image = write_image(tmp_path / "t000.tif", rng.integers(0, 255, (20, 30)).astype(np.uint8))
    good = write_image(tmp_path / "same.tif", np.zeros((20, 30), np.uint16))
    bad = write_image(tmp_path / "man_seg000.tif", np.zeros((20, 24), np.uint16))
    load = LoadImaged("label", dtype=None, shape_of="image")
    d = load(LoadImaged("image")({"image": str(image), "label": str(good)}))
    assert d["label"].shape == (1, 20, 30)
    with pytest.raises(DataError, match=r"man_seg000.tif: is 20x24 but .*t000.tif is 20x30"):
        load(LoadImaged("image")({"image": str(image), "label": str(bad)}))


def test_rgb_tiff_samples_become_the_channel_axis(tmp_path, rng):
    arr = rng.integers(0, 255, (33, 37, 3), dtype=np.uint8)
    img, meta = LoadImage().load(write_image(tmp_path / "rgb.tif", arr, ImageMeta("YXS", spacing=(0.5, 0.5, 1.0))))
    assert img.shape == (3, 33, 37) and np.array_equal(img, arr.transpose(2, 0, 1))
    assert meta.axes == "CYX" and meta.spacing == (1.0, 0.5, 0.5)


@pytest.mark.parametrize("samples", [3, 4])
def test_an_rgb_image_for_a_one_channel_network_becomes_its_luma(tmp_path, rng, samples):
    arr = rng.integers(0, 255, (33, 37, samples), dtype=np.uint8)
    img, meta = LoadImage(channels=1).load(write_image(tmp_path / "rgb.tif", arr, ImageMeta("YXS")))
    luma = 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]  # alpha, if any, plays no part
    assert img.shape == (1, 33, 37) and img.dtype == np.float32 and np.allclose(img[0], luma, atol=1e-3)
    assert (meta.axes, meta.shape, meta.dtype) == ("CYX", (1, 33, 37), "float32")


def test_channels_that_fit_the_network_are_kept(tmp_path, rng):
    arr = rng.integers(0, 255, (33, 37, 3), dtype=np.uint8)
    p = write_image(tmp_path / "rgb.tif", arr, ImageMeta("YXS"))
    assert np.array_equal(LoadImage(channels=3)(p), arr.transpose(2, 0, 1))
    grey = rng.integers(0, 255, (33, 37), dtype=np.uint8)
    assert np.array_equal(LoadImage(channels=1)(write_image(tmp_path / "g.tif", grey))[0], grey)


@pytest.mark.parametrize("axes, shape, channels", [("CYX", (2, 33, 37), 1), ("YX", (33, 37), 3),
                                                   ("YXS", (33, 37, 3), 2)])
def test_channels_that_fit_neither_the_network_nor_rgb_to_grey_are_refused(tmp_path, axes, shape, channels):
    p = write_image(tmp_path / "c.tif", np.zeros(shape, np.uint8), ImageMeta(axes))
    with pytest.raises(ImageReadError, match=rf"c\.tif: has .* but the bundle's network takes {channels}"):
        LoadImage(channels=channels)(p)


def test_the_recipes_load_rgb_as_unetkit_infer_feeds_it_to_the_network(tmp_path, rng):
    """Training, validation and MONAI's runner load through the bundle's ``load_image``; ``unetkit infer``
    through its own layout, or band by band when it streams a big image: a network trained on RGB files
    turned to grey must see the same grey there."""
    from monai.bundle import ConfigParser

    from unetkit.bundle.config import job_files
    from unetkit.predict.layout import plan_layout
    from unetkit.predict.stream import _grey_source

    arr = rng.integers(0, 255, (33, 37, 3), dtype=np.uint8)
    p = write_image(tmp_path / "rgb.tif", arr, ImageMeta("YXS"))
    parser = ConfigParser()
    parser.read_config([str(f) for f in job_files(BUNDLE, "inference.json")])
    loaded = parser.get_parsed_content("load_image")({"image": str(p)})["image"]
    data, meta = read_image(p)
    layout = plan_layout(meta, spatial_dims=2, in_channels=1)
    fed = layout.network_input(data)
    streamed = np.asarray(_grey_source(data, layout, tmp_path))
    assert loaded.shape == fed.shape == (1, 33, 37) and np.array_equal(loaded, fed)
    assert np.array_equal(streamed, fed)


def test_imagej_channel_axis_moves_to_the_front(tmp_path, rng):
    arr = rng.integers(0, 255, (5, 2, 33, 37), dtype=np.uint8)
    img, meta = LoadImage().load(write_image(tmp_path / "zc.tif", arr, ImageMeta("ZCYX")))
    assert img.shape == (2, 5, 33, 37) and np.array_equal(img, arr.transpose(1, 0, 2, 3))
    assert meta.axes == "CZYX" and img.flags.c_contiguous


@pytest.mark.parametrize("shape,axes", [((1, 33, 37), None), ((1, 1, 33, 37), "TZYX")])
def test_a_2d_frame_saved_with_singleton_z_or_t_loads_as_2d(tmp_path, rng, shape, axes):
    arr = rng.integers(0, 255, shape).astype(np.uint8)
    path = tmp_path / "t000.tif"
    tifffile.imwrite(path, arr, **({"imagej": True, "metadata": {"axes": axes}} if axes else {}))
    img, meta = LoadImage().load(path)
    assert img.shape == (1, 33, 37) and meta.axes == "CYX" and np.array_equal(img[0], arr.reshape(33, 37))


def test_3d_stack_gets_a_leading_channel_axis(tmp_path, rng):
    arr = rng.random((5, 33, 37)).astype(np.float32)
    img = LoadImage()(write_image(tmp_path / "z.tif", arr))
    assert img.shape == (1, 5, 33, 37) and np.array_equal(img[0], arr)


def test_nifti_volume_keeps_its_affine(tmp_path, rng):
    arr = rng.random((9, 11, 7)).astype(np.float32)
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    img, meta = LoadImage().load(write_image(tmp_path / "v.nii.gz", arr, ImageMeta("XYZ", affine=affine,
                                                                                      format="nifti")))
    assert img.shape == (1, 9, 11, 7) and meta.axes == "CXYZ" and np.array_equal(meta.affine, affine)


def test_ensure_channel_first_false_keeps_the_file_layout(tmp_path, rng):
    arr = rng.integers(0, 255, (33, 37, 3), dtype=np.uint8)
    img = LoadImage(dtype=None, ensure_channel_first=False)(write_image(tmp_path / "rgb.tif", arr, ImageMeta("YXS")))
    assert img.dtype == np.uint8 and np.array_equal(img, arr)


def test_torch_dtypes_are_accepted(tmp_path):
    img = LoadImage(dtype=torch.float64)(write_image(tmp_path / "a.tif", np.ones((33, 37), np.uint8)))
    assert img.dtype == np.float64


def test_mmap_keeps_a_memory_map_when_no_conversion_is_needed(tmp_path, rng):
    arr = rng.integers(0, 4000, (33, 37)).astype(np.uint16)
    p = write_image(tmp_path / "a.tif", arr)
    mapped = LoadImage(dtype=None, mmap=True)(p)
    converted = LoadImage(mmap=True)(p)
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped[0], arr)
    assert not isinstance(converted, np.memmap) and converted.dtype == np.float32


def _isbi_like(tmp_path, rng):
    """A 30-slice stack like ISBI 2012's train-volume.tif and train-labels.tif (255 = cell, 0 = membrane)."""
    volume = rng.integers(0, 255, (30, 33, 37), dtype=np.uint8)
    labels = np.where(rng.random((30, 33, 37)) > 0.2, 255, 0).astype(np.uint8)
    tifffile.imwrite(tmp_path / "train-volume.tif", volume)
    tifffile.imwrite(tmp_path / "train-labels.tif", labels)
    return volume, labels


def test_frame_key_takes_one_slice_of_each_stack(tmp_path, rng):
    volume, labels = _isbi_like(tmp_path, rng)
    load = [LoadImaged("image", frame_key="frame"), LoadImaged("label", dtype=None, frame_key="frame")]
    d = {"image": str(tmp_path / "train-volume.tif"), "label": str(tmp_path / "train-labels.tif"), "frame": 7}
    for t in load:
        d = t(d)
    assert d["image"].shape == (1, 33, 37) and np.array_equal(d["image"][0], volume[7])
    assert d["label"].dtype == np.uint8 and np.array_equal(d["label"][0], labels[7])
    assert d["frame"] == 7 and d["label_meta"].axes == "CYX" and d["image_meta"].shape == (1, 33, 37)
    assert not isinstance(d["image"], np.memmap)  # a copy: the file is not held open by the sample


def test_without_a_frame_in_the_dict_the_whole_stack_is_loaded(tmp_path, rng):
    volume, _ = _isbi_like(tmp_path, rng)
    d = LoadImaged("image", dtype=None, frame_key="frame")({"image": str(tmp_path / "train-volume.tif")})
    assert d["image"].shape == (1, 30, 33, 37) and np.array_equal(d["image"][0], volume)


@pytest.mark.parametrize(("frame", "problem"), [(30, "out of range"), (-1, "out of range"), ("7", "not an integer")])
def test_bad_frames_name_the_file_and_the_problem(tmp_path, rng, frame, problem):
    _isbi_like(tmp_path, rng)
    p = tmp_path / "train-volume.tif"
    with pytest.raises(ImageReadError, match=f"train-volume.tif: .*{problem}"):
        LoadImaged("image", frame_key="frame")({"image": str(p), "frame": frame})


def test_a_frame_of_a_single_2d_image_is_refused(tmp_path):
    p = write_image(tmp_path / "t000.tif", np.zeros((33, 37), np.uint8))
    with pytest.raises(ImageReadError, match="single 2D image"):
        LoadImage()(p, frame=0)


def test_meta_is_stored_beside_each_key_and_describes_the_array(tmp_path, rng):
    p = write_image(tmp_path / "a.tif", rng.random((5, 33, 37)).astype(np.float32),
                    ImageMeta("ZYX", spacing=(2.0, 0.5, 0.5)))
    d = LoadImaged(["image"])({"image": str(p)})
    meta = d["image_meta"]
    assert meta.shape == d["image"].shape and meta.spacing == (1.0, 2.0, 0.5, 0.5) and meta.source == str(p)


def test_meta_of_loaded_image_writes_its_label_image_with_the_spacing(tmp_path):
    p = write_image(tmp_path / "in.tif", np.zeros((33, 37), np.uint16), ImageMeta("YX", spacing=(0.65, 0.65)))
    _, meta = LoadImage().load(p)  # "CYX"
    _, out = read_image(write_image(tmp_path / "mask.tif", np.ones((33, 37), np.uint16), meta))
    assert out.axes == "YX" and out.spacing == (0.65, 0.65)


def test_missing_keys_raise_unless_allowed(tmp_path):
    p = write_image(tmp_path / "a.tif", np.zeros((33, 37), np.uint8))
    with pytest.raises(KeyError):
        LoadImaged(["image", "label"])({"image": str(p)})
    d = LoadImaged(["image", "label"], allow_missing_keys=True)({"image": str(p)})
    assert "label" not in d and "label_meta" not in d


@pytest.mark.parametrize("collate", [None, list_data_collate])
def test_batches_of_loaded_dicts_collate_with_metas_as_a_list(tmp_path, collate):
    items = [{"image": str(write_image(tmp_path / f"{i}.tif", np.full((33, 37), i, np.uint8)))} for i in range(3)]
    data = [LoadImaged("image")(item) for item in items]
    kwargs = {} if collate is None else {"collate_fn": collate}
    batch = next(iter(DataLoader(data, batch_size=3, **kwargs)))
    assert tuple(batch["image"].shape) == (3, 1, 33, 37)
    assert [m.source for m in batch["image_meta"]] == [item["image"] for item in items]


@pytest.mark.parametrize("frame", [None, 1])
def test_big_endian_files_load_in_native_byte_order_for_torch(tmp_path, frame):
    arr = np.arange(5 * 33 * 37, dtype=">u2").reshape(5, 33, 37)
    tifffile.imwrite(tmp_path / "be.tif", arr, byteorder=">", photometric="minisblack")
    img = LoadImage(dtype=None)(tmp_path / "be.tif", frame=frame)
    assert img.dtype == np.uint16 and img.dtype.isnative
    assert np.array_equal(torch.as_tensor(img)[0].numpy(), arr[1] if frame else arr)
