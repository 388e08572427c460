"""unetkit.io: round trips for every format and dtype, metadata kept, one clear error per bad file, atomic writes."""

import os

import nibabel as nib
import numpy as np
import pytest
import tifffile

from unetkit.errors import ImageReadError, ImageWriteError
from unetkit.io import ImageMeta, open_output, read_image, write_image

# ITK's SWIG wrapping warns about its own types on import; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__:DeprecationWarning")

# ---------------------------------------------------------------- TIFF


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "uint32", "float32", "float64"])
def test_tiff_stack_round_trip_keeps_values_dtype_axes_and_spacing(tmp_path, rng, dtype):
    arr = (rng.random((5, 33, 37)) * 120).astype(dtype)
    meta = ImageMeta("ZYX", spacing=(2.0, 0.37, 0.37))
    back, m = read_image(write_image(tmp_path / "a.tif", arr, meta))
    assert back.dtype == arr.dtype and np.array_equal(back, arr)
    assert (m.axes, m.spacing, m.dtype, m.shape, m.format) == ("ZYX", (2.0, 0.37, 0.37), dtype, (5, 33, 37), "tiff")
    assert m.source == str(tmp_path / "a.tif")


def test_tiff_2d_without_meta_has_no_spacing(tmp_path, rng):
    arr = rng.random((33, 37))
    back, m = read_image(write_image(tmp_path / "a.tiff", arr))
    assert np.array_equal(back, arr) and m.axes == "YX" and m.spacing is None


def test_tiff_time_lapse_keeps_frame_interval(tmp_path, rng):
    arr = rng.integers(0, 255, (4, 33, 37), dtype=np.uint8)
    back, m = read_image(write_image(tmp_path / "t.tif", arr, ImageMeta("TYX", spacing=(5.0, 0.65, 0.65))))
    assert np.array_equal(back, arr) and m.axes == "TYX" and m.spacing == (5.0, 0.65, 0.65)


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_tiff_rgb_round_trip_keeps_samples_last(tmp_path, rng, dtype):
    arr = rng.integers(0, 255, (33, 37, 3)).astype(dtype)
    back, m = read_image(write_image(tmp_path / "rgb.tif", arr, ImageMeta("YXS")))
    assert np.array_equal(back, arr) and m.axes == "YXS" and m.extra["photometric"] == "RGB"


def test_tiff_imagej_hyperstack_round_trip(tmp_path, rng):
    arr = rng.integers(0, 4000, (2, 3, 2, 33, 37)).astype(np.uint16)
    meta = ImageMeta("TZCYX", spacing=(3.0, 2.0, 1.0, 0.5, 0.5))
    back, m = read_image(write_image(tmp_path / "h.tif", arr, meta))
    assert np.array_equal(back, arr) and m.axes == "TZCYX" and m.spacing == meta.spacing


def test_tiff_is_written_for_fiji_when_the_dtype_allows(tmp_path):
    p = write_image(tmp_path / "a.tif", np.zeros((3, 33, 37), np.uint16), ImageMeta("ZYX", spacing=(2.0, 0.5, 0.5)))
    with tifffile.TiffFile(p) as tif:  # what Fiji reads: ImageJ metadata and pixels per unit
        assert tif.is_imagej and tif.imagej_metadata["spacing"] == 2.0 and tif.imagej_metadata["unit"] == "um"
        assert tif.pages[0].resolution == (2.0, 2.0)


def test_tiff_without_imagej_dtype_carries_resolution_tags_in_centimetres(tmp_path):
    p = write_image(tmp_path / "a.tif", np.zeros((33, 37)), ImageMeta("YX", spacing=(0.5, 0.25)))
    with tifffile.TiffFile(p) as tif:
        page = tif.pages[0]
        assert not tif.is_imagej and page.resolutionunit.name == "CENTIMETER"
        assert page.resolution == pytest.approx((40000.0, 20000.0))  # 1 / 0.25 um, 1 / 0.5 um per cm


def test_tiff_plain_multipage_stack_reads_every_page(tmp_path, rng):
    pages = rng.integers(0, 255, (7, 33, 37), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "stack.tif") as w:  # no metadata at all, as many tools write
        for page in pages:
            w.write(page, metadata=None)
    back, m = read_image(tmp_path / "stack.tif")
    assert np.array_equal(back, pages) and m.axes == "ZYX" and m.spacing is None


