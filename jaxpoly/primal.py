"""The primal simplex method from a vertex, batched: warm-started redundancy LPs for the facet oracle.

The oracle's redundancy LPs of one cell share its constraints and differ only in the objective: is
``max a_k · y`` over the cell without row ``k`` above ``b_k``? The dual simplex of :mod:`jaxpoly.lp`
starts each of them from its artificial box (about ``3 d`` pivots at d = 8). Here one vertex of the
cell is found once (:func:`cell_vertices`, ``d`` pivots) and every row's LP walks from that vertex
(:func:`exceeds`): a path over the cell's vertices, and it may stop as soon as ``a_k · y`` passes
``b_k`` (then row ``k`` is a facet; only redundant rows need the optimum). The walks of many rows
(and cells) run side by side as lanes of one pool, refilled with the next rows as walks end. The
vertices they pass are vertices of the cell too (until a walk goes above its level), and a vertex
with no other row near it certifies its ``d`` tight rows as facets (:func:`_vertex_certifies`): rows
certified so before their turn are answered without a walk. The optima of redundant rows are
vertices of the cell as well: later walks may start from them instead (:func:`exceeds`' ``keep``).

Method (inequality form ``A y <= b``, unit rows, coordinates centred at an interior point, so every
active offset is positive). A basis is ``d`` positions, each a tight row or *free*; its inverse
``B^{-1}`` is kept (a free position's row in ``B`` is a fixed direction). The start of
:func:`cell_vertices` is the interior point with the coordinate axes as ``d`` free positions; a row
of a vertex that is the objective's own is not a constraint of its LP, so :func:`exceeds` frees it.
Per pivot: duals ``u = B^{-T} c``; a free position leaves first (the largest ``|u_r|``), moving
along ``±B^{-1} e_r`` with the sign that does not decrease ``c · y``; otherwise a tight row with
``u_r < 0`` leaves (steepest edge: the most negative ``u_r / |B^{-1} e_r|``, the gain per unit length
of the edge, 12 % fewer pivots than Dantzig's most negative ``u_r`` at d = 16; Bland's rule, the
smallest row index, after ``d + 5`` consecutive degenerate pivots), moving along ``-B^{-1} e_r``. The
ratio test picks the first row the move meets (among near-ties the largest step ``a_j · z``, or with
Bland the smallest index), which enters; ``B^{-1}`` takes the rank-one update of
:func:`jaxpoly.lp._pivot`. A pivot costs ``O(M d + d^2)``.

Every answer is checked before it is used, to ``10 tol`` relative to the cell's scale. An optimum
by weak duality: its multipliers ``u = B^{-T} c`` are recomputed from the basis rows with iterative
refinement and must solve ``B^T u = c`` and be ``>= 0``; then ``a_k · y = sum u_j a_j · y <= sum u_j
b_j`` on the whole cell, so that bound (the value reported) holds whatever point the walk stopped at.
A point above the level by its slacks ``b - A x``: every pivot updates them with its move's ``A z``
(computed afresh), and they must be ``>= 0`` on every active row. (A wrong "above" would only cost
the caller a neighbour that its own Chebyshev LP rejects; a wrong optimum could lose a region, hence
the dual certificate.) A lane that stops otherwise (pivot budget, a free direction that does not
increase the objective and meets no row, a failed check) is *unresolved*; the caller solves it with
:mod:`jaxpoly.lp`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpoly import lp, pool
from jaxpoly.linalg import argmax as argmax_first, argmin, min_and_argmin

__all__ = ["Vertex", "cell_vertices", "exceeds", "queue_order", "OPTIMAL", "ABOVE", "UNRESOLVED"]

OPTIMAL = 0  # the maximum, certified; compare it with the level yourself
ABOVE = 1  # a feasible point above the level (or an unbounded improving ray): the row is a facet
UNRESOLVED = 2
_RUNNING = pool.RUNNING  # a walk still pivoting
_PIVOT_TOL = 1e-9


class Vertex(NamedTuple):
    """Simplex state of a batch ``(...)`` of instances in ``d`` dimensions.

    x ``(..., d)`` the point; basis ``(..., d) int32`` the tight row of each position (``-1``: free);
    binv ``(..., d, d)`` the inverse of the basis matrix; status ``(...) int32`` (``OPTIMAL`` /
    ``ABOVE`` / ``UNRESOLVED``; for :func:`cell_vertices`, ``OPTIMAL`` means a vertex was reached);
    slack ``(..., M)`` every row's ``b - A x`` there.
    """

    x: jax.Array
    basis: jax.Array
    binv: jax.Array
    status: jax.Array
    slack: jax.Array


class _Kept(NamedTuple):
    """Start vertices of the cells of :func:`exceeds`, ``(B, 1 + keep, ...)``: slot 0 the cell's start
    vertex, then optima of its redundancy LPs (a ring, ``next (B,)`` counts those put)."""

    x: jax.Array
    basis: jax.Array
    binv: jax.Array
    valid: jax.Array
    next: jax.Array


class _Lane(NamedTuple):
    """The state of one walk (see :func:`_step`)."""

    x: jax.Array  # (d,)
    basis: jax.Array  # (d,) int32
    binv: jax.Array  # (d, d)
    norms: jax.Array  # (d,) the column norms of binv: the edges' lengths (pricing, vertex certificates)
    slack: jax.Array  # (M,) b - A x
    in_basis: jax.Array  # (M,) bool
    it: jax.Array  # () int32 pivots so far
    degen: jax.Array  # () int32 consecutive degenerate pivots
    status: jax.Array  # () int32


def _lane(A, b, x, basis, binv, status=_RUNNING) -> _Lane:
    """A walk's state at the point ``x`` with its basis."""
    rows = jnp.arange(b.shape[0])
    in_basis = jnp.any(rows[:, None] == basis[None, :], axis=1)
    slack = b - _times(A, x, b.shape[0])
    return _Lane(x, basis, binv, _col_norms(binv), slack, in_basis, jnp.int32(0), jnp.int32(0), jnp.int32(status))


