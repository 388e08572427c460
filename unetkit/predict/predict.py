"""The per-file workflow of ``unetkit infer``: read, segment, write, preview; one result row per file.

:func:`predict_file` never raises for a problem with its file (unreadable, an output in the way, the
wrong kind of image): the :class:`FileResult` says ``failed`` and why, and :func:`predict_files` goes on
with the next file. Problems with the bundle or the options are found before any file is touched
(:func:`~unetkit.predict.model.load_bundle_model`, :meth:`~unetkit.predict.model.BundleModel.with_settings`,
:func:`~unetkit.predict.writer.check_distinct`) and raise.

Examples:
    >>> import tempfile, torch
    >>> from unetkit.io import read_image, write_image
    >>> from unetkit.inferers import OverlapTileInferer
    >>> from unetkit.predict.model import BundleModel
    >>> from unetkit.transforms import AsInstances
    >>> net = torch.nn.Conv2d(1, 2, 1)  # foreground where the pixel is above 0.5
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.tensor([[[[-1.0]]], [[[1.0]]]])), net.bias.copy_(torch.tensor([0.5, -0.5]))
    >>> model = BundleModel(None, net, torch.device("cpu"), 2, 1, 2, OverlapTileInferer(), instances=AsInstances())
    >>> d = tempfile.mkdtemp()
    >>> img = np.zeros((33, 37), np.float32); img[5:10, 5:10] = 1; img[20:30, 3:9] = 1
    >>> src = write_image(f"{d}/a.tif", img)
    >>> r = predict_file(model, src, f"{d}/out")
    >>> r.status, r.objects, r.outputs[0].name, read_image(r.outputs[0])[0].dtype
    ('ok', 2, 'a_mask.tif', dtype('uint16'))
    >>> predict_file(model, src, f"{d}/out").message  # doctest: +ELLIPSIS
    '.../out/a_mask.tif: exists already (pass --overwrite to replace it, or use another -o)'
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from unetkit.errors import UnetkitError
from unetkit.io import ImageMeta, read_image, write_image
from unetkit.io.checks import count_nonfinite, fill_nonfinite
from unetkit.predict.layout import Layout, plan_layout
from unetkit.predict.model import BundleModel
from unetkit.predict.objects import write_object_outputs
from unetkit.predict.preview import write_preview
from unetkit.predict.segment import instance_labels, segment
from unetkit.predict.stream import stream_file
from unetkit.predict.preprocess import Preprocessed, world_affine
from unetkit.predict.writer import OutputPaths, check_free, label_dtype, plan_outputs, semantic_dtype

__all__ = ["FileResult", "PredictOptions", "ProgressHooks", "predict_file", "predict_files", "STREAM_PIXELS"]

logger = logging.getLogger(__name__)

STREAM_PIXELS = 64 * 2**20
"""2D images above this many pixels (64 Mpx, an 8k x 8k image) stream from a memory map, tile by tile."""


@dataclass(frozen=True)
class PredictOptions:
    """What to write for each file.

    Attributes:
        instances: instance labels (the bundle's ``decode``: touching cells apart), or class indices (False);
            None: what the bundle's ``decode`` gives.
        probabilities: also write ``<stem>_prob.<ext>``, float32 (see :mod:`unetkit.predict.writer`).
        preview: also write ``<stem>_preview.png``.
        overwrite: replace existing outputs (else the file fails with "exists already").
        stream_pixels: single 2D TIFF images above this many pixels are streamed (see
            :mod:`unetkit.predict.stream`).
        fill_nonfinite: replace NaN and +-inf pixels by the image's median (noted in the result), instead
            of failing the file.
        table: also write ``<stem>_objects.csv`` and give the file's ``counts.csv`` rows in the result
            (see :mod:`unetkit.predict.objects`).
        rois: also write ``<stem>_rois.zip``, ImageJ ROIs (see :mod:`unetkit.predict.shapes`).
        geojson: also write ``<stem>.geojson``, QuPath's GeoJSON (see :mod:`unetkit.predict.shapes`).
    """

    instances: bool | None = None
    probabilities: bool = False
    preview: bool = False
    overwrite: bool = False
    stream_pixels: int = STREAM_PIXELS
    fill_nonfinite: bool = False
    table: bool = False
    rois: bool = False
    geojson: bool = False


@dataclass
class FileResult:
    """One row of the summary.

    Attributes:
        path: the input file.
        status: ``"ok"`` or ``"failed"``.
        shape: the input's array shape (None when it could not be read).
        objects: objects found (instances), None for class-index outputs and failures.
        seconds: wall time spent on the file.
        outputs: the files written.
        message: why it failed ("" when ok).
        notes: remarks on an ok file ("RGB -> grey", "JPEG in: written as TIFF", "streamed").
        rank: the process that segmented it (``--nproc``).
        counts: with ``table``, one ``counts.csv`` row per frame (``frame``, ``objects``, ``foreground_fraction``).
    """

    path: Path
    status: str
    shape: tuple[int, ...] | None = None
    objects: int | None = None
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    message: str = ""
    notes: list[str] = field(default_factory=list)
    rank: int = 0
    counts: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        """Plain JSON-able values (for gathering across processes)."""
        d = asdict(self)
        d["path"], d["outputs"] = str(self.path), [str(p) for p in self.outputs]
        d["shape"] = None if self.shape is None else list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FileResult":
        d = dict(d)
        d["path"], d["outputs"] = Path(d["path"]), [Path(p) for p in d["outputs"]]
        d["shape"] = None if d["shape"] is None else tuple(d["shape"])
        return cls(**d)


class ProgressHooks:
    """What :func:`predict_files` reports while it works; the defaults do nothing (the CLI draws bars)."""

    def start_file(self, path: Path, index: int, total: int) -> None:
        """``path`` is the ``index``-th (from 0) of ``total`` files."""

    def tiles(self, done: int, total: int) -> None:
        """``done`` of the current network input's ``total`` tiles are written."""

    def end_file(self, result: FileResult) -> None:
        """The current file is done (or failed)."""


def predict_files(
    model: BundleModel, paths: Sequence[os.PathLike], outdir: os.PathLike, options: PredictOptions = PredictOptions(),
    *, hooks: ProgressHooks | None = None, rank: int = 0,
) -> list[FileResult]:
    """:func:`predict_file` for each of ``paths`` in turn; one result per path, in order."""
    hooks = hooks or ProgressHooks()
    results = []
    for i, path in enumerate(paths):
        hooks.start_file(Path(path), i, len(paths))
        result = predict_file(model, path, outdir, options, progress=hooks.tiles)
        result.rank = rank
        hooks.end_file(result)
        results.append(result)
    return results


def predict_file(
    model: BundleModel, path: os.PathLike, outdir: os.PathLike, options: PredictOptions = PredictOptions(),
    *, progress=None,
) -> FileResult:
    """Segment one image file into ``outdir``; never raises for a problem with the file.

    Args:
        model: from :func:`~unetkit.predict.model.load_bundle_model`.
        path: the image (TIFF, NIfTI, or what ITK reads).
        outdir: the output folder (made if missing).
        options: what to write.
        progress: ``progress(done_tiles, total_tiles)``, per network input.

    Returns:
        The :class:`FileResult`: ``ok`` with the outputs and the number of objects, or ``failed`` with
        the one-line reason (nothing of this file is left behind: outputs are written atomically).
    """
    path = Path(path)
    start = time.perf_counter()
    shape = None
    if options.instances is None:
        options = replace(options, instances=model.decode_instances)
    try:
        outputs = plan_outputs(path, outdir, probabilities=options.probabilities, preview=options.preview,
                               table=options.table, rois=options.rois, geojson=options.geojson)
        check_free(outputs, overwrite=options.overwrite)
        array, meta = read_image(path, mmap=True)
        shape = tuple(array.shape)
        array, filled = _finite(array, path, options)
        layout = plan_layout(meta, spatial_dims=model.spatial_dims, in_channels=model.in_channels)
        objects, notes = _predict(model, array, meta, layout, outputs, options, progress)
        counts = write_object_outputs(outputs, array, meta, layout) if _wants_objects(options) else []
        notes = filled + notes
    except UnetkitError as e:
        return FileResult(path, "failed", shape, seconds=time.perf_counter() - start, message=str(e))
    except Exception as e:  # a library failing on one odd file must not cost the user the other files
        logger.debug("%s failed", path, exc_info=True)
        return FileResult(path, "failed", shape, seconds=time.perf_counter() - start,
                          message=f"{type(e).__name__}: {e} (run with --debug for details, and please report it)")
    if outputs.note:
        notes.insert(0, outputs.note)
    return FileResult(path, "ok", shape, objects, time.perf_counter() - start, outputs.all(), notes=notes,
                      counts=counts)


def _wants_objects(options: PredictOptions) -> bool:
    return options.table or options.rois or options.geojson


def _finite(array, path: Path, options: PredictOptions):
    """``(array, notes)``: a file with NaN or inf pixels fails, or is filled when the user said so; never is a
    mask silently made of them (one NaN turns a whole tile's normalised values to NaN)."""
    bad = count_nonfinite(array)
    if not bad:
        return array, []
    share = f"{bad} non-finite pixel(s) (NaN or inf, {bad / array.size:.2%} of the image)"
    if not options.fill_nonfinite:
        raise UnetkitError(share, path=path, fix="pass --fill-nonfinite to replace them with the image's median")
    logger.warning("%s: %s replaced with the median", path, share)
    return fill_nonfinite(array), [f"WARNING {share} filled with the median"]


def _streams(model: BundleModel, layout: Layout, outputs: OutputPaths, options: PredictOptions) -> bool:
    # a preprocessing that is not the normalisation alone needs the whole image in memory, and so does a
    # decoder other than the paper's components (the streamed labels are made band by band)
    from unetkit.transforms import AsInstances

    paper_decoder = type(model.instances) is AsInstances and not model.instances.fill_holes
    return (model.spatial_dims == 2 and not layout.frame_axes and outputs.mask.suffix in (".tif", ".tiff")
            and model.preprocessing is None and (paper_decoder or not options.instances)
            and math.prod(layout.frame_shape) > options.stream_pixels)


def _capped(model: BundleModel, array, layout: Layout, options: PredictOptions, streams: bool) -> BundleModel:
    """The model whose tile fits what the memory cap leaves for this file (:mod:`unetkit.predict.memory`)."""
    if model.memory_limit is None or model.inferer.options.tile is not None:
        return model
    from unetkit.predict.memory import tile_budget

    budget, batch = tile_budget(model, array, layout, probabilities=options.probabilities,
                                instances=options.instances, streams=streams, limit=model.memory_limit)
    return replace(model, inferer=model.inferer.with_settings(memory_budget=budget, batch=batch))


def _predict(model, array, meta: ImageMeta, layout: Layout, outputs: OutputPaths, options: PredictOptions, progress):
    notes = ["RGB -> grey"] if layout.grey else []
    streams = _streams(model, layout, outputs, options)
    model = _capped(model, array, layout, options, streams)
    if streams:
        objects = stream_file(model, array, layout, meta, outputs, instances=options.instances, progress=progress)
        notes.append("streamed")
        if outputs.preview is not None:
            write_preview(outputs.preview, array, _read_back(outputs.mask), meta)
        return objects, notes
    labels, probs, objects = _segment_frames(model, array, meta, layout, options, progress)
    label_meta = meta.select(layout.channel_axis, 0) if layout.channel_axis is not None else meta
    dtype = label_dtype(int(labels.max(initial=0))) if options.instances else semantic_dtype(model.out_channels)
    if probs is not None:
        axis = _class_axis(label_meta, outputs.prob)
        write_image(outputs.prob, np.moveaxis(probs, 0, axis), label_meta.insert_axis(axis, "C", probs.shape[0]))
    write_image(outputs.mask, labels.astype(dtype, copy=False), label_meta)
    if outputs.preview is not None:
        write_preview(outputs.preview, array, labels, meta)
    return (objects if options.instances else None), notes


def _read_back(path: Path) -> np.ndarray:
    return read_image(path, mmap=True)[0]


def _class_axis(label_meta: ImageMeta, prob_path: Path) -> int:
    """Where the class axis goes in the probability file: last in NIfTI (its 4th dimension), else just
    before the first of Y/X (ImageJ's ``TZCYX`` order: ``CYX``, ``TCYX``, ``ZCYX``)."""
    if prob_path.name.lower().endswith((".nii", ".nii.gz")):
        return len(label_meta.axes)
    return next((i for i, a in enumerate(label_meta.axes) if a in "YX"), 0)


def _segment_frames(model: BundleModel, array, meta: ImageMeta, layout: Layout, options: PredictOptions, progress):
    """Labels of every frame in memory: ``(labels, probs (K, *output_shape) or None, objects)``."""
    labels = np.zeros(layout.output_shape, np.int32 if options.instances else semantic_dtype(model.out_channels))
    probs = np.zeros((model.out_channels, *layout.output_shape), np.float32) if options.probabilities else None
    objects = 0
    for index in layout.frame_indices():
        image = layout.network_input(array, index)
        pre = Preprocessed(model.preprocessing, image, world_affine(meta, layout.spatial)) if model.preprocessing else None
        classes, p = segment(model, image if pre is None else pre.image, probabilities=options.probabilities,
                             progress=progress, instances=options.instances)
        if options.instances:  # decoded on the network's grid, then taken back, as the bundle's postprocessing does
            classes, n = instance_labels(classes, model.instances)
            objects += n
        if pre is not None:
            classes, p = pre.back_labels(classes), pre.back_probabilities(p)
        layout.output_view(labels, index)[...] = classes
        if probs is not None:
            layout.output_view(probs, index, lead=1)[...] = p
    return labels, probs, objects