def test_tiff_ome_axes_and_physical_sizes(tmp_path, rng):
    arr = rng.integers(0, 4000, (2, 3, 33, 37)).astype(np.uint16)
    md = {"axes": "TCYX", "PhysicalSizeX": 0.3, "PhysicalSizeY": 0.4, "TimeIncrement": 5.0}
    tifffile.imwrite(tmp_path / "a.ome.tif", arr, metadata=md)
    back, m = read_image(tmp_path / "a.ome.tif")
    assert np.array_equal(back, arr) and m.axes == "TCYX"
    assert m.spacing == (5.0, 1.0, 0.4, 0.3) and m.extra["unit"] == "µm"


def test_tiff_resolution_tags_in_centimetres_read_as_micrometres(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((33, 37), np.uint8), resolution=(1e4 / 0.65, 1e4 / 0.65),
                     resolutionunit="CENTIMETER")
    _, m = read_image(tmp_path / "a.tif")
    assert m.spacing == (0.65, 0.65) and m.extra["unit"] == "um"


def test_tiff_imagej_file_from_tifffile_gives_its_spacing(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((4, 33, 37), np.uint8), imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "ZYX", "spacing": 1.5, "unit": "micron"})
    _, m = read_image(tmp_path / "a.tif")
    assert m.spacing == (1.5, 0.2, 0.2) and m.extra["unit"] == "micron"


def test_tiff_compressed_round_trip(tmp_path, rng):
    arr = rng.random((3, 33, 37)).astype(np.float32)
    p = write_image(tmp_path / "c.tif", arr, compression="zlib")
    back, m = read_image(p)
    assert np.array_equal(back, arr) and m.extra["compression"] == "ADOBE_DEFLATE"


def test_mmap_of_uncompressed_tiff_is_a_read_only_memmap(tmp_path, rng):
    arr = rng.integers(0, 4000, (3, 33, 37)).astype(np.uint16)
    mapped, m = read_image(write_image(tmp_path / "a.tif", arr), mmap=True)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    assert np.array_equal(mapped, arr) and m.shape == arr.shape


def test_mmap_of_compressed_tiff_falls_back_to_reading(tmp_path, rng):
    arr = rng.integers(0, 4000, (3, 33, 37)).astype(np.uint16)
    back, _ = read_image(write_image(tmp_path / "a.tif", arr, compression="zlib"), mmap=True)
    assert not isinstance(back, np.memmap) and np.array_equal(back, arr)


# ---------------------------------------------------------------- NIfTI


def _affine():
    affine = np.array([[0.0, -0.5, 0.0, 10.0], [0.7, 0.0, 0.0, -5.0], [0.0, 0.0, 2.0, 3.0], [0.0, 0.0, 0.0, 1.0]])
    return affine


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "int32", "float32", "float64"])
def test_nifti_round_trip_keeps_values_dtype_affine_and_spacing(tmp_path, rng, suffix, dtype):
    arr = (rng.random((9, 11, 7)) * 100).astype(dtype)
    meta = ImageMeta("XYZ", affine=_affine(), format="nifti")
    back, m = read_image(write_image(tmp_path / f"v{suffix}", arr, meta))
    assert back.dtype == arr.dtype and np.array_equal(back, arr)
    assert m.axes == "XYZ" and np.array_equal(m.affine, _affine()) and m.spacing == (0.7, 0.5, 2.0)


def test_nifti_2d_round_trip(tmp_path, rng):
    arr = rng.random((9, 11)).astype(np.float32)
    back, m = read_image(write_image(tmp_path / "a.nii", arr, ImageMeta("XY", spacing=(0.5, 0.25))))
    assert np.array_equal(back, arr) and m.axes == "XY" and m.spacing == (0.5, 0.25)


def test_nifti_from_nibabel_keeps_codes_units_and_time_step(tmp_path, rng):
    img = nib.Nifti1Image(rng.random((4, 5, 6, 3)).astype(np.float32), _affine())
    img.set_qform(_affine(), code=1)
    img.set_sform(_affine(), code=4)
    img.header.set_zooms((0.7, 0.5, 2.0, 2.5))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp_path / "t.nii.gz")
    arr, m = read_image(tmp_path / "t.nii.gz")
    assert (m.axes, m.spacing) == ("XYZT", (0.7, 0.5, 2.0, 2.5))
    assert (m.extra["sform_code"], m.extra["qform_code"], m.extra["xyzt_units"]) == (4, 1, ("mm", "sec"))
    back, m2 = read_image(write_image(tmp_path / "copy.nii.gz", arr, m))
    assert np.array_equal(back, arr) and m2 == m.replace(source=m2.source)
    written = nib.load(tmp_path / "copy.nii.gz").header
    assert (int(written["sform_code"]), int(written["qform_code"])) == (4, 1)


