"""Type predicates of the public functions' keyword arguments: Python and NumPy scalars alike, never a
``bool`` where a number is meant (``True`` is an ``int`` to Python)."""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxpoly.errors import InvalidArgumentError

__all__ = ["is_flag", "is_integer", "is_real", "check_flag"]


def is_flag(v: Any) -> bool:
    """``True`` or ``False`` (Python or NumPy)."""
    return isinstance(v, (bool, np.bool_))


def is_integer(v: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(v, (int, np.integer)) and not is_flag(v)


def is_real(v: Any) -> bool:
    """A Python or NumPy integer or float, not a bool (may be NaN or inf)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not is_flag(v)


def check_flag(v: Any, name: str) -> bool:
    """``v`` as a bool, or :class:`InvalidArgumentError` naming ``name`` unless it is one."""
    if not is_flag(v):
        raise InvalidArgumentError(f"{name} must be True or False, got {v!r}")
    return bool(v)
