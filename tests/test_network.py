"""The Network spec: evaluation, patterns, per-region affine maps, activations, validation, npz."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpoly
from jaxpoly.network import activation_from_name
from reference import numpy_patterns, pattern_maps


def mlp(rng, sizes, activation="relu"):
    Ws = [rng.normal(size=(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(size=b) for b in sizes[1:]]
    return jaxpoly.from_arrays(Ws, bs, activation=activation), Ws, bs


def test_from_arrays_matches_numpy_forward():
    rng = np.random.default_rng(0)
    net, Ws, bs = mlp(rng, [3, 7, 5, 2])
    X = rng.normal(size=(50, 3))
    a = X
    pres = []
    for W, b in zip(Ws[:-1], bs[:-1]):
        z = a @ W + b
        pres.append(z)
        a = np.maximum(z, 0)
    y = a @ Ws[-1] + bs[-1]
    assert np.allclose(net(X), y, atol=1e-12, rtol=0)
    assert np.allclose(net.preactivations(X), np.concatenate(pres, 1), atol=1e-12, rtol=0)
    assert np.array_equal(net.pattern(X), np.concatenate(pres, 1) > 0)
    assert (net.input_dim, net.output_dim, net.widths, net.num_neurons) == (3, 2, (7, 5), 12)


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "relu6", "hard_tanh"])
def test_affine_maps_reproduce_forward_pass(act):
    """On each point's region, the per-pattern affine maps give the hyperplane values and the output."""
    rng = np.random.default_rng(1)
    net, _, _ = mlp(rng, [4, 6, 6, 3], act)
    X = rng.normal(size=(64, 4)) * 3
    maps = net.affine_maps(net.pattern(X))
    hv = jnp.einsum("bhd,bd->bh", maps.hyper_A, X) + maps.hyper_c
    out = jnp.einsum("bod,bd->bo", maps.out_A, X) + maps.out_c
    assert np.allclose(hv, net.hyperplane_values(X), atol=1e-10)
    assert np.allclose(out, net(X), atol=1e-10)
    assert net.num_hyperplanes == 12 * activation_from_name(act).num_breakpoints


def test_activations_values():
    z = jnp.linspace(-8, 8, 161)
    assert np.allclose(jaxpoly.relu()(z), np.maximum(z, 0))
    assert np.allclose(jaxpoly.leaky_relu(0.2)(z), np.where(z > 0, z, 0.2 * z))
    assert np.allclose(jaxpoly.relu6()(z), np.clip(z, 0, 6))
    assert np.allclose(jaxpoly.hard_tanh()(z), np.clip(z, -1, 1))
    assert np.allclose(jaxpoly.identity()(z), z)
    f = jaxpoly.piecewise_linear((-1.0, 2.0), (0.5, 1.0, -1.0), value_at_zero=3.0)
    ref = np.where(z < -1, 3 - 1 + 0.5 * (z + 1), np.where(z < 2, 3 + z, 3 + 2 - (z - 2)))
    assert np.allclose(f(z), ref)


def test_residual_network_and_pytree():
    """A ResNet block x + W2 relu(W1 x) as a stage DAG; the Network is a pytree for jit/grad/vmap."""
    rng = np.random.default_rng(2)
    W1, b1, W2 = rng.normal(size=(3, 5)), rng.normal(size=5), rng.normal(size=(5, 3))
    s1 = jaxpoly.Stage((W1,), b1, (0,), jaxpoly.relu())
    out = jaxpoly.Stage((np.eye(3), W2), np.zeros(3), (0, 1), jaxpoly.identity())
    net = jaxpoly.Network((s1,), out)
    X = rng.normal(size=(10, 3))
    assert np.allclose(net(X), X + np.maximum(X @ W1 + b1, 0) @ W2)
    assert not net.is_sequential
    y = jax.jit(lambda n, x: n(x))(net, X)
    assert np.allclose(y, net(X))
    g = jax.grad(lambda n: jnp.sum(n(X)))(net)
    assert isinstance(g, jaxpoly.Network) and g.stages[0].kernels[0].shape == (3, 5)
    maps = net.affine_maps(net.pattern(X))
    assert np.allclose(jnp.einsum("bod,bd->bo", maps.out_A, X) + maps.out_c, net(X), atol=1e-10)


