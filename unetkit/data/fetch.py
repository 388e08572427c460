"""Fetching a public data set: download (resumable), checksum, safe unpack, layout check.

``fetch("phc_u373")`` leaves ``<root>/PhC-C2DH-U373`` complete or raises; it never leaves a half
unpacked folder under the final name. The steps:

1. A complete copy is already there: nothing to do, no network.
2. Download into ``<root>/<file>.part``, continuing an earlier partial download with an HTTP Range
   request; a dropped connection is resumed a few times before giving up (the ``.part`` file stays, and
   the next ``fetch`` continues it).
3. Check the SHA-256 (MD5 where that is all the source publishes); on a mismatch the download is
   deleted and :class:`~unetkit.errors.DataError` says so.
4. Unpack into a hidden temporary folder beside the target, refusing unsafe archive entries
   (:mod:`unetkit.data.archives`), check the layout, then rename it into place and delete the archive.

Data sets behind a registration page, or machines without internet: download the file by hand and pass
``archive=`` (``unetkit data fetch NAME --archive FILE``); it is checked and unpacked the same way and
left where it is.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from unetkit.data.archives import unpack_tar, unpack_zip
from unetkit.data.registry import DatasetInfo, dataset_info
from unetkit.errors import DataError

__all__ = ["fetch", "dataset_path", "is_present", "default_data_dir", "download", "file_digest"]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, Optional[int]], None]
"""``progress(bytes_done, bytes_total)``; ``bytes_total`` is None when the server does not say."""

_CHUNK = 1 << 20
_ATTEMPTS = 3
_TIMEOUT_S = 60.0


def default_data_dir() -> Path:
    """Where data sets go unless told otherwise: ``$UNETKIT_DATA``, else ``~/.cache/unetkit/data``."""
    env = os.environ.get("UNETKIT_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "unetkit" / "data"


def _root(root: str | os.PathLike | None) -> Path:
    return default_data_dir() if root is None else Path(root).expanduser()


def dataset_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder data set ``name`` is (or would be) fetched into: ``<root>/<folder>``.

    Examples:
        >>> dataset_path("phc_u373", "/data").as_posix()
        '/data/PhC-C2DH-U373'
    """
    return _root(root) / dataset_info(name).folder


