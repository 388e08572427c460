"""Bundle zips: packing with a SHA-256 manifest, and unpacking safely into the cache.

``pack_bundle`` writes ``NAME.zip`` holding one top-level folder ``NAME/`` (the MONAI bundle spec's archive
layout) with every shareable file of the bundle and ``NAME/MANIFEST.sha256``: one ``<sha256>  <path>``
line per file, sorted, the format of ``sha256sum``, so ``cd NAME && sha256sum -c MANIFEST.sha256`` checks
an unzipped copy by hand. The zip is reproducible: the same folder gives the same bytes (sorted entries, a
fixed 1980-01-01 timestamp, mode 0644, fixed compression). Run leftovers are left out: ``checkpoints/``
and ``eval/`` at the top, hidden files and folders, ``__pycache__`` and ``*.pyc`` anywhere.

``extract_bundle_zip`` refuses, before writing anything, a zip with names that climb out (``..``) or are
absolute, links, special files, duplicate or encrypted entries, compression other than deflate or store,
more than one top folder, a git repository's files, no manifest, or more than :data:`MAX_FILES` entries or
:data:`MAX_UNPACKED_BYTES` unpacked (counted from the central directory, and again while unpacking, in
case a header lies); then it unpacks into a temporary folder while hashing, refuses any file whose sum
differs from the manifest (and files missing from it or extra to it), and only then renames the folder into
the cache, ``$UNETKIT_CACHE/bundles/<sha256 of the zip>/`` (default ``~/.cache/unetkit``). A cached copy is
re-checked against its manifest on every use and unpacked afresh if it changed.

A bundle holds plain files only: ``pack_bundle`` (through :func:`bundle_files`) refuses links, fifos and
devices rather than copy what a link points to, and never packs a git repository's files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import IO, Mapping

from unetkit.errors import BundleError

__all__ = [
    "MANIFEST",
    "MAX_UNPACKED_BYTES",
    "MAX_FILES",
    "bundle_files",
    "file_sha256",
    "format_manifest",
    "read_manifest",
    "check_manifest",
    "pack_bundle",
    "cache_root",
    "extract_bundle_zip",
]

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.sha256"

#: The most bytes a bundle zip may unpack to (4 GiB): far above any U-Net bundle (the paper's network is
#: 124 MB of weights), far below what fills a disk. Raise it with ``max_unpacked_bytes=``.
MAX_UNPACKED_BYTES = 4 << 30

#: The most entries (files and folders) a bundle zip may hold. Raise it with ``max_files=``.
MAX_FILES = 10_000

_MAX_MANIFEST_BYTES = 16 << 20
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)  # what zip tools write; others are refused
_GIT_LAYOUT = {"HEAD", "objects", "refs"}  # a bare repository: git finds one without any .git
# top-level folders a training or inference run leaves behind (a fold ensemble's weights are all in models/)
_RUN_LEFTOVERS = ("checkpoints", "eval", "folds")
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: no trace of when it was packed
_FILE_MODE = 0o100644 << 16  # regular file, rw-r--r--
_CHUNK = 1 << 20
_MANIFEST_LINE = re.compile(r"(?P<sum>[0-9a-f]{64}) [ *](?P<path>.+)")
_TAMPERED_FIX = ("the bundle changed after it was packed: get a fresh copy from its author "
                 "(or re-pack it with `unetkit bundle pack` if you changed it yourself)")
_TAMPERED_FOLDER_FIX = ("the folder changed after it was packed: get a fresh copy from its author (if you "
                        "changed it yourself, delete its MANIFEST.sha256 or re-pack it with `unetkit bundle pack`)")
_BAD_ZIP_FIX = "it is not a bundle zip made by `unetkit bundle pack`; do not use it"


def _left_out(rel: PurePosixPath) -> bool:
    parts = rel.parts
    return (
        parts[0] in _RUN_LEFTOVERS
        or (len(parts) == 1 and parts[0] == MANIFEST)
        or any(p.startswith(".") or p == "__pycache__" for p in parts)
        or rel.suffix == ".pyc"
    )


def bundle_files(folder: str | os.PathLike) -> list[str]:
    """The files ``pack`` puts in a zip: relative POSIX paths, sorted.

    Args:
        folder: the bundle folder.

    Raises:
        BundleError: the folder holds a link (to a file or a folder), a special file (fifo, device,
            socket) or a git repository's files: pack copies plain files only, never what a link points to.
    """
    folder = Path(folder)
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not _left_out(PurePosixPath((here / d).relative_to(folder).as_posix()))]
        names = [f for f in filenames if not _left_out(PurePosixPath((here / f).relative_to(folder).as_posix()))]
        if _GIT_LAYOUT <= set(dirnames) | set(names):
            raise BundleError("holds a git repository (HEAD, objects/, refs/); a bundle never does", path=here,
                              fix="move the repository out of the bundle folder")
        for name in dirnames + names:
            _check_plain(here / name)
        for f in names:
            if "\n" in f or "\\" in f:
                raise BundleError("has a newline or backslash in its name, which a manifest line cannot hold",
                                  path=here / f, fix="rename it")
            found.append((here / f).relative_to(folder).as_posix())
    return sorted(found)


def _check_plain(path: Path) -> None:
    """Raise unless ``path`` (not followed) is a plain file or folder."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise BundleError(f"is a symbolic link (to {os.readlink(path)}); a bundle holds plain files only",
                          path=path, fix="replace the link with a copy of what it points to")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise BundleError("is a special file (fifo, socket or device); a bundle holds plain files only", path=path)


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MiB chunks."""
    with open(path, "rb") as f:
        return _sha256_stream(f)


def _sha256_stream(f: IO[bytes], sink: IO[bytes] | None = None) -> str:
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
        if sink is not None:
            sink.write(chunk)
    return h.hexdigest()


def _sha256_capped(src: IO[bytes], sink: IO[bytes], limit: int) -> tuple[str, int | None]:
    """Copy ``src`` to ``sink`` while hashing; ``(sha256, bytes)``, or ``(sha256, None)`` past ``limit`` bytes."""
    h, n = hashlib.sha256(), 0
    while chunk := src.read(_CHUNK):
        n += len(chunk)
        if n > limit:
            return h.hexdigest(), None
        h.update(chunk)
        sink.write(chunk)
    return h.hexdigest(), n


def format_manifest(sums: Mapping[str, str]) -> str:
    """``sha256sum``-style manifest text for ``{relative path: sha256}``, sorted by path.

    Examples:
        >>> format_manifest({"configs/a.json": "0" * 64, "LICENSE": "f" * 64}).splitlines()[0]
        'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff  LICENSE'
    """
    return "".join(f"{sums[p]}  {p}\n" for p in sorted(sums))


def read_manifest(text: str, *, source: str | os.PathLike) -> dict[str, str]:
    """Parse manifest text into ``{relative path: sha256}``.

    Raises:
        BundleError: a line is not ``<64 hex digits>  <path>``, or a path is listed twice.
    """
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _MANIFEST_LINE.fullmatch(line)
        if not m or m["path"] in sums:
            raise BundleError(f"{MANIFEST} line {n} is not '<sha256>  <path>' or repeats a path: {line[:100]!r}",
                              path=source, fix=_TAMPERED_FIX)
        sums[m["path"]] = m["sum"]
    return sums


def _compare_listing(sums: Mapping[str, str], present: set[str], source, *, fix: str = _TAMPERED_FIX) -> None:
    missing, extra = sorted(set(sums) - present), sorted(present - set(sums))
    if missing:
        raise BundleError(f"{missing[0]} is listed in {MANIFEST} but missing ({len(missing)} file(s) missing)",
                          path=source, fix=fix)
    if extra:
        raise BundleError(f"{extra[0]} is not listed in {MANIFEST} ({len(extra)} extra file(s))",
                          path=source, fix=fix)


def check_manifest(folder: str | os.PathLike) -> int:
    """Check a bundle folder against its ``MANIFEST.sha256``; the number of files checked.

    Every file ``pack`` would include must be listed, every listed file must exist, and every sum
    must match.

    Raises:
        BundleError: no manifest, or a missing, extra or changed file (the first one is named).
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"has no {MANIFEST}", path=folder, fix="make one with `unetkit bundle pack`")
    _check_plain(manifest)
    sums = read_manifest(manifest.read_text(encoding="utf-8"), source=manifest)
    _compare_listing(sums, set(bundle_files(folder)), folder, fix=_TAMPERED_FOLDER_FIX)
    for rel, want in sums.items():
        if file_sha256(folder / rel) != want:
            raise BundleError(f"{rel}: its SHA-256 does not match {MANIFEST}", path=folder, fix=_TAMPERED_FOLDER_FIX)
    return len(sums)


