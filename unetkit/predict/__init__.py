"""Segment image files with a bundle: the per-file workflow behind ``unetkit infer``.

- :func:`load_bundle_model` ``(path, *, trust=False, device="auto") -> BundleModel``: a bundle folder or zip,
  checked (manifest, safety scan) and loaded (network, weights, normalisation, inferer settings).
- :func:`collect_inputs` ``(items) -> list[Path]``: files, folders (their image files) and glob patterns.
- :func:`predict_file` / :func:`predict_files`: read, segment (overlap-tile), write ``<stem>_mask.<ext>``
  (and ``_prob``, ``_preview.png``), one :class:`FileResult` per file; a bad file fails alone.
- :func:`predict_sharded` / :func:`launch_sharded`: the same over ``N`` processes (torchrun), each file once.

Examples:
    >>> from unetkit.predict import PredictOptions, collect_inputs, load_bundle_model, predict_files
    >>> model = load_bundle_model("my_bundle.zip").with_settings(tile=572)     # doctest: +SKIP
    >>> results = predict_files(model, collect_inputs(["frames/*.tif"]), "masks")  # doctest: +SKIP
    >>> [(r.path.name, r.status, r.objects) for r in results]                  # doctest: +SKIP
    [('t000.tif', 'ok', 17), ('t001.tif', 'ok', 18)]
"""

from unetkit.predict.distributed import launch_sharded, predict_sharded, shard
from unetkit.predict.inputs import collect_inputs, expand_glob, images_in_folder
from unetkit.predict.model import BundleModel, load_bundle_model, resolve_device
from unetkit.predict.predict import STREAM_PIXELS, FileResult, PredictOptions, ProgressHooks, predict_file, predict_files
from unetkit.predict.writer import (
    OutputExistsError, OutputPaths, check_distinct, check_no_outputs, check_output_folder, label_dtype, output_stem,
    plan_outputs,
)

__all__ = [
    "BundleModel",
    "load_bundle_model",
    "resolve_device",
    "collect_inputs",
    "images_in_folder",
    "expand_glob",
    "PredictOptions",
    "FileResult",
    "ProgressHooks",
    "predict_file",
    "predict_files",
    "STREAM_PIXELS",
    "OutputPaths",
    "OutputExistsError",
    "plan_outputs",
    "check_distinct",
    "check_output_folder",
    "check_no_outputs",
    "output_stem",
    "label_dtype",
    "shard",
    "predict_sharded",
    "launch_sharded",
]
