"""Tests of the batched LP solver against SciPy's HiGHS.

Shapes are shared across tests (m = 64 padded rows, n in {2, 3, 5, 10}) so that few functions compile.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpoly import lp

M = 64  # padded row count used throughout


def _pad(A, b, rng=None, garbage=False):
    """Pad ``(A, b)`` to ``M`` rows; padding is zeros, or contradictory/non-finite rows if ``garbage``."""
    m, n = A.shape
    Ap, bp = np.zeros((M, n)), np.zeros(M)
    mask = np.zeros(M, bool)
    Ap[:m], bp[:m], mask[:m] = A, b, True
    if garbage:
        k = M - m
        Ap[m:] = rng.normal(size=(k, n))
        bp[m:] = -1e3  # far outside: every such row alone would make the problem infeasible
        Ap[m] = 0.0
        bp[m] = -1.0  # 0 <= -1
        if k > 2:
            Ap[m + 1, 0] = np.nan
            bp[m + 2] = -np.inf
    return Ap, bp, mask


def _bounded(rng, n, degenerate=False):
    """A feasible LP with a box (so bounded), ``5 <= m <= 60`` rows, an interior point ``x0``."""
    m = int(rng.integers(max(5, 2 * n + 1), 61))
    x0 = rng.normal(size=n)
    A = rng.normal(size=(m, n))
    slack = rng.exponential(size=m)
    if degenerate:
        slack[rng.random(m) < 0.5] = 0.0
    b = A @ x0 + slack
    A[: 2 * n] = np.vstack([np.eye(n), -np.eye(n)])
    b[: 2 * n] = np.concatenate([x0 + 3 * rng.exponential(size=n), -(x0 - 3 * rng.exponential(size=n))])
    c = rng.normal(size=n)
    return c, A, b


def _infeasible(rng, n):
    c, A, b = _bounded(rng, n)
    u = rng.normal(size=n)
    # u·x <= lo and u·x >= lo + gap with gap > 0: empty.
    lo = rng.normal()
    A = np.vstack([A, u, -u])
    b = np.concatenate([b, [lo, -(lo + 0.1 + rng.random())]])
    return c, A, b


def _unbounded(rng, n):
    """Feasible, with a recession direction ``u`` (all rows have ``a·u <= 0``) and ``c·u > 0``."""
    m = int(rng.integers(5, 61))
    x0 = rng.normal(size=n)
    u = rng.normal(size=n)
    A = rng.normal(size=(m, n))
    A[A @ u > 0] *= -1
    b = A @ x0 + rng.exponential(size=m)
    c = u + 0.3 * rng.normal(size=n)
    if c @ u <= 0:
        c = u
    return c, A, b


def _stack(problems, rng=None, garbage=False):
    cs, As, bs, masks = [], [], [], []
    for c, A, b in problems:
        Ap, bp, mask = _pad(A, b, rng, garbage)
        cs.append(c), As.append(Ap), bs.append(bp), masks.append(mask)
    return np.stack(cs), np.stack(As), np.stack(bs), np.stack(masks)


def _assert_matches_highs(res, C, A, B, MASK, j):
    h = lp.solve_lp_host(C[j], A[j], B[j], MASK[j])
    status = int(res.status[j])
    assert status == int(h.status), (j, status, int(h.status))
    if status == lp.OPTIMAL:
        value = float(res.value[j])
        assert abs(value - float(h.value)) <= 1e-9 * max(1.0, abs(float(h.value))), (j, value, h.value)
        x = np.asarray(res.x[j])
        scale = max(1.0, np.abs(B[j][MASK[j]]).max(), np.abs(x).max())
        assert np.max(A[j][MASK[j]] @ x - B[j][MASK[j]]) <= 1e-9 * scale
        assert abs(C[j] @ x - value) <= 1e-12 * max(1.0, abs(value))


# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_random_bounded_agree_with_highs(n):
    rng = np.random.default_rng(n)
    C, A, B, MASK = _stack([_bounded(rng, n) for _ in range(40)])
    res = lp.solve_lp_batch(C, A, B, MASK)
    assert np.all(np.asarray(res.status) == lp.OPTIMAL)
    for j in range(len(C)):
        _assert_matches_highs(res, C, A, B, MASK, j)


@pytest.mark.parametrize("n", [5, 10])
def test_start_from_a_neighbours_basis(n):
    """``lp._solve_from``: started from the optimal basis of a neighbouring LP (the same rows but one
    outside the basis, now cutting off that optimum) it agrees with HiGHS in fewer pivots than from the
    box; an unusable start (``-1`` entries, or the optimal basis of ``-c``, dual infeasible for ``c``)
    runs exactly the box start's pivots."""
    rng = np.random.default_rng(40 + n)
    C, A, B, MASK = _stack([_bounded(rng, n) for _ in range(40)])
    solve = lp._batched_solver_from(lp.DEFAULT_TOL, lp.DEFAULT_BOX)
    box = lp.solve_lp_batch(C, A, B, MASK)
    res, basis = solve(*map(jnp.asarray, (C, A, B, MASK)), jnp.full((40, n), -1, jnp.int32))
    assert np.array_equal(res.iterations, box.iterations) and np.array_equal(res.x, box.x)
    basis = np.asarray(basis)
    assert np.all(basis >= 0) and np.all(MASK[np.arange(40)[:, None], np.minimum(basis, M - 1)] | (basis >= M))
    # the neighbour: a real row outside the basis moved to cut off the optimum
    B2 = B.copy()
    for j in range(40):
        rows = np.setdiff1d(np.flatnonzero(MASK[j]), basis[j])
        i = rows[np.argmax(A[j][rows] @ np.asarray(res.x[j]) - B[j][rows])]
        B2[j, i] = A[j, i] @ np.asarray(res.x[j]) - 0.1 * np.linalg.norm(A[j, i])
    warm, _ = solve(*map(jnp.asarray, (C, A, B2, MASK)), jnp.asarray(basis))
    cold = lp.solve_lp_batch(C, A, B2, MASK)
    for j in range(40):
        _assert_matches_highs(warm, C, A, B2, MASK, j)
    assert np.sum(warm.iterations) < np.sum(cold.iterations) / 2
    _, flipped = solve(*map(jnp.asarray, (-C, A, B, MASK)), jnp.full((40, n), -1, jnp.int32))
    res, _ = solve(*map(jnp.asarray, (C, A, B, MASK)), flipped)
    assert np.array_equal(res.iterations, box.iterations) and np.array_equal(res.x, box.x)