def _col_norms(binv):
    """``(..., d)``: the lengths ``|B^{-1} e_r|`` of the edges out of a vertex."""
    return jnp.sqrt(jnp.sum(binv * binv, axis=-2))


def _times(A, z, M: int):
    """``A z`` over the ``M`` rows of a cell whose matrix is ``A (M, d)``, or ``A (M - 2 d, d)`` when
    its first ``2 d`` rows are the box's ``e_i`` then ``-e_i`` (see :func:`exceeds`' ``boxed``), which
    are not stored: ``(z, -z, A z)`` (the box rows' products are exact either way)."""
    return A @ z if A.shape[0] == M else jnp.concatenate([z, -z, A @ z])


def _rows_of(A, j, M: int):
    """Rows ``j (...)`` of a cell's matrix stored as for :func:`_times`: ``(..., d)``."""
    if A.shape[0] == M:
        return A[j]
    d = A.shape[1]
    unit = jnp.where(jnp.arange(d) == (j % d)[..., None], jnp.where(j < d, 1.0, -1.0)[..., None], 0.0)
    return jnp.where((j < 2 * d)[..., None], unit.astype(A.dtype), A[jnp.maximum(j - 2 * d, 0)])


def _step(A, b, active, c, level, s: _Lane, *, max_iters: int, tol: float, until_vertex: bool) -> _Lane:
    """One pivot of one instance, maximising ``c`` (module docstring). ``A (M, d)`` (or without the box
    rows, see :func:`_times`), ``b (M,)``, ``active (M,)``, ``c (d,)``; ``level``: stop once ``c · x``
    exceeds it; ``until_vertex``: stop once no position is free. Sets ``status`` when the walk ends; a
    walk that has ended is left as it is, so a pool of walks steps them all without selecting the
    running ones over its whole state."""
    M, d = b.shape[0], A.shape[1]
    rows = jnp.arange(M)
    x, basis, binv, norms, slack, in_basis, it, degen, _ = s
    u = binv.T @ c
    free = basis < 0
    any_free = jnp.any(free)
    bland = degen >= d + 5
    neg = ~free & (u < -tol)
    # the leaving position, by one argmin: a free one with the largest |u_r|; else with Bland's rule
    # the smallest row index among u_r < 0; else steepest edge, the most negative u_r per unit length
    # of its edge -B^{-1} e_r
    score = jnp.where(any_free, jnp.where(free, -jnp.abs(u), jnp.inf),
                      jnp.where(neg, jnp.where(bland, basis.astype(u.dtype), u / norms), jnp.inf))
    least, r = min_and_argmin(score)
    leave = least < jnp.inf
    sgn = jnp.where(free[r], jnp.where(u[r] >= 0, 1.0, -1.0), -1.0)
    z = sgn * binv[:, r]
    gain = c @ z
    s_ = _times(A, z, M)
    cand = active & ~in_basis & (s_ > _PIVOT_TOL)
    ratio = jnp.where(cand, jnp.maximum(slack, 0.0) / jnp.where(cand, s_, 1.0), jnp.inf)
    t = jnp.min(ratio)
    tie = cand & (ratio <= t * (1.0 + 1e-12) + 1e-300)
    # among the ties: the largest step a_j · z, or with Bland the smallest index (in one reduction)
    j = argmin(jnp.where(tie, jnp.where(bland, rows.astype(s_.dtype), -s_), jnp.inf))
    blocked = t < jnp.inf  # some row meets the move
    x_new = x + t * z
    above = blocked & (c @ x_new > level)
    improving_ray = ~blocked & (gain > tol)
    done = until_vertex & ~any_free
    status = jnp.select(
        [done | ~leave, improving_ray, ~blocked, above, it >= max_iters],
        [OPTIMAL, ABOVE, UNRESOLVED, ABOVE, UNRESOLVED], _RUNNING).astype(jnp.int32)
    live = s.status == _RUNNING
    status = jnp.where(live, status, s.status)
    go = live & ((status == _RUNNING) | (above & (status == ABOVE)))
    onehot = jnp.arange(d) == r
    w = jnp.where(go, binv.T @ _rows_of(A, j, M), onehot.astype(binv.dtype))
    moved = go & ((rows == j) | (rows == basis[r]))
    basis = jnp.where(onehot & go, j, basis).astype(jnp.int32)
    degen = jnp.where(go, jnp.where(t <= tol, degen + 1, 0), degen).astype(jnp.int32)
    # Sherman-Morrison as in lp._pivot, with column r of B^{-1} (sgn z) and w_r at hand
    binv = binv - jnp.outer(sgn * z, (w - onehot) / w[r])
    return _Lane(jnp.where(go, x_new, x), basis, binv, _col_norms(binv), jnp.where(go, slack - t * s_, slack),
                 in_basis ^ moved, it + live, degen, status)


