"""Load image files as channel-first arrays, with their :class:`~unetkit.io.ImageMeta` (MONAI's ``LoadImage``
and ``EnsureChannelFirst`` in one step, reading through :mod:`unetkit.io`).

Why not MONAI's own ``LoadImage``: its PIL reader keeps only the first page of a multi-page TIFF and its ITK
reader transposes stacks to ``(X, Y, Z)`` without axis names (see :mod:`unetkit.io.tiff`); and training on one
slice of an ISBI 2012 volume needs only that slice read (``frame``), not the whole stack.

Channel handling: a grey image ``(*spatial)`` becomes ``(1, *spatial)``; an RGB TIFF ``(Y, X, S)`` becomes
``(S, Y, X)``; an ImageJ/OME channel axis ``C`` moves to the front. Other axes (``T``, ``Z``) stay where they
are and count as spatial, except that one of size one is dropped (a 2D frame saved as ``(1, H, W)``); pass a
frame to take one time point or slice along the file's first axis. Given the network's ``channels``, an
RGB(A) image for a one-channel network becomes grey and any other mismatch is refused with one line, as
``unetkit infer`` does (:mod:`unetkit.io.colour`): the recipes pass their network's ``in_channels``, so
training, validation and MONAI's runner see what ``unetkit infer`` sees.

The dictionary twin stores the meta under ``f"{key}_meta"`` (:data:`META_SUFFIX`). MONAI's own suffix,
``_meta_dict``, is avoided on purpose: MONAI transforms that find it expect a plain dict there.
"""

from __future__ import annotations

import operator
import os
from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import dtype_torch_to_numpy
from torch.utils.data._utils.collate import default_collate_fn_map

from unetkit.errors import DataError, ImageReadError
from unetkit.io import ImageMeta, read_image
from unetkit.io.colour import needs_grey, to_grey
from unetkit.io.meta import CHANNEL
from unetkit.transforms.instances import mask_instances

__all__ = ["LoadImage", "LoadImaged", "META_SUFFIX", "crop_region", "read_item"]

META_SUFFIX = "_meta"
"""``LoadImaged`` stores the meta of ``data[key]`` under ``key + META_SUFFIX`` (``"image_meta"``)."""


def _collate_metas(batch, *, collate_fn_map=None):
    return list(batch)


# A batch of dicts holding ImageMeta would stop torch's default_collate (and MONAI's list_data_collate,
# which calls it) with "batch must contain tensors, numpy arrays, numbers, dicts or lists"; batched, the
# metas stay a list, one per item, as MONAI does with file names.
default_collate_fn_map.setdefault(ImageMeta, _collate_metas)


