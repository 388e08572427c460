import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from unetkit.data import ctc_datalist, demo_frame, make_demo, make_demo_volumes, msd_datalist
from unetkit.data.demo import demo_labels


@pytest.fixture(scope="module")
def frames():
    """Eight default-size frames (labels and phase images), shared by the statistics tests."""
    return [demo_frame(seed=(0, 0, t)) for t in range(8)]


def test_make_demo_writes_two_ctc_sequences_with_every_frame_annotated(tmp_path):
    root = make_demo(tmp_path / "demo", frames=3, shape=(41, 53))
    for seq in ("01", "02"):
        assert sorted(p.name for p in (root / seq).iterdir()) == ["t000.tif", "t001.tif", "t002.tif"]
        assert sorted(p.name for p in (root / f"{seq}_GT" / "SEG").iterdir()) == [
            "man_seg000.tif",
            "man_seg001.tif",
            "man_seg002.tif",
        ]
    image = tifffile.imread(root / "01" / "t001.tif")
    labels = tifffile.imread(root / "01_GT" / "SEG" / "man_seg001.tif")
    assert (image.dtype, labels.dtype, image.shape, labels.shape) == (np.uint8, np.uint16, (41, 53), (41, 53))
    assert len(ctc_datalist(root, ("01", "02"))) == 6


def test_make_demo_is_deterministic_and_seeded(tmp_path):
    a = make_demo(tmp_path / "a", frames=2, shape=(40, 48), seed=5)
    b = make_demo(tmp_path / "b", frames=2, shape=(40, 48), seed=5)
    c = make_demo(tmp_path / "c", frames=2, shape=(40, 48), seed=6)
    for rel in ("01/t001.tif", "02_GT/SEG/man_seg000.tif"):
        np.testing.assert_array_equal(tifffile.imread(a / rel), tifffile.imread(b / rel))
        assert not np.array_equal(tifffile.imread(a / rel), tifffile.imread(c / rel))
    assert not np.array_equal(tifffile.imread(a / "01/t000.tif"), tifffile.imread(a / "02/t000.tif"))


def test_more_frames_extend_the_sequence_without_changing_earlier_frames(tmp_path):
    short = make_demo(tmp_path / "short", frames=1, shape=(40, 48))
    long = make_demo(tmp_path / "long", frames=3, shape=(40, 48))
    np.testing.assert_array_equal(tifffile.imread(short / "01/t000.tif"), tifffile.imread(long / "01/t000.tif"))


def test_cells_are_15_to_30_per_frame_numbered_without_gaps_each_in_one_piece(frames):
    for _, labels in frames:
        n = int(labels.max())
        assert 15 <= n <= 30
        assert set(np.unique(labels)) == set(range(n + 1))
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            assert ndi.label(labels[sl] == i)[1] == 1


def test_cells_have_the_papers_size_and_many_touch_or_cross_the_border(frames):
    radii, touching, cut = [], 0, 0
    for _, labels in frames:
        inner = labels[1:-1, 1:-1]
        border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))) - {0}
        for i in range(1, labels.max() + 1):
            if i not in border:
                radii.append(np.sqrt((labels == i).sum() / np.pi))
            ring = ndi.binary_dilation(labels == i) & (labels != i) & (labels > 0)
            touching += bool(ring.any())
        cut += len(border)
        assert inner.size  # frames are 2D and not degenerate
    n = sum(int(lab.max()) for _, lab in frames)
    # Equivalent radii of whole cells: perturbed ellipses with semi-axes of 10-25 px.
    assert 7 <= np.percentile(radii, 5) and np.percentile(radii, 95) <= 26
    assert touching / n >= 0.5  # most cells touch a neighbour: the weight map's border matters
    assert cut >= len(frames)  # some cells are cut by the image border


def test_phase_cells_stand_out_from_their_surroundings(frames):
    # No ambiguity: every cell's mean differs from the background ring just outside its halo.
    for image, labels in frames:
        img = image.astype(float)
        fg = labels > 0
        for i in range(1, labels.max() + 1):
            cell = labels == i
            ring = ndi.binary_dilation(cell, iterations=9) & ~ndi.binary_dilation(fg, iterations=5)
            if ring.sum() < 20:
                continue  # a cell buried in a cluster has no background nearby to compare with
            assert abs(img[cell].mean() - img[ring].mean()) >= 18, i


