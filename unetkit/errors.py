"""unetkit's one family of exceptions.

Library code raises these for anything a user can fix (a bad file, a bad option, a missing data set);
the CLI turns them into one red line and exit code 2. Each message names the thing (file, option), the
problem and, where there is one, the fix.
"""

from __future__ import annotations

import os
import re

__all__ = [
    "UnetkitError",
    "ImageReadError",
    "ImageWriteError",
    "DataError",
    "BundleError",
    "UnsafeBundleError",
    "TrainingError",
    "find_user_error",
]


class UnetkitError(Exception):
    """Base class: a problem the user can act on.

    Args:
        problem: what is wrong, in one sentence.
        path: the file or folder concerned, if any; it leads the message.
        fix: what to do about it, if known.

    Examples:
        >>> str(UnetkitError("not a TIFF file", path="a.txt", fix="convert it first"))
        'a.txt: not a TIFF file (convert it first)'
    """

    def __init__(self, problem: str, *, path: str | os.PathLike | None = None, fix: str | None = None):
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        self.fix = fix
        super().__init__(self._message())

    def _message(self) -> str:
        msg = self.problem if self.path is None else f"{self.path}: {self.problem}"
        return msg if not self.fix else f"{msg} ({self.fix})"


class ImageReadError(UnetkitError):
    """A file could not be read as an image: missing, truncated, empty, not an image or unsupported."""


class ImageWriteError(UnetkitError):
    """An image could not be written (bad path, would overwrite the input, unsupported format)."""


class DataError(UnetkitError):
    """A data set is missing, incomplete, corrupt or not in the expected layout."""


class BundleError(UnetkitError):
    """A bundle is missing a file, has bad metadata or fails verification."""


class UnsafeBundleError(BundleError):
    """A bundle's configs ask to run code outside the allow-list; refused unless the user trusts it."""


class TrainingError(UnetkitError):
    """Training cannot go on (NaN loss, nothing to resume from, bad schedule)."""


def find_user_error(e: BaseException) -> UnetkitError | None:
    """The first :class:`UnetkitError` in ``e``'s chain (``e`` itself, its cause or context, ...), or None.

    MONAI wraps whatever a config component raises ("Failed to instantiate ..."); callers dig out ours
    with this, so the user sees its one clear line instead of MONAI's wrapper. One raised in a DataLoader
    worker process (a training image that cannot be loaded) reaches the main process only as text: torch
    re-raises it as the type of the outermost exception there (MONAI's ``RuntimeError("applying
    transform")``) with the worker's traceback as the message; it is rebuilt from that text.

    Examples:
        >>> find_user_error(RuntimeError("x")) is None
        True
        >>> try:
        ...     raise RuntimeError("wrapped") from DataError("no images", path="d/01")
        ... except RuntimeError as e:
        ...     str(find_user_error(e))
        'd/01: no images'
        >>> worker = RuntimeError("Caught RuntimeError in DataLoader worker process 0.\\nOriginal Traceback "
        ...                       "(most recent call last):\\nunetkit.errors.ImageReadError: a.tif: truncated")
        >>> found = find_user_error(worker)
        >>> type(found).__name__, str(found)
        ('ImageReadError', 'a.tif: truncated')
    """
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, UnetkitError):
            return seen
        found = _from_worker(seen)
        if found is not None:
            return found
        seen = seen.__cause__ or seen.__context__
    return None


_WORKER_ERROR = re.compile(r"^unetkit\.errors\.(\w+): (.+)$", re.MULTILINE)


def _from_worker(e: BaseException) -> UnetkitError | None:
    """Ours, from the traceback text of a DataLoader worker that torch re-raised (its first, innermost)."""
    text = str(e)
    if "DataLoader worker" not in text:
        return None
    match = _WORKER_ERROR.search(text)
    if match is None:
        return None
    cls = globals().get(match.group(1))
    if not (isinstance(cls, type) and issubclass(cls, UnetkitError)):
        cls = UnetkitError
    return cls(match.group(2))  # the message is already "path: problem (fix)"