def test_nifti_integer_scaling_stays_integer(tmp_path):
    raw = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(1, -1024)  # CT's usual Hounsfield offset
    nib.save(img, tmp_path / "ct.nii")
    arr, m = read_image(tmp_path / "ct.nii")
    assert arr.dtype == np.int16 and np.array_equal(arr, raw.astype(np.int32) - 1024)
    assert m.extra["scl_inter"] == -1024.0


def test_nifti_fractional_scaling_of_16_bit_data_gives_float32(tmp_path):
    raw = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(0.5, 1.0)
    nib.save(img, tmp_path / "s.nii.gz")
    arr, _ = read_image(tmp_path / "s.nii.gz")
    assert arr.dtype == np.float32 and np.array_equal(arr, np.asarray(nib.load(tmp_path / "s.nii.gz").dataobj))


def test_nifti_without_scaling_keeps_on_disk_dtype(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5), np.uint16), np.eye(4), dtype=np.uint16), tmp_path / "a.nii")
    arr, _ = read_image(tmp_path / "a.nii")
    assert arr.dtype == np.uint16


def test_mmap_of_uncompressed_nifti_is_a_read_only_memmap(tmp_path, rng):
    arr = rng.random((9, 11, 7)).astype(np.float32)
    mapped, _ = read_image(write_image(tmp_path / "a.nii", arr), mmap=True)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable and np.array_equal(mapped, arr)


# ---------------------------------------------------------------- ITK formats


def test_mha_keeps_spacing_origin_and_direction(tmp_path, rng):
    import itk

    arr = rng.integers(-100, 100, (3, 33, 37)).astype(np.int16)
    direction = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    meta = ImageMeta("ZYX", spacing=(2.0, 0.3, 0.4), format="itk", extra={"origin": (1.0, 2.0, 3.0),
                                                                          "direction": direction})
    p = write_image(tmp_path / "a.mha", arr, meta)
    image = itk.imread(str(p))  # the file itself, as ITK sees it: spacing is x, y, z
    assert tuple(image.GetSpacing()) == (0.4, 0.3, 2.0) and tuple(image.GetOrigin()) == (1.0, 2.0, 3.0)
    back, m = read_image(p)
    assert np.array_equal(back, arr) and m.axes == "ZYX" and m.spacing == (2.0, 0.3, 0.4)
    assert m.extra["origin"] == (1.0, 2.0, 3.0) and m.extra["direction"] == direction
    # affine columns follow the array's (z, y, x): voxel (1, 0, 0) is one z step along ITK's third direction
    assert np.allclose(m.affine @ [1, 0, 0, 1], [1.0, 2.0, 5.0, 1.0])


@pytest.mark.parametrize("suffix", [".nrrd", ".mhd"])
def test_nrrd_and_mhd_round_trip(tmp_path, rng, suffix):
    arr = rng.random((3, 33, 37)).astype(np.float32)
    back, m = read_image(write_image(tmp_path / f"a{suffix}", arr, ImageMeta("ZYX", spacing=(2.0, 0.5, 0.5))))
    assert np.array_equal(back, arr) and m.spacing == (2.0, 0.5, 0.5)
    expected = {"a.nrrd"} if suffix == ".nrrd" else {"a.mhd", "a.raw"}  # header and data moved in together
    assert set(os.listdir(tmp_path)) == expected


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_png_grey_round_trip(tmp_path, rng, dtype):
    arr = rng.integers(0, np.iinfo(dtype).max, (33, 37)).astype(dtype)
    back, m = read_image(write_image(tmp_path / "a.png", arr))
    assert back.dtype == arr.dtype and np.array_equal(back, arr) and m.axes == "YX"


@pytest.mark.parametrize("suffix", [".png", ".mha"])
def test_rgb_through_itk_keeps_samples_last(tmp_path, rng, suffix):
    arr = rng.integers(0, 255, (33, 37, 3), dtype=np.uint8)
    back, m = read_image(write_image(tmp_path / f"rgb{suffix}", arr, ImageMeta("YXS")))
    assert np.array_equal(back, arr) and m.axes == "YXS"


