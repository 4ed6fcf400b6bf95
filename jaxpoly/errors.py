"""The jaxpoly exception hierarchy.

Every error jaxpoly raises on bad input derives from :class:`JaxpolyError`, and each also derives from
the built-in exception a Python user would expect (``ValueError``, ``TypeError``, ``MemoryError``), so
``except ValueError`` keeps working. Messages say what is wrong and how to fix it.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = [
    "JaxpolyError",
    "InvalidNetworkError",
    "UnsupportedLayerError",
    "InvalidBoundsError",
    "CapacityError",
    "DegenerateError",
    "StaleCombinatoricsError",
    "InvalidArgumentError",
    "ModelLoadError",
    "ModelNotFoundError",
    "LoadError",
    "SaveError",
    "JaxpolyWarning",
    "PrecisionWarning",
    "IncompleteResultWarning",
]


class JaxpolyError(Exception):
    """Base class of every error jaxpoly raises on purpose."""


class InvalidNetworkError(JaxpolyError, ValueError):
    """The network spec is malformed: shapes do not chain, weights are not finite, the input
    dimension does not match, or the network lacks what the operation needs (a hidden layer, a scalar
    output)."""


class InvalidArgumentError(JaxpolyError, ValueError):
    """An option has a value outside its domain (a non-positive capacity or limit, an unknown dtype, a
    malformed slice). The message names the argument and what it accepts."""


class UnsupportedLayerError(JaxpolyError, TypeError):
    """A converter met an operation that is not piecewise affine (tanh, softmax, max-pool, …) or a
    module type it does not know. The message names the op."""


class InvalidBoundsError(JaxpolyError, ValueError):
    """The box ``(lo, hi)`` is empty, inverted, not finite, or of the wrong dimension."""


class CapacityError(JaxpolyError, MemoryError):
    """A size limit was reached (vertices, edges, regions, memory). The message names the size reached
    and the argument that raises the limit."""


class DegenerateError(JaxpolyError, ArithmeticError):
    """The arrangement is non-generic in a way this engine cannot resolve exactly (for example a
    hyperplane that contains an edge of the complex in dimension >= 3, as a neuron that vanishes on a
    whole region and cuts elsewhere does). Raised instead of returning a
    complex that could be wrong."""


class StaleCombinatoricsError(JaxpolyError, ValueError):
    """Parameters moved so far that the stored combinatorics (which hyperplanes meet at each vertex)
    no longer hold; re-extract the complex."""


class ModelLoadError(JaxpolyError, ValueError):
    """A model file could not be turned into a network: unknown or unreadable format, an architecture
    that does not fit the weights, or a missing optional dependency (PyTorch, Orbax)."""


class LoadError(JaxpolyError, OSError):
    """A file written by :meth:`Complex.save <jaxpoly.Complex.save>` or :meth:`Regions.save
    <jaxpoly.Regions.save>` is missing, unreadable, or lacks the arrays jaxpoly writes."""


class SaveError(JaxpolyError, OSError):
    """A result or network could not be written: the path is not a path, its folder does not exist, or
    the operating system refused the write (permissions, a full disk)."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """Neither an existing file or folder nor a bundled model name."""


class JaxpolyWarning(UserWarning):
    """Base class of the warnings jaxpoly issues about a result it returns. They go through Python's
    :mod:`warnings`, so ``warnings.simplefilter("error", jaxpoly.JaxpolyWarning)`` (or ``pytest -W
    error::jaxpoly.JaxpolyWarning``) turns them into exceptions, and ``pytest.warns`` catches them."""


class PrecisionWarning(JaxpolyWarning):
    """Floating point or the tolerance did not resolve everything: cells thinner than ``tol`` of the box,
    certificates that failed their final check, witnesses that float64 cannot place, vertices merged from
    near-misses. The result may lack regions or carry approximate witnesses; the message says how much and
    what fixes it (a smaller ``tol``, a smaller box, translating the input)."""


class IncompleteResultWarning(JaxpolyWarning):
    """The computation stopped early at the caller's request (``max_regions``, Ctrl-C): the result is
    partial and says so (``complete=False``)."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(category: type[JaxpolyWarning], message: str, *args) -> None:
    """Issue ``message % args`` as a ``category`` warning attributed to the first caller outside jaxpoly
    (so filters by module and the printed location name the user's line, not ours)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message % args if args else message, category, stacklevel=level)
