"""Object tables, ImageJ ROIs and QuPath GeoJSON (``--save-table/--save-rois/--save-geojson``) agree with the mask.

The file-level tests use a "threshold bundle" (a 1x1 convolution: foreground exactly where the normalised
pixel exceeds 0.5, objects the connected components), so the mask is known from the image and every output
is checked against the mask as written.
"""

import csv
import json
import shutil
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import roifile
import tifffile
import torch
from scipy import ndimage as ndi
from shapely.geometry import Polygon, shape
from skimage.measure import label as components
from skimage.measure import points_in_poly
from typer.testing import CliRunner

from unetkit.bundle.assemble import overlay
from unetkit.cli.app import app
from unetkit.io import ImageMeta, read_image, write_image
from unetkit.predict import PredictOptions, load_bundle_model, predict_file
from unetkit.predict.objects import measure_frame
from unetkit.predict.outlines import ring_area, trace_outlines
from unetkit.predict.shapes import imagej_roi
from tiny_bundles import REPO_BUNDLES, make_tiny_bundle

ALL = PredictOptions(table=True, rois=True, geojson=True)


def _threshold_bundle(folder: Path, **common) -> Path:
    """phc_u373 whose network is a threshold: foreground where the normalised pixel is above 0.5."""
    shutil.copytree(REPO_BUNDLES / "phc_u373", folder, ignore=shutil.ignore_patterns("models", "checkpoints", "eval"))
    net = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 1}
    path = folder / "configs" / "common.json"
    path.write_text(json.dumps(overlay(json.loads(path.read_text()), {"network_def": net, **common})))
    inference = folder / "configs" / "inference.json"
    inference.write_text(json.dumps(overlay(json.loads(inference.read_text()), {"inferer#tile": None})))
    (folder / "configs" / "paper.json").unlink()  # it sets the UNet's norm and dropout, which a convolution lacks
    (folder / "models").mkdir()
    state = {"weight": torch.tensor([-20.0, 20.0]).reshape(2, 1, 1, 1), "bias": torch.tensor([10.0, -10.0])}
    torch.save(state, folder / "models" / "model.pt")
    return folder


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_bundle_model(_threshold_bundle(tmp_path_factory.mktemp("b") / "threshold"), device="cpu")


@pytest.fixture(scope="module")
def streaming_model(tmp_path_factory):
    """The same with the paper's decoder (components), which large images stream with."""
    paper = {"_target_": "unetkit.transforms.AsInstancesd", "keys": "pred"}
    folder = _threshold_bundle(tmp_path_factory.mktemp("s") / "threshold", decode=paper)
    return load_bundle_model(folder, device="cpu")


def _cells(shape=(61, 67)) -> np.ndarray:
    """Bright objects on a dark ground: a ring (with a hole), a box on the border, a small blob, a big disc."""
    img = np.full(shape, 10, np.uint8)
    img[5:20, 5:20] = 200
    img[10:14, 10:14] = 10  # the ring's hole: 16 px
    img[0:8, 40:55] = 220  # touches the top border
    img[30:32, 30:33] = 180  # 6 px
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img[(yy - 45) ** 2 + (xx - 45) ** 2 < 100] = 230
    return img


def _mask(result) -> np.ndarray:
    return read_image(result.outputs[0])[0]


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _areas(labels: np.ndarray) -> dict[int, int]:
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist()))


def _roi_area(roi) -> float:
    return abs(ring_area(roi.coordinates().astype(float)))


def test_outline_areas_equal_pixel_counts_with_holes_pieces_and_diagonals(rng):
    for _ in range(30):
        labels = components(rng.random((23, 29)) < 0.55, connectivity=2)  # diagonal neighbours: one object
        shapes = trace_outlines(labels)
        for lab, count in _areas(labels).items():
            assert sum(ring_area(r) for part in shapes[lab] for r in part) == count
            for part in shapes[lab]:
                assert ring_area(part[0]) > 0 and all(ring_area(h) < 0 for h in part[1:])
                polygon = shape({"type": "Polygon", "coordinates": [r.tolist() + r[:1].tolist() for r in part]})
                assert polygon.is_valid