def test_nifti_affine_survives_a_trip_through_mha(tmp_path, rng):
    arr = rng.integers(0, 100, (5, 6, 7)).astype(np.int16)
    first, m = read_image(write_image(tmp_path / "a.nii", arr, ImageMeta("XYZ", affine=_affine(), format="nifti")))
    mha, mi = read_image(write_image(tmp_path / "a.mha", first, m))
    voxel = np.array([1.0, 2.0, 3.0, 1.0])
    lps_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0])
    assert np.allclose(lps_to_ras @ mi.affine @ voxel, _affine() @ voxel)  # same voxel, same place
    back, mn = read_image(write_image(tmp_path / "b.nii.gz", mha, mi))
    assert np.array_equal(back, arr) and np.allclose(mn.affine, _affine())


# ---------------------------------------------------------------- bad input


def _truncate(path, fraction=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _written(tmp_path, name, arr, **kw):
    return write_image(tmp_path / name, arr, **kw)


def _file(path, content=b""):
    path.write_bytes(content)
    return path


def _folder(path):
    path.mkdir()
    return path


TEXT = b"not an image\n" * 40
BAD_FILES = {
    "missing": lambda d: d / "missing.tif",
    "folder": lambda d: _folder(d / "folder.tif"),
    "empty tif": lambda d: _file(d / "e.tif"),
    "empty nii.gz": lambda d: _file(d / "e.nii.gz"),
    "empty mha": lambda d: _file(d / "e.mha"),
    "text as tif": lambda d: _file(d / "t.tif", TEXT),
    "text as nii": lambda d: _file(d / "t.nii", TEXT),
    "text as nii.gz": lambda d: _file(d / "t.nii.gz", TEXT),
    "text as png": lambda d: _file(d / "t.png", TEXT),
    "unsupported extension": lambda d: _file(d / "notes.txt", TEXT),
    "no extension": lambda d: _file(d / "image", b"II*\x00"),
    "truncated tif stack": lambda d: _truncate(_written(d, "s.tif", np.ones((3, 33, 37), np.uint16))),
    "truncated tif data": lambda d: _truncate(_written(d, "s.tif", np.ones((33, 37), np.uint16)), 0.5),
    "truncated compressed tif": lambda d: _truncate(
        _written(d, "c.tif", np.random.default_rng(0).random((33, 37)), compression="zlib")),
    "truncated nii": lambda d: _truncate(_written(d, "v.nii", np.ones((9, 11, 7), np.int16))),
    "truncated nii.gz": lambda d: _truncate(
        _written(d, "v.nii.gz", np.random.default_rng(0).random((9, 11, 7))), 0.5),
    "truncated mha": lambda d: _truncate(_written(d, "v.mha", np.ones((9, 11, 7), np.int16))),
    "truncated png": lambda d: _truncate(
        _written(d, "v.png", np.random.default_rng(0).integers(0, 255, (33, 37), dtype=np.uint8))),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_input_raises_one_image_read_error_naming_the_file(tmp_path, case):
    path = BAD_FILES[case](tmp_path)
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("case", "problem"),
    [("missing", "no such file"), ("folder", "is a folder"), ("empty tif", "empty file"),
     ("text as tif", "not a TIFF file"), ("unsupported extension", "unsupported file type .txt"),
     ("truncated tif stack", "truncated"), ("truncated tif data", "truncated"), ("truncated nii", "truncated"),
     ("truncated mha", "truncated")],
)
def test_bad_input_message_says_what_is_wrong(tmp_path, case, problem):
    with pytest.raises(ImageReadError, match=problem):
        read_image(BAD_FILES[case](tmp_path))


# ---------------------------------------------------------------- writing: refusals and atomicity


def test_write_creates_missing_output_folders(tmp_path):
    p = write_image(tmp_path / "out" / "deeper" / "a.tif", np.zeros((33, 37), np.uint8))
    assert p == tmp_path / "out" / "deeper" / "a.tif" and p.is_file()


@pytest.mark.parametrize("name", ["a.jpg", "a.bmp", "a.txt", "a"])
def test_write_refuses_unsupported_extensions(tmp_path, name):
    with pytest.raises(ImageWriteError, match="cannot write"):
        write_image(tmp_path / name, np.zeros((33, 37), np.uint8))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(("name", "arr"), [("a.png", np.zeros((33, 37), np.int32)),
                                           ("a.png", np.zeros((3, 33, 37), np.uint8)),
                                           ("a.mha", np.zeros((33, 37), np.int64)),
                                           ("a.nii", np.zeros((33, 37), np.float16)),
                                           ("a.tif", np.zeros((33, 37), np.complex64))])
def test_write_refuses_what_the_format_cannot_hold(tmp_path, name, arr):
    with pytest.raises(ImageWriteError, match="a.png|a.mha|a.nii|a.tif"):
        write_image(tmp_path / name, arr)
    assert os.listdir(tmp_path) == []


def test_bool_arrays_are_written_as_uint8(tmp_path):
    back, _ = read_image(write_image(tmp_path / "m.tif", np.eye(5, dtype=bool)))
    assert back.dtype == np.uint8 and np.array_equal(back, np.eye(5))


def test_write_refuses_to_overwrite_the_input(tmp_path):
    src = write_image(tmp_path / "in.tif", np.ones((33, 37), np.uint8))
    arr, meta = read_image(src)
    before = src.read_bytes()
    (tmp_path / "link.tif").symlink_to(src)
    for target in (src, tmp_path / "link.tif", tmp_path / "sub" / ".." / "in.tif"):
        with pytest.raises(ImageWriteError, match="would overwrite the input"):
            write_image(target, arr * 0, meta)
    assert src.read_bytes() == before


def test_meta_of_an_rgb_image_serves_for_its_label_image(tmp_path):
    _, meta = read_image(write_image(tmp_path / "rgb.tif", np.zeros((33, 37, 3), np.uint8),
                                     ImageMeta("YXS", spacing=(0.5, 0.5, 1.0))))
    _, m = read_image(write_image(tmp_path / "labels.tif", np.ones((33, 37), np.uint16), meta))
    assert m.axes == "YX" and m.spacing == (0.5, 0.5)


def test_meta_that_does_not_fit_the_array_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="does not fit a 2-D array"):
        write_image(tmp_path / "a.tif", np.zeros((33, 37)), ImageMeta("ZYX"))


