"""Write label images next to nothing but their own metadata: ``<stem>_mask.<ext>`` with the input's calibration.

:class:`SaveMask` is what a bundle's ``inference.json`` ends with when MONAI's runner drives it
(``python -m monai.bundle run --config_file .../inference.json ...``): the ``pred`` labels, channel-first as
the network made them, go to ``output_dir`` under the names ``unetkit infer`` uses (see
:mod:`unetkit.io.naming`), written by :func:`unetkit.io.write_image` with the input file's metadata
(spacing, affine, axes), re-read from the input's header. The input is named by its path rather than
carried as an :class:`~unetkit.io.ImageMeta` through the batch: MONAI's evaluator cannot de-collate
objects it does not know ("Unable to de-collate: ImageMeta").

Labels are written as uint16 (uint32 beyond 65,535 objects), class indices of a ``"semantic"`` kind as
uint8. Like MONAI's ``SaveImage``, an existing output is replaced (the runner writes into the bundle's
``eval/`` folder run after run); the input file itself never is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from unetkit.io import read_image, write_image
from unetkit.io.naming import MASK, label_dtype, output_stem, plan_outputs, semantic_dtype
from unetkit.io.meta import CHANNEL

__all__ = ["SaveMask", "SaveMaskd"]


class SaveMask(Transform):
    """Labels ``(1, *spatial)`` (or ``(*spatial)``) of an input file -> ``output_dir/<stem>_<postfix>.<ext>``.

    The labels must be in the input's own axis order with its channel axis first (as
    :class:`~unetkit.transforms.LoadImage` loads it): they are written with the input's metadata minus its
    channel axis, so that reading the mask back gives the input's shape, spacing and affine.

    Args:
        output_dir: the folder to write into (made if missing).
        postfix: ``"mask"`` gives ``<stem>_mask.<ext>``.
        kind: ``"instances"`` (uint16, uint32 above 65,535 labels) or ``"semantic"`` (uint8 class indices).

    Examples:
        >>> import tempfile
        >>> from unetkit.io import ImageMeta
        >>> d = tempfile.mkdtemp()
        >>> src = write_image(f"{d}/a.tif", np.zeros((33, 37), np.uint8), ImageMeta("YX", spacing=(0.5, 0.5)))
        >>> labels = np.zeros((1, 33, 37), np.int32); labels[0, 3:9, 4:8] = 1
        >>> out = SaveMask(f"{d}/eval")(labels, src)
        >>> arr, meta = read_image(out)
        >>> out.name, arr.shape, arr.dtype, meta.spacing
        ('a_mask.tif', (33, 37), dtype('uint16'), (0.5, 0.5))
    """

    def __init__(self, output_dir: str | os.PathLike, *, postfix: str = "mask", kind: str = "instances"):
        if kind not in ("instances", "semantic"):
            raise ValueError(f"kind must be 'instances' or 'semantic', got {kind!r}")
        self.output_dir = Path(output_dir)
        self.postfix = postfix
        self.kind = kind

    def __call__(self, labels, source: str | os.PathLike) -> Path:
        """Write ``labels`` of the image file ``source``; returns the path written."""
        arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        _, meta = read_image(source, mmap=True)  # the header: pixels stay on disk where the format allows
        channels = [i for i, a in enumerate(meta.axes) if a in CHANNEL]
        if channels:
            meta = meta.select(channels[0], 0)
        if arr.ndim == len(meta.axes) + 1:
            if arr.shape[0] != 1:
                raise ValueError(f"labels must have one channel, got shape {arr.shape}")
            arr = arr[0]
        if arr.shape != tuple(meta.shape):
            raise ValueError(f"labels of shape {arr.shape} do not fit {source} (shape {meta.shape} without channels)")
        top = int(arr.max(initial=0))
        dtype = label_dtype(top) if self.kind == "instances" else semantic_dtype(top + 1)
        stem, mask = output_stem(source), plan_outputs(source, self.output_dir).mask
        suffix = mask.name[len(stem) + len(MASK):]
        return write_image(self.output_dir / f"{stem}_{self.postfix}{suffix}", arr.astype(dtype), meta)


class SaveMaskd(MapTransform):
    """Dictionary twin of :class:`SaveMask`: writes ``data[key]`` for the file whose path is ``data[source_key]``.

    Args:
        keys: the label keys (``"pred"``).
        output_dir: the folder to write into.
        source_key: the key holding the input file's path (``"image_path"``, copied from ``"image"`` before
            loading, e.g. with ``monai.transforms.CopyItemsd``).
        postfix: as :class:`SaveMask`.
        kind: as :class:`SaveMask`.
        allow_missing_keys: skip keys the dict does not have.

    The data are returned unchanged.
    """

    def __init__(self, keys: KeysCollection, output_dir: str | os.PathLike, *, source_key: str = "image_path",
                 postfix: str = "mask", kind: str = "instances", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.saver = SaveMask(output_dir, postfix=postfix, kind=kind)
        self.source_key = source_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        source = d[self.source_key]
        if not isinstance(source, (str, os.PathLike)):
            raise ValueError(
                f"SaveMaskd needs the input file's path under {self.source_key!r}, got {type(source).__name__}: copy "
                "the path before loading (monai.transforms.CopyItemsd(keys='image', names='image_path'))"
            )
        for key in self.key_iterator(d):
            self.saver(d[key], source)
        return d
