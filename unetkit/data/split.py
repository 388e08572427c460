"""Fixed train / validation splits of a data list: one held-out part (for data sets that have no held-out
sequence), or k folds for cross-validation (``unetkit train --folds K``)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from unetkit.errors import DataError

__all__ = ["split_datalist", "split_image", "fold_datalist", "fold_groups"]


def split_datalist(data: Sequence[dict], *, holdout: int | float, part: str) -> list[dict]:
    """The first ``len(data) - holdout`` items (``part="train"``) or the last ``holdout`` (``"validation"``).

    Contiguous rather than random: neighbouring EM slices and time frames are nearly the same image, so
    a random split would validate on near-copies of training data.

    Args:
        data: the data list, in its natural (slice, frame or file name) order.
        holdout: how many items go to validation, 0 < holdout < len(data); or a fraction of them (0.2: a
            fifth, rounded, at least one, and at least one left to train on), so that one recipe fits a
            data set of any size.
        part: "train" or "validation".

    Raises:
        DataError: too few items to split as asked.

    Examples:
        >>> d = [{"frame": i} for i in range(5)]
        >>> [x["frame"] for x in split_datalist(d, holdout=2, part="validation")]
        [3, 4]
        >>> len(split_datalist(d, holdout=2, part="train")), len(split_datalist(d, holdout=0.2, part="validation"))
        (3, 1)
    """
    if part not in ("train", "validation"):
        raise ValueError(f"part must be 'train' or 'validation', got {part!r}")
    n = len(data)
    if isinstance(holdout, float) and 0 < holdout < 1:
        holdout = min(max(1, round(holdout * n)), n - 1)
    if n < 2:
        raise DataError(f"{n} item(s) cannot be split into training and validation", fix="add data: at least 2 items")
    if not 0 < holdout < n:
        raise DataError(f"holdout {holdout}: must be between 1 and {n - 1} for {n} items, or a fraction such as 0.2",
                        fix=f"pass --set holdout=0.2 (or a count below {n})")
    return list(data[: len(data) - holdout]) if part == "train" else list(data[len(data) - holdout :])


def split_image(item: dict, *, holdout: float, part: str) -> dict:
    """A single annotated image, split as :func:`split_datalist` splits a list: its first part trains and the
    last ``holdout`` of its longest axis validates, as the item's ``"region"`` (``[[start, stop], ...]`` per
    spatial axis, which ``unetkit.transforms.LoadImaged(region_key="region")`` crops to).

    The issue's own real-image protocol, done by hand before: one image is what a user often has, and the
    recipes keep their best weights and choose their decoder on a part training never saw. Contiguous, as the
    list split: objects on either side of the cut are cut with it, never shared between a part and the other.

    Args:
        item: ``{"image": path, "label": path}``.
        holdout: the fraction of the longest axis held out (0.2: the last fifth).
        part: "train" or "validation".

    Raises:
        DataError: ``holdout`` is a count of images, not a fraction; or the image is too small to cut.
    """
    from unetkit.transforms.load import LoadImage

    if part not in ("train", "validation"):
        raise ValueError(f"part must be 'train' or 'validation', got {part!r}")
    label = Path(item["label"])
    if not (isinstance(holdout, float) and 0 < holdout < 1):
        raise DataError(f"holdout {holdout} counts images, and this folder has one annotated image", path=label,
                        fix="hold out a fraction of it (--set holdout=0.2), or annotate a second image")
    # the label's spatial shape as the loader sees it (a singleton Z dropped): the region is cropped there
    shape = LoadImage(dtype=None, mmap=True).load(label)[0].shape[1:]
    axis = max(range(len(shape)), key=lambda i: (shape[i], i))  # the longest; of equals, the last (x)
    cut = shape[axis] - max(1, round(holdout * shape[axis]))
    if cut < 1:
        raise DataError(f"is {'x'.join(map(str, shape))}: too small to cut into training and validation parts",
                        path=label, fix="annotate a second image")
    region = [[0, n] for n in shape]
    region[axis] = [0, cut] if part == "train" else [cut, shape[axis]]
    return {**item, "region": region}


def fold_groups(data: Sequence[dict], folds: int) -> tuple[str, list[list[dict]]]:
    """Split a data list into ``folds`` contiguous groups; ``("sequence" | "frame", groups)``.

    Whole sequences (the folder of each image) go to one fold when there are at least ``folds`` of them,
    since frames of one time-lapse are near-copies of each other; otherwise frames are split, in order, into
    contiguous runs (for the same reason as :func:`split_datalist`).

    Raises:
        DataError: fewer than two folds, or fewer frames than folds.

    Examples:
        >>> d = [{"image": f"{s}/t{i}.tif"} for s in ("01", "02") for i in range(3)]
        >>> by, groups = fold_groups(d, 2)
        >>> by, [[x["image"] for x in g] for g in groups][1]
        ('sequence', ['02/t0.tif', '02/t1.tif', '02/t2.tif'])
        >>> by, groups = fold_groups(d[:3], 2)
        >>> by, [len(g) for g in groups]
        ('frame', [2, 1])
    """
    folds = int(folds)
    if folds < 2:
        raise DataError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if len(data) < folds:
        raise DataError(f"{len(data)} annotated frame(s) cannot make {folds} folds",
                        fix=f"pass --folds {len(data)} or fewer" if len(data) >= 2 else "add annotated frames")
    sequences: dict[str, list[dict]] = {}
    for item in data:
        sequences.setdefault(str(Path(item["image"]).parent), []).append(item)
    units, by = (list(sequences.values()), "sequence") if len(sequences) >= folds else ([[i] for i in data], "frame")
    # contiguous runs of near-equal size: the first len(units) % folds runs take one unit more
    size, extra = divmod(len(units), folds)
    groups, start = [], 0
    for k in range(folds):
        stop = start + size + (k < extra)
        groups.append([item for unit in units[start:stop] for item in unit])
        start = stop
    return by, groups


def fold_datalist(data: Sequence[dict], *, folds: int, fold: int, part: str) -> list[dict]:
    """Fold ``fold`` of ``folds`` (:func:`fold_groups`): its own items (``part="validation"``) or all others.

    Examples:
        >>> d = [{"image": f"01/t{i}.tif"} for i in range(5)]
        >>> [x["image"][-6:] for x in fold_datalist(d, folds=2, fold=1, part="validation")]
        ['t3.tif', 't4.tif']
        >>> len(fold_datalist(d, folds=2, fold=1, part="train"))
        3
    """
    if part not in ("train", "validation"):
        raise ValueError(f"part must be 'train' or 'validation', got {part!r}")
    _, groups = fold_groups(data, folds)
    if not 0 <= int(fold) < len(groups):
        raise DataError(f"--fold {fold}: must be between 0 and {len(groups) - 1} for {len(groups)} folds")
    if part == "validation":
        return list(groups[int(fold)])
    return [item for k, g in enumerate(groups) if k != int(fold) for item in g]