def _fail_midway(path, *args, **kwargs):
    with open(path, "wb") as f:
        f.write(b"II*\x00 half a file")
    raise OSError(28, "No space left on device")


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(tifffile, "imwrite", _fail_midway)
    with pytest.raises(ImageWriteError, match="a.tif: could not write TIFF .*No space left"):
        write_image(tmp_path / "a.tif", np.zeros((33, 37), np.uint8))
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_an_existing_target_unchanged(tmp_path, monkeypatch):
    target = write_image(tmp_path / "a.tif", np.full((33, 37), 7, np.uint8))
    before = target.read_bytes()
    monkeypatch.setattr(tifffile, "imwrite", _fail_midway)
    with pytest.raises(ImageWriteError):
        write_image(target, np.zeros((33, 37), np.uint8))
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["a.tif"]


def test_interrupted_write_cleans_up_and_is_not_swallowed(tmp_path, monkeypatch):
    def interrupted(img, path):
        open(path, "wb").close()
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "a.nii.gz", np.zeros((9, 11, 7), np.uint8))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- open_output


def test_open_output_tiff_equals_what_was_written_tile_by_tile(tmp_path, rng):
    expected = rng.integers(0, 60000, (45, 61)).astype(np.uint16)
    meta = ImageMeta("YX", spacing=(0.65, 0.65))
    with open_output(tmp_path / "out" / "labels.tif", (45, 61), np.uint16, meta) as out:
        assert isinstance(out, np.memmap)  # backed by the file, not by memory
        for y in range(0, 45, 16):
            for x in range(0, 61, 16):
                out[y : y + 16, x : x + 16] = expected[y : y + 16, x : x + 16]
    back, m = read_image(tmp_path / "out" / "labels.tif")
    assert np.array_equal(back, expected) and m.spacing == (0.65, 0.65)
    assert os.listdir(tmp_path / "out") == ["labels.tif"]


def test_open_output_failure_inside_the_block_leaves_the_target_alone(tmp_path):
    target = write_image(tmp_path / "a.tif", np.full((33, 37), 7, np.uint8))
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="tile failed"):
        with open_output(target, (33, 37), np.uint8) as out:
            out[:10] = 1
            raise RuntimeError("tile failed")
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["a.tif"]


