"""The plugin's dock widget: open a bundle, segment an image layer, correct, save the frame, fine-tune.

Every long step (opening a bundle: unpacking and scanning a zip, loading weights; segmenting; fine-tuning)
runs in a napari worker thread, so the viewer stays responsive: progress goes to the widget's bar and the
viewer's status bar, the Cancel button stops the run between two tiles or training steps, and one run at a
time is allowed (a second is refused with a message). Whatever goes wrong with the user's input (not a bundle,
a bundle that fails the safety scan, an image the bundle cannot segment, a frame that is annotated already)
is shown as one line in the widget and as a napari notification, never as a traceback.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Callable

import napari
import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton,
    QSpinBox, QVBoxLayout, QWidget,
)

from unetkit.errors import UnetkitError, find_user_error
from unetkit.io.naming import output_stem
from unetkit.napari.frames import (Cancelled, SavedPair, finetune_output, frame_of_path, is_pairs_folder, save_frame,
                                   save_pair, segment_array)

__all__ = ["AnnotationWidget"]

logger = logging.getLogger(__name__)

LABELS_SUFFIX = " labels"
"""The labels layer of image layer ``cells`` is ``cells labels``."""


class _Relay(QObject):
    """Carries progress from a worker thread to the widget (a queued signal: the slot runs in the GUI thread)."""

    progress = Signal(float, str)


def _cause(error: BaseException, kind: type) -> BaseException | None:
    """The first exception of ``kind`` in ``error``'s chain (MONAI and ignite wrap what a step raised)."""
    seen, hops = error, 0
    while seen is not None and hops < 20:
        if isinstance(seen, kind):
            return seen
        seen, hops = seen.__cause__ or seen.__context__, hops + 1
    return None


def one_line(error: BaseException) -> str:
    """What the user is told about ``error``: unetkit's own message (which names the file and the fix),
    else the first line of the innermost cause (MONAI's "Failed to evaluate ..." wrappers say nothing).

    Examples:
        >>> try:
        ...     try:
        ...         raise ValueError("padding 92 does not fit 64 pixels\\nmore")
        ...     except ValueError as e:
        ...         raise RuntimeError("Failed to evaluate ConfigExpression:") from e
        ... except RuntimeError as e:
        ...     one_line(e)
        'ValueError: padding 92 does not fit 64 pixels'
    """
    mine = find_user_error(error)
    if mine is not None:
        return str(mine)
    root, hops = error, 0
    while root.__cause__ is not None and hops < 20:
        root, hops = root.__cause__, hops + 1
    text = str(root).strip().splitlines()
    return f"{type(root).__name__}: {text[0]}" if text else type(root).__name__