def test_npz_roundtrip_general_and_sequential(tmp_path):
    rng = np.random.default_rng(3)
    net, _, _ = mlp(rng, [2, 4, 1])
    jaxpoly.save_npz(net, tmp_path / "a.npz")
    assert set(np.load(tmp_path / "a.npz")) == {"W0", "b0", "W1", "b1"}
    X = rng.normal(size=(5, 2))
    assert np.allclose(jaxpoly.load_npz(tmp_path / "a.npz")(X), net(X))
    jaxpoly.save_npz(net, tmp_path / "named")  # NumPy writes named.npz; both loaders find it by this name
    assert np.allclose(jaxpoly.load_npz(tmp_path / "named")(X), net(X))
    assert np.allclose(jaxpoly.load_network(str(tmp_path / "named"))(X), net(X))
    s1 = jaxpoly.Stage((rng.normal(size=(2, 3)),), np.zeros(3), (0,), jaxpoly.hard_tanh())
    gen = jaxpoly.Network((s1,), jaxpoly.Stage((np.eye(2), rng.normal(size=(3, 2))), np.zeros(2), (0, 1), jaxpoly.identity()))
    jaxpoly.save_npz(gen, tmp_path / "b.npz")
    back = jaxpoly.load_npz(tmp_path / "b.npz")
    assert np.allclose(back(X), gen(X)) and back.stages[0].activation == jaxpoly.hard_tanh()


def test_bundled_models_load():
    for name in jaxpoly.BUNDLED_MODELS:
        net = jaxpoly.load_model(name)
        assert net.output_dim == 1 and net.input_dim in (2, 3)
    assert jaxpoly.load_model("bunny-3d").widths == (16, 16, 16)


def test_validation_errors(tmp_path):
    E = jaxpoly.InvalidNetworkError
    with pytest.raises(E, match="expects 4 inputs"):
        jaxpoly.from_arrays([np.ones((2, 3)), np.ones((4, 1))], [np.zeros(3), np.zeros(1)])
    with pytest.raises(E, match="biases\\[0\\] has shape"):
        jaxpoly.from_arrays([np.ones((2, 3))], [np.zeros(2)])
    with pytest.raises(E, match="NaN"):
        jaxpoly.from_arrays([np.full((2, 3), np.nan), np.ones((3, 1))], [np.zeros(3), np.zeros(1)])
    with pytest.raises(E, match="inf"):
        jaxpoly.from_arrays([np.ones((2, 1))], [np.array([np.inf])])
    with pytest.raises(E, match="unknown activation"):
        jaxpoly.from_arrays([np.ones((2, 1))], [np.zeros(1)], activation="tanh")
    with pytest.raises(E, match="source 2"):
        jaxpoly.Network((), jaxpoly.Stage((np.ones((2, 1)),), np.zeros(1), (2,), jaxpoly.identity()))
    with pytest.raises(E, match="identity"):
        jaxpoly.Network((), jaxpoly.Stage((np.ones((2, 1)),), np.zeros(1), (0,), jaxpoly.relu()))
    with pytest.raises(E, match="strictly increasing"):
        jaxpoly.piecewise_linear((1.0, 0.0), (0.0, 1.0, 0.0))
    net = jaxpoly.from_arrays([np.ones((2, 3)), np.ones((3, 2))], [np.zeros(3), np.zeros(2)])
    with pytest.raises(E, match="scalar output"):
        jaxpoly.validate_network(net, scalar_output=True)
    with pytest.raises(E, match="no hidden neuron"):
        jaxpoly.validate_network(jaxpoly.from_arrays([np.ones((2, 1))], [np.zeros(1)]), need_hidden=True)
    with pytest.raises(E, match="expected a jaxpoly.Network"):
        jaxpoly.validate_network("not a net")
    (tmp_path / "bad.npz").write_text("not an npz")
    with pytest.raises(E, match="not a readable"):
        jaxpoly.load_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "empty.npz", x=np.zeros(2))
    with pytest.raises(E, match="holds no weights"):
        jaxpoly.load_npz(tmp_path / "empty.npz")
    with pytest.raises(FileNotFoundError):
        jaxpoly.load_npz(tmp_path / "missing.npz")
    with pytest.raises(FileNotFoundError):
        jaxpoly.load_model("no-such-model")


def test_select_output_and_difference():
    rng = np.random.default_rng(4)
    net, _, _ = mlp(rng, [2, 5, 3])
    X = rng.normal(size=(7, 2))
    assert np.allclose(jaxpoly.select_output(net, 1)(X)[:, 0], net(X)[:, 1])
    assert np.allclose(jaxpoly.output_difference(net, 0, 2)(X)[:, 0], net(X)[:, 0] - net(X)[:, 2])


