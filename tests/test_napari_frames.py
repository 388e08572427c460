"""Saving a corrected image into a folder of image / mask pairs (the plugin's Qt-free step): never over an
annotation, in the spelling of the folder it goes to, and read back by training."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from unetkit.data import pairs_datalist
from unetkit.errors import DataError
from unetkit.napari.frames import is_pairs_folder, save_pair


def _labels(shape=(12, 16)):
    labels = np.zeros(shape, np.int32)
    labels[1:5, 1:6], labels[7:11, 8:15] = 3, 9
    return labels


def _pairs(root):
    return [(Path(i["image"]).relative_to(root).as_posix(), Path(i["label"]).relative_to(root).as_posix())
            for i in pairs_datalist(root)]


def test_one_folder_of_name_and_name_mask_files_gets_one_more_pair(tmp_path):
    image = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16)
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "a_masks.tif", _labels())  # Cellpose's spelling
    assert is_pairs_folder(tmp_path)
    saved = save_pair(tmp_path, "b", image + 1, _labels())
    assert (saved.image, saved.mask, saved.wrote_image) == (tmp_path / "b.tif", tmp_path / "b_mask.tif", True)
    assert _pairs(tmp_path) == [("a.tif", "a_masks.tif"), ("b.tif", "b_mask.tif")]
    np.testing.assert_array_equal(tifffile.imread(saved.mask), _labels())
    with pytest.raises(DataError, match="a is annotated already"):  # under either mask spelling
        save_pair(tmp_path, "a", image, _labels())
    with pytest.raises(DataError, match="would be read as the mask of c"):
        save_pair(tmp_path, "c_mask", image, _labels())


def test_images_and_labels_folders_keep_their_names_and_refuse_another_image_under_one(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    image = np.full((12, 16), 7, np.uint8)
    tifffile.imwrite(tmp_path / "images" / "x.tif", image)
    saved = save_pair(tmp_path, "x", image, _labels() > 0)  # a 0/1 mask: one label per connected piece
    assert (saved.mask, saved.wrote_image) == (tmp_path / "labels" / "x.tif", False)
    assert sorted(np.unique(tifffile.imread(saved.mask))) == [0, 1, 2]
    tifffile.imwrite(tmp_path / "images" / "y.tif", image)
    with pytest.raises(DataError, match="holds another image named y"):
        save_pair(tmp_path, "y", image + 1, _labels())
    assert not (tmp_path / "labels" / "y.tif").exists()
    with pytest.raises(DataError, match=r"labels of shape \(3, 3\) do not fit"):
        save_pair(tmp_path, "z", image, np.zeros((3, 3), np.int32))
    assert _pairs(tmp_path) == [("images/x.tif", "labels/x.tif")]


def test_a_folder_in_no_pairs_layout_is_not_written_to(tmp_path):
    (tmp_path / "01").mkdir()
    assert not is_pairs_folder(tmp_path) and not is_pairs_folder(tmp_path / "missing")
    with pytest.raises(DataError, match="not a folder of image / mask pairs"):
        save_pair(tmp_path, "a", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.int32))
    assert [p.name for p in tmp_path.iterdir()] == ["01"]