@pytest.mark.parametrize("n", [pytest.param(3, marks=pytest.mark.slow), 5])
def test_pool_matches_the_batched_solver(n):
    """``lp._solve_pool`` (instances stepped in a pool of ``lanes``, refilled as they end) gives each
    instance what the batched solver gives it: the same pivots, status, basis and point, whatever the
    pool size, the mix of warm and cold starts and of optimal, infeasible and unbounded instances;
    instances past ``count`` are not solved."""
    rng = np.random.default_rng(70 + n)
    problems = [_bounded(rng, n) for _ in range(14)] + [_infeasible(rng, n) for _ in range(3)]
    problems += [_unbounded(rng, n) for _ in range(3)]
    order = rng.permutation(len(problems))
    C, A, B, MASK = (jnp.asarray(a) for a in _stack([problems[i] for i in order]))
    solve = lp._batched_solver_from(lp.DEFAULT_TOL, lp.DEFAULT_BOX)
    cold = jnp.full((len(order), n), -1, jnp.int32)
    _, optimal = solve(C, A, B, MASK, cold)
    # warm starts for half the instances: the optimal basis of the same problem with a row moved
    B2 = B.at[:, 2 * n].add(-0.5)
    start = jnp.where((jnp.arange(len(order)) % 2 == 0)[:, None], optimal, -1)
    ref, ref_basis = solve(C, A, B2, MASK, start)
    assert 0 < np.sum(np.asarray(ref.iterations)[::2]) < np.sum(np.asarray(ref.iterations)[1::2])
    statuses = set(np.asarray(ref.status).tolist())
    assert {lp.OPTIMAL, lp.INFEASIBLE, lp.UNBOUNDED} <= statuses
    count = len(order) - 3
    for lanes in (1, 3, 8, len(order)):
        res, basis = lp._solve_pool(C, A, B2, MASK, start, count, lanes=lanes)
        for got, want in ((res.status, ref.status), (res.iterations, ref.iterations), (basis, ref_basis)):
            np.testing.assert_array_equal(np.asarray(got)[:count], np.asarray(want)[:count])
        np.testing.assert_allclose(np.asarray(res.x)[:count], np.asarray(ref.x)[:count], rtol=1e-12, atol=1e-12)
        assert np.all(np.asarray(res.status)[count:] == lp.NUMERICAL) and np.all(np.asarray(basis)[count:] == -1)
    for j in range(count):
        _assert_matches_highs(res, *map(np.asarray, (C, A, B2, MASK)), j)


