"""Exact region enumeration (``jaxpoly.enumeration``) against closed forms, the edge-subdivision engine
and the independent scipy reference (``tests/reference.py``)."""

from __future__ import annotations

import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpoly as jp
from jaxpoly import enumeration, lp, oracle
from jaxpoly.enumeration import enumerate_regions, sample_regions
from jaxpoly.regions import Regions, pattern_keys
from reference import binomial_count, lp_facets, lp_regions, numpy_forward, subset_count

BATCH = 64  # one batch size everywhere: compiled kernels are shared across tests


def _out(width: int, src: int, rng) -> jp.Stage:
    return jp.Stage((rng.standard_normal((width, 1)),), np.array([0.1]), sources=(src,), activation=jp.identity())


def single_layer(W: np.ndarray, b: np.ndarray, act=None) -> jp.Network:
    """``W (d, n)``: one hidden layer whose hyperplanes are ``x @ W + b = 0``."""
    rng = np.random.default_rng(0)
    return jp.Network((jp.Stage((W,), b, activation=act or jp.relu()),), _out(W.shape[1], 1, rng))


def mlp(seed: int, d: int, widths, act=None) -> jp.Network:
    rng = np.random.default_rng(seed)
    stages, prev = [], d
    for i, w in enumerate(widths):
        stages.append(jp.Stage((rng.standard_normal((prev, w)) / np.sqrt(prev),), 0.5 * rng.standard_normal(w),
                               sources=(i,), activation=act or jp.relu()))
        prev = w
    return jp.Network(tuple(stages), _out(prev, len(widths), rng))


def keys(patterns) -> set[bytes]:
    return {bytes(r) for r in np.packbits(np.asarray(patterns, bool), axis=1)}


def warned(caught) -> str:
    """The messages of the warnings ``pytest.warns`` caught, one text."""
    return "\n".join(str(w.message) for w in caught)


def check_certificates(net: jp.Network, R: Regions, *, probes_listed: bool = True) -> None:
    """Witness patterns, inradii, no duplicates, facet/adjacency consistency; with ``probes_listed``,
    where no cell below ``tol`` was seen, no pattern of the final probe left unlisted."""
    H = net.num_hyperplanes
    if probes_listed and R.complete and not R.stats["thin_cells"]:
        assert R.stats["unlisted_probes"] == 0, R.stats
    w = np.asarray(R.witnesses)
    assert np.all(R.inradius > 0)
    assert np.all((w > R.lo) & (w < R.hi))
    assert np.array_equal(np.asarray(net.pattern(w)), R.patterns[:, :H])
    if R.level_set:
        assert np.array_equal(np.asarray(net(w))[:, 0] > 0, R.patterns[:, H])
    assert len(keys(R.patterns)) == len(R)
    assert R.facet_ptr.shape == (len(R) + 1,) and R.facet_ptr[-1] == len(R.facet_idx)
    assert np.all(np.diff(R.facet_ptr) >= 2)  # a bounded full-dimensional polytope has >= d + 1 >= 2 facets
    if len(R.adjacency):
        a = R.adjacency
        assert np.all(a[:, 0] < a[:, 1]) and a.max() < len(R)
        # adjacent regions differ exactly on the bits of the hyperplane(s) of their shared facet
        diff = R.patterns[a[:, 0]] != R.patterns[a[:, 1]]
        assert np.all(diff.any(axis=1))


# ---------------------------------------------------------------------------------------------------
# single hidden layer: hyperplane arrangements
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d,n,walks", [(2, 16, False), (3, 12, False), (4, 10, False), (5, 9, False),
                                         (6, 8, False), (3, 12, True),
                                         pytest.param(4, 10, True, marks=pytest.mark.slow)])
def test_single_layer_matches_subset_count(monkeypatch, d, n, walks):
    """With ``walks``: the LP search (vertex path off) with the walk certificates forced on in low
    dimension, where they do not run by default."""
    if walks:
        monkeypatch.setattr(enumeration, "_VERTEX_MAX_SUBSETS", 0)
        monkeypatch.setattr(enumeration, "_WALK_MIN_DIM", 1)
    rng = np.random.default_rng(d)
    W, b = rng.standard_normal((d, n)), 1.2 * rng.standard_normal(n)
    net = single_layer(W, b)
    R = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH)
    assert R.complete
    expected = subset_count(W.T, b, -1.0, 1.0)
    assert expected < binomial_count(n, d)  # some hyperplanes miss parts of the box
    assert len(R) == expected
    assert (R.stats["walk_facets"] > 0) == walks
    check_certificates(net, R)


@pytest.mark.parametrize("d,widths,blocks", [(3, (14,), False), (3, (6, 6), False), (3, (14,), True),
                                             pytest.param(2, (70,), True, marks=pytest.mark.slow)])
def test_vertex_path_matches_lp_search(monkeypatch, d, widths, blocks):
    """The first level from the arrangement's vertices (no LPs) against the LP search on the same net.
    ``blocks``: the d-subsets solved and the vertices grouped a few at a time (as on large levels); the
    width-70 layer's patterns take two 64-bit words, and some of its hyperplanes miss the box."""
    net = mlp(20 + d, d, widths, act=jp.leaky_relu(0.1))
    if blocks:
        monkeypatch.setattr(enumeration, "_VERTEX_CHUNK", 64)
        monkeypatch.setattr(enumeration, "_VERTEX_GROUP_CHUNK", 16)
    V = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH)
    monkeypatch.setattr(enumeration, "_VERTEX_MAX_SUBSETS", 0)
    S = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH)
    assert V.stats["vertices"] > 0 and "vertices" not in S.stats
    assert V.complete and S.complete and len(V) == len(S)
    kv = [bytes(r) for r in np.packbits(V.patterns, axis=1)]
    ks = [bytes(r) for r in np.packbits(S.patterns, axis=1)]
    assert set(kv) == set(ks)
    pos = {k: i for i, k in enumerate(kv)}
    perm = np.array([pos[k] for k in ks])
    for i, j in enumerate(perm):
        assert set(S.facets(i)) == set(V.facets(j))
    pairs_s = {tuple(sorted((perm[a], perm[b]))) for a, b in S.adjacency}
    assert pairs_s == {tuple(p) for p in V.adjacency}
    check_certificates(net, V)


def test_vertex_path_falls_back_on_degenerate_arrangements():
    # three lines through the origin: a non-simple vertex, so the LP search must run
    W = np.array([[1.0, 0.0, 1.0, 0.3], [0.0, 1.0, -1.0, 1.0]])
    b = np.array([0.0, 0.0, 0.0, -0.5])
    R = enumerate_regions(single_layer(W, b), (-1.0, 1.0), batch_size=BATCH)
    assert "vertices" not in R.stats and R.stats["lps"] > 0
    assert keys(R.patterns) == keys([r.pattern for r in lp_regions(single_layer(W, b), -1.0, 1.0)])


def test_generic_single_layer_in_big_box_is_binomial():
    rng = np.random.default_rng(7)
    d, n = 3, 12
    W, b = rng.standard_normal((d, n)), rng.standard_normal(n)
    R = enumerate_regions(single_layer(W, b), (-1e3, 1e3), batch_size=BATCH)
    assert len(R) == binomial_count(n, d) == 299


# ---------------------------------------------------------------------------------------------------
# deep networks: against extract() and the LP reference
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d,widths", [(2, (8, 8)), (3, (6, 6)), (4, (5, 5))])
def test_multilayer_matches_extract(d, widths):
    net = mlp(d, d, widths)
    R = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=BATCH)
    C = jp.extract(net, (-1.0, 1.0), level_set=True)
    assert R.complete and len(R) == C.num_regions
    assert keys(R.patterns) == keys(C.regions.patterns)
    check_certificates(net, R)
    if d == 3:
        seen = sample_regions(net, (-1.0, 1.0), 100_000, key=jax.random.key(0), level_set=True)
        assert keys(seen) <= keys(R.patterns)
        assert len(seen) < len(R)  # sampling misses small regions: the baseline is strictly weaker


def test_chebyshev_lps_start_from_a_neighbours_basis(monkeypatch):
    """A cell's Chebyshev LP starts from the optimal basis of the cell it was found from (or of a later
    neighbour, while it waits in the queue) unless the crossed hyperplane is in that basis; the regions
    and inradii are those of the box start (the centres may differ: they need not be unique). In high
    dimension most starts are warm (93 % of the cells of a complete d = 8 enumeration with starts on)."""
    net = mlp(3, 3, (6, 6))
    starts, process = [], enumeration._process_batch

    def recording(ctx, pats, pmask, start, *args):
        starts.append(start)
        return process(ctx, pats, pmask, start, *args)

    monkeypatch.setattr(enumeration, "_process_batch", recording)
    # warm and cold cells in separate quarter-batch calls (the CPU's rule from d = 16)
    monkeypatch.setattr(enumeration, "_CHEBYSHEV_CHUNK_MIN_DIM", 0)
    R = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=BATCH)
    warm = np.concatenate(starts)[:, 0] >= 0
    assert warm.mean() > 0.2, warm.mean()  # d = 3: the ball touches 4 of a cell's few facets
    monkeypatch.setattr(enumeration, "_start_bases", lambda basis, flipped, d, cap: np.full_like(basis, -1))
    starts.clear()
    cold = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=BATCH)
    assert not np.any(np.concatenate(starts) >= 0)
    assert keys(R.patterns) == keys(cold.patterns) and len(R) == len(cold)
    order = {k: i for i, k in enumerate(pattern_keys(cold.patterns))}
    idx = [order[k] for k in pattern_keys(R.patterns)]
    np.testing.assert_allclose(R.inradius, cold.inradius[idx], rtol=0, atol=1e-9)
    check_certificates(net, R)


def test_inherited_redundancy_certificates_give_the_same_regions(monkeypatch):
    """With the neighbours' redundancy certificates (enumeration._Certificates, on from d = 8) the
    enumeration finds the same regions and facets with fewer LPs."""
    net = mlp(3, 3, (6, 6))
    out = {}
    for on in (True, False):
        monkeypatch.setattr(enumeration, "_INHERIT_MIN_DIM", 0 if on else 99)
        out[on] = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=BATCH)
    R, plain = out[True], out[False]
    assert R.stats["inherited"] > 0 and plain.stats["inherited"] == 0
    assert R.stats["lps"] < plain.stats["lps"]
    assert keys(R.patterns) == keys(plain.patterns) and len(R) == len(plain)
    assert np.array_equal(np.diff(R.facet_ptr), np.diff(plain.facet_ptr))
    check_certificates(net, R)


