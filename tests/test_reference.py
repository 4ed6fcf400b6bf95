"""Tests of the NumPy/HiGHS reference itself (tests/reference.py), so that the library's tests can
trust it. Each test can fail on its own: counts are checked against closed forms, Euler's relation,
a degenerate arrangement counted by hand, and random sampling."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import jaxpoly
from jaxpoly import Network, Stage
from reference import (
    Region,
    binomial_count,
    lp_f_vector,
    lp_regions,
    lp_vertices,
    numpy_forward,
    numpy_patterns,
    pattern_maps,
    subset_count,
)


def _mlp(d: int, widths: tuple[int, ...], seed: int, activation="relu") -> Network:
    """A random MLP ``d -> widths -> 1`` whose output vanishes at the origin (so ``y = 0`` crosses
    the box ``[-1, 1]^d``)."""
    rng = np.random.default_rng(seed)
    sizes = (d,) + widths + (1,)
    Ws = [rng.normal(size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [0.5 * rng.normal(size=b) for b in sizes[1:]]
    net = jaxpoly.from_arrays(Ws, bs, activation=activation)
    bs[-1] = bs[-1] - numpy_forward(net, np.zeros((1, d)))[1][0]
    return jaxpoly.from_arrays(Ws, bs, activation=activation)


def _skip_net(d: int, seed: int) -> Network:
    """Input -> relu stage -> hard_tanh stage reading (input, stage 1) -> output reading (1, 2)."""
    rng = np.random.default_rng(seed)
    n = lambda *s: rng.normal(size=s)
    act = jaxpoly.piecewise_linear((-0.5, 0.7), (0.2, 1.0, -0.3), value_at_zero=0.1)
    s1 = Stage((n(d, 4),), 0.5 * n(4), (0,), jaxpoly.relu())
    s2 = Stage((n(d, 3), n(4, 3)), 0.5 * n(3), (0, 1), jaxpoly.hard_tanh())
    s3 = Stage((n(3, 2),), 0.5 * n(2), (2,), act)
    out = Stage((n(4, 1), n(2, 1)), n(1), (1, 3), jaxpoly.identity())
    return Network((s1, s2, s3), out)


@functools.cache
def _all_nets() -> tuple[Network, ...]:
    return (
        _mlp(2, (5, 4), 0),
        _mlp(3, (4, 3, 3), 1),
        _mlp(2, (4, 4), 2, activation="leaky_relu"),
        _mlp(2, (3, 3), 3, activation="relu6"),
        _mlp(3, (4, 3), 4, activation="hard_tanh"),
        _skip_net(2, 5),
        _skip_net(3, 6),
    )


@functools.cache
def _regions(net_index: int, level_set: bool = False) -> list[Region]:
    """``lp_regions`` of ``_all_nets()[net_index]`` in ``[-1, 1]^d``, computed once per session."""
    return lp_regions(_all_nets()[net_index], -1.0, 1.0, level_set=level_set)


def _euler(f: tuple[int, ...]) -> int:
    return sum((-1) ** k * fk for k, fk in enumerate(f))


def _one_layer_net(W: np.ndarray, b: np.ndarray) -> Network:
    """Hyperplanes ``W x + b = 0`` (``W (n, d)``) as the hidden layer of a ReLU net."""
    return jaxpoly.from_arrays([W.T, np.ones((W.shape[0], 1))], [b, np.zeros(1)])


# ----------------------------------------------------------------------------------------------------
# Counts of one-layer arrangements
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d,n,seed", [(1, 4, 0), (2, 6, 1), (3, 7, 2)])
def test_generic_arrangement_all_regions(d, n, seed):
    """n generic hyperplanes through a small ball, every intersection inside a big box:
    sum_{i<=d} C(n, i) regions, found by three independent routes."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n, d))
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    b = 0.3 * rng.uniform(-1, 1, size=n)
    lo, hi = -50.0 * np.ones(d), 50.0 * np.ones(d)
    expected = binomial_count(n, d)
    assert subset_count(W, b, lo, hi) == expected
    assert len(lp_regions(_one_layer_net(W, b), lo, hi)) == expected


