"""Which prediction goes with which ground truth: by name, or by Cell Tracking Challenge frame index.

``unetkit infer`` writes ``t012_mask.tif`` for ``t012.tif``; the challenge's gold truth is
``man_seg012.tif`` and its results ``mask012.tif``. All three name frame 12, so pairing goes by a key:
the file name without extension(s) and without the ``_mask`` suffix, and, where that is a CTC name
(``t``, ``mask`` or ``man_seg`` + digits), the frame number itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from unetkit.errors import DataError
from unetkit.io import READ_SUFFIXES
from unetkit.io.formats import images_in_folder
from unetkit.io.naming import MASK

__all__ = ["Pair", "pair_key", "pair_files", "pair_folders"]

_CTC = re.compile(r"^(?:t|mask|man_seg)_?(\d+)$")


@dataclass(frozen=True)
class Pair:
    """One prediction file and its ground truth file."""

    name: str
    pred: Path
    gt: Path


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(READ_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def pair_key(path: str | os.PathLike) -> str | int:
    """The pairing key of a file name.

    Examples:
        >>> pair_key("t012_mask.tif"), pair_key("man_seg012.tif"), pair_key("mask0012.tif")
        (12, 12, 12)
        >>> pair_key("scan_mask.nii.gz"), pair_key("scan.nii.gz")
        ('scan', 'scan')
    """
    stem = _stem(Path(path))
    if stem.endswith(MASK):
        stem = stem[: -len(MASK)]
    m = _CTC.match(stem)
    return int(m.group(1)) if m else stem


def pair_files(pred: str | os.PathLike, gt: str | os.PathLike) -> list[Pair]:
    """One pair from two files."""
    pred, gt = Path(pred), Path(gt)
    for p in (pred, gt):
        if not p.is_file():
            raise DataError("no such file", path=p)
    return [Pair(_stem(gt), pred, gt)]


def pair_folders(pred: str | os.PathLike, gt: str | os.PathLike) -> list[Pair]:
    """Pairs of files with the same key in two folders; ground truth without a prediction is an error.

    Predictions without ground truth are left out (the CTC annotates only some frames).

    Raises:
        DataError: a folder is missing or empty, no file pairs up, or a reference has no prediction.
    """
    pred, gt = Path(pred), Path(gt)
    for p in (pred, gt):
        if not p.is_dir():
            raise DataError("no such folder", path=p)
    preds = {pair_key(p): p for p in images_in_folder(pred)}
    gts = {pair_key(p): p for p in images_in_folder(gt)}
    if not gts:
        raise DataError("no image files here", path=gt)
    missing = [str(gts[k].name) for k in gts if k not in preds]
    if len(missing) == len(gts):
        raise DataError(f"no prediction in {pred} pairs with a file here (by name or CTC frame number)", path=gt,
                        fix="name predictions like the references (t012_mask.tif, mask012.tif or <name>_mask.<ext>)")
    if missing:
        raise DataError(f"{len(missing)} reference(s) have no prediction, e.g. {missing[0]}", path=gt,
                        fix=f"segment them into {pred} first")
    return [Pair(_stem(gts[k]), preds[k], gts[k]) for k in sorted(gts, key=lambda k: (isinstance(k, str), k))]