@pytest.mark.parametrize("n", [3, 5])
def test_infeasible_and_unbounded_statuses(n):
    rng = np.random.default_rng(100 + n)
    problems = [_infeasible(rng, n) for _ in range(20)] + [_unbounded(rng, n) for _ in range(20)]
    C, A, B, MASK = _stack(problems)
    res = lp.solve_lp_batch(C, A, B, MASK)
    status = np.asarray(res.status)
    assert np.all(status[:20] == lp.INFEASIBLE)
    assert np.all(status[20:] == lp.UNBOUNDED)
    assert np.all(np.asarray(res.value[:20]) == -np.inf)
    assert np.all(np.asarray(res.value[20:]) == np.inf)
    for j in (0, 1, 20, 21):
        _assert_matches_highs(res, C, A, B, MASK, j)


def test_simple_statuses_single_solve():
    A = np.array([[1.0, 0.0], [-1.0, 0.0]])
    c = np.array([1.0, 0.0])
    res = lp.solve_lp(c, A, np.array([-1.0, -1.0]))  # x1 <= -1 and x1 >= 1
    assert int(res.status) == lp.INFEASIBLE
    res = lp.solve_lp(np.array([1.0, 1.0]), A, np.array([1.0, 1.0]))  # x2 free, c2 = 1
    assert int(res.status) == lp.UNBOUNDED
    res = lp.solve_lp(c, A, np.array([1.0, 1.0]))  # x2 free but c2 = 0: optimal, value 1
    assert int(res.status) == lp.OPTIMAL and float(res.value) == pytest.approx(1.0, abs=1e-12)
    # A zero row 0·x <= -1 alone makes the problem infeasible; with b >= 0 it is ignored.
    Z = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0], [0.0, 0.0]])
    res = lp.solve_lp(c, Z, np.array([1.0, 1.0, 1.0, 1.0, -1.0]))
    assert int(res.status) == lp.INFEASIBLE
    res = lp.solve_lp(c, Z, np.array([1.0, 1.0, 1.0, 1.0, 0.0]))
    assert int(res.status) == lp.OPTIMAL and float(res.value) == pytest.approx(1.0, abs=1e-12)


def test_padding_rows_are_ignored():
    rng = np.random.default_rng(7)
    n = 3
    problems = [_bounded(rng, n) for _ in range(30)] + [_infeasible(rng, n) for _ in range(10)]
    clean = lp.solve_lp_batch(*_stack(problems))
    # Same problems, padding replaced by contradictory and non-finite rows (mask False).
    C, A, B, MASK = _stack(problems, rng, garbage=True)
    assert not np.all(np.isfinite(A)) and not np.all(np.isfinite(B))
    res = lp.solve_lp_batch(C, A, B, MASK)
    np.testing.assert_array_equal(np.asarray(res.status), np.asarray(clean.status))
    np.testing.assert_allclose(np.asarray(res.value), np.asarray(clean.value), rtol=1e-12)
    for j in range(len(C)):
        _assert_matches_highs(res, C, A, B, MASK, j)


def _degenerate_vertex(rng, n):
    """Many rows through the optimal vertex ``v``, duplicated and parallel (scaled/loose) rows."""
    v = rng.normal(size=n)
    k = 3 * n
    G = rng.normal(size=(k, n))
    G[:, 0] = np.abs(G[:, 0]) + 0.2  # every normal has a positive first coordinate
    c = np.abs(rng.random(k)) @ G  # c in the cone of the normals: v is optimal
    rows = [G, G[:3], 2.5 * G[3:5]]  # tight rows, duplicates, scaled duplicates
    rhs = [G @ v, G[:3] @ v, 2.5 * G[3:5] @ v]
    rows.append(G[5:7])
    rhs.append(G[5:7] @ v + 1.0)  # parallel, loose
    rows.append(np.vstack([np.eye(n), -np.eye(n)]))
    rhs.append(np.concatenate([v + 5.0, -(v - 5.0)]))
    return c, np.vstack(rows), np.concatenate(rhs), v


