"""Opening a bundle from anywhere: a folder with ``configs/``, or a zip made by ``unetkit bundle pack``.

A zip is checked entry by entry and against its SHA-256 manifest, then unpacked into the cache
(:func:`unetkit.bundle.archive.extract_bundle_zip`); a folder is used where it is. Either way the configs
are then scanned (:mod:`unetkit.bundle.safety`) before anything hands them to MONAI, unless the user
trusts the bundle. The checksums are not skipped by ``trust``: a changed file is refused either way.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from unetkit.bundle.archive import extract_bundle_zip
from unetkit.bundle.safety import ensure_safe
from unetkit.errors import BundleError

__all__ = ["open_bundle"]


def open_bundle(path: str | os.PathLike, *, trust: bool = False) -> Path:
    """The bundle folder for ``path``, checked and ready to hand to MONAI.

    Args:
        path: a bundle folder (holding ``configs/``) or a ``.zip`` made by ``unetkit bundle pack``.
        trust: skip the safety scan of the configs (only for bundles you wrote or whose author you
            trust). Zips are checked against their manifest either way.

    Returns:
        The absolute bundle folder: ``path`` itself, or for a zip its unpacked copy in the cache
        (``$UNETKIT_CACHE/bundles/<sha256>/<NAME>``), which holds everything the bundle needs.

    Raises:
        BundleError: not a bundle; (zips) an unsafe entry, no manifest, or a file missing from, extra to
            or different from the manifest.
        UnsafeBundleError: the configs ask for something outside the allow-list and ``trust`` is false.

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
    elif p.is_file() and zipfile.is_zipfile(p):
        folder = extract_bundle_zip(p)
    elif not p.exists():
        raise BundleError("no such bundle folder or zip", path=p)
    else:
        raise BundleError("neither a bundle folder nor a zip file", path=p,
                          fix="give a bundle folder (or a zip made by `unetkit bundle pack`)")
    if not trust:
        ensure_safe(folder, source=p)
    return folder
