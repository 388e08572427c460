"""Unpacking downloaded archives safely, and converting the one data set that comes as HDF5.

An archive from the internet can name entries like ``../../.bashrc`` or ``/etc/passwd``, or hold a link
that points outside the folder and an entry written through it ("zip slip"). Every entry is checked
before anything is written: names with ``..``, absolute names, links leading outside the destination
and device files are refused with a :class:`~unetkit.errors.DataError`, and nothing is unpacked.
For tar files Python's own ``filter="data"`` is applied as well, where the interpreter has it.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from unetkit.errors import DataError

__all__ = ["unpack_zip", "unpack_tar", "isbi2012_from_hdf5"]

log = logging.getLogger(__name__)

_UNSAFE_FIX = "the archive is unsafe or corrupt: delete it and download it again from the official source"


def _refuse(archive: Path, entry: str, why: str) -> DataError:
    return DataError(f"entry {entry!r} {why}; nothing was unpacked", path=archive, fix=_UNSAFE_FIX)


def _inside(dest: Path, target: str) -> bool:
    real_dest = os.path.realpath(dest)
    real = os.path.realpath(os.path.join(real_dest, target))
    return real == real_dest or real.startswith(real_dest + os.sep)


def _check_name(archive: Path, name: str) -> None:
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise _refuse(archive, name, "has an absolute path")
    if ".." in PurePosixPath(posix).parts:
        raise _refuse(archive, name, "climbs out of the folder with '..'")


def _check_link(archive: Path, dest: Path, name: str, target: str, *, hard: bool) -> None:
    """A symbolic link's target is relative to the link's folder; a hard link's to the archive root."""
    if os.path.isabs(target) or target.startswith(("/", "\\")):
        raise _refuse(archive, name, f"is a link to the absolute path {target!r}")
    base = "" if hard else os.path.dirname(name)
    if not _inside(dest, os.path.join(base, target)):
        raise _refuse(archive, name, f"is a link to {target!r}, outside the folder")


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def unpack_zip(archive: Path, dest: Path) -> None:
    """Unpack a zip file into ``dest``, refusing unsafe entries before writing anything.

    Symbolic links (zip files made on Unix can hold them) are recreated when they point inside ``dest``.

    Raises:
        DataError: the file is not a zip file, or an entry is unsafe.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"not a readable zip file ({e})", path=archive, fix=_UNSAFE_FIX) from e
    with zf:
        members = zf.infolist()
        for info in members:
            _check_name(archive, info.filename)
            if _zip_is_symlink(info):
                _check_link(archive, dest, info.filename, zf.read(info).decode(), hard=False)
        for info in members:
            if _zip_is_symlink(info):
                link = dest / info.filename
                link.parent.mkdir(parents=True, exist_ok=True)
                # Checked again now that earlier links exist: a chain of links must not lead out either.
                _check_link(archive, dest, info.filename, zf.read(info).decode(), hard=False)
                os.symlink(zf.read(info).decode(), link)
            else:
                zf.extract(info, dest)


def unpack_tar(archive: Path, dest: Path) -> None:
    """Unpack a tar file (plain or compressed) into ``dest``, refusing unsafe entries before writing.

    Raises:
        DataError: the file is not a tar file, or an entry is unsafe (a path outside ``dest``, a link
            leading outside it, a device file).
    """
    try:
        tf = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"not a readable tar file ({e})", path=archive, fix=_UNSAFE_FIX) from e
    with tf:
        members = tf.getmembers()
        for m in members:
            _check_name(archive, m.name)
            if m.issym() or m.islnk():
                _check_link(archive, dest, m.name, m.linkname, hard=m.islnk())
            elif not (m.isfile() or m.isdir()):
                raise _refuse(archive, m.name, "is a device or special file")
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        try:
            tf.extractall(dest, members=members, **kwargs)
        except tarfile.FilterError as e:  # links chained through earlier entries, caught by Python's filter
            raise DataError(f"unsafe entry ({e}); unpacking stopped", path=archive, fix=_UNSAFE_FIX) from e


def isbi2012_from_hdf5(h5_path: Path, out_dir: Path) -> None:
    """Write ``train-volume.tif`` and ``train-labels.tif`` from the torch-em mirror's HDF5 file.

    The mirror holds the training stack as ``raw`` and the original annotation as ``labels/membranes``.
    Its label encoding is not documented, so the two values are mapped by area: in ISBI 2012 cell
    interiors cover about three quarters of the pixels, so the majority value becomes 255 (cell) and the
    other 0 (membrane), the encoding of the original ``train-labels.tif``.

    Args:
        h5_path: the downloaded HDF5 file.
        out_dir: folder to write the two TIFF stacks into (created).

    Raises:
        DataError: h5py is not installed, or the file lacks the datasets or they are not two-valued
            stacks of one shape.
    """
    try:
        import h5py
    except ImportError:
        raise DataError(
            "is the ISBI 2012 mirror's HDF5 file; converting it to train-volume.tif / train-labels.tif "
            "needs h5py, which is not installed",
            path=h5_path,
            fix="`pip install h5py` and run `unetkit data fetch isbi2012` again: the checked download is kept",
        ) from None
    import tifffile

    with h5py.File(h5_path, "r") as f:
        if "raw" not in f or "labels/membranes" not in f:
            raise DataError("has no 'raw' and 'labels/membranes' datasets", path=h5_path, fix=_UNSAFE_FIX)
        raw, labels = np.asarray(f["raw"][...]), np.asarray(f["labels/membranes"][...])
    if raw.ndim != 3 or raw.shape != labels.shape:
        raise DataError(f"raw {raw.shape} and labels {labels.shape} are not one 3D shape", path=h5_path)
    values, counts = np.unique(labels, return_counts=True)
    if len(values) != 2:
        raise DataError(f"labels/membranes has {len(values)} values, expected 2", path=h5_path)
    cell = values[np.argmax(counts)]
    out_dir.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(out_dir / "train-volume.tif", raw, photometric="minisblack")
    labels = np.where(labels == cell, 255, 0).astype(np.uint8)
    tifffile.imwrite(out_dir / "train-labels.tif", labels, photometric="minisblack")
    log.info("converted %s: %d slices, %.1f%% membrane", h5_path, len(raw), 100 * counts.min() / counts.sum())
