"""``unetkit infer``."""

from __future__ import annotations

from unetkit.errors import UnetkitError


def infer() -> None:
    """Not built yet."""
    raise UnetkitError("'unetkit infer' is not implemented yet")