def test_a_waiting_cell_takes_a_later_neighbours_start():
    known: dict = {}
    pats = np.array([[True, False], [False, True]])
    cold = np.full((2, 3), -1, np.int32)
    sel, keys_ = enumeration._discover(known, pats, cold)
    queued = cold[sel]
    enumeration._wait_for_start(known, [keys_[j] for j in sel], queued)
    # found again with a start (row 0) and without one (row 1): only the first is handed over
    again = np.array([[4, 5, 6], [-1, -1, -1]], np.int32)
    sel, _ = enumeration._discover(known, pats, again)
    assert len(sel) == 0 and queued[0].tolist() == [4, 5, 6] and queued[1].tolist() == [-1, -1, -1]
    # within one call, a later duplicate hands its start to the first occurrence
    sel, _ = enumeration._discover(known, np.array([[True, True], [True, True]]),
                                   np.array([[-1, -1, -1], [1, 2, 3]], np.int32))
    assert sel.tolist() == [0]
    # a flipped hyperplane in the basis (slot 2 d + h) is replaced by the cap row (index 12 here); two
    # make the start unusable
    basis = np.array([[0, 7, 9], [0, 7, 9], [0, 7, 9]], np.int32)  # d = 3: slots 6.. are hyperplanes 0..
    flipped = np.zeros((3, 4), bool)
    flipped[0, 1] = True  # slot 7: in the basis
    flipped[1, 2] = True  # slot 8: not in it
    flipped[2, [1, 3]] = True  # slots 7 and 9
    assert enumeration._start_bases(basis, flipped, 3, 12).tolist() == [[0, 12, 9], [0, 7, 9], [-1, -1, -1]]


def test_chebyshev_starts_repaired_with_the_cap_row():
    """A neighbour across a row of its source's optimal Chebyshev basis starts from that basis with the
    row replaced by the cap row (enumeration._start_bases): the solver accepts it (dual feasible: fewer
    pivots than from its box) and reaches the same optimum."""
    jax.config.update("jax_enable_x64", True)
    B, d = 16, 5
    A, b = _random_cells(5, B, d, 12)
    M = A.shape[1]
    active = np.ones((B, M), bool)
    rows = _cell_rows(A, b)
    _, r, _, basis = oracle.chebyshev(rows, 4.0, np.full((B, d + 1), -1, np.int32), chunk=B // 2)
    # each cell's neighbour across the first hyperplane slot (>= 2 d) of its optimal basis
    k = np.array([next(j for j in bs if j >= 2 * d) for bs in basis])
    A2, b2 = A.copy(), b.copy()
    A2[np.arange(B), k] *= -1
    b2[np.arange(B), k] *= -1
    flipped = np.zeros((B, M - 2 * d), bool)
    flipped[np.arange(B), k - 2 * d] = True
    start = enumeration._start_bases(basis, flipped, d, M)
    assert np.all(np.sum(start == M, axis=1) == 1)  # every start repaired, none dropped
    runs = {}
    for name, b0 in (("repaired", start), ("box", np.full_like(start, -1))):
        c, Aa, ba, mask, b0 = oracle._cheb_problem(jnp.asarray(A2), jnp.asarray(b2), jnp.asarray(active), 4.0,
                                                   jnp.arange(B), jnp.asarray(b0))
        res, _ = lp._batched_solver_from(lp.DEFAULT_TOL, oracle._LP_BOX)(c, Aa, ba, mask, b0)
        runs[name] = res
    rep, box = runs["repaired"], runs["box"]
    ok = np.asarray(box.status) == lp.OPTIMAL  # a neighbour may be empty: both then say so
    assert ok.sum() >= B // 2 and np.array_equal(np.asarray(rep.status), np.asarray(box.status))
    np.testing.assert_allclose(np.asarray(rep.value)[ok], np.asarray(box.value)[ok], rtol=0, atol=1e-9)
    # seed 5: 6.1 pivots against 12.9 (a start the solver rejected would start from its box)
    assert np.asarray(rep.iterations)[ok].mean() < np.asarray(box.iterations)[ok].mean()


def test_deep_cells_solve_without_host_fallback():
    """Cells of deeper levels are bounded by their parent's facets only; the LPs keep the box rows on
    so that the solver's artificial box (sized by the rows) contains the cell. Without them this net
    sent 28 LPs to HiGHS; with them none, and the count matches extract."""
    rng = np.random.default_rng(13)
    stages, prev = [], 3
    for i, w in enumerate((8, 5, 4)):
        bias = 0.4 * rng.standard_normal(w)
        stages.append(jp.Stage((rng.standard_normal((prev, w)),), bias, sources=(i,)))
        prev = w
    out = jp.Stage((rng.standard_normal((prev, 1)),), np.full(1, 0.05), sources=(3,), activation=jp.identity())
    net = jp.Network(tuple(stages), out)
    R = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=64)
    assert R.complete and len(R) == jp.extract(net, (-1.0, 1.0), level_set=True).num_regions == 308
    assert R.stats["lp_fallbacks"] == 0


def test_warm_lp_pool_compiles_few_shapes(monkeypatch):
    """The warm-started redundancy LPs run in one of a few pool sizes (``oracle.warm_pools``: one on a
    CPU below d = 32), whatever each batch's count (one compilation each: a pool per power of two
    compiled 5 times on a small net, 6 of its 14 s)."""
    from jaxpoly import primal

    shapes, exceeds = set(), primal.exceeds

    def recording(*args, **kw):
        shapes.add((kw["lanes"], args[4].shape))
        return exceeds(*args, **kw)

    monkeypatch.setattr(primal, "exceeds", recording)
    R = enumerate_regions(mlp(4, 3, (8, 8)), (-1, 1), level_set=True, batch_size=BATCH)
    pools = oracle.warm_pools(4)
    assert len(pools) == 1 or jax.devices()[0].platform != "cpu"  # one compilation on a CPU
    assert R.stats["warm_lps"] > 0 and 0 < len(shapes) <= len(pools)
    assert {lanes for lanes, _ in shapes} <= {lanes for _, lanes in pools}


def test_bunny_2d():
    net = jp.load_model("bunny-2d-2x50")
    R = enumerate_regions(net, (-0.5, 0.5), level_set=True, batch_size=BATCH)
    assert len(R) == 255
    assert keys(R.patterns) == keys(jp.extract(net, (-0.5, 0.5), level_set=True).regions.patterns)
    check_certificates(net, R)


def test_matches_lp_reference_without_level_set():
    net = mlp(11, 2, (5, 5))
    R = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH)
    ref = lp_regions(net, -1.0, 1.0)
    assert keys(R.patterns) == keys([r.pattern for r in ref])


def _degenerate_layer() -> tuple[np.ndarray, np.ndarray]:
    """Six random lines in 2-D, then repeats, a positive multiple, a negated neuron, a parallel one and
    two dead ones (columns 6 to 12)."""
    rng = np.random.default_rng(3)
    W, b = rng.standard_normal((2, 6)), 0.5 * rng.standard_normal(6)
    W = np.concatenate([W, W[:, :2], 2.0 * W[:, 2:3], -W[:, 3:4], W[:, 4:5], np.zeros((2, 2))], axis=1)
    b = np.concatenate([b, b[:2], 2.0 * b[2:3], -b[3:4], b[4:5] + 0.3, [0.5, -0.5]])
    return W, b


@pytest.mark.parametrize("case", ["deep_level_set", "degenerate", "single_d4", "vanishing", "slab"])
def test_facets_and_adjacency_match_lp_reference(monkeypatch, case):
    """Every region's facets are those of HiGHS's redundancy LPs (``reference.lp_facets``), and the
    adjacency pairs are exactly the regions just across each hyperplane facet (the NumPy pattern of a
    point there), with every shortcut on whatever the dimension: facets certified by a known neighbour
    across them (``_known_facets``), inherited redundancy certificates, Chebyshev starts. "vanishing":
    zero biases, so second-layer neurons vanish on one side of first-layer facets (flipping the facet's
    bits names no region there; ``_patterns_across``). "slab": as "vanishing", and the region across
    the facet is a slab 1e-8 thick (a third-layer neuron, constant on this side, cuts beyond it):
    a point 1e-6 across landed beyond the slab, in a region that is not adjacent."""
    monkeypatch.setattr(enumeration, "_NEIGHBOUR_MIN_DIM", 0)
    monkeypatch.setattr(enumeration, "_INHERIT_MIN_DIM", 0)
    monkeypatch.setattr(enumeration, "_CHEBYSHEV_CHUNK_MIN_DIM", 0)
    monkeypatch.setattr(enumeration, "_VERTEX_MAX_SUBSETS", 0)  # the LP search on the first level too
    level_set = case == "deep_level_set"
    if case == "deep_level_set":
        net, lo, hi = mlp(3, 3, (6, 6)), np.array([-1.0, -0.5, -2.0]), np.array([1.5, 1.0, 0.0])
    elif case == "degenerate":
        net, lo, hi = single_layer(*_degenerate_layer()), -1.0, 1.0
    elif case == "single_d4":
        net, lo, hi = mlp(4, 4, (9,)), -1.0, 1.0
    elif case == "vanishing":
        net = jp.from_arrays([np.eye(2), np.array([[1.0, -1.0], [-1.0, 1.0]]), np.ones((2, 1))],
                             [np.zeros(2), np.zeros(2), np.zeros(1)])
        lo, hi = -1.0, 1.0
    else:
        net = jp.from_arrays([np.eye(2), np.array([[1.0], [0.0]]), np.ones((1, 1)), np.ones((1, 1))],
                             [np.zeros(2), np.zeros(1), np.array([-1e-8]), np.zeros(1)])
        lo, hi = -1.0, 1.0
    R = enumerate_regions(net, (lo, hi), level_set=level_set, batch_size=BATCH)
    assert R.complete and (R.stats["neighbour_facets"] > 0 or case in ("vanishing", "slab"))
    index = {k: i for i, k in enumerate(pattern_keys(R.patterns))}
    pairs = set()
    for r in range(len(R)):
        # the slab's own facets are 1e-8 apart: the reference's facet tolerance must be below that
        ref = lp_facets(net, R.patterns[r], lo, hi, level_set=level_set, tol=1e-10 if case == "slab" else 1e-7)
        assert sorted(R.facets(r).tolist()) == sorted(ref), r
        for x in ref.values():
            if x is not None:
                hv, y = numpy_forward(net, x[None])
                across = np.concatenate([hv, y[:, :1]], axis=1) if level_set else hv
                pairs.add(tuple(sorted((r, index[pattern_keys(across > 0)[0]]))))
    assert sorted(pairs) == sorted(map(tuple, R.adjacency.tolist()))


