"""``unetkit evaluate``."""

from __future__ import annotations

from unetkit.errors import UnetkitError


def evaluate() -> None:
    """Not built yet."""
    raise UnetkitError("'unetkit evaluate' is not implemented yet")
