"""A fixed train / validation split of a data list, for data sets that have no held-out sequence."""

from __future__ import annotations

from typing import Sequence

from unetkit.errors import DataError

__all__ = ["split_datalist"]


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