def _walk(A, b, active, c, x, basis, binv, level, *, max_iters: int, tol: float, until_vertex: bool):
    """One instance: pivots from ``(x, basis, binv)`` until the walk ends (:func:`_step`).
    Returns ``(x, basis, binv, status)``."""
    step = functools.partial(_step, A, b, active, c, level, max_iters=max_iters, tol=tol,
                             until_vertex=until_vertex)
    s = jax.lax.while_loop(lambda s: s.status == _RUNNING, step, _lane(A, b, x, basis, binv))
    return s.x, s.basis, s.binv, s.status


def _check(A, b, active, c, level, s: _Lane, tol: float):
    """The certificate of an ended walk ``s`` of the problem ``(A (M, d), b, active, c, level)``
    (module docstring): ``(status, value)``, ``status`` ``UNRESOLVED`` where it fails; ``value`` the
    certified bound ``sum u_j b_j`` of an optimum, else ``c · x``."""
    t = 10.0 * tol
    optimal = (s.status == OPTIMAL) & jnp.all(s.basis >= 0)
    at = jnp.maximum(s.basis, 0)
    Bm = _rows_of(A, at, b.shape[0])
    u = lp._refine(Bm.T, s.binv.T, c[:, None])[:, 0]
    size = 1.0 + jnp.max(jnp.abs(u))
    dual = (jnp.all(jnp.isfinite(u)) & (jnp.max(jnp.abs(Bm.T @ u - c)) <= t * size)
            & (jnp.min(u) >= -t * size))
    bound = u @ b[at]
    primal = (jnp.all(jnp.isfinite(s.x)) & jnp.all(jnp.isfinite(s.slack))
              & (jnp.min(jnp.where(active, s.slack, jnp.inf)) >= -t * (1.0 + jnp.max(jnp.abs(s.x)))))
    reached = c @ s.x
    status = jnp.select(
        [s.status == ABOVE, optimal & dual & (bound <= level), optimal & dual],
        # an optimum above the level (the walk stops there only between pivots) is a facet when its
        # point is feasible and above it
        [jnp.where(primal, ABOVE, UNRESOLVED), OPTIMAL, jnp.where(primal & (reached > level), ABOVE, UNRESOLVED)],
        UNRESOLVED)
    return status.astype(jnp.int32), jnp.where(optimal, bound, reached)