def test_cells_found_across_unsure_facets_certify_no_facet(monkeypatch):
    """A facet kept without proof (its LP failed: ``unsure``) may lead to an empty cell, so the cells
    found only across such facets do not count as known neighbours (``_known_facets``): with every
    redundant row of the first three batches' cells turned into an unsure facet, each later cell's facets
    are still exactly HiGHS's (without the doubtful set, rows across the empty cells were facets)."""
    monkeypatch.setattr(enumeration, "_NEIGHBOUR_MIN_DIM", 0)
    monkeypatch.setattr(enumeration, "_VERTEX_MAX_SUBSETS", 0)
    rng = np.random.default_rng(8)
    d, n = 3, 12
    net = single_layer(rng.standard_normal((d, n)), 0.6 * rng.standard_normal(n))
    classify, calls, checked = oracle.classify_facets, [], []

    def spoiled(rows, witness, valid, U, **kw):
        facets, unsure, cnt, cert = classify(rows, witness, valid, U, **kw)
        A, b, active = (np.asarray(a) for a in (rows.A, rows.b, rows.active))
        truth = np.zeros_like(facets)
        for c in np.flatnonzero(valid):
            on = np.flatnonzero(active[c])
            truth[c, on] = _highs_facets(A[c:c + 1, on], b[c:c + 1, on], 1e-9)[0][0]
        if len(calls) >= 3:
            assert np.array_equal(facets[valid], truth[valid])
            checked.append(int(cnt.neighbour))
        else:
            wrong = valid[:, None] & active & ~truth & (np.arange(A.shape[1]) >= 2 * d)[None, :]
            facets, unsure = facets | wrong, unsure | wrong
        calls.append(int(wrong.sum()) if len(calls) < 3 else 0)
        return facets, unsure, cnt, cert

    monkeypatch.setattr(oracle, "classify_facets", spoiled)
    R = enumerate_regions(net, (-1.0, 1.0), batch_size=16)
    assert R.complete and len(R) == subset_count(net.stages[0].kernels[0].T, net.stages[0].bias, -1.0, 1.0)
    assert sum(calls) > 20 and len(checked) >= 3 and sum(checked) > 0


def test_a_thin_sliver_is_crossed_not_counted():
    """Two parallel hyperplanes 2e-9 apart (inradius below ``tol`` = 1e-9 of the half-diagonal, too far
    apart to be one hyperplane) cut the square in half: the search crosses the sliver without counting
    it, so the regions beyond it are found (they were lost, complete=True)."""
    W = np.array([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    b = np.array([0.0, -2e-9, -0.3, -0.3])  # y = 0, y = 2e-9, and x = 0.3 twice (the LP search)
    net = jp.from_arrays([W, np.ones((4, 1))], [b, np.zeros(1)])
    with pytest.warns(jp.PrecisionWarning) as caught:
        R = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH)
    assert "2 cells thinner than tol" in warned(caught) and "1 activation patterns" in warned(caught)
    assert R.complete and len(R) == 4 and R.stats["thin_cells"] == 2
    assert R.stats["unlisted_probes"] == 1  # the probe's points close to the centre fall into the sliver
    assert keys(R.patterns) == keys([r.pattern for r in lp_regions(net, -1.0, 1.0, tol=np.sqrt(2) * 1e-9)])
    assert np.all(R.index_of(np.array([[0.0, 0.5], [0.6, 0.5], [0.0, -0.5], [0.6, -0.5]])) >= 0)
    check_certificates(net, R)


@pytest.mark.parametrize("gap", [1e-10, 1e-11])
def test_parallel_hyperplanes_closer_than_the_default_tol_part_with_a_smaller_one(gap):
    """``x = 0`` and ``x = gap`` (with ``y = 0.3``) cut the square into 6 regions (edge subdivision's
    count, a float64 engine of its own). Rows within ``tol`` of the box are one hyperplane, so the
    default tol (1e-9) finds 4 and ``tol=1e-12`` all 6, the sliver included (rows within 1e-9 were
    one hyperplane whatever tol: 4)."""
    W = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    net = jp.from_arrays([W, np.ones((3, 1))], [np.array([0.0, -gap, -0.3]), np.zeros(1)])
    assert jp.extract(net, (-1.0, 1.0), level_set=False).num_regions == 6
    with pytest.warns(jp.PrecisionWarning, match="1 activation patterns .* are not among the 4 regions"):
        assert len(enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH)) == 4  # the probe meets the sliver
    R = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH, tol=1e-12)
    assert R.complete and len(R) == 6 and R.stats["thin_cells"] == 0
    assert keys(R.patterns) == keys([r.pattern for r in lp_regions(net, -1.0, 1.0, tol=1e-13)])
    check_certificates(net, R)


def test_rescaled_input_gives_the_same_regions():
    """The network on ``x / s`` in the box ``s [-1, 1]^2`` has the same regions for every scale: whether a
    hyperplane is constant on a cell is judged relative to the cell's largest gradient (at s = 1e12 the
    regions collapsed)."""
    rng = np.random.default_rng(0)
    W0, b0 = rng.standard_normal((2, 4)), rng.standard_normal(4)
    W1, b1 = rng.standard_normal((4, 3)), rng.standard_normal(3)
    out = {}
    for s in (1.0, 1e12, 1e-12):
        net = jp.from_arrays([W0 / s, W1, np.ones((3, 1))], [b0, b1, np.zeros(1)])
        out[s] = enumerate_regions(net, (-s, s), batch_size=BATCH)
        assert out[s].complete
    assert len(out[1.0]) > 4 and keys(out[1e12].patterns) == keys(out[1.0].patterns) == keys(out[1e-12].patterns)


def _bias_scaled_mlp(seed: int, sizes) -> jp.Network:
    rng = np.random.default_rng(seed)
    return jp.from_arrays([rng.standard_normal((a, b)) for a, b in zip(sizes, sizes[1:])],
                          [0.3 * rng.standard_normal(b) for b in sizes[1:]])


def test_a_box_far_larger_than_the_cells_warns_and_keeps_certificates():
    """The hyperplanes of a 2-4-3-1 net meet within a few units of the origin (its smallest region has
    inradius 0.004). In +-1e6 every region is found (the same as edge subdivision's count). In +-1e8 and
    +-1e12 the regions thinner than ``tol`` x the half-diagonal are not counted and the LPs lose
    precision: then every region returned still has a witness of its pattern with a ball of the inradius
    checked in float64 (in +-1e8, 3 regions came back with a witness outside, and the lost regions went
    unmentioned up to +-1e12), and a warning says which."""
    net = _bias_scaled_mlp(1, [2, 4, 3, 1])
    R = enumerate_regions(net, (-1e6, 1e6), batch_size=BATCH)  # no warning (pyproject: warnings are errors)
    assert R.complete and len(R) == jp.extract(net, (-1e6, 1e6), level_set=False).num_regions == 39
    check_certificates(net, R)
    for s in (1e8, 1e12):
        with pytest.warns(jp.PrecisionWarning) as caught:
            R = enumerate_regions(net, (-s, s), batch_size=BATCH)
        text = warned(caught)
        assert 0 < len(R) < 39
        assert R.stats["thin_cells"] > 0 and "thinner than tol" in text
        if R.stats["failed_certificates"]:
            assert not R.complete and "failed the final check" in text
        check_certificates(net, R, probes_listed=False)
        G, g = oracle._all_rows(net, jnp.asarray(R.patterns), jnp.zeros(2), False)
        norm = np.linalg.norm(G, axis=-1)
        dist = np.abs(np.einsum("khd,kd->kh", G, R.witnesses) + g) / np.where(norm > 0, norm, 1.0)
        assert np.all((dist >= R.inradius[:, None] * (1 - 1e-12)) | (norm == 0))


def test_regions_lost_deep_in_a_huge_box_are_reported_by_the_probe():
    """A 4-3-6-1 net in +-1e9: its first level (3 planes) has no small cell, so no thin cell is seen and
    every certificate holds, yet the second level's cells near the origin are below tol (19 regions of
    the 52 in +-1e3). The final probe (points uniform in the box and at every scale around its centre)
    finds patterns that are not listed and says so (silent before); in +-1e3 it finds none."""
    net = _bias_scaled_mlp(1, [4, 3, 6, 1])
    R = enumerate_regions(net, (-1e3, 1e3), batch_size=BATCH)
    assert len(R) == 52 and R.stats["unlisted_probes"] == 0
    pats = sample_regions(net, (-1e3, 1e3), 20_000, key=jax.random.key(0))
    assert keys(pats) <= keys(R.patterns)
    with pytest.warns(jp.PrecisionWarning, match="are not among"):
        R = enumerate_regions(net, (-1e9, 1e9), batch_size=BATCH)
    assert len(R) < 52 and R.stats["thin_cells"] == R.stats["failed_certificates"] == 0
    assert R.stats["unlisted_probes"] > 0
    check_certificates(net, R, probes_listed=False)


def test_a_smaller_tol_resolves_the_cells_of_a_huge_box():
    """The two nets of the tests above, in boxes where the default tol loses regions: below the default
    ``tol`` is also the LPs' tolerance, so ``tol=1e-13`` finds every region, with no warning and every
    certificate checked (the LPs stayed at 1e-9 of the box before: 20 of the 39 regions in +-1e10, 21
    dropped by the final check, and the warning's advice to pass a smaller tol did not help; the 4-3-6-1
    net's 52 in +-1e9 too, checked by hand). At the least tol the warnings advise a smaller box only."""
    net = _bias_scaled_mlp(1, [2, 4, 3, 1])
    R = enumerate_regions(net, (-1e10, 1e10), batch_size=BATCH, tol=1e-13)
    assert R.complete and len(R) == 39
    assert R.stats["thin_cells"] == R.stats["failed_certificates"] == R.stats["unlisted_probes"] == 0
    check_certificates(net, R)
    with pytest.warns(jp.PrecisionWarning, match=r"tol is at its least \(1e-13\)"):
        R = enumerate_regions(net, (-1e13, 1e13), batch_size=BATCH, tol=1e-13)
    assert len(R) < 39


