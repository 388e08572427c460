"""``unetkit evaluate BUNDLE --data DIR``: segment the bundle's validation split, then pair it for scoring.

The validation split is the one the bundle trained against (``validate#datalist`` in its
``train.json``, with ``dataset_dir`` pointed at ``--data``), so the figures are the ones training
reported, now with every measure. Predictions are written the way ``unetkit infer`` writes them, into
``predictions/`` of the evaluation folder, so a user can look at what was scored. Items that name one
frame of a stack (ISBI 2012's slices, the 2D-annotated slices of CTC 3D sets), or a region of an image (the
held-out part of a single annotated image), are cut out first, into ``inputs/`` and ``reference/``, since a
prediction file is one image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unetkit.bundle.config import merged_config
from unetkit.errors import BundleError, DataError, find_user_error
from unetkit.evaluation.pairing import Pair, pair_key
from unetkit.io import write_image
from unetkit.io.naming import MASK
from unetkit.transforms.load import read_item

__all__ = ["validation_items", "predict_validation"]


def validation_items(bundle_folder: str | os.PathLike, data: str | os.PathLike) -> list[dict]:
    """The bundle's validation items (``{"image", "label"[, "frame"]}``) for the data set at ``data``.

    Raises:
        BundleError: the bundle has no ``train.json`` or no ``validate#datalist`` in it.
        DataError: the data set does not have the layout the bundle expects (the datalist's own message).
    """
    from monai.bundle import ConfigParser

    folder = Path(bundle_folder)
    path = folder / "configs" / "train.json"
    if not path.is_file():
        raise BundleError("no configs/train.json: the bundle does not say which data it validates on", path=path)
    parser = ConfigParser(merged_config(folder, "train.json"))
    if "validate#datalist" not in parser:
        raise BundleError("no validate#datalist in train.json: nothing says which images to score", path=path)
    parser["bundle_root"] = str(folder)
    parser["dataset_dir"] = str(Path(data).resolve())
    try:
        items = parser.get_parsed_content("validate#datalist")
    except Exception as e:
        mine = find_user_error(e)
        if mine is not None:
            raise mine from None
        raise DataError(f"the bundle's validation list could not be built from {data}: {e}", path=data) from e
    items = [dict(i) for i in items]
    if not items:
        raise DataError("the bundle's validation split of this data set is empty", path=data)
    return items


def predict_validation(
    bundle: str | os.PathLike,
    data: str | os.PathLike,
    *,
    output: str | os.PathLike | None = None,
    device: str = "auto",
    trust: bool = False,
    overwrite: bool = True,
) -> tuple[list[Pair], Path]:
    """Segment the validation images of ``data`` with ``bundle``; return the pairs to score.

    Args:
        bundle: bundle folder or zip.
        data: the data set's folder (as ``unetkit train --data``).
        output: the evaluation folder; default ``BUNDLE/eval`` for a folder, ``./<zip stem>_eval`` for a zip
            (its unpacked copy is a cache, not a place for results).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        trust: skip the bundle's safety scan.
        overwrite: replace predictions of an earlier evaluation in the same folder.

    Returns:
        ``(pairs, output)``: one :class:`~unetkit.evaluation.Pair` per validation image (prediction, reference)
        and the evaluation folder, where the report goes too.

    Raises:
        DataError: an image that could not be segmented (the file and why), or an unusable data set.
        BundleError, UnsafeBundleError: as :func:`unetkit.predict.load_bundle_model`.
    """
    from unetkit.predict import PredictOptions, load_bundle_model, predict_file

    model = load_bundle_model(bundle, trust=trust, device=device)
    items = validation_items(model.folder, data)
    if output is None:
        src = Path(bundle)
        output = src / "eval" if src.is_dir() else Path.cwd() / f"{src.name.removesuffix('.zip')}_eval"
    out = Path(output)
    predictions = out / "predictions"
    options = PredictOptions(instances=True, overwrite=overwrite)
    pairs: list[Pair] = []
    for item in items:
        image, label = Path(item["image"]), Path(item["label"])
        if "frame" in item or "region" in item:
            image, label = _cut(item, out, overwrite=overwrite)
        result = predict_file(model, image, predictions, options)
        if not result.ok:
            raise DataError(f"could not be segmented: {result.message}", path=image)
        mask = next(p for p in result.outputs if MASK in p.name)
        key = pair_key(image)
        pairs.append(Pair(f"{image.parent.name}/{key}" if isinstance(key, int) else str(key), mask, label))
    return pairs, out


def _cut(item: dict, out: Path, *, overwrite: bool) -> tuple[Path, Path]:
    """Write the item's frame of the image and label stacks, or its region of the image and label (the held-out
    part of a single annotated image), as files of their own; their paths."""
    frame, region = item.get("frame"), item.get("region")
    name = Path(item["image"]).name.split(".")[0]
    if frame is not None:
        name += f"_{int(frame):03d}"
    if region is not None:
        name += "_" + "_".join(f"{a}-{b}" for a, b in region)
    paths = []
    for key, folder in (("image", out / "inputs"), ("label", out / "reference")):
        # mapped, not read: every validation item names the same two stacks, one frame each
        array, meta = read_item(item, key)
        dst = folder / f"{name}.tif"
        if overwrite or not dst.exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_image(dst, np.ascontiguousarray(array), meta)
        paths.append(dst)
    return paths[0], paths[1]