def _hard_tanh_npz(tmp_path):
    rng = np.random.default_rng(5)
    net, _, _ = mlp(rng, [2, 4, 1], "hard_tanh")
    jaxpoly.save_npz(net, tmp_path / "good.npz")
    return dict(np.load(tmp_path / "good.npz"))


@pytest.mark.parametrize("case,needle", [
    ("no num_stages", "lacks the array 'num_stages'"),
    ("no stage1_bias", "lacks the array 'stage1_bias'"),
    ("zero stages", "num_stages must be a positive integer"),
    ("bad activation", "stage0_activation is not a jaxpoly activation"),
])
def test_damaged_general_npz_names_what_is_wrong(tmp_path, case, needle):
    """The general (jaxpoly-stages-v1) layout: a missing or damaged array is an InvalidNetworkError naming
    it, not a KeyError / IndexError / JSONDecodeError."""
    d = _hard_tanh_npz(tmp_path)
    if case == "no num_stages":
        del d["num_stages"]
    elif case == "no stage1_bias":
        del d["stage1_bias"]
    elif case == "zero stages":
        d["num_stages"] = np.array(0)
    else:
        d["stage0_activation"] = np.array("{oops")
    np.savez(tmp_path / "bad.npz", **d)
    with pytest.raises(jaxpoly.InvalidNetworkError, match=needle):
        jaxpoly.load_npz(tmp_path / "bad.npz")


def test_plain_npz_with_a_gap_in_layer_numbers_is_refused(tmp_path):
    """W0, b0, W2, b2 is not a two-layer MLP missing nothing: it is refused, not read as its first layer."""
    rng = np.random.default_rng(6)
    np.savez(tmp_path / "gap.npz", W0=rng.normal(size=(4, 2)), b0=np.zeros(4), W2=rng.normal(size=(1, 4)), b2=np.zeros(1))
    with pytest.raises(jaxpoly.InvalidNetworkError, match=r"without gaps.*'W2', 'b2'.*missing \['W1', 'b1'\]"):
        jaxpoly.load_npz(tmp_path / "gap.npz")
    np.savez(tmp_path / "nobias.npz", W0=rng.normal(size=(4, 2)), b0=np.zeros(4), W1=rng.normal(size=(1, 4)))
    with pytest.raises(jaxpoly.InvalidNetworkError, match=r"missing \['b1'\]"):
        jaxpoly.load_npz(tmp_path / "nobias.npz")


def test_leaky_relu_of_slope_one_is_the_identity():
    """A leaky ReLU of slope 1 is affine: no breakpoint, so an MLP of them has no hyperplane."""
    assert jaxpoly.leaky_relu(1.0) == jaxpoly.identity() and jaxpoly.leaky_relu(0.5).num_breakpoints == 1
    net = jaxpoly.from_arrays([np.ones((2, 3)), np.ones((3, 1))], [np.zeros(3), np.zeros(1)], activation="leaky_relu",
                              negative_slope=1.0)
    assert net.num_hyperplanes == 0


def test_complex_weights_are_refused():
    with pytest.raises(jaxpoly.InvalidNetworkError, match="complex"):
        jaxpoly.from_arrays([np.ones((2, 3)) * (1 + 1j), np.ones((3, 1))], [np.zeros(3), np.zeros(1)])


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux only")
def test_compiled_kernels_are_released_near_the_mapping_limit(caplog, monkeypatch):
    """A process that compiles kernels for many network shapes nears ``vm.max_map_count`` (each XLA CPU
    executable keeps its code mapped; a sweep crashed after ~55 networks): the entry points clear JAX's
    caches past a fraction of it. (``jax.clear_caches`` is counted, not run: clearing would make the
    worker's later tests compile again.)"""
    from jaxpoly import memory

    calls = []
    monkeypatch.setattr(jax, "clear_caches", lambda: calls.append(1))
    assert not memory.release_compiled_kernels(fraction=1e6) and not calls
    with caplog.at_level("WARNING", logger="jaxpoly"):
        assert memory.release_compiled_kernels(fraction=0.0)
    assert calls == [1] and "clearing JAX's compilation caches" in caplog.text


