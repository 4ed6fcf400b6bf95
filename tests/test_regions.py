"""``Regions`` and the checks around it: exact activation plateaus (patterns that match the network at
their own witness), float64 queries without x64, queries with a network that does not fit, empty
point batches, out-of-range facet lists, each region's facets as its polytope (checked against the
reference's full description), each region's output range (against HiGHS, also in a tiny box far from
the origin), corrupt files, and magnitudes that would overflow float64."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog

import jaxpoly
from reference import region_polytope


def _net(sizes, seed=0, activation="relu"):
    rng = np.random.default_rng(seed)
    return jaxpoly.from_arrays([rng.standard_normal((a, b)) for a, b in zip(sizes, sizes[1:])],
                               [rng.standard_normal(b) for b in sizes[1:]], activation=activation)


def _two_lines():
    """Hyperplanes x0 = 0.3 and x1 = -0.1: four regions in [-1, 1]^2."""
    return jaxpoly.from_arrays([np.eye(2), np.ones((2, 1))], [np.array([-0.3, 0.1]), np.zeros(1)])


@pytest.fixture(scope="module")
def small():
    net = _net([2, 6, 1])
    return net, jaxpoly.enumerate_regions(net, (-1.0, 1.0), batch_size=64)


def _relu_sum(act, z):
    """The activation as its docstring defines it: ``f(0) + s_0 z + sum_i (s_{i+1} - s_i) (relu(z - b_i) - relu(-b_i))``."""
    out = act.value_at_zero + act.slopes[0] * z
    for i, b in enumerate(act.breakpoints):
        out = out + (act.slopes[i + 1] - act.slopes[i]) * (np.maximum(z - b, 0.0) - max(-b, 0.0))
    return out


# -- activations: every piece exact -------------------------------------------------------------------

def test_saturated_units_are_exactly_their_plateau():
    """hard-tanh and ReLU6 return their bounds exactly past the breakpoints (the ReLU sum gave 1 - 1 ulp
    for 12 % of z > 1), so a neuron fed by saturated units is constant on a region."""
    z = np.random.default_rng(0).uniform(1.0, 50.0, 10_000)
    ht, r6 = jaxpoly.hard_tanh(), jaxpoly.relu6()
    assert np.all(np.asarray(ht(z)) == 1.0) and np.all(np.asarray(jax.jit(ht)(-z)) == -1.0)
    assert np.all(np.asarray(r6(z + 6.0)) == 6.0) and np.all(np.asarray(r6(-z)) == 0.0)
    assert np.all(np.asarray(jaxpoly.hard_tanh(-0.3, 0.7)(z)) == 0.7)


@pytest.mark.parametrize("act", [jaxpoly.relu(), jaxpoly.leaky_relu(0.1), jaxpoly.hard_tanh(), jaxpoly.relu6(),
                                 jaxpoly.piecewise_linear((-2.0, -1.0, 0.5, 3.0), (0.5, -1.0, 2.0, 0.0, 1.5), 0.7),
                                 jaxpoly.piecewise_linear((-2.0, -1.0), (1.0, 0.0, -1.0), 0.3)],
                         ids=lambda a: a.name)
def test_activation_pieces_match_the_defining_formula(act):
    """Each piece evaluated on its own equals the ReLU-sum definition (to round-off), keeps float32
    inputs float32, and differentiates and vmaps as before (slope of the piece; the lower piece at a
    breakpoint, as ``z > b`` in the patterns)."""
    z = np.linspace(-5.0, 8.0, 2001)
    np.testing.assert_allclose(np.asarray(act(z)), _relu_sum(act, z), rtol=0, atol=1e-14)
    assert act(jnp.ones(3, jnp.float32)).dtype == jnp.float32
    grads = np.asarray(jax.vmap(jax.grad(act))(jnp.asarray(z)))
    k = np.searchsorted(np.asarray(act.breakpoints), z, side="left")  # pieces: (b_{k-1}, b_k]
    np.testing.assert_array_equal(grads, np.asarray(act.slopes)[k])


def test_saturated_regions_match_the_network_at_their_witness():
    """A hard-tanh net whose third-layer neuron sums saturated units to exactly its breakpoint on whole
    regions (hyperplane 11): every region's pattern is the network's pattern at its witness, so
    index_of finds each region from its own witness (region 7 had bit 11 from round-off)."""
    Ws = [np.array([[1.0, 1.0], [-1.0, 1.0]]).T, np.array([[0.0, 0.0], [-1.0, 1.0]]).T,
          np.array([[1.0, 0.0], [-1.0, 1.0], [1.0, 1.0]]).T, np.array([[1.0, 1.0, 1.0]]).T]
    bs = [np.array([0.0, 1.0]), np.array([0.5, -0.5]), np.array([0.0, 0.5, 0.5]), np.array([0.5])]
    net = jaxpoly.from_arrays(Ws, bs, activation="hard_tanh")
    R = jaxpoly.enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=64)
    own = np.concatenate([np.asarray(net.pattern(R.witnesses)), np.asarray(net(R.witnesses))[:, :1] > 0], axis=1)
    np.testing.assert_array_equal(own, R.patterns)
    np.testing.assert_array_equal(R.index_of(R.witnesses), np.arange(len(R)))


# -- queries --------------------------------------------------------------------------------------------

def test_neurons_that_cancel_to_zero_on_a_region_are_off_there():
    """A neuron whose inputs cancel exactly on a region (hand-built networks: ``relu(x) - relu(-x) = x``)
    vanishes identically there, but evaluates to round-off of either sign: the pattern of a point
    (``Network.pattern``, ``index_of``, ``sample_regions``, ``region_of``) counts a value within its
    round-off bound as zero, the engines' rule. Before, witnesses fell in no listed region, sampling saw
    patterns that are not regions, and ``extract`` failed on the 3D net ("a region's witness does not
    have its pattern"). Checked against the LP reference."""
    from reference import lp_f_vector, lp_regions

    # 2D: z = relu(-x0) - 10 relu(0.1 (x1 - x0)) + relu(x1) = 0 on the region x0 < 0 < x1 (0.1 rounds)
    net2 = jaxpoly.from_arrays([np.array([[-1.0, -0.1, 0.0], [0.0, 0.1, 1.0]]), np.array([[1.0], [-10.0], [1.0]]),
                                np.ones((1, 1))], [np.zeros(3), np.zeros(1), np.array([-0.5])])
    x = np.random.default_rng(0).uniform(-1, 1, (10**4, 2))
    z = np.asarray(net2.hyperplane_values(x))[(x[:, 0] < 0) & (x[:, 1] > 0), 3]
    assert np.any(z > 0) and np.any(z < 0)  # round-off of both signs where it vanishes
    assert not np.any(np.asarray(net2.pattern(x))[(x[:, 0] < 0) & (x[:, 1] > 0), 3])
    # sample_regions' one threshold per hyperplane over the box bounds the per-point round-off
    from jaxpoly.network import box_round_off

    err = np.asarray(net2.hyperplane_values_and_round_off(x, level_set=True)[1])
    assert np.all(box_round_off(net2, -np.ones(2), np.ones(2), level_set=True) >= err.max(0))
    # 3D (found by fuzzing): z = a1 - a2 + a3 = 0 where a1 = relu(-x0 - x1), a2 = relu(-x0 + x1 - x2) and
    # a3 = relu(x1 - x2) are all active, in one of the box's six regions
    net3 = jaxpoly.from_arrays([np.array([[-1.0, -1.0, 0.0], [0.0, 1.0, 1.0], [0.0, -1.0, -1.0]]),
                                np.array([[1.0], [-1.0], [1.0]]), np.eye(1)], [np.zeros(3), np.zeros(1), np.zeros(1)])
    box3 = (np.array([-0.8114, -1.3242, -1.2168]), np.array([1.9143, -0.2563, 0.8412]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (the completeness probe warned of the round-off patterns)
        for net, box, want in ((net2, (-1.0, 1.0), 6), (net3, box3, 6)):
            r = jaxpoly.enumerate_regions(net, box)
            assert len(r) == want == len(lp_regions(net, *box))
            assert np.array_equal(r.index_of(r.witnesses), np.arange(want))
            assert np.array_equal(np.asarray(net.pattern(r.witnesses)), r.patterns)
            seen = jaxpoly.sample_regions(net, box, 10**5, key=jax.random.PRNGKey(0))
            assert {p.tobytes() for p in seen} <= {p.tobytes() for p in r.patterns}
        c = jaxpoly.extract(net3, box3)
        assert c.f_vector == lp_f_vector(net3, *box3, level_set=True)
        assert np.array_equal(c.region_of(c.regions.witnesses), np.arange(c.num_regions))


def test_queries_compute_in_float64_without_x64():
    """With x64 off, points 1e-8 either side of the line x0 = 0.3 get different regions (float32 rounds
    both onto it) and the affine maps are float64, as the enumeration itself is."""
    net = _two_lines()
    R = jaxpoly.enumerate_regions(net, (-1.0, 1.0), batch_size=64)
    x = np.array([[0.3 + 1e-8, 0.5], [0.3 - 1e-8, 0.5]])
    want = [int(np.flatnonzero((R.patterns == p).all(axis=1))[0]) for p in (x + np.array([-0.3, 0.1]) > 0)]
    with jax.enable_x64(False):
        got = R.index_of(x)
        A, c = R.affine_maps()
    np.testing.assert_array_equal(got, want)
    assert want[0] != want[1]
    assert A.dtype == c.dtype == np.float64


def test_queries_on_empty_point_batches(small):
    """No points: empty answers of the batch shape, not a crash."""
    _, R = small
    assert R.index_of(np.zeros((0, 2))).shape == (0,) and R.index_of(np.zeros((0, 2))).dtype == np.int64
    assert R.contains(np.zeros((3, 0, 2))).shape == (3, 0) and R.contains(np.zeros((0, 2))).dtype == bool


@pytest.mark.parametrize("sizes, needle", [([3, 6, 1], "input_dim=3"), ([2, 4, 1], "4 hyperplanes"),
                                           ([2, 9, 1], "9 hyperplanes")])
def test_queries_refuse_a_network_that_does_not_fit(small, tmp_path, sizes, needle):
    """Every query that takes a network, and load, checks its input dimension and hyperplane count."""
    _, R = small
    other = _net(sizes, seed=1)
    for query in (lambda: R.index_of(R.witnesses, net=other), lambda: R.contains(R.witnesses, net=other),
                  lambda: R.affine_maps(other)):
        with pytest.raises(jaxpoly.InvalidNetworkError, match=needle):
            query()
    R.save(tmp_path / "r.npz")
    with pytest.raises(jaxpoly.InvalidNetworkError, match=needle):
        jaxpoly.Regions.load(tmp_path / "r.npz", net=other)


def test_queries_refuse_the_same_function_with_another_stage_layout(tmp_path):
    """hard_tanh as one stage of two breakpoints (from_arrays) and as two ReLU stages (how from_flax
    reads it) is one function with the same 2 x 4 hyperplanes, but its pattern bits name other neurons:
    the queries refused neither (index_of found no region for any witness), now both, before and after
    save/load; a file saved without the extension loads by the same name."""
    rng = np.random.default_rng(0)
    W0, b0, W1 = rng.standard_normal((2, 4)), 0.3 * rng.standard_normal(4), rng.standard_normal((4, 1))
    net = jaxpoly.from_arrays([W0, W1], [b0, np.zeros(1)], activation="hard_tanh")
    relu = jaxpoly.relu()
    two = jaxpoly.Network((jaxpoly.Stage((W0,), b0 + 1, (0,), relu), jaxpoly.Stage((W0,), b0 - 1, (0,), relu)),
                          jaxpoly.Stage((W1, -W1), -W1.sum(axis=0), (1, 2), jaxpoly.identity()))
    x = rng.uniform(-1, 1, (50, 2))
    np.testing.assert_allclose(np.asarray(net(x)), np.asarray(two(x)), atol=1e-12)
    assert net.num_hyperplanes == two.num_hyperplanes == 8
    R = jaxpoly.enumerate_regions(net, (-1.0, 1.0), batch_size=64)
    np.testing.assert_array_equal(R.index_of(R.witnesses), np.arange(len(R)))
    with pytest.raises(jaxpoly.InvalidNetworkError, match=r"\(width, breakpoints\) are \[\(4, 1\), \(4, 1\)\]"):
        R.index_of(R.witnesses, net=two)
    R.save(tmp_path / "r")  # NumPy writes r.npz
    L = jaxpoly.Regions.load(tmp_path / "r")
    assert L.stage_layout == ((4, 2),) and len(L) == len(R)
    with pytest.raises(jaxpoly.InvalidNetworkError, match="stages"):
        jaxpoly.Regions.load(tmp_path / "r", net=two)
    np.testing.assert_array_equal(jaxpoly.Regions.load(tmp_path / "r.npz", net=net).index_of(R.witnesses),
                                  np.arange(len(R)))


def test_level_set_queries_count_the_output_bit(tmp_path):
    """With level_set the patterns carry one more bit than the hidden hyperplanes: the matching network
    is accepted, one with an extra hyperplane (same pattern width) or several outputs is not."""
    net = _two_lines()
    R = jaxpoly.enumerate_regions(net, (-1.0, 1.0), level_set=True, batch_size=64)
    R.save(tmp_path / "r.npz")
    L = jaxpoly.Regions.load(tmp_path / "r.npz", net=net)
    np.testing.assert_array_equal(L.index_of(R.witnesses), np.arange(len(R)))
    with pytest.raises(jaxpoly.InvalidNetworkError, match="3 hyperplanes"):
        R.index_of(R.witnesses, net=_net([2, 3, 1]))
    with pytest.raises(jaxpoly.InvalidNetworkError, match="scalar output"):
        R.affine_maps(jaxpoly.from_arrays([np.eye(2), np.ones((2, 2))], [np.zeros(2), np.zeros(2)]))


def test_facets_refuse_out_of_range_indices(small):
    _, R = small
    assert len(R.facets(len(R) - 1)) > 0
    for r in (-1, len(R)):
        with pytest.raises(jaxpoly.InvalidArgumentError, match="out of range"):
            R.facets(r)
    with pytest.raises(jaxpoly.InvalidArgumentError, match="integer"):
        R.facets(1.0)


@pytest.mark.parametrize("activation, level_set", [("relu", True), pytest.param("hard_tanh", False, marks=pytest.mark.slow)])
def test_halfspaces_are_the_region_polytope(activation, level_set):
    """Each region's facet rows describe exactly its polytope: every row of the reference's full
    description (all hyperplanes and the box, ``reference.region_polytope``) is implied by them (an LP
    each), none of them is implied by the others, sample points satisfy them exactly when ``index_of``
    puts them in the region, and the certified ball fits inside."""
    net, rng = _net([3, 5, 4, 1], seed=3, activation=activation), np.random.default_rng(1)
    R = jaxpoly.enumerate_regions(net, (-1.0, 1.0), level_set=level_set, batch_size=64)
    x = rng.uniform(-1, 1, (20_000, 3))
    where = R.index_of(x)
    assert len(R) > 20 and np.all(where >= 0)
    for r in range(len(R)):
        G, g = R.halfspaces(r)
        assert G.shape == (len(R.facets(r)), 3) and g.shape == (len(R.facets(r)),)
        np.testing.assert_array_equal(np.all(x @ G.T < g, axis=1), where == r)
        gap = g - G @ R.witnesses[r]
        assert np.all(gap >= (1 - 1e-9) * R.inradius[r] * np.linalg.norm(G, axis=1))
        Gr, gr, _ = region_polytope(net, R.patterns[r], -1.0, 1.0, level_set=level_set)
        for a, b in zip(Gr, gr):
            top = linprog(-a, A_ub=G, b_ub=g, bounds=(None, None), method="highs")
            assert top.status == 0 and -top.fun <= b + 1e-9
        for k in range(len(g)):
            rest = np.delete(np.arange(len(g)), k)
            top = linprog(-G[k], A_ub=np.vstack([G[rest], G[k]]), b_ub=np.append(g[rest], g[k] + 1.0),
                          bounds=(None, None), method="highs")
            assert top.status == 0 and -top.fun > g[k] + 1e-6 * np.linalg.norm(G[k])

    if level_set:  # the output keeps its sign on each region: its range is on that side of 0
        ob, up = R.output_bounds(), R.patterns[:, -1]
        assert np.all(ob.lower[up, 0] >= -1e-12) and np.all(ob.upper[~up, 0] <= 1e-12)
        assert np.any(up) and np.any(~up)


def test_output_bounds_are_each_regions_exact_range():
    """Every output's least and greatest value over every region equals HiGHS's on the reference's full
    description of the region; the points returned attain them inside the region; and the range over
    the box equals the one over the vertices of the complex that edge subdivision builds."""
    net = _net([2, 7, 6, 2], seed=5)
    R = jaxpoly.enumerate_regions(net, (-1.0, 1.0), batch_size=64)
    ob = R.output_bounds(batch_size=16)  # several batches, the last one short
    assert ob.lower.shape == ob.upper.shape == (len(R), 2) and ob.argmax.shape == (len(R), 2, 2)
    A, c = R.affine_maps()
    for r in range(len(R)):
        Gr, gr, _ = region_polytope(net, R.patterns[r], -1.0, 1.0)
        G, g = R.halfspaces(r)
        for o in range(2):
            for sense, value, x in ((1.0, ob.lower[r, o], ob.argmin[r, o]), (-1.0, ob.upper[r, o], ob.argmax[r, o])):
                ref = linprog(sense * A[r, o], A_ub=Gr, b_ub=gr, bounds=(None, None), method="highs")
                assert ref.status == 0
                np.testing.assert_allclose(value, sense * ref.fun + c[r, o], rtol=1e-9, atol=1e-9)
                np.testing.assert_allclose(np.asarray(net(x))[o], value, rtol=1e-9, atol=1e-9)
                assert np.all(G @ x <= g + 1e-9 * (1 + np.abs(g)))
    y = np.asarray(net(jaxpoly.extract(net, (-1.0, 1.0), level_set=False).vertices))
    np.testing.assert_allclose(ob.lower.min(0), y.min(0), rtol=1e-10)
    np.testing.assert_allclose(ob.upper.max(0), y.max(0), rtol=1e-10)
    assert ob.host_fallbacks == 0
    with pytest.raises(jaxpoly.InvalidArgumentError, match="batch_size"):
        R.output_bounds(batch_size=0)


def test_output_bounds_in_a_tiny_box_away_from_the_origin():
    """A box of half-width 1e-6 around (1, 1, 1) crossed by every neuron (the shape of a local-robustness
    query): each region's range agrees with HiGHS solved in the box's own scaled coordinates, and the
    points returned lie in their region to 1e-9 of the box (solved in absolute coordinates, the LPs'
    tolerances were relative to |x|: points 1.5e-3 of the box outside, bounds inside the true range)."""
    rng = np.random.default_rng(5)
    x0, eps = np.ones(3), 1e-6
    W1, W2, W3 = rng.standard_normal((3, 12)), rng.standard_normal((12, 6)), rng.standard_normal((6, 2))
    net = jaxpoly.from_arrays([W1, W2, W3], [-x0 @ W1 + 0.5 * eps * rng.standard_normal(12),
                                             0.1 * eps * rng.standard_normal(6), rng.standard_normal(2)])
    R = jaxpoly.enumerate_regions(net, (x0 - eps, x0 + eps))
    ob = R.output_bounds()
    A, c = R.affine_maps()
    tight = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}
    assert len(R) > 100
    for r in range(len(R)):
        G, g, _ = region_polytope(net, R.patterns[r], x0 - eps, x0 + eps)
        gz = (g - G @ x0) / eps  # unit rows, z = (x - x0) / eps in [-1, 1]^3
        for o in range(2):
            for sense, value, x in ((1.0, ob.lower[r, o], ob.argmin[r, o]), (-1.0, ob.upper[r, o], ob.argmax[r, o])):
                ref = linprog(sense * A[r, o], A_ub=G, b_ub=gz, bounds=(None, None), method="highs", options=tight)
                want = sense * ref.fun * eps + A[r, o] @ x0 + c[r, o]
                assert abs(value - want) <= 1e-8 * eps * np.abs(A[r, o]).sum() + 1e-14 * (1 + abs(want))
                assert np.all(G @ ((x - x0) / eps) - gz <= 1e-9)


def test_load_names_corrupt_files(small, tmp_path):
    """Broken stats or arrays whose shapes disagree are a LoadError, not a JSON or NumPy error."""
    _, R = small
    R.save(tmp_path / "r.npz")
    good = dict(np.load(tmp_path / "r.npz"))
    for change, needle in (({"stats": np.array("{broken")}, "not valid JSON"), ({"stats": np.array("[1]")}, "list"),
                           ({"lo": np.zeros(3)}, "lo has shape"), ({"witnesses": np.zeros((1, 2))}, "witnesses")):
        np.savez(tmp_path / "bad.npz", **dict(good, **change))
        with pytest.raises(jaxpoly.LoadError, match=needle):
            jaxpoly.Regions.load(tmp_path / "bad.npz")


def test_load_checks_contents_not_only_shapes(small, tmp_path):
    """Flags stored as strings ("False" read as True), float patterns, facet pointers that do not
    index facet_idx, facet ids and adjacency pairs out of range, a region with too few facets to be
    bounded (its output range would be the LP's artificial box), and an empty box loaded silently."""
    _, R = small
    R.save(tmp_path / "r.npz")
    good = dict(np.load(tmp_path / "r.npz"))
    assert len(R) > 2 and len(R.adjacency)
    ptr, adj, idx = good["facet_ptr"], good["adjacency"], good["facet_idx"]
    bad_adj = adj.copy()
    bad_adj[0, 1] = len(R)
    bad_idx = idx.copy()
    bad_idx[0] = R.patterns.shape[1]
    for change, needle in (({"complete": np.array("False")}, "complete has dtype"),
                           ({"level_set": np.array(0)}, "level_set has dtype"),
                           ({"patterns": good["patterns"].astype(float)}, "patterns has dtype"),
                           ({"facet_ptr": ptr * 100}, "facet_ptr"), ({"facet_ptr": ptr[::-1].copy()}, "facet_ptr"),
                           ({"facet_ptr": ptr.astype(float)}, "facet_ptr has dtype"),
                           ({"facet_idx": bad_idx}, "facet ids"), ({"adjacency": bad_adj}, "adjacency pairs"),
                           ({"adjacency": adj[:, ::-1].copy()}, "r < s"), ({"inradius": -good["inradius"]}, "inradius"),
                           ({"hi": good["lo"]}, "box"), ({"witnesses": good["witnesses"] * np.nan}, "witnesses"),
                           ({"facet_idx": idx[ptr[1] - 2:], "facet_ptr": np.concatenate([[0], ptr[1:] - ptr[1] + 2])},
                            "region 0 has 2 facets")):
        np.savez(tmp_path / "bad.npz", **dict(good, **change))
        with pytest.raises(jaxpoly.LoadError, match=needle):
            jaxpoly.Regions.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "same.npz", **good)
    assert np.array_equal(jaxpoly.Regions.load(tmp_path / "same.npz").adjacency, R.adjacency)


def test_sample_regions_draws_only_the_points_asked_for(small):
    """A batch size above the sample count drew (and evaluated) a whole batch: 10**9 aborted the process."""
    net, R = small
    key = jax.random.key(3)
    a = jaxpoly.sample_regions(net, (-1.0, 1.0), 1000, key=key, batch_size=10**12)
    b = jaxpoly.sample_regions(net, (-1.0, 1.0), 1000, key=key, batch_size=1000)
    assert np.array_equal(a, b)
    assert len(a) <= len(R)


# -- magnitudes that overflow float64 ---------------------------------------------------------------

_W0, _B0 = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]]), np.array([0.1, -0.2, 0.3])


