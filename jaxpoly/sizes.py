"""Padded sizes: arrays padded to a few size classes, so that jitted functions compile once per class
instead of once per size."""

from __future__ import annotations

import numpy as np

__all__ = ["bucket", "pad_rows", "power_of_two"]


def bucket(n: float, least: int = 64) -> int:
    """The least ``m 2^k >= max(int(n), least)`` with ``m`` in 4..8: steps of at most 25 %, so padding wastes
    little while the number of distinct sizes (compilations) stays logarithmic."""
    n = max(int(n), least)
    k = max((n - 1).bit_length() - 3, 0)
    return next(m << k for m in (4, 5, 6, 7, 8) if (m << k) >= n)


def power_of_two(n: float, least: int = 16) -> int:
    """The least power of two ``>= max(int(n), least)``."""
    return 1 << (max(int(n), least) - 1).bit_length()


def pad_rows(a: np.ndarray, size: int, *, repeat_first: bool = False) -> np.ndarray:
    """``a (n, ...)`` padded to ``(size, ...)`` (``size >= n``) with zero rows or, with ``repeat_first``,
    copies of its first row (padding that is valid input where zeros are not: a real cell's pattern, a
    point of the box)."""
    if len(a) == size:
        return a
    pad = np.repeat(a[:1], size - len(a), axis=0) if repeat_first else np.zeros((size - len(a),) + a.shape[1:], a.dtype)
    return np.concatenate([a, pad])
