"""Folder layouts of the public data sets, read into MONAI-style data lists.

Each function takes the folder of one unpacked data set and returns a list of dicts of absolute path
strings (``{"image": ..., "label": ...}``), the form MONAI's ``Dataset`` and ``LoadImaged`` take. Items
that address one 2D slice of a 3D file carry ``"frame"``: the index along the file's first axis, which
``unetkit.transforms`` ``LoadImaged(..., frame_key="frame")`` reads.

Layouts (checked against the published archives, see ``docs/``):

- Cell Tracking Challenge: ``01/t000.tif ...`` (``t0000.tif`` in sequences of more than 1000 frames);
  gold segmentation ``01_GT/SEG/man_seg000.tif`` for some frames only, silver ``01_ST/SEG/`` for all;
  3D data sets annotate single slices as ``man_seg_TTT_ZZZ.tif``.
- ISBI 2012 EM: ``train-volume.tif`` and ``train-labels.tif``, 30 x 512 x 512 each, labels 255 = cell,
  0 = membrane.
- Medical Segmentation Decathlon: ``dataset.json``, ``imagesTr/*.nii.gz``, ``labelsTr/*.nii.gz`` (the
  archives carry macOS ``._*`` resource files beside the volumes; they are not volumes and are ignored).
- Image / mask pairs, as users keep their own data: ``images/`` beside ``masks/`` (or ``labels/``) with the
  same file names (StarDist's and the Data Science Bowl 2018's layout), or one folder of ``NAME.tif`` with
  ``NAME_mask.tif`` (``unetkit infer``'s output name) or ``NAME_masks.tif`` (Cellpose's).

:func:`annotated_datalist` reads either a CTC folder or image / mask pairs, which is what the 2D recipes
train on: a user's folder needs no renaming into frames and sequences.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from unetkit.errors import DataError
from unetkit.io.formats import images_in_folder
from unetkit.io.naming import output_stem

__all__ = ["annotated_datalist", "ctc_datalist", "ctc_frames", "image_datalist", "isbi2012_datalist", "msd_datalist",
           "pairs_datalist"]

_FRAME = re.compile(r"^t(\d+)\.tiff?$")
# man_seg012.tif annotates frame 12; man_seg_012_034.tif annotates slice 34 of the 3D frame 12.
_MASK = re.compile(r"^man_seg(?:(\d+)|_(\d+)_(\d+))\.tiff?$")
_TRACK = re.compile(r"^man_track(\d+)\.tiff?$")
_TRUTHS = {"GT": "gold truth", "ST": "silver truth"}
_GET_DATA = "run `unetkit data fetch phc_u373` (or dic_hela), or `unetkit data demo DIR` for demo data"
_MASK_FOLDERS = ("masks", "labels")
_MASK_SUFFIXES = ("_masks", "_mask")  # Cellpose's, unetkit infer's; longest first
_OWN_DATA = "for your own images, put them in images/ and their instance masks (same file names) in masks/"


def indexed_files(folder: Path, pattern: re.Pattern) -> dict[int, Path]:
    """Number (``pattern``'s first group) -> file of ``folder`` whose name ``pattern`` matches; ``{}`` for a
    missing folder. Paths are ``folder`` joined with the name (absolute when ``folder`` is)."""
    if not folder.is_dir():
        return {}
    found = {}
    for entry in os.scandir(folder):
        m = pattern.match(entry.name)
        if m and entry.is_file():
            found[int(m.group(1))] = Path(entry.path)
    return found


def ctc_frames(root: str | os.PathLike, sequence: str = "02") -> list[str]:
    """All image frames of one Cell Tracking Challenge sequence, in time order (for inference).

    Args:
        root: the data set's folder, e.g. ``.../PhC-C2DH-U373``.
        sequence: the sequence folder name, ``"01"`` or ``"02"``.

    Returns:
        Absolute paths of ``root/<sequence>/tTTT.tif``, sorted by frame index.

    Raises:
        DataError: the sequence folder is missing or holds no ``t*.tif`` frame.

    Examples:
        >>> import tempfile
        >>> from unetkit.data import make_demo
        >>> root = make_demo(tempfile.mkdtemp(), frames=2, shape=(40, 48))
        >>> [Path(p).name for p in ctc_frames(root, "02")]
        ['t000.tif', 't001.tif']
    """
    folder = Path(root) / sequence
    if not folder.is_dir():
        raise DataError(f"no sequence folder '{sequence}'", path=folder, fix=_GET_DATA)
    frames = indexed_files(folder.absolute(), _FRAME)
    if not frames:
        raise DataError("no frame named tTTT.tif in this folder", path=folder, fix=_GET_DATA)
    return [str(frames[t]) for t in sorted(frames)]


def ctc_datalist(
    root: str | os.PathLike, sequences: Sequence[str] = ("01",), *, truth: str = "GT"
) -> list[dict]:
    """Annotated frames of a Cell Tracking Challenge data set, each paired with its segmentation mask.

    Only frames that have a mask are listed: the gold truth annotates some frames only. Images and masks
    are paired by frame index, so ``t012.tif`` pairs with ``man_seg012.tif`` and ``t0012.tif`` alike.
    Where a 3D data set annotates single slices (``man_seg_012_034.tif``), the item is that slice of the
    3D frame: ``"frame": 34`` indexes the frame's first axis.

    Partial annotation: the gold segmentation truth covers only some cells of a frame in many data sets,
    while the gold tracking truth (``01_GT/TRA/man_track012.tif``) marks every cell. Gold items therefore
    carry ``"track"``, the frame's tracking markers, where that file exists;
    :class:`~unetkit.transforms.MarkUnannotatedd` turns the cells with a marker and no mask into an ignored
    region (docs/training.md, "Ignore regions").

    Args:
        root: the data set's folder, e.g. ``.../PhC-C2DH-U373``.
        sequences: sequence folder names to include, e.g. ``("01", "02")``.
        truth: ``"GT"`` for the gold segmentation (``01_GT/SEG``), ``"ST"`` for the silver one
            (``01_ST/SEG``).

    Returns:
        Items ``{"image": ".../01/t012.tif", "label": ".../01_GT/SEG/man_seg012.tif"}`` (plus
        ``"frame": int`` for slice annotations and ``"track": ".../01_GT/TRA/man_track012.tif"`` for gold
        truth with tracking markers), sorted by sequence, frame and slice.

    Raises:
        ValueError: ``truth`` is not ``"GT"`` or ``"ST"``.
        DataError: a sequence or its mask folder is missing, a sequence has no annotated frame, or a mask
            has no image frame.

    Examples:
        >>> import tempfile
        >>> from unetkit.data import make_demo
        >>> root = make_demo(tempfile.mkdtemp(), frames=2, shape=(40, 48))
        >>> items = ctc_datalist(root, ("01", "02"))
        >>> len(items), Path(items[0]["image"]).name, Path(items[0]["label"]).name
        (4, 't000.tif', 'man_seg000.tif')
    """
    if truth not in _TRUTHS:
        raise ValueError(f"truth must be 'GT' or 'ST', got {truth!r}")
    if isinstance(sequences, str):
        sequences = (sequences,)
    items = []
    for seq in sequences:
        items.extend(_ctc_sequence(Path(root), seq, truth))
    return items


def _ctc_sequence(root: Path, seq: str, truth: str) -> list[dict]:
    frames_dir, masks_dir = root / seq, root / f"{seq}_{truth}" / "SEG"
    if not frames_dir.is_dir():
        others = sorted(p.name for p in root.glob("[0-9][0-9]") if p.is_dir()) if root.is_dir() else []
        fix = _GET_DATA if not others else (
            f"this data set has sequence {', '.join(others)} only, and the recipes validate on 02: put annotated "
            f"frames held out from training in {seq}/ and their masks in {seq}_{truth}/SEG/, half of one image "
            "will do")
        raise DataError(f"no sequence folder '{seq}'", path=frames_dir, fix=fix)
    if not masks_dir.is_dir():
        raise DataError(f"no {_TRUTHS[truth]} folder {seq}_{truth}/SEG", path=masks_dir, fix=_GET_DATA)
    frames = indexed_files(frames_dir.absolute(), _FRAME)
    tracks = indexed_files((root / f"{seq}_GT" / "TRA").absolute(), _TRACK) if truth == "GT" else {}
    keyed = []
    for entry in os.scandir(masks_dir):
        m = _MASK.match(entry.name)
        if not m:
            continue
        t, z = (int(m.group(1)), None) if m.group(1) else (int(m.group(2)), int(m.group(3)))
        if t not in frames:
            raise DataError(
                f"mask of frame {t} has no image t{m.group(1) or m.group(2)}.tif in {frames_dir}",
                path=entry.path,
                fix="restore the image frame from the original archive, or delete the stray mask",
            )
        item = {"image": str(frames[t]), "label": str(Path(entry.path).absolute())}
        if z is not None:
            item["frame"] = z
        if t in tracks:
            item["track"] = str(tracks[t])
        keyed.append(((t, -1 if z is None else z), item))
    if not keyed:
        raise DataError(
            f"no annotated frame (man_segTTT.tif) for sequence '{seq}'", path=masks_dir, fix=_GET_DATA
        )
    return [item for _, item in sorted(keyed, key=lambda k: k[0])]


def _stack_length(path: Path) -> int:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
    except Exception as e:  # tifffile raises several types for a file that is not a TIFF
        raise DataError(f"cannot read as a TIFF stack ({e})", path=path, fix="fetch the data set again") from e
    return shape[0] if len(shape) == 3 else 1


def isbi2012_datalist(root: str | os.PathLike) -> list[dict]:
    """The ISBI 2012 EM training stack, one item per slice.

    Args:
        root: folder holding ``train-volume.tif`` and ``train-labels.tif`` (30 x 512 x 512 each; labels
            255 = cell interior, 0 = membrane).

    Returns:
        One item per slice, ``{"image": ".../train-volume.tif", "label": ".../train-labels.tif",
        "frame": i}`` for ``i`` in ``0 .. 29``.

    Raises:
        DataError: a file is missing or unreadable, or the two stacks differ in length.
    """
    root = Path(root).absolute()
    paths = {key: root / f"train-{name}.tif" for key, name in (("image", "volume"), ("label", "labels"))}
    for path in paths.values():
        if not path.is_file():
            raise DataError("missing", path=path, fix="run `unetkit data fetch isbi2012`")
    n_image, n_label = _stack_length(paths["image"]), _stack_length(paths["label"])
    if n_image != n_label:
        raise DataError(
            f"train-volume.tif has {n_image} slices but train-labels.tif has {n_label}",
            path=root,
            fix="fetch the data set again",
        )
    return [{"image": str(paths["image"]), "label": str(paths["label"]), "frame": i} for i in range(n_image)]


def _nifti_volumes(folder: Path) -> dict[str, Path]:
    return {
        e.name: Path(e.path).absolute()
        for e in os.scandir(folder)
        if e.name.endswith((".nii.gz", ".nii")) and not e.name.startswith("._") and e.is_file()
    }


def msd_datalist(root: str | os.PathLike) -> list[dict]:
    """Training volumes of a Medical Segmentation Decathlon task (e.g. ``Task09_Spleen``).

    Images in ``imagesTr/`` pair with the label of the same file name in ``labelsTr/``. The archives
    carry macOS ``._*`` resource files beside the volumes; they are skipped.

    Args:
        root: the task's folder, holding ``dataset.json``, ``imagesTr/`` and ``labelsTr/``.

    Returns:
        Items ``{"image": ".../imagesTr/spleen_2.nii.gz", "label": ".../labelsTr/spleen_2.nii.gz"}``,
        sorted by file name.

    Raises:
        DataError: ``dataset.json`` or a folder is missing, no volume is there, or an image has no label.

    Examples:
        >>> import tempfile
        >>> from unetkit.data import make_demo_volumes
        >>> root = make_demo_volumes(tempfile.mkdtemp(), n=2, shape=(8, 16, 16))
        >>> [Path(item["label"]).name for item in msd_datalist(root)]
        ['vol_000.nii.gz', 'vol_001.nii.gz']
    """
    root = Path(root).absolute()
    fix = "run `unetkit data fetch msd_spleen`, or `unetkit data demo DIR --kind ct` for demo volumes"
    for need in ("dataset.json", "imagesTr", "labelsTr"):
        if not (root / need).exists():
            raise DataError(f"no {need} here: not a Decathlon task folder", path=root, fix=fix)
    images, labels = _nifti_volumes(root / "imagesTr"), _nifti_volumes(root / "labelsTr")
    if not images:
        raise DataError("no .nii.gz volume in this folder", path=root / "imagesTr", fix=fix)
    missing = sorted(set(images) - set(labels))
    if missing:
        raise DataError(
            f"{len(missing)} image(s) without a label in labelsTr, first {missing[0]}",
            path=root / "imagesTr",
            fix="restore labelsTr from the original archive",
        )
    return [{"image": str(images[n]), "label": str(labels[n])} for n in sorted(images)]


def image_datalist(root: str | os.PathLike, pattern: str = "*.tif") -> list[dict]:
    """Every image in a folder matching ``pattern``, for inference (no labels).

    Args:
        root: the folder.
        pattern: a glob pattern relative to ``root`` (``"*.tif"``, ``"01/t*.tif"``, ``"**/*.nii.gz"``).

    Returns:
        Items ``{"image": ".../t000.tif"}`` sorted by path; macOS ``._*`` files are skipped.

    Raises:
        DataError: the folder is missing or nothing in it matches.

    Examples:
        >>> import tempfile
        >>> from unetkit.data import make_demo
        >>> root = make_demo(tempfile.mkdtemp(), frames=2, shape=(40, 48))
        >>> [Path(i["image"]).name for i in image_datalist(root / "02")]
        ['t000.tif', 't001.tif']
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise DataError("no such folder", path=root, fix="pass the folder that holds the images")
    paths = sorted(p for p in root.glob(pattern) if p.is_file() and not p.name.startswith("._"))
    if not paths:
        raise DataError(f"no file matches {pattern!r} here", path=root, fix="check the folder and the pattern")
    return [{"image": str(p)} for p in paths]


def _mask_of(stem: str) -> str | None:
    """``"a"`` for ``"a_mask"`` or ``"a_masks"``; None for a stem without a mask suffix."""
    return next((stem[: -len(s)] for s in _MASK_SUFFIXES if stem.endswith(s)), None)


def _pairs_folders(root: Path) -> tuple[Path, Path] | None:
    """``(images, masks)`` of the pair layout at ``root``, or None if ``root`` is not one."""
    images = root / "images"
    masks = [root / m for m in _MASK_FOLDERS if (root / m).is_dir()]
    if images.is_dir() and masks:
        if len(masks) > 1:
            raise DataError("both masks/ and labels/ are here: which are the references?", path=root,
                            fix="keep the instance masks in one of them and move the other folder away")
        return images, masks[0]
    if root.is_dir() and any(_mask_of(output_stem(p)) is not None for p in images_in_folder(root)):
        return root, root
    return None


def _add(found: dict[str, Path], key: str, path: Path, what: str) -> None:
    if key in found:
        raise DataError(f"two {what} named {key}: {found[key].name} and {path.name}", path=path,
                        fix="keep one file per name")
    found[key] = path


def pairs_datalist(root: str | os.PathLike) -> list[dict]:
    """Image / mask pairs of a user's folder, in file-name order.

    Two layouts: ``images/`` beside ``masks/`` (or ``labels/``), an image and its mask having the same file
    name up to the extension (StarDist's, the Data Science Bowl 2018's); or one folder where
    ``NAME_mask.tif`` (``unetkit infer``'s name) or ``NAME_masks.tif`` (Cellpose's) is the mask of
    ``NAME.tif``. Images without a mask are not annotated and not listed (``unetkit plan`` counts them).

    Args:
        root: the folder.

    Returns:
        Items ``{"image": ".../images/a.tif", "label": ".../masks/a.tif"}``, absolute paths, sorted by name.

    Raises:
        DataError: ``root`` is neither layout, a mask has no image, or no image has a mask.

    Examples:
        >>> import tempfile, tifffile, numpy as np
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("b", "a"):
        ...     tifffile.imwrite(root / f"{name}.tif", np.zeros((8, 8), np.uint8))
        ...     tifffile.imwrite(root / f"{name}_masks.tif", np.ones((8, 8), np.uint8))
        >>> [(Path(i["image"]).name, Path(i["label"]).name) for i in pairs_datalist(root)]
        [('a.tif', 'a_masks.tif'), ('b.tif', 'b_masks.tif')]
    """
    root = Path(root).absolute()
    folders = _pairs_folders(root)
    if folders is None:
        raise DataError("no images/ with masks/ here, nor files named NAME_mask.tif", path=root,
                        fix=_OWN_DATA)
    return _pairs(*folders)


def _pairs(images_dir: Path, masks_dir: Path) -> list[dict]:
    """:func:`pairs_datalist` of the folders :func:`_pairs_folders` found."""
    images, masks = {}, {}
    for p in images_in_folder(images_dir):
        stem = output_stem(p)
        mask_of = _mask_of(stem)
        if images_dir == masks_dir and mask_of is not None:  # one folder: NAME_masks.tif is NAME.tif's mask
            _add(masks, mask_of, p, "masks")
        else:
            _add(images, stem, p, "images")
    if images_dir != masks_dir:
        for p in images_in_folder(masks_dir):
            stem = output_stem(p)
            mask_of = _mask_of(stem)
            # a mask folder written by unetkit infer or Cellpose names a.tif's mask a_mask.tif: that pairs too
            _add(masks, mask_of if mask_of is not None and stem not in images else stem, p, "masks")
    stray = sorted(set(masks) - set(images))
    if stray:
        raise DataError(f"mask {masks[stray[0]].name} has no image of the same name in {images_dir.name}/",
                        path=masks[stray[0]], fix="restore its image, rename the pair alike, or delete the stray mask")
    if not masks:
        raise DataError(f"no image in {images_dir.name}/ has a mask", path=masks_dir,
                        fix="save each image's instance mask under the image's file name (images/a.tif: masks/a.tif)")
    return [{"image": str(images[s]), "label": str(masks[s])} for s in sorted(masks)]


def annotated_datalist(
    root: str | os.PathLike,
    sequences: Sequence[str] = ("01",),
    *,
    truth: str = "GT",
    part: str = "train",
    holdout: int | float = 0.2,
) -> list[dict]:
    """The annotated images of a training folder, read in the layout it has: what the 2D recipes train on.

    - A Cell Tracking Challenge folder (it holds ``01/`` or another two-digit sequence): the frames of
      ``sequences`` (:func:`ctc_datalist`); the recipes train on ``01`` and validate on ``02``, so ``part``
      and ``holdout`` are not used.
    - Image / mask pairs (:func:`pairs_datalist`): no sequence says which images are held out, so the last
      ``holdout`` of them in file-name order are (:func:`~unetkit.data.split_datalist`), and ``part`` picks
      ``"train"`` or ``"validation"``; ``"all"`` lists every pair (``unetkit train --folds`` splits them itself).
      A single annotated image is split instead: the last ``holdout`` of its longest axis validates
      (:func:`~unetkit.data.split.split_image`).

    Args:
        root: the data set's folder.
        sequences: CTC sequences to read.
        truth: CTC ``"GT"`` or ``"ST"``.
        part: ``"train"``, ``"validation"`` or ``"all"``, for pairs.
        holdout: images held out for validation, for pairs: a count, or a fraction (at least one image); of a
            single image, the fraction of its extent.

    Raises:
        DataError: neither layout, a layout's own error, or a count ``holdout`` for a single annotated image.

    Examples:
        >>> import tempfile, tifffile, numpy as np
        >>> root = Path(tempfile.mkdtemp())
        >>> for sub in ("images", "masks"):
        ...     (root / sub).mkdir()
        ...     for name in "abcde":
        ...         tifffile.imwrite(root / sub / f"{name}.tif", np.ones((8, 8), np.uint8))
        >>> [Path(i["image"]).name for i in annotated_datalist(root, part="validation")]
        ['e.tif']
        >>> len(annotated_datalist(root, ["01"], part="train"))
        4
    """
    root = Path(root)
    if part not in ("train", "validation", "all"):
        raise ValueError(f"part must be 'train', 'validation' or 'all', got {part!r}")
    ctc = not root.is_dir() or any(p.is_dir() for p in root.glob("[0-9][0-9]"))  # a missing folder: CTC's message
    folders = _pairs_folders(root.absolute()) if root.is_dir() else None
    if ctc and folders is not None:  # e.g. frames saved from napari (CTC) into a folder of pairs: training on one would drop the other
        raise DataError("both Cell Tracking Challenge sequences (01/ ...) and image / mask pairs are here: which to "
                        "train on?", path=root, fix="move one of the two into a folder of its own")
    if folders is not None:
        from unetkit.data.split import split_datalist, split_image

        pairs = _pairs(*folders)
        if part == "all":
            return pairs
        if len(pairs) == 1:
            return [split_image(pairs[0], holdout=holdout, part=part)]
        return split_datalist(pairs, holdout=holdout, part=part)
    if not ctc:
        raise DataError("neither a Cell Tracking Challenge folder (01/, 01_GT/SEG/) nor images with masks",
                        path=root, fix=f"{_GET_DATA}; or, {_OWN_DATA}")
    return ctc_datalist(root, sequences, truth=truth)