def _scaled(s):
    return jaxpoly.from_arrays([_W0 * s, np.ones((3, 1))], [_B0 * s, np.zeros(1)])


def test_huge_weights_and_boxes_are_refused():
    """First-layer weights of 1e154 overflowed the row norms (1 region, complete=True) and a box of
    1e155 raised a plain ValueError in the LP: both are refused up front, naming the limit."""
    with pytest.raises(jaxpoly.InvalidNetworkError, match="1e\\+150"):
        jaxpoly.enumerate_regions(_scaled(1e154), (-1.0, 1.0), batch_size=64)
    with pytest.raises(jaxpoly.InvalidBoundsError, match="rescale the input"):
        jaxpoly.enumerate_regions(_scaled(1.0), (-1e155, 1e155), batch_size=64)
    with pytest.raises(jaxpoly.InvalidNetworkError, match="1e\\+300"):  # sampling: values must stay finite
        jaxpoly.sample_regions(jaxpoly.from_arrays([_W0 * 1e200, np.ones((3, 1)) * 1e200], [_B0, np.zeros(1)]),
                               (-1.0, 1.0), 10, key=jax.random.key(0))


def test_large_weights_below_the_limit_still_enumerate():
    """Scaling the first layer keeps the partition: 6 regions at 1e100 as at 1 (the bound is within
    a small factor of the true magnitudes here)."""
    from jaxpoly.network import magnitude_bound

    assert len(jaxpoly.enumerate_regions(_scaled(1.0), (-1.0, 1.0), batch_size=64)) == 6
    R = jaxpoly.enumerate_regions(_scaled(1e100), (-1.0, 1.0), batch_size=64)
    assert len(R) == 6 and R.complete
    assert magnitude_bound(_scaled(1e100), -np.ones(2), np.ones(2)) == pytest.approx(4.6e100)


def test_lp_input_errors_are_jaxpoly_errors():
    from jaxpoly.lp import solve_lp

    with pytest.raises(jaxpoly.InvalidArgumentError, match="non-finite"):
        solve_lp(np.ones(2), np.full((3, 2), np.inf), np.ones(3))