def test_outline_polygons_hold_exactly_the_objects_pixel_centres(rng):
    from shapely import contains_xy

    labels = components(rng.random((19, 23)) < 0.6, connectivity=1)
    yy, xx = np.mgrid[:19, :23] + 0.5
    for lab, parts in trace_outlines(labels).items():
        inside = np.zeros(labels.shape, bool)
        for part in parts:
            polygon = Polygon(part[0], part[1:])
            inside |= contains_xy(polygon, xx, yy)
        assert np.array_equal(inside, labels == lab)


def test_outline_vertices_are_pixel_corners_of_the_object():
    labels = np.zeros((4, 5), np.int32)
    labels[1:3, 1:4] = 7
    (part,) = trace_outlines(labels)[7]
    assert sorted(map(tuple, part[0].tolist())) == [(1, 1), (1, 3), (4, 1), (4, 3)]


def test_table_has_one_row_per_object_with_the_masks_areas_and_intensities(model, tmp_path):
    img = _cells()
    r = predict_file(model, write_image(tmp_path / "a.tif", img), tmp_path / "out", PredictOptions(table=True))
    mask = _mask(r)
    rows = _rows(tmp_path / "out" / "a_objects.csv")
    assert len(rows) == len(_areas(mask)) == r.objects == 4
    for row in rows:
        lab = int(row["label"])
        assert float(row["area_px"]) == _areas(mask)[lab] == float(row["area_calibrated"])
        assert float(row["intensity_max"]) == img[mask == lab].max()
        assert float(row["intensity_mean"]) == pytest.approx(img[mask == lab].mean())
        cy, cx = ndi.center_of_mass(mask == lab)
        assert (float(row["centroid_y"]), float(row["centroid_x"])) == pytest.approx((cy, cx))
        ys, xs = np.nonzero(mask == lab)
        assert (int(row["bbox_y_min"]), int(row["bbox_x_max"])) == (ys.min(), xs.max() + 1)
        assert row["touches_border"] == str(int(ys.min() == 0 or xs.min() == 0 or ys.max() == 60 or xs.max() == 66))
        assert float(row["equivalent_diameter_px"]) == pytest.approx(2 * np.sqrt(_areas(mask)[lab] / np.pi))
    assert sum(row["touches_border"] == "1" for row in rows) == 1


def test_calibrated_columns_use_the_files_spacing_and_unit(model, tmp_path):
    meta = ImageMeta("YX", spacing=(0.5, 0.25), extra={"unit": "um"})
    src = write_image(tmp_path / "cal.tif", _cells(), meta)
    predict_file(model, src, tmp_path / "out", PredictOptions(table=True))
    for row in _rows(tmp_path / "out" / "cal_objects.csv"):
        assert float(row["area_calibrated"]) == pytest.approx(float(row["area_px"]) * 0.125)
        assert float(row["equivalent_diameter_calibrated"]) == pytest.approx(
            2 * np.sqrt(float(row["area_calibrated"]) / np.pi))
        assert row["unit"] in ("um", "µm", "micron")


def test_measure_frame_gives_one_column_per_channel():
    labels = np.array([[1, 1, 0], [0, 2, 2]], np.int32)
    image = np.stack([labels * 10.0, labels * -1.0], axis=-1)
    t = measure_frame(labels, image, axes="YX")
    assert t["intensity_max_c0"].tolist() == [10.0, 20.0] and t["intensity_min_c1"].tolist() == [-1.0, -2.0]


def test_a_volume_is_measured_in_voxels_and_calibrated_cubic_units():
    labels = np.zeros((5, 6, 7), np.int32)
    labels[1:3, 1:4, 2:6] = 4
    t = measure_frame(labels, None, axes="ZYX", spacing=(2.0, 0.5, 0.5), unit="um")
    assert t["volume_px"].tolist() == [24.0] and t["volume_calibrated"].tolist() == [12.0]
    assert t["equivalent_diameter_calibrated"][0] == pytest.approx(np.cbrt(6 * 12.0 / np.pi))
    assert (t["centroid_z"][0], t["bbox_z_max"][0], t["touches_border"][0]) == (1.5, 3, False)
    assert "intensity_mean" not in t


def test_two_inputs_whose_tables_would_collide_are_refused_before_any_work():
    from unetkit.errors import UnetkitError
    from unetkit.predict import check_distinct

    check_distinct([Path("a.tif"), Path("a.png")], "out")  # a_mask.tif and a_mask.png
    with pytest.raises(UnetkitError, match="a_objects.csv"):
        check_distinct([Path("a.tif"), Path("a.png")], "out", table=True)