def test_a_box_of_very_different_sides_is_enumerated_as_a_cube():
    """The 2-6-5-1 net of inputs ``u`` read through ``x = s u``, ``s = (3e-7, 70)``, in the box ``s [-1, 1]``:
    the same regions as the net in [-1, 1]^2 (51, as edge subdivision finds in both). Before, tol was
    relative to the half-diagonal (70) alone, finer than the cells' width in x: 11 regions, 15 thin
    cells. The search now runs in coordinates scaled by powers of two to about [-1, 1] per side, and
    returns witnesses and inradii (balls inside each region, checked here) in the input's."""
    rng = np.random.default_rng(3)
    sizes = [2, 6, 5, 1]
    Ws = [rng.standard_normal((a, b)) for a, b in zip(sizes, sizes[1:])]
    bs = [0.5 * rng.standard_normal(b) for b in sizes[1:]]
    s = np.array([3e-7, 70.0])
    net, netx = jp.from_arrays(Ws, bs), jp.from_arrays([Ws[0] / s[:, None]] + Ws[1:], bs)
    for level_set in (False,):  # (level_set=True adds the output's sign to the same path)
        T = enumerate_regions(net, (-1.0, 1.0), level_set=level_set, batch_size=BATCH)
        R = enumerate_regions(netx, (-s, s), level_set=level_set, batch_size=BATCH)
        assert R.complete and keys(R.patterns) == keys(T.patterns)
        assert len(R) == jp.extract(netx, (-s, s), level_set=level_set).num_regions == (51 if not level_set else len(T))
        assert np.array_equal(R.lo, -s) and np.array_equal(R.hi, s)
        np.testing.assert_array_equal(R.index_of(R.witnesses), np.arange(len(R)))  # queries in x
        check_certificates(netx, R)
        G, g = oracle._all_rows(netx, jnp.asarray(R.patterns), jnp.zeros(2), level_set)
        norm = np.linalg.norm(G, axis=-1)
        dist = np.abs(np.einsum("khd,kd->kh", G, R.witnesses) + g) / np.where(norm > 0, norm, 1.0)
        assert np.all((dist >= R.inradius[:, None] * (1 - 1e-12)) | (norm == 0))
        assert np.all(s - np.abs(R.witnesses) >= R.inradius[:, None] * (1 - 1e-12))


def test_boxes_and_weights_whose_squares_underflow_are_refused():
    """Six lines in a box of half-width 1e-148, or with coefficients 1e-148 in [-1, 1]^2: all 12
    regions. At 1e-155 squared lengths underflow float64 (a ZeroDivisionError deep in the search for
    the box; 1 region and complete=True for the weights): a clear error instead."""
    rng = np.random.default_rng(4)
    W, b = rng.standard_normal((2, 6)), 0.5 * rng.standard_normal(6)
    T = enumerate_regions(single_layer(W, b), (-1.0, 1.0), batch_size=BATCH)
    for s in (1e-148, 1e-155):
        small_box = lambda: enumerate_regions(single_layer(W, b * s), (-s, s), batch_size=BATCH)  # noqa: E731
        small_weights = lambda: enumerate_regions(single_layer(W * s, b * s), (-1.0, 1.0), batch_size=BATCH)  # noqa: E731
        if s == 1e-148:
            for R in (small_box(), small_weights()):
                assert R.complete and keys(R.patterns) == keys(T.patterns) and len(T) == 12
        else:
            with pytest.raises(jp.InvalidBoundsError, match="scale the input up"):
                small_box()
            with pytest.raises(jp.InvalidNetworkError, match="underflow"):
                small_weights()


def test_witnesses_that_float64_cannot_place_in_a_far_box_are_reported():
    """A unit box centred at 1e8, where float64's spacing is 1.5e-8: a slab between two parallel lines
    1.2 spacings apart (inradius 9e-9, above tol) plus four generic lines. The search certifies every
    region in box-centred coordinates, but adding the centre rounds some witnesses onto a line or the
    box's face: they were returned as interior points with nothing said. Now they are counted and a
    warning says to translate the input; the same net translated to the origin has none."""
    c, rng = 1e8, np.random.default_rng(0)
    a = c + rng.uniform(-0.5, 0.5)
    N, off = rng.standard_normal((4, 2)), rng.uniform(-0.5, 0.5, 4)
    W = np.concatenate([[[1.0, -1.0], [0.0, 0.0]], N.T], axis=1)
    out = rng.standard_normal((6, 1))
    net = jp.from_arrays([W, out], [np.concatenate([[-a, a + 1.2 * np.spacing(c)], -(c * N.sum(1)) + off]), np.zeros(1)])
    with pytest.warns(jp.PrecisionWarning) as caught:
        R = enumerate_regions(net, (c - 1.0, c + 1.0), batch_size=BATCH)
    text = warned(caught)
    w = R.witnesses
    v, err = (np.asarray(a) for a in net.hyperplane_values_and_round_off(w))  # (on a line up to round-off: wrong)
    wrong = ~np.all((w > c - 1) & (w < c + 1), axis=1) | np.any((v > err) != R.patterns, axis=1) | np.any(np.abs(v) <= err, axis=1)
    assert wrong.sum() > 0 and R.stats["rounded_witnesses"] >= wrong.sum()
    assert "not strictly inside their regions" in text and "Translate the input" in text
    # and up front: the offsets at the centre carry round-off (eps 1.4e8 = 3e-8) beyond tol (1.4e-9)
    assert "lies far from the origin" in text and R.stats["centre_round_off"] > 1e-8
    centred = jp.from_arrays([W, out], [np.concatenate([[-(a - c), (a - c) + 1.2 * np.spacing(c)], off]), np.zeros(1)])
    T = enumerate_regions(centred, (-1.0, 1.0), batch_size=BATCH)
    assert T.stats["rounded_witnesses"] == T.stats["centre_round_off"] == 0
    assert len(T) >= len(R)
    check_certificates(centred, T)


def test_a_single_layer_in_a_huge_box_lists_its_vertices_and_warns():
    """Five lines within a unit of the origin in +-1e12: the vertex path's round-off test is relative to
    each vertex's own coordinates (relative to the box, every vertex looked degenerate), so it still
    lists every cell and reports the 6 below tolerance; the adjacency of the cells it keeps skips them
    (looking them up failed with an IndexError)."""
    rng = np.random.default_rng(7)
    net = single_layer(rng.standard_normal((2, 5)), 0.3 * rng.standard_normal(5))
    truth = binomial_count(5, 2)
    assert len(enumerate_regions(net, (-1e3, 1e3), batch_size=BATCH)) == truth
    with pytest.warns(jp.PrecisionWarning, match="thinner than tol"):
        R = enumerate_regions(net, (-1e12, 1e12), batch_size=BATCH)
    assert "vertices" in R.stats and R.stats["thin_cells"] > 0
    assert len(R) + R.stats["thin_cells"] == truth
    check_certificates(net, R, probes_listed=False)


# ---------------------------------------------------------------------------------------------------
# degenerate arrangements, other activations, skip connections
# ---------------------------------------------------------------------------------------------------


def test_three_lines_through_a_point():
    # x = 0, y = 0, x - y = 0 meet at the origin; x + y = 1 cuts three of the six sectors
    W = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, -1.0, 1.0]])
    b = np.array([0.0, 0.0, 0.0, -1.0])
    net = single_layer(W, b)
    R = enumerate_regions(net, (-2.0, 2.0), batch_size=BATCH)
    assert len(R) == 10
    check_certificates(net, R)
    assert keys(R.patterns) == keys([r.pattern for r in lp_regions(net, -2.0, 2.0)])


def test_repeated_parallel_and_dead_neurons():
    W, b = _degenerate_layer()
    net = single_layer(W, b)
    R = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH)
    distinct = np.concatenate([W[:, :6], W[:, 10:11]], axis=1), np.concatenate([b[:6], b[10:11]])
    assert len(R) == subset_count(distinct[0].T, distinct[1], -1.0, 1.0)
    check_certificates(net, R)
    assert np.all(R.patterns[:, 6:8] == R.patterns[:, :2]) and np.all(R.patterns[:, 9] != R.patterns[:, 3])
    assert np.all(R.patterns[:, 11]) and not np.any(R.patterns[:, 12])


def test_leaky_relu_matches_extract():
    net = mlp(5, 2, (8, 8), act=jp.leaky_relu(0.1))
    R = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=BATCH)
    assert keys(R.patterns) == keys(jp.extract(net, (-1.0, 1.0), level_set=True).regions.patterns)
    check_certificates(net, R)


def test_residual_network_matches_extract():
    rng = np.random.default_rng(9)
    s1 = jp.Stage((rng.standard_normal((2, 8)),), 0.5 * rng.standard_normal(8), sources=(0,))
    s2 = jp.Stage((rng.standard_normal((2, 8)), 0.5 * rng.standard_normal((8, 8))), 0.5 * rng.standard_normal(8),
                  sources=(0, 1))
    out = jp.Stage((rng.standard_normal((2, 1)), rng.standard_normal((8, 1))), np.array([0.2]), sources=(0, 2),
                   activation=jp.identity())
    net = jp.Network((s1, s2), out)
    R = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=BATCH)
    assert keys(R.patterns) == keys(jp.extract(net, (-1.0, 1.0), level_set=True).regions.patterns)
    check_certificates(net, R)


# ---------------------------------------------------------------------------------------------------
# API: limits, persistence, queries, errors
# ---------------------------------------------------------------------------------------------------


def test_max_regions_flags_incomplete():
    net = mlp(2, 2, (8, 8))
    full = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=BATCH)
    with pytest.warns(jp.IncompleteResultWarning, match="max_regions") as caught:
        part = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=BATCH, max_regions=10)
    assert caught[0].filename == __file__  # attributed to the caller's line, not jaxpoly's
    assert not part.complete and full.complete
    assert len(part) == 10 and keys(part.patterns) <= keys(full.patterns)