@pytest.mark.parametrize("d,n,seed", [(2, 6, 3), (3, 6, 4)])
def test_generic_arrangement_clipped_by_box(d, n, seed):
    """A small box cuts away some intersections: the regions are still counted by the flats that
    meet the open box, and fewer than the binomial count."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n, d))
    b = rng.uniform(-1, 1, size=n)
    lo, hi = -np.ones(d), np.ones(d)
    count = subset_count(W, b, lo, hi)
    assert count < binomial_count(n, d)
    assert len(lp_regions(_one_layer_net(W, b), lo, hi)) == count


def test_parallel_lines():
    """x=0, x=.5, y=0 in [-1, 1]^2: 3 strips cut by y=0 give 6 regions; the parallel pair has no
    intersection flat, so the subset count is 1 + 3 + 2 = 6 as well. Vertices: 4 corners, 6 line
    ends, 2 crossings (12); edges: 10 on the boundary, 2 + 2 + 3 inside (17); 12 - 17 + 6 = 1."""
    W = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    b = np.array([0.0, -0.5, 0.0])
    lo, hi = -np.ones(2), np.ones(2)
    assert subset_count(W, b, lo, hi) == 6
    assert len(lp_regions(_one_layer_net(W, b), lo, hi)) == 6
    assert lp_f_vector(_one_layer_net(W, b), lo, hi) == (12, 17, 6)


def test_subset_count_skips_dependent_normals():
    """Planes x=0, y=0, x+y=0 in [-1, 1]^3 share the z-axis: the box, 3 planes and 3 pairs (each
    the z-axis) count; the triple has dependent normals and does not. 7, while there are 6 regions."""
    W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    lo, hi = -np.ones(3), np.ones(3)
    assert subset_count(W, np.zeros(3), lo, hi) == 7
    assert len(lp_regions(_one_layer_net(W, np.zeros(3)), lo, hi)) == 6


def test_binomial_count():
    assert [binomial_count(n, 2) for n in range(5)] == [1, 2, 4, 7, 11]
    assert binomial_count(7, 3) == 1 + 7 + 21 + 35
    assert binomial_count(2, 5) == 4


# ----------------------------------------------------------------------------------------------------
# The complex: Euler's relation and a degenerate arrangement by hand
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level_set", [False, True])
@pytest.mark.parametrize("d,widths,seed", [(2, (5, 4), 10), (2, (6, 6), 11), (3, (4, 5), 12), (3, (4, 4), 13)])
def test_euler_characteristic(d, widths, seed, level_set):
    """The complex subdivides the box, a contractible set: sum_k (-1)^k f_k = 1."""
    net = _mlp(d, widths, seed)
    f = lp_f_vector(net, -1.0, 1.0, level_set=level_set)
    assert len(f) == d + 1
    assert f[d] == len(lp_regions(net, -1.0, 1.0, level_set=level_set))
    assert _euler(f) == 1


def test_level_set_adds_regions():
    net = _mlp(2, (5, 4), 10)
    f0, f1 = lp_f_vector(net, -1.0, 1.0), lp_f_vector(net, -1.0, 1.0, level_set=True)
    assert f1[2] > f0[2] and f1[0] > f0[0]


@pytest.mark.parametrize("net_index", [5, 6])
def test_euler_general_activations_and_skips(net_index):
    net = _all_nets()[net_index]
    assert _euler(lp_f_vector(net, -1.0, 1.0)) == 1


def test_degenerate_four_lines():
    """Lines x=0, y=0, x-y=0, x+y=1 in [-2, 2]^2 (three meet at the origin).

    Regions: the three lines through 0 cut 6 sectors; x+y=1 crosses three lines at three distinct
    points (0,1), (1,0), (.5,.5), so it passes through 4 sectors and splits each: F = 6 + 4 = 10.
    Vertices: 4 inside ((0,0), (0,1), (1,0), (.5,.5)); on the boundary the 4 corners ((-2,-2) and
    (2,2) are also the ends of x=y), (0,+-2), (+-2,0), and the ends (-1,2), (2,-1) of x+y=1: V = 14.
    Edges: 10 on the boundary (10 boundary vertices on a cycle); inside, x=0, y=0, x=y each hold 2
    interior vertices (3 edges each) and x+y=1 holds 3 (4 edges): E = 10 + 9 + 4 = 23.
    Check: V - E + F = 14 - 23 + 10 = 1.
    """
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    b = np.array([0.0, 0.0, 0.0, -1.0])
    net = _one_layer_net(W, b)
    lo, hi = -2.0 * np.ones(2), 2.0 * np.ones(2)
    assert len(lp_regions(net, lo, hi)) == 10
    assert lp_f_vector(net, lo, hi) == (14, 23, 10)
    expected = [(-2, -2), (-2, 0), (-2, 2), (-1, 2), (0, -2), (0, 0), (0, 1), (0, 2), (0.5, 0.5),
                (1, 0), (2, -2), (2, -1), (2, 0), (2, 2)]
    np.testing.assert_allclose(lp_vertices(net, lo, hi), np.array(expected, float), atol=1e-12)
    assert subset_count(W, b, lo, hi) == 11  # counts the triple point 3 times: not generic


# ----------------------------------------------------------------------------------------------------
# Patterns and maps
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net_index", range(7))
def test_numpy_forward_matches_network(net_index):
    """Checks the NumPy forward pass and the Network against each other."""
    net = _all_nets()[net_index]
    X = np.random.default_rng(net_index).uniform(-1.5, 1.5, size=(500, net.input_dim))
    hv, y = numpy_forward(net, X)
    np.testing.assert_allclose(hv, np.asarray(net.hyperplane_values(X)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, np.asarray(net(X)), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(numpy_patterns(net, X), np.asarray(net.pattern(X)))


@pytest.mark.parametrize("net_index", range(7))
def test_pattern_maps_reproduce_forward(net_index):
    net = _all_nets()[net_index]
    X = np.random.default_rng(100 + net_index).uniform(-1.5, 1.5, size=(50, net.input_dim))
    hv, y = numpy_forward(net, X)
    for x, p, v, yx in zip(X, hv > 0, hv, y):
        A, c, out_A, out_c = pattern_maps(net, p)
        np.testing.assert_allclose(A @ x + c, v, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out_A @ x + out_c, yx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("level_set", [False, True])
@pytest.mark.parametrize("net_index", [0, 1, 4, 5])
def test_witnesses(net_index, level_set):
    """Each witness lies in its region: its pattern is the region's, and the maps of that pattern
    give the forward pass there."""
    net = _all_nets()[net_index]
    regions = _regions(net_index, level_set)
    X = np.array([r.witness for r in regions])
    hv, y = numpy_forward(net, X)
    got = np.concatenate([hv, y], axis=1) > 0 if level_set else hv > 0
    np.testing.assert_array_equal(got, np.array([r.pattern for r in regions]))
    assert len({r.pattern for r in regions}) == len(regions)
    assert all(r.inradius > 1e-9 and np.all(np.abs(r.witness) <= 1.0) for r in regions)
    for x, r, v, yx in zip(X, regions, hv, y):
        A, c, out_A, out_c = pattern_maps(net, r.pattern)
        np.testing.assert_allclose(A @ x + c, v, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(out_A @ x + out_c, yx, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("net_index", [0, 1, 3, 4, 5, 6])
def test_sampled_patterns_are_regions(net_index):
    """10^4 random points in the box: every pattern seen is among the regions found by the BFS."""
    net = _all_nets()[net_index]
    found = {r.pattern for r in _regions(net_index)}
    X = np.random.default_rng(7).uniform(-1.0, 1.0, size=(10_000, net.input_dim))
    sampled = {tuple(map(bool, p)) for p in numpy_patterns(net, X)}
    assert sampled <= found


@pytest.mark.parametrize("net_index", [1, 5])
def test_bfs_alone_is_complete(net_index):
    """From the single region at the centre, the flip-one-bit BFS reaches every region that the
    random seeds do (the facet-adjacency graph is connected)."""
    net = _all_nets()[net_index]
    alone = [r.pattern for r in lp_regions(net, -1.0, 1.0, seeds=0)]
    assert alone == [r.pattern for r in _regions(net_index)]
