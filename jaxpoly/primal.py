"""The primal simplex method from a vertex, batched: warm-started redundancy LPs for the facet oracle.

The oracle's redundancy LPs of one cell share its constraints and differ only in the objective: is
``max a_k · y`` over the cell without row ``k`` above ``b_k``? The dual simplex of :mod:`jaxpoly.lp`
starts each of them from its artificial box (about ``3 d`` pivots at d = 8). Here one vertex of the
cell is found once (:func:`cell_vertices`, ``d`` pivots) and every row's LP walks from that vertex
(:func:`exceeds`): a path over the cell's vertices, and it may stop as soon as ``a_k · y`` passes
``b_k`` (then row ``k`` is a facet; only redundant rows need the optimum). The walks of many rows
(and cells) run side by side as lanes of one pool, refilled with the next rows as walks end.

Method (inequality form ``A y <= b``, unit rows, coordinates centred at an interior point, so every
active offset is positive). A basis is ``d`` positions, each a tight row or *free*; its inverse
``B^{-1}`` is kept (a free position's row in ``B`` is a fixed direction). The start of
:func:`cell_vertices` is the interior point with the coordinate axes as ``d`` free positions; a row
of a vertex that is the objective's own is not a constraint of its LP, so :func:`exceeds` frees it.
Per pivot: duals ``u = B^{-T} c``; a free position leaves first (the largest ``|u_r|``), moving
along ``±B^{-1} e_r`` with the sign that does not decrease ``c · y``; otherwise a tight row with
``u_r < 0`` leaves (Dantzig: the most negative; Bland's rule, the smallest row index, after ``d + 5``
consecutive degenerate pivots), moving along ``-B^{-1} e_r``. The ratio test picks the first row the
move meets (among near-ties the largest step ``a_j · z``, or with Bland the smallest index), which
enters; ``B^{-1}`` takes the rank-one update of :func:`jaxpoly.lp._pivot`. A pivot costs
``O(M d + d^2)``.

Every answer is checked before it is used: the final point is recomputed from its basis rows with
iterative refinement and must satisfy every other row (to ``10 tol`` relative to the cell's scale);
an optimum must also have dual multipliers ``>= -10 tol`` (then ``a_k · y`` is the LP's maximum up to
that tolerance). A lane that stops otherwise (pivot budget, a free direction that does not increase the
objective and meets no row, a failed check) is *unresolved*; the caller solves it with
:mod:`jaxpoly.lp`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxpoly import lp
from jaxpoly.linalg import argmax, argmin

__all__ = ["Vertex", "cell_vertices", "exceeds", "OPTIMAL", "ABOVE", "UNRESOLVED"]

OPTIMAL = 0  # the maximum, certified; compare it with the level yourself
ABOVE = 1  # a feasible point above the level (or an unbounded improving ray): the row is a facet
UNRESOLVED = 2
_RUNNING = -1
_IDLE = -2  # a pool lane without an item (see exceeds)
_REFILL = 0.75  # a pool refills once a quarter of its walks have ended
_PIVOT_TOL = 1e-9


class Vertex(NamedTuple):
    """Simplex state of a batch ``(...)`` of instances in ``d`` dimensions.

    x ``(..., d)`` the point; basis ``(..., d) int32`` the tight row of each position (``-1``: free);
    binv ``(..., d, d)`` the inverse of the basis matrix; status ``(...) int32`` (``OPTIMAL`` /
    ``ABOVE`` / ``UNRESOLVED``; for :func:`cell_vertices`, ``OPTIMAL`` means a vertex was reached).
    """

    x: jax.Array
    basis: jax.Array
    binv: jax.Array
    status: jax.Array


class _Lane(NamedTuple):
    """The state of one walk (see :func:`_step`)."""

    x: jax.Array  # (d,)
    basis: jax.Array  # (d,) int32
    binv: jax.Array  # (d, d)
    slack: jax.Array  # (M,) b - A x
    in_basis: jax.Array  # (M,) bool
    it: jax.Array  # () int32 pivots so far
    degen: jax.Array  # () int32 consecutive degenerate pivots
    status: jax.Array  # () int32


def _lane(A, b, x, basis, binv, status=_RUNNING) -> _Lane:
    """A walk's state at the point ``x`` with its basis."""
    rows = jnp.arange(A.shape[0])
    in_basis = jnp.any(rows[:, None] == basis[None, :], axis=1)
    return _Lane(x, basis, binv, b - A @ x, in_basis, jnp.int32(0), jnp.int32(0), jnp.int32(status))


