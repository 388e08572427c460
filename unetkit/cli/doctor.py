"""``unetkit doctor``."""

from __future__ import annotations

from unetkit.errors import UnetkitError


def doctor() -> None:
    """Not built yet."""
    raise UnetkitError("'unetkit doctor' is not implemented yet")
