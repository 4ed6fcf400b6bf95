"""Validation of the box ``(lo, hi)`` every engine works in, and of query points in it."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from jaxpoly.errors import InvalidArgumentError, InvalidBoundsError

__all__ = ["as_box", "as_points", "MAX_MAGNITUDE", "MAX_MAGNITUDE_FLOAT32", "MIN_MAGNITUDE", "MAX_VALUE", "TRANSLATE_INPUT", "RESCALE_WEIGHTS"]

#: Largest coordinate of a box, and bound on the hidden pre-activations' coefficients and values over
#: it (:func:`jaxpoly.network.validate_magnitudes`), that the exact engines accept: the geometry squares
#: them (row norms, distances), and float64 overflows past about 1.3e154 squared.
MAX_MAGNITUDE = 1e150
#: The same for :func:`jaxpoly.extract` in float32, whose largest finite value is about 3.4e38 (sums of
#: products need headroom).
MAX_MAGNITUDE_FLOAT32 = 1e30
#: Least half-width of a box, and of the nonzero coefficients of a hyperplane in input space, that
#: :func:`jaxpoly.enumerate_regions` accepts: below about 1.5e-154 their squares underflow to 0.
MIN_MAGNITUDE = 1e-150
#: The same for plain evaluation (:func:`jaxpoly.sample_regions`): values must stay finite in float64.
MAX_VALUE = 1e300
#: The fix for a box too far from the origin for its size, which the engines' messages give.
TRANSLATE_INPUT = ("Translate the input so that the box is centred near the origin (x -> x - c: add W c to the "
                   "first layer's bias).")
#: The fix for weights too large or too small for float64's squares, which the engines' messages give.
RESCALE_WEIGHTS = ("rescale the weights (for ReLU stages, scaling a stage's kernels and bias by c > 0 and the kernels "
                   "that read it by 1 / c leaves the function and its regions unchanged)")


def as_box(bounds: Sequence[Any], d: int, *, max_abs: float | None = None,
           min_width: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` → two float64 arrays ``(d,)``; scalars broadcast.

    Raises :class:`InvalidBoundsError` unless the box is finite, of dimension ``d`` and non-empty
    (``lo < hi`` in every coordinate), and with ``max_abs`` unless every coordinate is at most
    ``max_abs`` in magnitude (e.g. :data:`MAX_MAGNITUDE`), and with ``min_width`` unless every side is at
    least that wide (e.g. ``2 MIN_MAGNITUDE``). One ``(lo_i, hi_i)`` pair per coordinate is
    not this layout (transpose it); for ``d = 2`` it cannot be told apart unless it makes a box empty.
    """
    pairs = np.shape(bounds) == (d, 2) if _is_numeric(bounds) else False
    per_coordinate = (f"; bounds are (lo, hi) with lo and hi of shape ({d},), not one (lo, hi) pair per "
                      f"coordinate: pass np.transpose(pairs)") if pairs else ""
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise InvalidBoundsError(
            f"bounds must be a pair (lo, hi) of scalars or arrays of shape ({d},), got {bounds!r}{per_coordinate}"
        ) from None
    lo, hi = (_real(v, InvalidBoundsError, "bounds") for v in (lo, hi))
    if any(_kind(v) == "b" for v in (lo, hi)):  # (a flag passed by mistake would read as 0 or 1)
        raise InvalidBoundsError(f"bounds must be numbers, got booleans lo={lo!r}, hi={hi!r}")
    given = lo, hi
    try:
        lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (d,)).copy()
        hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (d,)).copy()
    except (TypeError, ValueError):
        bad = [f"{n}={str(v)[:40]!r}" for n, v in zip(("lo", "hi"), given) if not _is_numeric(v)]
        if bad:
            raise InvalidBoundsError(f"bounds must be numbers, got {' and '.join(bad)}") from None
        raise InvalidBoundsError(
            f"bounds must be scalars or arrays of shape ({d},) for a network with input_dim={d}; got "
            f"lo of shape {np.shape(lo)} and hi of shape {np.shape(hi)}"
        ) from None
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise InvalidBoundsError(f"bounds must be finite, got lo={lo}, hi={hi}")
    if max_abs is not None and max(np.abs(lo).max(), np.abs(hi).max()) > max_abs:
        big = max(np.abs(lo).max(), np.abs(hi).max())
        raise InvalidBoundsError(
            f"the box reaches {big:.3g}, beyond the {max_abs:g} this engine accepts (larger coordinates overflow "
            "its floating-point arithmetic); "
            "rescale the input (x -> x / s: divide the box by s and multiply the kernels that read the input by s)"
        )
    if np.any(lo >= hi):
        i = int(np.argmax(lo >= hi))
        raise InvalidBoundsError(
            f"empty or inverted box: lo[{i}] = {lo[i]:g} >= hi[{i}] = {hi[i]:g}; every coordinate needs lo < hi"
            f"{per_coordinate}"
        )
    if min_width is not None and np.min(hi - lo) < min_width:
        raise InvalidBoundsError(
            f"the box is {np.min(hi - lo):.3g} wide along a side, below the {min_width:g} this engine accepts "
            "(squared lengths underflow float64); scale the input up: x = c u with c a power of two "
            f"(jaxpoly.network.compose_input(net, c * np.eye({d}), np.zeros({d})) is the network of u), box "
            "(lo / c, hi / c)")
    return lo, hi


def as_points(x: Any, d: int, *, rows: bool = False) -> np.ndarray:
    """Query points ``x (..., d)`` (``(n, d)`` with ``rows``: a single point ``(d,)`` becomes ``(1, d)``) as
    finite float64, or :class:`InvalidArgumentError`. For ``d = 1``, ``(n,)`` is ``n`` points."""
    x = _real(x, InvalidArgumentError, "points")
    try:
        x = np.asarray(x, np.float64)
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"points must be an array of numbers of shape ({'n' if rows else '...'}, {d}), got {type(x).__name__} "
            f"{str(x)[:40]!r}"
        ) from None
    if x.ndim == 1 and x.size == 0 and d != 1:  # (for d = 1, (0,) is no points)
        raise InvalidArgumentError(f"points must have shape ({'n' if rows else '...'}, {d}), got an empty list; "
                                   f"no points are np.zeros((0, {d}))")
    if x.ndim == 1 and (rows or d == 1):
        x = x[:, None] if d == 1 else x[None]
    if x.ndim == 0 or x.shape[-1] != d or (rows and x.ndim != 2):
        raise InvalidArgumentError(f"points must have shape ({'n' if rows else '...'}, {d}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InvalidArgumentError("points contain NaN or inf")
    return x


def _kind(a: Any) -> str:
    """NumPy's dtype kind of ``a`` (``""`` where it is not an array: ragged input)."""
    try:
        return np.asarray(a).dtype.kind
    except (TypeError, ValueError):
        return ""


def _is_numeric(a: Any) -> bool:
    return _kind(a) in ("i", "u", "f")


def _real(a: Any, error: type, what: str) -> Any:
    """``a`` unchanged unless it holds complex numbers (which a cast to float64 would silently truncate):
    then ``error``."""
    if _kind(a) == "c":  # (ragged input, kind "": the caller's cast reports it)
        raise error(f"{what} must be real numbers, got complex values {str(a)[:60]}")
    return a
