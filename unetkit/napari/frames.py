"""The Qt-free steps of the napari plugin: a layer's pixels to instance labels, and a corrected frame saved.

- :func:`segment_array`: a napari image layer's array (2D, a stack of 2D frames, a volume; RGB converted to
  grey as ``unetkit infer`` does) segmented by a bundle into instance labels, the same pixels the CLI writes
  for that image in a file, with progress and cancellation between tiles.
- :func:`save_frame`: an image and its corrected labels into a data folder in the Cell Tracking Challenge
  layout that ``unetkit train`` reads (``DIR/01/tTTT.tif`` + ``DIR/01_GT/SEG/man_segTTT.tif``), never over
  an existing annotation.
- :func:`save_pair`: the same into a folder of image / mask pairs, the other layout ``unetkit train`` reads
  (``DIR/images/NAME.tif`` + ``DIR/masks/NAME.tif``, or ``NAME.tif`` + ``NAME_mask.tif`` in one folder).

Examples:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> image = np.arange(20, dtype=np.uint8).reshape(4, 5)
    >>> labels = np.zeros((4, 5), np.int32); labels[:2, :2] = 3; labels[3, 3:] = 7
    >>> saved = save_frame(root, "01", image, labels)
    >>> saved.frame, saved.image.relative_to(root).as_posix(), saved.mask.relative_to(root).as_posix()
    (0, '01/t000.tif', '01_GT/SEG/man_seg000.tif')
    >>> save_frame(root, "01", image, labels).frame  # the next free frame
    1
    >>> save_frame(root, "01", image, labels, frame=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    unetkit.errors.DataError: .../01_GT/SEG/man_seg000.tif: frame 0 of sequence 01 is annotated already (save it as frame 2, ...)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from unetkit.data.layouts import _FRAME, _mask_of, _pairs_folders, indexed_files
from unetkit.errors import DataError, ImageReadError
from unetkit.io.formats import images_in_folder
from unetkit.io.naming import output_stem

__all__ = ["Cancelled", "SavedFrame", "SavedPair", "layer_axes", "segment_array", "save_frame", "save_pair",
           "is_pairs_folder", "next_free_frame", "frame_of_path", "finetune_output"]

# a 2D frame's mask only: the plugin saves whole frames, never the per-slice masks of 3D gold truth
_MASK = re.compile(r"^man_seg(\d+)\.tiff?$")
_SEQUENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Cancelled(Exception):
    """The user cancelled the run (raised from a progress callback, between tiles or training steps)."""


def layer_axes(ndim: int, *, rgb: bool = False) -> str:
    """The axis letters unetkit reads a napari image layer's array with: the last two axes are ``YX``
    (``YXS`` for RGB), a third is ``Z`` and a fourth ``T``, as napari shows them (sliders on the leading axes).
    A 2D bundle segments each ``YX`` slice; a 3D bundle each ``ZYX`` volume.

    Examples:
        >>> layer_axes(2), layer_axes(3), layer_axes(4), layer_axes(3, rgb=True)
        ('YX', 'ZYX', 'TZYX', 'YXS')
        >>> layer_axes(5)
        Traceback (most recent call last):
        ...
        unetkit.errors.ImageReadError: has 5 axes; unetkit segments 2D images and 3D volumes, with at most one more axis (time) in front
    """
    spatial = ndim - 1 if rgb else ndim
    if spatial < 2 or spatial > 4:
        raise ImageReadError(f"has {ndim} axes; unetkit segments 2D images and 3D volumes, with at most one more "
                             "axis (time) in front")
    return "TZYX"[-spatial:] + ("S" if rgb else "")


def segment_array(
    model, data, *, rgb: bool = False, scale: Sequence[float] | None = None,
    progress: Callable[[float, str], None] | None = None, cancelled: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, int]:
    """Instance labels of an image layer's array, segmented as ``unetkit infer`` segments a file.

    Args:
        model: a :class:`~unetkit.predict.BundleModel` (:func:`~unetkit.predict.load_bundle_model`).
        data: the layer's array (numpy, or anything ``np.asarray`` reads, e.g. dask), axes as :func:`layer_axes`.
        rgb: the last axis holds RGB(A) samples (napari's ``layer.rgb``); turned to grey for a 1-channel bundle.
        scale: the layer's pixel size per non-sample axis (napari's ``layer.scale``), for bundles that resample.
        progress: ``progress(fraction, text)`` after each tile.
        cancelled: polled after each tile; when it returns True, :class:`Cancelled` is raised.

    Returns:
        ``(labels, objects)``: int32 labels of the layer's shape without its RGB axis (each 2D frame or
        volume numbered 1..n on its own, as the CLI numbers the frames of a stack), and the objects found.

    Raises:
        ImageReadError: axes the bundle cannot segment (a 2D image for a 3D bundle, a 5D array), NaN pixels.
        Cancelled: ``cancelled()`` said so.
    """
    from unetkit.io import ImageMeta
    from unetkit.io.checks import count_nonfinite
    from unetkit.predict.layout import plan_layout
    from unetkit.predict.preprocess import Preprocessed, world_affine
    from unetkit.predict.segment import instance_labels, segment

    array = np.asarray(data)
    if array.dtype.kind not in "buif":
        raise ImageReadError(f"has pixels of type {array.dtype}, not numbers")
    axes = layer_axes(array.ndim, rgb=rgb)
    spacing = None
    if scale is not None and len(scale) == array.ndim - rgb and all(float(s) > 0 for s in scale):
        spacing = (*(float(s) for s in scale), *((1.0,) if rgb else ()))
    meta = ImageMeta(axes, shape=array.shape, dtype=array.dtype, spacing=spacing)
    layout = plan_layout(meta, spatial_dims=model.spatial_dims, in_channels=model.in_channels)
    bad = count_nonfinite(array)
    if bad:
        raise ImageReadError(f"has {bad} NaN or infinite pixel(s)", fix="replace them first (e.g. with the median)")

    frames = list(layout.frame_indices())
    labels = np.zeros(layout.output_shape, np.int32)
    objects = 0
    for i, index in enumerate(frames):
        def tiles(done: int, total: int, i=i) -> None:
            if cancelled is not None and cancelled():
                raise Cancelled()
            if progress is not None:
                where = f"frame {i + 1}/{len(frames)}, " if len(frames) > 1 else ""
                progress((i + done / max(total, 1)) / len(frames), f"{where}tile {done}/{total}")

        if cancelled is not None and cancelled():
            raise Cancelled()
        image = layout.network_input(array, index)
        # the bundle's own preprocessing (resampling of 3D recipes) and its inverse, as the CLI runs them
        pre = Preprocessed(model.preprocessing, image, world_affine(meta, layout.spatial)) if model.preprocessing else None
        classes, _ = segment(model, image if pre is None else pre.image, progress=tiles, instances=True)
        frame_labels, n = instance_labels(classes, model.instances)
        if pre is not None:
            frame_labels = pre.back_labels(frame_labels)
        layout.output_view(labels, index)[...] = frame_labels
        objects += n
    return labels, objects


@dataclass(frozen=True)
class SavedFrame:
    """What :func:`save_frame` wrote: the frame number, the image file (``wrote_image`` False when the same
    image was there already) and the mask file."""

    frame: int
    image: Path
    mask: Path
    wrote_image: bool


@dataclass(frozen=True)
class SavedPair:
    """What :func:`save_pair` wrote: the pair's name, the image file (``wrote_image`` False when the same image
    was there already) and the mask file."""

    name: str
    image: Path
    mask: Path
    wrote_image: bool


def _folders(root: str | os.PathLike, sequence: str) -> tuple[Path, Path]:
    if not _SEQUENCE.match(str(sequence)) or str(sequence).endswith(("_GT", "_ST", "_RES")):
        raise DataError(f"sequence {sequence!r} is not a folder name such as '01'")
    root = Path(root)
    return root / sequence, root / f"{sequence}_GT" / "SEG"


def next_free_frame(root: str | os.PathLike, sequence: str = "01") -> int:
    """One after the highest frame number among the sequence's images and masks (0 for a new sequence).

    Examples:
        >>> import tempfile
        >>> next_free_frame(tempfile.mkdtemp())
        0
    """
    images, masks = (indexed_files(f, p) for f, p in zip(_folders(root, sequence), (_FRAME, _MASK)))
    return max([*images, *masks], default=-1) + 1


def frame_of_path(path: str | os.PathLike | None) -> tuple[Path, str, int] | None:
    """``(root, sequence, frame)`` of an image read from a CTC data folder (``root/01/t005.tif``), else None:
    a frame opened from the data folder is saved back as that frame.

    Examples:
        >>> frame_of_path("/data/hela/02/t0012.tif")
        (PosixPath('/data/hela'), '02', 12)
        >>> frame_of_path("/data/cells.png") is None
        True
    """
    if not path:
        return None
    path = Path(path)
    m = _FRAME.match(path.name)
    if m is None or not _SEQUENCE.match(path.parent.name):
        return None
    return path.parent.parent, path.parent.name, int(m.group(1))


def _write_tiff(path: Path, array: np.ndarray, *, rgb: bool = False) -> None:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tifffile.imwrite(tmp, array, photometric="rgb" if rgb else "minisblack")
    os.replace(tmp, path)  # whole or not at all: training never reads half a frame


def save_frame(
    root: str | os.PathLike, sequence: str, image, labels, *, frame: int | None = None, rgb: bool = False,
) -> SavedFrame:
    """Save an image and its (corrected) instance labels as one annotated frame of a CTC data folder.

    Writes ``root/<sequence>/tTTT.tif`` (the image, its own dtype) and ``root/<sequence>_GT/SEG/man_segTTT.tif``
    (uint16 labels, as :func:`unetkit.data.export_ctc` stores them: a 0/1 mask becomes one label per
    connected piece), the layout :func:`unetkit.data.ctc_datalist` and ``unetkit train --data root`` read.
    Frame numbers have 3 digits, or as many as the sequence's files already have.

    Args:
        root: the data folder (made if missing).
        sequence: the sequence folder, ``"01"`` (what the recipes train on) or ``"02"`` (what they validate on).
        image: the image, ``(*spatial)`` or ``(*spatial, 3|4)`` with ``rgb``.
        labels: instance labels of ``image``'s spatial shape (0 = background).
        frame: the frame number; default: the next free one.
        rgb: the image's last axis holds colour samples.

    Returns:
        A :class:`SavedFrame`. An image file already there for that frame is kept when it holds the same
        pixels (a frame opened from the data folder, corrected and saved back), and only the mask is written.

    Raises:
        DataError: the frame has a mask already (nothing is overwritten), its image file holds another image,
            the labels do not fit the image, or they cannot be stored as 16-bit labels.
    """
    from unetkit.data.export import _as_ctc_labels, _write

    folder, seg = _folders(root, sequence)
    image, labels = _fitting(image, labels, rgb)
    images, masks = indexed_files(folder, _FRAME), indexed_files(seg, _MASK)
    if frame is None:
        frame = max([*images, *masks], default=-1) + 1
    if frame < 0:
        raise DataError(f"frame number {frame} is negative")
    ctc_labels = _as_ctc_labels(labels, frame)
    width = max([3, *(len(_FRAME.match(p.name).group(1)) for p in images.values()), len(str(frame))])
    mask_path = masks.get(frame, seg / f"man_seg{frame:0{width}d}.tif")
    if frame in masks:
        free = max([*images, *masks]) + 1
        raise DataError(f"frame {frame} of sequence {sequence} is annotated already", path=mask_path,
                        fix=f"save it as frame {free}, or delete the file first to replace it")
    image_path = images.get(frame)
    wrote_image = image_path is None
    if image_path is not None:
        if not _same_pixels(image_path, image):
            raise DataError(f"holds another image for frame {frame} of sequence {sequence}", path=image_path,
                            fix=f"save this image as frame {max([*images, *masks]) + 1}")
        # the mask takes the number width of the image it annotates (t0012.tif -> man_seg0012.tif)
        digits = _FRAME.match(image_path.name).group(1)
        mask_path = seg / f"man_seg{digits}.tif"
    else:
        image_path = folder / f"t{frame:0{width}d}.tif"
        _write_tiff(image_path, image, rgb=rgb)
    seg.mkdir(parents=True, exist_ok=True)
    _write(mask_path, ctc_labels)
    return SavedFrame(frame, image_path, mask_path, wrote_image)


def is_pairs_folder(root: str | os.PathLike) -> bool:
    """True where ``root`` holds image / mask pairs (``images/`` beside ``masks/`` or ``labels/``, or files
    named ``NAME_mask.tif``): annotations saved there go in as pairs (:func:`save_pair`), not as CTC frames.

    Raises:
        DataError: ``root`` holds both ``masks/`` and ``labels/``.
    """
    return Path(root).is_dir() and _pairs_folders(Path(root)) is not None


def save_pair(root: str | os.PathLike, name: str, image, labels, *, rgb: bool = False) -> SavedPair:
    """Save an image and its (corrected) instance labels as one more pair of a folder of image / mask pairs.

    Writes ``root/images/NAME.tif`` and ``root/masks/NAME.tif`` (``labels/`` where the folder has that), or
    ``NAME.tif`` and ``NAME_mask.tif`` in a folder that keeps both side by side: the pairs
    :func:`unetkit.data.pairs_datalist` and ``unetkit train --data root`` read. Labels are stored as
    :func:`save_frame` stores them.

    Args:
        root: a folder in one of the two pair layouts (:func:`is_pairs_folder`).
        name: the pair's file name without extension, usually the image file's (characters other than
            letters, digits, ``.``, ``_`` and ``-`` become ``_``).
        image: the image, ``(*spatial)`` or ``(*spatial, 3|4)`` with ``rgb``.
        labels: instance labels of ``image``'s spatial shape (0 = background).
        rgb: the image's last axis holds colour samples.

    Returns:
        A :class:`SavedPair`. An image of that name already there is kept when it holds the same pixels (an
        image opened from the folder, corrected and saved back), and only the mask is written.

    Raises:
        DataError: ``root`` is not a pairs folder, the name has a mask already (nothing is overwritten), an
            image of that name holds other pixels, the labels do not fit the image, or they cannot be stored
            as 16-bit labels.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp()); (root / "images").mkdir(); (root / "masks").mkdir()
        >>> labels = np.zeros((4, 5), np.int32); labels[:2, :2] = 3
        >>> saved = save_pair(root, "field 1", np.zeros((4, 5), np.uint8), labels)
        >>> saved.name, saved.image.relative_to(root).as_posix(), saved.mask.relative_to(root).as_posix()
        ('field_1', 'images/field_1.tif', 'masks/field_1.tif')
    """
    from unetkit.data.export import _as_ctc_labels, _write

    root = Path(root)
    folders = _pairs_folders(root) if root.is_dir() else None
    if folders is None:
        raise DataError("not a folder of image / mask pairs", path=root,
                        fix="make images/ and masks/ in it, or save into a CTC data folder (01/, 01_GT/SEG/)")
    images_dir, masks_dir = folders
    one_folder = images_dir == masks_dir
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "image"
    if one_folder and _mask_of(name) is not None:
        raise DataError(f"an image named {name} would be read as the mask of {_mask_of(name)}", path=root,
                        fix="rename the image layer")
    image, labels = _fitting(image, labels, rgb)
    ctc_labels = _as_ctc_labels(labels, name)
    # a mask of this name in any spelling the reader pairs (masks/NAME.tif, NAME_mask.tif, NAME_masks.tif)
    masks = [p for p in images_in_folder(masks_dir)
             if _mask_of(output_stem(p)) == name or (not one_folder and output_stem(p) == name)]
    if masks:
        raise DataError(f"{name} is annotated already", path=masks[0],
                        fix="delete the mask first to replace it, or rename the image layer")
    there = [p for p in images_in_folder(images_dir) if output_stem(p) == name]
    if there and not _same_pixels(there[0], image):
        raise DataError(f"holds another image named {name}", path=there[0], fix="rename the image layer")
    image_path = there[0] if there else images_dir / f"{name}.tif"
    if not there:
        _write_tiff(image_path, image, rgb=rgb)
    mask_path = images_dir / f"{name}_mask.tif" if one_folder else masks_dir / f"{name}.tif"
    _write(mask_path, ctc_labels)
    return SavedPair(name, image_path, mask_path, not there)


def _fitting(image, labels, rgb: bool) -> tuple[np.ndarray, np.ndarray]:
    image, labels = np.asarray(image), np.asarray(labels)
    spatial = image.shape[:-1] if rgb else image.shape
    if labels.shape != spatial:
        raise DataError(f"labels of shape {labels.shape} do not fit the image of shape {spatial}",
                        fix="segment this image (or draw labels on it) first")
    return image, labels


def _same_pixels(path: Path, image: np.ndarray) -> bool:
    from unetkit.io import read_image

    try:
        there, _ = read_image(path)  # a pairs folder may hold PNGs as well as TIFFs
    except Exception:  # an unreadable file is not the same image; the caller says which file it is
        return False
    return there.shape == image.shape and np.array_equal(there, image)


def finetune_output(bundle: str | os.PathLike, data: str | os.PathLike) -> Path:
    """Where a fine-tuned bundle goes unless the user says: ``<data>-models/<bundle name>-finetuned[-N]``,
    beside the data folder, never an existing folder.

    Examples:
        >>> finetune_output("/models/u373.zip", "/data/mine").as_posix()
        '/data/mine-models/u373-finetuned'
    """
    data = Path(data)
    name = Path(bundle).name
    name = name[:-4] if name.lower().endswith(".zip") else name
    base = data.parent / f"{data.name}-models" / f"{name}-finetuned"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out