def _step(A, b, active, c, level, s: _Lane, *, max_iters: int, tol: float, until_vertex: bool) -> _Lane:
    """One pivot of one instance, maximising ``c`` (module docstring). ``A (M, d)``, ``b (M,)``,
    ``active (M,)``, ``c (d,)``; ``level``: stop once ``c · x`` exceeds it; ``until_vertex``: stop once
    no position is free. Sets ``status`` when the walk ends; a walk that has ended is left as it is, so
    a pool of walks steps them all without selecting the running ones over its whole state."""
    M, d = A.shape
    rows = jnp.arange(M)
    big = jnp.iinfo(jnp.int32).max
    x, basis, binv, slack, in_basis, it, degen, _ = s
    u = binv.T @ c
    free = basis < 0
    any_free = jnp.any(free)
    bland = degen >= d + 5
    neg = ~free & (u < -tol)
    r_free = argmax(jnp.where(free, jnp.abs(u), -1.0))
    r_dantzig = argmin(jnp.where(neg, u, jnp.inf))
    r_bland = argmin(jnp.where(neg, basis, big))
    r = jnp.where(any_free, r_free, jnp.where(bland, r_bland, r_dantzig))
    leave = any_free | jnp.any(neg)
    sgn = jnp.where(free[r], jnp.where(u[r] >= 0, 1.0, -1.0), -1.0)
    z = sgn * binv[:, r]
    gain = c @ z
    s_ = A @ z
    cand = active & ~in_basis & (s_ > _PIVOT_TOL)
    ratio = jnp.where(cand, jnp.maximum(slack, 0.0) / jnp.where(cand, s_, 1.0), jnp.inf)
    t = jnp.min(ratio)
    tie = cand & (ratio <= t * (1.0 + 1e-12) + 1e-300)
    # among the ties: the largest step a_j · z, or with Bland the smallest index (in one reduction)
    j = argmin(jnp.where(tie, jnp.where(bland, rows.astype(s_.dtype), -s_), jnp.inf))
    blocked = jnp.any(cand)
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
    w = jnp.where(go, binv.T @ A[j], onehot.astype(binv.dtype))
    moved = go & ((rows == j) | (rows == basis[r]))
    basis = jnp.where(onehot & go, j, basis).astype(jnp.int32)
    degen = jnp.where(go, jnp.where(t <= tol, degen + 1, 0), degen).astype(jnp.int32)
    return _Lane(jnp.where(go, x_new, x), basis, lp._pivot(binv, w, onehot), jnp.where(go, slack - t * s_, slack),
                 in_basis ^ moved, it + live, degen, status)


def _walk(A, b, active, c, x, basis, binv, level, *, max_iters: int, tol: float, until_vertex: bool):
    """One instance: pivots from ``(x, basis, binv)`` until the walk ends (:func:`_step`).
    Returns ``(x, basis, binv, status)``."""
    step = functools.partial(_step, A, b, active, c, level, max_iters=max_iters, tol=tol,
                             until_vertex=until_vertex)
    s = jax.lax.while_loop(lambda s: s.status == _RUNNING, step, _lane(A, b, x, basis, binv))
    return s.x, s.basis, s.binv, s.status


def _check(A, b, active, c, x, basis, binv, status, tol: float):
    """The certificate of a lane's answer; ``UNRESOLVED`` where it fails. ``ABOVE``: the walked point
    itself must satisfy every active row. ``OPTIMAL`` (no free position): the point and the duals are
    recomputed from the basis rows with iterative refinement; the point must satisfy every active row
    and the duals must be nonnegative, to ``10 tol`` relative to their size. Returns ``(x, status)``."""
    optimal = (status == OPTIMAL) & jnp.all(basis >= 0)
    Bm = A[jnp.maximum(basis, 0)]
    xr = lp._refine(Bm, binv, b[jnp.maximum(basis, 0)][:, None])[:, 0]
    ur = lp._refine(Bm.T, binv.T, c[:, None])[:, 0]
    x = jnp.where(optimal & jnp.all(jnp.isfinite(xr)), xr, x)
    t = 10.0 * tol
    viol = jnp.max(jnp.where(active, A @ x - b, -jnp.inf), initial=-jnp.inf)
    primal = jnp.all(jnp.isfinite(x)) & (viol <= t * (1.0 + jnp.max(jnp.abs(x))))
    dual = jnp.min(ur) >= -t * (1.0 + jnp.max(jnp.abs(ur)))
    ok = primal & jnp.where(optimal, dual, status == ABOVE)
    return x, jnp.where(ok, status, UNRESOLVED).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("tol",))
