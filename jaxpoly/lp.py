"""Small dense linear programs, solved inside ``jax.jit`` and batched with ``jax.vmap``, in float64.

Problem (one instance; batches add leading axes)::

    maximize  c · x   subject to   a_i · x <= b_i  for every row i with mask_i,   x ∈ R^n free

with ``A (m, n)``, ``b (m,)``, ``c (n,)``, ``mask (m,) bool`` (rows with ``mask False`` are padding and
ignored, whatever they hold). The engine's LPs have few variables (``n <= ~65``) and a few hundred
padded rows: Chebyshev centres, facet (redundancy) tests, feasibility.

Method: the **dual simplex method on the inequality form**, started from a vertex of an artificial
bounding box (the "big-M box" of Chvátal, *Linear Programming*, 1983, ch. 10, and the bounded dual
simplex of Koberstein, *The dual simplex method*, PhD thesis, 2005). Equivalently it is the primal
simplex on the dual ``min b·y  s.t.  Aᵀ y = c, y >= 0`` in revised form:

* The augmented rows are ``[A; I; -I]`` with right-hand sides ``[b; M; M]``: the box
  ``|x_j| <= M`` (``M = box`` in normalised units, 10^6 by default) makes every instance dual
  feasible at a known basis, so there is **no phase 1**: the start basis is the box vertex
  ``x_j = M sign(c_j)``, whose duals ``|c_j|`` are nonnegative.
* A basis is a set ``S`` of ``n`` rows; its primal point solves ``A_S x = b_S`` (the vertex where those
  rows are tight) and its duals solve ``A_Sᵀ y_S = c``; every iterate keeps ``y_S >= 0`` (dual
  feasible), so the iterate is the optimum of the LP restricted to the rows in ``S``.
* Pricing picks a violated row to enter (Dantzig: the most violated one; rows are normalised so this
  is the largest distance), the ratio test on ``w = A_S^{-T} a_i`` picks the basic row to leave
  (Harris's two-pass test, which prefers large pivots among near-ties), and the explicit ``n × n``
  basis inverse is updated by a rank-one product-form step. A pivot costs ``O(m n + n²)``: the dense
  tableau of the dual is never formed.
* Anti-cycling: after ``n + 5`` consecutive degenerate pivots the rules switch to Bland's (first
  violated row enters, smallest row index leaves among exact ratio ties), which terminates in exact
  arithmetic; a strictly improving pivot switches back to Dantzig/Harris.
* No violated row left: optimal for the boxed LP. No positive ``w`` in the ratio test: the dual is
  unbounded, so the (boxed) primal is infeasible, and ``(y_S, y_i) = (-w, 1)`` is a Farkas ray.

Warm start (internal, ``_solve_from``): a basis that is dual feasible for the instance, such as the
optimum of a neighbouring instance with the same rows but some outside that basis, replaces the box
start; only the changed rows can then be violated, so few pivots remain (the region enumeration's
Chebyshev LPs: about 20 at d = 32 against 150 from the box). A basis that is not (singular, an index
out of range, a negative dual) falls back to the box start.

Why this and not a tableau simplex on the dual with phase 1: the box start removes phase 1 (its
pivots and its own degeneracy), only violated rows ever enter (random LPs took about ``2n`` pivots
for ``n <= 10, m <= 64`` and ``7n`` for ``n = 64, m = 300``), the work per pivot is one mat-vec
``A x`` plus ``O(n²)`` (a tableau pivot rewrites ``(n+1)(m+1)`` entries), and infeasible/unbounded
outcomes come with explicit certificates that are checked.

Scaling: each real row is divided by its norm, ``b`` by the largest distance of a row's hyperplane from
the origin (``s_b``), ``c`` by its norm; ``x`` is scaled back on return. Tolerances (``tol``) are
therefore distances relative to ``s_b``.

Verification (after the loop): the final basis's ``x̂, ŷ`` (and the rays below) are recomputed by two
rounds of iterative refinement against the basis rows themselves, so drift of the updated inverse
does not reach the answer, and the residuals ``|A_S x̂ - b̂_S|``, ``|A_Sᵀ ŷ - ĉ|`` are checked (an
LAPACK factorisation here would triple the compile time). A status other than ``NUMERICAL`` /
``ITERATION_LIMIT`` is returned only if its certificate passes, with ``t = 10 tol``:

* ``OPTIMAL``: ``max_i (â_i·x̂ - b̂_i) <= t (1 + |x̂|_∞)`` over real rows, ``min y >= -t (1 + |y|_∞)``,
  the duality gap computed with the real rows only ``<= t (1 + |ĉ·x̂| + Σ|b̂_k y_k|)``, and the dual
  weight on box rows ``<= t (1 + |y|_∞)`` (so the box did not change the optimum).
* ``UNBOUNDED``: a box row carries dual weight, and the ray ``z = A_S^{-1} e_box`` satisfies
  ``â_i·z <= t |z|_∞`` on every real row with ``ĉ·z > 0``, at a primal-feasible basis point.
* ``INFEASIBLE``: the Farkas ray restricted to real rows, ``d >= 0``, has ``b̂·d < -tol |d|_1`` and
  ``M |Âᵀd|_1 <= |b̂·d| / 2`` — no point of the box ``|x̂|_∞ <= M`` is feasible. (A zero row with
  ``b_i < 0`` is also infeasible.)

Anything else is ``NUMERICAL``; :func:`solve_lp_robust` re-solves those (and ``ITERATION_LIMIT``) with
HiGHS on the host. The box assumes every vertex that matters lies within ``M s_b`` of the origin;
problems whose optimum or feasible set lies beyond that come back ``NUMERICAL`` (or, for an
objective that grows past the box, ``UNBOUNDED``).

Under ``vmap`` the ``while_loop`` runs until the slowest instance of the batch has finished, so the
batch costs its largest pivot count times the per-pivot work of the whole batch; ``_solve_pool``
steps instances as lanes of a pool refilled as they end (:mod:`jaxpoly.pool`), about their mean. ``jax.jit``
compiles once per shape, batch size included (about 2 s on CPU): callers with varying batch sizes
should pad them to a few bucket sizes.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpoly import pool
from jaxpoly.errors import InvalidArgumentError
from jaxpoly.linalg import argmax, argmin

__all__ = [
    "LPResult",
    "OPTIMAL",
    "INFEASIBLE",
    "UNBOUNDED",
    "ITERATION_LIMIT",
    "NUMERICAL",
    "STATUS_NAMES",
    "DEFAULT_TOL",
    "DEFAULT_BOX",
    "default_max_iters",
    "solve_lp",
    "solve_lp_batch",
    "solve_lp_host",
    "solve_lp_robust",
    "chebyshev_center",
]

OPTIMAL = 0
INFEASIBLE = 1
UNBOUNDED = 2
ITERATION_LIMIT = 3
NUMERICAL = 4
STATUS_NAMES = {
    OPTIMAL: "optimal",
    INFEASIBLE: "infeasible",
    UNBOUNDED: "unbounded",
    ITERATION_LIMIT: "iteration limit",
    NUMERICAL: "numerical trouble",
}
_RUNNING = pool.RUNNING  # an instance still pivoting

DEFAULT_TOL = 1e-9
"""Feasibility/optimality tolerance, in units of the normalised problem (distances / ``s_b``)."""
DEFAULT_BOX = 1e6
"""Half-width of the artificial box, in units of ``s_b`` (the largest hyperplane distance)."""

_PIVOT_TOL = 1e-9  # smallest admissible pivot |w_k|, relative to max(1, |w|_∞)
_TINY = 1e-150  # rows with smaller norms are zero rows
_VERIFY = 10.0  # verification tolerance = _VERIFY * tol


class LPResult(NamedTuple):
    """Result of :func:`solve_lp` (leading batch axes ``…`` for the batched functions).

    * ``x (…, n)``: the optimal point when ``status == OPTIMAL`` (else the last iterate, or NaN from
      the host solver; do not use it).
    * ``value (…)``: ``c · x`` when optimal, ``+inf`` when unbounded, ``-inf`` when infeasible, NaN
      otherwise.
    * ``status (…) int32``: one of ``OPTIMAL, INFEASIBLE, UNBOUNDED, ITERATION_LIMIT, NUMERICAL``.
    * ``iterations (…) int32``: simplex pivots performed.
    """

    x: jax.Array
    value: jax.Array
    status: jax.Array
    iterations: jax.Array


def default_max_iters(m: int, n: int) -> int:
    """The default pivot budget ``4 (m + n)`` for ``m`` rows and ``n`` variables (at least 20)."""
    return max(20, 4 * (m + n))


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _require_x64() -> None:
    if not jax.config.jax_enable_x64:
        raise InvalidArgumentError(
            "jaxpoly.lp solves in float64, but JAX's x64 mode is off; enable it with "
            "jax.config.update('jax_enable_x64', True) or inside `with jax.enable_x64(True):`."
        )


def _coerce(c, A, b, mask, *, batched: bool, xp=jnp):
    """Convert to float64/bool arrays of ``xp`` (``jnp`` or ``np``) and check shapes (and finiteness
    of concrete inputs).

    Shapes: ``A (…, m, n)``, ``b (…, m)``, ``c (…, n)``, ``mask (…, m)``; without ``batched`` the
    leading ``…`` must be empty. Returns ``(c, A, b, mask, batch_shape)``.
    """
    _require_x64()
    A = xp.asarray(A, dtype=np.float64)
    b = xp.asarray(b, dtype=np.float64)
    c = xp.asarray(c, dtype=np.float64)
    if A.ndim < 2:
        raise InvalidArgumentError(f"A must have shape (..., m, n); got shape {A.shape}.")
    m, n = A.shape[-2:]
    if n < 1:
        raise InvalidArgumentError(f"the LP needs at least one variable; A has shape {A.shape}.")
    if mask is None:
        mask = xp.ones(A.shape[:-1], dtype=bool)
    mask = xp.asarray(mask)
    if mask.dtype != np.bool_:
        raise InvalidArgumentError(f"mask must be boolean; got dtype {mask.dtype}.")
    for name, arr, tail in (("c", c, (n,)), ("b", b, (m,)), ("mask", mask, (m,))):
        if arr.ndim < 1 or arr.shape[-1:] != tail:
            raise InvalidArgumentError(
                f"{name} must have shape (..., {tail[0]}) to match A of shape {A.shape}; "
                f"got {arr.shape}."
            )
    shapes = (c.shape[:-1], A.shape[:-2], b.shape[:-1], mask.shape[:-1])
    if not batched and any(shapes):
        raise InvalidArgumentError(
            "solve_lp takes one problem (c (n,), A (m, n), b (m,), mask (m,)); use solve_lp_batch "
            f"for batches. Got c {c.shape}, A {A.shape}, b {b.shape}, mask {mask.shape}."
        )
    try:
        batch = np.broadcast_shapes(*shapes)
    except ValueError:
        raise InvalidArgumentError(
            "the batch axes of c, A, b and mask do not broadcast: "
            f"c {c.shape}, A {A.shape}, b {b.shape}, mask {mask.shape}."
        ) from None
    if all(_is_concrete(v) for v in (c, A, b, mask)):
        if not bool(xp.all(xp.isfinite(c))):
            raise InvalidArgumentError("c has non-finite entries.")
        rows_ok = xp.all(xp.isfinite(A), axis=-1) & xp.isfinite(b)
        if not bool(xp.all(rows_ok | ~mask)):
            raise InvalidArgumentError(
                "A or b has non-finite entries in rows with mask True (padding rows may hold "
                "anything, real rows must be finite)."
            )
    return c, A, b, mask, tuple(batch)


# --------------------------------------------------------------------------------------------------
# The solver on one instance (pure JAX)
# --------------------------------------------------------------------------------------------------


class _Scaled(NamedTuple):
    """The normalised, box-augmented instance.

    ``rows (m + 2n, n)``; ``cols (n, m)``, the real rows transposed (the layout in which the batched
    mat-vec of the pricing step is fastest on CPU); ``rhs (m + 2n,)``; ``active (m + 2n,) bool`` (real
    rows and the box); ``c (n,)`` unit or zero; scalars ``sb`` (``x = sb x̂``), ``bad`` (non-finite
    real data) and ``trivially_infeasible`` (a zero row with ``b_i < 0``).
    """

    rows: jax.Array
    cols: jax.Array
    rhs: jax.Array
    active: jax.Array
    c: jax.Array
    sb: jax.Array
    bad: jax.Array
    trivially_infeasible: jax.Array


def _scale(c, A, b, mask, box: float, tol: float) -> _Scaled:
    """Normalise rows, ``b`` and ``c``, and append the box rows ``±e_j · x̂ <= box``."""
    m, n = A.shape
    row_finite = jnp.all(jnp.isfinite(A), axis=1) & jnp.isfinite(b)
    bad = jnp.any(mask & ~row_finite) | ~jnp.all(jnp.isfinite(c))
    A = jnp.where(row_finite[:, None], A, 0.0)
    b = jnp.where(row_finite, b, 0.0)
    c = jnp.where(jnp.isfinite(c), c, 0.0)

    norms = jnp.linalg.norm(A, axis=1)
    zero = norms <= _TINY
    real = mask & row_finite & ~zero
    bn = b / jnp.where(real, norms, 1.0)
    sb = jnp.max(jnp.where(real, jnp.abs(bn), 0.0), initial=0.0)
    sb = jnp.where(sb > _TINY, sb, 1.0)
    bmax = jnp.max(jnp.where(mask & row_finite, jnp.abs(b), 0.0), initial=0.0)
    trivially_infeasible = jnp.any(mask & row_finite & zero & (b < -tol * jnp.maximum(bmax, 1e-300)))

    An = jnp.where(real[:, None], A / jnp.where(real, norms, 1.0)[:, None], 0.0)
    eye = jnp.eye(n, dtype=A.dtype)
    rows = jnp.concatenate([An, eye, -eye], axis=0)
    rhs = jnp.concatenate([jnp.where(real, bn / sb, 0.0), jnp.full((2 * n,), box, A.dtype)])
    active = jnp.concatenate([real, jnp.ones((2 * n,), bool)])
    cn = jnp.linalg.norm(c)
    return _Scaled(rows, An.T, rhs, active, c / jnp.where(cn > 0, cn, 1.0), sb, bad,
                   trivially_infeasible)


class _State(NamedTuple):
    basis: jax.Array  # (n,) int32, indices into the augmented rows
    binv: jax.Array  # (n, n), inverse of rows[basis]
    x: jax.Array  # (n,), rows[basis] x = rhs[basis]
    y: jax.Array  # (n,), rows[basis]ᵀ y = c
    status: jax.Array  # int32, _RUNNING until the loop ends
    it: jax.Array  # int32, pivots done
    degen: jax.Array  # int32, consecutive degenerate pivots
    enter: jax.Array  # int32, the row whose ratio test failed (infeasibility certificate)


def _initial_state(p: _Scaled, m: int) -> _State:
    """The box vertex ``x̂_j = M sign(c_j)``: basis rows ``±e_j``, duals ``|c_j| >= 0``."""
    n = p.c.shape[0]
    pos = p.c >= 0
    basis = jnp.where(pos, m + jnp.arange(n), m + n + jnp.arange(n)).astype(jnp.int32)
    sign = jnp.where(pos, 1.0, -1.0)
    binv = jnp.diag(sign)
    zero = jnp.zeros((), jnp.int32)
    return _State(basis, binv, binv @ p.rhs[basis], binv.T @ p.c, jnp.int32(_RUNNING), zero, zero,
                  zero)


def _start_state(p: _Scaled, m: int, basis0, tol: float) -> _State:
    """The dual simplex's start: the basis ``basis0 (n,) int32`` (indices into the augmented rows) where
    it is dual feasible, else the box vertex of :func:`_initial_state`.

    ``basis0`` is typically the optimal basis of a neighbouring instance with the same rows (except
    some outside the basis): its duals are the same, so nonnegative, and only the rows that changed
    can be violated. It is used only when every index is a row of this instance, the basis matrix is
    nonsingular (its computed inverse reproduces the identity to ``1e-8``) and the duals are
    nonnegative up to ``tol``; anything else (``-1`` entries included) starts from the box.
    """
    n = p.c.shape[0]
    basis = jnp.clip(basis0, 0, p.rows.shape[0] - 1).astype(jnp.int32)
    Bm = p.rows[basis]
    binv = jnp.linalg.inv(Bm)
    x, y = binv @ p.rhs[basis], binv.T @ p.c
    ok = (jnp.all(basis0 >= 0) & jnp.all(p.active[basis]) & jnp.all(jnp.isfinite(binv))
          & (jnp.max(jnp.abs(Bm @ binv - jnp.eye(n, dtype=Bm.dtype))) <= 1e-8)
          & (jnp.min(y) >= -tol * (1.0 + jnp.max(jnp.abs(y)))))
    zero = jnp.zeros((), jnp.int32)
    warm = _State(basis, binv, x, y, jnp.int32(_RUNNING), zero, zero, zero)
    return jax.tree.map(lambda a, b: jnp.where(ok, a, b), warm, _initial_state(p, m))


def _choose_entering(slack, bland, tol):
    """Row to enter: the most violated (Dantzig) or the first violated (Bland). ``slack (R,)``.

    One ``argmin`` (:func:`jaxpoly.linalg.argmin`, faster than ``jnp.argmin`` on a CPU) serves both
    rules: in Bland mode the score of a violated row ``r`` is ``r - R < 0`` (smallest index wins), of
    any other row 0.
    """
    R = slack.shape[0]
    score = jnp.where(bland, jnp.where(slack < -tol, jnp.arange(R) - R, 0).astype(slack.dtype), slack)
    i = argmin(score)
    return i, slack[i] < -tol


def _choose_leaving(w, y, basis, bland, tol):
    """Position in the basis to leave, by ratio test on ``y - t w >= 0``. ``w, y, basis (n,)``.

    Harris's two-pass test (Dantzig mode): the largest pivot among rows whose ratio is within the
    tolerance-relaxed minimum. Bland mode: the smallest row index among exact minimum-ratio ties.
    Returns ``(k, has_candidate, step)``.
    """
    cand = w > _PIVOT_TOL * jnp.maximum(1.0, jnp.max(jnp.abs(w)))
    safe_w = jnp.where(cand, w, 1.0)
    ypos = jnp.maximum(y, 0.0)
    ratio = jnp.where(cand, ypos / safe_w, jnp.inf)
    rmin = jnp.min(ratio)
    tie = cand & (ratio <= rmin * (1.0 + 1e-12))
    k_bland = argmin(jnp.where(tie, basis, jnp.iinfo(jnp.int32).max))
    theta = jnp.min(jnp.where(cand, (ypos + 0.1 * tol) / safe_w, jnp.inf))
    eligible = cand & (ratio <= theta)
    k_harris = argmax(jnp.where(eligible, w, -jnp.inf))
    k = jnp.where(bland, k_bland, k_harris).astype(jnp.int32)
    return k, jnp.any(cand), ratio[k]


def _pivot(binv, w, onehot_k):
    """Inverse of the basis matrix after its row ``k`` is replaced by ``a`` with ``w = B^{-T} a``.

    ``B' = B + e_k (a - B_k)ᵀ`` so, by Sherman–Morrison, ``B'^{-1} = B^{-1} - B^{-1} e_k (w - e_k)ᵀ /
    w_k`` (one-hot arithmetic instead of a scatter: scatters with a batched index are slow under
    ``vmap`` on CPU). ``binv (n, n)``, ``w (n,)``, ``onehot_k (n,) bool``.
    """
    e = onehot_k.astype(binv.dtype)
    p = binv @ e
    return binv - jnp.outer(p, (w - e) / (w @ e))


def _slack(p: _Scaled, x, m: int):
    """``rhs - rows @ x`` over the augmented rows, ``+inf`` on padding; the box part is elementwise."""
    real = p.rhs[:m] - x @ p.cols
    n = x.shape[0]
    return jnp.where(p.active, jnp.concatenate([real, p.rhs[m:m + n] - x, p.rhs[m + n:] + x]),
                     jnp.inf)


def _step(p: _Scaled, s: _State, *, max_iters: int, tol: float, bland_after: int) -> _State:
    """One iteration of the loop: price, ratio-test, pivot (or stop)."""
    m = p.rows.shape[0] - 2 * s.x.shape[0]
    slack = _slack(p, s.x, m)
    bland = s.degen >= bland_after
    i, any_violated = _choose_entering(slack, bland, tol)
    w = s.binv.T @ p.rows[i]
    k, has_cand, step = _choose_leaving(w, s.y, s.basis, bland, tol)

    status = jnp.where(
        ~any_violated,
        OPTIMAL,
        jnp.where(~has_cand, INFEASIBLE, jnp.where(s.it >= max_iters, ITERATION_LIMIT, _RUNNING)),
    ).astype(jnp.int32)
    live = s.status == _RUNNING
    status = jnp.where(live, status, s.status)  # an ended (or idle) lane of a pool keeps its state
    go = status == _RUNNING
    onehot = jnp.arange(w.shape[0]) == k
    # A stopped iteration pivots on w = e_k with row basis[k] re-entering: the identity update.
    w = jnp.where(go, w, onehot.astype(w.dtype))
    binv = _pivot(s.binv, w, onehot)
    basis = jnp.where(onehot & go, i, s.basis)
    degenerate = step <= tol
    return _State(
        basis=basis,
        binv=binv,
        x=binv @ p.rhs[basis],
        y=binv.T @ p.c,
        status=status,
        it=s.it + go.astype(jnp.int32),
        degen=jnp.where(go, jnp.where(degenerate, s.degen + 1, 0), s.degen).astype(jnp.int32),
        enter=jnp.where(live, i, s.enter),
    )


def _refine(M, M_inv, R, steps: int = 2):
    """Solve ``M V = R`` (``M (n, n)``, ``R (n, k)``) with an approximate inverse ``M_inv`` and
    ``steps`` rounds of iterative refinement (Wilkinson), so that drift in the updated inverse does not
    reach the answer; the caller checks the residual."""
    V = M_inv @ R
    for _ in range(steps):
        V = V + M_inv @ (R - M @ V)
    return V


def _certify(p: _Scaled, s: _State, m: int, tol: float, box: float):
    """Final status and point of the final basis, with explicit residual checks (module docstring)."""
    n = p.c.shape[0]
    t = _VERIFY * tol
    B = p.rows[s.basis]
    real = p.active[:m]
    in_box = s.basis >= m
    # Stacked right-hand sides: (x, ray z) solve B v = ·, (y, Farkas w) solve Bᵀ v = ·.
    xz = _refine(B, s.binv, jnp.stack([p.rhs[s.basis], in_box.astype(B.dtype)], axis=1))
    yw = _refine(B.T, s.binv.T, jnp.stack([p.c, p.rows[s.enter]], axis=1))
    x, z = xz[:, 0], xz[:, 1]
    y, w = yw[:, 0], yw[:, 1]
    res_x = jnp.max(jnp.abs(B @ x - p.rhs[s.basis]))
    res_y = jnp.max(jnp.abs(B.T @ y - p.c))

    # OPTIMAL
    viol = jnp.max(jnp.where(real, p.rows[:m] @ x - p.rhs[:m], -jnp.inf), initial=-jnp.inf)
    xinf = jnp.max(jnp.abs(x))
    yinf = jnp.max(jnp.abs(y))
    primal_ok = (viol <= t * (1.0 + xinf)) & (res_x <= t * (1.0 + xinf))
    dual_ok = (jnp.min(y) >= -t * (1.0 + yinf)) & (res_y <= t * (1.0 + yinf))
    primal_obj = p.c @ x
    real_terms = jnp.where(in_box, 0.0, p.rhs[s.basis] * y)
    gap_ok = jnp.abs(primal_obj - jnp.sum(real_terms)) <= t * (
        1.0 + jnp.abs(primal_obj) + jnp.sum(jnp.abs(real_terms)))
    box_weight = jnp.sum(jnp.where(in_box, y, 0.0))
    box_free = box_weight <= t * (1.0 + yinf)
    optimal_ok = primal_ok & dual_ok & gap_ok & box_free

    # UNBOUNDED: move every basic box row outwards.
    zinf = jnp.max(jnp.abs(z))
    ray_viol = jnp.max(jnp.where(real, p.rows[:m] @ z, -jnp.inf), initial=-jnp.inf)
    unbounded_ok = (primal_ok & dual_ok & ~box_free & (ray_viol <= t * zinf)
                    & (p.c @ z > t * (1.0 + yinf)))

    # INFEASIBLE: Farkas ray (d_S, d_enter) = (-w, 1), restricted to real rows.
    d_basis = jnp.where(in_box, 0.0, jnp.maximum(-w, 0.0))
    d = jnp.zeros(m + 2 * n, x.dtype).at[s.basis].add(d_basis)
    d = d.at[s.enter].add(jnp.where(s.enter < m, 1.0, 0.0))
    d = d[:m] * real
    resid = jnp.sum(jnp.abs(p.rows[:m].T @ d))
    bd = p.rhs[:m] @ d
    dnorm = jnp.sum(d)
    infeasible_ok = (bd < -tol * dnorm) & (box * resid <= 0.5 * -bd)

    status = jnp.select(
        [s.status == OPTIMAL, s.status == INFEASIBLE, s.status == ITERATION_LIMIT],
        [
            jnp.where(optimal_ok, OPTIMAL, jnp.where(unbounded_ok, UNBOUNDED, NUMERICAL)),
            jnp.where(infeasible_ok, INFEASIBLE, NUMERICAL),
            ITERATION_LIMIT,
        ],
        NUMERICAL,
    )
    status = jnp.where(p.trivially_infeasible, INFEASIBLE, status)
    status = jnp.where(p.bad, NUMERICAL, status).astype(jnp.int32)
    x = jnp.where(jnp.all(jnp.isfinite(x)), x, s.x)
    return x, status


def _solve_core(c, A, b, mask, *, max_iters: int | None, tol: float, box: float,
                bland_after: int | None = None) -> LPResult:
    """:func:`solve_lp` without input checks. ``c (n,), A (m, n), b (m,), mask (m,)``.

    ``bland_after``: consecutive degenerate pivots before Bland's rule takes over (default ``n + 5``;
    0 runs Bland's rule throughout, which the tests use).
    """
    return _solve_from(c, A, b, mask, None, max_iters=max_iters, tol=tol, box=box, bland_after=bland_after)[0]


def _solve_from(c, A, b, mask, basis0, *, max_iters: int | None, tol: float, box: float,
                bland_after: int | None = None) -> tuple[LPResult, jax.Array]:
    """:func:`_solve_core` started from ``basis0 (n,) int32`` (see :func:`_start_state`; ``None``: the
    box vertex). Returns the result and the final basis ``(n,) int32`` (indices into ``A``'s rows, then
    the box rows ``e_j`` at ``m + j`` and ``-e_j`` at ``m + n + j``), ``-1`` unless ``OPTIMAL``: the
    start of a neighbouring instance."""
    m, n = A.shape
    iters = default_max_iters(m, n) if max_iters is None else int(max_iters)
    p = _scale(c, A, b, mask, box, tol)
    bland_after = n + 5 if bland_after is None else int(bland_after)
    step = functools.partial(_step, p, max_iters=iters, tol=tol, bland_after=bland_after)
    start = _initial_state(p, m) if basis0 is None else _start_state(p, m, basis0, tol)
    final = jax.lax.while_loop(lambda s: s.status == _RUNNING, step, start)
    return _finish(c, p, final, m, tol, box)


def _finish(c, p: _Scaled, final: _State, m: int, tol: float, box: float) -> tuple[LPResult, jax.Array]:
    """The certified result of an ended loop and its final basis (``-1`` unless optimal)."""
    x_hat, status = _certify(p, final, m, tol, box)
    x = x_hat * p.sb
    value = jnp.select(
        [status == OPTIMAL, status == UNBOUNDED, status == INFEASIBLE],
        [jnp.where(p.bad, jnp.nan, c @ x), jnp.inf, -jnp.inf],
        jnp.nan,
    )
    basis = jnp.where(status == OPTIMAL, final.basis, -1).astype(jnp.int32)
    return LPResult(x, value, status, final.it), basis


_solve_jit = jax.jit(_solve_core, static_argnames=("max_iters", "tol", "box", "bland_after"))


def solve_lp(c, A, b, mask=None, *, max_iters: int | None = None, tol: float = DEFAULT_TOL,
             box: float = DEFAULT_BOX) -> LPResult:
    """Solve one LP ``max c·x s.t. A x <= b`` (rows with ``mask`` False ignored), ``x`` free.

    Pure JAX: usable under ``jax.jit`` and ``jax.vmap``, static shapes, no host synchronisation.

    Args:
      c: ``(n,)`` objective (zero for a feasibility problem; the returned point is then some vertex of
        the feasible set intersected with the box, possibly far from the origin).
      A: ``(m, n)`` constraint rows.
      b: ``(m,)`` right-hand sides.
      mask: ``(m,) bool``, which rows are real; ``None`` means all. Padding rows may hold anything.
      max_iters: static pivot budget; default :func:`default_max_iters` ``= 4 (m + n)``.
      tol: feasibility tolerance relative to the problem's scale (see the module docstring).
      box: half-width of the artificial box, relative to the largest hyperplane distance.

    Returns:
      :class:`LPResult` with ``x (n,)``, scalar ``value``, ``status`` and ``iterations``.

    Raises:
      InvalidArgumentError: (a ``ValueError``) on inconsistent shapes, a non-boolean mask, non-finite
        ``c`` or real rows (checked only for concrete inputs; under ``jit`` non-finite data gives
        status ``NUMERICAL``), or when JAX's x64 mode is off.
    """
    c, A, b, mask, _ = _coerce(c, A, b, mask, batched=False)
    return _solve_jit(c, A, b, mask, max_iters=max_iters, tol=float(tol), box=float(box))


# --------------------------------------------------------------------------------------------------
# Batches
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _batched_solver(in_axes: tuple, max_iters: int | None, tol: float, box: float):
    core = functools.partial(_solve_core, max_iters=max_iters, tol=tol, box=box)
    return jax.jit(jax.vmap(core, in_axes=in_axes))


@functools.lru_cache(maxsize=None)
def _batched_solver_from(tol: float, box: float):
    """:func:`_solve_from` over a leading batch axis of every argument (``basis0 (N, n)``), jitted."""
    return jax.jit(jax.vmap(functools.partial(_solve_from, max_iters=None, tol=tol, box=box)))


@functools.partial(jax.jit, static_argnames=("lanes", "tol", "box"))
def _solve_pool(c, A, b, mask, basis0, count=None, *, lanes: int, tol: float = DEFAULT_TOL,
               box: float = DEFAULT_BOX) -> tuple[LPResult, jax.Array]:
    """:func:`_solve_from` over ``N`` instances in a pool of ``lanes`` (:mod:`jaxpoly.pool`).

    The batched solver steps every instance until the slowest ends; warm-started instances take a few
    pivots and cold ones many (the region enumeration's Chebyshev LPs at d = 32: 24 on average, the
    slowest of 64 around 60-100), so here ``lanes`` instances are stepped together, and as a quarter
    of them end they are certified (:func:`_certify`) and their lanes take the next instances, in
    order; the last (at most ``lanes / 4``) finish in a pool of that size (:func:`jaxpoly.pool.run`).
    Each lane keeps its own normalised instance (:func:`_scale`), copied in when it is loaded. Same
    results as the batched solver, instance by instance.

    Args:
      c, A, b, mask, basis0: ``(N, n)``, ``(N, m, n)``, ``(N, m)``, ``(N, m)``, ``(N, n) int32`` as for
      :func:`_solve_from` (``-1`` rows start from the box); count: ``()`` only the first ``count``
      instances are solved (the rest is padding: status ``NUMERICAL``, basis ``-1``; default all);
      lanes: instances stepped together.
    Returns:
      ``(LPResult (N, ...), basis (N, n) int32)``.
    """
    N, m, n = A.shape
    count = jnp.int32(N) if count is None else jnp.minimum(jnp.asarray(count, jnp.int32), N)
    iters = default_max_iters(m, n)
    scale = jax.vmap(functools.partial(_scale, box=box, tol=tol))
    start = jax.vmap(lambda p, basis: _start_state(p, m, basis, tol))
    # one pivot of every lane (_step leaves an ended or idle lane as it is)
    pivot = jax.vmap(functools.partial(_step, max_iters=iters, tol=tol, bland_after=n + 5))
    finish = jax.vmap(functools.partial(_finish, m=m, tol=tol, box=box))

    def load(item, outs):
        """The normalised instances and start states of ``item (k,)`` (``-1``: an idle lane)."""
        i = jnp.maximum(item, 0)
        p = scale(c[i], A[i], b[i], mask[i])
        s = start(p, basis0[i])
        return p, s._replace(status=jnp.where(item >= 0, pool.RUNNING, pool.IDLE).astype(jnp.int32))

    def step(item, lane, state):
        p, s = lane
        return (p, pivot(p, s)), state

    def record(lane, item, outs):
        """Certify the ended lanes ``(p, s) (k, ...)`` of ``item (k,)`` (-1: none) and record them."""
        res, basis = finish(c[jnp.maximum(item, 0)], *lane)
        at = jnp.where(item >= 0, item, N)
        return jax.tree.map(lambda o, v: o.at[at].set(v, mode="drop"), outs, (res, basis))

    empty = LPResult(jnp.zeros((N, n), A.dtype), jnp.full((N,), jnp.nan, A.dtype),
                     jnp.full((N,), NUMERICAL, jnp.int32), jnp.zeros((N,), jnp.int32))
    outs, _ = pool.run(load, step, record, lambda lane: lane[1].status == pool.RUNNING,
                       (empty, jnp.full((N, n), -1, jnp.int32)), count, size=N, lanes=lanes)
    return outs


def _flatten_batch(arr, batch: tuple, ndim_core: int):
    """``(arr or its broadcast flattened to (N, *core), axis)``; unbatched arrays are shared."""
    if arr.ndim == ndim_core:
        return arr, None
    core = arr.shape[arr.ndim - ndim_core:]
    return jnp.broadcast_to(arr, batch + core).reshape((-1,) + core), 0


def solve_lp_batch(c, A, b, mask=None, *, max_iters: int | None = None, tol: float = DEFAULT_TOL,
                   box: float = DEFAULT_BOX) -> LPResult:
    """:func:`solve_lp` over leading batch axes, vectorised with ``jax.vmap`` and jitted.

    Shapes ``c (…, n)``, ``A (…, m, n)``, ``b (…, m)``, ``mask (…, m)``; the ``…`` axes broadcast (an
    argument without them, e.g. one ``A`` shared by many objectives, is not copied). Compiled
    functions are cached per argument layout and static options; ``jax.jit`` caches per shape.

    Returns:
      :class:`LPResult` with axes ``…`` in front: ``x (…, n)``, ``value (…)``, ``status (…)``,
      ``iterations (…)``.
    """
    c, A, b, mask, batch = _coerce(c, A, b, mask, batched=True)
    if not batch:
        return solve_lp(c, A, b, mask, max_iters=max_iters, tol=tol, box=box)
    n = A.shape[-1]
    if math.prod(batch) == 0:
        empty = jnp.zeros(batch, jnp.int32)
        return LPResult(jnp.zeros(batch + (n,)), jnp.zeros(batch), empty, empty)
    parts = [_flatten_batch(c, batch, 1), _flatten_batch(A, batch, 2), _flatten_batch(b, batch, 1),
             _flatten_batch(mask, batch, 1)]
    fn = _batched_solver(tuple(ax for _, ax in parts), max_iters, float(tol), float(box))
    res = fn(*(arr for arr, _ in parts))
    return LPResult(res.x.reshape(batch + (n,)), res.value.reshape(batch),
                    res.status.reshape(batch), res.iterations.reshape(batch))


# --------------------------------------------------------------------------------------------------
# Host fallback
# --------------------------------------------------------------------------------------------------


_SCIPY_STATUS = {0: OPTIMAL, 1: ITERATION_LIMIT, 2: INFEASIBLE, 3: UNBOUNDED}


def _highs(c, A, b, presolve: bool = True):
    from scipy.optimize import linprog

    n = c.shape[0]
    return linprog(
        -c,
        A_ub=A if A.shape[0] else None,
        b_ub=b if A.shape[0] else None,
        bounds=[(None, None)] * n,
        method="highs-ds",
        options={"presolve": presolve, "primal_feasibility_tolerance": 1e-10,
                 "dual_feasibility_tolerance": 1e-10},
    )


def solve_lp_host(c, A, b, mask=None) -> LPResult:
    """Solve one LP with SciPy's HiGHS (dual simplex) on the host; NumPy in, NumPy out.

    Same problem, shapes and status codes as :func:`solve_lp`. HiGHS's "unbounded or infeasible"
    answer is resolved by a feasibility solve. ``iterations`` is HiGHS's iteration count.
    """
    c, A, b, mask, _ = _coerce(c, A, b, mask, batched=False, xp=np)
    A, b = A[mask], b[mask]
    n = c.shape[0]

    res = _highs(c, A, b)
    status = _SCIPY_STATUS.get(res.status, NUMERICAL)
    if status == NUMERICAL:
        res = _highs(c, A, b, presolve=False)
        status = _SCIPY_STATUS.get(res.status, NUMERICAL)
    if status == NUMERICAL and "unbounded or infeasible" in str(res.message).lower():
        feas = _highs(np.zeros(n), A, b, presolve=False)
        status = {0: UNBOUNDED, 2: INFEASIBLE}.get(feas.status, NUMERICAL)
    if status == OPTIMAL:
        x = np.asarray(res.x, np.float64)
        value = float(c @ x)
    else:
        x = np.full(n, np.nan)
        value = {UNBOUNDED: np.inf, INFEASIBLE: -np.inf}.get(status, np.nan)
    return LPResult(x, np.float64(value), np.int32(status), np.int32(getattr(res, "nit", 0) or 0))


def solve_lp_robust(c, A, b, mask=None, *, max_iters: int | None = None, tol: float = DEFAULT_TOL,
                    box: float = DEFAULT_BOX) -> tuple[LPResult, int]:
    """Batched solve (:func:`solve_lp_batch`), then HiGHS (:func:`solve_lp_host`) for the entries whose
    status is ``ITERATION_LIMIT`` or ``NUMERICAL``.

    Not jittable (it synchronises with the host). Returns ``(result, n_fallbacks)`` with the result's
    fields as NumPy arrays of the batch shape (the fallbacks' ``iterations`` are HiGHS's).
    """
    c, A, b, mask, batch = _coerce(c, A, b, mask, batched=True)
    res = solve_lp_batch(c, A, b, mask, max_iters=max_iters, tol=tol, box=box)
    x, value, status, iters = (np.array(f) for f in res)
    redo = np.argwhere((status == ITERATION_LIMIT) | (status == NUMERICAL))
    if len(redo):
        n, m = A.shape[-1], A.shape[-2]
        cn = np.broadcast_to(np.asarray(c), batch + (n,))
        An = np.broadcast_to(np.asarray(A), batch + (m, n))
        bn = np.broadcast_to(np.asarray(b), batch + (m,))
        mn = np.broadcast_to(np.asarray(mask), batch + (m,))
        for idx in map(tuple, redo):
            h = solve_lp_host(cn[idx], An[idx], bn[idx], mn[idx])
            x[idx], value[idx], status[idx], iters[idx] = h
    return LPResult(x, value, status, iters), int(len(redo))


# --------------------------------------------------------------------------------------------------
# Chebyshev centre
# --------------------------------------------------------------------------------------------------


def chebyshev_center(A, b, mask=None, *, r_max: float | None = None, max_iters: int | None = None,
                     tol: float = DEFAULT_TOL, robust: bool = False):
    """Centre and radius of the largest ball in ``{x : a_i·x <= b_i, mask_i}`` (batched).

    Solves ``max r  s.t.  a_i·x + |a_i| r <= b_i,  r <= r_max`` (Boyd & Vandenberghe, *Convex
    Optimization*, §8.5.1) over leading batch axes. ``r_max`` defaults to twice the largest distance
    of a real row's hyperplane from the origin (1 if all are 0), which never binds for a bounded
    polytope (its inradius is at most that distance). A radius ``> 0`` certifies a full-dimensional
    polytope; ``~0`` a lower-dimensional one; ``< 0`` an empty one.

    Args:
      A: ``(…, m, n)``; b: ``(…, m)``; mask: ``(…, m) bool`` or ``None``.
      robust: re-solve unresolved entries with HiGHS on the host (then not jittable; NumPy out).

    Returns:
      ``(center (…, n), radius (…), status (…))`` — ``status`` as in :func:`solve_lp`.
    """
    _require_x64()
    A = jnp.asarray(A, dtype=jnp.float64)
    b = jnp.asarray(b, dtype=jnp.float64)
    if A.ndim < 2 or b.shape[-1:] != A.shape[-2:-1]:
        raise InvalidArgumentError(f"A must be (..., m, n) and b (..., m); got A {A.shape}, b {b.shape}.")
    mask = jnp.ones(A.shape[:-1], bool) if mask is None else jnp.asarray(mask)
    n = A.shape[-1]
    batch = np.broadcast_shapes(A.shape[:-2], b.shape[:-1], mask.shape[:-1])
    A = jnp.broadcast_to(A, batch + A.shape[-2:])
    b = jnp.broadcast_to(b, batch + b.shape[-1:])
    mask = jnp.broadcast_to(mask, batch + mask.shape[-1:])

    norms = jnp.linalg.norm(A, axis=-1)
    if r_max is None:
        ok = mask & (norms > 0)
        dist = jnp.where(ok, jnp.abs(jnp.where(ok, b, 0.0)) / jnp.where(ok, norms, 1.0), 0.0)
        far = jnp.max(dist, axis=-1, initial=0.0)
        r_cap = jnp.where(jnp.isfinite(far) & (far > 0), 2.0 * far, 1.0)
    else:
        r_cap = jnp.full(batch, float(r_max))
    cap_row = jnp.broadcast_to(jnp.eye(n + 1)[n], batch + (1, n + 1))
    A_aug = jnp.concatenate([jnp.concatenate([A, norms[..., None]], axis=-1), cap_row], axis=-2)
    b_aug = jnp.concatenate([b, r_cap[..., None]], axis=-1)
    mask_aug = jnp.concatenate([mask, jnp.ones(batch + (1,), bool)], axis=-1)
    c = jnp.eye(n + 1)[n]
    if robust:
        res, _ = solve_lp_robust(c, A_aug, b_aug, mask_aug, max_iters=max_iters, tol=tol)
    else:
        res = solve_lp_batch(c, A_aug, b_aug, mask_aug, max_iters=max_iters, tol=tol)
    return res.x[..., :n], res.x[..., n], res.status