@pytest.mark.parametrize("n", [3, 5])
def test_degenerate_problems(n):
    rng = np.random.default_rng(11 + n)
    cases = [_degenerate_vertex(rng, n) for _ in range(20)]
    problems = [(c, A, b) for c, A, b, _ in cases]
    problems += [_bounded(rng, n, degenerate=True) for _ in range(20)]
    C, A, B, MASK = _stack(problems)
    res = lp.solve_lp_batch(C, A, B, MASK)
    assert np.all(np.asarray(res.status) == lp.OPTIMAL)
    for j, (c, _, _, v) in enumerate(cases):
        assert float(res.value[j]) == pytest.approx(float(c @ v), rel=1e-9, abs=1e-9)
        np.testing.assert_allclose(np.asarray(res.x[j]), v, atol=1e-7)
    for j in range(len(C)):
        _assert_matches_highs(res, C, A, B, MASK, j)


def _beale(n=5):
    """Beale's (1955) example, on which the textbook simplex with Dantzig's rule cycles; as a maximum
    over x4..x7 >= 0 (here variables 0..3, plus a bounded extra variable to reach ``n``)."""
    A = np.zeros((3 + 2 * n, n))
    A[0, :4] = [0.25, -8.0, -1.0, 9.0]
    A[1, :4] = [0.5, -12.0, -0.5, 3.0]
    A[2, 2] = 1.0
    A[3:3 + n] = -np.eye(n)
    A[3 + n:] = np.eye(n)
    b = np.concatenate([[0.0, 0.0, 1.0], np.zeros(n), np.full(n, 10.0)])
    c = np.zeros(n)
    c[:4] = [0.75, -20.0, 0.5, -6.0]
    return c, A, b


def test_beale_cycling_example_and_blands_rule():
    c, A, b = _beale()
    Ap, bp, mask = _pad(A, b)
    res = lp.solve_lp(c, Ap, bp, mask)
    assert int(res.status) == lp.OPTIMAL
    assert float(res.value) == pytest.approx(1.25, abs=1e-12)
    # Bland's rule throughout (the anti-cycling fallback) reaches the same optimum.
    res = lp._solve_jit(*map(jnp.asarray, (c, Ap, bp, mask)), max_iters=None, tol=lp.DEFAULT_TOL,
                        box=lp.DEFAULT_BOX, bland_after=0)
    assert int(res.status) == lp.OPTIMAL
    assert float(res.value) == pytest.approx(1.25, abs=1e-12)


def test_vmap_batch_matches_single_solves():
    rng = np.random.default_rng(3)
    n = 5
    problems = [_bounded(rng, n, degenerate=(j % 4 == 0)) for j in range(200)]
    problems += [_infeasible(rng, n) for _ in range(28)] + [_unbounded(rng, n) for _ in range(28)]
    C, A, B, MASK = _stack(problems)
    assert len(C) == 256
    batched = jax.jit(jax.vmap(lambda c, a, b, m: lp.solve_lp(c, a, b, m)))(C, A, B, MASK)
    via_api = lp.solve_lp_batch(C, A, B, MASK)
    single = jax.jit(lambda c, a, b, m: lp.solve_lp(c, a, b, m))
    for j in range(len(C)):
        r = single(C[j], A[j], B[j], MASK[j])
        for other in (batched, via_api):
            assert int(other.status[j]) == int(r.status)
            assert int(other.iterations[j]) == int(r.iterations)
            if int(r.status) == lp.OPTIMAL:
                np.testing.assert_allclose(np.asarray(other.x[j]), np.asarray(r.x), rtol=1e-10,
                                           atol=1e-10)
                assert float(other.value[j]) == pytest.approx(float(r.value), rel=1e-12, abs=1e-12)


