"""An independent, slow-but-simple reference for the geometry of piecewise-affine networks.

Pure NumPy + SciPy (HiGHS LPs). Nothing here calls a jaxpoly engine, ``Network.affine_maps`` or
``Network.pattern``: the per-pattern affine maps are recomputed from the stage weights, so the tests
can compare the library against something that shares no code with it. Only the :class:`Network`
*data* (kernels, biases, sources, activation breakpoints and slopes) is read.

Conventions (same as the library): hyperplanes are ordered stage by stage, neuron-major; the pattern
of ``x`` is ``z - t > 0`` per hyperplane; with ``level_set=True`` a last bit ``y > 0`` is appended
(scalar output only).

Everything is float64 and meant for small networks (a few dozen hyperplanes, d <= 3).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from typing import NamedTuple

import numpy as np
from scipy.optimize import linprog
from scipy.spatial import cKDTree

__all__ = [
    "Region",
    "numpy_forward",
    "numpy_patterns",
    "pattern_maps",
    "num_hyperplanes",
    "region_polytope",
    "chebyshev_ball",
    "lp_regions",
    "lp_facets",
    "lp_complex",
    "lp_vertices",
    "lp_f_vector",
    "subset_count",
    "binomial_count",
]

_HIGHS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
_ZERO_ROW = 1e-12  # a hyperplane map with a smaller gradient is treated as constant on the region
_MERGE = 1e-9  # vertices closer than this (times the box scale) are one vertex
_TIGHT = 1e-8  # a vertex within this distance (times the box scale) of a constraint lies on it


class Region(NamedTuple):
    """One linear region: its pattern, a point inside (the Chebyshev centre) and the inradius."""

    pattern: tuple[bool, ...]
    witness: np.ndarray
    inradius: float


# ----------------------------------------------------------------------------------------------------
# Network data, read as NumPy
# ----------------------------------------------------------------------------------------------------


def _stage_arrays(stage) -> tuple[list[np.ndarray], np.ndarray]:
    """Kernels ``[(in_k, width)]`` and bias ``(width,)`` of a stage as float64 NumPy arrays."""
    return [np.asarray(k, np.float64) for k in stage.kernels], np.asarray(stage.bias, np.float64)


def _activation_numpy(act, z: np.ndarray) -> np.ndarray:
    """``act(z)`` element-wise from its breakpoints and slopes (see ``Activation``)."""
    out = act.value_at_zero + act.slopes[0] * z
    for i, b in enumerate(act.breakpoints):
        jump = act.slopes[i + 1] - act.slopes[i]
        out = out + jump * (np.maximum(z - b, 0.0) - max(-b, 0.0))
    return out


def _piece(act, above: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept ``(width,)`` of the piece where ``above[:, i] = (z > breakpoints[i])``.

    On that piece ``max(z - b_i, 0) = above_i * (z - b_i)``, so every kink contributes
    ``jump_i * above_i`` to the slope and ``-jump_i * (above_i * b_i + max(-b_i, 0))`` to the intercept.
    """
    slope = np.full(above.shape[0], act.slopes[0])
    icpt = np.full(above.shape[0], act.value_at_zero)
    for i, b in enumerate(act.breakpoints):
        jump = act.slopes[i + 1] - act.slopes[i]
        q = above[:, i].astype(np.float64)
        slope = slope + jump * q
        icpt = icpt - jump * (q * b + max(-b, 0.0))
    return slope, icpt


def num_hyperplanes(net) -> int:
    """``H``: one hyperplane per hidden neuron and breakpoint."""
    return sum(_stage_arrays(st)[1].shape[0] * len(st.activation.breakpoints) for st in net.stages)


def _input_dim(net) -> int:
    for st in tuple(net.stages) + (net.output,):
        for s, k in zip(st.sources, st.kernels):
            if s == 0:
                return int(np.shape(k)[0])
    raise ValueError("no stage reads the network input")


# ----------------------------------------------------------------------------------------------------
# Forward pass and per-pattern affine maps
# ----------------------------------------------------------------------------------------------------