def test_few_max_regions_search_instead_of_solving_every_vertex():
    """The vertex path solves every d-subset before it has a cell; with ``max_regions`` far below the
    subsets the LP search, which stops there, runs instead. Without a cap the vertex path lists them all."""
    net = mlp(5, 4, (24,))
    full = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH, max_regions=10**6)
    with pytest.warns(jp.IncompleteResultWarning):
        part = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH, max_regions=20)
    assert full.complete and full.stats["vertex_systems"] > 0 and full.stats["lps"] == 0
    assert not part.complete and part.stats.get("vertex_systems", 0) == 0 and part.stats["lps"] > 0
    assert len(part) == 20 and keys(part.patterns) <= keys(full.patterns)
    check_certificates(net, part)


@pytest.mark.parametrize("vertex_path", [True, False])
def test_max_regions_on_an_intermediate_level(monkeypatch, vertex_path):
    net = mlp(2, 2, (8, 8))
    full = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH)
    if not vertex_path:
        monkeypatch.setattr(enumeration, "_VERTEX_MAX_SUBSETS", 0)
    first = enumerate_regions(jp.Network(net.stages[:1], _out(8, 1, np.random.default_rng(0))), (-1.0, 1.0),
                              batch_size=BATCH)
    cap = len(first) // 2  # the first level alone has more cells than this
    seen = []
    name = "_vertex_output" if vertex_path else "_search_level"
    orig = getattr(enumeration, name)

    def spy(ctx, *args):
        res = orig(ctx, *args)
        seen.append((sum(len(o[0]) for o in res[0]), res[2]))
        return res

    monkeypatch.setattr(enumeration, name, spy)
    with pytest.warns(jp.IncompleteResultWarning, match="max_regions"):
        part = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH, max_regions=cap)
    assert not part.complete and full.complete
    assert len(part) == cap and keys(part.patterns) <= keys(full.patterns)
    assert seen[0] == (cap, True)  # the first level stopped at max_regions cells
    check_certificates(net, part)


@pytest.mark.parametrize("where", ["final", "intermediate", "vertex"])
def test_keyboard_interrupt_returns_partial_result(monkeypatch, where):
    net = mlp(2, 2, (8, 8))
    full = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=BATCH)
    levels = enumeration._levels(net, True)  # hidden 1 (vertex path), hidden 2, output sign
    target = levels[-1] if where == "final" else levels[-2]
    orig = enumeration._process_batch
    calls = {"n": 0}

    def flaky(ctx, pats, pmask, start, support, stage, *args):
        if stage == target:
            calls["n"] += 1
            if calls["n"] == 2:  # after the first batch of the target level
                raise KeyboardInterrupt
        return orig(ctx, pats, pmask, start, support, stage, *args)

    def vertex_interrupted(ctx, stage, max_cells):
        raise KeyboardInterrupt

    if where == "vertex":
        monkeypatch.setattr(enumeration, "_vertex_level", vertex_interrupted)
    else:
        monkeypatch.setattr(enumeration, "_process_batch", flaky)
    with pytest.warns(jp.IncompleteResultWarning, match="interrupted") as caught:
        part = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=8)
    assert not part.complete and part.stats["interrupted"]
    if where == "final":
        assert len(part) == 8  # the first batch of the last level: certified regions
        assert keys(part.patterns) <= keys(full.patterns)
        check_certificates(net, part)
    else:
        assert len(part) == 0  # stopped before the last level: no region certified yet
        level = 1 if where == "vertex" else 2
        assert part.stats["interrupted_level"] == level and f"in level {level} of 3" in warned(caught)


def test_a_ctrl_c_lost_in_a_finalizer_still_stops_the_search(monkeypatch, lose_a_ctrl_c):
    finalized, dropped = lose_a_ctrl_c
    net = mlp(2, 2, (8, 8))
    target = enumeration._levels(net, False)[-1]
    orig = enumeration._process_batch
    calls = {"n": 0}

    def lossy(ctx, pats, pmask, start, support, stage, *args):
        if stage == target:
            calls["n"] += 1
            if calls["n"] == 2:
                finalized()
        return orig(ctx, pats, pmask, start, support, stage, *args)

    monkeypatch.setattr(enumeration, "_process_batch", lossy)
    with pytest.warns(jp.IncompleteResultWarning, match="interrupted"):
        part = enumerate_regions(net, (-1.0, 1.0), batch_size=8)
    assert not part.complete and part.stats["interrupted"] and calls["n"] == 2
    assert len(part) == 16  # the two batches of 8 run until Ctrl-C was seen, the second one whole
    assert not dropped  # not reported: the search stopped instead
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert sys.unraisablehook == dropped.append


def test_progress_bar(capsys):
    net = mlp(2, 2, (8,))
    R = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH, progress=True)
    err = capsys.readouterr().err
    assert R.complete and "layer 1/1" in err and "regions" in err


def test_save_load_queries_and_maps(tmp_path):
    net = mlp(2, 2, (8, 8))
    R = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=BATCH)
    R.save(tmp_path / "r.npz")
    L = Regions.load(tmp_path / "r.npz", net=net)
    for f in ("patterns", "witnesses", "inradius", "facet_ptr", "facet_idx", "adjacency", "lo", "hi"):
        assert np.array_equal(getattr(R, f), getattr(L, f))
    assert L.complete == R.complete and L.stats["lps"] == R.stats["lps"]
    assert np.array_equal(L.index_of(R.witnesses), np.arange(len(R)))
    assert not L.contains(np.array([[5.0, 0.0]]))[0]
    A, c = R.affine_maps()
    y = np.einsum("rod,rd->ro", A, R.witnesses) + c
    np.testing.assert_allclose(y, np.asarray(net(R.witnesses)), rtol=1e-10, atol=1e-12)
    assert R.stats["lps"] > 0 and R.stats["rays"] > 0 and "lp_fallbacks" in R.stats


def test_bad_inputs():
    net = mlp(2, 2, (4,))
    with pytest.raises(jp.InvalidBoundsError):
        enumerate_regions(net, (1.0, -1.0))
    with pytest.raises(jp.InvalidBoundsError):
        enumerate_regions(net, ((0.0, 0.0, 0.0), 1.0))
    bad = jp.Network((jp.Stage((np.full((2, 4), np.nan),), np.zeros(4)),), net.output)
    with pytest.raises(jp.InvalidNetworkError):
        enumerate_regions(bad, (-1.0, 1.0))
    two = jp.Network(net.stages, jp.Stage((np.ones((4, 2)),), np.zeros(2), sources=(1,), activation=jp.identity()))
    with pytest.raises(jp.InvalidNetworkError):
        enumerate_regions(two, (-1.0, 1.0), level_set=True)
    with pytest.raises(jp.CapacityError, match="batch_size <="):
        enumerate_regions(net, (-1.0, 1.0), batch_size=10**12)


def test_out_of_memory_becomes_capacity_error(monkeypatch):
    def oom(*args, **kwargs):
        raise MemoryError("simulated")

    monkeypatch.setattr(enumeration, "_enumerate", oom)
    with pytest.raises(jp.CapacityError, match=r"batch_size <= 16"):
        enumerate_regions(mlp(2, 2, (4,)), (-1.0, 1.0), batch_size=64)


_SHARDED = """
import os, sys, jax, numpy as np, pytest
jax.config.update("jax_enable_x64", True)
sys.path.insert(0, sys.argv[1])
from jax.sharding import Mesh
from test_enumeration import mlp
import jaxpoly as jp
from jaxpoly.enumeration import enumerate_regions
assert len(jax.devices()) == 4


def same(A, B):
    assert len(A) == len(B) and A.complete == B.complete
    for f in ("patterns", "facet_ptr", "facet_idx", "adjacency"):
        assert np.array_equal(getattr(A, f), getattr(B, f)), f
    np.testing.assert_allclose(A.witnesses, B.witnesses, rtol=0, atol=1e-12)


net = mlp(2, 2, (8, 8))
A = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=64)
B = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=64, devices=jax.devices())
same(A, B)
same(A, enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=64, devices=jax.devices()[:1]))
# the walks, inherited certificates and neighbour facets too (from d = 8 or 20 on; forced here, as a
# d = 24 net costs 40 s more): every batch's rays, walks and warm-started redundancy LPs run on each
# device's own cells (a 2 x 2 mesh)
from jaxpoly import enumeration
dims = enumeration._WALK_MIN_DIM, enumeration._INHERIT_MIN_DIM, enumeration._NEIGHBOUR_MIN_DIM
enumeration._WALK_MIN_DIM = enumeration._INHERIT_MIN_DIM = enumeration._NEIGHBOUR_MIN_DIM = 0
E = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=64,
                      devices=Mesh(np.array(jax.devices()).reshape(2, 2), ("a", "b")))
same(A, E)
assert min(E.stats[k] for k in ("walk_facets", "warm_lps", "inherited", "neighbour_facets")) > 0, E.stats
enumeration._WALK_MIN_DIM, enumeration._INHERIT_MIN_DIM, enumeration._NEIGHBOUR_MIN_DIM = dims
# the Chebyshev pools per device, from d = 2 on, with one LP of every device's pool spoiled: HiGHS
# solves it (on one device the pool runs from d = 16 only)
from jaxpoly import lp, oracle
enumeration._CHEBYSHEV_CHUNK_MIN_DIM = 0
solve = oracle._chebyshev_on_device
def spoiled(*args, **kw):
    x, status, basis = solve(*args, **kw)
    return x, status.at[0].set(lp.NUMERICAL), basis
oracle._chebyshev_on_device = spoiled
C = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=64, devices=jax.devices())
same(A, C)
assert C.stats["lp_fallbacks"] >= 4, C.stats
oracle._chebyshev_on_device = solve
# the cold LPs per device too: no warm start (every undecided row to redundancy_lps), bounding boxes
# counted, one LP per device and call spoiled
calls = {"box": 0}
warm, box = oracle.warm_redundancy, oracle.bounding_box
def no_warm(rows, valid, cell, row, *args, **kw):
    return (np.zeros(len(cell), bool), np.zeros(len(cell), bool), np.full((len(cell), rows.A.shape[-1]), -1), 0)
def counted(*args, **kw):
    calls["box"] += args[-1] is not None
    return box(*args, **kw)
plain = oracle._plain_on_device
def spoiled_plain(*args, **kw):  # one LP per device and call flagged: HiGHS
    value, status = plain(*args, **kw)
    return value, status.at[0].set(lp.NUMERICAL)
oracle.warm_redundancy, oracle.bounding_box, oracle._plain_on_device = no_warm, counted, spoiled_plain
D = enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=64, devices=jax.devices())
oracle.warm_redundancy, oracle.bounding_box, oracle._plain_on_device = warm, box, plain
same(A, D)
assert D.stats["warm_lps"] == 0 and calls["box"] > 0 and D.stats["lp_fallbacks"] >= 4, (D.stats, calls)
with pytest.raises(jp.InvalidArgumentError, match="more than once"):
    enumerate_regions(net, (-1.0, 1.0), devices=Mesh(np.array(jax.devices()[:1] * 2), ("batch",)))
os.environ["PJRT_NPROC"] = "4"  # (read at each call) 4 devices on 4 threads can deadlock: refused
with pytest.raises(jp.InvalidArgumentError, match="PJRT_NPROC=5"):
    enumerate_regions(net, (-1.0, 1.0), devices=jax.devices())
print("OK", len(A))
"""


