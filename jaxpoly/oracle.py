"""The facet oracle of region enumeration: which constraints of a batch of polytopes are facets.

A *cell* is a polytope ``{y : a_j · y <= b_j for the active slots j}`` in box-centred coordinates
``y = x - centre``. Every cell of a batch has the same ``M = 2 d + H'`` constraint *slots*: slot
``i < d`` is ``y_i <= half_i``, slot ``d + i`` is ``-y_i <= half_i`` and slot ``2 d + h`` is
hyperplane ``h`` (the output's zero set is ``h = H`` with ``level_set``), oriented so that the
cell's pattern holds. Rows are scaled to unit norm, so ``b_j - a_j · y`` is a Euclidean distance.

Oracle, per batch (all steps vectorised over cells, rays and constraints):

1. Chebyshev centre and inradius of every cell (one LP each): the witness. Each cell's LP starts from
   the optimal basis of the cell it was found from when the crossed row is not in it (then the basis
   is still dual feasible and only the crossed row is violated: about 20 pivots at d = 32 against 150
   from the solver's box; 93 % of the cells of a complete d = 8 enumeration with starts on; on a
   CPU they are on from d = 16, see :func:`chebyshev`), and when it is, from that basis with the
   crossed row replaced by the cap row ``r <= r_cap`` (dual feasible again).
2. Ray shooting from the witness: along each of ``R`` shared directions the first constraint hit is a
   *certified* facet when the hit point keeps a positive slack on every other active constraint.
   LP-free certificates (:func:`cheap_certificates`): the foot point of the witness on each row
   (a "normal ray") certifies a facet the same way; a row that misses the simplex bounded by the
   ``d + 1`` rows nearest the witness misses the cell: certified redundant.
   Walks (:func:`walk_certificates`, in high dimension): from the foot point on each undecided row,
   relaxation steps inside that row's hyperplane look for a point strictly inside every other row.
3. The cell's bounding box (``2 d`` LPs, only for cells with undecided rows): a constraint whose
   hyperplane misses it is certified redundant.
   Inherited certificates (from d = 8, :mod:`jaxpoly.enumeration`): a redundant row's certificate
   names the rows that imply it (the simplex above, or its LP's optimal basis: ``a_k = sum u_j a_j``
   with ``u >= 0`` and ``sum u_j b_j <= b_k + tol``); a neighbour that has those rows in the same
   orientation (across a facet not among them) has the row redundant too, with no LP. About 2/3 of
   a d = 16 cell's redundant rows come that way. Known neighbours (also from d = 8): a row whose
   neighbour across is a cell the search already knows to have an interior point is a facet, no LP.
4. Every constraint still undecided gets the redundancy LP ``max a_k · y`` over the cell without row
   ``k``: a facet iff the optimum exceeds ``b_k`` by more than ``tol``. These LPs share the cell and
   differ in the objective, so they are warm-started (:func:`warm_redundancy`, :mod:`jaxpoly.primal`):
   one vertex of the cell (and the optima found so far), then the primal simplex from the one that
   suits each row best, stopping as soon as a feasible point passes ``b_k`` (against the dual simplex
   from scratch for each row: 1.6x less time per region at d = 8, 2.4x at d = 16, 1.9x at d = 32,
   measured before the optima were kept as start vertices). The walks share a pool that is refilled as
   they end (a walk takes 1 to ``2 d + 16`` pivots; waiting for the slowest of fixed chunks cost 1.6x
   more at d = 16). Every vertex of the cell that a walk passes (and the start vertex) certifies its
   ``d`` tight rows as facets when no other row is near it, so a row certified that way before its
   turn needs no walk: queued round robin over the cells, far rows first, the vertices answer 46 %
   of d = 16's questions. Lanes it leaves unresolved get the LP with row ``k`` relaxed by ``delta``.

Other LPs (Chebyshev centres, bounding boxes, unresolved redundancy lanes) go through
:func:`jaxpoly.lp.solve_lp_robust` (JAX dual simplex, HiGHS on the host for the instances it flags),
in fixed-size chunks so each shape compiles once.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpoly import lp, memory, pool, primal
from jaxpoly.linalg import min_and_argmin
from jaxpoly.network import CONSTANT_RTOL, Network, hyperplane_scales

__all__ = ["CellRows", "cell_rows", "shoot_rays", "chebyshev", "bounding_box", "redundancy_lps",
           "classify_facets", "Certificates", "certificates_hold", "OracleCounters"]

_SAME = 1e-9  # two unit rows closer than this (normal and offset / scale) are one hyperplane, by default
_WALK_TARGET = 0.3  # a walk moves rows to this fraction of the cell's inradius
_WALK_STOP = 0.01  # ... and stops once every row has this fraction (far above its float32 drift)
_WALK_LANES = 512  # walks stepped together on a CPU (d = 32: 256 to 1,024 within noise)
_WALK_LANES_ACCELERATOR = 8192  # on a GPU or TPU, whose lanes run in parallel (not measured yet)
_CHECK_CHUNK = 16  # cells whose walks' end points are checked together
_CELL_CHUNKS = 4  # slices of a batch whose rays, LP-free certificates and start vertices are skipped when
# they hold no cell that needs them (the padding of a batch)
# The LP solver's artificial box, in units of the largest distance from the coordinate origin to a row
# (see the LP layout below): 1 already contains the domain box, 1.5 keeps it clear.
_LP_BOX = 1.5
_WARM_PIVOTS_PER_DIM = 2  # pivot budget of a warm-started redundancy LP: 2 d + 16 (then the dual simplex)
# primal.exceeds' pool: (items at least, in units of the pivot budget 2 d + 16, lanes), the first that
# applies. A pool costs per step about in proportion to its lanes and drains a tail of its longest walks
# (up to the budget) with most lanes idle, so few items per lane waste steps (a d = 32 batch, 3,500
# items: 141 ms with 128 lanes, 246 with 512; d = 16 0.61 against 0.72-0.79 ms per region with 512,
# whose rows fall out of this CPU's caches). Each size is a compilation of primal.exceeds (about 2.3 s
# per network shape), and on a CPU below d = 32 the last size alone is as fast or faster (interleaved
# warm runs of 1,024-3,000 regions, medians of 5, 12-07: d = 4, 6 (3x16), 8 within 2 %, d = 16 1.11 s
# against 1.23, d = 24 1.46 against 1.54; d = 32 1.96 against 1.93, d = 64 4.05 against 3.97). On a GPU
# or TPU, whose lanes run in parallel, the rule stays (not re-measured).
_WARM_POOLS = ((2, 128), (0, 64))
_ONE_POOL_BELOW_DIM = 32


def warm_pools(d: int) -> tuple[tuple[int, int], ...]:
    """The pool sizes of :func:`warm_redundancy` in dimension ``d`` on the default device."""
    return _WARM_POOLS[-1:] if memory.on_cpu() and d < _ONE_POOL_BELOW_DIM else _WARM_POOLS


def _dot32(spec: str, x: jax.Array, y: jax.Array) -> jax.Array:
    """``jnp.einsum(spec, x, y)`` in float32 at full float32 precision (no TF32 or bfloat16 passes on
    accelerators): on the 2-core CPU a float32 product is 8x faster than float64's (a d = 32 batch's
    Gram matrices: 4 ms against 33). Certificates use it with :func:`_dot32_error`."""
    f32 = jnp.float32
    return jnp.einsum(spec, x.astype(f32), y.astype(f32), precision=jax.lax.Precision.HIGHEST)


def _dot32_error(d: int) -> float:
    """A bound on ``|_dot32(x, y) - x · y| / (|x|_2 |y|_2)`` for vectors of length ``d`` (Higham,
    *Accuracy and Stability of Numerical Algorithms*, 2002, §3.1: ``gamma_d`` for any summation order,
    plus the rounding of both operands to float32), with room to spare."""
    return 1.01 * (d + 3) * 2.0 ** -24


def _over_cells(fn, cells: tuple, need: jax.Array, chunks: int = _CELL_CHUNKS):
    """``fn(*cells)`` (every array of ``cells`` and of the result with the ``B`` cells on its leading
    axis) in ``chunks`` slices of cells, each computed only where ``need (B,) bool`` holds for one of
    its cells (zeros elsewhere): a batch's padding (e.g. the search's first batch, one cell padded to
    ``B``) costs nothing. Inside ``jit``."""
    B = need.shape[0]
    n = chunks if B % chunks == 0 else 1
    split = jax.tree.map(lambda a: a.reshape((n, B // n) + a.shape[1:]), (cells, need))
    shapes = jax.eval_shape(lambda c: fn(*c), jax.tree.map(lambda a: a[0], split[0]))

    def one(part):
        c, v = part
        return jax.lax.cond(jnp.any(v), lambda c: fn(*c),
                            lambda c: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), c)

    return jax.tree.map(lambda a: a.reshape((B,) + a.shape[2:]), jax.lax.map(one, split))


class CellRows(NamedTuple):
    """Constraints of a batch of ``B`` cells with ``M`` slots in ``d`` dimensions.

    A ``(B, M, d)`` unit rows, b ``(B, M)`` offsets, ``active (B, M)`` the rows that bound the cell,
    ``same (B, M, M)`` which slots are the same (oriented) hyperplane, ``const (B, M)`` hyperplane
    slots whose function is constant on the cell (dead neurons), ``rows_ok (B, M)`` slots with a
    meaningful unit row (box rows and non-constant hyperplanes).
    """

    A: jax.Array
    b: jax.Array
    active: jax.Array
    same: jax.Array
    const: jax.Array
    rows_ok: jax.Array


class OracleCounters(NamedTuple):
    lps: int
    fallbacks: int
    rays: int
    walk_facets: int = 0  # facets certified by walks (rows the rays and foot points left undecided)
    warm: int = 0  # redundancy LPs answered by the primal simplex from the cell's vertex
    inherited: int = 0  # rows certified redundant by a neighbour's certificate (no LP)
    warm_pivots: int = 0  # pivots of the warm-started redundancy LPs
    neighbour: int = 0  # rows certified facets by a known neighbour across them (no LP)


def _all_rows(net: Network, patterns: jax.Array, centre: jax.Array, level_set: bool):
    """Every hyperplane as an affine function of ``y``: ``(G (B, H', d), g (B, H'))``."""
    H = net.num_hyperplanes
    maps = net.affine_maps(patterns[:, :H])
    G, g = maps.hyper_A, maps.hyper_c
    if level_set:
        G = jnp.concatenate([G, maps.out_A[:, :1]], axis=1)
        g = jnp.concatenate([g, maps.out_c[:, :1]], axis=1)
    g = g + jnp.einsum("bhd,d->bh", G, centre)
    return G, g


_all_rows_jit = jax.jit(_all_rows, static_argnames=("level_set",))


@functools.partial(jax.jit, static_argnames=("stage", "level_set", "num_slots"))
def cell_rows(net: Network, patterns: jax.Array, parent_mask: jax.Array, centre: jax.Array,
              half: jax.Array, *, stage: tuple[int, int], level_set: bool, num_slots: int,
              same: jax.Array | float = _SAME) -> CellRows:
    """The constraints of cells of one level.

    Args:
      patterns: ``(B, H') bool``; bits of hyperplanes after ``stage`` are ignored.
      parent_mask: ``(B, M) bool``, the facets of each cell's parent (box slots for the first level).
      centre, half: ``(d,)`` the box centre and half-widths.
      stage: ``(h0, h1)``: the hyperplane ids this level adds.
      num_slots: ``M >= 2 d + H'``; the extra slots are inactive padding (so that networks of similar
        sizes share compiled LP solvers).
      same: unit rows closer than this in every coefficient and in offset (relative to the box's
        half-diagonal) are one hyperplane (:func:`_same_rows`).
    Returns:
      :class:`CellRows`. Active rows: the parent's facets and this stage's non-constant hyperplanes
      that meet the box; of rows that are the same hyperplane only the lowest slot is active.
    """
    d = centre.shape[0]
    G, g = _all_rows(net, patterns, centre, level_set)
    sign = jnp.where(patterns, -1.0, 1.0)  # bit True means g > 0, i.e. -G y <= g
    Ah, bh = sign[..., None] * G, -sign * g
    B = patterns.shape[0]
    eye = jnp.eye(d, dtype=G.dtype)
    Abox = jnp.broadcast_to(jnp.concatenate([eye, -eye]), (B, 2 * d, d))
    bbox = jnp.broadcast_to(jnp.concatenate([half, half]), (B, 2 * d))
    extra = num_slots - 2 * d - Ah.shape[1]
    A = jnp.concatenate([Abox, Ah, jnp.zeros((B, extra, d), G.dtype)], axis=1)
    b = jnp.concatenate([bbox, bh, jnp.zeros((B, extra), G.dtype)], axis=1)
    M = num_slots

    norms = jnp.linalg.norm(A, axis=-1)
    # relative to each hyperplane's own scale (round-off in a dead neuron's pulled-back row is far below
    # it), so that rescaling the input or a layer keeps the partition
    scale = jnp.concatenate([jnp.zeros(2 * d, G.dtype), hyperplane_scales(net, level_set).astype(G.dtype),
                             jnp.zeros(extra, G.dtype)])
    const = (norms <= CONSTANT_RTOL * scale) & (jnp.arange(M) >= 2 * d)
    A = jnp.where(const[..., None], 0.0, A / jnp.where(const, 1.0, norms)[..., None])
    b = jnp.where(const, 0.0, b / jnp.where(const, 1.0, norms))
    radius = jnp.linalg.norm(half)
    slot = jnp.arange(M)
    in_stage = (slot >= 2 * d + stage[0]) & (slot < 2 * d + stage[1])
    meets_box = b <= radius * (1 + 1e-12)  # else the whole box satisfies the row: redundant
    cand = parent_mask | (in_stage & ~const & meets_box)
    rows_ok = ~const

    same = _same_rows(A, b, rows_ok, radius, same)
    earlier = jnp.tril(jnp.ones((M, M), bool), k=-1)  # earlier[k, j]: j < k
    dup = jnp.any(same & earlier & cand[:, None, :], axis=-1)
    return CellRows(A, b, cand & ~dup, same, const, rows_ok)


def _same_rows(A: jax.Array, b: jax.Array, rows_ok: jax.Array, radius, same=_SAME) -> jax.Array:
    """``(B, M, M) bool``: unit rows within ``same`` of each other in every coefficient and in offset
    (relative to ``radius``). The all-pairs test costs ``B M^2 d``; it runs only when a cheaper
    necessary condition (two random projections of the rows, and the offsets) holds for some pair of
    distinct slots, so networks without repeated neurons pay ``B M^2``."""
    M, d = A.shape[1:]
    ok2 = rows_ok[:, :, None] & rows_ok[:, None, :]
    near_b = jnp.abs(b[:, :, None] - b[:, None, :]) <= same * radius
    r = jnp.asarray(np.random.default_rng(0).standard_normal((d, 2)), A.dtype)
    p = A @ r  # (B, M, 2)
    # |(a_i - a_j) . r| <= max |a_i - a_j| * |r|_1, plus the projections' round-off
    bound = (same + 1e-12) * jnp.sum(jnp.abs(r), axis=0)
    near_p = jnp.all(jnp.abs(p[:, :, None, :] - p[:, None, :, :]) <= bound, axis=-1)
    maybe = near_b & near_p & ok2 & ~jnp.eye(M, dtype=bool)

    def all_pairs(_):
        dA = jnp.max(jnp.abs(A[:, :, None, :] - A[:, None, :, :]), axis=-1)
        return (dA <= same) & near_b & ok2

    def diagonal(_):
        return ok2 & jnp.eye(M, dtype=bool)

    return jax.lax.cond(jnp.any(maybe), all_pairs, diagonal, None)


@jax.jit
def shoot_rays(A: jax.Array, b: jax.Array, active: jax.Array, y0: jax.Array, U: jax.Array,
               margin: jax.Array) -> jax.Array:
    """Facets certified by rays: ``(B, M) bool``.

    Args:
      A, b, active: ``(B, M, d)``, ``(B, M)``, ``(B, M)`` cell constraints (unit rows).
      y0: ``(B, d)`` interior points; U: ``(R, d)`` ray directions; margin: the slack every other
        constraint must keep at the hit point.
    """
    slack0 = b - jnp.einsum("bmd,bd->bm", A, y0)  # (B, M)
    AU = jnp.einsum("bmd,rd->brm", A, U)  # (B, R, M)
    toward = active[:, None, :] & (AU > 0)
    t = jnp.where(toward, slack0[:, None, :] / jnp.where(toward, AU, 1.0), jnp.inf)
    t1, first = min_and_argmin(t, axis=-1)  # (B, R)
    slack_hit = slack0[:, None, :] - t1[..., None] * AU  # (B, R, M)
    M = A.shape[1]
    hit = jax.nn.one_hot(first, M, dtype=bool)
    others_ok = jnp.all(jnp.where(active[:, None, :] & ~hit, slack_hit > margin, True), axis=-1)
    ok = others_ok & jnp.isfinite(t1)
    return jnp.any(hit & ok[..., None], axis=1)


@jax.jit
def cheap_certificates(A: jax.Array, b: jax.Array, active: jax.Array, y0: jax.Array, margin: jax.Array,
                       tol: jax.Array, resolution: jax.Array | float = lp.DEFAULT_TOL
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """LP-free decisions from an interior point ``y0 (B, d)`` (the Chebyshev centre):
    ``(facet (B, M), redundant (B, M), simplex (B, d + 1) int32)``, both certified, in closed form;
    ``simplex`` the rows of the simplex that certifies the redundant rows.

    * Normal rays: the foot point of ``y0`` on row ``k``, ``p_k = y0 + s_k a_k``, keeps a slack above
      ``margin`` on every other active row: ``p_k`` is in the relative interior of facet ``k``.
    * Simplex test: the ``d + 1`` active rows closest to ``y0`` (for the Chebyshev centre, the rows
      its ball touches) bound a simplex ``S ⊇ cell`` when their normals positively span; its
      vertices are ``d + 1`` small solves. A row whose value stays below ``b_k - tol`` on every vertex
      misses ``S``, hence the cell: redundant (``resolution``: the relative round-off allowed in the
      vertices' solves, added to ``tol``).
    """
    B, M, d = A.shape
    s = b - jnp.einsum("bmd,bd->bm", A, y0)  # slacks (B, M)
    G = _dot32("bmd,bkd->bmk", A, A).astype(A.dtype)  # (B, M, M) a_j · a_k, within _dot32_error(d)
    # slack of row j at p_k: s_j - s_k (a_j · a_k), less the bound on G's error
    sp = s[:, :, None] - s[:, None, :] * G - jnp.abs(s)[:, None, :] * _dot32_error(d)  # [b, j, k]
    other = active[:, :, None] & ~jnp.eye(M, dtype=bool)[None]
    facet = active & jnp.all(jnp.where(other, sp > margin, True), axis=1) & (s > 0)

    s_act = jnp.where(active, s, jnp.inf)
    _, idx = jax.lax.top_k(-s_act, d + 1)  # (B, d + 1)
    AS = jnp.take_along_axis(A, idx[..., None], axis=1)  # (B, d + 1, d)
    bS = jnp.take_along_axis(b, idx, axis=1)
    okS = jnp.all(jnp.isfinite(jnp.take_along_axis(s_act, idx, axis=1)), axis=1)
    # vertex d solves the first d rows (Q x = b); vertex j < d leaves row j along column j of Q^{-1}
    # (the other rows stay tight) until it meets row d
    Q, bq, ad, bd = AS[:, :d], bS[:, :d], AS[:, d], bS[:, d]
    Qinv = jnp.linalg.inv(Q)
    xd = jnp.einsum("bij,bj->bi", Qinv, bq)
    along = jnp.einsum("bi,bij->bj", ad, Qinv)  # a_d · (column j of Q^{-1})
    alpha = (bd - jnp.einsum("bi,bi->b", ad, xd))[:, None] / along
    V = jnp.concatenate([xd[:, None, :] + alpha[..., None] * jnp.swapaxes(Qinv, 1, 2), xd[:, None, :]], axis=1)
    R = jnp.einsum("bid,bjd->bij", AS, V) - bS[:, :, None]  # R[b, i, j]: row i at vertex j
    own = jnp.diagonal(R, axis1=1, axis2=2)
    resid = jnp.max(jnp.where(jnp.eye(d + 1, dtype=bool), 0.0, jnp.abs(R)), axis=(1, 2))
    vmax = jnp.max(jnp.abs(V), axis=(1, 2))
    # bounded iff every vertex is strictly inside its own dropped row (positive spanning normals)
    scale = 1.0 + vmax + jnp.max(jnp.abs(bS), axis=1)
    valid = okS & jnp.all(jnp.isfinite(V), axis=(1, 2)) & (resid <= resolution * scale) & jnp.all(own < 0, axis=1)
    val = jnp.max(jnp.einsum("bmd,bjd->bmj", A, V), axis=-1) - b  # (B, M)
    thr = tol + resolution * scale
    redundant = active & valid[:, None] & (val < -thr[:, None])
    return facet, redundant, idx


class _Walks(NamedTuple):
    """The lanes of :func:`walk_certificates`' pool, ``(P, ...)``: each walks one item of cell ``cell``
    on the hyperplane of its row ``k``: slacks ``S (P, M)`` of every row at the point ``x (P, d)``
    (float32, updated through the Gram matrix), ``g (P, M)`` row ``k``'s Gram row ``a_k · a_j``, ``a
    (P, d)`` row ``k``, ``others (P, M)`` the rows the point must clear, ``target``/``stop (P,)`` its
    cell's levels, ``moves (P,)`` the steps taken, ``running (P,)``."""

    cell: jax.Array
    S: jax.Array
    x: jax.Array
    g: jax.Array
    a: jax.Array
    others: jax.Array
    target: jax.Array
    stop: jax.Array
    moves: jax.Array
    running: jax.Array


@jax.jit
def witness_certificates(A: jax.Array, b: jax.Array, active: jax.Array, y0: jax.Array, valid: jax.Array,
                         U: jax.Array, margin: jax.Array, tol: jax.Array,
                         resolution: jax.Array | float = lp.DEFAULT_TOL):
    """:func:`shoot_rays` and :func:`cheap_certificates` from the witnesses ``y0 (B, d)`` of the cells
    ``valid (B,) bool`` (the others, a batch's padding, are skipped a slice at a time, see
    :func:`_over_cells`): ``(facet (B, M), redundant (B, M), simplex (B, d + 1) int32)``."""

    def both(A, b, active, y0):
        facet, redundant, simplex = cheap_certificates(A, b, active, y0, margin, tol, resolution)
        return facet | shoot_rays(A, b, active, y0, U, margin), redundant, simplex

    return _over_cells(both, (A, b, active, y0), valid)


@functools.partial(jax.jit, static_argnames=("steps", "lanes"))
def walk_certificates(A: jax.Array, b: jax.Array, active: jax.Array, y0: jax.Array, rows: jax.Array,
                      margin: jax.Array, *, steps: int, lanes: int = _WALK_LANES) -> jax.Array:
    """Facets certified by a walk on each undecided row's hyperplane: ``(B, K) bool`` for ``rows``.

    For row ``k`` the walk starts at the foot point of ``y0`` on the hyperplane and, while some other
    row has a slack below ``_WALK_STOP`` times the cell's inradius, moves within the hyperplane so that
    the row with the smallest slack gets ``_WALK_TARGET`` times it (the relaxation method of Agmon and
    Motzkin; aiming above the stopping level zigzags less), at most ``steps`` times. The slacks are
    updated through the Gram matrix, so a step costs ``O(M + d)`` per walk instead of ``O(M d)``. The
    end point is then put back on the hyperplane and must keep a slack above ``margin`` on every other
    active row (recomputed, less a bound on the float32 product's error, :func:`_dot32_error`): the
    certificate of a ray's hit point. A walk that does not get there decides nothing (the row goes to
    the LP).

    The walks take from 0 to ``steps`` moves, so they share a pool of ``lanes`` lanes, refilled as
    they end (:func:`jaxpoly.pool.run`): stepping fixed chunks of walks until their slowest ends cost
    3x more at d = 32 (most walks end within a few moves, a few take them all). Rows ``-1`` (e.g. a
    batch's padding cells) are not walked.

    Args:
      A, b, active: ``(B, M, d)``, ``(B, M)``, ``(B, M)`` cell constraints (unit rows).
      y0: ``(B, d)`` interior points; rows: ``(B, K) int32`` each cell's rows to try (``-1`` pads);
      margin: ``()``; steps: the most moves of a walk (static); lanes: walks stepped together.
    """
    B, M, d = A.shape
    K = rows.shape[1]
    N = B * K
    # The walks run in float32 (memory-bound; only their end points matter, and those are checked
    # below with a bound on the check's own float32 error), the Gram matrix too (:func:`_dot32`).
    f32 = jnp.float32
    flat = rows.reshape(-1)
    count = jnp.sum(flat >= 0, dtype=jnp.int32)
    items = jnp.nonzero(flat >= 0, size=N, fill_value=0)[0].astype(jnp.int32)
    s0 = b - jnp.einsum("bmd,bd->bm", A, y0)  # (B, M)
    A32 = A.astype(f32)
    G32 = _dot32("bmd,bjd->bmj", A32, A32)  # (B, M, M)
    r = jnp.min(jnp.where(active, s0, jnp.inf), axis=1)
    target = jnp.maximum(8.0 * margin, _WALK_TARGET * r).astype(f32)
    stop = jnp.maximum(8.0 * margin, _WALK_STOP * r).astype(f32)

    def load(q, end):
        """The lanes of item ranks ``q (n,)`` (``-1``: an idle lane), at the foot points."""
        f = items[jnp.maximum(q, 0)]
        c, k = f // K, jnp.maximum(flat[f], 0)
        g = G32[c, k]
        sk = s0[c, k]
        return _Walks(cell=c, S=s0[c].astype(f32) - sk.astype(f32)[:, None] * g,
                      x=(y0[c] + sk[:, None] * A[c, k]).astype(f32), g=g, a=A32[c, k],
                      others=active[c] & (jnp.arange(M) != k[:, None]), target=target[c], stop=stop[c],
                      moves=jnp.zeros_like(q), running=q >= 0)

    def step(q, w: _Walks, state):
        sj, j = min_and_argmin(jnp.where(w.others, w.S, jnp.inf))
        gjk = jnp.take_along_axis(w.g, j[:, None], axis=-1)[:, 0]
        denom = 1.0 - gjk * gjk  # a_j . v for v = a_j - gjk a_k, the part of a_j along hyperplane k
        go = w.running & (sj < w.stop) & (denom > 1e-6)
        t = jnp.where(go, (w.target - sj) / jnp.where(go, denom, 1.0), 0.0)[:, None]
        moves = w.moves + go
        return w._replace(S=w.S + t * (G32[w.cell, j] - gjk[:, None] * w.g),
                          x=w.x - t * (A32[w.cell, j] - gjk[:, None] * w.a), moves=moves,
                          running=go & (moves < steps)), state

    def record(w: _Walks, q, end):
        """The ended walks' points, by item."""
        return end.at[jnp.where(q >= 0, items[jnp.maximum(q, 0)], N)].set(w.x, mode="drop")

    end, _ = pool.run(load, step, record, lambda w: w.running, jnp.zeros((N, d), f32), count, size=N,
                      lanes=lanes)

    def check(A, b, active, rows, x):
        k = jnp.maximum(rows, 0)
        ak = jnp.take_along_axis(A, k[..., None], axis=1)  # (c, K, d)
        bk = jnp.take_along_axis(b, k, axis=1)
        others = active[:, None, :] & ~jax.nn.one_hot(k, M, dtype=bool)
        x = x.astype(A.dtype)
        x = x + (bk - jnp.einsum("bkd,bkd->bk", ak, x))[..., None] * ak  # back onto hyperplane k exactly
        # the slacks at the end point, less the bound on their float32 products' error (unit rows; x is
        # scaled to |x|_inf = 1 for the product, so no float32 underflow or overflow whatever the box)
        size = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
        size = jnp.where(size > 0, size, 1.0)
        ax = _dot32("bjd,bkd->bkj", A, x / size).astype(A.dtype) * size
        slack = b[:, None, :] - ax - _dot32_error(d) * jnp.linalg.norm(x, axis=-1, keepdims=True)
        inside = jnp.all(jnp.where(others, slack > margin, True), axis=-1)
        return (rows >= 0) & inside & jnp.all(jnp.isfinite(x), axis=-1)

    return _over_cells(check, (A, b, active, rows, end.reshape(B, K, d)), jnp.any(rows >= 0, axis=1),
                       chunks=B // math.gcd(B, _CHECK_CHUNK))


@functools.lru_cache(maxsize=None)
def _per_device(fn: Callable, mesh: jax.sharding.Mesh, batched: tuple[bool, ...], static: tuple) -> Callable:
    spec = jax.sharding.PartitionSpec(tuple(mesh.axis_names))
    inner = functools.partial(fn, **dict(static))
    in_specs = tuple(spec if b else jax.sharding.PartitionSpec() for b in batched)
    return jax.jit(jax.shard_map(inner, mesh=mesh, in_specs=in_specs, out_specs=spec, check_vma=False))


def on_cells(kernel: Callable, args: tuple, batched: tuple[bool, ...], sharding: jax.sharding.NamedSharding | None,
             **static):
    """``kernel(*args, **static)`` (a function of a batch of cells, each computed on its own, built
    from jitted kernels), or with a ``sharding`` of the batch axis over several devices, that kernel
    on each device's cells alone (``shard_map``): the arguments marked ``batched`` are split, the
    others copied. Under plain ``jit`` XLA gathers the batch onto every device first (the kernels'
    loops over slices of cells do not partition)."""
    if sharding is None or len(sharding.mesh.devices.flat) == 1:
        return kernel(*args, **static)
    whole = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    args = tuple(jax.device_put(a, sharding if b else whole) for a, b in zip(args, batched))
    return _per_device(kernel, sharding.mesh, batched, tuple(sorted(static.items())))(*args)


def _rows_per_cell(mask: np.ndarray) -> np.ndarray:
    """``(B, K) int32``: each row of ``mask (B, M)``'s true columns, ``-1``-padded to a power of two or
    1.5 times one (each ``K`` is a compilation of :func:`walk_certificates`; powers of two alone padded
    d = 32's 60 rows per cell, at most 90, to 128)."""
    counts = mask.sum(axis=1)
    p = 1 << max(int(counts.max()) - 1, 0).bit_length()
    K = min(3 * p // 4 if 3 * p // 4 >= counts.max() and p >= 4 else p, mask.shape[1])
    order = np.argsort(~mask, axis=1, kind="stable")[:, :K]
    return np.where(np.arange(K)[None, :] < counts[:, None], order, -1).astype(np.int32)


# Every LP of the oracle has the same layout, so one compiled solver serves all of them: variables
# (y, r) in R^(d+1), rows [a_j, w_j] · (y, r) <= b_j for the M slots, then r <= cap and -r <= 0.
# Chebyshev: w = 1, cap = r_cap, maximise r. Bounding box and redundancy: w = 0, cap = 0 (r = 0).
# The solver starts from a vertex of its artificial box |x_j| <= _LP_BOX s_b, where s_b is the largest
# distance from the origin of the coordinates to a row. The box rows are always on (``_with_box``), so
# every point of the domain box (and of a row relaxed by delta, a row like any other) lies within s_b
# of that origin in each coordinate, and the
# artificial box never cuts what matters; the solver flags an optimum where it would (box rows with
# dual weight), and HiGHS re-solves it. The smaller the box, the nearer the start and the fewer the
# pivots (the default 10^6 box takes about 20 % more at d = 8), so bounding-box and redundancy LPs are
# also posed in coordinates centred at the cell's witness (offsets ``_centred``).


def _with_box(active, d: int):
    """``active (B, M)`` with the ``2 d`` box slots on: redundant for every cell (each lies in the box),
    they keep every coordinate of the cell within ``s_b`` of the origin, which the artificial box needs
    (a deeper level's cell is bounded by its parent's facets alone; without the box rows ``s_b`` could
    be the distance to a few nearby rows of a long thin cell)."""
    return active | (jnp.arange(active.shape[-1]) < 2 * d)


@jax.jit
def _centred(A, b, origin):
    """Offsets ``(B, M)`` of the rows ``A (B, M, d)``, ``b (B, M)`` in coordinates centred at ``origin (B, d)``."""
    return b - jnp.einsum("bmd,bd->bm", A, origin)


@jax.jit
def _cheb_problem(A, b, active, r_cap, idx, basis0=None):
    """The Chebyshev LPs of cells ``idx``: ``(c, A, b, mask, basis0[idx])`` (``None`` without starts)."""
    A, b, active = A[idx], b[idx], active[idx]
    B, M, d = A.shape
    e = jnp.eye(d + 1, dtype=A.dtype)[d]
    cap = jnp.broadcast_to(jnp.stack([e, -e]), (B, 2, d + 1))
    A_aug = jnp.concatenate([jnp.concatenate([A, jnp.ones((B, M, 1), A.dtype)], axis=-1), cap], axis=1)
    b_aug = jnp.concatenate([b, jnp.full((B, 1), r_cap, A.dtype), jnp.zeros((B, 1), A.dtype)], axis=1)
    mask = jnp.concatenate([_with_box(active, d), jnp.ones((B, 2), bool)], axis=1)
    return jnp.broadcast_to(e, (B, d + 1)), A_aug, b_aug, mask, None if basis0 is None else basis0[idx]


@jax.jit
def _plain_problem(A, b, active, cell, direction, relax_row, delta):
    """``max direction · y`` over cell ``cell`` with row ``relax_row`` (``-1``: none) relaxed by ``delta``."""
    A, b, active = A[cell], b[cell], active[cell]
    N, M, d = A.shape
    e = jnp.eye(d + 1, dtype=A.dtype)[d]
    cap = jnp.broadcast_to(jnp.stack([e, -e]), (N, 2, d + 1))
    A_aug = jnp.concatenate([jnp.concatenate([A, jnp.zeros((N, M, 1), A.dtype)], axis=-1), cap], axis=1)
    b = b + delta * jax.nn.one_hot(relax_row, M, dtype=A.dtype)
    b_aug = jnp.concatenate([b, jnp.zeros((N, 2), A.dtype)], axis=1)
    mask = jnp.concatenate([_with_box(active, d), jnp.ones((N, 2), bool)], axis=1)
    c = jnp.concatenate([direction, jnp.zeros((N, 1), A.dtype)], axis=1)
    return c, A_aug, b_aug, mask


def _chebyshev_on_device(A, b, active, idx, basis0, count, *, r_cap: float, lanes: int | None,
                         lp_tol: float = lp.DEFAULT_TOL):
    """The Chebyshev LPs of one device's cells ``idx`` (local indices, the first ``count (1,)`` real)
    in a pool of ``lanes`` from the bases ``basis0`` (:func:`jaxpoly.lp._solve_pool`), or with
    ``lanes=None`` all of them from the box in one batched call, for :func:`on_cells`:
    ``(x, status, basis)``."""
    c, A_, b_, mask, start = _cheb_problem(A, b, active, r_cap, idx, basis0)
    if lanes is None:
        res = lp._batched_solver((0, 0, 0, 0), None, lp_tol, _LP_BOX)(c, A_, b_, mask)
        return res.x, res.status, jnp.full(start.shape, -1, jnp.int32)
    res, basis = lp._solve_pool(c, A_, b_, mask, start, count[0], lanes=lanes, tol=lp_tol, box=_LP_BOX)
    return res.x, res.status, basis


def _device_ranks(cell: np.ndarray, L: int, D: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dev (N,), rank (N,), count (D,))`` for items of cells ``cell (N,)`` (``L`` cells per device):
    each item's device, its rank among that device's items (in order), each device's item count."""
    dev = cell // L
    count = np.bincount(dev, minlength=D)
    rank = np.empty(len(cell), np.int64)
    rank[np.argsort(dev, kind="stable")] = np.arange(len(cell)) - np.repeat(
        np.concatenate([[0], np.cumsum(count)[:-1]]), count)
    return dev, rank, count


def _on_host(build: Callable, redo: np.ndarray, size: int) -> list:
    """HiGHS's results for the LPs ``redo`` (indices) that ``build(idx (size,)) -> (c, A, b, mask, ...)``
    builds, in calls padded to ``size`` (one compiled shape)."""
    out = []
    for s in range(0, len(redo), size):
        part = redo[s:s + size]
        cn, An, bn, mn = (np.asarray(a) for a in build(np.concatenate([part, np.full(size - len(part), part[0])]))[:4])
        out += [lp.solve_lp_host(cn[j], An[j], bn[j], mn[j]) for j in range(len(part))]
    return out


def _by_device(keys: np.ndarray, D: int) -> np.ndarray:
    """``(B,)``: each device's cells (``B / D`` in a row, local indices) sorted by ``keys (B,)``
    (stable)."""
    L = len(keys) // D
    return np.concatenate([np.argsort(keys[k * L:(k + 1) * L], kind="stable") for k in range(D)])


def chebyshev(rows: CellRows, r_cap: float, start: np.ndarray | None = None, chunk: int | None = None,
              num_cells: int | None = None, sharding: jax.sharding.NamedSharding | None = None,
              lp_tol: float = lp.DEFAULT_TOL) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Chebyshev centres ``(B, d)`` and inradii ``(B,)`` (``-inf`` when empty or unsolved), fallbacks,
    and the optimal bases ``(B, d + 1) int32`` (``-1`` rows where unsolved or not asked for).

    ``start (B, d + 1) int32``: each cell's start basis (``-1``: none), the optimal basis of a cell
    with the same rows but those crossed to reach this one, or that basis with the crossed row
    replaced by the cap row (index ``M``; :func:`jaxpoly.lp._start_state` checks either). ``chunk``:
    with ``start``, the LPs run in a pool of that many lanes (:func:`jaxpoly.lp._solve_pool`), the cold
    cells (``~5 d`` pivots from the solver's box) first, then the warm-started ones (d = 32: 24 pivots
    on average, the slowest of 64 60-100). Without a pool (no ``start``, or ``chunk >= B``) every LP
    starts from the box in one batched call of ``B`` (which costs its slowest instance's pivots times
    ``B``) and no bases come back. ``num_cells``: only the first that many cells are real (the rest pad
    a batch): a pool solves them alone, fallbacks count them alone and the padding gets radius
    ``-inf``. With a ``sharding`` of the batch over several devices, each device
    solves its own cells, in a pool of its own or one batched call (:func:`on_cells`). ``lp_tol``: the
    LPs' tolerance (:mod:`jaxpoly.lp`, relative to the largest distance of a row from the box centre).
    """
    B, M, d = rows.A.shape
    n = B if num_cells is None else int(num_cells)
    pooled = not (start is None or chunk is None or chunk >= B)
    D = 1 if sharding is None else len(sharding.mesh.devices.flat)
    if n == 0:
        return np.zeros((B, d)), np.full(B, -np.inf), 0, np.full((B, d + 1), -1, np.int32)
    L = B // D
    cells = np.arange(B)
    # on each device: its real cells, in a pool the cold ones (no start basis) first, then its padding
    start = np.full((B, d + 1), -1, np.int32) if start is None else np.asarray(start, np.int32)
    local = _by_device(2 * (cells >= n) + (start[:, 0] >= 0) if pooled else np.zeros(B, np.int32), D)
    order = local + np.repeat(np.arange(D) * L, L)
    count = np.clip(n - np.arange(D) * L, 0, L).astype(np.int32)
    x_, st_, basis_ = (np.array(a) for a in on_cells(
        _chebyshev_on_device, (rows.A, rows.b, rows.active, jnp.asarray(local, jnp.int32), jnp.asarray(start),
                               jnp.asarray(count)), (True,) * 6,
        sharding, r_cap=float(r_cap), lanes=int(chunk) if pooled else None, lp_tol=float(lp_tol)))
    real = order < n
    redo = np.flatnonzero(real & ((st_ == lp.ITERATION_LIMIT) | (st_ == lp.NUMERICAL)))
    fb = len(redo)
    hosted = _on_host(lambda pos: _cheb_problem(rows.A, rows.b, rows.active, r_cap, jnp.asarray(order[pos])),
                      redo, B)
    for i, h in zip(redo, hosted):
        x_[i], st_[i], basis_[i] = h.x, h.status, -1
    x, basis = np.zeros((B, d + 1)), np.full((B, d + 1), -1, np.int32)
    status = np.full(B, lp.INFEASIBLE, np.int32)
    x[order[real]], status[order[real]], basis[order[real]] = x_[real], st_[real], basis_[real]
    r = np.where(status == lp.OPTIMAL, x[:, d], -np.inf)
    return x[:, :d], r, fb, basis


def _plain_on_device(A, bc, active, cell, direction, relax_row, *, delta: float, lp_tol: float = lp.DEFAULT_TOL):
    """:func:`_plain_problem` of one device's items (cells local), solved in one batched call, for
    :func:`on_cells`: ``(value, status)``."""
    res = lp._batched_solver((0, 0, 0, 0), None, lp_tol, _LP_BOX)(
        *_plain_problem(A, bc, active, cell, direction, relax_row, delta))
    return res.value, res.status


def _solve_plain(rows: CellRows, bc: jax.Array, cell: np.ndarray, direction: np.ndarray, relax_row: np.ndarray,
                 delta: float, size: int, sharding: jax.sharding.NamedSharding | None,
                 lp_tol: float = lp.DEFAULT_TOL) -> tuple[np.ndarray, np.ndarray, int]:
    """``max direction[i] · y`` over cell ``cell[i]`` (offsets ``bc``, row ``relax_row[i]`` relaxed by
    ``delta``) for every item: ``(value (N,), status (N,), fallbacks)``, in calls of ``size`` items
    (one compiled shape), HiGHS for those the solver flags. With a ``sharding`` of the batch over
    several devices, each device solves the items of its own cells (:func:`on_cells`)."""
    D = 1 if sharding is None else len(sharding.mesh.devices.flat)
    B, d = rows.A.shape[0], rows.A.shape[-1]
    L, per = B // D, max(size // D, 1)  # cells and items per device and call
    dev, rank, count = _device_ranks(cell, L, D)
    value, status = np.zeros(len(cell)), np.full(len(cell), lp.NUMERICAL, np.int32)
    for first in range(0, int(count.max(initial=0)), per):
        now = np.flatnonzero((rank >= first) & (rank < first + per))
        at = dev[now] * per + rank[now] - first
        c_, dir_, rel_ = np.zeros(D * per, np.int32), np.zeros((D * per, d)), np.full(D * per, -1, np.int32)
        c_[at], dir_[at], rel_[at] = cell[now] - dev[now] * L, direction[now], relax_row[now]
        v, st = on_cells(_plain_on_device, (rows.A, bc, rows.active, c_, dir_, rel_), (True,) * 6, sharding,
                         delta=float(delta), lp_tol=float(lp_tol))
        value[now], status[now] = np.asarray(v)[at], np.asarray(st)[at]
    redo = np.flatnonzero((status == lp.ITERATION_LIMIT) | (status == lp.NUMERICAL))
    hosted = _on_host(lambda pos: _plain_problem(rows.A, bc, rows.active, cell[pos], direction[pos], relax_row[pos],
                                                 delta), redo, size)
    for i, h in zip(redo, hosted):
        value[i], status[i] = h.value, h.status
    return value, status, len(redo)


def bounding_box(rows: CellRows, sel: np.ndarray, size: int, origin: jax.Array,
                 sharding: jax.sharding.NamedSharding | None = None, lp_tol: float = lp.DEFAULT_TOL
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Bounding boxes of the cells ``sel``: ``(upper (S, d), lower (S, d), ok (S,), fallbacks)``.
    ``origin (B, d)``: an interior point of every cell (the LPs are centred there); ``sharding``: as
    for :func:`_solve_plain`; lp_tol: as for :func:`chebyshev`."""
    d = rows.A.shape[-1]
    bc = _centred(rows.A, rows.b, origin)
    S = len(sel)
    cell = np.repeat(sel, 2 * d)
    dirs = np.tile(np.concatenate([np.eye(d), -np.eye(d)]), (S, 1))
    value, status, fb = _solve_plain(rows, bc, cell, dirs, np.full(len(cell), -1), 0.0, size, sharding, lp_tol)
    o = np.asarray(origin)[sel]
    value = value.reshape(S, 2 * d) + np.concatenate([o, -o], axis=1)
    ok = np.all(status.reshape(S, 2 * d) == lp.OPTIMAL, axis=1)
    return value[:, :d], -value[:, d:], ok, fb


def redundancy_lps(rows: CellRows, cell: np.ndarray, row: np.ndarray, delta: float, size: int,
                   origin: jax.Array, sharding: jax.sharding.NamedSharding | None = None,
                   lp_tol: float = lp.DEFAULT_TOL) -> tuple[np.ndarray, np.ndarray, int]:
    """Exceedance ``max a_k·y - b_k`` with row ``k`` relaxed by ``delta`` for each pair
    ``(cell[i], row[i])``: ``(excess (N,), solved (N,) bool, fallbacks)``. ``origin (B, d)``: an
    interior point of every cell (the LPs are centred there); ``sharding``: as for
    :func:`_solve_plain`; lp_tol: as for :func:`chebyshev`."""
    dirs = np.asarray(rows.A)[cell, row]
    bc = _centred(rows.A, rows.b, origin)
    value, status, fb = _solve_plain(rows, bc, cell, dirs, row, delta, size, sharding, lp_tol)
    excess = value - np.asarray(bc)[cell, row]
    return excess, status == lp.OPTIMAL, fb


@jax.jit
def _warm_problem(A, b, active, origin, undecided):
    """The cells for :mod:`jaxpoly.primal`: offsets centred at ``origin (B, d)`` and divided by each
    cell's largest, that scale ``(B,)``, and the direction its start vertex favours ``(B, d)`` (the sum
    of the undecided rows' normals: a vertex on their side of the cell)."""
    bc = _centred(A, b, origin)
    scale = jnp.max(jnp.where(active, jnp.abs(bc), 0.0), axis=1)
    scale = jnp.where(scale > 0, scale, 1.0)
    d = A.shape[-1]
    generic = 1e-3 * (1.0 + jnp.arange(d, dtype=A.dtype) / d)  # a zero sum still picks a direction
    c = jnp.einsum("bm,bmd->bd", undecided.astype(A.dtype), A) + generic
    return bc / scale[:, None], scale, c


@functools.partial(jax.jit, static_argnames=("tol",))
def _cell_vertices(A, b, active, c, need, tol: float = lp.DEFAULT_TOL):
    """:func:`jaxpoly.primal.cell_vertices` of the cells ``need (B,) bool`` (a slice at a time, see
    :func:`_over_cells`; the others get status ``UNRESOLVED``)."""
    v = _over_cells(functools.partial(primal.cell_vertices, tol=tol, boxed=True), (A, b, active, c), need)
    return v._replace(status=jnp.where(need, v.status, primal.UNRESOLVED).astype(v.status.dtype))


def _exceeds_on_device(A, b, active, start, cell, row, threshold, count, **static):
    """:func:`jaxpoly.primal.exceeds` of one device's cells and items (``count (1,)``), for
    :func:`on_cells`."""
    return primal.exceeds(A, b, active, start, cell, row, threshold, count[0], **static)


def warm_redundancy(rows: CellRows, valid: np.ndarray, cell: np.ndarray, row: np.ndarray, origin: jax.Array,
                    tol: float, sharding: jax.sharding.NamedSharding | None = None,
                    lp_tol: float = lp.DEFAULT_TOL) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """The redundancy question of each pair ``(cell[i], row[i])`` by the primal simplex from vertices
    of each cell (:mod:`jaxpoly.primal`): ``(facet (N,), resolved (N,), support (N, d), pivots)``.
    ``facet``: the cell without row ``k`` reaches beyond ``b_k + tol``; ``support``: for a redundant
    row, the rows of its certificate (the optimal basis, :func:`jaxpoly.primal.exceeds`), else ``-1``;
    ``pivots``: the walks' pivots in all. Unresolved pairs are left to :func:`redundancy_lps`.
    All pairs of a batch go to :func:`jaxpoly.primal.exceeds` in one call, padded to ``B M`` items (one
    compiled shape per pool size), so the pool drains (the tail of its longest walks, with most lanes
    idle) once per batch: in chunks of 4,096 pairs it did 12 % more work at d = 16. With a ``sharding``
    of the batch over several devices, each device answers the pairs of its own cells in a pool of its
    own (:func:`on_cells`). ``lp_tol``: the walks' tolerance (relative to each cell's largest offset)."""
    B, M, d = rows.A.shape
    undecided = np.zeros((B, M), bool)
    undecided[cell, row] = True
    active = rows.active & jnp.asarray(valid)[:, None]
    b, scale, c = on_cells(_warm_problem, (rows.A, rows.b, active, origin, jnp.asarray(undecided)), (True,) * 5,
                           sharding)
    start = on_cells(_cell_vertices, (rows.A, b, active, c, jnp.asarray(undecided.any(axis=1))), (True,) * 5,
                     sharding, tol=float(lp_tol))
    thr = tol / np.asarray(scale)
    n = len(cell)
    order = primal.queue_order(cell, np.asarray(start.slack)[cell, row])
    cell, row = cell[order], row[order]
    D = 1 if sharding is None else len(sharding.mesh.devices.flat)
    L = B // D  # the cells of each device: [k L, (k + 1) L)
    dev, rank, count = _device_ranks(cell, L, D)
    # a few pool sizes only (with a power of two per batch's count, small networks compiled
    # primal.exceeds 5 times, 6 of their 14 s cold)
    budget = _WARM_PIVOTS_PER_DIM * d + 16
    lanes = next(lanes for least, lanes in warm_pools(d) if count.max(initial=0) >= least * budget)
    size = max(L * M, lanes)  # every pair of a device fits
    at = dev * size + rank  # each device's pairs, in the queue's order, at the front of its slice
    items_cell, items_row = np.zeros(D * size, np.int32), np.zeros(D * size, np.int32)
    items_cell[at], items_row[at] = cell - dev * L, row
    st, _, basis, pivots = on_cells(
        _exceeds_on_device, (rows.A, b, active, start, jnp.asarray(items_cell), jnp.asarray(items_row),
                             jnp.asarray(thr), jnp.asarray(count, jnp.int32)),
        (True,) * 8, sharding, max_iters=budget, lanes=lanes, tol=float(lp_tol), boxed=True)
    status, support = np.empty(n, np.int32), np.empty((n, d), np.int32)
    status[order], support[order] = np.asarray(st)[at], np.asarray(basis)[at]
    return status == primal.ABOVE, status != primal.UNRESOLVED, support, int(np.asarray(pivots)[at].sum())


@jax.jit
def _meets(A, b, active, upper, lower, tol):
    hi_val = jnp.sum(jnp.maximum(A * upper[:, None, :], A * lower[:, None, :]), axis=-1)
    return active & (hi_val >= b - tol)


def classify_facets(rows: CellRows, witness: np.ndarray, valid: np.ndarray, U: jax.Array, *,
                    tol: float, margin: float, delta: float, use_bbox: bool = True, walk_steps: int = 0,
                    warm_start: bool = True, certify: bool = False, support: Certificates | None = None,
                    known: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
                    sharding: jax.sharding.NamedSharding | None = None, lp_tol: float = lp.DEFAULT_TOL
                    ) -> tuple[np.ndarray, np.ndarray, OracleCounters, Certificates | None]:
    """Facets ``(B, M) bool`` of the valid cells (steps 2-4 of the module docstring), which of them are
    unsure ``(B, M) bool`` (rows whose LP failed, kept as facet candidates: the cell across them may
    be empty), the counters, and with ``certify`` the redundancy certificates that a neighbour can
    reuse (else ``None``).

    A certificate of row ``k`` of cell ``c`` names rows of the cell whose inequalities alone imply row
    ``k`` (to ``tol``): the ``d + 1`` rows of the simplex of :func:`cheap_certificates`, or the optimal
    basis of row ``k``'s redundancy LP (its multipliers ``u >= 0`` give ``a_k = sum u_j a_j`` and
    ``sum u_j b_j <= b_k + tol``). It holds for every cell that has those rows in the same
    orientation, so a neighbour across a facet that is not among them inherits it
    (:func:`certificates_hold`).

    Args:
      witness: ``(B, d)`` interior points (Chebyshev centres); valid: ``(B,) bool`` cells to classify.
      U: ``(R, d)`` unit ray directions.
      tol: the exceedance that makes a row a facet; margin: see :func:`shoot_rays`; delta: how far a
        row is relaxed in the redundancy LP. LPs are solved ``B`` at a time.
      use_bbox: filter undecided rows with the cells' bounding boxes (``2 d`` LPs per cell).
      walk_steps: relaxation steps of :func:`walk_certificates` on the rows still undecided (0: none).
      warm_start: answer the redundancy questions by :func:`warm_redundancy` first.
      support: certificates the cells inherit (checked by the caller to hold for them, at most one
        per row): a row with one is redundant, no question asked. ``None``: none.
      known: ``(cell (k,), row (k,), facets (B, M)) -> (k,) bool``, which of the rows the rays left
        undecided are known to be facets, given the facets certified so far (e.g. the cell across is
        known to have an interior point, see :mod:`jaxpoly.enumeration`): those are facets, no
        question asked. ``None``: none.
      sharding: the batch axis's sharding over several devices, or ``None``: the rays and walks of
        each device's cells run there (:func:`on_cells`).
      lp_tol: the LPs' relative tolerance (:func:`chebyshev`), also the relative round-off the LP-free
        certificates allow.
    """
    B, M, d = rows.A.shape
    y0 = jnp.asarray(witness)
    hits, red, simplex = on_cells(witness_certificates, (rows.A, rows.b, rows.active, y0, jnp.asarray(valid), U,
                                                         jnp.asarray(margin), jnp.asarray(tol), jnp.asarray(lp_tol)),
                                  (True,) * 5 + (False,) * 4, sharding)
    hits, red = np.array(hits), np.asarray(red)
    active = np.asarray(rows.active) & valid[:, None]
    hits &= active
    red = red & active & ~hits
    parts = []
    if certify:
        in_simplex = np.zeros((B, M), bool)
        in_simplex[np.arange(B)[:, None], np.asarray(simplex)] = True
        c, k = np.nonzero(red)
        parts.append(Certificates(c, k, in_simplex[c]))
    undecided = active & ~hits & ~red
    inherited = 0
    if support is not None:
        use = undecided[support.cell, support.row]
        parts.append(Certificates(*(a[use] for a in support)))
        inherited = int(use.sum())
        undecided[support.cell[use], support.row[use]] = False
    neighbour = 0
    if known is not None:
        cell, row = np.nonzero(undecided)
        yes = known(cell, row, hits)
        neighbour = int(yes.sum())
        hits[cell[yes], row[yes]] = True
        undecided[cell[yes], row[yes]] = False
    walk_facets = 0
    if walk_steps and undecided.any():
        idx = _rows_per_cell(undecided)
        lanes = _WALK_LANES if memory.on_cpu() else _WALK_LANES_ACCELERATOR
        walked = np.asarray(on_cells(walk_certificates, (rows.A, rows.b, rows.active, y0, jnp.asarray(idx),
                                                         jnp.asarray(margin)),
                                     (True,) * 5 + (False,), sharding, steps=walk_steps, lanes=lanes))
        cell, slot = np.nonzero(walked)
        hits[cell, idx[cell, slot]] = True
        walk_facets = len(cell)
        undecided &= ~hits
    lps = fbs = 0
    # the bounding box costs 2 d LPs: only worth it for cells with more undecided rows than that
    sel = np.flatnonzero(valid & (undecided.sum(axis=1) > 2 * d))
    if use_bbox and len(sel):
        upper, lower, ok, fb = bounding_box(rows, sel, B, y0, sharding, lp_tol=lp_tol)
        lps += len(sel) * 2 * d
        fbs += fb
        up = np.zeros((B, d))
        low = np.zeros((B, d))
        up[sel], low[sel] = upper, lower
        meets = np.asarray(_meets(rows.A, rows.b, jnp.asarray(undecided), jnp.asarray(up), jnp.asarray(low), tol))
        okb = np.zeros(B, bool)
        okb[sel] = ok
        undecided = np.where(okb[:, None], meets, undecided)
    cell, row = np.nonzero(undecided)
    facets = hits.copy()
    unsure = np.zeros((B, M), bool)
    warm = warm_pivots = 0
    if len(cell):
        lps += len(cell)
        if warm_start:
            fac, resolved, basis, warm_pivots = warm_redundancy(rows, valid, cell, row, y0, tol, sharding,
                                                                lp_tol=lp_tol)
            facets[cell[resolved], row[resolved]] = fac[resolved]
            if certify:
                opt = resolved & ~fac
                rows_lp = np.zeros((int(opt.sum()), M), bool)
                rows_lp[np.arange(len(rows_lp))[:, None], basis[opt]] = True
                parts.append(Certificates(cell[opt], row[opt], rows_lp))
            warm = int(resolved.sum())
            cell, row = cell[~resolved], row[~resolved]
    if len(cell):
        excess, solved, fb = redundancy_lps(rows, cell, row, delta, B, y0, sharding, lp_tol=lp_tol)
        fbs += fb
        # an unsolved LP keeps the row as a facet candidate: a spurious flip is caught by the
        # neighbour's own Chebyshev test, a dropped one could lose a region
        facets[cell, row] = ~solved | (excess > tol)
        unsure[cell, row] = ~solved
    counters = OracleCounters(lps, fbs, int(valid.sum()) * U.shape[0], walk_facets, warm, inherited, warm_pivots,
                              neighbour)
    cert = None
    if certify:
        cert = Certificates(*(np.concatenate(a) for a in zip(*parts)))
    return facets, unsure, counters, cert


class Certificates(NamedTuple):
    """Redundancy certificates (:func:`classify_facets`), one per entry: row ``row (K,)`` of cell
    ``cell (K,)`` is implied by the rows ``rows (K, M) bool`` of that cell."""

    cell: np.ndarray
    row: np.ndarray
    rows: np.ndarray


def certificates_hold(rows: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """``(K,) bool``: which certificates ``rows (K, M) bool`` (:class:`Certificates`) hold in a
    neighbour whose slots ``flipped (K, M) bool`` have the other orientation: those that use no
    flipped row (the others are dropped)."""
    return ~np.any(rows & flipped, axis=1)