def pack_bundle(folder: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Write a reproducible bundle zip with a SHA-256 manifest; returns its path.

    Args:
        folder: the bundle folder (with ``configs/``).
        output: the zip to write, ``NAME.zip``; its top-level folder is ``NAME/``. Replaced atomically.

    Raises:
        BundleError: not a bundle folder, a bad output name, or a file that changes while being packed.

    Examples:
        >>> import tempfile; d = Path(tempfile.mkdtemp())
        >>> _ = (d / "b" / "configs").mkdir(parents=True), (d / "b" / "configs" / "metadata.json").write_text("{}")
        >>> zipfile.ZipFile(pack_bundle(d / "b", d / "mine.zip")).namelist()
        ['mine/MANIFEST.sha256', 'mine/configs/metadata.json']
    """
    folder, output = Path(folder), Path(output)
    if not (folder / "configs").is_dir():
        raise BundleError("not a bundle folder: it has no configs/ folder", path=folder)
    if output.suffix.lower() != ".zip" or not output.stem or output.stem.startswith("."):
        raise BundleError("the output must be a NAME.zip file", path=output, fix="e.g. -o my_model.zip")
    if output.resolve().is_relative_to(folder.resolve()):
        raise BundleError("the zip would be written inside the bundle it packs", path=output,
                          fix="write it next to the bundle folder instead")
    top = output.stem
    files = bundle_files(folder)
    sums = {rel: file_sha256(folder / rel) for rel in files}
    entries = {f"{top}/{rel}": rel for rel in files}
    entries[f"{top}/{MANIFEST}"] = None
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            for name in sorted(entries):
                rel = entries[name]
                big = rel is not None and (folder / rel).stat().st_size >= 1 << 31
                with zf.open(_zip_info(name), "w", force_zip64=big) as dst:
                    if rel is None:
                        dst.write(format_manifest(sums).encode())
                        continue
                    with _open_plain(folder / rel) as src:
                        if _sha256_stream(src, dst) != sums[rel]:
                            raise BundleError(f"{rel} changed while it was being packed", path=folder,
                                              fix="pack again once nothing writes to the bundle")
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("packed %d files of %s into %s", len(files), folder, output)
    return output


def _open_plain(path: Path) -> IO[bytes]:
    """Open a file for reading, refusing a link put there after :func:`bundle_files` listed the folder."""
    try:
        return os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), "rb")
    except OSError as e:
        raise BundleError(f"cannot be read ({e.strerror}); was it replaced by a link?", path=path) from None


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.create_system = 3  # Unix, so the mode below means what it says
    info.external_attr = _FILE_MODE
    info.compress_type = zipfile.ZIP_DEFLATED  # at zlib's default level, the same everywhere
    return info


def cache_root() -> Path:
    """unetkit's cache folder: ``$UNETKIT_CACHE``, else ``~/.cache/unetkit``."""
    env = os.environ.get("UNETKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "unetkit"


def extract_bundle_zip(archive: str | os.PathLike, *, max_unpacked_bytes: int | None = None,
                       max_files: int | None = None) -> Path:
    """Check a bundle zip and unpack it into the cache; returns the bundle folder inside it.

    Nothing is executed and nothing reaches the cache folder's final name unless every check passes.

    Args:
        archive: a zip made by :func:`pack_bundle`.
        max_unpacked_bytes: refuse a zip that unpacks to more bytes (:data:`MAX_UNPACKED_BYTES`, 4 GiB).
        max_files: refuse a zip with more entries (:data:`MAX_FILES`, 10,000).

    Returns:
        ``<cache>/bundles/<sha256 of the zip>/<NAME>``; an earlier unpacked copy is reused when it
        still matches its manifest.

    Raises:
        BundleError: not a zip, an unsafe or oversized entry, an unsupported compression, no manifest,
            or a file missing from, extra to or different from the manifest.
    """
    archive = Path(archive)
    digest = file_sha256(archive)
    root = cache_root() / "bundles"
    final = root / digest
    cached = _reuse(final)
    if cached is not None:
        return cached
    # None: the module's limits, which `unetkit --max-bundle-size/--max-bundle-files` raise for one run
    max_unpacked_bytes = MAX_UNPACKED_BYTES if max_unpacked_bytes is None else max_unpacked_bytes
    max_files = MAX_FILES if max_files is None else max_files
    limits = (max_unpacked_bytes, max_files)
    _check_entry_count(archive, max_files)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:
        raise BundleError(f"not a readable zip file ({e})", path=archive, fix=_BAD_ZIP_FIX) from None
    with zf:
        top, files = _checked_entries(zf, archive, limits)
        manifest = _read_capped(zf, f"{top}/{MANIFEST}", _MAX_MANIFEST_BYTES, archive)
        sums = read_manifest(manifest.decode("utf-8", "replace"), source=archive)
        _compare_listing(sums, set(files), archive)
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{digest[:16]}-", dir=root))
        try:
            try:
                _unpack(zf, top, files, sums, tmp / top, archive, max_unpacked_bytes)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, RuntimeError) as e:
                raise BundleError(f"cannot be unpacked ({e})", path=archive, fix=_BAD_ZIP_FIX) from None
            except OSError as e:  # disk full, permissions, or two entries whose names clash on this disk
                raise BundleError(f"cannot be unpacked into {tmp} ({e.strerror or e})", path=archive,
                                  fix="check the free space and permissions of the cache folder ($UNETKIT_CACHE)") from None
            try:
                os.rename(tmp, final)  # atomic: a folder under its final name is always complete
            except OSError:
                if not final.is_dir():  # not lost to a concurrent unpack of the same zip
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final / top


def _size(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.1f} MiB"


def _too_big(archive: Path, what: str, keyword: str) -> BundleError:
    return BundleError(f"{what}; nothing was unpacked", path=archive,
                       fix=f"if you expect a bundle this large and trust its source, raise the limit: "
                           f"unetkit --max-bundle-{'size' if keyword == 'max_unpacked_bytes' else 'files'} N ... "
                           f"({keyword}= in Python)")


def _check_entry_count(archive: Path, max_files: int) -> None:
    """Refuse a zip declaring too many entries before ``zipfile`` reads its whole central directory."""
    try:
        with open(archive, "rb") as f:
            end = zipfile._EndRecData(f)  # the end-of-central-directory record; private, so guarded
        declared = end[zipfile._ECD_ENTRIES_TOTAL] if end else None
    except Exception:  # noqa: BLE001 - the real parse below reports a broken zip
        return
    if isinstance(declared, int) and declared > max_files:
        raise _too_big(archive, f"declares {declared} entries, more than the limit of {max_files}", "max_files")


def _read_capped(zf: zipfile.ZipFile, name: str, limit: int, archive: Path) -> bytes:
    """An entry's bytes, refusing more than ``limit`` or than its header declares."""
    info = zf.getinfo(name)
    try:
        with zf.open(info) as f:
            data = f.read(min(limit, info.file_size) + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError, RuntimeError) as e:
        raise BundleError(f"cannot be unpacked ({e})", path=archive, fix=_BAD_ZIP_FIX) from None
    if len(data) > min(limit, info.file_size):
        raise _refuse(archive, name, "is larger than its header says, or than a manifest can be")
    return data


def _reuse(final: Path) -> Path | None:
    if not final.is_dir():
        return None
    tops = [p for p in final.iterdir() if p.is_dir()]
    if len(tops) == 1:
        try:
            check_manifest(tops[0])
            return tops[0]
        except BundleError as e:
            log.warning("the cached copy %s changed (%s); unpacking the zip again", tops[0], e)
    shutil.rmtree(final)
    return None


def _refuse(archive: Path, entry: str, why: str) -> BundleError:
    return BundleError(f"entry {entry!r} {why}; nothing was unpacked", path=archive, fix=_BAD_ZIP_FIX)


def _checked_entries(zf: zipfile.ZipFile, archive: Path, limits: tuple[int, int]) -> tuple[str, list[str]]:
    """The top folder and the files (relative to it, manifest excluded), or a BundleError."""
    max_bytes, max_files = limits
    infos = zf.infolist()
    if len(infos) > max_files:
        raise _too_big(archive, f"holds {len(infos)} entries, more than the limit of {max_files}", "max_files")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise _too_big(archive, f"unpacks to {_size(total)}, more than the limit of {_size(max_bytes)}",
                       "max_unpacked_bytes")
    tops, files, seen = set(), [], set()
    for info in infos:
        name = info.filename
        if "\\" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name):
            raise _refuse(archive, name, "has an absolute or Windows path")
        parts = name.rstrip("/").split("/")
        if ".." in parts:
            raise _refuse(archive, name, "climbs out of the folder with '..'")
        if any(p in ("", ".") for p in parts):
            raise _refuse(archive, name, "has an empty or '.' path part")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise _refuse(archive, name, "is a symbolic link")
        if info.flag_bits & 0x1:
            raise _refuse(archive, name, "is encrypted")
        if info.compress_type not in _COMPRESSIONS:
            raise _refuse(archive, name, f"uses compression method {info.compress_type}; bundle zips use deflate or store")
        if name in seen:
            raise _refuse(archive, name, "appears twice")
        seen.add(name)
        tops.add(parts[0])
        if info.is_dir():
            continue
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: no file type recorded (plain zip tools)
            raise _refuse(archive, name, "is a special file")
        if len(parts) < 2:
            raise _refuse(archive, name, "is outside the bundle's top-level folder")
        rel = PurePosixPath(*parts[1:])
        if rel.as_posix() != MANIFEST and _left_out(rel):
            raise _refuse(archive, name, "is not part of a shareable bundle (hidden, cache or run leftover)")
        files.append(rel.as_posix())
    if len(tops) != 1:
        raise BundleError(f"holds {len(tops)} top-level entries; a bundle zip holds one bundle folder",
                          path=archive, fix=_BAD_ZIP_FIX)
    top = tops.pop()
    _refuse_git(files, archive, top)
    if MANIFEST not in files:
        raise BundleError(f"has no {top}/{MANIFEST}: it was not made by `unetkit bundle pack`", path=archive,
                          fix="unzip it and open the folder if you trust it, or ask for a packed copy")
    files.remove(MANIFEST)
    return top, files