def test_sharded_over_four_host_devices_matches_one_device():
    """Four host CPU devices (XLA's CPU pool sized above the device count, as the library asks: four
    devices on a pool of 2 or 4 threads hung at d = 24)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PJRT_NPROC="5",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4".strip())
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", _SHARDED, here], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK 81" in out.stdout


def test_sample_regions_rejects_bad_counts():
    net = jp.from_arrays([np.eye(2), np.ones((2, 1))], [np.zeros(2), np.zeros(1)])
    for kwargs in ({"num_samples": 0}, {"num_samples": 10, "batch_size": 0}, {"num_samples": 2.5}):
        n = kwargs.pop("num_samples")
        with pytest.raises(jp.InvalidArgumentError):
            sample_regions(net, (-1, 1), n, key=jax.random.key(0), **kwargs)


@pytest.mark.parametrize("t", [1e-12, 1e12])
def test_rescaling_a_hidden_layer_keeps_the_regions(t):
    """A layer's kernel and bias times ``t > 0`` leave every pattern and facet, so the regions and their
    inradii: whether a hyperplane is constant on a region is decided against its own scale (relative to
    the region's largest row, as before, layer 2's rows were constant at ``t = 1e-12`` and layer 1's at
    ``1e12``: 7 and 6 regions of 16)."""
    from jaxpoly.geometry import region_inradius

    net = mlp(1, 2, (4, 3))
    s1 = net.stages[1]
    scaled = jp.Network((net.stages[0], jp.Stage((s1.kernels[0] * t,), s1.bias * t, sources=s1.sources,
                                                 activation=s1.activation)), net.output)
    A, B = enumerate_regions(net, (-1, 1)), enumerate_regions(scaled, (-1, 1))
    assert len(A) == len(B) == 16 and A.complete and B.complete
    order = np.lexsort(np.asarray(B.patterns).T)
    assert np.array_equal(np.asarray(A.patterns)[np.lexsort(np.asarray(A.patterns).T)], np.asarray(B.patterns)[order])
    assert jp.extract(scaled, (-1, 1), level_set=False, engine="regions").num_regions == 16
    ra = np.sort(np.asarray(region_inradius(net, A)))
    rb = np.sort(np.asarray(region_inradius(scaled, B)))
    np.testing.assert_allclose(ra, rb, rtol=1e-9)


def test_zero_bias_network_regions_match_sampling_and_queries():
    """Freshly initialised networks have zero biases: a deep neuron then vanishes on the whole region
    where its inputs are all off. Every sampled pattern is enumerated, and points inside such a region
    (exact zeros) find their region."""
    rng = np.random.default_rng(3)
    sizes = [2, 4, 4, 1]
    net = jp.from_arrays([rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(sizes, sizes[1:])],
                              [np.zeros(b) for b in sizes[1:]])
    regions = enumerate_regions(net, (-1, 1), level_set=True)
    pats = sample_regions(net, (-1, 1), 100_000, key=jax.random.PRNGKey(0), level_set=True)
    have = {p.tobytes() for p in np.asarray(regions.patterns)}
    assert all(p.tobytes() in have for p in np.asarray(pats))
    x = np.asarray(jax.random.uniform(jax.random.PRNGKey(1), (4000, 2), minval=-1, maxval=1))
    vals = np.asarray(net.hyperplane_values(x))
    assert np.any(np.all(vals[:, 4:] == 0, axis=1))  # some points where every deep neuron is exactly 0
    idx = regions.index_of(x)
    assert np.all(idx >= 0)
    got = np.asarray(regions.patterns)[idx]
    want = np.concatenate([vals > 0, np.asarray(net(x))[:, :1] > 0], axis=1)
    np.testing.assert_array_equal(got, want)


def _cell_rows(A: np.ndarray, b: np.ndarray) -> oracle.CellRows:
    """:class:`jaxpoly.oracle.CellRows` of cells ``A (B, M, d)``, ``b (B, M)`` (e.g. from
    :func:`_random_cells`): every row active and meaningful, none repeated or constant."""
    B, M, _ = A.shape
    return oracle.CellRows(jnp.asarray(A), jnp.asarray(b), jnp.ones((B, M), bool), jnp.zeros((B, M, M), bool),
                           jnp.zeros((B, M), bool), jnp.ones((B, M), bool))


def _random_cells(seed: int, B: int, d: int, extra: int, degenerate: bool = False):
    """``B`` polytopes around the origin: the box ``|y_i| <= 1`` and ``extra`` random unit rows at
    distances in [0.2, 1]; ``degenerate`` makes the last four rows three rows through one vertex of the
    cell (a degenerate vertex) and a repeated row."""
    rng = np.random.default_rng(seed)
    M = 2 * d + extra
    A = np.zeros((B, M, d))
    A[:, :d], A[:, d : 2 * d] = np.eye(d), -np.eye(d)
    A[:, 2 * d :] = rng.standard_normal((B, extra, d))
    A /= np.linalg.norm(A, axis=-1, keepdims=True)
    b = np.concatenate([np.ones((B, 2 * d)), rng.uniform(0.2, 1.0, (B, extra))], axis=1)
    if degenerate:
        from scipy.optimize import linprog

        for c in range(B):
            keep = slice(0, M - 4)
            v = linprog(-rng.standard_normal(d), A_ub=A[c, keep], b_ub=b[c, keep], bounds=[(None, None)] * d,
                        method="highs").x  # a vertex of the cell without its last 4 rows
            for i in range(M - 4, M - 1):  # three rows through it
                a = rng.standard_normal(d)
                a *= np.sign(a @ v) / np.linalg.norm(a)
                A[c, i], b[c, i] = a, a @ v
            A[c, -1], b[c, -1] = A[c, 2 * d], b[c, 2 * d]  # a repeated row
    return A, b


def _highs_facets(A, b, threshold):
    """``(facet (B, M), max (B, M))``: ``max a_k y`` over cell ``c`` without row ``k`` (HiGHS)."""
    from scipy.optimize import linprog

    B, M, d = A.shape
    facets, vmax = np.zeros((B, M), bool), np.zeros((B, M))
    for c in range(B):
        for k in range(M):
            keep = np.arange(M) != k
            r = linprog(-A[c, k], A_ub=A[c, keep], b_ub=b[c, keep], bounds=[(None, None)] * d, method="highs")
            vmax[c, k] = np.inf if r.status == 3 else -r.fun
            facets[c, k] = vmax[c, k] > b[c, k] + threshold
    return facets, vmax


def test_walk_certificates_are_facets():
    """Every row a walk certifies is a facet by HiGHS, and the walks find most facets."""

    jax.config.update("jax_enable_x64", True)
    B, d = 6, 12
    A, b = _random_cells(7, B, d, 40)
    M = A.shape[1]
    active = np.ones((B, M), bool)
    rows = np.tile(np.arange(M, dtype=np.int32), (B, 1))
    walked = np.asarray(oracle.walk_certificates(A, b, active, np.zeros((B, d)), rows, np.asarray(1e-9),
                                                 steps=d))
    facets, _ = _highs_facets(A, b, 1e-9)
    assert not (walked & ~facets).any()  # a certificate is never wrong
    assert walked.sum() >= 0.8 * facets.sum()  # and the walks are worth running
    # the pool's size changes only the order in which the walks run: one lane, three (loaded one at
    # a time), and more lanes than walks
    for lanes in (1, 3, 2 * B * M):
        again = oracle.walk_certificates(A, b, active, np.zeros((B, d)), rows, np.asarray(1e-9), steps=d,
                                         lanes=lanes)
        np.testing.assert_array_equal(again, walked)


def test_padding_cells_are_skipped_not_solved(monkeypatch):
    """A batch's padding (cells past ``num_cells`` for the Chebyshev LPs, cells without rows for the
    walks) is not solved, and the real cells get what they get alone: the same radii as one unchunked
    solve, the same walks as a batch of only them."""
    jax.config.update("jax_enable_x64", True)
    B, d, n = 32, 6, 5
    A, b = _random_cells(11, B, d, 20)
    M = A.shape[1]
    active = np.ones((B, M), bool)
    rows = _cell_rows(A, b)
    _, r_all, _, _ = oracle.chebyshev(rows, 4.0)
    start = np.full((B, d + 1), -1, np.int32)
    solved = []
    real = lp._solve_pool

    def counting(*args, **kwargs):
        res = real(*args, **kwargs)
        solved.append(int(np.sum(np.asarray(res[0].iterations) > 0)))
        return res

    monkeypatch.setattr(lp, "_solve_pool", counting)
    x, r, _, _ = oracle.chebyshev(rows, 4.0, start, chunk=B // 4, num_cells=n)
    assert solved == [n]  # the pool solves the 5 real cells, not the 27 padding cells
    np.testing.assert_allclose(r[:n], r_all[:n], rtol=0, atol=1e-9)
    assert np.all(r[n:] == -np.inf)
    assert np.all(b[:n] - np.einsum("bmd,bd->bm", A[:n], x[:n]) >= r[:n, None] - 1e-9)
    solved.clear()
    assert np.all(oracle.chebyshev(rows, 4.0, start, chunk=B // 4, num_cells=0)[1] == -np.inf) and not solved

    idx = np.tile(np.arange(2 * d, M, dtype=np.int32), (B, 1))
    idx[: B // 2] = -1  # the first 16-cell chunk has no rows to walk
    y0 = np.zeros((B, d))
    walked = np.asarray(oracle.walk_certificates(A, b, active, y0, idx, np.asarray(1e-9), steps=d))
    alone = np.asarray(oracle.walk_certificates(A[B // 2 :], b[B // 2 :], active[B // 2 :], y0[B // 2 :],
                                                idx[B // 2 :], np.asarray(1e-9), steps=d))
    assert not walked[: B // 2].any() and alone.any()
    assert np.array_equal(walked[B // 2 :], alone)

    # rays and LP-free certificates: slices of the batch without a valid cell are skipped, the valid
    # cells get what the plain functions give them
    valid = np.zeros(B, bool)
    valid[:n] = True
    U = enumeration._unit_rays(16, d, 0)
    margin, tol = np.asarray(1e-9), np.asarray(1e-9)
    y0 = np.asarray(x)
    facet, red, simplex = oracle.witness_certificates(A, b, active, y0, valid, U, margin, tol)
    plain = oracle.cheap_certificates(A, b, active, y0, margin, tol)
    rays = oracle.shoot_rays(A, b, active, y0, U, margin)
    chunk = B // oracle._CELL_CHUNKS
    np.testing.assert_array_equal(facet[:chunk], (plain[0] | rays)[:chunk])
    np.testing.assert_array_equal(red[:chunk], plain[1][:chunk])
    np.testing.assert_array_equal(simplex[:chunk], plain[2][:chunk])
    assert facet[:n].any() and not facet[chunk:].any() and not red[chunk:].any()


def test_same_rows_matches_all_pairs():
    """The oracle's repeated-row test (cheap projections first, all pairs only when they allow a
    repeat) equals the plain all-pairs comparison, on batches with and without repeats; rows 1e-10
    apart are one hyperplane, 1e-7 apart two."""

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(3)
    B, M, d = 4, 12, 6
    A = rng.standard_normal((B, M, d))
    A /= np.linalg.norm(A, axis=-1, keepdims=True)
    b = rng.uniform(0.1, 1.0, (B, M))
    ok = np.ones((B, M), bool)
    ok[:, -1] = False  # a constant row is never the same as anything, itself included

    def brute(A, b):
        dA = np.max(np.abs(A[:, :, None] - A[:, None]), axis=-1)
        return (dA <= oracle._SAME) & (np.abs(b[:, :, None] - b[:, None]) <= oracle._SAME * 2.0) \
            & ok[:, :, None] & ok[:, None]

    same = np.asarray(oracle._same_rows(A, b, ok, 2.0))
    assert (same == brute(A, b)).all() and (same == np.eye(M, dtype=bool) & ok[:, :, None]).all()
    A2, b2 = A.copy(), b.copy()
    A2[1, 3], b2[1, 3] = A[1, 7] + 1e-10, b[1, 7]  # the same hyperplane (within round-off)
    A2[2, 4], b2[2, 4] = A[2, 5] + 1e-7, b[2, 5]  # a different one
    A2[3, 0], b2[3, 0] = A[3, 2], b[3, 2] + 1e-7
    same = np.asarray(oracle._same_rows(A2, b2, ok, 2.0))
    assert (same == brute(A2, b2)).all()
    assert same[1, 3, 7] and same[1, 7, 3] and not same[2, 4, 5] and not same[3, 0, 2]


@pytest.mark.parametrize("d,degenerate",
                         [pytest.param(2, False, marks=pytest.mark.slow),
                          pytest.param(4, False, marks=pytest.mark.slow),
                          pytest.param(8, False, marks=pytest.mark.slow), (5, True)])
def test_warm_started_primal_simplex_matches_highs(d, degenerate):
    """jaxpoly.primal: one vertex per cell, then every row's redundancy question walked from it; the
    answers (and the optima of redundant rows) agree with HiGHS, and few lanes are left unresolved."""
    from jaxpoly import primal

    jax.config.update("jax_enable_x64", True)
    B, extra, thr = 5, 3 * d + 4, 1e-9
    A, b = _random_cells(11 + d, B, d, extra, degenerate)
    M = A.shape[1]
    active = np.ones((B, M), bool)
    start = primal.cell_vertices(A, b, active, np.ones((B, d)))
    assert (np.asarray(start.status) == primal.OPTIMAL).all()
    x0, basis = np.asarray(start.x), np.asarray(start.basis)
    for c in range(B):  # a vertex: feasible, its d basis rows tight and independent
        assert (A[c] @ x0[c] <= b[c] + 1e-9).all()
        assert np.allclose(A[c, basis[c]] @ x0[c], b[c, basis[c]], atol=1e-9)
        assert np.linalg.matrix_rank(A[c, basis[c]]) == d
    cell, row = (a.ravel().astype(np.int32) for a in np.meshgrid(np.arange(B), np.arange(M), indexing="ij"))
    status, value, opt_basis, pivots = (np.asarray(a) for a in primal.exceeds(
        A, b, active, start, cell, row, np.asarray(thr), max_iters=2 * d + 16))
    facets, vmax = _highs_facets(A, b, thr)
    resolved = status != primal.UNRESOLVED
    assert resolved.mean() >= (0.9 if degenerate else 0.99)
    assert ((status == primal.ABOVE) == facets.ravel())[resolved].all()
    opt = status == primal.OPTIMAL
    assert np.allclose(value[opt], vmax.ravel()[opt], atol=1e-8)

    def certified(st, val, bas, cell, row):
        """An optimum's basis is a dual certificate: a_k = sum u_j a_j over its rows, u >= 0, bound =
        value. (Walks from other start vertices may end at another optimal basis.)"""
        o = st == primal.OPTIMAL
        assert (bas[~o] == -1).all() and (bas[o] >= 0).all()
        for i in np.flatnonzero(o):
            S = bas[i]
            assert row[i] not in S
            u = np.linalg.solve(A[cell[i], S].T, A[cell[i], row[i]])
            assert u.min() >= -1e-8 and abs(u @ b[cell[i], S] - val[i]) <= 1e-8

    assert opt.any()
    certified(status, value, opt_basis, cell, row)

    # A small pool (walks refilled many times, so other optima are kept as start vertices by the time
    # an item is loaded) with padding items past ``count``: the same answers, and the padding is
    # left unsolved.
    n = len(cell)
    pad_cell, pad_row = np.concatenate([cell, cell[:7]]), np.concatenate([row, row[:7]])
    st8, val8, bas8, piv8 = (np.asarray(a) for a in primal.exceeds(
        A, b, active, start, pad_cell, pad_row, np.asarray(thr), np.int32(n), max_iters=2 * d + 16, lanes=8))
    assert (st8[:n] == status).all() and np.allclose(val8[:n][opt], value[opt], atol=1e-9)
    certified(st8[:n], val8[:n], bas8[:n], cell, row)
    assert (st8[n:] == primal.UNRESOLVED).all()

    # The cells' first 2 d rows are the box's: with boxed=True the pivots compute their products
    # without reading them, and every answer is the same.
    start_b = primal.cell_vertices(A, b, active, np.ones((B, d)), boxed=True)
    for got, want in zip(start_b, start):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-12)
    stb, valb, basb, _ = (np.asarray(a) for a in primal.exceeds(
        A, b, active, start_b, cell, row, np.asarray(thr), max_iters=2 * d + 16, boxed=True))
    assert (stb == status).all() and (basb == opt_basis).all()
    assert np.allclose(valb[opt], value[opt], atol=1e-12)

    # In the small pool, walks from the cells' kept optima (the default) take fewer pivots than walks
    # that all start at the cell's vertex (keep=0), with the same answers.
    st0, val0, bas0, piv0 = (np.asarray(a) for a in primal.exceeds(
        A, b, active, start, pad_cell, pad_row, np.asarray(thr), np.int32(n), max_iters=2 * d + 16, lanes=8,
        keep=0))
    assert (st0[:n] == status).all() and np.allclose(val0[:n][opt], value[opt], atol=1e-9)
    certified(st0[:n], val0[:n], bas0[:n], cell, row)
    assert piv8.sum() < piv0.sum(), (piv8.sum(), piv0.sum())

    # Any queue order gives the same answers (the vertices answer different items, with the same
    # result); queue_order's is round robin over the cells, far rows first.
    gap = np.asarray(b[cell, row] - np.einsum("nd,nd->n", A[cell, row], np.asarray(start.x)[cell]))
    for order in (primal.queue_order(cell, gap), np.random.default_rng(d).permutation(n)):
        sto, valo, baso, _ = (np.asarray(a) for a in primal.exceeds(
            A, b, active, start, cell[order], row[order], np.asarray(thr), max_iters=2 * d + 16, lanes=16))
        assert (sto == status[order]).all()
        assert np.allclose(valo[sto == primal.OPTIMAL], value[order][sto == primal.OPTIMAL], atol=1e-9)
        certified(sto, valo, baso, cell[order], row[order])
    order = primal.queue_order(cell, gap)
    assert sorted(order) == list(range(n))
    rank = np.zeros(n, int)  # each item's place among its cell's items in the queue
    for c in range(B):
        mine = order[cell[order] == c]
        assert (np.diff(gap[mine]) <= 0).all()  # far rows first
        rank[mine] = np.arange(len(mine))
    key = rank[order] * B + cell[order]  # round robin: the queue runs by rank, then cell
    assert (np.diff(key) > 0).all()


def test_a_vertex_certifies_its_tight_rows_only_when_it_is_simple():
    """primal._vertex_certifies: a vertex of a cell with every other row strictly slack certifies its
    d tight rows as facets (HiGHS agrees); three more rows through it (a degenerate vertex, where a
    tight row need not be a facet) and it certifies nothing."""
    from jaxpoly import primal

    jax.config.update("jax_enable_x64", True)
    d, thr = 4, 1e-9
    for degenerate in (False, True):
        A, b = _random_cells(3, 6, d, 3 * d, degenerate)
        if degenerate:
            A, b = A[:, :-1], b[:, :-1]  # keep the rows through the vertex, not the repeated row
        B, M = A.shape[:2]
        active = np.ones((B, M), bool)
        # from the degenerate vertex's side: cell_vertices favours the three rows through it
        c = A[:, -3:].sum(axis=1) if degenerate else np.ones((B, d))
        v = primal.cell_vertices(A, b, active, c)
        slack = b - np.einsum("bmd,bd->bm", A, np.asarray(v.x))
        in_basis = (np.arange(M)[None, :, None] == np.asarray(v.basis)[:, None, :]).any(axis=-1)
        ok = np.asarray(jax.vmap(primal._vertex_certifies)(slack, in_basis, v.basis, primal._col_norms(v.binv), active,
                                                            np.full(B, thr)))
        facets, _ = _highs_facets(A, b, thr)
        at_degenerate = (np.abs(slack[:, -3:]) < 1e-9).all(axis=1)
        if degenerate:
            assert at_degenerate.any() and not ok[at_degenerate].any()
        else:
            assert ok.all()
        for c_ in np.flatnonzero(ok):
            assert facets[c_, np.asarray(v.basis[c_])].all()


def test_primal_step_leaves_an_ended_walk_as_it_is():
    """primal.exceeds' pool steps every lane, ended or not (no select over the pool's state), so a
    pivot must leave a walk that has ended exactly as it is, and still move a running one."""
    from jaxpoly import pool, primal

    jax.config.update("jax_enable_x64", True)
    A, b = _random_cells(5, 1, 3, 6)
    active = np.ones(A.shape[:2], bool)
    start = primal.cell_vertices(A, b, active, np.ones((1, 3)))
    k = int(np.setdiff1d(np.arange(A.shape[1]), np.asarray(start.basis[0]))[-1])  # a row to maximise
    kw = dict(max_iters=20, tol=1e-9, until_vertex=False)
    for status in (primal.OPTIMAL, primal.ABOVE, primal.UNRESOLVED, pool.IDLE):
        lane = primal._lane(A[0], b[0], start.x[0], start.basis[0], start.binv[0], status=status)
        after = primal._step(A[0], b[0], active[0], A[0, k], b[0, k] + 1.0, lane, **kw)
        for name, x, y in zip(lane._fields, lane, after):
            assert np.array_equal(np.asarray(x), np.asarray(y)), (status, name)
    lane = primal._lane(A[0], b[0], start.x[0], start.basis[0], start.binv[0])
    after = primal._step(A[0], b[0], active[0], A[0, k], b[0, k] + 1.0, lane, **kw)
    assert int(after.it) == 1 and not np.array_equal(np.asarray(after.basis), np.asarray(lane.basis))


def test_warm_start_gives_the_same_facets_as_the_dual_simplex():
    """classify_facets with and without the warm-started primal simplex: identical facets, equal to
    HiGHS's (cells with every row undecided: no rays, so every row goes to the LPs)."""

    jax.config.update("jax_enable_x64", True)
    B, d = 4, 6
    A, b = _random_cells(5, B, d, 20)
    rows = _cell_rows(A, b)
    no_rays = jnp.zeros((0, d))
    out = {}
    for warm in (True, False):
        out[warm], _, cnt, _ = oracle.classify_facets(rows, np.zeros((B, d)), np.ones(B, bool), no_rays, tol=1e-9,
                                                      margin=1e-9, delta=2.0, use_bbox=False, warm_start=warm)
        assert (cnt.warm > 0) == warm
    facets, _ = _highs_facets(A, b, 1e-9)
    assert (out[True] == facets).all() and (out[False] == facets).all()