def is_present(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether a complete copy of data set ``name`` is on disk under ``root`` (layout checked, no network)."""
    path = dataset_path(name, root)
    if not path.is_dir():
        return False
    try:
        dataset_info(name).check(path)
    except DataError:
        return False
    return True


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (archives are too large to read at once)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _matches(path: Path, checksum: str) -> tuple[bool, str]:
    algorithm, expected = checksum.split(":", 1)
    actual = file_digest(path, algorithm)
    return actual == expected.lower(), actual


def fetch(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    progress: ProgressCallback | None = None,
    url: str | None = None,
    archive: str | os.PathLike | None = None,
) -> Path:
    """Download, verify and unpack public data set ``name``; a no-op when a complete copy is there.

    Args:
        name: a key of :data:`unetkit.data.DATASETS` (``phc_u373``, ``dic_hela``, ``isbi2012``,
            ``msd_spleen``).
        root: folder that holds the data sets; default :func:`default_data_dir`.
        progress: called as ``progress(bytes_done, bytes_total)`` while downloading.
        url: download from this mirror instead of the registry's URL (the checksum still applies).
        archive: a file downloaded by hand: checked and unpacked instead of downloading; left in place.

    Returns:
        The data set's folder, ``<root>/<folder>``, complete.

    Raises:
        DataError: unknown name; the folder exists but is incomplete; the download fails (offline, HTTP
            error, interrupted too often); checksum mismatch; an unsafe archive entry; the unpacked
            files are not in the expected layout.
    """
    info = dataset_info(name)
    if archive is not None and not Path(archive).is_file():
        raise DataError("no such file", path=archive, fix="pass the archive you downloaded to --archive")
    root = _root(root)
    dest = root / info.folder
    if dest.exists():
        _check_complete(info, dest)
        log.info("%s is already in %s", name, dest)
        return dest
    root.mkdir(parents=True, exist_ok=True)
    if archive is not None:
        ok, actual = _matches(Path(archive), info.checksum)
        if not ok:
            raise DataError(
                f"is not the {info.name} archive: {_sum_text(info.checksum, actual)}",
                path=archive,
                fix=f"download {info.url} again, completely",
            )
        _unpack_into(info, Path(archive), dest)
        return dest
    archive = _download_verified(info, root, url or info.url, progress)
    _unpack_into(info, archive, dest)
    archive.unlink()
    return dest


def _check_complete(info: DatasetInfo, dest: Path) -> None:
    try:
        info.check(dest)
    except DataError as e:
        raise DataError(
            f"exists but is not a complete copy of {info.name} ({e.problem})",
            path=dest,
            fix=f"delete the folder and run `unetkit data fetch {info.name}` again",
        ) from e


def _sum_text(checksum: str, actual: str) -> str:
    algorithm, expected = checksum.split(":", 1)
    return f"{algorithm} is {actual}, expected {expected}"


def _download_verified(info: DatasetInfo, root: Path, url: str, progress) -> Path:
    """The archive at ``<root>/<filename>``, downloaded (or reused from an earlier run) and checked."""
    final = root / info.filename
    if final.is_file():  # kept by an earlier run whose unpacking failed (h5py missing, say)
        if _matches(final, info.checksum)[0]:
            return final
        final.unlink()
    part = root / f"{info.filename}.part"
    fix = f"check the network, or download it by hand and run `unetkit data fetch {info.name} --archive FILE`"
    download(url, part, progress=progress, fix=fix)
    ok, actual = _matches(part, info.checksum)
    if not ok:
        part.unlink()
        raise DataError(
            f"download is corrupt ({_sum_text(info.checksum, actual)}); it was deleted",
            path=url,
            fix=f"run `unetkit data fetch {info.name}` again; if it happens again the file on the server changed",
        )
    os.replace(part, final)
    return final


def _unpack_into(info: DatasetInfo, archive: Path, dest: Path) -> None:
    # Unpacking into a hidden folder and renaming it makes the final folder appear complete or not at all.
    tmp = Path(tempfile.mkdtemp(prefix=f".{info.folder}.unpacking-", dir=dest.parent))
    try:
        if info.archive == "zip":
            unpack_zip(archive, tmp)
        elif info.archive == "tar":
            unpack_tar(archive, tmp)
        else:
            info.convert(archive, tmp / info.folder)
        unpacked = tmp / info.folder
        if not unpacked.is_dir():
            raise DataError(
                f"holds no top folder '{info.folder}': not the {info.name} archive",
                path=archive,
                fix=f"download {info.url}",
            )
        try:
            info.check(unpacked)
        except DataError as e:
            raise DataError(
                f"unpacked, but not in the layout of {info.name} ({e.problem})",
                path=archive,
                fix=f"download {info.url} again; if it persists, report it",
            ) from e
        os.replace(unpacked, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("unpacked %s into %s", archive, dest)


class _Interrupted(Exception):
    """The connection broke before the whole file arrived; what arrived is in the .part file."""


def download(
    url: str,
    part: str | os.PathLike,
    *,
    progress: ProgressCallback | None = None,
    fix: str = "check the network and run again",
    attempts: int = _ATTEMPTS,
    timeout: float = _TIMEOUT_S,
) -> None:
    """Download ``url`` into ``part``, continuing what ``part`` already holds (HTTP Range).

    A connection that breaks half-way is resumed up to ``attempts`` times in all. The caller checks the
    result: a server that ignores Range simply sends the whole file again, which replaces ``part``.

    Args:
        url: ``http(s)://`` or ``file://`` URL.
        part: the partial file, created if missing.
        progress: ``progress(bytes_done, bytes_total)`` callback.
        fix: the advice put in errors (how to get the file another way).
        attempts: connections tried when the transfer breaks.
        timeout: seconds to wait on a silent connection.

    Raises:
        DataError: no connection (offline, DNS, refused), an HTTP error, or the transfer broke
            ``attempts`` times; the ``.part`` file is kept for the next try.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    part = Path(part)
    for attempt in range(1, attempts + 1):
        try:
            _download_once(url, part, progress, fix, timeout)
            return
        except _Interrupted as e:
            log.warning("download of %s broke (%s), attempt %d of %d", url, e, attempt, attempts)
            last = e
    raise DataError(
        f"download broke off {attempts} times ({last})",
        path=url,
        fix=f"run the same command again: it resumes from {part}",
    )


def _open(url: str, start: int, fix: str, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": "unetkit"})
    if start:
        req.add_header("Range", f"bytes={start}-")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to send: the .part is complete, the checksum decides
            return None
        raise DataError(f"cannot download: HTTP {e.code} {e.reason}", path=url, fix=fix) from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DataError(f"cannot download ({getattr(e, 'reason', e)})", path=url, fix=fix) from None


def _download_once(url: str, part: Path, progress, fix: str, timeout: float) -> None:
    start = part.stat().st_size if part.exists() else 0
    resp = _open(url, start, fix, timeout)
    if resp is None:
        return
    with resp:
        length = resp.headers.get("Content-Length")
        length = int(length) if length else None
        resumed = resp.getcode() == 206 and re.match(rf"bytes {start}-", resp.headers.get("Content-Range", ""))
        # file:// and servers without Range support answer with the whole file: start over.
        done = start if resumed else 0
        total = None if length is None else done + length
        if progress:
            progress(done, total)
        with open(part, "ab" if resumed else "wb") as f:
            try:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
            except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                raise _Interrupted(f"{done} of {total or '?'} bytes: {e}") from e
    if total is not None and done < total:
        raise _Interrupted(f"connection closed at {done} of {total} bytes")