class LoadImage(Transform):
    """File path -> channel-first numpy array ``(C, *spatial)``, e.g. ``(1, H, W)`` or ``(3, H, W)`` for RGB.

    Args:
        dtype: output dtype (float32 by default, for images); None keeps the file's dtype (labels).
        ensure_channel_first: add or move the channel axis to the front (see the module docstring);
            False returns the array in the file's own axis order.
        mmap: return a memory map of the file where :func:`~unetkit.io.read_image` can (uncompressed TIFF,
            ``.nii``) and no dtype conversion is needed, so a huge image is not loaded whole.
        channels: the channels the network takes, or None to keep the file's. With 1, an RGB(A) image
            (``S`` axis of 3 or 4) becomes its BT.601 luma; a count that fits neither raises
            :class:`~unetkit.errors.ImageReadError`. Needs ``ensure_channel_first``.
        instances: the file holds instance labels: a mask with one foreground value (0/1, 0/255) becomes
            its connected components (:func:`~unetkit.transforms.instances.mask_instances`).

    Examples:
        >>> import tempfile
        >>> from unetkit.io import write_image
        >>> p = write_image(tempfile.mkdtemp() + "/stack.tif", np.zeros((4, 33, 37), np.uint8))
        >>> LoadImage()(p).shape, LoadImage()(p).dtype
        ((1, 4, 33, 37), dtype('float32'))
        >>> img = LoadImage(dtype=None)(p, frame=2)  # one slice, file dtype
        >>> img.shape, img.dtype
        ((1, 33, 37), dtype('uint8'))
    """

    def __init__(self, dtype=np.float32, *, ensure_channel_first: bool = True, mmap: bool = False,
                 channels: int | None = None, instances: bool = False):
        if channels is not None and not ensure_channel_first:
            raise ValueError("channels needs ensure_channel_first=True")
        self.dtype = _numpy_dtype(dtype)
        self.ensure_channel_first = ensure_channel_first
        self.mmap = mmap
        self.channels = None if channels is None else int(channels)
        self.instances = bool(instances)

    def __call__(self, path: str | os.PathLike, frame: int | None = None, region=None) -> np.ndarray:
        """Load ``path`` (index ``frame`` along the file's first axis, and crop to ``region``, if given)."""
        return self.load(path, frame, region)[0]

    def load(self, path: str | os.PathLike, frame: int | None = None, region=None) -> tuple[np.ndarray, ImageMeta]:
        """Like calling the transform, and also return the :class:`ImageMeta` of the array returned.

        ``region`` (``[[start, stop], ...]``, one pair per spatial axis) is :func:`crop_region`'s: part of an
        image, as a single annotated image split into training and validation parts addresses it.

        Raises:
            ImageReadError: the file cannot be read, ``frame`` is not an index of its first axis, it has
                both a ``C`` and an ``S`` axis, or its channels do not fit ``channels``.
        """
        # With a frame or a region, map the file so that only those bytes are read (one slice of an ISBI stack).
        mapped = self.mmap or frame is not None or region is not None
        arr, meta = read_image(path, mmap=mapped)
        if frame is not None:
            index = _frame_index(frame, arr, meta)
            arr, meta = arr[index], meta.select(0, index)
        # a singleton Z or T axis (a one-slice stack, one time point) carries nothing: dropped, so that a frame
        # saved as (1, H, W) trains as the 2D image it is, as `unetkit infer` reads it
        for i in reversed(range(arr.ndim)):
            if arr.shape[i] == 1 and meta.axes[i] in "ZT" and arr.ndim > 2:
                arr, meta = arr[(slice(None),) * i + (0,)], meta.select(i, 0)
        if region is not None:
            arr, meta = crop_region(arr, meta, region)
        grey = False
        if self.ensure_channel_first:
            before = meta
            arr, meta = _channel_first(arr, meta)
            if self.channels is not None:
                axis = next((i for i, a in enumerate(before.axes) if a in CHANNEL), None)
                grey = needs_grey(before, axis, self.channels)
        if grey:  # a float32 copy, off any memory map
            arr = to_grey(arr, axis=0)
            meta = meta.replace(shape=arr.shape)
            mapped = False
        # native byte order: a memory map of a big-endian file would otherwise reach torch, which refuses it
        dtype = arr.dtype.newbyteorder("=") if self.dtype is None else self.dtype
        if mapped and not (self.mmap and dtype == arr.dtype):
            arr = np.array(arr, dtype=dtype, order="C")  # a copy in memory, off the map
        elif not mapped:
            arr = np.ascontiguousarray(arr, dtype=dtype)
        if self.instances:
            arr = mask_instances(arr)
        return arr, meta.replace(dtype=arr.dtype.name)


def crop_region(arr: np.ndarray, meta: ImageMeta, region) -> tuple[np.ndarray, ImageMeta]:
    """``arr`` cropped to ``region``, ``[[start, stop], ...]`` over its last spatial (non-channel) axes in the
    file's order, and the meta of the crop.

    Raises:
        DataError: the region has more axes than the image, or reaches outside it.

    Examples:
        >>> crop_region(np.zeros((6, 8, 3)), ImageMeta("YXS"), [[0, 6], [5, 8]])[0].shape
        (6, 3, 3)
    """
    spatial = [i for i, a in enumerate(meta.axes) if a not in CHANNEL]
    region = [(int(a), int(b)) for a, b in region]
    if len(region) > len(spatial) or any(not 0 <= a < b <= arr.shape[i] for i, (a, b) in
                                         zip(spatial[len(spatial) - len(region):], region)):
        shape = "x".join(str(arr.shape[i]) for i in spatial)
        raise DataError(f"region {region} does not fit the {shape} image", path=meta.source,
                        fix="list the data again (the file changed since its region was chosen)")
    index = [slice(None)] * arr.ndim
    for i, (a, b) in zip(spatial[len(spatial) - len(region):], region):
        index[i] = slice(a, b)
    arr = arr[tuple(index)]
    return arr, meta.replace(shape=arr.shape)


def read_item(item: Mapping, key: str) -> tuple[np.ndarray, ImageMeta]:
    """The pixels a data list item's ``key`` file holds for the item, as training reads them (its ``"frame"``
    and ``"region"``, a singleton Z or T dropped) but in the file's own axis order and dtype, memory-mapped where
    the file allows: what the plan, the label check and ``unetkit evaluate`` measure of an item.

    Examples:
        >>> import tempfile
        >>> from unetkit.io import write_image
        >>> p = write_image(tempfile.mkdtemp() + "/stack.tif", np.zeros((4, 30, 40), np.uint8))
        >>> read_item({"label": str(p), "frame": 2, "region": [[0, 30], [32, 40]]}, "label")[0].shape
        (30, 8)
    """
    loader = LoadImage(dtype=None, ensure_channel_first=False, mmap=True)
    return loader.load(item[key], item.get("frame"), item.get("region"))