def _implied(A, b, support, k, tol):
    """HiGHS: ``max a_k · y`` over the rows ``support (M,) bool`` alone is at most ``b_k + tol``."""
    from scipy.optimize import linprog

    r = linprog(-A[k], A_ub=A[support], b_ub=b[support], bounds=[(None, None)] * A.shape[1], method="highs")
    return r.status == 0 and -r.fun <= b[k] + tol


def test_redundancy_certificates_hold_in_neighbours():
    """classify_facets' certificates: each names rows of the cell that alone imply the redundant row
    (HiGHS), no facet has one; a neighbour across a facet keeps those that do not use it
    (certificates_hold), and they hold there too; handed to classify_facets, the inherited rows get no
    LP and the facets are unchanged (HiGHS)."""
    from scipy.optimize import linprog

    jax.config.update("jax_enable_x64", True)
    B, d, tol = 4, 6, 1e-9
    A, b = _random_cells(5, B, d, 20)
    M = A.shape[1]

    def classify(A, b, support=None):
        return oracle.classify_facets(_cell_rows(A, b), np.zeros((B, d)), np.ones(B, bool), jnp.zeros((0, d)), tol=tol,
                                      margin=1e-9, delta=2.0, use_bbox=False, certify=True, support=support)

    facets, _, _, cert = classify(A, b)
    assert len(cert.cell) >= 10 and not facets[cert.cell, cert.row].any()
    assert len(set(zip(cert.cell, cert.row))) == len(cert.cell) and (cert.rows.sum(axis=1) <= d + 1).all()
    for c, k, S in zip(*cert):
        assert _implied(A[c], b[c], S, k, 10 * tol)
        assert S.sum() == 1 or not _implied(A[c], b[c], S & (np.arange(M) != np.flatnonzero(S)[0]), k, -tol)

    # the neighbours across one facet of each cell (every 2nd cell: the facet in most certificates)
    used = np.zeros((B, M), int)
    np.add.at(used, cert.cell, cert.rows)
    k = np.where(facets, used, -1).argmax(axis=1)
    k[::2] = [np.flatnonzero(facets[c] & (np.arange(M) >= 2 * d))[0] for c in range(0, B, 2)]
    flipped = np.eye(M, dtype=bool)[k]
    An, bn = A.copy(), b.copy()
    An[np.arange(B), k], bn[np.arange(B), k] = -A[np.arange(B), k], -b[np.arange(B), k]
    holds = oracle.certificates_hold(cert.rows, flipped[cert.cell])
    assert holds.any() and not holds.all()  # some kept, some dropped
    assert (holds == ~(cert.rows & flipped[cert.cell]).any(axis=1)).all()
    for c, j, S in zip(*(a[holds] for a in cert)):
        assert _implied(An[c], bn[c], S, j, 10 * tol)
    # and dropping the others is needed: some of them fail in the neighbour
    assert not all(_implied(An[c], bn[c], S, j, 10 * tol) for c, j, S in zip(*(a[~holds] for a in cert)))
    # classified with the inherited certificates: the same facets as HiGHS, fewer LPs
    y0 = np.zeros((B, d))
    for c in range(B):  # an interior point of each neighbour, where the facets are centred
        norms = np.linalg.norm(An[c], axis=1)
        r = linprog(-np.eye(d + 1)[d], A_ub=np.c_[An[c], norms], b_ub=bn[c], bounds=[(None, None)] * d + [(0, 1)],
                    method="highs")
        y0[c] = r.x[:d]
    bc = bn - np.einsum("bmd,bd->bm", An, y0)
    kept = oracle.Certificates(*(a[holds] for a in cert))
    nfac, _, cnt, again = classify(An, bc, kept)
    alone, _, cnt0, _ = classify(An, bc)
    # (rows the LP-free tests decide in the neighbour need no certificate)
    assert 0 < cnt.inherited <= holds.sum() and cnt.lps == cnt0.lps - cnt.inherited
    assert (nfac == _highs_facets(An, bc, tol)[0]).all() and (alone == nfac).all()
    # the inherited ones are passed on with the neighbour's own
    assert {(c, r) for c, r in zip(kept.cell, kept.row) if not nfac[c, r]} <= set(zip(again.cell, again.row))


