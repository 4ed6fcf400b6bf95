"""Validation of the box ``(lo, hi)`` every engine works in, and of query points in it."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from jaxpoly.errors import InvalidArgumentError, InvalidBoundsError

__all__ = ["as_box", "as_points"]


def as_box(bounds: Sequence[Any], d: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` → two float64 arrays ``(d,)``; scalars broadcast.

    Raises :class:`InvalidBoundsError` unless the box is finite, of dimension ``d`` and non-empty
    (``lo < hi`` in every coordinate).
    """
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise InvalidBoundsError(
            f"bounds must be a pair (lo, hi) of scalars or arrays of shape ({d},), got {bounds!r}"
        ) from None
    try:
        lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (d,)).copy()
        hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (d,)).copy()
    except (TypeError, ValueError):
        raise InvalidBoundsError(
            f"bounds must be scalars or arrays of shape ({d},) for a network with input_dim={d}; got "
            f"lo of shape {np.shape(lo)} and hi of shape {np.shape(hi)}"
        ) from None
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise InvalidBoundsError(f"bounds must be finite, got lo={lo}, hi={hi}")
    if np.any(lo >= hi):
        i = int(np.argmax(lo >= hi))
        raise InvalidBoundsError(
            f"empty or inverted box: lo[{i}] = {lo[i]:g} >= hi[{i}] = {hi[i]:g}; every coordinate needs lo < hi"
        )
    return lo, hi


def as_points(x: Any, d: int, *, rows: bool = False) -> np.ndarray:
    """Query points ``x (..., d)`` (``(n, d)`` with ``rows``) as finite float64, or
    :class:`InvalidArgumentError`."""
    x = np.asarray(x, np.float64)
    if x.ndim == 0 or x.shape[-1] != d or (rows and x.ndim != 2):
        raise InvalidArgumentError(f"points must have shape ({'n' if rows else '...'}, {d}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidArgumentError("points contain NaN or inf")
    return x