class AnnotationWidget(QWidget):
    """Segment, correct, save, fine-tune: the annotation loop in one dock widget.

    Args:
        viewer: the napari viewer (napari passes it when it builds the widget from the manifest).

    The steps are methods too (:meth:`open_bundle`, :meth:`segment`, :meth:`cancel`, :meth:`save`,
    :meth:`finetune`), the buttons' slots; ``busy`` is the name of the run in progress, or None.
    """

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.model = None  # the BundleModel segmenting now
        self.bundle_path: Path | None = None  # what it was opened from (a folder or zip): fine-tuning starts there
        self.busy: str | None = None
        self.last_result = None  # the TrainResult of the last fine-tuning
        self._worker = None
        self._cancel = threading.Event()
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        cancel = self._cancel  # not self: the slot must outlive the widget it was made for
        self.destroyed.connect(lambda *_: cancel.set())  # viewer closed during a run: stop it at the next step
        self._build()
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            event.connect(self._refresh_layers)
        viewer.layers.selection.events.active.connect(self._follow_selection)
        self._refresh_layers()

    # ---- layout ----------------------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)

        box = QGroupBox("Bundle")
        form = QFormLayout(box)
        self.bundle_edit = QLineEdit()
        self.bundle_edit.setPlaceholderText("a bundle folder or .zip")
        row = QHBoxLayout()
        row.addWidget(self.bundle_edit)
        for text, pick in (("Folder…", self._pick_bundle_folder), ("Zip…", self._pick_bundle_zip)):
            button = QPushButton(text)
            button.clicked.connect(pick)
            row.addWidget(button)
        form.addRow("path", row)
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(lambda: self.open_bundle())
        self.bundle_label = QLabel("no bundle open")
        self.bundle_label.setWordWrap(True)
        form.addRow(self.open_button, self.bundle_label)
        outer.addWidget(box)

        box = QGroupBox("Segment")
        form = QFormLayout(box)
        self.image_combo = QComboBox()
        form.addRow("image layer", self.image_combo)
        self.segment_button = QPushButton("Segment")
        self.segment_button.clicked.connect(lambda: self.segment())
        form.addRow(self.segment_button)
        outer.addWidget(box)

        box = QGroupBox("Save frame")
        form = QFormLayout(box)
        self.labels_combo = QComboBox()
        form.addRow("labels layer", self.labels_combo)
        self.data_edit = QLineEdit()
        self.data_edit.setPlaceholderText("data folder (01/ + 01_GT/SEG/, or images/ + masks/)")
        row = QHBoxLayout()
        row.addWidget(self.data_edit)
        button = QPushButton("…")
        button.clicked.connect(self._pick_data_folder)
        row.addWidget(button)
        form.addRow("data folder", row)
        self.sequence_combo = QComboBox()
        self.sequence_combo.setEditable(True)
        self.sequence_combo.addItems(["01", "02"])  # the recipes train on 01 and validate on 02
        form.addRow("sequence", self.sequence_combo)
        self.frame_spin = QSpinBox()
        self.frame_spin.setRange(-1, 9999)
        self.frame_spin.setSpecialValueText("next free")
        self.frame_spin.setValue(-1)
        form.addRow("frame", self.frame_spin)
        self.save_button = QPushButton("Save frame")
        self.save_button.clicked.connect(lambda: self.save())
        form.addRow(self.save_button)
        outer.addWidget(box)

        box = QGroupBox("Fine-tune")
        form = QFormLayout(box)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 1_000_000)
        self.steps_spin.setSpecialValueText("plan's")  # 0: the fine-tuning schedule of the bundle's plan
        form.addRow("steps", self.steps_spin)
        self.ignore_spin = QSpinBox()
        self.ignore_spin.setRange(0, 65535)  # what a CTC mask (uint16) can hold
        self.ignore_spin.setSpecialValueText("none")
        self.ignore_spin.setToolTip("the label you painted over pixels you did not annotate: they weigh nothing "
                                    "in the loss (unetkit train --ignore-label)")
        form.addRow("unannotated label", self.ignore_spin)
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("new bundle folder (default: beside the data folder)")
        form.addRow("output", self.output_edit)
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.clicked.connect(lambda: self.finetune())
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(self.result_label.textInteractionFlags() | _selectable())
        form.addRow(self.finetune_button, self.result_label)
        outer.addWidget(box)

        row = QHBoxLayout()
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(False)
        row.addWidget(self.progress_bar)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.cancel())
        row.addWidget(self.cancel_button)
        outer.addLayout(row)
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        outer.addWidget(self.message_label)
        outer.addStretch(1)

    def _pick_bundle_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Bundle folder")
        if path:
            self.bundle_edit.setText(path)
            self.open_bundle()

    def _pick_bundle_zip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Bundle zip", filter="Bundles (*.zip)")
        if path:
            self.bundle_edit.setText(path)
            self.open_bundle()

    def _pick_data_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Data folder (CTC layout)")
        if path:
            self.data_edit.setText(path)

    # ---- layers ----------------------------------------------------------------------------------------
    def _layers(self, kind) -> list:
        return [layer for layer in self.viewer.layers if isinstance(layer, kind)]

    def _refresh_layers(self, *_) -> None:
        for combo, kind in ((self.image_combo, napari.layers.Image), (self.labels_combo, napari.layers.Labels)):
            current = combo.currentText()
            names = [layer.name for layer in self._layers(kind)]
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        self._follow_selection()

    def _follow_selection(self, *_) -> None:
        """The image layer selected in the viewer is the one to segment; its labels layer the one to save."""
        active = self.viewer.layers.selection.active
        if isinstance(active, napari.layers.Image):
            self.image_combo.setCurrentText(active.name)
            labels = active.name + LABELS_SUFFIX
            if labels in [layer.name for layer in self._layers(napari.layers.Labels)]:
                self.labels_combo.setCurrentText(labels)
        elif isinstance(active, napari.layers.Labels):
            self.labels_combo.setCurrentText(active.name)

    def _layer(self, name: str, kind, what: str):
        for layer in self._layers(kind):
            if layer.name == name:
                return layer
        raise UnetkitError(f"no {what} layer" + (f" named {name!r}" if name else ""),
                           fix=f"open an image first{' and segment it' if what == 'labels' else ''}")

    # ---- messages and runs -----------------------------------------------------------------------------
    def _report(self, text: str, *, error: bool = False) -> None:
        """One line in the widget, the status bar and a notification (never a traceback dialog)."""
        self.message_label.setText(text)
        self.viewer.status = text
        (show_error if error else show_info)(text)

    def _on_progress(self, fraction: float, text: str) -> None:
        if not _alive(self):  # queued before the viewer was closed
            return
        self.progress_bar.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))
        self.message_label.setText(text)
        self.viewer.status = text

    def _start(self, name: str, func: Callable, done: Callable, *, failed: Callable | None = None) -> bool:
        """Run ``func()`` in a worker thread, then ``done(result)`` in the GUI thread; False (and a message)
        when another run is in progress."""
        if self._refused():
            return False
        self.busy = name
        self._cancel.clear()
        self.progress_bar.setValue(0)
        self.cancel_button.setEnabled(True)
        for button in (self.open_button, self.segment_button, self.finetune_button):
            button.setEnabled(False)
        self.message_label.setText(f"{name}…")
        self.viewer.status = f"{name}…"

        def returned(result):
            if not _alive(self):
                return
            self._finish()
            try:
                done(result)
            except UnetkitError as e:
                self._report(str(e), error=True)

        def errored(error):
            if failed is not None:
                failed(error)
            if not _alive(self):
                return
            self._finish()
            if _cause(error, Cancelled) is not None:
                self._report(f"{name} cancelled")
                return
            logger.debug("%s failed", name, exc_info=error)
            self._report(f"{name} failed: {one_line(error)}", error=True)

        # errors are handled here: napari would otherwise re-raise them in the GUI thread (a traceback dialog)
        self._worker = create_worker(func, _connect={"returned": returned, "errored": errored}, _start_thread=True)
        return True

    def _refused(self) -> bool:
        """True (and a message) while a run is in progress: one at a time."""
        if self.busy is None:
            return False
        self._report(f"{self.busy} is running: wait for it to finish, or press Cancel", error=True)
        return True

    def _finish(self) -> None:
        self.busy = None
        self._worker = None
        self.cancel_button.setEnabled(False)
        for button in (self.open_button, self.segment_button, self.finetune_button):
            button.setEnabled(True)

    def cancel(self) -> None:
        """Stop the run in progress at its next tile or training step."""
        if self.busy is None:
            return
        self._cancel.set()
        if _alive(self):
            self.message_label.setText(f"cancelling {self.busy}…")

    # ---- the steps -------------------------------------------------------------------------------------
    def open_bundle(self, path: str | Path | None = None) -> bool:
        """Open a bundle folder or zip (checked as any untrusted bundle: manifest, safety scan) in the
        background; the next :meth:`segment` uses it."""
        if path is not None:
            self.bundle_edit.setText(str(path))
        text = self.bundle_edit.text().strip()
        if not text:
            self._report("give a bundle folder or .zip first", error=True)
            return False
        source = Path(text).expanduser()

        def load():
            from unetkit.predict import load_bundle_model

            return load_bundle_model(source, trust=False, device="auto")

        def loaded(model):
            self.model, self.bundle_path = model, source
            kind = f"{model.spatial_dims}D, {model.in_channels} channel(s), on {model.device}"
            self.bundle_label.setText(f"{source.name}: {kind}")
            self._report(f"opened {source} ({kind})")

        return self._start("opening the bundle", load, loaded)

    def segment(self) -> bool:
        """Segment the chosen image layer in the background; the instances go to its labels layer."""
        try:
            if self.model is None:
                raise UnetkitError("no bundle open", fix="open a bundle folder or .zip first")
            image = self._layer(self.image_combo.currentText(), napari.layers.Image, "image")
            if image.multiscale:
                raise UnetkitError(f"{image.name}: a multiscale image; open its full-resolution level alone")
        except UnetkitError as e:
            self._report(str(e), error=True)
            return False
        model, data, rgb, scale = self.model, image.data, bool(image.rgb), tuple(image.scale)
        relay, cancel = self._relay, self._cancel

        def run():
            try:
                return segment_array(model, data, rgb=rgb, scale=scale, cancelled=cancel.is_set,
                                     progress=lambda f, text: relay.progress.emit(f, f"segmenting: {text}"))
            except UnetkitError as e:  # name the layer: the message of an array knows no file
                raise UnetkitError(f"{image.name}: {e}") from None

        def done(result):
            labels, objects = result
            self._show_labels(image, labels)
            self.progress_bar.setValue(1000)
            self._report(f"{image.name}: {objects} object(s); correct them with the label tools, then Save frame")

        return self._start("segmenting", run, done)

    def _show_labels(self, image, labels: np.ndarray) -> None:
        name = image.name + LABELS_SUFFIX
        existing = [layer for layer in self._layers(napari.layers.Labels) if layer.name == name]
        if existing:
            existing[0].data = labels
            layer = existing[0]
        else:
            layer = self.viewer.add_labels(labels, name=name, scale=image.scale, translate=image.translate)
        layer.metadata["unetkit_image"] = image.name
        self._refresh_layers()
        self.labels_combo.setCurrentText(name)

    def save(self) -> Path | None:
        """Save the chosen image and its corrected labels as the next annotated frame of the data folder (a
        pair named after the image in a folder of image / mask pairs); the mask file written, or None (with a
        message) when nothing was saved."""
        try:
            labels_layer = self._layer(self.labels_combo.currentText(), napari.layers.Labels, "labels")
            name = labels_layer.metadata.get("unetkit_image") or self.image_combo.currentText()
            image = self._layer(name, napari.layers.Image, "image")
            root = self.data_edit.text().strip()
            if not root:
                raise UnetkitError("no data folder", fix="give the folder the annotated frames go to")
            sequence = self.sequence_combo.currentText().strip()
            pixels, labels, index = self._current_frame(image, labels_layer)
            root = Path(root).expanduser()
            if is_pairs_folder(root):
                # named after the file it came from (saved back beside itself), and the frame of a stack
                name = output_stem(image.source.path) if image.source.path else image.name
                saved = save_pair(root, name + "".join(f"_t{i:03d}" for i in index), pixels, labels,
                                  rgb=bool(image.rgb))
            else:
                frame = None if self.frame_spin.value() < 0 else self.frame_spin.value()
                origin = frame_of_path(image.source.path)
                if frame is None and origin is not None and origin[1] == sequence and _same(origin[0], root):
                    frame = origin[2]  # a frame opened from this data folder is saved as itself
                saved = save_frame(root, sequence, pixels, labels, frame=frame, rgb=bool(image.rgb))
        except UnetkitError as e:
            self._report(str(e), error=True)
            return None
        self.frame_spin.setValue(-1)
        kept = "" if saved.wrote_image else " (its image was there already)"
        what = saved.name if isinstance(saved, SavedPair) else f"frame {saved.frame}"
        self._report(f"saved {what}: {saved.mask}{kept}")
        return saved.mask

    def _current_frame(self, image, labels_layer) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        """The image and labels of the frame on screen, and its index in the layer: the whole layer (index
        ``()``) for a single 2D image or volume, the displayed frame of a time-lapse (or stack of 2D frames
        for a 2D bundle)."""
        labels = np.asarray(labels_layer.data)
        spatial = image.data.shape[:-1] if image.rgb else image.data.shape
        if labels.shape != tuple(spatial):
            raise UnetkitError(f"{labels_layer.name} has shape {labels.shape} but {image.name} {tuple(spatial)}",
                               fix="segment the image again, or pick its labels layer")
        frame_dims = self.model.spatial_dims if self.model is not None else 2
        lead = labels.ndim - frame_dims
        if lead <= 0:
            return np.asarray(image.data), labels, ()
        point = labels_layer.world_to_data(self.viewer.dims.point[-labels.ndim:])
        index = tuple(int(np.clip(round(p), 0, n - 1)) for p, n in zip(point[:lead], labels.shape))
        return np.asarray(image.data[index]), labels[index], index

    def finetune(self) -> bool:
        """Fine-tune the open bundle on the data folder in the background (``unetkit train BUNDLE --data DIR
        --finetune``); the new bundle is opened for segmenting when it is done."""
        try:
            if self.bundle_path is None:
                raise UnetkitError("no bundle open", fix="open the bundle to fine-tune first")
            root = self.data_edit.text().strip()
            if not root or not Path(root).expanduser().is_dir():
                raise UnetkitError(f"no data folder{' ' + root if root else ''}",
                                   fix="save corrected frames into a data folder first")
        except UnetkitError as e:
            self._report(str(e), error=True)
            return False
        if self._refused():  # before an output folder is chosen for a run that will not happen
            return False
        data = Path(root).expanduser()
        output = Path(self.output_edit.text().strip()).expanduser() if self.output_edit.text().strip() else \
            finetune_output(self.bundle_path, data)
        existed = output.exists()
        steps = self.steps_spin.value() or None
        # partial annotation: pixels painted with this label are neither cell nor background to the loss
        overrides = {"ignore_label": self.ignore_spin.value()} if self.ignore_spin.value() else None
        bundle, relay, cancel = self.bundle_path, self._relay, self._cancel

        def progress(step=0, total=0, loss=None, metrics=None, **_):
            if cancel.is_set():
                raise Cancelled()
            text = f"fine-tuning: step {step}/{total}"
            if loss is not None:
                text += f", loss {loss:.4f}"
            if metrics:
                text += ", " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            relay.progress.emit(step / total if total else 0.0, text)

        def run():
            from unetkit.training import train_bundle

            return train_bundle(bundle, data=data, output=output, finetune=True, steps=steps, progress=progress,
                                overrides=overrides, trust=False)

        def done(result):
            self.last_result = result
            scores = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items() if k.startswith("val_"))
            self.result_label.setText(str(result.output))
            self._report(f"fine-tuned bundle: {result.output}" + (f" ({scores})" if scores else ""))
            self.open_bundle(result.output)  # the loop goes on with the tuned model

        def failed(error):
            if _cause(error, Cancelled) is not None and not existed and output.is_dir():
                shutil.rmtree(output, ignore_errors=True)  # a half-made bundle of ours, of no use to anyone

        return self._start("fine-tuning", run, done, failed=failed)


def _alive(widget: QWidget) -> bool:
    """False once Qt has deleted the widget (the viewer was closed while a run went on)."""
    try:
        widget.objectName()
    except RuntimeError:
        return False
    return True


def _same(a, b) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _selectable():
    from qtpy.QtCore import Qt

    return Qt.TextInteractionFlag.TextSelectableByMouse