def test_batch_broadcasts_shared_constraints():
    """Facet tests: one polytope, objective = each row, that row masked out."""
    rng = np.random.default_rng(5)
    c, A, b = _bounded(rng, 3)
    Ap, bp, mask = _pad(A, b)
    m = int(mask.sum())
    masks = np.repeat(mask[None], m, axis=0)
    masks[np.arange(m), np.arange(m)] = False
    res = lp.solve_lp_batch(Ap[:m], Ap, bp, masks)
    assert res.value.shape == (m,)
    for j in range(m):
        h = lp.solve_lp_host(Ap[j], Ap, bp, masks[j])
        assert int(res.status[j]) == int(h.status)
        assert float(res.value[j]) == pytest.approx(float(h.value), rel=1e-9, abs=1e-9)


def test_chebyshev_center_box_and_triangle():
    # Box [0, 2] x [0, 2]: centre (1, 1), radius 1.
    box_A = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    box_b = np.array([2.0, 0.0, 2.0, 0.0])
    # Triangle (0,0), (4,0), (0,3): inradius = area / semiperimeter = 6 / 6 = 1, incentre (1, 1).
    tri_A = np.array([[0.0, -1.0], [-1.0, 0.0], [3.0, 4.0]])
    tri_b = np.array([0.0, 0.0, 12.0])
    # A scaled, shifted triangle: vertices P, incentre = (a P_a + b P_b + c P_c) / (a + b + c).
    P = np.array([[1.0, 1.0], [3.0, 1.5], [1.5, 4.0]])
    rows, rhs = [], []
    for k in range(3):
        p, q, o = P[k], P[(k + 1) % 3], P[(k + 2) % 3]
        nrm = np.array([q[1] - p[1], p[0] - q[0]])
        if nrm @ (o - p) > 0:
            nrm = -nrm
        rows.append(nrm), rhs.append(nrm @ p)
    side = np.array([np.linalg.norm(P[(k + 1) % 3] - P[(k + 2) % 3]) for k in range(3)])
    incentre = side @ P / side.sum()
    e1, e2 = P[1] - P[0], P[2] - P[0]
    area = 0.5 * abs(e1[0] * e2[1] - e1[1] * e2[0])
    inradius = area / (0.5 * side.sum())

    As, bs, masks = [], [], []
    for A, b in ((box_A, box_b), (tri_A, tri_b), (np.array(rows), np.array(rhs))):
        Ap, bp, mask = np.zeros((8, 2)), np.zeros(8), np.zeros(8, bool)
        Ap[: len(A)], bp[: len(A)], mask[: len(A)] = A, b, True
        As.append(Ap), bs.append(bp), masks.append(mask)
    # An empty polytope has a negative radius (y <= -1 and y >= 1); a flat one radius 0 (y = 0).
    for extra_b in ([2.0, 0.0, -1.0, -1.0], [2.0, 0.0, 0.0, 0.0]):
        As.append(As[0]), masks.append(masks[0])
        bs.append(np.concatenate([extra_b, np.zeros(4)]))
    center, radius, status = lp.chebyshev_center(np.stack(As), np.stack(bs), np.stack(masks))
    assert np.all(np.asarray(status) == lp.OPTIMAL)
    np.testing.assert_allclose(np.asarray(radius[:3]), [1.0, 1.0, inradius], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(center[:3]), [[1.0, 1.0], [1.0, 1.0], incentre],
                               atol=1e-12)
    assert float(radius[3]) == pytest.approx(-1.0, abs=1e-12)
    assert float(radius[4]) == pytest.approx(0.0, abs=1e-12)


def test_robust_falls_back_on_iteration_limit():
    rng = np.random.default_rng(21)
    n = 5
    problems = [_bounded(rng, n) for _ in range(30)] + [_infeasible(rng, n) for _ in range(5)]
    problems += [_unbounded(rng, n) for _ in range(5)]
    C, A, B, MASK = _stack(problems)
    limited = lp.solve_lp_batch(C, A, B, MASK, max_iters=2)
    hit = np.asarray(limited.status) == lp.ITERATION_LIMIT
    assert hit.sum() >= 30
    res, n_fallback = lp.solve_lp_robust(C, A, B, MASK, max_iters=2)
    assert n_fallback == int(hit.sum())
    assert not np.any(np.isin(res.status, [lp.ITERATION_LIMIT, lp.NUMERICAL]))
    expected = lp.solve_lp_batch(C, A, B, MASK)
    np.testing.assert_array_equal(res.status, np.asarray(expected.status))
    for j in range(len(C)):
        _assert_matches_highs(res, C, A, B, MASK, j)