def test_open_output_refuses_the_input_before_the_block_runs(tmp_path):
    src = write_image(tmp_path / "in.tif", np.ones((33, 37), np.uint8))
    _, meta = read_image(src)
    ran = []
    with pytest.raises(ImageWriteError, match="would overwrite the input"):
        with open_output(src, (33, 37), np.uint8, meta):
            ran.append(True)
    assert not ran


def test_open_output_other_formats_write_on_exit(tmp_path):
    with open_output(tmp_path / "a.nii.gz", (9, 11, 7), np.int16) as out:
        out[2:5] = 3
    back, _ = read_image(tmp_path / "a.nii.gz")
    assert back.dtype == np.int16 and back.sum() == 3 * 3 * 11 * 7


# ---------------------------------------------------------------- ImageMeta


def test_meta_select_moves_the_origin_to_the_slice():
    meta = ImageMeta("XYZ", shape=(4, 5, 6), spacing=(0.5, 0.5, 3.0), affine=np.diag([0.5, 0.5, 3.0, 1.0]))
    s = meta.select(2, 4)
    assert (s.axes, s.shape, s.spacing) == ("XY", (4, 5), (0.5, 0.5))
    assert np.allclose(s.affine @ [1, 2, 0, 1], meta.affine @ [1, 2, 4, 1])  # same voxel, same place


def test_meta_move_axis_permutes_spacing_shape_and_affine_columns():
    affine = np.diag([0.5, 0.7, 3.0, 1.0])
    meta = ImageMeta("XYZ", shape=(4, 5, 6), spacing=(0.5, 0.7, 3.0), affine=affine)
    moved = meta.move_axis(2, 0)
    assert (moved.axes, moved.shape, moved.spacing) == ("ZXY", (6, 4, 5), (3.0, 0.5, 0.7))
    assert np.allclose(moved.affine @ [3, 1, 2, 1], affine @ [1, 2, 3, 1])


def test_meta_identity_moves_change_nothing():
    meta = ImageMeta("ZYX", shape=(3, 4, 5), spacing=(2.0, 1.0, 1.0))
    assert meta.move_axis(0, 0) == meta and meta.replace() == meta


def test_meta_is_immutable_and_validated():
    meta = ImageMeta("YX", affine=np.eye(4))
    with pytest.raises(AttributeError):
        meta.axes = "ZYX"
    with pytest.raises(ValueError):
        meta.affine[0, 0] = 2.0
    with pytest.raises(ValueError, match="unique upper-case"):
        ImageMeta("YY")
    with pytest.raises(ValueError, match="finite and > 0"):
        ImageMeta("YX", spacing=(0.0, 1.0))


def test_formats_itk_reads_but_we_do_not_write(tmp_path, rng):
    import itk

    ct = rng.integers(-1000, 1000, (33, 37)).astype(np.int16)
    image = itk.image_from_array(ct)
    image.SetSpacing([0.5, 0.25])
    itk.imwrite(image, str(tmp_path / "slice.dcm"))
    grey = rng.integers(0, 255, (33, 37)).astype(np.uint8)
    itk.imwrite(itk.image_from_array(grey), str(tmp_path / "a.jpg"))
    back, m = read_image(tmp_path / "slice.dcm")  # one DICOM file is one 2D slice
    assert np.array_equal(back, ct) and m.axes == "YX" and m.spacing == (0.25, 0.5)
    back, m = read_image(tmp_path / "a.jpg")
    assert back.shape == (33, 37) and back.dtype == np.uint8 and np.abs(back - grey.astype(float)).mean() < 5


def test_itk_pixel_types_without_wrapping_read_as_the_next_wider_type(tmp_path):
    arr = np.arange(-12, 12, dtype=np.int8).reshape(4, 6)
    header = (b"ObjectType = Image\nNDims = 2\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              b"ElementSpacing = 0.5 0.25\nDimSize = 6 4\nElementType = MET_CHAR\nElementDataFile = LOCAL\n")
    (tmp_path / "int8.mha").write_bytes(header + arr.tobytes())  # MetaImage as other tools write it
    back, m = read_image(tmp_path / "int8.mha")
    assert back.dtype == np.int16 and np.array_equal(back, arr) and m.spacing == (0.25, 0.5)
