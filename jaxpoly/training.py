"""Exact geometry inside training loops: keep an extracted complex in sync with changing weights.

Typical loop (see ``examples/fit_sdf_exact_mesh.py``)::

    geo = ExactGeometry(net, bounds)                  # extracts once
    for step in range(n):
        net = to_network(params)
        geo.update(net)                               # re-extracts only when the combinatorics changed
        loss, grads = step_fn(params, geo.level_system, ...)   # jit: vertex_positions(net, system)

Systems are padded to power-of-two sizes, so a re-extraction only recompiles a jitted step when the
number of vertices crosses a bucket boundary.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import numpy as np

from jaxpoly.arguments import check_flag
from jaxpoly.complex import Complex
from jaxpoly.errors import InvalidArgumentError, StaleCombinatoricsError
from jaxpoly.extraction import extract
from jaxpoly.geometry import (
    STALE_RTOL,
    VertexSystem,
    _resolve,
    check_compatible,
    check_rtol,
    stale_vertices,
    vertex_positions,
)
from jaxpoly.mesh import Mesh
from jaxpoly.network import Network, restrict_to_plane
from jaxpoly.sizes import pad_rows, power_of_two

__all__ = ["refresh_if_stale", "ExactGeometry"]


def _stale_message(num: int, total: int) -> str:
    return (f"the complex's combinatorics no longer hold for these weights: {num} of {total} vertices "
            "changed sides of a hyperplane or left the box, so vertex positions and their gradients from "
            "this complex are no longer exact. Re-extract with jaxpoly.extract(net, bounds), or call "
            "refresh_if_stale(net, complex) without strict=True to re-extract automatically.")


def refresh_if_stale(net: Network, complex: Complex, bounds: Sequence[Any] | None = None, *,
                     strict: bool = False, rtol: float = STALE_RTOL, **extract_kwargs) -> Complex:
    """``complex`` if its combinatorics still hold for ``net`` (:func:`jaxpoly.geometry.is_stale`), else a
    fresh :func:`jaxpoly.extract` (same box and level-set setting unless ``bounds`` is given). With
    ``slice=(origin, u, v)`` (as ``complex`` was extracted), ``net`` is the full network: it is restricted
    to the plane for the check.

    Raises:
      InvalidNetworkError: ``complex`` was extracted from a different architecture, or ``net`` has
        non-finite weights.
      StaleCombinatoricsError: the complex is stale and ``strict=True``.
    """
    check_flag(strict, "strict")
    _check_extract_kwargs(extract_kwargs, "refresh_if_stale")
    stale = stale_vertices(_on_plane(net, extract_kwargs.get("slice"), "refresh_if_stale"), complex,
                           rtol=rtol)  # (checks rtol)
    if not stale.any():
        return complex
    if strict:
        raise StaleCombinatoricsError(_stale_message(int(stale.sum()), len(stale)))
    box = (complex.lo, complex.hi) if bounds is None else bounds
    return extract(net, box, level_set=complex.has_level_set, **extract_kwargs)


def _check_extract_kwargs(kwargs: dict, where: str) -> None:
    """Keywords meant for :func:`jaxpoly.extract` (checked before the first extraction or the first
    re-extraction, so a misspelt one fails at once), or :class:`InvalidArgumentError`."""
    params = inspect.signature(extract).parameters
    allowed = [k for k, p in params.items() if p.kind == inspect.Parameter.KEYWORD_ONLY and k != "level_set"]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise InvalidArgumentError(
            f"{where} got unknown keyword(s) {', '.join(map(repr, unknown))}: its own are strict and rtol "
            f"(and level_set for ExactGeometry); the rest go to jaxpoly.extract, whose keywords are "
            f"{', '.join(allowed)}")


def _on_plane(net: Network, plane: Any, where: str) -> Network:
    """``net`` restricted to ``plane = (origin, u, v)`` (the ``slice`` its complex was extracted on), or
    ``net`` itself without one."""
    if plane is None:
        return net
    origin = np.shape(plane[0]) if isinstance(plane, (tuple, list)) and len(plane) == 3 else None
    if origin is not None and isinstance(net, Network) and (net.input_dim,) != origin:
        raise InvalidArgumentError(
            f"{where} was given slice=(origin, u, v) in {origin[0]} dimensions but a network of input_dim="
            f"{net.input_dim}: pass the full network (the one extract(net, bounds, slice=...) read); it is restricted "
            "to the plane here")
    return restrict_to_plane(net, *plane)


class ExactGeometry:
    """An extracted complex that follows a changing network, with padded systems for jitted steps.

    With ``slice=(origin, u, v)`` (an :func:`~jaxpoly.extract` keyword) the complex is that of the
    network on the plane: :meth:`update`, :meth:`positions` and :meth:`check` take the full network,
    and a jitted step computes positions from the systems with :meth:`on_plane` ``(net)``.

    Attributes:
      complex: the current :class:`~jaxpoly.Complex`.
      num_extractions: extractions so far (the first included).
      num_checks: staleness checks so far.
    """

    def __init__(self, net: Network, bounds: Sequence[Any], *, level_set: bool = True, strict: bool = False,
                 rtol: float = STALE_RTOL, **extract_kwargs):
        check_rtol(rtol)
        check_flag(strict, "strict")
        _check_extract_kwargs(extract_kwargs, "ExactGeometry")
        self.bounds = bounds
        self.level_set = level_set
        self.strict = strict
        self.rtol = rtol
        self.extract_kwargs = extract_kwargs
        self.complex = extract(net, bounds, level_set=level_set, **extract_kwargs)
        self.num_extractions = 1
        self.num_checks = 0

    def update(self, net: Network) -> bool:
        """Re-extract if the combinatorics no longer hold for ``net``; returns whether it did.

        Raises:
          InvalidNetworkError: architecture mismatch or non-finite weights.
          StaleCombinatoricsError: stale and ``strict=True``.
        """
        self.num_checks += 1
        stale = stale_vertices(self.on_plane(net), self.complex, rtol=self.rtol)
        if not stale.any():
            return False
        if self.strict:
            raise StaleCombinatoricsError(_stale_message(int(stale.sum()), len(stale)))
        self.complex = extract(net, self.bounds, level_set=self.level_set, **self.extract_kwargs)
        self.num_extractions += 1
        return True

    def on_plane(self, net: Network) -> Network:
        """The network the complex is of: ``net`` restricted to the plane of ``slice`` if one was given
        (traceable in the weights), else ``net``."""
        return _on_plane(net, self.extract_kwargs.get("slice"), "ExactGeometry")

    @property
    def system(self) -> VertexSystem:
        """All vertices, padded to a power of two (rows ``>= complex.num_vertices`` are masked)."""
        return _resolve(self.complex, "all")[0]

    @property
    def level_system(self) -> VertexSystem:
        """The level-set vertices in mesh order, padded to a power of two (see ``.mask``)."""
        return _resolve(self.complex, "level_set")[0]

    @property
    def mesh(self) -> Mesh:
        """The current level-set mesh (cached per extraction)."""
        return self.complex._cached("_geometry_mesh", self.complex.level_set_mesh)

    def level_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """The level-set mesh edges ``(Q, 2)`` (indices into :attr:`level_system` rows), padded with
        ``(0, 0)`` to a power of two, and their mask ``(Q,)``."""
        e = np.asarray(self.mesh.edges, np.int32).reshape(-1, 2)
        size = power_of_two(len(e))
        return pad_rows(e, size), np.arange(size) < len(e)

    def positions(self, params_or_net: Any, *, to_network: Callable[[Any], Network] | None = None):
        """All vertices ``(V, d)`` of the current complex as functions of the weights (plane coordinates
        with ``slice``)."""
        if "slice" in self.extract_kwargs:
            if to_network is None and not isinstance(params_or_net, Network):
                raise InvalidArgumentError("positions() with slice needs the network, or to_network to build it")
            base = to_network or (lambda n: n)
            to_network = lambda p: self.on_plane(base(p))  # noqa: E731
        return vertex_positions(params_or_net, self.complex, to_network=to_network)

    def check(self, net: Network) -> None:
        """Raise :class:`~jaxpoly.InvalidNetworkError` unless ``net`` fits the current complex."""
        check_compatible(self.on_plane(net), self.system)

    def __repr__(self) -> str:
        return (f"ExactGeometry({self.complex!r}, extractions={self.num_extractions}, "
                f"checks={self.num_checks})")
