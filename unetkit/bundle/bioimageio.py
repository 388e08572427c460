"""Reading back a bioimage.io model package that ``unetkit bundle export --format bioimageio`` wrote.

Such a package is a zip with ``rdf.yaml`` at its top and the unetkit bundle zip attached beside it, named in
``config.unetkit.bundle``. :func:`attached_bundle_zip` takes that one entry out into the cache, with the
same care as any zip from elsewhere (a plain top-level name, listed as an attachment, deflate or store, not
encrypted, capped in size, streamed with a byte count), and hands back the bundle zip: the caller then opens
it as any other bundle zip (:func:`unetkit.bundle.archive.extract_bundle_zip`: manifest, caps, then the
safety scan), so an attached bundle is trusted no more than a bundle zip sent by mail. Nothing here needs
bioimageio.spec: the description is read with ``yaml.safe_load`` and only for the attachment's name.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from unetkit.bundle import archive
from unetkit.bundle.archive import cache_root, file_sha256
from unetkit.errors import BundleError

__all__ = ["RDF_NAMES", "is_bioimageio_package", "attached_bundle_zip"]

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
"""The names a bioimage.io package's description has at the top of the zip."""

_MAX_RDF_BYTES = 1 << 20
_CHUNK = 1 << 20
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_FOREIGN_FIX = ("unetkit runs the packages `unetkit bundle export --format bioimageio` writes, which carry the "
                "unetkit bundle; run this one with bioimageio.core, deepImageJ, ilastik or napari, or ask its "
                "author for the unetkit bundle zip")


def is_bioimageio_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip with a bioimage.io description (``rdf.yaml``) at its top.

    Examples:
        >>> import tempfile; p = Path(tempfile.mkdtemp()) / "m.zip"
        >>> with zipfile.ZipFile(p, "w") as z: z.writestr("rdf.yaml", "type: model")
        >>> is_bioimageio_package(p), is_bioimageio_package(p.parent)
        (True, False)
    """
    p = Path(path)
    if not p.is_file() or not zipfile.is_zipfile(p):
        return False
    try:
        with zipfile.ZipFile(p) as zf:
            return any(n in RDF_NAMES or n.endswith(".bioimageio.yaml") and "/" not in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def attached_bundle_zip(package: str | os.PathLike, *, max_unpacked_bytes: int | None = None) -> Path:
    """The unetkit bundle zip attached to a bioimage.io package, taken out into the cache.

    Args:
        package: the package zip.
        max_unpacked_bytes: refuse an attachment larger than this (default: the bundle zip limit, 4 GiB).

    Returns:
        ``$UNETKIT_CACHE/packages/<sha256 of the package>/<name>.zip``, ready for
        :func:`unetkit.bundle.archive.extract_bundle_zip`.

    Raises:
        BundleError: no ``rdf.yaml``, one that is not YAML, no attached unetkit bundle (one clear line saying
            so), or an attachment entry that is not a plain, capped, deflate/store file.
    """
    package = Path(package)
    # read at call time: `unetkit --max-bundle-size` raises the module's limit for one run
    limit = archive.MAX_UNPACKED_BYTES if max_unpacked_bytes is None else max_unpacked_bytes
    try:
        zf = zipfile.ZipFile(package)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BundleError(f"not a readable zip file ({e})", path=package) from None
    with zf:
        name = _bundle_name(zf, package)
        info = _entry(zf, name, package, limit)
        digest = file_sha256(package)
        folder = cache_root() / "packages" / digest
        target = folder / name
        if target.is_file() and target.stat().st_size == info.file_size:
            return target  # unpacked before; extract_bundle_zip checks it against its manifest anyway
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.tmp-{os.getpid()}"
        try:
            _copy_capped(zf, info, tmp, package)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def _bundle_name(zf: zipfile.ZipFile, package: Path) -> str:
    """``config.unetkit.bundle`` of the package's description, checked to be an attached top-level zip."""
    import yaml

    rdf = next((n for n in zf.namelist() if n in RDF_NAMES), None)
    if rdf is None:
        raise BundleError("is not a bioimage.io package: it has no rdf.yaml at its top", path=package)
    info = zf.getinfo(rdf)
    if info.file_size > _MAX_RDF_BYTES or info.flag_bits & 0x1 or info.compress_type not in _COMPRESSIONS:
        raise BundleError(f"{rdf} is larger than 1 MiB, encrypted or oddly compressed; not a package unetkit wrote",
                          path=package, fix=_FOREIGN_FIX)
    try:
        with zf.open(info) as f:
            descr = yaml.safe_load(f.read(_MAX_RDF_BYTES + 1))
    except (yaml.YAMLError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError, EOFError) as e:
        raise BundleError(f"its {rdf} cannot be read ({' '.join(str(e).split())[:120]})", path=package) from None
    config = descr.get("config") if isinstance(descr, dict) else None
    unetkit = config.get("unetkit") if isinstance(config, dict) else None
    name = unetkit.get("bundle") if isinstance(unetkit, dict) else None
    if not isinstance(name, str):
        raise BundleError("is a bioimage.io package without an attached unetkit bundle (its rdf.yaml has no "
                          "config.unetkit.bundle)", path=package, fix=_FOREIGN_FIX)
    attached = {a.get("source") for a in descr.get("attachments") or [] if isinstance(a, dict)}
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.zip", name) or name not in attached:
        raise BundleError(f"its rdf.yaml names {name!r} as the unetkit bundle, which is not a zip attached at the "
                          "package's top", path=package, fix=_FOREIGN_FIX)
    return name


def _entry(zf: zipfile.ZipFile, name: str, package: Path, limit: int) -> zipfile.ZipInfo:
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise BundleError(f"its rdf.yaml attaches the unetkit bundle {name}, which is missing from the zip",
                          path=package, fix="get a fresh copy of the package from its author") from None
    if info.flag_bits & 0x1 or info.compress_type not in _COMPRESSIONS or info.is_dir():
        raise BundleError(f"the attached bundle {name} is encrypted, a folder or oddly compressed", path=package,
                          fix=_FOREIGN_FIX)
    if info.file_size > limit:
        raise BundleError(f"the attached bundle {name} is {info.file_size} bytes, more than the limit of {limit}; "
                          "nothing was unpacked", path=package,
                          fix="if you trust its source, raise the limit: unetkit --max-bundle-size N ...")
    return info


def _copy_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, package: Path) -> None:
    """Copy one entry out, refusing more bytes than its header declares (a zip bomb's lie)."""
    written = 0
    try:
        with zf.open(info) as src, open(dest, "xb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > info.file_size:
                    raise BundleError(f"the attached bundle {PurePosixPath(info.filename).name} unpacks to more "
                                      "than its header says; nothing was unpacked", path=package, fix=_FOREIGN_FIX)
                dst.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as e:
        raise BundleError(f"the attached bundle cannot be unpacked ({e})", path=package) from None
