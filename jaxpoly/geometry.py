"""Differentiable geometry: vertex positions as functions of the parameters, staleness, geometric losses.

Every vertex of a complex is where ``d`` hyperplanes meet: box facets, breakpoint hyperplanes of the
hidden neurons (bent by the earlier layers), and the output's level set. On a linear region adjacent
to the vertex each of them is affine, ``a_h(θ) · x + c_h(θ) = 0``, with ``a_h, c_h`` functions of *all*
weights and biases of the layers up to ``h`` (:meth:`jaxpoly.Network.affine_maps`). Solving

    M(θ) x = r(θ),    M = [a_h]_{h in S},   r = [-c_h]_{h in S}       (S: d independent hyperplanes)

recomputes the vertex as a pure, differentiable function of θ: ``dx/dθ = -M^{-1} (dM/dθ x - dr/dθ)``
(implicit function theorem), which is what ``jax.grad`` through :func:`vertex_positions` computes (a
``jax.custom_jvp`` whose tangent is one forward-mode pass of vectors through the network). It
is the exact derivative as long as the *combinatorics* (which hyperplanes meet at each vertex, which
side of every other hyperplane each vertex lies on) stay those of the extracted complex;
:func:`is_stale` checks that exactly, and :func:`jaxpoly.training.refresh_if_stale` re-extracts.

The region's activation pattern matters only for the hyperplanes *not* through the vertex: a deep
hyperplane bent at an earlier hyperplane ``j`` through the same vertex has pieces on both sides of ``j``
that differ by a multiple of ``j``'s own function, so with ``j`` in ``S`` both pieces give the same
solution for every θ.

Flax users differentiate with respect to their params tree by building the network *inside* the
differentiated function with the traceable :func:`network_from_params` (or
:func:`network_from_flax_params` for a linen MLP of ``Dense`` layers)::

    system = jaxpoly.geometry.level_set_system(complex)          # once per extraction
    def loss(params):
        net = network_from_flax_params(params)                   # traceable, no NumPy conversion
        x = jaxpoly.geometry.vertex_positions(net, system)       # (n, d)
        return chamfer_distance(x, targets)
    grads = jax.grad(loss)(params)

(:func:`jaxpoly.from_arrays` and :func:`jaxpoly.from_flax` convert to NumPy and cannot be traced.)

Regions get the same treatment: :func:`region_inradius` is each linear region's Chebyshev radius
(largest inscribed ball in the box) as a function of θ, from the constraints active at its Chebyshev
optimum (decided once on the host by :func:`inradius_system`), e.g. to keep regions from becoming thin.

Losses and statistics (pure functions of positions/radii, differentiable):

* point sets: :func:`chamfer_distance`, :func:`hausdorff_distance`;
* the level set: :func:`level_set_length` (2D), :func:`level_set_area` (3D), :func:`edge_length_variance`;
* margins: :func:`boundary_distances`, :func:`segment_distances`, :func:`margin_loss`;
* regions: :func:`inradius_loss` (hinge on :func:`region_inradius`); :func:`count_regions` (exact count,
  not differentiable).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpoly.arguments import is_integer, is_real
from jaxpoly.complex import Complex
from jaxpoly.errors import DegenerateError, InvalidArgumentError, InvalidNetworkError, JaxpolyError
from jaxpoly.linalg import small_solve
from jaxpoly.network import (CONSTANT_RTOL, Activation, Network, Stage, _is_concrete, activation_from_name,
                             hyperplane_scales, identity, validate_network)
from jaxpoly.pytree import pytree_dataclass
from jaxpoly.sizes import pad_rows, power_of_two

__all__ = [
    "VertexSystem",
    "vertex_system",
    "level_set_system",
    "vertex_positions",
    "level_set_positions",
    "stale_vertices",
    "is_stale",
    "check_compatible",
    "InradiusSystem",
    "inradius_system",
    "region_inradius",
    "network_from_params",
    "network_from_flax_params",
    "chamfer_distance",
    "hausdorff_distance",
    "level_set_length",
    "level_set_area",
    "edge_length_variance",
    "boundary_distances",
    "segment_distances",
    "margin_loss",
    "inradius_loss",
    "count_regions",
]

Array = Any

#: Default relative tolerance of :func:`is_stale` for values that must stay zero (a vertex's own
#: hyperplanes, re-evaluated through the network at the recomputed position), in float64.
STALE_RTOL = 1e-8

#: :func:`is_stale`'s allowance for the roundoff of its own computation, in units of the computation's
#: machine epsilon (relative to each hyperplane's scale): own hyperplanes may be off zero by
#: ``max(rtol, STALE_ROUNDOFF * eps)``, and a sign within ``STALE_ROUNDOFF * eps`` of zero is not told
#: apart from roundoff. float64: 5.7e-14, far below ``STALE_RTOL`` and the closest genuine near-misses
#: (~1e-11); float32: 3.1e-5, where identical weights leave their own hyperplanes by up to ~2e-6
#: (16 eps) on the bunny networks.
STALE_ROUNDOFF = 256


# ----------------------------------------------------------------------------------------------------
# The combinatorial data of the vertices
# ----------------------------------------------------------------------------------------------------


class _PaddedRows:
    """Sizes shared by the padded systems (rows ``ids``, validity ``mask``, box ``lo``)."""

    @property
    def dim(self) -> int:
        """``d``: the input dimension."""
        return int(np.shape(self.lo)[0])

    @property
    def size(self) -> int:
        """``P``: rows including padding."""
        return int(np.shape(self.ids)[0])

    def _num_real(self) -> int:
        return int(np.sum(np.asarray(self.mask)))


@pytree_dataclass(
    data=("ids", "patterns", "ref_signs", "ref_facets", "scale", "mask", "index", "lo", "hi", "zero_rtol"),
    meta=("signature", "level_set", "kind"),
)
@dataclasses.dataclass(frozen=True, eq=False)
class VertexSystem(_PaddedRows):
    """What :func:`vertex_positions` needs about ``P`` vertices, decided once from an extracted complex.

    A pytree (arrays are leaves, the rest static), so it can be passed to ``jax.jit``-compiled
    functions; systems padded to the same ``P`` (``pad_to``) reuse one compilation.

    Attributes:
      ids: ``(P, d) int32`` internal ids of the ``d`` hyperplanes solved for each vertex (``0..2d-1`` box
        facets, ``2d..2d+H-1`` network hyperplanes, ``2d+H`` the level set).
      patterns: ``(P, H) bool`` activation pattern of a region adjacent to each vertex.
      ref_signs: ``(P, H') int8`` sign of every hyperplane (and the output, with a level set) at each
        vertex at extraction; ``0`` for the hyperplanes the vertex lies on.
      ref_facets: ``(P, 2d) bool`` whether the vertex lies on each box facet.
      scale: ``(H',)`` largest ``|value|`` of each hyperplane over the vertices (tolerances are relative
        to it).
      mask: ``(P,) bool`` real rows (``False`` for padding; padded rows sit at the box corner ``lo``).
      index: ``(P,) int32`` the row's vertex index in the complex (``-1`` for padding).
      lo, hi: ``(d,)`` the box.
      zero_rtol: ``()`` the relative tolerance (times ``scale``) within which the complex put its vertices
        on their own hyperplanes: 0 for a float64 complex (roundoff), float32's tolerance rule
        (``jaxpoly.extraction.DEFAULT_RTOL``) for one extracted with ``dtype=float32``. :func:`is_stale`
        allows at least that much.
      signature: static ``(input_dim, widths, breakpoints per stage, output_dim)`` of the network.
      level_set: static, whether id ``2d + H`` is the output's zero set.
      kind: static, ``"all"``, ``"level_set"`` or ``"subset"``.
    """

    ids: Array
    patterns: Array
    ref_signs: Array
    ref_facets: Array
    scale: Array
    mask: Array
    index: Array
    lo: Array
    hi: Array
    signature: tuple
    level_set: bool
    kind: str
    zero_rtol: Array = 0.0

    @property
    def num_vertices(self) -> int:
        """Real (unpadded) rows."""
        return self._num_real()

    def __repr__(self) -> str:
        return (f"VertexSystem(kind={self.kind!r}, vertices={self.num_vertices}, padded_to={self.size}, "
                f"d={self.dim}, level_set={self.level_set})")


def _signature(net: Network) -> tuple:
    return (net.input_dim, net.widths, tuple(a.num_breakpoints for a in net.activations), net.output_dim)


def _describe(sig: tuple) -> str:
    return f"input_dim={sig[0]}, widths={sig[1]}, breakpoints per stage={sig[2]}, output_dim={sig[3]}"


def check_compatible(net: Network, system: VertexSystem) -> None:
    """Raise :class:`~jaxpoly.InvalidNetworkError` unless ``net`` has the architecture the system (its
    complex) was extracted from. Works on traced networks (only shapes are compared)."""
    if not isinstance(net, Network):
        raise InvalidNetworkError(
            f"expected a jaxpoly.Network, got {type(net).__name__}; build one inside the differentiated "
            "function with jaxpoly.geometry.network_from_params, or pass to_network="
        )
    sig = _signature(net)
    if sig[:3] != system.signature[:3] or (system.level_set and sig[3] != 1):
        raise InvalidNetworkError(
            "the complex does not belong to this network: it was extracted from a network with "
            f"{_describe(system.signature)}, this one has {_describe(sig)}; extract the complex of this "
            "network with jaxpoly.extract"
        )


def _check_finite(net: Network) -> None:
    """Finite weights (concrete leaves only: traced values are checked by the caller's own code)."""
    validate_network(net)


@functools.partial(jax.jit, static_argnames=("level_set",))
def _values(net: Network, x: jax.Array, level_set: bool) -> jax.Array:
    """Every hyperplane's value ``(n, H)`` at ``x (n, d)``, plus the output's first entry if ``level_set``."""
    out, pres = net._forward(x)
    vals = net._hyperplane_values_from(pres, x)
    return jnp.concatenate([vals, out[:, :1]], axis=1) if level_set else vals


def _homogeneous_maps(net: Network, patterns: jax.Array, level_set: bool, x: jax.Array | None = None) -> jax.Array:
    """Every hyperplane's (and the output's) affine function on each vertex's region, ``(P, d + 1, H + L)``.

    Column ``h`` holds ``(a_h, c_h)`` with ``a_h . x + c_h`` the value of hyperplane ``h`` on that region
    (``L = 1``: the output's first entry as the last column). Same maps as
    :meth:`jaxpoly.Network.affine_maps`, in a layout where each layer is one ``(P (d + 1), in) @ (in, out)``
    matrix product, several times faster for many vertices.

    With points ``x (P, d)``, the same pass on vectors instead: ``(P, 1, H + L)``, the values at ``x`` of
    those affine functions (the network evaluated with each row's activation pattern held fixed).
    """
    P, d = patterns.shape[0], net.input_dim
    dtype = jnp.result_type(*[k for st in net.stages + (net.output,) for k in st.kernels], float)
    if x is None:
        const_row = (jnp.arange(d + 1) == d).astype(dtype)  # adds a bias to the constant row only
        start = jnp.broadcast_to(jnp.concatenate([jnp.eye(d, dtype=dtype), jnp.zeros((1, d), dtype)]), (P, d + 1, d))
    else:
        const_row = jnp.ones((1,), dtype)
        start = x.astype(dtype)[:, None, :]
    rows = start.shape[1]
    maps = [start]
    offs = net.hyperplane_offsets
    cols = []

    def pre_map(st):
        z = const_row[:, None] * st.bias
        for src, k in zip(st.sources, st.kernels):
            # One 2D product: XLA's CPU transpose of the batched (P, rows, in) form is ~3x slower.
            z = z + (maps[src].reshape(P * rows, -1) @ k).reshape(P, rows, -1)
        return z  # (P, rows, width)

    for i, st in enumerate(net.stages):
        z = pre_map(st)
        m = st.activation.num_breakpoints
        above = patterns[:, offs[i] : offs[i + 1]].reshape(P, st.width, m)
        if m:
            bp = jnp.asarray(st.activation.breakpoints, dtype)
            cols.append((z[..., None] - const_row[:, None, None] * bp).reshape(P, -1, st.width * m))
        slope, icpt = st.activation.slope_intercept(above)
        maps.append(z * slope[:, None, :] + const_row[:, None] * icpt[:, None, :])
    if level_set:
        cols.append(pre_map(net.output)[..., :1])
    if not cols:
        return jnp.zeros((P, rows, 0), dtype)
    return jnp.concatenate(cols, axis=-1)


def _constraint_rows(net: Network, patterns: jax.Array, lo: jax.Array, hi: jax.Array, level_set: bool):
    """All constraints of each vertex's region as rows ``A x = b``.

    Returns ``A (P, 2d + H + L, d)`` and ``b (P, 2d + H + L)`` (``L = 1`` with a level set), indexed by
    internal hyperplane id: facet ``2i`` is ``x_i = lo_i``, ``2i + 1`` is ``x_i = hi_i``.
    """
    T = _constraint_columns(net, patterns, lo, hi, level_set)
    d = lo.shape[0]
    return jnp.swapaxes(T[:, :d, :], 1, 2), -T[:, d, :]


def _constraint_columns(net: Network, patterns: jax.Array, lo: jax.Array, hi: jax.Array, level_set: bool):
    """``(P, d + 1, 2d + H + L)``: column ``j`` is ``(a_j, c_j)`` of constraint ``a_j . x + c_j = 0``."""
    hyper = _homogeneous_maps(net, patterns, level_set)
    P, d = patterns.shape[0], lo.shape[0]
    dtype = hyper.dtype
    eye2 = jnp.repeat(jnp.eye(d, dtype=dtype), 2, axis=1)  # (d, 2d): facet 2i and 2i+1 read x_i
    facet_c = -jnp.stack([lo, hi], axis=1).reshape(1, -1).astype(dtype)
    facets = jnp.broadcast_to(jnp.concatenate([eye2, facet_c]), (P, d + 1, 2 * d))
    return jnp.concatenate([facets, hyper], axis=-1)


_SOLVE_BLOCK = 2048


def _solve_primal(net: Network, system: VertexSystem) -> tuple[jax.Array, jax.Array]:
    """Positions ``x (P, d)`` and the inverses ``(P, d, d)`` of the systems ``M x = r`` they solve."""
    d = system.lo.shape[0]
    P = system.patterns.shape[0]
    if P == 0:
        dtype = jnp.result_type(*[k for st in net.stages + (net.output,) for k in st.kernels], float)
        return jnp.zeros((0, d), dtype), jnp.zeros((0, d, d), dtype)

    def block(patterns, ids):
        T = _constraint_columns(net, patterns, system.lo, system.hi, system.level_set)
        C = jnp.take_along_axis(T, ids[:, None, :], axis=2)  # (p, d + 1, d): the chosen constraints
        M = jnp.swapaxes(C[:, :d, :], 1, 2)
        eye = jnp.broadcast_to(jnp.eye(d, dtype=M.dtype), M.shape)
        sol, _ = small_solve(M, jnp.concatenate([-C[:, d, :, None], eye], axis=2))
        return sol[..., 0], sol[..., 1:]

    if P <= 2 * _SOLVE_BLOCK:
        return block(system.patterns, system.ids)
    # Blocks of vertices keep each layer's (block, d + 1, width) maps in cache: 3x faster on the
    # 27,562 vertices of the 3x16 bunny than one pass. Padding rows solve the box corner ``lo``.
    n = -(-P // _SOLVE_BLOCK)
    pad = n * _SOLVE_BLOCK - P
    patterns = jnp.pad(system.patterns, ((0, pad), (0, 0)))
    corner = jnp.broadcast_to(2 * jnp.arange(d, dtype=system.ids.dtype), (pad, d))
    ids = jnp.concatenate([system.ids, corner])
    x, inv = jax.lax.map(lambda a: block(*a),
                         (patterns.reshape(n, _SOLVE_BLOCK, -1), ids.reshape(n, _SOLVE_BLOCK, d)))
    return x.reshape(n * _SOLVE_BLOCK, d)[:P], inv.reshape(n * _SOLVE_BLOCK, d, d)[:P]


@jax.custom_jvp
def _solve(net: Network, system: VertexSystem) -> jax.Array:
    return _solve_primal(net, system)[0]


@_solve.defjvp
def _solve_jvp(primals, tangents):
    # Implicit differentiation: each vertex's chosen constraints g(x, θ) = M(θ) x - r(θ) vanish, so
    # dx = -M^{-1} ∂g/∂θ dθ, with ∂g/∂θ a forward-mode pass of the fixed-pattern network at x: vectors
    # through the layers instead of differentiating the (P, d + 1, width) maps behind M.
    net, system = primals
    x, inv = _solve_primal(net, system)
    if x.shape[0] == 0:
        return x, x

    def chosen(n):  # evaluated at x (not a constant: higher derivatives need its dependence on θ)
        vals = _homogeneous_maps(n, system.patterns, system.level_set, x)[:, 0, :]
        facets = jnp.zeros((vals.shape[0], 2 * x.shape[1]), vals.dtype)  # box facets: constants
        return jnp.take_along_axis(jnp.concatenate([facets, vals], axis=1), system.ids, axis=1)

    _, g_dot = jax.jvp(chosen, (net,), (tangents[0],))
    return x, -jnp.einsum("pij,pj->pi", inv, g_dot)


_rows64 = jax.jit(_constraint_rows, static_argnames=("level_set",))
# one compiled call (op by op, every op compiled on its own for each new shape: seconds per complex)
_solve_jit = jax.jit(_solve)


def _best_subset(rows: np.ndarray, candidates: np.ndarray, d: int) -> np.ndarray:
    """The ``d`` of ``candidates`` whose row-normalised matrix has the largest ``|det|``."""
    R = rows[candidates]
    R = R / np.maximum(np.linalg.norm(R, axis=1, keepdims=True), 1e-300)
    best, best_det = None, -1.0
    for sub in itertools.combinations(range(len(candidates)), d):
        det = abs(np.linalg.det(R[list(sub)]))
        if det > best_det:
            best, best_det = sub, det
    if best_det <= 1e-12:
        raise JaxpolyError(f"no {d} linearly independent hyperplanes among {candidates.tolist()} at a vertex")
    return candidates[list(best)]


def _pad_size(pad_to: Any, n: int) -> int:
    """The rows of a system of ``n`` padded as ``pad_to`` asks (``None``, ``"bucket"`` or an integer)."""
    if pad_to is None:
        return n
    if isinstance(pad_to, str) and pad_to == "bucket":
        return power_of_two(n)
    if not is_integer(pad_to):
        raise InvalidArgumentError(f"pad_to must be None, 'bucket' or an integer >= {n}, got {pad_to!r}")
    return int(pad_to)


def _values_padded(net: Network, x: np.ndarray, level_set: bool, round_off: bool = False):
    """:func:`_values` on rows padded to a bucket size (one compilation per bucket, not per complex);
    with ``round_off``, the values and their round-off (:meth:`Network.hyperplane_values_and_round_off`)."""
    n = len(x)
    xp = pad_rows(x, power_of_two(n))
    if round_off:
        v, err = net.hyperplane_values_and_round_off(jnp.asarray(xp), level_set=level_set)  # (compiled)
        return np.array(v)[:n], np.array(err)[:n]
    return np.array(_values(net, jnp.asarray(xp), level_set))[:n]


def _repad(s: "VertexSystem", P: int) -> "VertexSystem":
    """``s`` with its rows padded or cut to ``P`` (padding: box corner ``lo``, masked out)."""
    n = s.size

    def fit(a, fill):
        a = np.asarray(a)
        if P <= n:
            return a[:P]
        return np.concatenate([a, np.broadcast_to(fill, (P - n,) + a.shape[1:]).astype(a.dtype)])

    d = s.dim
    return dataclasses.replace(
        s, ids=fit(s.ids, 2 * np.arange(d)), patterns=fit(s.patterns, False), ref_signs=fit(s.ref_signs, 0),
        ref_facets=fit(s.ref_facets, False), mask=fit(s.mask, False), index=fit(s.index, -1))


def _extraction_rtol(c: Complex) -> float:
    """The tolerance rule a low-precision complex was extracted with (its dtype's default)."""
    from jaxpoly.extraction import DEFAULT_RTOL

    return float(DEFAULT_RTOL.get(np.dtype(c.vertices.dtype), DEFAULT_RTOL[np.dtype(np.float32)]))


def _inconsistent(c: Complex, what: str) -> None:
    """Raise for a complex whose combinatorics do not reproduce its vertices: a documented limit of a
    float32 complex, an internal error for a float64 one."""
    dtype = np.dtype(c.vertices.dtype)
    if dtype != np.float64:
        raise DegenerateError(
            f"this complex was extracted in {dtype.name} and its combinatorics do not hold in float64 ({what}): "
            f"{dtype.name} decides near-degenerate configurations at its tolerance ({_extraction_rtol(c):g} "
            "relative), not exactly, so no exact geometry follows from it. Extract in float64 (the default "
            "dtype) for vertex_positions, is_stale and the other geometry functions.")
    raise JaxpolyError(f"internal consistency check failed: {what}. Please report this with the network and box.")


def vertex_system(c: Complex, vertices: Sequence[int] | np.ndarray | None = None, *,
                  pad_to: int | str | None = None, kind: str | None = None) -> VertexSystem:
    """Precompute the combinatorics of (some of) a complex's vertices for :func:`vertex_positions`.

    For each vertex: ``d`` independent hyperplanes through it (exactly its own for a generic vertex;
    for a degenerate one the best-conditioned ``d``, decided from the stored positions), and the
    activation pattern of an adjacent region: the signs at the midpoint of one of its edges, with the
    hyperplanes containing that edge taken on their positive side (the cell the complex itself
    generates by flipping the edge's zeros). The recomputed float64 positions are verified against the
    stored ones (to 1e-6 of the box; 2^10 eps of a float32 complex, whose vertices were interpolated in
    float32), and the pattern against the signs there, which become :func:`is_stale`'s reference.

    Args:
      c: an extracted complex.
      vertices: indices ``(n,)`` of the vertices to include (default: all, in order).
      pad_to: pad to this many rows (``"bucket"``: the next power of two, at least 16), so systems of
        successive re-extractions share one ``jit`` compilation.
      kind: label stored in the system (default ``"all"`` or ``"subset"``).
    Returns:
      A :class:`VertexSystem` with ``P = pad_to or n`` rows.
    """
    if not isinstance(c, Complex):
        raise InvalidArgumentError(f"vertex_system needs a jaxpoly.Complex (from jaxpoly.extract), got "
                                   f"{type(c).__name__}")
    net, d, level_set = c.net, c.dim, bool(c.has_level_set)
    H = net.num_hyperplanes
    nid = 2 * d + H + int(level_set)
    idx = _select(vertices, c.num_vertices, "vertices")
    kind = kind or ("all" if vertices is None else "subset")
    n = len(idx)
    low_precision = np.dtype(c.vertices.dtype) != np.float64
    zero_rtol = _extraction_rtol(c) if low_precision else 0.0
    with jax.enable_x64(True):
        net64 = net.astype(np.float64)
        X = np.asarray(c.vertices, np.float64)
        vals_all = _values_padded(net64, X, level_set)  # (V, H')
        scale = np.maximum(np.abs(vals_all).max(axis=0, initial=0.0), np.finfo(np.float64).tiny)
        vz = np.asarray(c.vertex_zeros)[idx]
        on = np.zeros((n, nid), bool)  # incidence, by internal id
        rows, slots = np.nonzero(vz >= 0)
        on[rows, vz[rows, slots]] = True
        # One incident edge per vertex; its midpoint lies inside every adjacent hyperplane but its own.
        edge_of = np.full(c.num_vertices, -1, np.int64)
        E = np.asarray(c.edges)
        edge_of[E[:, 1]] = np.arange(len(E))
        edge_of[E[:, 0]] = np.arange(len(E))
        e = edge_of[idx]
        if np.any(e < 0):
            raise JaxpolyError("a vertex of the complex has no edge; the complex is malformed")
        if c._faces is not None:  # a complex built from its regions knows a cell around each vertex
            patterns = np.asarray(c.regions.patterns)[c._faces["vertex_cell"][idx], :H]
        else:
            mid = X[E[e]].mean(axis=1)
            patterns = _values_padded(net64, mid, False) > 0
            ez = np.asarray(c.edge_zeros)[e]
            er, es = np.nonzero(ez >= 2 * d)
            net_ids = ez[er, es] - 2 * d
            keep = net_ids < H  # the level set is not part of the pattern
            patterns[er[keep], net_ids[keep]] = True
        counts = on.sum(axis=1)
        if np.any(counts < d):
            raise JaxpolyError(f"a vertex lies on fewer than d={d} hyperplanes; the complex is malformed")
        ids = np.zeros((n, d), np.int64)
        simple = counts == d
        ids[simple] = np.nonzero(on[simple])[1].reshape(-1, d)
        degenerate = np.nonzero(~simple)[0]
        if len(degenerate):
            A, _ = _rows64(net64, jnp.asarray(patterns[degenerate]), jnp.asarray(c.lo), jnp.asarray(c.hi),
                           level_set)
            A = np.asarray(A)
            for k, v in enumerate(degenerate):
                ids[v] = _best_subset(A[k], np.nonzero(on[v])[0], d)
        facets = on[:, : 2 * d]
        P = _pad_size(pad_to, n)
        if P < n:
            raise InvalidArgumentError(f"pad_to={P} is smaller than the number of vertices {n}; pass 'bucket', "
                                       f"None or an integer >= {n}")
        pad = P - n
        system = VertexSystem(
            ids=np.concatenate([ids, np.tile(2 * np.arange(d), (pad, 1))]).astype(np.int32),
            patterns=np.concatenate([patterns, np.zeros((pad, H), bool)]),
            ref_signs=np.zeros((P, nid - 2 * d), np.int8),  # (set below, at the recomputed positions)
            ref_facets=np.concatenate([facets, np.zeros((pad, 2 * d), bool)]),
            scale=scale,
            mask=np.concatenate([np.ones(n, bool), np.zeros(pad, bool)]),
            index=np.concatenate([idx, -np.ones(pad, np.int64)]).astype(np.int32),
            lo=np.asarray(c.lo, np.float64), hi=np.asarray(c.hi, np.float64),
            signature=_signature(net), level_set=level_set, kind=kind, zero_rtol=np.float64(zero_rtol),
        )
        x = X[idx]
        if n:
            x = np.asarray(_solve_jit(net64, system if P == power_of_two(n) else _repad(system, power_of_two(n))))[:n]
            err = np.abs(x - X[idx]).max()
            # float64 positions agree to roundoff; float32 ones were interpolated and snapped in float32
            pos_tol = max(1e-6, 2**10 * float(np.finfo(c.vertices.dtype).eps)) if low_precision else 1e-6
            if not err <= pos_tol * max(1.0, float(np.abs(X).max())):
                _inconsistent(c, f"recomputed vertices differ from the extracted ones by {err:.3g}")
        # Signs at the recomputed (exact) positions: what is_stale compares against. A hyperplane that
        # vanishes identically around a vertex (a zero bias with all inputs off) is zero there up to
        # roundoff without passing through it: it must stay zero, like the vertex's own.
        vals = _values_padded(net64, x, level_set)
        signs = np.where(np.abs(vals) <= 1e-12 * scale, 0, np.sign(vals)).astype(np.int8)
        signs[on[:, 2 * d :]] = 0
        if H and np.any((signs[:, :H] != 0) & ((signs[:, :H] > 0) != patterns)):
            _inconsistent(c, "an edge's region disagrees with its vertex's signs")
        system = dataclasses.replace(
            system, ref_signs=np.concatenate([signs, np.zeros((pad, signs.shape[1]), np.int8)]))
    return system


def level_set_system(c: Complex, *, pad_to: int | str | None = None) -> VertexSystem:
    """:func:`vertex_system` of the level-set vertices, in the order of ``c.level_set_mesh().vertices``
    (so the mesh's ``edges``/``triangles`` index its rows)."""
    if not isinstance(c, Complex):
        raise InvalidArgumentError(f"level_set_system needs a jaxpoly.Complex (from jaxpoly.extract), got "
                                   f"{type(c).__name__}")
    return vertex_system(c, c._level_set_vertex_ids(), pad_to=pad_to, kind="level_set")


def _resolve(complex_or_system: Complex | VertexSystem, kind: str) -> tuple[VertexSystem, int | None]:
    """The system to solve and how many leading rows to return (``None``: all, for a user's system).

    A complex's systems are cached on it, padded to a bucket size so that the compiled staleness check
    is shared by the complexes of successive re-extractions.
    """
    if isinstance(complex_or_system, VertexSystem):
        return complex_or_system, None
    if not isinstance(complex_or_system, Complex):
        raise InvalidArgumentError(
            f"expected a jaxpoly.Complex (from jaxpoly.extract) or a jaxpoly.geometry.VertexSystem as the second "
            f"argument, got {type(complex_or_system).__name__}")
    c = complex_or_system
    # built from the complex's own (concrete) network, also when called inside a jit trace
    with jax.ensure_compile_time_eval():
        if kind == "all":
            system = c._cached("_geometry_vertex_system", lambda: vertex_system(c, pad_to="bucket", kind="all"))
        else:
            system = c._cached("_geometry_level_set_system", lambda: level_set_system(c, pad_to="bucket"))
    return system, system.num_vertices


def _as_network(params_or_net: Any, to_network: Callable[[Any], Network] | None) -> Network:
    if to_network is not None and not callable(to_network):
        raise InvalidArgumentError(f"to_network must be a function params -> jaxpoly.Network, got {to_network!r}")
    net = to_network(params_or_net) if to_network is not None else params_or_net
    if not isinstance(net, Network):
        raise InvalidNetworkError(
            f"expected a jaxpoly.Network, got {type(net).__name__}; for a params tree pass "
            "to_network=... (e.g. jaxpoly.geometry.network_from_flax_params)"
        )
    return net


# ----------------------------------------------------------------------------------------------------
# Positions and staleness
# ----------------------------------------------------------------------------------------------------


def vertex_positions(params_or_net: Any, complex_or_system: Complex | VertexSystem, *,
                     to_network: Callable[[Any], Network] | None = None) -> jax.Array:
    """Every vertex recomputed from its ``d`` hyperplanes by a linear solve: a pure function of the weights.

    ``jax.grad``/``jax.jacobian``/``jax.jvp`` with respect to the network (or to ``params`` with
    ``to_network``) reach every weight and bias the vertex depends on; works under ``jit`` and ``vmap``
    (e.g. over an ensemble of parameter sets sharing the combinatorics; pass a :class:`VertexSystem`,
    not a :class:`~jaxpoly.Complex`, into compiled code). Box facets are constants.

    Args:
      params_or_net: a :class:`~jaxpoly.Network`, or anything ``to_network`` turns into one.
      complex_or_system: a complex (all its vertices, cached system) or a :class:`VertexSystem`.
      to_network: optional traceable converter, e.g. :func:`network_from_flax_params`.
    Returns:
      ``(V, d)`` positions (``(P, d)`` for a padded system; padded rows are at ``lo``), in the network's
      float dtype.
    Raises:
      InvalidNetworkError: architecture mismatch, or non-finite (concrete) weights.
      InvalidArgumentError: the second argument is neither a complex nor a :class:`VertexSystem`.
      DegenerateError: a complex extracted in float32 whose combinatorics do not hold in float64 (its
        vertices are otherwise recomputed in float64 from them, within float32's tolerance).
    """
    net = _as_network(params_or_net, to_network)
    system, n = _resolve(complex_or_system, "all")
    return _positions(net, system, n)


def _positions(net: Network, system: VertexSystem, n: int | None) -> jax.Array:
    check_compatible(net, system)
    _check_finite(net)
    x = _solve_jit(net, system)
    return x if n is None else x[:n]


def level_set_positions(params_or_net: Any, complex_or_system: Complex | VertexSystem, *,
                        to_network: Callable[[Any], Network] | None = None) -> jax.Array:
    """The level-set mesh vertices ``(n, d)`` as functions of the weights, in the order of
    ``complex.level_set_mesh().vertices``; pass a complex or a system from :func:`level_set_system`."""
    system, n = _resolve(complex_or_system, "level_set")
    if system.kind != "level_set":
        raise InvalidArgumentError(f"level_set_positions needs a system from level_set_system, got kind="
                                   f"{system.kind!r}; pass the complex or jaxpoly.geometry.level_set_system(complex)")
    return _positions(_as_network(params_or_net, to_network), system, n)


def _stale_rows(net: Network, system: VertexSystem, rtol: float) -> jax.Array:
    if system.patterns.shape[0] == 0:
        return jnp.zeros((0,), bool)
    x = _solve_jit(net, system)
    vals = _values(net, x, system.level_set)
    ref = system.ref_signs
    # The tolerances follow the dtype of this computation (the network's: float32 weights, or any
    # network with x64 off, solve and evaluate in float32) and the complex's own precision.
    noise = STALE_ROUNDOFF * float(jnp.finfo(vals.dtype).eps)
    zero = jnp.maximum(jnp.maximum(rtol, noise), system.zero_rtol).astype(vals.dtype)
    scale = system.scale.astype(vals.dtype)
    ok_h = jnp.where(ref != 0, (jnp.sign(vals) == ref) | (jnp.abs(vals) <= noise * scale),
                     jnp.abs(vals) <= zero * scale)
    lo, hi = system.lo.astype(x.dtype), system.hi.astype(x.dtype)
    box_tol, box_noise = zero * (hi - lo), noise * (hi - lo)
    on_lo, on_hi = system.ref_facets[:, 0::2], system.ref_facets[:, 1::2]
    ok_lo = jnp.where(on_lo, jnp.abs(x - lo) <= box_tol, x - lo > -box_noise)
    ok_hi = jnp.where(on_hi, jnp.abs(x - hi) <= box_tol, hi - x > -box_noise)
    ok = jnp.all(ok_h, axis=1) & jnp.all(ok_lo & ok_hi, axis=1) & jnp.all(jnp.isfinite(x), axis=1)
    return system.mask & ~ok


_stale_rows_jit = jax.jit(_stale_rows)


def check_rtol(rtol: Any) -> None:
    """Raise :class:`InvalidArgumentError` unless ``rtol`` is a finite real number ``>= 0``."""
    if not is_real(rtol) or not np.isfinite(rtol) or rtol < 0:
        raise InvalidArgumentError(f"rtol must be a finite number >= 0 (default {STALE_RTOL:g}), got {rtol!r}")


def stale_vertices(params_or_net: Any, complex_or_system: Complex | VertexSystem, *,
                   rtol: float = STALE_RTOL, to_network: Callable[[Any], Network] | None = None) -> np.ndarray:
    """``(V,) bool`` (``(P,)`` for a system): the vertices whose combinatorics no longer hold for these
    weights.

    A vertex is stale when, at its recomputed position ``x(θ)`` evaluated through the network, some
    hyperplane it did not lie on changed sign (or became zero), a box constraint it did not lie on is
    no longer strict, one of its own hyperplanes is no longer zero to ``rtol`` times that hyperplane's
    scale (only possible for a degenerate vertex or an inconsistent pattern), or the solve failed.

    The tolerances follow the precision of the computation, which is the network's (float32 weights,
    or any network with x64 off, solve and evaluate in float32): own hyperplanes may be off zero by
    ``max(rtol, STALE_ROUNDOFF * eps)`` of their scale (float64: ``rtol``; float32: 3.1e-5), and a
    sign change within ``STALE_ROUNDOFF * eps`` of the scale (float64: 5.7e-14) is roundoff, not a
    change. On a complex extracted in float32 the own hyperplanes get float32's tolerance rule (1e-5)
    too. Changes below these are not seen.

    Raises:
      InvalidNetworkError: architecture mismatch or non-finite weights.
      InvalidArgumentError: the second argument is neither a complex nor a :class:`VertexSystem`.
      DegenerateError: a float32 complex whose combinatorics do not hold in float64.
    """
    check_rtol(rtol)
    net = _as_network(params_or_net, to_network)
    system, n = _resolve(complex_or_system, "all")
    check_compatible(net, system)
    _check_finite(net)
    rows = np.asarray(_stale_rows_jit(net, system, float(rtol)))
    return rows if n is None else rows[:n]


def is_stale(params_or_net: Any, complex_or_system: Complex | VertexSystem, *, rtol: float = STALE_RTOL,
             to_network: Callable[[Any], Network] | None = None) -> bool:
    """Whether the complex's combinatorics no longer hold for these weights (see :func:`stale_vertices`).

    With a complex (or a system of *all* its vertices) this is an exact test for a generic arrangement:
    if every vertex keeps its strict signs, every cell — a simple polytope cut out by its region's
    affine pieces — keeps its vertices, hence (Balinski: its vertex graph is connected) its whole face
    lattice, and no hyperplane piece can enter a cell without changing the sign of one of its
    vertices. Degenerate vertices (more than ``d`` hyperplanes) are checked up to ``rtol``; the
    tolerances follow the computation's precision (see :func:`stale_vertices`).

    Raises:
      InvalidNetworkError: architecture mismatch or non-finite weights.
      InvalidArgumentError: the second argument is neither a complex nor a :class:`VertexSystem`.
    """
    return bool(np.any(stale_vertices(params_or_net, complex_or_system, rtol=rtol, to_network=to_network)))


# ----------------------------------------------------------------------------------------------------
# Region inradii (Chebyshev radii) as functions of the parameters
# ----------------------------------------------------------------------------------------------------


@pytree_dataclass(
    data=("patterns", "ids", "signs", "slot_mask", "center", "mask", "index", "lo", "hi"),
    meta=("signature", "level_set"),
)
@dataclasses.dataclass(frozen=True, eq=False)
class InradiusSystem(_PaddedRows):
    """What :func:`region_inradius` needs about ``P`` regions, decided once on the host.

    A pytree like :class:`VertexSystem` (arrays are leaves, the rest static): pass it, not the complex,
    into ``jit``/``vmap``-compiled code.

    Attributes:
      patterns: ``(P, H) bool`` each region's activation pattern (the network hyperplanes).
      ids: ``(P, d + 1) int32`` internal ids (``0..2d-1`` box facets, ``2d..2d+H-1`` network
        hyperplanes, ``2d+H`` the level set) of the constraints that determine the Chebyshev radius.
      signs: ``(P, d + 1)`` the side ``s = ±1`` of each: the region is ``s (a · x + c) >= 0``.
      slot_mask: ``(P, d + 1) bool`` used slots (``k <= d + 1`` constraints; fewer when the centre
        is not unique).
      center: ``(P, d + 1)`` the reference optimum ``(x0, r0)`` at the parameters it was built from
        (the centre of the optimal face when the centre is not unique).
      mask: ``(P,) bool`` real rows (``False`` for padding). index: ``(P,) int32`` the region's index
        in the complex's :attr:`~jaxpoly.Complex.regions` or the :class:`~jaxpoly.Regions` (``-1``:
        padding).
      lo, hi: ``(d,)`` the box.
      signature: static architecture (as :class:`VertexSystem`). level_set: static, whether the
        output's sign is part of the pattern (its zero set is then a constraint).
    """

    patterns: Array
    ids: Array
    signs: Array
    slot_mask: Array
    center: Array
    mask: Array
    index: Array
    lo: Array
    hi: Array
    signature: tuple
    level_set: bool

    @property
    def num_regions(self) -> int:
        """Real (unpadded) rows."""
        return self._num_real()

    def __repr__(self) -> str:
        return (f"InradiusSystem(regions={self.num_regions}, padded_to={self.size}, d={self.dim}, "
                f"level_set={self.level_set})")


_columns64 = jax.jit(_constraint_columns, static_argnames=("level_set",))


def _check_region_source(obj: Any) -> None:
    from jaxpoly.regions import Regions

    if not isinstance(obj, (Complex, Regions)):
        raise InvalidArgumentError(f"expected a jaxpoly.Complex, a jaxpoly.Regions or a jaxpoly.geometry.InradiusSystem, "
                                   f"got {type(obj).__name__}")


def _region_source(obj: Any, net: Network | None):
    """``(patterns (R, H'), lo, hi, level_set, net)`` of a complex's cells or a ``Regions``."""
    from jaxpoly.regions import Regions

    if isinstance(obj, Complex):
        return (np.asarray(obj.regions.patterns, bool), obj.lo, obj.hi, bool(obj.has_level_set),
                net if net is not None else obj.net)
    if isinstance(obj, Regions):
        net = net if net is not None else obj.net
        if net is None:
            raise InvalidArgumentError(
                "this Regions was loaded from a file and has no network: pass net= (the network it was "
                "enumerated from) to jaxpoly.geometry.inradius_system")
        return np.asarray(obj.patterns, bool), obj.lo, obj.hi, bool(obj.level_set), net
    _check_region_source(obj)


def _loaded_regions_network(obj: Any, net: Network) -> Network | None:
    """The network whose combinatorics a :class:`~jaxpoly.Regions` loaded from a file (none attached)
    takes: the one given, which must be concrete; ``None`` for anything else (its own network)."""
    from jaxpoly.regions import Regions

    if not isinstance(obj, Regions) or obj.net is not None:
        return None
    if not all(_is_concrete(leaf) for leaf in jax.tree_util.tree_leaves(net)):
        raise InvalidArgumentError(
            "this Regions was loaded from a file and has no network, and the one given is traced (under "
            "jit or grad): load it with jaxpoly.Regions.load(path, net=net) before differentiating")
    return net


def _select(items: Any, R: int, what: str = "regions") -> np.ndarray:
    """Indices ``(n,)`` into ``R`` items from indices (negative ones count from the end) or a boolean
    mask ``(R,)``; ``None``: all."""
    if items is None:
        return np.arange(R)
    idx = np.asarray(items)
    if idx.ndim > 1:
        raise InvalidArgumentError(f"{what} must be a 1-D array of indices or a boolean mask, got shape {idx.shape}")
    idx = idx.reshape(-1)
    if idx.dtype == bool:
        if idx.shape != (R,):
            raise InvalidArgumentError(f"a boolean {what} mask must have shape ({R},), got {idx.shape}")
        return np.nonzero(idx)[0]
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise InvalidArgumentError(f"{what} must be integer indices or a boolean mask, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -R or idx.max() >= R):
        raise InvalidArgumentError(f"{what} indices must lie in [{-R}, {R}), got {idx.min()}..{idx.max()}")
    return idx % max(R, 1)


def _chebyshev_host(G: np.ndarray, beta: np.ndarray, d: int):
    """Chebyshev LP ``max r s.t. G z <= beta`` (``z = (x, r)``, rows with unit ``x``-part) by HiGHS:
    ``(z, duals)``, or ``None`` if unsolved."""
    from scipy.optimize import linprog

    c = np.zeros(d + 1)
    c[d] = -1.0
    res = linprog(c, A_ub=G, b_ub=beta, bounds=[(None, None)] * (d + 1), method="highs-ds",
                  options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        return None
    return np.asarray(res.x, np.float64), -np.asarray(res.ineqlin.marginals, np.float64)


def _independent(G: np.ndarray, order: np.ndarray, limit: int) -> list[int]:
    """Greedy: the rows of ``G`` in ``order`` that are linearly independent of the ones before."""
    chosen: list[int] = []
    for j in order:
        trial = G[chosen + [int(j)]]
        if np.linalg.matrix_rank(trial, tol=1e-9) == len(chosen) + 1:
            chosen.append(int(j))
            if len(chosen) == limit:
                break
    return chosen


def _face_center(G: np.ndarray, beta: np.ndarray, S: list[int], z: np.ndarray, d: int) -> np.ndarray:
    """The mean of the extreme points of the optimal face ``{G z <= beta, G_S z = beta_S}`` along each
    direction of its null space (both ways): a point inside the face, by symmetry its centre for the
    common cases (a rectangle's midline)."""
    from scipy.optimize import linprog

    GS = G[S]
    _, sv, vt = np.linalg.svd(GS)
    null = vt[len(S):]
    pts = []
    for n in null:
        for sgn in (1.0, -1.0):
            res = linprog(sgn * n, A_ub=G, b_ub=beta, A_eq=GS, b_eq=beta[S], bounds=[(None, None)] * (d + 1),
                          method="highs-ds", options={"primal_feasibility_tolerance": 1e-10,
                                                      "dual_feasibility_tolerance": 1e-10})
            if res.status != 0:
                return z
            pts.append(np.asarray(res.x, np.float64))
    return np.mean(pts, axis=0) if pts else z


def inradius_system(complex_or_regions: Any, regions: Sequence[int] | np.ndarray | None = None, *,
                    net: Network | None = None, pad_to: int | str | None = None) -> InradiusSystem:
    """Precompute, on the host, the combinatorics of the Chebyshev balls of (some of) the regions.

    Each region is ``{x in box : s_j (a_j · x + c_j) >= 0}`` over every network hyperplane ``j`` (its
    affine piece on the region, side ``s_j`` from the pattern; the output's zero set too when the
    complex/regions split by the level set) and the ``2d`` box facets. Its Chebyshev LP

        max r   s.t.   -s_j a_j · x + |a_j| r <= s_j c_j      (every j)

    is solved once with HiGHS (rows normalised). The constraints with a positive dual multiplier
    (``k <= d + 1``, linearly independent: the LP's dual support) are kept, with the optimum as the
    reference point; when ``k < d + 1`` the centre is not unique (e.g. a rectangle) and the reference
    is the middle of the optimal face (see :func:`region_inradius`).

    Args:
      complex_or_regions: an extracted :class:`~jaxpoly.Complex` (its :attr:`~jaxpoly.Complex.regions`)
        or a :class:`~jaxpoly.Regions` from :func:`jaxpoly.enumerate_regions`.
      regions: indices (or a boolean mask) of the regions to include (default: all, in order).
      net: the network whose regions these are (default: the one stored on the complex/regions;
        required for a ``Regions`` loaded from a file).
      pad_to: pad to this many rows (``"bucket"``: next power of two, at least 16) to share a ``jit``
        compilation between systems.
    Raises:
      InvalidNetworkError: non-finite weights, or a network whose hyperplanes do not match the patterns.
      InvalidArgumentError: bad ``regions``/``pad_to``.
      JaxpolyError: a region is empty or lower-dimensional for these weights (no positive inradius).
    """
    pats, lo, hi, level_set, net = _region_source(complex_or_regions, net)
    if not isinstance(net, Network):
        raise InvalidNetworkError(f"expected a jaxpoly.Network, got {type(net).__name__}")
    _check_finite(net)
    H, d = net.num_hyperplanes, net.input_dim
    lo = np.asarray(lo, np.float64).reshape(-1)
    hi = np.asarray(hi, np.float64).reshape(-1)
    if pats.ndim != 2 or pats.shape[1] != H + int(level_set) or lo.shape != (d,):
        raise InvalidNetworkError(
            f"the regions do not belong to this network: their patterns have {pats.shape[-1]} bits in "
            f"dimension {lo.shape[0]}, the network has {H} hyperplanes{' + 1 level set' if level_set else ''} "
            f"and input_dim={d}; extract or enumerate the regions of this network")
    if level_set and net.output_dim != 1:
        raise InvalidNetworkError("the regions split by a level set, but the network has a non-scalar output")
    idx = _select(regions, pats.shape[0])
    n = len(idx)
    P = n if pad_to is None else (power_of_two(n) if pad_to == "bucket" else pad_to)
    if not isinstance(P, (int, np.integer)) or P < n:
        raise InvalidArgumentError(f"pad_to must be 'bucket' or an integer >= {n} (the regions), got {pad_to!r}")
    P, K, M = int(P), d + 1, 2 * d + H + int(level_set)
    ids = np.tile(np.arange(K) % (2 * d), (P, 1)).astype(np.int32)
    signs = np.ones((P, K))
    slot_mask = np.zeros((P, K), bool)
    center = np.zeros((P, K))
    center[:, :d] = (lo + hi) / 2
    patterns = pad_rows(pats[idx, :H], P)
    side = np.concatenate([np.tile([1.0, -1.0], d), np.zeros(M - 2 * d)])
    with jax.enable_x64(True):
        net64 = net.astype(np.float64)
        scales = np.concatenate([np.zeros(2 * d), hyperplane_scales(net64, level_set, np)])
        B = min(256, power_of_two(n))
        for s in range(0, n, B):  # padded chunks: one compilation per bucket size
            cnt = min(B, n - s)
            chunk = np.zeros((B, H), bool)
            chunk[:cnt] = patterns[s : s + cnt]
            T = np.asarray(_columns64(net64, jnp.asarray(chunk), jnp.asarray(lo), jnp.asarray(hi), level_set))
            for k in range(cnt):
                i = s + k
                sg = side.copy()
                sg[2 * d :] = np.where(pats[idx[i]], 1.0, -1.0)
                a, c = T[k, :d, :].T, T[k, d, :]
                norm = np.linalg.norm(a, axis=1)
                live = norm > CONSTANT_RTOL * scales
                if np.any(~live & (sg * c < 0)):
                    raise JaxpolyError(f"region {idx[i]} is empty for these weights (a constant hyperplane "
                                       "has the wrong sign)")
                rows = np.nonzero(live)[0]
                G = np.concatenate([-(sg[rows, None] * a[rows]) / norm[rows, None], np.ones((len(rows), 1))], 1)
                beta = sg[rows] * c[rows] / norm[rows]
                sol = _chebyshev_host(G, beta, d)
                if sol is None or not sol[0][d] > 0:
                    raise JaxpolyError(f"region {idx[i]} has no positive inradius for these weights (the "
                                       "Chebyshev LP found it empty or lower-dimensional)")
                z, lam = sol
                order = np.argsort(-lam, kind="stable")
                pos = order[lam[order] > 1e-9 * max(float(lam.max()), 1e-300)]
                S = _independent(G, pos, K)
                # e_r must lie in the span of the kept rows (stationarity), else use every active row
                er = np.eye(K)[d]
                if not S or np.linalg.norm(G[S].T @ np.linalg.lstsq(G[S].T, er, rcond=None)[0] - er) > 1e-8:
                    slack = beta - G @ z
                    active = np.argsort(slack, kind="stable")
                    active = active[slack[active] <= 1e-9 * max(1.0, float(np.abs(beta).max()))]
                    S = _independent(G, np.concatenate([pos, np.setdiff1d(active, pos)]), K)
                    if not S or np.linalg.norm(G[S].T @ np.linalg.lstsq(G[S].T, er, rcond=None)[0] - er) > 1e-8:
                        raise DegenerateError(f"region {idx[i]}: no set of active constraints determines its "
                                              "Chebyshev radius")
                if len(S) < K:
                    z = _face_center(G, beta, S, z, d)
                z = z + np.linalg.lstsq(G[S], beta[S] - G[S] @ z, rcond=None)[0]  # onto the active set
                ids[i, : len(S)] = rows[S]
                signs[i, : len(S)] = sg[rows[S]]
                slot_mask[i, : len(S)] = True
                center[i] = z
    mask = np.zeros(P, bool)
    mask[:n] = True
    index = -np.ones(P, np.int32)
    index[:n] = idx
    return InradiusSystem(patterns=patterns, ids=ids, signs=signs, slot_mask=slot_mask, center=center, mask=mask,
                          index=index, lo=lo, hi=hi, signature=_signature(net), level_set=level_set)


def _radii(net: Network, system: InradiusSystem) -> jax.Array:
    if system.patterns.shape[0] == 0:
        return jnp.zeros((0,), jnp.result_type(*[k for st in net.stages + (net.output,) for k in st.kernels], float))
    T = _constraint_columns(net, system.patterns, system.lo, system.hi, system.level_set)
    d = system.lo.shape[0]
    dtype = T.dtype
    C = jnp.take_along_axis(T, system.ids[:, None, :], axis=2)  # (P, d + 1, K)
    a = jnp.swapaxes(C[:, :d, :], 1, 2)  # (P, K, d)
    s = system.signs.astype(dtype)
    m = system.slot_mask
    G = jnp.concatenate([-s[..., None] * a, _safe_norm(a)[..., None]], axis=-1)  # (P, K, d + 1)
    G = jnp.where(m[..., None], G, 0.0)
    z0 = system.center.astype(dtype)
    resid = jnp.where(m, s * C[:, d, :] - jnp.einsum("pkj,pj->pk", G, z0), 0.0)
    gram = G @ jnp.swapaxes(G, 1, 2) + jnp.eye(m.shape[1], dtype=dtype) * (~m)[:, None, :]
    y = jnp.linalg.solve(gram, resid[..., None])[..., 0]
    r = z0[:, d] + jnp.einsum("pk,pk->p", G[..., d], y)
    return jnp.where(system.mask, r, 0.0)


_radii_jit = jax.jit(_radii)


def _cache_on(obj: Any, name: str, fn: Callable[[], Any]):
    val = obj.__dict__.get(name)
    if val is None:
        val = fn()
        object.__setattr__(obj, name, val)
    return val


def region_inradius(params_or_net: Any, complex_or_regions: Any, regions: Sequence[int] | np.ndarray | None = None,
                    *, to_network: Callable[[Any], Network] | None = None) -> jax.Array:
    """The Chebyshev radius (largest inscribed ball) of each selected linear region inside the box, as a
    pure, differentiable function of the weights.

    The combinatorics are those of :func:`inradius_system` (built once and cached on the complex /
    regions from the network stored there): each region's activation pattern and the ``k <= d + 1``
    constraints ``g_j · z <= b_j`` (``z = (x, r)``, ``g_j = (-s_j a_j, |a_j|)``, ``b_j = s_j c_j``,
    ``a_j, c_j`` the affine piece on the region: functions of every earlier layer) carrying the LP's
    dual multipliers. By LP duality ``e_r = G^T λ``, so every solution of ``G z = b`` has the same ``r``,
    the optimal value; with the host optimum ``z0`` as reference,

        z(θ) = z0 + G^T (G G^T)^{-1} (b - G z0),      r(θ) = z(θ)_r

    (minimum-norm correction; a plain solve when ``k = d + 1``). ``r(θ)`` equals the Chebyshev radius
    as long as that dual support stays optimal, and its derivative is the LP's envelope derivative
    ``λ^T (db - dG z0)``. When the centre is not unique (``k < d + 1``, e.g. a rectangle) the radius
    is not differentiable in the directions that tilt its long sides; ``z0`` is then the middle of the
    optimal face, whose envelope derivative is the mean of the one-sided derivatives in the common
    symmetric cases (and always a generalised gradient); in the other directions it is exact.

    ``jax.grad``/``jvp``/``jit``/``vmap`` as :func:`vertex_positions` (pass an :class:`InradiusSystem`
    into compiled code).

    Args:
      params_or_net: a :class:`~jaxpoly.Network`, or anything ``to_network`` turns into one.
      complex_or_regions: a :class:`~jaxpoly.Complex` (its ``regions``), a :class:`~jaxpoly.Regions`
        or an :class:`InradiusSystem`.
      regions: indices (or a boolean mask) of the regions (default all); not with a system.
      to_network: optional traceable converter, e.g. :func:`network_from_flax_params`.
    Returns:
      ``(R,)`` radii (``(P,)`` for a padded system; ``0`` on padding) in the network's float dtype.
    Raises:
      InvalidNetworkError: architecture mismatch or non-finite (concrete) weights.
      InvalidArgumentError: bad ``regions``.
    """
    net = _as_network(params_or_net, to_network)
    if isinstance(complex_or_regions, InradiusSystem):
        if regions is not None:
            raise InvalidArgumentError("regions= selects rows when building the system; with an "
                                       "InradiusSystem pass inradius_system(..., regions=...) instead")
        system, n = complex_or_regions, None
    else:
        _check_region_source(complex_or_regions)
        own = _loaded_regions_network(complex_or_regions, net)
        key = "_geometry_inradius_system"
        if regions is not None:
            sel = _select(regions, len(_region_source(complex_or_regions, own)[0]))
            key += "_" + hashlib.sha1(sel.tobytes()).hexdigest()
        with jax.ensure_compile_time_eval():  # (as for vertex systems, see _resolve)
            system = _cache_on(complex_or_regions, key,
                               lambda: inradius_system(complex_or_regions, regions, net=own, pad_to="bucket"))
        n = system.num_regions
    check_compatible(net, system)
    _check_finite(net)
    r = _radii_jit(net, system)
    return r if n is None else r[:n]


# ----------------------------------------------------------------------------------------------------
# Traceable network construction
# ----------------------------------------------------------------------------------------------------


def network_from_params(weights: Sequence[Array], biases: Sequence[Array],
                        activation: str | Activation = "relu") -> Network:
    """A sequential MLP from per-layer arrays, *without* converting them: traceable, so ``jax.grad``
    with respect to ``weights``/``biases`` flows through :func:`vertex_positions`.

    Args:
      weights: ``weights[i]`` of shape ``(in_i, out_i)`` (``z = a @ W + b``, the Flax convention).
      biases: ``biases[i]`` of shape ``(out_i,)``.
      activation: after every layer but the last (name or :class:`~jaxpoly.Activation`).
    """
    weights, biases = list(weights), list(biases)
    if not weights or len(weights) != len(biases):
        raise InvalidNetworkError(f"need one bias per weight matrix, got {len(weights)} and {len(biases)}")
    for name, arrays in (("weights", weights), ("biases", biases)):
        for i, a in enumerate(arrays):
            kind = np.dtype(a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype).kind
            if kind not in "fiu":
                raise InvalidNetworkError(f"{name}[{i}] must be an array of real numbers, got dtype kind {kind!r}")
    act = activation if isinstance(activation, Activation) else activation_from_name(activation)
    stages = tuple(Stage((w,), b, (i,), act) for i, (w, b) in enumerate(zip(weights[:-1], biases[:-1])))
    return Network(stages, Stage((weights[-1],), biases[-1], (len(stages),), identity()))


def network_from_flax_params(params: Any, activation: str | Activation = "relu") -> Network:
    """A linen MLP's variables (``{"params": {"Dense_0": {"kernel", "bias"}, ...}}`` or the params alone)
    as a :class:`~jaxpoly.Network`, traceably. The layers' order comes from their names and shapes
    (:func:`jaxpoly.loading.dense_layer_order`: ``Dense_2`` before ``Dense_10``; names that do not say
    it, where the shapes chain in more than one order, raise). Parameters other than Dense kernels and
    biases (BatchNorm, LayerNorm, convolutions, batch statistics) raise too: for such models use
    :func:`jaxpoly.from_flax`, or :func:`network_from_params` with the arrays in order."""
    from jaxpoly.loading import dense_layer_order, dense_layers_from_tree

    if not isinstance(params, Mapping):
        raise InvalidNetworkError(f"expected a linen params tree (a mapping of layer names to their "
                                  f"'kernel' and 'bias'), got {type(params).__name__}")
    where = "network_from_flax_params"
    layers = dense_layers_from_tree(params, where, error=InvalidNetworkError, reader=where, as_numpy=False)
    if not layers:
        raise InvalidNetworkError("no Dense layers (mappings with a 'kernel') in the params tree")
    order = dense_layer_order([n for n, _, _ in layers], [tuple(np.shape(k)) for _, k, _ in layers], where)
    return network_from_params([layers[i][1] for i in order], [layers[i][2] for i in order], activation)


# ----------------------------------------------------------------------------------------------------
# Geometric losses (pure, differentiable) and statistics
# ----------------------------------------------------------------------------------------------------


def _sq_dists(a: Array, b: Array) -> jax.Array:
    """``(n, m)`` squared distances, by differences (no cancellation for close points)."""
    return jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)


def _safe_norm(v: Array, axis: int = -1) -> jax.Array:
    """``|v|`` with a finite (zero) gradient at ``v = 0``."""
    sq = jnp.sum(v * v, axis=axis)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _masked_mean(v: Array, mask: Array | None) -> jax.Array:
    """The mean of ``v`` over ``mask``; ``0`` over no entries."""
    if mask is None:
        return jnp.sum(v) / max(v.size, 1)
    return jnp.sum(jnp.where(mask, v, 0.0)) / jnp.maximum(jnp.sum(mask.astype(v.dtype)), 1.0)


def _nonempty(name: str, **sets: Array) -> None:
    for what, a in sets.items():
        if a.shape[0] == 0:
            raise InvalidArgumentError(f"{name}: the point set {what} is empty, so the distance is undefined; "
                                       "check for an empty level set before calling it")


def _nearest(D: Array, axis: int) -> jax.Array:
    """``min`` of the squared distances ``D`` along ``axis`` (``inf`` over no entries), then its square
    root, with a zero gradient at distance 0."""
    dmin = jnp.min(D, axis=axis, initial=jnp.inf)
    pos = (dmin > 0) & (dmin < jnp.inf)
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, dmin, 1.0)), dmin)


def chamfer_distance(a: Array, b: Array, *, mask_a: Array | None = None, mask_b: Array | None = None,
                     squared: bool = True) -> jax.Array:
    """Symmetric Chamfer distance between point sets ``a (n, d)`` and ``b (m, d)``:

        CD = mean_{i} min_{j} |a_i - b_j|^p + mean_{j} min_{i} |a_i - b_j|^p,   p = 2 (squared) or 1

    over the rows where ``mask_a``/``mask_b`` (``(n,)``/``(m,)`` bool) hold (padding excluded). Masks
    that leave one set empty and the other not give ``inf`` (both empty: ``0``).

    Raises:
      InvalidArgumentError: ``a`` or ``b`` has no rows.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    _nonempty("chamfer_distance", a=a, b=b)
    D = _sq_dists(a, b)
    if not squared:
        D = _safe_norm(a[:, None, :] - b[None, :, :])
    Da = D if mask_b is None else jnp.where(mask_b[None, :], D, jnp.inf)
    Db = D if mask_a is None else jnp.where(mask_a[:, None], D, jnp.inf)
    return _masked_mean(jnp.min(Da, axis=1), mask_a) + _masked_mean(jnp.min(Db, axis=0), mask_b)


def hausdorff_distance(a: Array, b: Array) -> jax.Array:
    """Hausdorff distance between finite point sets: ``max(max_i min_j |a_i - b_j|, max_j min_i |a_i - b_j|)``
    (a zero gradient where it is ``0``).

    Raises:
      InvalidArgumentError: ``a`` or ``b`` has no rows.
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    _nonempty("hausdorff_distance", a=a, b=b)
    D = _sq_dists(a, b)
    return jnp.maximum(jnp.max(_nearest(D, 1)), jnp.max(_nearest(D, 0)))


def _edge_lengths(positions: Array, edges: Array) -> jax.Array:
    positions = jnp.asarray(positions)
    edges = jnp.asarray(edges)
    return _safe_norm(positions[edges[:, 1]] - positions[edges[:, 0]])


def level_set_length(positions: Array, edges: Array, *, mask: Array | None = None) -> jax.Array:
    """Length of a curve (2D level set): ``sum_e |x_{e1} - x_{e0}|`` over edges ``(m, 2)`` (optional
    ``mask (m,)``)."""
    lengths = _edge_lengths(positions, edges)
    return jnp.sum(lengths if mask is None else jnp.where(mask, lengths, 0.0))


def level_set_area(positions: Array, triangles: Array, *, mask: Array | None = None) -> jax.Array:
    """Area of a triangulated surface (3D level set): ``sum_t |(x_b - x_a) x (x_c - x_a)| / 2`` over
    ``triangles (t, 3)`` (e.g. ``mesh.triangles``; optional ``mask (t,)``)."""
    p = jnp.asarray(positions)
    t = jnp.asarray(triangles)
    a, b, c = p[t[:, 0]], p[t[:, 1]], p[t[:, 2]]
    areas = 0.5 * _safe_norm(jnp.cross(b - a, c - a))
    return jnp.sum(areas if mask is None else jnp.where(mask, areas, 0.0))


def edge_length_variance(positions: Array, edges: Array, *, mask: Array | None = None) -> jax.Array:
    """Edge-length regularity: ``mean_e (l_e - mean l)^2`` with ``l_e = |x_{e1} - x_{e0}|`` (``0`` without
    edges)."""
    lengths = _edge_lengths(positions, edges)
    mean = _masked_mean(lengths, mask)
    return _masked_mean((lengths - mean) ** 2, mask)


def boundary_distances(points: Array, boundary: Array, *, mask: Array | None = None) -> jax.Array:
    """``(m,)`` distance from each point ``(m, d)`` to its nearest boundary vertex ``(n, d)``:
    ``min_j |p_i - v_j|`` (over ``mask (n,)``; ``inf`` without boundary vertices)."""
    D = _sq_dists(jnp.asarray(points), jnp.asarray(boundary))
    if mask is not None:
        D = jnp.where(mask[None, :], D, jnp.inf)
    return _nearest(D, 1)


def segment_distances(points: Array, positions: Array, edges: Array, *, mask: Array | None = None) -> jax.Array:
    """``(m,)`` exact distance from each point ``(m, d)`` to a polyline/edge set (its ``edges (k, 2)``
    into ``positions (n, d)``, optional ``mask (k,)``):

        min_e |p - (x_{e0} + t (x_{e1} - x_{e0}))|,  t = clip(<p - x_{e0}, x_{e1} - x_{e0}> / |x_{e1} - x_{e0}|^2, 0, 1)

    In 2D with the level-set mesh's edges, this is the exact distance to the decision boundary
    (``inf`` without edges).
    """
    p = jnp.asarray(points)[:, None, :]
    x = jnp.asarray(positions)
    e = jnp.asarray(edges)
    a, b = x[e[:, 0]][None], x[e[:, 1]][None]
    ab = b - a
    L2 = jnp.sum(ab * ab, axis=-1)
    t = jnp.clip(jnp.sum((p - a) * ab, axis=-1) / jnp.where(L2 > 0, L2, 1.0), 0.0, 1.0)
    D = jnp.sum((p - a - t[..., None] * ab) ** 2, axis=-1)  # (m, k)
    if mask is not None:
        D = jnp.where(mask[None, :], D, jnp.inf)
    return _nearest(D, 1)


def margin_loss(points: Array, boundary: Array, margin: float, *, edges: Array | None = None,
                mask: Array | None = None) -> jax.Array:
    """Hinge-squared margin penalty ``mean_i relu(margin - dist_i)^2``.

    ``dist_i`` is the distance from data point ``i`` to the nearest decision-boundary vertex
    (:func:`boundary_distances`, ``mask`` over vertices) or, with ``edges``, to the nearest boundary
    edge (:func:`segment_distances`, ``mask`` over edges). ``0`` without data points, and for points
    without a boundary (no vertices or edges: nothing to keep a margin from).
    """
    if edges is None:
        dist = boundary_distances(points, boundary, mask=mask)
    else:
        dist = segment_distances(points, boundary, edges, mask=mask)
    return _masked_mean(jax.nn.relu(margin - dist) ** 2, None)


def inradius_loss(radii: Array, min_radius: float, *, mask: Array | None = None, squared: bool = False) -> jax.Array:
    """Hinge penalty on thin regions: ``mean_i relu(min_radius - r_i)`` (``relu(...)^2`` with
    ``squared``), over the regions where ``mask`` holds; ``radii`` from :func:`region_inradius`.
    Zero once every region's inscribed ball has radius ``>= min_radius`` (and without regions)."""
    r = jnp.asarray(radii)
    v = jax.nn.relu(min_radius - r)
    return _masked_mean(v * v if squared else v, mask)


def count_regions(net: Network, bounds: Sequence[Any], **extract_kwargs) -> int:
    """Number of linear regions of ``net`` inside ``bounds`` (exact, by extraction; not differentiable)."""
    from jaxpoly.extraction import extract

    return int(extract(net, bounds, level_set=False, **extract_kwargs).num_regions)