def test_default_batch_size_shrinks_to_fit_memory(monkeypatch):
    net = mlp(2, 2, (4,))
    fits_64 = 2 * enumeration.estimate_batch_bytes(2, net.num_hyperplanes, 64, 64) + 1
    monkeypatch.setattr(enumeration, "device_bytes", lambda: fits_64)
    with pytest.raises(jp.CapacityError, match="batch_size"):
        enumerate_regions(net, (-1.0, 1.0), batch_size=256)
    R = enumerate_regions(net, (-1.0, 1.0))  # the default: 256 on a CPU, halved to 64 here
    assert R.complete and len(R) == len(enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH))


def test_default_batch_size_follows_the_device_and_the_cpu_caches(monkeypatch):
    from jaxpoly import memory
    monkeypatch.setattr(enumeration, "device_bytes", lambda: 1 << 40)
    # CPU: 256, halved where a batch's LP rows B M (d + 1) pass the caches' 12 MiB (d = 64: 64)
    assert [enumeration.default_batch_size(d, 64, 64) for d in (4, 32, 48, 64)] == [256, 256, 128, 64]
    assert enumeration.default_batch_size(64, 64, 64, start=2048) == 64
    monkeypatch.setattr(memory, "on_cpu", lambda: False)
    assert enumeration.default_batch_size(64, 64, 64) == 2048  # an accelerator: no cache rule
    # and memory: halved until a batch's estimate fits in half the device
    half = enumeration.estimate_batch_bytes(64, 64, 512, 64)
    monkeypatch.setattr(enumeration, "device_bytes", lambda: 2 * half)
    assert enumeration.default_batch_size(64, 64, 64) == 512
    # the estimate keeps a margin over what runs without refusing what fits: a d = 64 batch of 2,048
    # grew the process by 1.0 GiB (12-06, 2-core CPU)
    assert 2 << 30 < enumeration.estimate_batch_bytes(64, 64, 2048, 64) < 8 << 30


@pytest.mark.parametrize("walks", [pytest.param(True, marks=pytest.mark.slow), False])  # (walks: the sharded test)
def test_high_dimension_finds_every_pattern(monkeypatch, walks):
    """d = 12: 10 generic hyperplanes whose common flat crosses the box cut it into all 2^10 sign
    patterns; every region is certified, with the walk certificates on or off (warm LPs only)."""
    monkeypatch.setattr(enumeration, "_WALK_MIN_DIM", 1 if walks else 100)
    d, n = 12, 10
    rng = np.random.default_rng(3)
    W, b = rng.standard_normal((d, n)), 0.05 * rng.standard_normal(n)
    net = single_layer(W, b)
    R = enumerate_regions(net, (-1.0, 1.0), batch_size=BATCH)
    assert R.complete and len(R) == 2**n
    assert (R.stats["walk_facets"] > 0) == walks
    assert R.stats["warm_lps"] > 0
    assert len({bytes(p) for p in np.packbits(R.patterns, axis=1)}) == 2**n
    check_certificates(net, R)