def test_phase_background_is_mid_grey_with_a_bright_halo_around_cells(frames):
    image, labels = frames[0]
    fg = labels > 0
    gap = ndi.distance_transform_edt(~fg)
    halo, far = image[(gap >= 1) & (gap <= 2)], image[gap > 12]
    assert 100 <= np.median(far) <= 156
    assert np.median(halo) >= np.median(far) + 15


def test_fluorescence_cells_are_bright_on_dark_and_a_threshold_finds_them():
    image, labels = demo_frame(seed=3, kind="fluorescence")
    assert image.dtype == np.uint16
    fg = labels > 0
    assert np.median(image[fg]) > 4 * np.median(image[~fg])
    # A reference segmentation (smooth + Otsu threshold) reaches the IoU the demo must allow a U-Net.
    smooth = ndi.gaussian_filter(image.astype(float), 1)
    pred = smooth > threshold_otsu(smooth)
    assert (pred & fg).sum() / (pred | fg).sum() >= 0.9


def test_demo_frame_gives_the_same_cells_for_both_kinds():
    _, phase_labels = demo_frame((64, 72), seed=9)
    _, fluo_labels = demo_frame((64, 72), seed=9, kind="fluorescence")
    np.testing.assert_array_equal(phase_labels, fluo_labels)