def numpy_forward(net, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hyperplane values ``z - t`` ``(n, H)`` and outputs ``(n, out)`` for points ``X (n, d)``."""
    X = np.asarray(X, np.float64)
    acts = [X]
    values = []

    def pre(stage):
        kernels, bias = _stage_arrays(stage)
        return bias + sum(acts[s] @ k for s, k in zip(stage.sources, kernels))

    for st in net.stages:
        z = pre(st)
        bps = np.asarray(st.activation.breakpoints, np.float64)
        values.append((z[:, :, None] - bps).reshape(len(X), -1))
        acts.append(_activation_numpy(st.activation, z))
    y = pre(net.output)
    hv = np.concatenate(values, axis=1) if values else np.zeros((len(X), 0))
    return hv, y


def numpy_patterns(net, X: np.ndarray) -> np.ndarray:
    """Activation patterns ``(n, H)`` bool of points ``X (n, d)`` by a NumPy forward pass."""
    return numpy_forward(net, X)[0] > 0


def _full_patterns(net, X: np.ndarray, level_set: bool) -> np.ndarray:
    """Patterns ``(n, H)``, or ``(n, H + 1)`` with the output sign last when ``level_set``."""
    hv, y = numpy_forward(net, X)
    return np.concatenate([hv, y[:, :1]], axis=1) > 0 if level_set else hv > 0


def pattern_maps(net, pattern) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Affine maps valid on the region of ``pattern`` (bool ``(H,)``; extra trailing bits ignored).

    Returns:
      ``A (H, d)``, ``c (H,)``: hyperplane ``h`` is ``x -> A[h] @ x + c[h]``;
      ``out_A (out, d)``, ``out_c (out,)``: the network output.
    """
    pattern = np.asarray(pattern, bool)
    d = _input_dim(net)
    maps = [(np.eye(d), np.zeros(d))]  # per source: (units, d) gradient rows and (units,) offsets
    rows, offs = [], []
    h = 0

    def pre(stage):
        kernels, bias = _stage_arrays(stage)
        A = np.zeros((bias.shape[0], d))
        c = bias.copy()
        for s, k in zip(stage.sources, kernels):
            A += k.T @ maps[s][0]
            c += maps[s][1] @ k
        return A, c

    for st in net.stages:
        A, c = pre(st)
        bps = np.asarray(st.activation.breakpoints, np.float64)
        m, width = len(bps), A.shape[0]
        rows.append(np.repeat(A, m, axis=0))
        offs.append((c[:, None] - bps).reshape(-1))
        above = pattern[h : h + width * m].reshape(width, m)
        h += width * m
        slope, icpt = _piece(st.activation, above)
        maps.append((slope[:, None] * A, slope * c + icpt))
    out_A, out_c = pre(net.output)
    A_all = np.concatenate(rows, axis=0) if rows else np.zeros((0, d))
    c_all = np.concatenate(offs) if offs else np.zeros(0)
    return A_all, c_all, out_A, out_c


# ----------------------------------------------------------------------------------------------------
# Region polytopes and Chebyshev balls
# ----------------------------------------------------------------------------------------------------


def _box(lo, hi, d: int) -> tuple[np.ndarray, np.ndarray]:
    lo = np.broadcast_to(np.asarray(lo, np.float64), (d,)).copy()
    hi = np.broadcast_to(np.asarray(hi, np.float64), (d,)).copy()
    if not np.all(lo < hi):
        raise ValueError(f"need lo < hi, got {lo} and {hi}")
    return lo, hi


def _scale(lo: np.ndarray, hi: np.ndarray) -> float:
    return max(1.0, float(np.max(np.abs(lo))), float(np.max(np.abs(hi))))


def region_polytope(net, pattern, lo, hi, *, level_set: bool = False):
    """``{x in box : pattern holds}`` as ``G x <= g`` with unit rows, or ``None`` if plainly empty.

    Rows: first one per hyperplane (plus the level set), in order, then the box ``x <= hi``,
    ``-x <= -lo``. Returns ``(G (m, d), g (m,), ids (m,))`` where ``ids`` is the hyperplane index of
    each row (``-1`` for box rows). A hyperplane constant on the region (zero gradient) gives no row:
    it is checked directly (``z - t > 0`` must equal its bit) and the pattern is empty if it fails.
    """
    pattern = np.asarray(pattern, bool)
    d = _input_dim(net)
    lo, hi = _box(lo, hi, d)
    A, c, out_A, out_c = pattern_maps(net, pattern)
    if level_set:
        if out_A.shape[0] != 1:
            raise ValueError("level_set=True needs a scalar output")
        A, c = np.concatenate([A, out_A]), np.concatenate([c, out_c])
    sign = np.where(pattern[: len(c)], 1.0, -1.0)
    norms = np.linalg.norm(A, axis=1)
    flat = norms <= _ZERO_ROW * max(1.0, float(np.max(norms, initial=0.0)))
    if np.any((c[flat] > 0) != pattern[: len(c)][flat]):
        return None
    keep = ~flat
    G = -(sign[keep, None] * A[keep]) / norms[keep, None]
    g = sign[keep] * c[keep] / norms[keep]
    ids = np.flatnonzero(keep)
    G = np.concatenate([G, np.eye(d), -np.eye(d)])
    g = np.concatenate([g, hi, -lo])
    return G, g, np.concatenate([ids, -np.ones(2 * d, int)])


def chebyshev_ball(G: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Largest ball in ``{x : G x <= g}`` (unit rows ``G (m, d)``): ``(centre (d,), radius)`` or None."""
    m, d = G.shape
    cost = np.zeros(d + 1)
    cost[-1] = -1.0
    res = linprog(cost, A_ub=np.hstack([G, np.ones((m, 1))]), b_ub=g,
                  bounds=[(None, None)] * d + [(0.0, None)], method="highs", options=_HIGHS)
    if res.status != 0:
        return None
    return res.x[:d], float(res.x[-1])


def _region_ball(net, pattern, lo, hi, level_set: bool):
    poly = region_polytope(net, pattern, lo, hi, level_set=level_set)
    return None if poly is None else chebyshev_ball(poly[0], poly[1])


# ----------------------------------------------------------------------------------------------------
# Regions by BFS over the facet-adjacency graph
# ----------------------------------------------------------------------------------------------------


def lp_regions(net, lo, hi, *, level_set: bool = False, tol: float = 1e-9, seeds: int = 32,
               seed: int = 0) -> list[Region]:
    """Every region (pattern with a full-dimensional polytope in the box), sorted by pattern.

    A pattern counts when its polytope holds a ball of radius ``> tol``. Search: BFS from the patterns
    of ``seeds`` random points (and the centre); the neighbours of a region are the patterns with one
    bit flipped whose polytope is full-dimensional (maps recomputed for the flipped pattern). The
    region graph with edges across shared facets is connected in the box, and crossing the relative
    interior of a facet flips exactly the hyperplanes vanishing there, so the search is complete
    whenever no facet lies on two hyperplanes at once (true for generic networks).
    """
    d = _input_dim(net)
    lo, hi = _box(lo, hi, d)
    rng = np.random.default_rng(seed)
    X = np.vstack([(lo + hi) / 2, lo + (hi - lo) * rng.random((seeds, d))])
    tested: dict[tuple[bool, ...], tuple[np.ndarray, float] | None] = {}
    queue: deque[tuple[bool, ...]] = deque()

    def test(p: tuple[bool, ...]) -> None:
        if p in tested:
            return
        ball = _region_ball(net, p, lo, hi, level_set)
        tested[p] = ball if ball is not None and ball[1] > tol else None
        if tested[p] is not None:
            queue.append(p)

    for row in _full_patterns(net, X, level_set):
        test(tuple(bool(b) for b in row))
    while queue:
        p = queue.popleft()
        for h in range(len(p)):
            test(p[:h] + (not p[h],) + p[h + 1 :])
    regions = [Region(p, ball[0], ball[1]) for p, ball in tested.items() if ball is not None]
    return sorted(regions, key=lambda r: r.pattern)


def lp_facets(net, pattern, lo, hi, *, level_set: bool = False, tol: float = 1e-7) -> dict[int, np.ndarray]:
    """The facets of a region: ``{id: point}``, ids as in the library (hyperplane ``h >= 0``;
    ``-(1 + i)`` the box face ``x_i = hi_i``, ``-(1 + d + i)`` the face ``x_i = lo_i``), ``point`` a
    point just across the facet, next to the middle of its largest inscribed ball (``None`` for a box
    face). A facet: a constraint ``k`` of :func:`region_polytope` whose removal lets ``G_k x`` exceed
    ``g_k`` by more than ``tol`` times the box scale (one LP each). Constraints on the same hyperplane
    (same unit row and offset) are removed together and reported once, by the first in the library's
    slot order (the box faces, then the hyperplanes by index)."""
    G, g, ids = region_polytope(net, pattern, lo, hi, level_set=level_set)
    d = G.shape[1]
    lo_, hi_ = _box(lo, hi, d)
    scale = _scale(lo_, hi_)
    box = np.flatnonzero(ids < 0)
    ids = ids.copy()
    ids[box] = -1 - np.arange(2 * d)
    slot = np.where(ids >= 0, 2 * d + ids, -1 - ids)
    same = (np.abs(G[:, None] - G[None]).max(axis=-1) <= 1e-9) & (np.abs(g[:, None] - g[None]) <= 1e-9 * scale)
    out: dict[int, np.ndarray] = {}
    for k in range(len(g)):
        group = same[k]
        if slot[k] != slot[group].min():
            continue
        res = linprog(-G[k], A_ub=G[~group], b_ub=g[~group], bounds=[(None, None)] * d, method="highs",
                      options=_HIGHS)
        if not (res.status == 3 or (res.status == 0 and -res.fun - g[k] > tol * scale)):
            continue
        if ids[k] < 0:
            out[int(ids[k])] = None
            continue
        # the centre of the largest ball of the facet (within its hyperplane), then a step across
        cost = np.zeros(d + 1)
        cost[-1] = -1.0
        ball = linprog(cost, A_ub=np.hstack([G[~group], np.ones(((~group).sum(), 1))]), b_ub=g[~group],
                       A_eq=np.append(G[k], 0.0)[None], b_eq=g[k:k + 1], bounds=[(None, None)] * d + [(0.0, scale)],
                       method="highs", options=_HIGHS)
        out[int(ids[k])] = _point_across(net, ball.x[:d], G[k], g[k], ball.x[-1], lo, hi, level_set, scale)
    return out


def _point_across(net, m, a, c, r, lo, hi, level_set: bool, scale: float) -> np.ndarray:
    """A point ``m + s a`` just across the facet ``{a x = c}`` (unit ``a``) from its middle ``m``, in the
    region whose closure holds ``m``: a step that jumps a region thinner than ``s`` lands in one whose
    constraints (other than the facet's hyperplane) ``m`` violates; shorter steps then."""
    for s in (1e-3 * r, 1e-6 * r, 1e-9 * scale, 1e-12 * scale):
        x = m + s * a
        hv, y = numpy_forward(net, x[None])
        pattern = (np.concatenate([hv, y[:, :1]], axis=1) if level_set else hv)[0] > 0
        Gq, gq, _ = region_polytope(net, pattern, lo, hi, level_set=level_set)
        on = (np.abs(np.abs(Gq @ a) - 1.0) <= 1e-9) & (np.abs(np.abs(gq) - abs(c)) <= 1e-9 * scale)
        if np.all(on | (Gq @ m <= gq + 1e-12 * scale)):
            return x
    raise AssertionError(f"no region across the facet {a} x = {c} at {m}")


# ----------------------------------------------------------------------------------------------------
# The polyhedral complex: vertices, faces, f-vector
# ----------------------------------------------------------------------------------------------------


def _polytope_vertices(G: np.ndarray, g: np.ndarray, tol: float) -> np.ndarray:
    """Vertices (with repeats at degenerate vertices) of ``{G x <= g}``: feasible solutions of every
    ``d``-subset of constraints with independent normals. ``(k, d)``."""
    m, d = G.shape
    combos = np.array(list(itertools.combinations(range(m), d)))
    M, rhs = G[combos], g[combos]
    ok = np.abs(np.linalg.det(M)) > 1e-10
    X = np.linalg.solve(M[ok], rhs[ok][..., None])[..., 0]
    feasible = np.all(X @ G.T <= g + tol, axis=1)
    return X[feasible]


def _cluster(points: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge points closer than ``radius`` (transitively). Returns ``(labels (n,), centres (k, d))``
    with clusters numbered in lexicographic order of their centres."""
    parent = np.arange(len(points))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in cKDTree(points).query_pairs(radius):
        parent[find(i)] = find(j)
    roots = np.array([find(i) for i in range(len(points))])
    _, labels = np.unique(roots, return_inverse=True)
    centres = np.array([points[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
    order = np.lexsort(centres.T[::-1])
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels], centres[order]


def _affine_dim(P: np.ndarray, tol: float) -> int:
    """Dimension of the affine hull of points ``P (k, d)``."""
    if len(P) <= 1:
        return 0
    s = np.linalg.svd(P - P[0], compute_uv=False)
    return int(np.sum(s > tol))


def _faces(vids: np.ndarray, tight: np.ndarray) -> set[frozenset[int]]:
    """All faces of one polytope as vertex-id sets: the whole vertex set and every nonempty
    intersection of constraint tight sets. ``vids (k,)`` global ids, ``tight (k, m)`` incidence."""
    faces = {frozenset(vids.tolist())}
    frontier = list(faces)
    generators = [frozenset(vids[tight[:, i]].tolist()) for i in range(tight.shape[1])]
    generators = [s for s in set(generators) if s]
    while frontier:
        nxt = []
        for f in frontier:
            for s in generators:
                new = f & s
                if new and new not in faces:
                    faces.add(new)
                    nxt.append(new)
        frontier = nxt
    return faces


def lp_complex(net, lo, hi, *, level_set: bool = False) -> tuple[np.ndarray, list[set[frozenset[int]]]]:
    """The polyhedral complex of the regions in the box.

    Returns:
      ``vertices (V, d)``, sorted lexicographically, and ``faces[k]``: the k-faces, each as the set of
      ids (rows of ``vertices``) of its vertices, for ``k = 0..d``.
    """
    d = _input_dim(net)
    lo, hi = _box(lo, hi, d)
    scale = _scale(lo, hi)
    polys, points, owner = [], [], []
    for r in lp_regions(net, lo, hi, level_set=level_set):
        G, g, _ = region_polytope(net, r.pattern, lo, hi, level_set=level_set)
        P = _polytope_vertices(G, g, _TIGHT * scale)
        polys.append((G, g))
        points.append(P)
        owner.append(np.full(len(P), len(polys) - 1))
    labels, vertices = _cluster(np.concatenate(points), _MERGE * scale)
    owner = np.concatenate(owner)
    faces: list[set[frozenset[int]]] = [set() for _ in range(d + 1)]
    for i, (G, g) in enumerate(polys):
        vids = np.unique(labels[owner == i])
        tight = np.abs(vertices[vids] @ G.T - g) <= _TIGHT * scale
        for f in _faces(vids, tight):
            faces[_affine_dim(vertices[sorted(f)], _TIGHT * scale)].add(f)
    return vertices, faces


def lp_vertices(net, lo, hi, *, level_set: bool = False) -> np.ndarray:
    """The vertices ``(V, d)`` of the complex in the box, deduplicated and sorted lexicographically."""
    return lp_complex(net, lo, hi, level_set=level_set)[0]


def lp_f_vector(net, lo, hi, *, level_set: bool = False) -> tuple[int, ...]:
    """``(f_0, ..., f_d)``: the number of k-dimensional faces of the complex in the box."""
    return tuple(len(f) for f in lp_complex(net, lo, hi, level_set=level_set)[1])


# ----------------------------------------------------------------------------------------------------
# Counting formulas for one-layer arrangements
# ----------------------------------------------------------------------------------------------------


def _flat_meets_open_box(W: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: float) -> bool:
    """Whether ``{W x + b = 0}`` meets the open box: max ``t`` with ``lo + t <= x <= hi - t``."""
    k, d = W.shape
    cost = np.zeros(d + 1)
    cost[-1] = -1.0
    eye = np.eye(d)
    A_ub = np.vstack([np.hstack([eye, np.ones((d, 1))]), np.hstack([-eye, np.ones((d, 1))])])
    res = linprog(cost, A_ub=A_ub, b_ub=np.concatenate([hi, -lo]),
                  A_eq=np.hstack([W, np.zeros((k, 1))]) if k else None, b_eq=-b if k else None,
                  bounds=[(None, None)] * (d + 1), method="highs", options=_HIGHS)
    return res.status == 0 and -res.fun > tol


def subset_count(W: np.ndarray, b: np.ndarray, lo, hi, *, tol: float = 1e-9) -> int:
    """Number of subsets (size ``k = 0..d``) of hyperplanes ``W x + b = 0`` (``W (n, d)``, ``b (n,)``)
    with linearly independent normals whose flat meets the open box (``k = 0``: the box itself).

    For an arrangement in general position this is the number of regions in the box.
    """
    W, b = np.asarray(W, np.float64), np.asarray(b, np.float64)
    n, d = W.shape
    lo, hi = _box(lo, hi, d)
    count = 0
    for k in range(d + 1):
        for S in itertools.combinations(range(n), k):
            S = list(S)
            if k and np.linalg.matrix_rank(W[S]) < k:
                continue
            count += _flat_meets_open_box(W[S], b[S], lo, hi, tol)
    return count


def binomial_count(n: int, d: int) -> int:
    """``sum_{i <= d} C(n, i)``: regions of ``n`` generic hyperplanes in ``R^d``."""
    return sum(math.comb(n, i) for i in range(d + 1))
