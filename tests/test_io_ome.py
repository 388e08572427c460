"""OME-TIFF as microscope software writes it: axes and calibration read, and kept when a label image is written.

Inputs are written with tifffile's OME writer (Bio-Formats, ZEN and NIS exports look the same to a reader:
OME-XML with ``PhysicalSizeX/Y/Z`` in "µm" and a ``TimeIncrement``). The label image is written with the
input's meta minus its channel axis, as the mask writer does with ``meta.select``.
"""

import logging

import numpy as np
import pytest
import tifffile

from unetkit.io import ImageMeta, open_output, read_image, write_image

SIZES = {"PhysicalSizeX": 0.65, "PhysicalSizeY": 0.65}


def _ome_input(path, arr, axes, **md):
    tifffile.imwrite(path, arr, ome=True, metadata={"axes": axes, **SIZES, **md})
    return path


def _label_meta(meta):
    return meta.select(meta.axes.index("C"), 0) if "C" in meta.axes else meta


def test_ome_tiff_with_a_pixel_size_writes_its_label_image(tmp_path, rng):
    src = _ome_input(tmp_path / "x.ome.tif", rng.integers(0, 255, (33, 37), dtype=np.uint8), "YX")
    image, meta = read_image(src)
    mask = write_image(tmp_path / "out" / "x_mask.tif", (image > 100).astype(np.uint16), meta)
    with tifffile.TiffFile(mask) as tif:  # what Fiji and Bio-Formats read
        assert "PhysicalSizeX" in tif.ome_metadata
        assert tif.pages[0].resolutionunit.name == "CENTIMETER"
        assert tif.pages[0].resolution == pytest.approx((1e4 / 0.65, 1e4 / 0.65))
    assert read_image(mask)[1].spacing == (0.65, 0.65)


@pytest.mark.parametrize(
    "axes, shape, extra, spacing",
    [
        ("TCYX", (3, 2, 33, 37), {"TimeIncrement": 5.0}, (5.0, 1.0, 0.65, 0.65)),
        ("ZYX", (4, 33, 37), {"PhysicalSizeZ": 2.0}, (2.0, 0.65, 0.65)),
        ("TZCYX", (2, 3, 2, 33, 37), {"PhysicalSizeZ": 1.5, "TimeIncrement": 60.0}, (60.0, 1.5, 1.0, 0.65, 0.65)),
    ],
)
def test_ome_axes_and_spacing_survive_a_label_image_round_trip(tmp_path, rng, axes, shape, extra, spacing):
    src = _ome_input(tmp_path / "in.ome.tif", rng.integers(0, 4000, shape).astype(np.uint16), axes, **extra)
    image, meta = read_image(src)
    assert (meta.axes, meta.spacing, meta.extra["unit"]) == (axes, spacing, "µm")
    label_meta = _label_meta(meta)
    labels = (np.take(image, 0, axis=axes.index("C")) if "C" in axes else image) > 2000
    back, m = read_image(write_image(tmp_path / "mask.tif", labels.astype(np.uint16), label_meta))
    assert np.array_equal(back, labels) and m.axes == label_meta.axes and m.spacing == label_meta.spacing
    assert m.extra["ome"] and m.extra["unit"] == "µm"