def test_demo_labels_places_the_requested_number_of_cells_at_most():
    labels, depth = demo_labels((128, 128), seed=1, cells=4)
    assert 1 <= labels.max() <= 4
    assert np.isinf(depth[labels == 0]).all() and (depth[labels > 0] < 1).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"kind": "brightfield"}, "kind"), ({"frames": 0}, "frames"), ({"shape": (8, 64)}, "shape")],
)
def test_make_demo_rejects_bad_arguments_before_writing(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_demo(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_make_demo_volumes_writes_an_msd_layout_in_nibabel_order(tmp_path):
    root = make_demo_volumes(tmp_path / "ct", n=2, shape=(10, 24, 28), spacing=(2.5, 0.8, 0.7))
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["training"][1] == {
        "image": "./imagesTr/vol_001.nii.gz",
        "label": "./labelsTr/vol_001.nii.gz",
    }
    items = msd_datalist(root)
    img, lab = nib.load(items[0]["image"]), nib.load(items[0]["label"])
    assert img.shape == lab.shape == (28, 24, 10)  # (X, Y, Z)
    assert tuple(float(z) for z in img.header.get_zooms()) == pytest.approx((0.7, 0.8, 2.5))
    np.testing.assert_allclose(np.diag(img.affine)[:3], (0.7, 0.8, 2.5))
    assert img.get_data_dtype() == np.float32 and lab.get_data_dtype() == np.uint8


def test_demo_volumes_look_like_ct_with_a_brighter_organ(tmp_path):
    root = make_demo_volumes(tmp_path / "ct", n=1)
    hu = np.asarray(nib.load(root / "imagesTr" / "vol_000.nii.gz").dataobj)
    organ = np.asarray(nib.load(root / "labelsTr" / "vol_000.nii.gz").dataobj)
    assert set(np.unique(organ)) == {0, 1} and 0.005 < organ.mean() < 0.2
    assert np.median(hu[0]) == pytest.approx(-1000, abs=50)  # air at the corner column
    inside = ndi.binary_erosion(organ, iterations=2).astype(bool)
    around = ndi.binary_dilation(organ, iterations=4) & ~ndi.binary_dilation(organ, iterations=2)
    assert np.median(hu[inside]) == pytest.approx(100, abs=15)
    assert np.median(hu[inside]) - np.median(hu[around]) >= 40


def test_make_demo_volumes_is_deterministic(tmp_path):
    a = make_demo_volumes(tmp_path / "a", n=1, shape=(8, 16, 16))
    b = make_demo_volumes(tmp_path / "b", n=1, shape=(8, 16, 16))
    for rel in ("imagesTr/vol_000.nii.gz", "labelsTr/vol_000.nii.gz"):
        np.testing.assert_array_equal(np.asarray(nib.load(a / rel).dataobj), np.asarray(nib.load(b / rel).dataobj))


def test_every_phase_cell_has_an_edge_to_see(frames):
    # Dark cells meet a bright halo, bright cells a dark rim: the boundary itself always shows contrast,
    # so the annotation is learnable (a bright cell fading into a bright halo would not be).
    for image, labels in frames:
        img = ndi.gaussian_filter(image.astype(float), 0.5)
        fg = labels > 0
        outside = ndi.binary_dilation(fg, iterations=2) & ~fg
        for i in range(1, labels.max() + 1):
            cell = labels == i
            inner = cell & ~ndi.binary_erosion(cell, iterations=2)
            rim = ndi.binary_dilation(cell, iterations=2) & outside
            if rim.sum() < 10:
                continue  # buried in a cluster
            assert abs(img[inner].mean() - img[rim].mean()) >= 12, i


# --- The realistic kinds: nuclei (DSB 2018), phase (PhC-C2DH-U373), dic (DIC-C2DH-HeLa), em (ISBI 2012) ------------

REALISTIC = ("nuclei", "phase", "dic", "em")
DTYPES = {"nuclei": np.uint16, "phase": np.uint8, "dic": np.uint8, "em": np.uint8}
# Equivalent diameters (px) of whole objects (not cut by the border) and objects per 256 x 320 frame.
DIAMETERS = {"nuclei": (8, 32), "phase": (12, 90), "dic": (14, 64), "em": (4, 110)}
COUNTS = {"nuclei": (20, 70), "phase": (4, 16), "dic": (30, 80), "em": (50, 130)}


@pytest.fixture(scope="module")
def realistic():
    """Three default-size frames of each realistic kind, from different data-set seeds and sequences."""
    return {kind: [demo_frame(seed=(s, s % 2, 0), kind=kind) for s in range(3)] for kind in REALISTIC}


def _touching_fraction(labels):
    touching = 0
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        window = labels[tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)]
        touching += bool((ndi.binary_dilation(window == i) & (window != i) & (window > 0)).any())
    return touching / labels.max()


@pytest.mark.parametrize("kind", REALISTIC)
def test_each_kind_writes_the_ctc_layout_with_its_dtype(tmp_path, kind):
    root = make_demo(tmp_path / kind, kind=kind, frames=2, shape=(67, 83))
    for seq in ("01", "02"):
        assert sorted(p.name for p in (root / seq).iterdir()) == ["t000.tif", "t001.tif"]
        assert sorted(p.name for p in (root / f"{seq}_GT" / "SEG").iterdir()) == ["man_seg000.tif", "man_seg001.tif"]
    image = tifffile.imread(root / "02" / "t001.tif")
    labels = tifffile.imread(root / "02_GT" / "SEG" / "man_seg001.tif")
    assert (image.dtype, labels.dtype, image.shape, labels.shape) == (DTYPES[kind], np.uint16, (67, 83), (67, 83))
    assert len(ctc_datalist(root, ("01", "02"))) == 4


@pytest.mark.parametrize("kind", REALISTIC)
def test_each_kind_is_deterministic_per_seed_and_varies_across_seeds_and_frames(kind):
    image, labels = demo_frame((90, 110), seed=(5, 0, 1), kind=kind)
    again_image, again_labels = demo_frame((90, 110), seed=(5, 0, 1), kind=kind)
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(labels, again_labels)
    for other in ((6, 0, 1), (5, 0, 2), (5, 1, 1)):  # another data set, frame, sequence
        assert not np.array_equal(labels, demo_frame((90, 110), seed=other, kind=kind)[1]), other


@pytest.mark.parametrize("kind", REALISTIC)
def test_each_kind_numbers_objects_without_gaps_in_one_piece_with_its_sizes(realistic, kind):
    counts, diameters = [], []
    for image, labels in realistic[kind]:
        assert (image.shape, image.dtype, labels.dtype) == ((256, 320), DTYPES[kind], np.uint16)
        n = int(labels.max())
        assert set(np.unique(labels)) == set(range(n + 1))
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            assert ndi.label(labels[sl] == i)[1] == 1, (kind, i)
        edge = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
        area = np.bincount(labels.ravel())
        diameters += [2 * np.sqrt(area[i] / np.pi) for i in range(1, n + 1) if i not in edge]
        counts.append(n)
    lo, hi = DIAMETERS[kind]
    assert lo <= min(diameters) and max(diameters) <= hi
    assert COUNTS[kind][0] <= min(counts) and max(counts) <= COUNTS[kind][1]
    assert len(set(counts)) > 1  # density varies from frame to frame


def test_every_nucleus_is_brighter_than_the_background_around_it(realistic):
    for image, labels in realistic["nuclei"]:
        img = image.astype(float)
        background = ~ndi.binary_dilation(labels > 0, iterations=3)
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            around = tuple(slice(max(s.start - 10, 0), s.stop + 10) for s in sl)
            if background[around].sum() >= 20:  # else buried in a clump
                assert img[sl][labels[sl] == i].mean() > 1.15 * np.median(img[around][background[around]]), i


def test_nuclei_brightness_spreads_widely_and_many_touch(realistic):
    touching = []
    for image, labels in realistic["nuclei"]:
        img = image.astype(float)
        level = np.median(img[~ndi.binary_dilation(labels > 0, iterations=3)])
        means = np.asarray(ndi.mean(img, labels, np.arange(1, labels.max() + 1))) - level
        assert np.percentile(means, 95) / np.percentile(means, 5) >= 3  # ~10x in peak brightness, blurred
        touching.append(_touching_fraction(labels))
    assert min(touching) >= 0.15 and np.mean(touching) >= 0.3  # clumps: a good part touch another nucleus


def test_phase_cells_are_a_little_darker_than_the_substrate_inside_bright_halos(realistic):
    for image, labels in realistic["phase"]:
        fg = labels > 0
        gap = ndi.distance_transform_edt(~fg)
        substrate, halo, cells = np.median(image[gap > 15]), np.median(image[(gap >= 1) & (gap <= 3)]), image[fg]
        assert halo >= substrate + 6  # the halo hugs the annotated outline
        assert 3 <= substrate - np.median(cells) <= 35  # low contrast: darker, not black


def test_every_phase_cell_has_its_halo_on_its_outline(realistic):
    # The bright halo lies 1-3 px outside the annotated outline, brighter than the substrate 8-12 px out.
    for image, labels in realistic["phase"]:
        img = image.astype(float)
        gap = ndi.distance_transform_edt(labels == 0)
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            around = tuple(slice(max(s.start - 12, 0), s.stop + 12) for s in sl)
            own = ndi.distance_transform_edt(labels[around] != i)
            halo = (own >= 1) & (own <= 3) & (gap[around] >= 1)
            far = (own >= 8) & (own <= 12) & (gap[around] >= 8)
            if halo.sum() >= 10 and far.sum() >= 10:  # else hemmed in by other cells
                assert img[around][halo].mean() >= img[around][far].mean() + 4, i


def test_dic_relief_is_the_shear_derivative_of_the_annotated_cells(realistic):
    # DIC shows edges, not areas: mean grey inside and outside agree, but where the ground truth's outline
    # rises along the shear the image is bright, where it falls dark; moved 7 px along the shear, it no longer fits.
    shear = 0.75 * np.pi  # the shear of demo.py's DIC, give or take 0.2 rad

    def relief(img, mask):
        gy, gx = np.gradient(ndi.gaussian_filter(mask.astype(float), 1.5))
        rises = np.cos(shear) * gx + np.sin(shear) * gy
        return img[rises > 0.05].mean() - img[rises < -0.05].mean()

    for image, labels in realistic["dic"]:
        img, fg = image.astype(float), labels > 0
        assert abs(img[fg].mean() - img[~fg].mean()) < 10 and img[fg].std() > 1.3 * img[~fg].std()
        moved = max(abs(relief(img, np.roll(fg, step, axis=(0, 1)))) for step in ((5, -5), (-5, 5)))
        assert relief(img, fg) >= 8 and relief(img, fg) > 1.5 * moved
        assert _touching_fraction(labels) >= 0.8  # sheets of touching cells


def test_em_cells_tile_the_image_apart_from_dark_membranes(realistic):
    for image, labels in realistic["em"]:
        membrane = labels == 0
        assert 0.08 <= membrane.mean() <= 0.35  # ISBI 2012: about a fifth of the pixels are membrane
        assert np.median(image[membrane]) < np.median(image[~membrane]) - 50
        # Membranes separate every pair of cells: no two labels are 4-neighbours.
        for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:])):
            assert not ((a != b) & (a > 0) & (b > 0)).any()


def test_demo_frame_rejects_fewer_than_one_cell():
    with pytest.raises(ValueError, match="cells must be at least 1"):
        demo_frame((32, 32), kind="em", cells=0)


def test_basic_stays_the_default_kind():
    image, labels = demo_frame((48, 56), seed=4)
    basic_image, basic_labels = demo_frame((48, 56), seed=4, kind="basic")
    np.testing.assert_array_equal(image, basic_image)
    np.testing.assert_array_equal(labels, basic_labels)
