import numpy as np
import pytest
import tifffile

from unetkit.data import export_ctc, export_ctc_folder
from unetkit.errors import DataError


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_export_ctc_writes_uint16_masks_in_the_results_layout(tmp_path):
    labels = np.zeros((7, 9), np.int32)
    labels[1:3, 1:4], labels[4:6, 5:8] = 3, 12
    res = export_ctc([(0, labels), (5, labels[::-1])], tmp_path, sequence="02")
    assert res == tmp_path / "02_RES" and _names(res) == ["mask000.tif", "mask005.tif"]
    out = tifffile.imread(res / "mask000.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, labels)
    np.testing.assert_array_equal(tifffile.imread(res / "mask005.tif"), labels[::-1])


def test_export_ctc_keeps_3d_stacks_of_three_slices_grey(tmp_path):
    labels = np.arange(3 * 5 * 6).reshape(3, 5, 6) % 4
    res = export_ctc([(1, labels)], tmp_path)
    np.testing.assert_array_equal(tifffile.imread(res / "mask001.tif"), labels)


def test_export_ctc_splits_a_binary_mask_into_4_connected_cells(tmp_path):
    mask = np.array(
        [
            [1, 1, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 0, 1, 0, 1],
            [0, 0, 0, 0, 1],
        ],
        bool,
    )
    out = tifffile.imread(export_ctc([(0, mask)], tmp_path) / "mask000.tif")
    # The diagonal neighbour at (2, 2) stays its own cell: one-pixel borders from the network separate.
    assert out.max() == 3 and len(np.unique(out[mask])) == 3 and (out[~mask] == 0).all()


def test_export_ctc_switches_to_four_digits_past_frame_999(tmp_path):
    res = export_ctc(((t, np.eye(3, dtype=np.uint8) * 2) for t in (0, 7, 1000)), tmp_path)
    assert _names(res) == ["mask0000.tif", "mask0007.tif", "mask1000.tif"]


def test_export_ctc_renumbers_large_label_values_that_fit_in_16_bits(tmp_path):
    labels = np.array([[0, 70000, 70000], [5, 0, 1_000_000]], np.int64)
    out = tifffile.imread(export_ctc([(0, labels)], tmp_path) / "mask000.tif")
    assert out[0, 0] == out[1, 1] == 0 and out[0, 1] == out[0, 2]
    assert len({out[0, 1], out[1, 0], out[1, 2]}) == 3 and out.max() == 3


def test_export_ctc_refuses_more_than_65535_objects(tmp_path):
    labels = np.arange(1, 65537, dtype=np.int64).reshape(256, 256)
    with pytest.raises(DataError, match="frame 4: 65536 labelled objects.*at most 65535"):
        export_ctc([(4, labels)], tmp_path)


@pytest.mark.parametrize(
    "labels, match",
    [(np.array([[0.0, 2.5]]), "fractional"), (np.array([[0, -3]]), "negative label -3"), (np.array([["a"]]), "type")],
)
def test_export_ctc_refuses_what_is_not_an_instance_label_image(tmp_path, labels, match):
    with pytest.raises(DataError, match=f"frame 0: .*{match}"):
        export_ctc([(0, labels)], tmp_path)


def test_export_ctc_folder_converts_infer_output_names(tmp_path):
    pred = tmp_path / "pred"
    pred.mkdir()
    for t in (0, 3):
        tifffile.imwrite(pred / f"t{t:03d}_mask.tif", np.full((4, 5), t + 2, np.uint8))
    tifffile.imwrite(pred / "t001_overlay.tif", np.zeros((4, 5), np.uint8))  # not a mask: ignored
    res = export_ctc_folder(pred, tmp_path / "out", sequence="01")
    assert _names(res) == ["mask000.tif", "mask003.tif"]
    np.testing.assert_array_equal(tifffile.imread(res / "mask003.tif"), np.full((4, 5), 5))


def test_export_ctc_folder_keeps_four_digit_frame_numbers(tmp_path):
    tifffile.imwrite(tmp_path / "t0042_mask.tif", np.full((4, 5), 2, np.uint16))
    assert _names(export_ctc_folder(tmp_path, tmp_path / "out")) == ["mask0042.tif"]


def test_export_ctc_folder_without_masks_points_to_unetkit_infer(tmp_path):
    with pytest.raises(DataError, match=r"no tTTT_mask\.tif file here.*unetkit infer"):
        export_ctc_folder(tmp_path, tmp_path / "out")
    with pytest.raises(DataError, match="missing: no such folder"):
        export_ctc_folder(tmp_path / "missing", tmp_path / "out")


def test_export_ctc_folder_names_an_unreadable_mask(tmp_path):
    (tmp_path / "t000_mask.tif").write_bytes(b"not a tiff")
    with pytest.raises(DataError, match=r"t000_mask\.tif: cannot read"):
        export_ctc_folder(tmp_path, tmp_path / "out")