def test_rois_read_back_with_roifile_match_the_mask_and_are_named_by_label(model, tmp_path):
    r = predict_file(model, write_image(tmp_path / "a.tif", _cells()), tmp_path / "out", ALL)
    mask = _mask(r)
    areas = _areas(mask)
    rois = roifile.roiread(tmp_path / "out" / "a_rois.zip")
    assert sorted(int(roi.name) for roi in rois) == sorted(areas)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]] + 0.5
    for roi in rois:
        lab = int(roi.name)
        assert roi.roitype == roifile.ROI_TYPE.TRACED
        assert abs(ring_area(roi.coordinates().astype(float))) == areas[lab]  # the ring's hole included
        # what ImageJ selects: pixel centres inside the polygon by the even-odd rule
        inside = points_in_poly(np.column_stack([xx.ravel(), yy.ravel()]), roi.coordinates().astype(float))
        assert np.array_equal(inside.reshape(mask.shape), mask == lab)


def test_a_traced_roi_survives_a_write_and_read_with_its_vertices(tmp_path):
    labels = np.zeros((9, 9), np.int32)
    labels[2:5, 3:8] = 1
    roi = imagej_roi(trace_outlines(labels)[1], "1")
    roifile.roiwrite(tmp_path / "r.zip", [roi])
    (back,) = roifile.roiread(tmp_path / "r.zip")
    assert back.roitype == roifile.ROI_TYPE.TRACED and abs(ring_area(back.coordinates().astype(float))) == 15