def test_plane_through_points_is_scale_free():
    """A right angle at any scale spans a plane (below 1e-12 it was called collinear: an absolute floor);
    collinear and coincident points at any scale do not."""
    for s in (1.0, 1e-13, 1e-100, 1e100):
        o, u, v = jaxpoly.plane_through_points([0.0, 0.0], [s, 0.0], [0.0, s])
        np.testing.assert_allclose([np.linalg.norm(u), np.linalg.norm(v)], [s, s], rtol=1e-12)
        for bad in (([0.0, 0.0], [s, 0.0], [2 * s, 0.0]), ([0.0, 0.0], [s, 0.0], [0.0, 0.0])):
            with pytest.raises(jaxpoly.InvalidArgumentError, match="span a plane|collinear"):
                jaxpoly.plane_through_points(*bad)


def _line_crossings(net, p0, p1):
    """Reference: the values ``t`` in (0, 1) where ``p0 + t (p1 - p0)`` crosses a region boundary, by
    walking the segment: on each region every hyperplane is affine in ``t`` (``reference.pattern_maps``),
    and the nearest root ahead is the next crossing."""
    t, out = 0.0, []
    while True:
        probe = p0 + min(t + 1e-9, 1.0) * (p1 - p0)  # just past the last crossing: inside the next region
        A, c, _, _ = pattern_maps(net, numpy_patterns(net, probe[None])[0])
        z0, dz = A @ p0 + c, A @ (p1 - p0)
        with np.errstate(divide="ignore", invalid="ignore"):
            roots = np.where(np.abs(dz) > 1e-14, -z0 / dz, np.inf)
        ahead = roots[roots > t + 1e-9]
        if not len(ahead) or ahead.min() >= 1.0:
            return np.array(out)
        t = float(ahead.min())
        out.append(t)


def test_restrict_to_line_crosses_the_regions_of_the_segment():
    """The regions along a segment: the line network's 1D complex has its vertices at the crossings of a
    walk along the segment (independent, in NumPy), and enumerate_regions counts the same; a single layer
    crosses each neuron's hyperplane once when its root lies in (0, 1)."""
    rng = np.random.default_rng(4)
    sizes = [6, 16, 16, 1]
    net = jaxpoly.from_arrays([rng.standard_normal((a, b)) for a, b in zip(sizes, sizes[1:])],
                              [rng.standard_normal(b) for b in sizes[1:]])
    p0, p1 = rng.uniform(-2, 2, 6), rng.uniform(-2, 2, 6)
    line = jaxpoly.restrict_to_line(net, p0, p1)
    assert line.input_dim == 1
    t = np.linspace(0.0, 1.0, 101)[:, None]
    np.testing.assert_allclose(np.asarray(line(t)), np.asarray(net(p0 + t * (p1 - p0))), rtol=1e-12, atol=1e-12)
    want = _line_crossings(net, p0, p1)
    assert len(want) > 10
    c = jaxpoly.extract(line, (0.0, 1.0), level_set=False)
    inner = np.sort(c.vertices[:, 0])[1:-1]
    np.testing.assert_allclose(inner, want, atol=1e-10)
    assert c.num_regions == len(jaxpoly.enumerate_regions(line, (0.0, 1.0))) == len(want) + 1

    W, b = rng.standard_normal((6, 30)), rng.standard_normal(30)  # one layer: the roots in (0, 1)
    one = jaxpoly.restrict_to_line(jaxpoly.from_arrays([W, np.ones((30, 1))], [b, np.zeros(1)]), p0, p1)
    roots = -(p0 @ W + b) / ((p1 - p0) @ W)
    assert jaxpoly.extract(one, (0.0, 1.0), level_set=False).num_regions == 1 + np.sum((roots > 0) & (roots < 1))


def test_restrict_to_line_refuses_bad_points():
    net = jaxpoly.from_arrays([np.ones((3, 2)), np.ones((2, 1))], [np.zeros(2), np.zeros(1)])
    with pytest.raises(jaxpoly.InvalidNetworkError, match="coincide"):
        jaxpoly.restrict_to_line(net, [1, 2, 3], [1, 2, 3])
    with pytest.raises(jaxpoly.InvalidNetworkError, match=r"shape \(3,\)"):
        jaxpoly.restrict_to_line(net, [1, 2], [1, 2, 3])
    with pytest.raises(jaxpoly.InvalidNetworkError, match="NaN"):
        jaxpoly.restrict_to_line(net, [1, 2, np.nan], [1, 2, 3])
