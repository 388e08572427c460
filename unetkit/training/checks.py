"""Checks of the training data at the start of a run, before any step (a recipe's ``initialize``)."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

__all__ = ["warn_likely_ignore_label", "SAMPLED_ITEMS"]

logger = logging.getLogger(__name__)

SAMPLED_ITEMS = 8
"""Label images read by :func:`warn_likely_ignore_label`: spread over the data list, so the check costs a few
reads however large the data set is."""


def warn_likely_ignore_label(data: Sequence[dict], ignore_label: int | None = None, *, key: str = "label",
                             sample: int = SAMPLED_ITEMS) -> int | None:
    """Warn, once, when one label value covers more than half of the annotated area of a label image.

    Among several objects, one "object" larger than all the others together is most likely a value that
    marks unannotated pixels (the Cell Tracking Challenge's gold truth is partial); trained as one huge cell it
    teaches the network nonsense. The warning names the value and ``--ignore-label``. Nothing is said when the
    run already has an ignore label.

    The same check runs in :class:`~unetkit.transforms.WeightMap` on every label image; this one runs in the
    training process before the data loader starts its workers, so the line comes at the start of the run, and
    the workers (forked after it) do not repeat it.

    Args:
        data: the training data list (``{"label": path, "frame": slice index?}`` items).
        ignore_label: the run's ignore label (``ignore_label``, ``--ignore-label``); None when it has none.
        key: the label key of the items.
        sample: how many label images to read, spread over the list.

    Returns:
        The value warned about, or None.
    """
    if ignore_label is not None or not data:
        return None
    try:  # only the first process of a distributed run speaks
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            return None
    except ImportError:  # pragma: no cover
        pass
    from unetkit.transforms.load import read_item
    from unetkit.transforms.weight_map import _WARNED, dominant_label, warn_dominant_label

    picks = sorted({round(i * (len(data) - 1) / max(1, sample - 1)) for i in range(min(sample, len(data)))})
    for i in picks:
        item = data[i]
        if not isinstance(item, dict) or key not in item:
            continue
        try:
            labels, _meta = read_item(item, key)
        except Exception:  # an unreadable file fails the run later with its own clear error
            logger.debug("could not read %s for the label check", item[key], exc_info=True)
            continue
        found = dominant_label(np.asarray(labels))
        if found is not None:
            if found[0] not in _WARNED:
                warn_dominant_label(*found)
            return found[0]
    return None