def cell_vertices(A: jax.Array, b: jax.Array, active: jax.Array, c: jax.Array, *, tol: float = 1e-9) -> Vertex:
    """A vertex of each cell ``{y : A y <= b on active rows}``, reached from ``y = 0`` (interior).

    Args:
      A ``(B, M, d)`` unit rows, b ``(B, M)`` offsets (positive on active rows: the origin is inside),
      active ``(B, M)``, c ``(B, d)``: the direction the ``d`` pivots favour.
    Returns:
      :class:`Vertex` ``(B, ...)``; ``status == OPTIMAL`` where a vertex (``d`` tight rows) was reached.
    """
    B, M, d = A.shape
    x0 = jnp.zeros((B, d), A.dtype)
    basis0 = jnp.full((B, d), -1, jnp.int32)
    binv0 = jnp.broadcast_to(jnp.eye(d, dtype=A.dtype), (B, d, d))
    level = jnp.full((B,), jnp.inf, A.dtype)
    walk = functools.partial(_walk, max_iters=d + 1, tol=tol, until_vertex=True)
    x, basis, binv, status = jax.vmap(walk)(A, b, active, c, x0, basis0, binv0, level)
    status = jnp.where(jnp.all(basis >= 0, axis=1), status, UNRESOLVED)
    return Vertex(x, basis, binv, status)


def refill(free: jax.Array, q: jax.Array, count: jax.Array, size: int):
    """The next items of a pool (:func:`exceeds`, :func:`jaxpoly.oracle.walk_certificates`): up to
    ``size`` of its free lanes ``free (P,) bool`` take the items ``q, q + 1, ...`` below ``count``.
    Returns ``(slots (size,), items (size,), q)``: the lanes (``P`` pads), their items (``-1``: none)
    and the next item to load."""
    P = free.shape[0]
    slots = jnp.nonzero(free, size=size, fill_value=P)[0]
    rank = jnp.arange(size, dtype=jnp.int32)
    items = jnp.where((slots < P) & (q + rank < count), q + rank, -1).astype(jnp.int32)
    return slots, items, jnp.minimum(q + jnp.sum(slots < P, dtype=jnp.int32), count)


def refill_level(q: jax.Array, count: jax.Array, lanes: int) -> jax.Array:
    """Running walks of a pool of ``lanes`` at which it stops stepping to refill (a quarter have
    ended), or to drain (0) once every item is loaded."""
    return jnp.where(q < count, int(lanes * _REFILL), 0)