@functools.partial(jax.jit, static_argnames=("tol", "boxed"))
def cell_vertices(A: jax.Array, b: jax.Array, active: jax.Array, c: jax.Array, *, tol: float = 1e-9,
                  boxed: bool = False) -> Vertex:
    """A vertex of each cell ``{y : A y <= b on active rows}``, reached from ``y = 0`` (interior).

    Args:
      A ``(B, M, d)`` unit rows, b ``(B, M)`` offsets (positive on active rows: the origin is inside),
      active ``(B, M)``, c ``(B, d)``: the direction the ``d`` pivots favour; boxed: as for
      :func:`exceeds`.
    Returns:
      :class:`Vertex` ``(B, ...)``; ``status == OPTIMAL`` where a vertex (``d`` tight rows) was reached.
    """
    B, M, d = A.shape
    x0 = jnp.zeros((B, d), A.dtype)
    basis0 = jnp.full((B, d), -1, jnp.int32)
    binv0 = jnp.broadcast_to(jnp.eye(d, dtype=A.dtype), (B, d, d))
    level = jnp.full((B,), jnp.inf, A.dtype)
    walk = functools.partial(_walk, max_iters=d + 1, tol=tol, until_vertex=True)
    stored = A[:, 2 * d:] if boxed else A  # the rows the pivots read (see _times)
    x, basis, binv, status = jax.vmap(walk)(stored, b, active, c, x0, basis0, binv0, level)
    status = jnp.where(jnp.all(basis >= 0, axis=1), status, UNRESOLVED)
    return Vertex(x, basis, binv, status, b - jnp.einsum("bmd,bd->bm", A, x))


def _vertex_certifies(slack, in_basis, basis, norms, active, threshold):
    """Whether the point of a walk is a vertex of its whole cell that certifies its ``d`` tight rows
    as facets beyond ``threshold``: no free position and every other row of the cell (``active (M,)``,
    the walk's own row included) has a slack above ``4 threshold max(1, W)``, ``W = sum_r |B^{-1} e_r|``
    (``norms (d,)`` its terms).

    Then for a tight row ``j`` the point ``p = v + e w``, ``w = -sum_{r != j} B^{-1} e_r`` (on hyperplane
    ``j``, every other tight row at slack ``e``; the rest lose at most ``e W``), with ``e = S / (2 max(1,
    W))`` (``S`` the smallest slack above) keeps every other row's slack above ``2 threshold``, so the
    cell without row ``j`` reaches ``b_j + 1.5 threshold``: row ``j`` is a facet, as a walk above the
    level would show."""
    W = jnp.sum(norms)
    least = jnp.min(jnp.where(active & ~in_basis, slack, jnp.inf))
    return jnp.all(basis >= 0) & (least > 4.0 * threshold * jnp.maximum(1.0, W))