def test_geojson_is_a_feature_collection_shapely_reads_with_the_masks_areas_and_holes(model, tmp_path):
    r = predict_file(model, write_image(tmp_path / "a.tif", _cells()), tmp_path / "out", ALL)
    areas = _areas(_mask(r))
    gj = json.loads((tmp_path / "out" / "a.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == len(areas)
    rows = {int(row["label"]): row for row in _rows(tmp_path / "out" / "a_objects.csv")}
    for f in gj["features"]:
        geometry, lab = shape(f["geometry"]), int(f["properties"]["name"])
        assert f["type"] == "Feature" and f["properties"]["objectType"] == "detection"
        assert geometry.is_valid and geometry.area == areas[lab]
        assert f["properties"]["measurements"]["area_px"] == float(rows[lab]["area_px"])
        assert all(ring[0] == ring[-1] for ring in f["geometry"]["coordinates"])
    holed = [f for f in gj["features"] if len(f["geometry"]["coordinates"]) > 1]
    assert len(holed) == 1 and Polygon(shape(holed[0]["geometry"]).interiors[0]).area == 16  # the hole is kept


def test_a_stack_gives_rows_rois_and_features_per_frame(model, tmp_path):
    frames = np.stack([_cells(), np.full((61, 67), 10, np.uint8), _cells()[::-1].copy()])
    src = write_image(tmp_path / "t.tif", frames, ImageMeta("TYX"))
    r = predict_file(model, src, tmp_path / "out", ALL)
    mask = _mask(r)
    rows = _rows(tmp_path / "out" / "t_objects.csv")
    assert [sum(int(row["frame"]) == t for row in rows) for t in range(3)] == [len(_areas(m)) for m in mask]
    assert [c["objects"] for c in r.counts] == [4, 0, 4]
    assert r.counts[1]["foreground_fraction"] == 0 and r.counts[0]["foreground_fraction"] == np.mean(mask[0] > 0)
    rois = roifile.roiread(tmp_path / "out" / "t_rois.zip")
    assert sorted({roi.position for roi in rois}) == [1, 3] and len(rois) == 8
    assert all(roi.name == f"{roi.position:04d}-{roi.name.split('-')[1]}" for roi in rois)
    for roi in rois:
        frame_areas = _areas(mask[roi.position - 1])
        assert _roi_area(roi) == frame_areas[int(roi.name.split("-")[1])]
    gj = json.loads((tmp_path / "out" / "t.geojson").read_text())
    assert sorted(f["geometry"]["plane"]["t"] for f in gj["features"]) == [0] * 4 + [2] * 4


def test_a_streamed_image_gets_the_same_table_rois_and_geojson(streaming_model, tmp_path):
    src = write_image(tmp_path / "big.tif", _cells(), ImageMeta("YX", spacing=(0.3, 0.3), extra={"unit": "um"}))
    whole = predict_file(streaming_model, src, tmp_path / "memory", ALL)
    streamed = predict_file(streaming_model, src, tmp_path / "stream", replace(ALL, stream_pixels=100))
    assert "streamed" in streamed.notes and "streamed" not in whole.notes and whole.counts == streamed.counts
    for name in ("big_objects.csv", "big.geojson"):
        assert (tmp_path / "memory" / name).read_text() == (tmp_path / "stream" / name).read_text()
    assert [r.coordinates().tolist() for r in roifile.roiread(tmp_path / "memory" / "big_rois.zip")] == \
        [r.coordinates().tolist() for r in roifile.roiread(tmp_path / "stream" / "big_rois.zip")]


def test_the_counts_travel_with_the_result_between_processes(model, tmp_path):
    from unetkit.predict import FileResult

    frames = np.stack([_cells(), _cells()[:, ::-1].copy()])
    r = predict_file(model, write_image(tmp_path / "t.tif", frames, ImageMeta("TYX")), tmp_path / "o", ALL)
    back = FileResult.from_dict(json.loads(json.dumps(r.to_dict())))  # as --nproc workers report it
    assert back.counts == r.counts and [c["frame"] for c in back.counts] == [0, 1]


def test_an_image_without_objects_gives_empty_outputs(model, tmp_path):
    r = predict_file(model, write_image(tmp_path / "e.tif", np.full((33, 37), 5, np.uint8)), tmp_path / "o", ALL)
    assert r.ok and r.objects == 0
    assert _rows(tmp_path / "o" / "e_objects.csv") == []
    assert zipfile.ZipFile(tmp_path / "o" / "e_rois.zip").namelist() == []
    assert json.loads((tmp_path / "o" / "e.geojson").read_text())["features"] == []


def test_the_outputs_are_written_under_the_naming_rule_and_listed(model, tmp_path):
    r = predict_file(model, write_image(tmp_path / "x.ome.tif", _cells()), tmp_path / "o", ALL)
    assert [p.name for p in r.outputs] == ["x_mask.tif", "x_objects.csv", "x_rois.zip", "x.geojson"]
    assert not [p for p in (tmp_path / "o").iterdir() if p.name.startswith(".")]  # no partial files left


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("tiny") / "tiny", features=[4, 8, 16, 32])


@pytest.mark.slow
def test_the_cli_writes_tables_rois_geojson_and_counts_and_refuses_to_redo_them(bundle, tmp_path, rng):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(folder / f"{name}.tif", rng.integers(0, 255, (45, 61), dtype=np.uint8))
    args = ["infer", str(bundle), str(folder), "-o", str(tmp_path / "out"), "--save-table", "--save-rois",
            "--save-geojson"]
    runner = CliRunner()
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    counts = _rows(tmp_path / "out" / "counts.csv")
    assert [row["file"] for row in counts] == ["a.tif", "b.tif"]
    for row in counts:
        stem = row["file"][:-4]
        mask = tifffile.imread(tmp_path / "out" / f"{stem}_mask.tif")
        assert int(row["objects"]) == len(_areas(mask)) == len(_rows(tmp_path / "out" / f"{stem}_objects.csv"))
        assert float(row["foreground_fraction"]) == pytest.approx(np.mean(mask > 0))
        assert len(roifile.roiread(tmp_path / "out" / f"{stem}_rois.zip") or []) == len(_areas(mask))
    for p in (tmp_path / "out").glob("*"):
        if p.name != "counts.csv":
            p.unlink()
    again = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert again.exit_code == 2 and "counts.csv" in again.output and "--overwrite" in again.output


@pytest.mark.slow
def test_the_example_measures_a_folder(model, tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "in"
    write_image(folder / "a.tif", _cells())
    write_image(folder / "b.tif", np.full((33, 37), 5, np.uint8))
    example = REPO_BUNDLES.parent / "examples" / "measure_objects.py"
    r = subprocess.run([sys.executable, example, model.folder, folder, "--out", tmp_path / "m", "--device", "cpu"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "a.tif: 4 objects" in r.stdout and "1 touching the border" in r.stdout and "b.tif: 0 objects" in r.stdout
    assert [row["objects"] for row in _rows(tmp_path / "m" / "counts.csv")] == ["4", "0"]
    assert (tmp_path / "m" / "a_rois.zip").is_file() and (tmp_path / "m" / "a.geojson").is_file()
