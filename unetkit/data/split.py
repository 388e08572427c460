"""A fixed train / validation split of a data list, for data sets that have no held-out sequence."""

from __future__ import annotations

from typing import Sequence

__all__ = ["split_datalist"]


def split_datalist(data: Sequence[dict], *, holdout: int, part: str) -> list[dict]:
    """The first ``len(data) - holdout`` items (``part="train"``) or the last ``holdout`` (``"validation"``).

    Contiguous rather than random: neighbouring EM slices and time frames are nearly the same image, so
    a random split would validate on near-copies of training data.

    Args:
        data: the data list, in its natural (slice, frame or file name) order.
        holdout: how many items go to validation; 0 < holdout < len(data).
        part: "train" or "validation".

    Examples:
        >>> d = [{"frame": i} for i in range(5)]
        >>> [x["frame"] for x in split_datalist(d, holdout=2, part="validation")]
        [3, 4]
        >>> len(split_datalist(d, holdout=2, part="train"))
        3
    """
    if part not in ("train", "validation"):
        raise ValueError(f"part must be 'train' or 'validation', got {part!r}")
    if not 0 < holdout < len(data):
        raise ValueError(f"holdout must be between 1 and {len(data) - 1} for {len(data)} items, got {holdout}")
    return list(data[: len(data) - holdout]) if part == "train" else list(data[len(data) - holdout :])