def queue_order(cell: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """An order for the items of :func:`exceeds` (host side, NumPy): round robin over the cells, each
    cell's items by decreasing ``gap (N,)`` (the row's slack at the cell's start vertex). The far
    rows' long walks pass many vertices of their cell before its near rows (short walks, often tight
    at a vertex passed) come up: at d = 16 the vertices then answer 46 % of the items (25 % of the
    pivots), against 37 % in the cells' order."""
    by_cell = np.lexsort((-gap, cell))
    sorted_cells = cell[by_cell]
    rank = np.empty(len(cell), np.int64)
    rank[by_cell] = np.arange(len(cell)) - np.searchsorted(sorted_cells, sorted_cells, side="left")
    return np.lexsort((cell, rank))


@functools.partial(jax.jit, static_argnames=("max_iters", "lanes", "tol", "boxed", "keep"))
def exceeds(A: jax.Array, b: jax.Array, active: jax.Array, start: Vertex, cell: jax.Array, row: jax.Array,
            threshold: jax.Array, count: jax.Array | None = None, *, max_iters: int, lanes: int = 256,
            tol: float = 1e-9, boxed: bool = False, keep: int = 4
            ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """For each item ``i``: does ``max a_k · y`` over cell ``cell[i]`` without its row ``k = row[i]``
    exceed ``b_k + threshold``? Walks from a vertex of the cell: ``start``, or an optimum found earlier.

    The ``N`` items share a pool of ``lanes`` walks: walks take from 1 to ``max_iters`` pivots, so
    instead of stepping every walk until the slowest one of a chunk ends, the pool steps until a
    quarter of its walks have ended, records them (checked, as in the module docstring) and refills
    their lanes with the next items (only those lanes are checked and loaded, not the whole pool;
    :func:`jaxpoly.pool.run`).

    Every vertex of the whole cell that a walk passes through (and each start vertex) certifies its
    ``d`` tight rows as facets when it is far enough from every other row
    (:func:`_vertex_certifies`); an item whose row a vertex has certified by the time it comes up
    is answered ``ABOVE`` without a walk. Items are walked in the order given: see
    :func:`queue_order` for one that lets the vertices answer many of them.

    The optima of a cell's redundant rows (those certified at most ``b_k``, so inside the whole
    cell) are vertices of the cell too: the last ``keep`` of each cell are kept, and an item's walk
    starts from the one among them and ``start`` where ``a_k · y`` is largest: in a d = 16 search
    (width 64) the walks took 206 pivots per region instead of 263 (``keep=0``), same answers. An
    optimum reached from another vertex may have another optimal basis.

    Args:
      A, b, active: ``(B, M, d)``, ``(B, M)``, ``(B, M)`` the cells (as for :func:`cell_vertices`).
      start: the cells' vertices (:func:`cell_vertices`); cell, row: ``(N,) int32`` items.
      threshold: ``()`` or ``(B,)`` the facet tolerance of each cell; count: ``()`` only the first
      ``count`` items are solved (the rest is padding; default all); max_iters: the pivot budget of
      an item; lanes: walks stepped together; boxed: every cell's first ``2 d`` rows are the box's,
      ``e_i`` then ``-e_i`` (as :func:`jaxpoly.oracle.cell_rows` lays them out): the pivots then
      compute their products without reading them (at d = 16 a third of the rows, at d = 32 half);
      keep: optima kept per cell as start vertices (0: every walk starts at ``start``).
    Returns:
      ``(status (N,), value (N,), basis (N, d) int32, pivots (N,) int32)``: ``ABOVE`` (a facet: a point of the cell
      without row ``k`` lies above ``b_k + threshold``; ``value`` a lower bound of the maximum, at
      least that level), ``OPTIMAL`` (``value`` is the certified maximum, at most that level: not a facet)
      or ``UNRESOLVED``. ``basis``: for ``OPTIMAL`` the rows tight at the maximum, whose nonnegative
      multipliers ``a_k = sum_j u_j a_j`` bound ``a_k · y`` by ``sum_j u_j b_j`` on every polytope
      that has those rows (``-1`` otherwise). ``pivots``: each walk's (0 for items answered without one).
    """
    B, M, d = A.shape
    N = cell.shape[0]
    P, K = pool.sizes(lanes, N)  # lanes, and lanes loaded per epoch (at most)
    count = jnp.int32(N) if count is None else jnp.minimum(jnp.asarray(count, jnp.int32), N)
    threshold = jnp.broadcast_to(jnp.asarray(threshold, A.dtype), (B,))
    window = 4 * K  # queued items looked at per refill, the known ones answered on the way
    rows = jnp.arange(M)
    stored = A[:, 2 * d:] if boxed else A  # the rows the pivots read (see _times)
    # the start vertices' slacks and tight rows, shared by all items of a cell
    slack0 = start.slack
    in_basis0 = jnp.any(rows[None, :, None] == start.basis[:, None, :], axis=-1)
    norms0 = _col_norms(start.binv)
    certifies = jax.vmap(_vertex_certifies)(slack0, in_basis0, start.basis, norms0, active, threshold)
    known = jnp.zeros((B, M), bool).at[jnp.arange(B)[:, None], start.basis].max(
        (certifies & (start.status == OPTIMAL))[:, None], mode="drop")

    def problem(item):
        """The problems ``(A, b, active, c, level)`` of items ``(n,)``, gathered from the batch (the
        lanes keep only their item: loading a walk copies its state, not its cell's rows)."""
        i = jnp.maximum(item, 0)
        ce, ro = cell[i], row[i]
        return (stored[ce], b[ce], active[ce] & (rows[None, :] != ro[:, None]), A[ce, ro], b[ce, ro] + threshold[ce])

    def load(item, outs):
        """The start states of items ``(n,)`` (-1: none): each from the vertex of its cell, among the
        start vertex and the optima kept so far (``outs[4]``), where ``a_k · y`` is largest."""
        kept = outs[4]
        i = jnp.maximum(item, 0)
        ce, ro = cell[i], row[i]
        score = jnp.where(kept.valid[ce], jnp.einsum("nvd,nd->nv", kept.x[ce], A[ce, ro]), -jnp.inf)
        v = argmax_first(score)
        x, basis, binv = kept.x[ce, v], kept.basis[ce, v], kept.binv[ce, v]
        # Row k at the start vertex is freed, its row in B kept as the free position's direction:
        # B^{-1} stands, and the first move raises a_k · y alone.
        basis = jnp.where(basis == ro[:, None], -1, basis)
        ok = (item >= 0) & kept.valid[ce, 0]
        return jax.vmap(_lane)(stored[ce], b[ce], x, basis, binv, jnp.where(ok, _RUNNING, pool.IDLE))

    pivot = jax.vmap(functools.partial(_step, max_iters=max_iters, tol=tol, until_vertex=False))

    def step(item, lane, known):
        """One pivot of every lane; the cells' vertices it reaches certify their rows."""
        new = pivot(*problem(item), lane)
        ce = cell[jnp.maximum(item, 0)]
        # the row a pivot entered (-1: the walk did not move)
        entered = jnp.max(jnp.where(new.basis != lane.basis, new.basis, -1), axis=1)
        ok = (entered >= 0) & jax.vmap(_vertex_certifies)(new.slack, new.in_basis, new.basis, new.norms,
                                                          active[ce], threshold[ce])
        return new, known.at[jnp.where(ok, ce, B), entered].set(True, mode="drop")

    def take(free, q, known, outs):
        """The next queued items whose rows no vertex has certified, for the free lanes ``free (P,)``
        (up to ``K``), among the next ``window`` of the queue; the queued items passed over as known
        are answered ``ABOVE`` on the way. Returns ``(slots (K,), items (K,), q, outs)``."""
        slots = jnp.nonzero(free, size=K, fill_value=P)[0]
        want = jnp.sum(slots < P)
        pos = q + jnp.arange(window)
        it = jnp.minimum(pos, N - 1)
        queued = pos < count
        kn = queued & known[cell[it], row[it]]
        pick = jnp.nonzero(queued & ~kn, size=K, fill_value=window)[0]
        n_pick = jnp.minimum(jnp.sum(pick < window), want)
        q_new = jnp.where(n_pick < want, jnp.minimum(q + window, count),
                          jnp.where(want > 0, q + pick[jnp.maximum(want - 1, 0)] + 1, q))
        rank = jnp.arange(K)
        items = jnp.where((rank < n_pick) & (slots < P), it[jnp.minimum(pick, window - 1)], -1)
        at = jnp.where(kn & (pos < q_new), it, N)
        i = jnp.minimum(at, N - 1)
        outs = (outs[0].at[at].set(ABOVE, mode="drop"),
                outs[1].at[at].set(b[cell[i], row[i]] + threshold[cell[i]], mode="drop")) + outs[2:]
        return slots, items.astype(jnp.int32), q_new.astype(jnp.int32), outs

    def record(lane, item, outs):
        """Check the ended walks ``lane (n, ...)`` of items ``item (n,)`` (-1: none) and record them;
        keep their certified optima strictly inside row ``k`` as start vertices of their cell."""
        status, value = jax.vmap(functools.partial(_check, tol=tol))(*problem(item), lane)
        at = jnp.where(item >= 0, item, N)
        out_status, out_value, out_basis, out_pivots, kept = outs
        i = jnp.maximum(item, 0)
        ce = cell[i]
        ok = (item >= 0) & (status == OPTIMAL) & (value <= b[ce, row[i]])
        n = item.shape[0]
        earlier = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]
        rank = jnp.sum((ce[:, None] == ce[None, :]) & ok[None, :] & earlier, axis=1)
        put = ok & (rank < keep)
        to = jnp.where(put, ce, B)
        slot = 1 + (kept.next[ce] + rank) % max(keep, 1)
        kept = _Kept(kept.x.at[to, slot].set(lane.x, mode="drop"), kept.basis.at[to, slot].set(lane.basis, mode="drop"),
                     kept.binv.at[to, slot].set(lane.binv, mode="drop"), kept.valid.at[to, slot].set(True, mode="drop"),
                     kept.next.at[to].add(1, mode="drop"))
        return (out_status.at[at].set(status, mode="drop"), out_value.at[at].set(value, mode="drop"),
                out_basis.at[at].set(jnp.where((status == OPTIMAL)[:, None], lane.basis, -1), mode="drop"),
                out_pivots.at[at].set(lane.it, mode="drop"), kept)

    def slot0(first):
        return jnp.zeros((B, keep + 1) + first.shape[1:], first.dtype).at[:, 0].set(first)

    kept = _Kept(slot0(start.x), slot0(start.basis), slot0(start.binv), slot0(start.status == OPTIMAL),
                 jnp.zeros((B,), jnp.int32))
    outs = (jnp.full((N,), UNRESOLVED, jnp.int32), jnp.zeros((N,), A.dtype), jnp.full((N, d), -1, jnp.int32),
            jnp.zeros((N,), jnp.int32), kept)
    outs, _ = pool.run(load, step, record, lambda lane: lane.status == _RUNNING, outs, count, size=N,
                       lanes=lanes, state=known, take=take)
    return outs[:4]