@functools.partial(jax.jit, static_argnames=("max_iters", "lanes", "tol"))
def exceeds(A: jax.Array, b: jax.Array, active: jax.Array, start: Vertex, cell: jax.Array, row: jax.Array,
            threshold: jax.Array, count: jax.Array | None = None, *, max_iters: int, lanes: int = 256,
            tol: float = 1e-9) -> tuple[jax.Array, jax.Array, jax.Array]:
    """For each item ``i``: does ``max a_k · y`` over cell ``cell[i]`` without its row ``k = row[i]``
    exceed ``b_k + threshold``? Walks from the cell's vertex ``start``.

    The ``N`` items share a pool of ``lanes`` walks: walks take from 1 to ``max_iters`` pivots, so
    instead of stepping every walk until the slowest one of a chunk ends, the pool steps until a
    quarter of its walks have ended, records them (checked, as in the module docstring) and refills
    their lanes with the next items. Only those lanes (at most half the pool, gathered) are checked
    and loaded, not the whole pool.

    Args:
      A, b, active: ``(B, M, d)``, ``(B, M)``, ``(B, M)`` the cells (as for :func:`cell_vertices`).
      start: the cells' vertices (:func:`cell_vertices`); cell, row: ``(N,) int32`` items.
      threshold: ``()`` or ``(N,)`` the facet tolerance; count: ``()`` only the first ``count`` items
      are solved (the rest is padding; default all); max_iters: the pivot budget of an item;
      lanes: walks stepped together.
    Returns:
      ``(status (N,), value (N,), basis (N, d) int32)``: ``ABOVE`` (a facet: a point of the cell
      without row ``k`` lies above ``b_k + threshold``), ``OPTIMAL`` (``value`` is the certified
      maximum, at most that level: not a facet) or ``UNRESOLVED``. ``basis``: for ``OPTIMAL`` the rows
      tight at the maximum, whose nonnegative multipliers ``a_k = sum_j u_j a_j`` bound ``a_k · y``
      by ``sum_j u_j b_j`` on every polytope that has those rows (``-1`` otherwise).
    """
    B, M, d = A.shape
    N = cell.shape[0]
    P = min(lanes, N)
    count = jnp.int32(N) if count is None else jnp.minimum(jnp.asarray(count, jnp.int32), N)
    threshold = jnp.broadcast_to(jnp.asarray(threshold, A.dtype), (N,))
    K = max(P // 2, 1)  # lanes loaded and recorded per epoch (at most)
    step = jax.vmap(functools.partial(_step, max_iters=max_iters, tol=tol, until_vertex=False))

    def load(item):
        """The problems ``(A, b, active, c, level)`` and start states of items ``(K,)`` (-1: none)."""
        i = jnp.maximum(item, 0)
        ce, ro = cell[i], row[i]
        A_l, b_l = A[ce], b[ce]
        act = active[ce] & (jnp.arange(M)[None, :] != ro[:, None])
        each = jnp.arange(item.shape[0])
        prob = (A_l, b_l, act, A_l[each, ro], b_l[each, ro] + threshold[i])
        # Row k at the start vertex is freed, its row in B kept as the free position's direction:
        # B^{-1} stands, and the first move raises a_k · y alone.
        basis = jnp.where(start.basis[ce] == ro[:, None], -1, start.basis[ce])
        lane = jax.vmap(_lane)(A_l, b_l, start.x[ce], basis, start.binv[ce])
        ok = (item >= 0) & (start.status[ce] == OPTIMAL)
        return prob, lane._replace(status=jnp.where(ok, _RUNNING, _IDLE).astype(jnp.int32))

    def put(tree, at, new):
        return jax.tree.map(lambda a, n: a.at[at].set(n, mode="drop"), tree, new)

    def running(lane):
        return lane.status == _RUNNING

    def pivots(c):
        prob, lane = c
        return prob, step(*prob, lane)

    def epoch(c):
        """Load up to ``K`` idle lanes with the next items, step until enough walks have ended, record
        up to ``K`` ended walks (loading and checking only those lanes, not the whole pool)."""
        prob, lane, item, q, out_status, out_value, out_bases = c
        slots, new_item, q = refill(lane.status == _IDLE, q, count, K)
        prob, lane = put((prob, lane), slots, load(new_item))
        item = item.at[slots].set(new_item, mode="drop")
        stop_at = refill_level(q, count, P)
        prob, lane = jax.lax.while_loop(lambda c: jnp.sum(running(c[1])) > stop_at, pivots, (prob, lane))
        done = jnp.nonzero(~running(lane) & (item >= 0), size=K, fill_value=P)[0]
        at_done = jnp.minimum(done, P - 1)  # the padding (P) reads lane P - 1; its results are dropped
        pr, ln = jax.tree.map(lambda a: a[at_done], (prob, lane))
        xr, status = jax.vmap(functools.partial(_check, tol=tol))(*pr[:4], ln.x, ln.basis, ln.binv, ln.status)
        value = jnp.einsum("kd,kd->k", pr[3], xr)
        # an optimum above the level is a facet as well (the walk stops there only between pivots)
        status = jnp.where((status == OPTIMAL) & (value > pr[4]), ABOVE, status)
        at = jnp.where(done < P, item[at_done], N)
        out_status = out_status.at[at].set(status, mode="drop")
        out_value = out_value.at[at].set(value, mode="drop")
        out_basis = out_bases.at[at].set(jnp.where((status == OPTIMAL)[:, None], ln.basis, -1), mode="drop")
        lane = lane._replace(status=lane.status.at[done].set(_IDLE, mode="drop"))
        return prob, lane, item.at[done].set(-1, mode="drop"), q, out_status, out_value, out_basis

    prob, lane = load(jnp.full((P,), -1, jnp.int32))
    init = (prob, lane, jnp.full((P,), -1, jnp.int32), jnp.int32(0), jnp.full((N,), UNRESOLVED, jnp.int32),
            jnp.zeros((N,), A.dtype), jnp.full((N, d), -1, jnp.int32))
    out = jax.lax.while_loop(lambda c: (c[3] < count) | jnp.any(c[2] >= 0), epoch, init)
    return out[4], out[5], out[6]
