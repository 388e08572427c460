"""The CLI's consoles and how it reports: results on stdout, errors and progress on stderr.

The consoles are made when first used, not at import: a rich ``Console`` fixes its width (``COLUMNS``) and
its streams when it is made, and the CLI is imported long before it runs (by tests, by ``--help``). Each
is remade when the process's streams or ``COLUMNS`` change (a test runner swapping ``sys.stdout``).
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

__all__ = ["out", "err", "show_progress"]


class _LazyConsole:
    """A rich ``Console`` made on first use, and again when the streams or the terminal width change."""

    def __init__(self, **options):
        self._options = options
        self._key: tuple | None = None
        self._console: Console | None = None

    def get(self) -> Console:
        key = (id(sys.stdout), id(sys.stderr), os.environ.get("COLUMNS"))
        if self._console is None or key != self._key:
            self._console, self._key = Console(**self._options), key
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.get(), name)


out = _LazyConsole(highlight=False)
err = _LazyConsole(stderr=True, highlight=False)


def show_progress() -> bool:
    """Progress bars only when someone is watching: a terminal, not a log file or a pipe."""
    return err.is_terminal