def _refuse_git(files: list[str], archive: Path, top: str) -> None:
    """Refuse a bare git repository's layout (``HEAD``, ``objects/``, ``refs/``) at any level."""
    children: dict[tuple[str, ...], set[str]] = {}
    for rel in files:
        parts = tuple(rel.split("/"))
        for i in range(len(parts)):
            children.setdefault(parts[:i], set()).add(parts[i])
    for parent, names in children.items():
        if _GIT_LAYOUT <= names:
            where = "/".join((top,) + parent)
            raise BundleError(f"holds a git repository in {where}/ (HEAD, objects/, refs/); git runs commands named "
                              "in a repository's config; nothing was unpacked", path=archive, fix=_BAD_ZIP_FIX)


def _unpack(zf: zipfile.ZipFile, top: str, files: list[str], sums: Mapping[str, str], dest: Path, archive,
            max_bytes: int) -> None:
    """Write every file under ``dest`` while hashing it; refuse the first that differs from the manifest, or
    that unpacks to more than its header says or past ``max_bytes`` in all."""
    dest.mkdir(parents=True)
    (dest / MANIFEST).write_bytes(_read_capped(zf, f"{top}/{MANIFEST}", _MAX_MANIFEST_BYTES, archive))
    budget = max_bytes
    for rel in files:
        target = dest.joinpath(*rel.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        info = zf.getinfo(f"{top}/{rel}")
        with zf.open(info) as src, open(target, "xb") as dst:
            got, written = _sha256_capped(src, dst, min(info.file_size, budget))
        if written is None:
            raise _refuse(archive, info.filename, "unpacks to more than its header says (or past the size limit)")
        budget -= written
        if got != sums[rel]:
            raise BundleError(f"{rel}: its SHA-256 does not match {MANIFEST}; nothing was unpacked",
                              path=archive, fix=_TAMPERED_FIX)
