"""Writing segmentations in the Cell Tracking Challenge results layout.

The challenge's evaluators (and ``py-ctcmetrics``) read ``<root>/01_RES/mask000.tif ...``: one 16-bit
label image per frame, 0 = background, each cell its own label, frame numbers with 3 digits (4 in
sequences of more than 1000 frames, as the data set's own ``t0000.tif``).

Examples:
    >>> import tempfile, numpy as np, tifffile
    >>> labels = np.zeros((5, 6), np.int64); labels[1:3, 1:3] = 7
    >>> res = export_ctc([(0, labels)], tempfile.mkdtemp())
    >>> [p.name for p in sorted(res.iterdir())], tifffile.imread(res / "mask000.tif").dtype
    (['mask000.tif'], dtype('uint16'))
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy import ndimage as ndi

from unetkit.errors import DataError
from unetkit.io.naming import MASK

__all__ = ["export_ctc", "export_ctc_folder"]

_MAX_LABELS = np.iinfo(np.uint16).max
_PRED = re.compile(rf"^t(\d+){MASK}\.tiff?$")


def _as_ctc_labels(labels, frame: int | str) -> np.ndarray:
    """uint16 instance labels; binary masks are split into connected components."""
    arr = np.asarray(labels)
    where = f"frame {frame}"
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{where}: labels of type {arr.dtype} are not an integer label image")
    if arr.dtype.kind == "b" or np.all((arr == 0) | (arr == 1)):
        # A foreground mask (0/1) holds no instances: each connected piece becomes one cell. The cross
        # (4-neighbour) structure keeps cells apart that the network separated by a one-pixel border.
        components, _ = ndi.label(arr > 0)
        return components.astype(np.uint16)
    if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
        raise DataError(f"{where}: labels are fractional, not an instance label image", fix="pass integer labels")
    if arr.min() < 0:
        raise DataError(f"{where}: negative label {arr.min()}", fix="use 0 for background and 1.. for cells")
    if arr.max() <= _MAX_LABELS:
        return arr.astype(np.uint16)
    values, inverse = np.unique(arr, return_inverse=True)
    count = len(values) - (values[0] == 0)
    if count > _MAX_LABELS:
        raise DataError(
            f"{where}: {count} labelled objects; the CTC format stores 16-bit labels, at most {_MAX_LABELS}",
            fix="split the image into tiles or filter out small objects first",
        )
    # Renumbering keeps 0 at 0 (it is the smallest value) and fits the objects into 16 bits.
    offset = 0 if values[0] == 0 else 1
    return (inverse.reshape(arr.shape) + offset).astype(np.uint16)


def _write(path: Path, labels: np.ndarray) -> None:
    import tifffile

    tmp = path.with_name(f".{path.name}.tmp")
    # Uncompressed and grey (a 3-slice stack is not RGB): what the challenge's Java evaluator reads.
    tifffile.imwrite(tmp, labels, photometric="minisblack")
    os.replace(tmp, path)


def export_ctc(
    masks: Iterable[tuple[int, np.ndarray]],
    out_root: str | os.PathLike,
    *,
    sequence: str = "01",
    digits: int | None = None,
) -> Path:
    """Write ``(frame_index, labels)`` pairs as ``out_root/<sequence>_RES/maskTTT.tif``.

    Args:
        masks: pairs of frame index and a label array ``(H, W)`` (or ``(D, H, W)`` for 3D data sets):
            instance labels (0 = background), or a 0/1 foreground mask, which is split into
            4-connected components. Consumed one at a time: a generator keeps memory flat.
        out_root: the results root; ``<sequence>_RES`` is created inside it.
        sequence: the sequence name, ``"01"`` or ``"02"``.
        digits: digits of the frame number; default 3, or 4 once a frame index exceeds 999 (files
            already written are then renamed).

    Returns:
        The ``<sequence>_RES`` folder.

    Raises:
        DataError: a frame holds more than 65535 objects, negative or fractional labels.
    """
    if not sequence or "/" in sequence or "\\" in sequence:
        raise ValueError(f"sequence must be a folder name like '01', got {sequence!r}")
    if digits is not None and digits < 1:
        raise ValueError(f"digits must be >= 1, got {digits}")
    res = Path(out_root) / f"{sequence}_RES"
    res.mkdir(parents=True, exist_ok=True)
    width, written = digits or 3, []
    for frame, labels in masks:
        frame = int(frame)
        if frame < 0:
            raise ValueError(f"frame index must be >= 0, got {frame}")
        if digits is None and frame > 999 and width == 3:
            for t in written:
                os.replace(res / f"mask{t:03d}.tif", res / f"mask{t:04d}.tif")
            width = 4
        _write(res / f"mask{frame:0{width}d}.tif", _as_ctc_labels(labels, frame))
        written.append(frame)
    return res


def export_ctc_folder(pred_dir: str | os.PathLike, out_root: str | os.PathLike, *, sequence: str = "01") -> Path:
    """Copy ``unetkit infer`` output (``tTTT_mask.tif``) into the CTC results layout.

    Frame numbers and their width come from the file names (``t0012_mask.tif`` -> ``mask0012.tif``).

    Args:
        pred_dir: folder of ``tTTT_mask.tif`` files, e.g. from ``unetkit infer ... 'DATA/02/t*.tif' -o DIR``.
        out_root: the results root; ``<sequence>_RES`` is created inside it.
        sequence: the sequence name.

    Returns:
        The ``<sequence>_RES`` folder.

    Raises:
        DataError: ``pred_dir`` is missing or holds no ``tTTT_mask.tif``, a file cannot be read, or a
            frame cannot be stored as 16-bit labels.
    """
    import tifffile

    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError("no such folder", path=pred_dir, fix="pass the folder `unetkit infer -o` wrote")
    matches = ((_PRED.match(e.name), Path(e.path)) for e in os.scandir(pred_dir))
    found = sorted((int(m.group(1)), len(m.group(1)), path) for m, path in matches if m)
    if not found:
        raise DataError(
            "no tTTT_mask.tif file here",
            path=pred_dir,
            fix="run `unetkit infer MODEL 'DATA/01/t*.tif' -o DIR` first and pass DIR",
        )

    def read():
        for frame, _, path in found:
            try:
                yield frame, tifffile.imread(path)
            except Exception as e:  # tifffile raises several types for a damaged file
                raise DataError(f"cannot read ({e})", path=path, fix="run `unetkit infer` again for it") from e

    return export_ctc(read(), out_root, sequence=sequence, digits=max(3, max(n for _, n, _ in found)))