def test_jit_and_nonfinite_inside_jit():
    rng = np.random.default_rng(4)
    c, A, b = _bounded(rng, 3)
    Ap, bp, mask = _pad(A, b)
    f = jax.jit(lambda c, A, b, mask: lp.solve_lp(c, A, b, mask))
    assert int(f(c, Ap, bp, mask).status) == lp.OPTIMAL
    bad = Ap.copy()
    bad[0, 0] = np.nan
    assert int(f(c, bad, bp, mask).status) == lp.NUMERICAL
    with pytest.raises(ValueError, match="non-finite"):
        lp.solve_lp(c, bad, bp, mask)


def test_input_validation():
    A = np.eye(3)
    b = np.ones(3)
    c = np.ones(3)
    with pytest.raises(ValueError, match="shape"):
        lp.solve_lp(c[:2], A, b)
    with pytest.raises(ValueError, match="shape"):
        lp.solve_lp(c, A, b[:2])
    with pytest.raises(ValueError, match="shape"):
        lp.solve_lp(c, A[0], b)
    with pytest.raises(ValueError, match="boolean"):
        lp.solve_lp(c, A, b, np.ones(3))
    with pytest.raises(ValueError, match="solve_lp_batch"):
        lp.solve_lp(np.ones((2, 3)), A, b)
    with pytest.raises(ValueError, match="broadcast"):
        lp.solve_lp_batch(np.ones((2, 3)), np.ones((4, 3, 3)), b)
    with pytest.raises(ValueError, match="non-finite"):
        lp.solve_lp(np.array([1.0, np.inf, 0.0]), A, b)
    with pytest.raises(ValueError, match="non-finite"):
        lp.solve_lp_host(c, A, np.array([1.0, np.nan, 1.0]))


def test_host_solver_statuses():
    A = np.array([[1.0, 0.0], [-1.0, 0.0]])
    assert int(lp.solve_lp_host(np.array([1.0, 0.0]), A, np.array([-1.0, -1.0])).status) == lp.INFEASIBLE
    assert int(lp.solve_lp_host(np.array([1.0, 1.0]), A, np.array([1.0, 1.0])).status) == lp.UNBOUNDED
    r = lp.solve_lp_host(np.array([1.0, 0.0]), A, np.array([1.0, 1.0]))
    assert int(r.status) == lp.OPTIMAL and float(r.value) == pytest.approx(1.0)


def test_argmin_argmax_match_numpy():
    """The solvers' two-reduction ``argmin`` / ``argmax`` (jaxpoly.linalg) pick the first index of the
    extreme, as NumPy does, along any axis, with ties, infinities and integer scores."""
    from jaxpoly.linalg import argmax, argmin, min_and_argmin

    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (5, 7, 9)).astype(float)  # many ties
    x[0, 0, :] = np.inf
    x[1, 2, 3] = -np.inf
    x[2, :, 4] = -np.inf
    for axis in (0, 1, 2, -1):
        np.testing.assert_array_equal(argmin(jnp.asarray(x), axis), np.argmin(x, axis))
        np.testing.assert_array_equal(argmax(jnp.asarray(x), axis), np.argmax(x, axis))
        m, i = min_and_argmin(jnp.asarray(x), axis)
        np.testing.assert_array_equal(m, np.min(x, axis))
        np.testing.assert_array_equal(i, np.argmin(x, axis))
    k = rng.integers(-3, 4, (5, 7, 8)).astype(np.int32)  # integer scores (Bland's rule)
    np.testing.assert_array_equal(argmin(jnp.asarray(k)), np.argmin(k, -1))
    np.testing.assert_array_equal(argmax(jnp.asarray(k)), np.argmax(k, -1))
    assert argmin(jnp.asarray(x)).dtype == jnp.int32