@pytest.mark.parametrize("unit, spacing", [("nm", 650.0), ("mm", 0.00065), ("µm", 0.65)])
def test_ome_units_are_kept_as_ome_writes_them(tmp_path, rng, unit, spacing):
    md = {"PhysicalSizeX": spacing, "PhysicalSizeY": spacing, "PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit}
    tifffile.imwrite(tmp_path / "in.ome.tif", np.zeros((33, 37), np.uint8), ome=True, metadata={"axes": "YX", **md})
    _, meta = read_image(tmp_path / "in.ome.tif")
    _, m = read_image(write_image(tmp_path / "mask.tif", np.ones((33, 37), np.uint16), meta))
    assert m.spacing == pytest.approx((spacing, spacing)) and m.extra["unit"] == unit


def test_ome_z_in_another_unit_is_converted_to_the_x_unit(tmp_path):
    md = {**SIZES, "PhysicalSizeZ": 2000.0, "PhysicalSizeZUnit": "nm"}
    tifffile.imwrite(tmp_path / "in.ome.tif", np.zeros((3, 33, 37), np.uint8), ome=True, metadata={"axes": "ZYX", **md})
    assert read_image(tmp_path / "in.ome.tif")[1].spacing == (2.0, 0.65, 0.65)


def test_micrometres_become_ascii_in_an_imagej_header(tmp_path):
    meta = ImageMeta("ZYX", spacing=(2.0, 0.65, 0.65), format="tiff", extra={"unit": "µm"})  # no "ome": ImageJ
    p = write_image(tmp_path / "a.tif", np.zeros((3, 33, 37), np.uint16), meta)
    with tifffile.TiffFile(p) as tif:
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
    assert read_image(p)[1].spacing == (2.0, 0.65, 0.65)


def test_a_non_ascii_length_unit_is_converted_to_micrometres_for_imagej(tmp_path):
    meta = ImageMeta("YX", spacing=(5.0, 5.0), format="tiff", extra={"unit": "Å"})
    _, m = read_image(write_image(tmp_path / "a.tif", np.zeros((33, 37), np.uint8), meta))
    assert m.spacing == (0.0005, 0.0005) and m.extra["unit"] == "um"


@pytest.mark.parametrize("ome", [True, False])
def test_an_unknown_non_ascii_unit_is_dropped_with_a_warning_never_an_error(tmp_path, caplog, ome):
    meta = ImageMeta("YX", spacing=(0.5, 0.5), format="tiff", extra={"unit": "µin", "ome": ome})
    with caplog.at_level(logging.WARNING, logger="unetkit.io.tiff"):
        _, m = read_image(write_image(tmp_path / "a.tif", np.zeros((33, 37), np.uint8), meta))
    assert m.spacing == (0.5, 0.5) and "µin" in caplog.text


def test_plain_tiff_keeps_a_non_ascii_unit_in_its_json_description(tmp_path):
    meta = ImageMeta("YX", spacing=(0.65, 0.65), format="tiff", extra={"unit": "µm"})  # float64: not ImageJ
    _, m = read_image(write_image(tmp_path / "a.tif", np.zeros((33, 37)), meta))
    assert m.spacing == (0.65, 0.65) and m.extra["unit"] == "µm"


def test_labels_ome_cannot_hold_fall_back_to_a_plain_tiff_with_the_spacing(tmp_path, rng):
    _, meta = read_image(_ome_input(tmp_path / "in.ome.tif", np.zeros((33, 37), np.uint8), "YX"))
    labels = rng.integers(0, 2**40, (33, 37), dtype=np.int64)  # OME has no 64-bit integers
    back, m = read_image(write_image(tmp_path / "mask.ome.tif", labels, meta))
    assert np.array_equal(back, labels) and m.spacing == (0.65, 0.65) and "ome" not in m.extra


def test_an_ome_tif_name_is_written_as_ome_whatever_the_input(tmp_path):
    meta = ImageMeta("ZYX", spacing=(2.0, 0.5, 0.5), format="nifti", extra={"xyzt_units": ("mm", "sec")})
    _, m = read_image(write_image(tmp_path / "a.ome.tif", np.zeros((3, 33, 37), np.uint16), meta))
    assert m.extra["ome"] and m.spacing == (2.0, 0.5, 0.5) and m.extra["unit"] == "mm"


def test_open_output_writes_ome_for_an_ome_input(tmp_path):
    _, meta = read_image(_ome_input(tmp_path / "in.ome.tif", np.zeros((33, 37), np.uint8), "YX"))
    with open_output(tmp_path / "mask.tif", (33, 37), "uint16", meta) as out:
        out[:] = 7
    back, m = read_image(tmp_path / "mask.tif")
    assert (back == 7).all() and m.extra["ome"] and m.spacing == (0.65, 0.65)
