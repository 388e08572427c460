"""The CLI's consoles and how it reports: results on stdout, errors and progress on stderr."""

from __future__ import annotations

from rich.console import Console

__all__ = ["out", "err", "show_progress"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def show_progress() -> bool:
    """Progress bars only when someone is watching: a terminal, not a log file or a pipe."""
    return err.is_terminal
