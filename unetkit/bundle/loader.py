"""Opening a bundle from anywhere: a folder with ``configs/``, or a zip made by ``unetkit bundle pack``.

A zip is checked entry by entry, capped in size and file count, and checked against its SHA-256 manifest,
then unpacked into the cache (:func:`unetkit.bundle.archive.extract_bundle_zip`); a folder is used where it
is, and checked against its ``MANIFEST.sha256`` when it has one (a hand-unzipped copy that changed is
refused). Either way the bundle is then scanned (:mod:`unetkit.bundle.safety`: its files for links, special
files, git data and Python code, its configs against the allow-list) before anything hands it to MONAI,
unless the user trusts the bundle. The checksums are not skipped by ``trust``: a changed file is refused
either way.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from unetkit.bundle.archive import MANIFEST, check_manifest, extract_bundle_zip
from unetkit.bundle.bioimageio import attached_bundle_zip, is_bioimageio_package
from unetkit.bundle.safety import ensure_safe
from unetkit.errors import BundleError

__all__ = ["open_bundle"]


def open_bundle(path: str | os.PathLike, *, trust: bool = False, max_unpacked_bytes: int | None = None,
                max_files: int | None = None) -> Path:
    """The bundle folder for ``path``, checked and ready to hand to MONAI.

    Args:
        path: a bundle folder (holding ``configs/``), a ``.zip`` made by ``unetkit bundle pack``, or a
            bioimage.io package made by ``unetkit bundle export --format bioimageio`` (its attached bundle zip).
        trust: skip the safety scan (only for bundles you wrote or whose author you trust). Manifests
            are checked either way.
        max_unpacked_bytes: (zips) refuse one that unpacks to more bytes; default 4 GiB.
        max_files: (zips) refuse one with more entries; default 10,000.

    Returns:
        The absolute bundle folder: ``path`` itself, or for a zip its unpacked copy in the cache
        (``$UNETKIT_CACHE/bundles/<sha256>/<NAME>``), which holds everything the bundle needs.

    Raises:
        BundleError: not a bundle; (zips) an unsafe or oversized entry, no manifest; (zips, and folders
            with a ``MANIFEST.sha256``) a file missing from, extra to or different from the manifest.
        UnsafeBundleError: ``trust`` is false and the scan refuses something: a config asks for something
            outside the allow-list, or the folder holds a link, a special file, git data or Python code.

    Examples:
        >>> open_bundle("bundles/phc_u373").name
        'phc_u373'
    """
    p = Path(path)
    if p.is_dir():
        if not (p / "configs").is_dir():
            raise BundleError("not a bundle folder: it has no configs/ folder", path=p,
                              fix="give the folder that holds configs/metadata.json")
        folder = p.resolve()
        if (folder / MANIFEST).is_file() or (folder / MANIFEST).is_symlink():
            check_manifest(folder)
    elif is_bioimageio_package(p):  # a package unetkit exported: its attached bundle zip, checked as any zip
        attached = attached_bundle_zip(p, max_unpacked_bytes=max_unpacked_bytes)
        try:
            folder = extract_bundle_zip(attached, max_unpacked_bytes=max_unpacked_bytes, max_files=max_files)
        except BundleError as e:
            raise BundleError(f"its attached bundle {attached.name}: {e.problem}", path=p, fix=e.fix) from None
    elif p.is_file() and zipfile.is_zipfile(p):
        folder = extract_bundle_zip(p, max_unpacked_bytes=max_unpacked_bytes, max_files=max_files)
    elif not p.exists():
        raise BundleError("no such bundle folder or zip", path=p)
    else:
        raise BundleError("neither a bundle folder nor a zip file", path=p,
                          fix="give a bundle folder (or a zip made by `unetkit bundle pack`)")
    if not trust:
        ensure_safe(folder, source=p)
    return folder