class LoadImaged(MapTransform):
    """Dictionary twin of :class:`LoadImage`: ``data[key]`` path -> array, meta in ``data[key + "_meta"]``.

    Args:
        keys: keys of the paths to load.
        dtype: as :class:`LoadImage` (None for labels, to keep their integer type).
        frame_key: if the dict has this key, its integer value picks one frame along each file's first axis
            (the layouts in :mod:`unetkit.data` use ``"frame"`` for ISBI 2012 slices).
        region_key: if the dict has this key, its value crops each file (:func:`crop_region`; the layouts use
            ``"region"`` for the parts of a single annotated image split into training and validation).
        ensure_channel_first: as :class:`LoadImage`.
        channels: as :class:`LoadImage`: the network's input channels (RGB(A) to grey for 1), or None.
        instances: as :class:`LoadImage`: a mask with one foreground value becomes its connected components.
        shape_of: a key loaded before (``"image"`` for labels) whose spatial size each file loaded here must
            have; a label image of another size is refused with one line naming both files, instead of
            failing later inside a batch, far from the file.
        allow_missing_keys: skip keys the dict does not have instead of raising ``KeyError``.

    Examples:
        >>> import tempfile
        >>> from unetkit.io import write_image
        >>> p = write_image(tempfile.mkdtemp() + "/labels.tif", np.zeros((30, 33, 37), np.uint8))
        >>> d = LoadImaged("label", dtype=None, frame_key="frame")({"label": str(p), "frame": 7})
        >>> d["label"].shape, d["label_meta"].axes, d["label_meta"].source == str(p)
        ((1, 33, 37), 'CYX', True)
    """

    def __init__(
        self,
        keys: KeysCollection,
        *,
        dtype=np.float32,
        frame_key: str | None = None,
        region_key: str | None = None,
        ensure_channel_first: bool = True,
        channels: int | None = None,
        instances: bool = False,
        shape_of: str | None = None,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadImage(dtype, ensure_channel_first=ensure_channel_first, channels=channels,
                                instances=instances)
        self.frame_key, self.region_key = frame_key, region_key
        self.shape_of = shape_of

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        frame = d.get(self.frame_key) if self.frame_key is not None else None
        region = d.get(self.region_key) if self.region_key is not None else None
        for key in self.key_iterator(d):
            path = d[key]
            d[key], d[f"{key}{META_SUFFIX}"] = self.loader.load(path, frame, region)
            if self.shape_of is not None and self.shape_of in d:
                _check_same_size(d[key], path, d[self.shape_of], d.get(f"{self.shape_of}{META_SUFFIX}"))
        return d


def _check_same_size(arr, path, like, like_meta) -> None:
    """Refuse ``arr`` (loaded from ``path``) unless its spatial size is that of ``like`` (channel-first)."""
    if tuple(arr.shape[1:]) == tuple(like.shape[1:]):
        return
    source = getattr(like_meta, "source", None) or "its image"
    raise DataError(f"is {'x'.join(map(str, arr.shape[1:]))} but {source} is {'x'.join(map(str, like.shape[1:]))}",
                    path=path, fix="give each image a label image of its own size")


def _numpy_dtype(dtype) -> np.dtype | None:
    if dtype is None:
        return None
    if isinstance(dtype, torch.dtype):
        return np.dtype(dtype_torch_to_numpy(dtype))
    return np.dtype(dtype)


def _frame_index(frame, arr: np.ndarray, meta: ImageMeta) -> int:
    try:
        index = operator.index(frame)
    except TypeError:
        raise ImageReadError(f"frame {frame!r} is not an integer index", path=meta.source) from None
    image_axes = sum(a not in CHANNEL for a in meta.axes)
    if image_axes < 3:
        raise ImageReadError(f"frame {index} asked of a single {image_axes}D image (axes {meta.axes})",
                             path=meta.source, fix="drop the frame from the data list item")
    if not 0 <= index < arr.shape[0]:
        raise ImageReadError(f"frame {index} is out of range: the file has {arr.shape[0]} along its first axis "
                             f"({meta.axes[0]})", path=meta.source, fix="frames count from 0")
    return index


def _channel_first(arr: np.ndarray, meta: ImageMeta) -> tuple[np.ndarray, ImageMeta]:
    channels = [i for i, a in enumerate(meta.axes) if a in CHANNEL]
    if len(channels) > 1:
        raise ImageReadError(f"has both a channel and a sample axis (axes {meta.axes})", path=meta.source,
                             fix="load it with ensure_channel_first=False and merge them")
    if not channels:
        return arr[None], meta.insert_axis(0, "C")
    moved = meta.move_axis(channels[0], 0)
    return np.moveaxis(arr, channels[0], 0), moved.replace(axes="C" + moved.axes[1:])
