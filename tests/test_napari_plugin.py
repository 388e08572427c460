"""The napari plugin, driven headless as a user drives it: open a bundle, segment an image layer, correct a
label, save the frame into the data folder, fine-tune from the widget.

Qt runs offscreen (``QT_QPA_PLATFORM=offscreen``, set in the root conftest before any Qt application exists).
Offscreen Qt on Linux has no OpenGL context without an X server, and napari's vispy layers ask OpenGL for its
texture limits when a layer is added: ``no_gl`` answers those two queries as napari's own test suite does
(nothing is drawn offscreen, so nothing else asks). Everything else is napari as installed.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # also when this file is run outside the repository's conftest

napari = pytest.importorskip("napari", reason="the napari extra is not installed: pip install -e '.[napari]'")

from tiny_bundles import make_tiny_bundle  # noqa: E402

from unetkit.bundle import pack_bundle  # noqa: E402
from unetkit.bundle.archive import file_sha256  # noqa: E402
from unetkit.data import ctc_datalist, make_demo  # noqa: E402
from unetkit.napari.frames import Cancelled  # noqa: E402
from unetkit.napari.widget import AnnotationWidget  # noqa: E402
from unetkit.predict import load_bundle_model, predict_file  # noqa: E402

WAIT_MS = 60_000  # a loaded 2-core CI machine; the runs take a second or two each


@pytest.fixture(autouse=True)
def no_gl(monkeypatch):
    monkeypatch.setattr("napari._vispy.layers.image.get_gl_extensions", lambda: "")
    for module in ("napari._vispy.layers.image", "napari._vispy.layers.base"):
        monkeypatch.setattr(f"{module}.get_max_texture_sizes", lambda: (16384, 2048))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    # 128 px: the recipe's training tiles pad by the network's margin, which must fit inside the frame
    return make_demo(tmp_path_factory.mktemp("demo"), seed=2, frames=1, shape=(128, 128))


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    # as a user opens it, from the Plugins menu: napari builds it from the manifest, with a proxy of the viewer
    _, w = viewer.window.add_plugin_dock_widget("unetkit", "Segment, correct, fine-tune")
    assert isinstance(w, AnnotationWidget)
    yield w
    # a run still going when a test fails must not outlive the viewer
    worker = w._worker
    w.cancel()
    qtbot.waitUntil(lambda: worker is None or not worker.is_running, timeout=WAIT_MS)


def _wait(qtbot, w):
    qtbot.waitUntil(lambda: w.busy is None, timeout=WAIT_MS)


def test_manifest_registers_the_widget():
    from importlib.metadata import entry_points

    from npe2 import PluginManifest

    (ep,) = [e for e in entry_points(group="napari.manifest") if e.name == "unetkit"]
    manifest = PluginManifest.from_distribution("unetkit")
    (command,) = manifest.contributions.commands
    assert ep.value == "unetkit.napari:napari.yaml"
    assert [w.command for w in manifest.contributions.widgets] == [command.id]
    assert command.python_name == "unetkit.napari.widget:AnnotationWidget"


def test_open_segment_correct_save_finetune(widget, qtbot, bundle, demo, tmp_path):
    w, viewer = widget, widget.viewer
    data = tmp_path / "data"
    shutil.copytree(demo, data)  # a data folder with annotated frames already: the new one goes beside them
    image_file = data / "02" / "t000.tif"
    pixels = tifffile.imread(image_file)
    # the image comes from elsewhere (no CTC path): it becomes the next free frame of sequence 01
    viewer.add_image(pixels, name="cells")

    zipped = pack_bundle(bundle, tmp_path / "tiny.zip")  # checked against its manifest and scanned, untrusted
    assert w.open_bundle(zipped)
    _wait(qtbot, w)
    assert w.model is not None, w.message_label.text()

    assert w.segment()
    _wait(qtbot, w)
    labels_layer = viewer.layers["cells labels"]
    # the same labels `unetkit infer` writes for that image
    cli = predict_file(load_bundle_model(bundle), image_file, tmp_path / "cli")
    np.testing.assert_array_equal(labels_layer.data, tifffile.imread(cli.outputs[0]))
    assert w.progress_bar.value() == w.progress_bar.maximum()

    # the user paints a new cell with the brush
    new_label = int(labels_layer.data.max()) + 1
    labels_layer.brush_size = 9
    labels_layer.paint((40, 50), new_label)
    painted = labels_layer.data.copy()
    assert (painted == new_label).sum() > 20

    w.data_edit.setText(str(data))
    mask = w.save()
    assert mask == data / "01_GT" / "SEG" / "man_seg001.tif"
    np.testing.assert_array_equal(tifffile.imread(data / "01" / "t001.tif"), pixels)
    np.testing.assert_array_equal(tifffile.imread(mask), painted)
    assert [p["label"] for p in ctc_datalist(data, ("01",))][-1] == str(mask)  # what training reads

    # never over an annotated frame
    w.frame_spin.setValue(1)
    assert w.save() is None
    assert "annotated already" in w.message_label.text()
    np.testing.assert_array_equal(tifffile.imread(mask), painted)

    w.steps_spin.setValue(2)
    w.ignore_spin.setValue(65535)  # pixels painted 65535 would be unannotated (none are here)
    w.output_edit.setText(str(tmp_path / "tuned"))
    seen = []  # progress the GUI thread handled while the run went on: the viewer stayed responsive
    w._relay.progress.connect(lambda fraction, text: seen.append((w.busy, text)))
    assert w.finetune()
    assert not w.finetune()  # one run at a time
    assert "is running" in w.message_label.text()
    _wait(qtbot, w)
    result = w.last_result
    assert result is not None, w.message_label.text()
    assert result.output == tmp_path / "tuned" and result.steps == 2
    assert ("fine-tuning", "fine-tuning: step 2/2") in [(busy, text.split(",")[0]) for busy, text in seen]
    meta = json.loads((result.output / "configs" / "metadata.json").read_text())
    assert meta["unetkit"]["parent"]["sha256"] == file_sha256(bundle / "models" / "model.pt")
    assert json.loads((result.output / "configs" / "train.json").read_text())["ignore_label"] == 65535
    assert w.result_label.text() == str(result.output)
    # the tuned bundle is what segments next
    _wait(qtbot, w)
    assert w.bundle_path == result.output and w.model.folder == result.output


def test_cancel_segmentation_and_finetuning(widget, qtbot, bundle, demo, tmp_path):
    w, viewer = widget, widget.viewer
    # a stack of 2D frames, segmented frame by frame: long enough to be cancelled midway
    stack = np.repeat(tifffile.imread(demo / "01" / "t000.tif")[None], 60, axis=0)
    viewer.add_image(stack, name="stack")
    w.open_bundle(bundle)
    _wait(qtbot, w)
    assert w.segment()
    qtbot.waitUntil(lambda: w.progress_bar.value() > 0, timeout=WAIT_MS)
    w.cancel()
    _wait(qtbot, w)
    assert w.message_label.text() == "segmenting cancelled"
    assert "stack labels" not in [layer.name for layer in viewer.layers]

    w.data_edit.setText(str(demo))
    w.steps_spin.setValue(10_000)
    w.output_edit.setText(str(tmp_path / "never"))
    assert w.finetune()
    qtbot.waitUntil(lambda: w.progress_bar.value() > 0 or w.busy is None, timeout=WAIT_MS)
    w.cancel()
    _wait(qtbot, w)
    assert w.message_label.text() == "fine-tuning cancelled"
    assert w.last_result is None and not (tmp_path / "never").exists()  # no half-made bundle left

    # closing the viewer during a run stops it too
    assert w.segment()
    worker, errors = w._worker, []
    worker.errored.connect(errors.append)
    qtbot.waitUntil(lambda: w.progress_bar.value() > 0, timeout=WAIT_MS)
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running and bool(errors), timeout=WAIT_MS)
    assert isinstance(errors[0], Cancelled)


def test_bad_input_is_one_line_not_a_traceback(widget, qtbot, bundle, tmp_path):
    w, viewer = widget, widget.viewer
    assert not w.segment()
    assert w.message_label.text().startswith("no bundle open")

    not_a_bundle = tmp_path / "holiday"
    not_a_bundle.mkdir()
    w.open_bundle(not_a_bundle)
    _wait(qtbot, w)
    text = w.message_label.text()
    assert text.startswith("opening the bundle failed: ") and str(not_a_bundle) in text and "\n" not in text
    assert w.model is None

    w.open_bundle(bundle)
    _wait(qtbot, w)
    viewer.add_image(np.zeros((2, 2, 2, 40, 40), np.float32), name="5d")
    assert w.segment()
    _wait(qtbot, w)
    assert w.message_label.text() == ("segmenting failed: 5d: has 5 axes; unetkit segments 2D images and 3D "
                                      "volumes, with at most one more axis (time) in front")
    assert "5d labels" not in [layer.name for layer in viewer.layers]

    assert w.save() is None  # nothing segmented: no labels layer to save
    assert w.message_label.text().startswith("no labels layer")
    assert not w.finetune()  # no data folder
    assert w.message_label.text().startswith("no data folder")


def test_a_frame_opened_from_the_data_folder_is_saved_as_itself(widget, demo, tmp_path):
    w, viewer = widget, widget.viewer
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    (data / "01_GT" / "SEG" / "man_seg000.tif").unlink()  # frame 0 of 01 is not annotated yet
    layer = viewer.open(str(data / "01" / "t000.tif"), plugin="napari")[0]  # as File > Open does
    before = (data / "01" / "t000.tif").read_bytes()
    labels = np.zeros(layer.data.shape, np.int32)
    labels[10:20, 10:30], labels[40:60, 50:55] = 4, 9
    viewer.add_labels(labels, name=layer.name + " labels")
    w.data_edit.setText(str(data))
    assert w.save() == data / "01_GT" / "SEG" / "man_seg000.tif"
    assert w.message_label.text().endswith("(its image was there already)")
    assert (data / "01" / "t000.tif").read_bytes() == before  # the image file is left as it was
    np.testing.assert_array_equal(tifffile.imread(data / "01_GT" / "SEG" / "man_seg000.tif"), labels)
    # another image under that frame's name is refused, and names the free frame
    viewer.layers[layer.name].data = layer.data[::-1].copy()
    (data / "01_GT" / "SEG" / "man_seg000.tif").unlink()
    assert w.save() is None
    assert "holds another image for frame 0" in w.message_label.text()


def test_the_frame_on_screen_of_a_time_lapse_is_saved(widget, tmp_path):
    w, viewer = widget, widget.viewer
    rng = np.random.default_rng(3)
    movie = rng.integers(0, 255, (4, 30, 40), dtype=np.uint8)
    viewer.add_image(movie, name="movie")
    labels = np.zeros(movie.shape, np.int32)
    for t in range(4):
        labels[t, 5:10, 5 + 5 * t:12 + 5 * t] = t + 1
    viewer.add_labels(labels, name="movie labels")
    viewer.dims.set_current_step(0, 2)
    w.data_edit.setText(str(tmp_path / "data"))
    mask = w.save()
    assert mask == tmp_path / "data" / "01_GT" / "SEG" / "man_seg000.tif"
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "data" / "01" / "t000.tif"), movie[2])
    np.testing.assert_array_equal(tifffile.imread(mask), labels[2])


def test_an_image_opened_from_a_folder_of_pairs_is_saved_as_a_pair_that_training_reads(widget, tmp_path):
    from unetkit.data import annotated_datalist, demo_frame

    w, viewer = widget, widget.viewer
    data = tmp_path / "mine"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for i, name in enumerate("ab"):
        image, labels = demo_frame((48, 56), seed=(i, 1), kind="nuclei")
        tifffile.imwrite(data / "images" / f"{name}.tif", image)
        if name == "a":  # b is not annotated yet
            tifffile.imwrite(data / "masks" / "a.tif", labels)
    before = (data / "images" / "b.tif").read_bytes()
    layer = viewer.open(str(data / "images" / "b.tif"), plugin="napari")[0]
    drawn = np.zeros(layer.data.shape, np.int32)
    drawn[5:15, 5:20], drawn[30:40, 30:45] = 2, 7
    viewer.add_labels(drawn, name=layer.name + " labels")
    w.data_edit.setText(str(data))
    assert w.save() == data / "masks" / "b.tif"  # not 01/t000.tif: that would make the folder hold two layouts
    assert w.message_label.text() == f"saved b: {data / 'masks' / 'b.tif'} (its image was there already)"
    assert (data / "images" / "b.tif").read_bytes() == before
    assert sorted(p.name for p in data.iterdir()) == ["images", "masks"]
    np.testing.assert_array_equal(tifffile.imread(data / "masks" / "b.tif"), drawn)
    listed = annotated_datalist(data, ("01",), part="all")  # what unetkit train --data reads
    assert [(Path(i["image"]).name, Path(i["label"]).name) for i in listed] == [("a.tif", "a.tif"), ("b.tif", "b.tif")]
    # never over an annotated image
    assert w.save() is None
    assert "b is annotated already" in w.message_label.text()

    # a frame of a stack made in napari: a new pair named after the layer and the frame on screen
    movie = np.stack([layer.data, layer.data[::-1], layer.data[:, ::-1]])
    viewer.add_image(movie, name="movie 1")
    viewer.add_labels(np.stack([drawn] * 3), name="movie 1 labels")
    viewer.dims.set_current_step(0, 2)
    w.labels_combo.setCurrentText("movie 1 labels")
    assert w.save() == data / "masks" / "movie_1_t002.tif"
    np.testing.assert_array_equal(tifffile.imread(data / "images" / "movie_1_t002.tif"), movie[2])
