"""The primal simplex method from a vertex, batched: warm-started redundancy LPs for the facet oracle.

The oracle's redundancy LPs of one cell share its constraints and differ only in the objective: is
``max a_k · y`` over the cell without row ``k`` above ``b_k``? The dual simplex of :mod:`jaxpoly.lp`
starts each of them from its artificial box (about ``3 d`` pivots at d = 8). Here one vertex of the
cell is found once (:func:`cell_vertices`, ``d`` pivots) and every row's LP walks from that vertex
(:func:`exceeds`): a path over the cell's vertices, and it may stop as soon as ``a_k · y`` passes
``b_k`` (then row ``k`` is a facet; only redundant rows need the optimum).

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

__all__ = ["Vertex", "cell_vertices", "exceeds", "OPTIMAL", "ABOVE", "UNRESOLVED"]

OPTIMAL = 0  # the maximum, certified; compare it with the level yourself
ABOVE = 1  # a feasible point above the level (or an unbounded improving ray): the row is a facet
UNRESOLVED = 2
_RUNNING = -1
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


def _walk(A, b, active, c, x, basis, binv, level, *, max_iters: int, tol: float, until_vertex: bool):
    """One instance: pivots from ``(x, basis, binv)`` maximising ``c`` (module docstring).

    ``A (M, d)``, ``b (M,)``, ``active (M,)``, ``c (d,)``; ``level``: stop once ``c · x`` exceeds it;
    ``until_vertex``: stop once no position is free. Returns ``(x, basis, binv, status)``.
    """
    M, d = A.shape
    rows = jnp.arange(M)
    big = jnp.iinfo(jnp.int32).max

    def step(s):
        x, basis, binv, slack, in_basis, it, degen, status = s
        u = binv.T @ c
        free = basis < 0
        any_free = jnp.any(free)
        bland = degen >= d + 5
        neg = ~free & (u < -tol)
        r_free = jnp.argmax(jnp.where(free, jnp.abs(u), -1.0))
        r_dantzig = jnp.argmin(jnp.where(neg, u, jnp.inf))
        r_bland = jnp.argmin(jnp.where(neg, basis, big))
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
        j = jnp.where(bland, jnp.argmin(jnp.where(tie, rows, big)), jnp.argmax(jnp.where(tie, s_, -jnp.inf)))
        blocked = jnp.any(cand)
        x_new = x + t * z
        above = blocked & (c @ x_new > level)
        improving_ray = ~blocked & (gain > tol)
        done = until_vertex & ~any_free
        status = jnp.select(
            [done | ~leave, improving_ray, ~blocked, above, it >= max_iters],
            [OPTIMAL, ABOVE, UNRESOLVED, ABOVE, UNRESOLVED], _RUNNING).astype(jnp.int32)
        go = (status == _RUNNING) | (above & (status == ABOVE))
        onehot = jnp.arange(d) == r
        w = jnp.where(go, binv.T @ A[j], onehot.astype(binv.dtype))
        moved = go & ((rows == j) | (rows == basis[r]))
        basis = jnp.where(onehot & go, j, basis).astype(jnp.int32)
        degen = jnp.where(go, jnp.where(t <= tol, degen + 1, 0), degen).astype(jnp.int32)
        return (jnp.where(go, x_new, x), basis, lp._pivot(binv, w, onehot), jnp.where(go, slack - t * s_, slack),
                in_basis ^ moved, it + 1, degen, status)

    slack = b - A @ x
    in_basis = jnp.any(rows[:, None] == basis[None, :], axis=1)
    init = (x, basis, binv, slack, in_basis, jnp.int32(0), jnp.int32(0), jnp.int32(_RUNNING))
    x, basis, binv, _, _, _, _, status = jax.lax.while_loop(lambda s: s[-1] == _RUNNING, step, init)
    return x, basis, binv, status


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


@functools.partial(jax.jit, static_argnames=("max_iters", "tol"))
def exceeds(A: jax.Array, b: jax.Array, active: jax.Array, start: Vertex, cell: jax.Array, row: jax.Array,
            threshold: jax.Array, *, max_iters: int, tol: float = 1e-9) -> tuple[jax.Array, jax.Array]:
    """For each lane ``i``: does ``max a_k · y`` over cell ``cell[i]`` without its row ``k = row[i]``
    exceed ``b_k + threshold``? Walks from the cell's vertex ``start``.

    Args:
      A, b, active: ``(B, M, d)``, ``(B, M)``, ``(B, M)`` the cells (as for :func:`cell_vertices`).
      start: the cells' vertices (:func:`cell_vertices`); cell, row: ``(N,) int32`` lanes.
      threshold: ``()`` or ``(N,)`` the facet tolerance; max_iters: the pivot budget of a lane.
    Returns:
      ``(status (N,), value (N,))``: ``ABOVE`` (a facet: a point of the cell without row ``k`` lies
      above ``b_k + threshold``), ``OPTIMAL`` (``value`` is the certified maximum, at most that level:
      not a facet) or ``UNRESOLVED``.
    """
    A_l, b_l, act = A[cell], b[cell], active[cell]
    N, M, d = A_l.shape
    own = jnp.arange(M)[None, :] == row[:, None]
    act = act & ~own
    c = A_l[jnp.arange(N), row]
    level = b_l[jnp.arange(N), row] + threshold
    # Row k at the start vertex is freed, its row in B kept as the free position's direction: B^{-1}
    # stands, and the first move raises a_k · y alone.
    basis = jnp.where(start.basis[cell] == row[:, None], -1, start.basis[cell])
    binv = start.binv[cell]
    walk = functools.partial(_walk, max_iters=max_iters, tol=tol, until_vertex=False)
    x, basis, binv, status = jax.vmap(walk)(A_l, b_l, act, c, start.x[cell], basis, binv, level)
    xr, status = jax.vmap(functools.partial(_check, tol=tol))(A_l, b_l, act, c, x, basis, binv, status)
    value = jnp.einsum("nd,nd->n", c, xr)
    status = jnp.where(start.status[cell] == OPTIMAL, status, UNRESOLVED)
    # an optimum above the level is a facet as well (the walk stops there only between pivots)
    status = jnp.where((status == OPTIMAL) & (value > level), ABOVE, status)
    return status, value

