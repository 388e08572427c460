"""``unetkit train``."""

from __future__ import annotations

from unetkit.errors import UnetkitError


def train() -> None:
    """Not built yet."""
    raise UnetkitError("'unetkit train' is not implemented yet")
