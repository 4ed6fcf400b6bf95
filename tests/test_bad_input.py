"""Bad input across the public API: each case raises a jaxpoly error type with a useful message."""

import numpy as np
import pytest

import jax
import jaxpoly


@pytest.fixture(scope="module")
def net2():
    return jaxpoly.load_model("bunny-2d-2x50")


@pytest.fixture(scope="module")
def complex2(net2):
    return jaxpoly.extract(net2, (-0.5, 0.5))


@pytest.fixture(scope="module")
def regions2(net2):
    with pytest.warns(jaxpoly.IncompleteResultWarning):
        return jaxpoly.enumerate_regions(net2, (-0.5, 0.5), max_regions=20)


def _plot():
    from jaxpoly import plot

    return plot


def _three_outputs():
    return jaxpoly.from_arrays([np.ones((2, 3)), np.ones((3, 3))], [np.zeros(3), np.zeros(3)])


def _retyped(net, dtype, imag=0.0):
    """``net`` with its first kernel cast to ``dtype`` (plus ``imag`` for complex weights)."""
    st = net.stages[0]
    kernel = np.asarray(st.kernels[0]).astype(dtype)
    if imag:
        kernel = kernel + imag
    first = jaxpoly.Stage((kernel,), st.bias, st.sources, st.activation)
    return jaxpoly.Network((first,) + net.stages[1:], net.output)


CASES = {
    "region_of wrong dim": (lambda n, c, r: c.region_of(np.zeros((3, 3))), jaxpoly.InvalidArgumentError, "shape (n, 2)"),
    "region_of nan": (lambda n, c, r: c.region_of([[np.nan, 0.0]]), jaxpoly.InvalidArgumentError, "NaN"),
    "region_of empty list": (lambda n, c, r: c.region_of([]), jaxpoly.InvalidArgumentError, "np.zeros"),
    "vertices_of out of range": (lambda n, c, r: c.regions.vertices_of(10**6), jaxpoly.InvalidArgumentError, "cell index"),
    "vertices_of -1": (lambda n, c, r: c.regions.vertices_of(-1), jaxpoly.InvalidArgumentError, "cell index"),
    "activation with a string slope": (lambda n, c, r: jaxpoly.leaky_relu("x"), jaxpoly.InvalidNetworkError, "real number"),
    "hard_tanh with a string bound": (lambda n, c, r: jaxpoly.hard_tanh("a", 1.0), jaxpoly.InvalidNetworkError, "real number"),
    "piecewise_linear of strings": (lambda n, c, r: jaxpoly.piecewise_linear(["a"], [1, 2]), jaxpoly.InvalidNetworkError, "real numbers"),
    "piecewise_linear of None": (lambda n, c, r: jaxpoly.piecewise_linear(None, [1]), jaxpoly.InvalidNetworkError, "sequences"),
    "from_arrays of None": (lambda n, c, r: jaxpoly.from_arrays(None, None), jaxpoly.InvalidNetworkError, "sequences"),
    "load_npz None": (lambda n, c, r: jaxpoly.load_npz(None), jaxpoly.ModelLoadError, "expected a path"),
    "load_model 3": (lambda n, c, r: jaxpoly.load_model(3), jaxpoly.ModelLoadError, "expected a path"),
    "load_network None": (lambda n, c, r: jaxpoly.load_network(None), jaxpoly.ModelLoadError, "expected a path"),
    "Complex.load None": (lambda n, c, r: jaxpoly.Complex.load(None), jaxpoly.LoadError, "expected a path"),
    "vertex_positions to_network 5": (lambda n, c, r: jaxpoly.vertex_positions(n, c, to_network=5), jaxpoly.InvalidArgumentError, "to_network"),
    "load_network input_dim a string": (lambda n, c, r: jaxpoly.load_network("bunny-2d", input_dim="2"), jaxpoly.ModelLoadError, "input_dim"),
    "ExactGeometry strict a string": (lambda n, c, r: jaxpoly.ExactGeometry(n, (-1, 1), strict="x"), jaxpoly.InvalidArgumentError, "strict"),
    "region_inradius 2-D indices": (lambda n, c, r: jaxpoly.region_inradius(n, r, [[0, 1]]), jaxpoly.InvalidArgumentError, "1-D"),
    "network_from_params strings": (lambda n, c, r: jaxpoly.network_from_params([np.array([["a"]]), np.ones((1, 1))],
                                                                              [np.zeros(1), np.zeros(1)]),
                                    jaxpoly.InvalidNetworkError, "real numbers"),
    "region_of complex": (lambda n, c, r: c.region_of(np.array([[0.1 + 1j, 0.2]])), jaxpoly.InvalidArgumentError, "real"),
    "regions contains complex": (lambda n, c, r: r.contains(np.array([0.1 + 1j, 0.2])), jaxpoly.InvalidArgumentError, "real"),
    "extract complex bounds": (lambda n, c, r: jaxpoly.extract(n, (-1 + 1j, 1)), jaxpoly.InvalidBoundsError, "real"),
    "extract string bounds": (lambda n, c, r: jaxpoly.extract(n, (0, "x")), jaxpoly.InvalidBoundsError,
                              "bounds must be numbers, got hi='x'"),
    "extract rtol a string": (lambda n, c, r: jaxpoly.extract(n, (-1, 1), rtol="1e-9"), jaxpoly.InvalidArgumentError, "rtol"),
    "extract dtype unknown": (lambda n, c, r: jaxpoly.extract(n, (-1, 1), dtype="foo"), jaxpoly.InvalidArgumentError, "dtype"),
    "extract slice a string": (lambda n, c, r: jaxpoly.extract(n, (-1, 1), slice="abc"), jaxpoly.InvalidNetworkError, "real numbers"),
    "extract capacity True": (lambda n, c, r: jaxpoly.extract(n, (-1, 1), capacity=True), jaxpoly.InvalidArgumentError, "capacity"),
    "extract level_set a string": (lambda n, c, r: jaxpoly.extract(n, (-1, 1), level_set="yes"), jaxpoly.InvalidArgumentError, "level_set"),
    "save_npz None": (lambda n, c, r: jaxpoly.save_npz(None, "unused.npz"), jaxpoly.InvalidNetworkError, "jaxpoly.Network"),
    "select_output None": (lambda n, c, r: jaxpoly.select_output(None, 0), jaxpoly.InvalidNetworkError, "jaxpoly.Network"),
    "restrict_to_plane None": (lambda n, c, r: jaxpoly.restrict_to_plane(None, [0, 0], [1, 0], [0, 1]), jaxpoly.InvalidNetworkError, "jaxpoly.Network"),
    "plane through strings": (lambda n, c, r: jaxpoly.plane_through_points("ab", [1, 0], [0, 1]), jaxpoly.InvalidArgumentError, "real numbers"),
    "plane through matrices": (lambda n, c, r: jaxpoly.plane_through_points(np.eye(2), 2 * np.eye(2), np.ones((2, 2))),
                               jaxpoly.InvalidArgumentError, "vector"),
    "region_of a string": (lambda n, c, r: c.region_of("abc"), jaxpoly.InvalidArgumentError, "array of numbers"),
    "vertex_positions None": (lambda n, c, r: jaxpoly.vertex_positions(n, None), jaxpoly.InvalidArgumentError, "jaxpoly.Complex"),
    "is_stale a string": (lambda n, c, r: jaxpoly.is_stale(n, "abc"), jaxpoly.InvalidArgumentError, "VertexSystem"),
    "level_set_positions a list": (lambda n, c, r: jaxpoly.level_set_positions(n, [1, 2]), jaxpoly.InvalidArgumentError, "jaxpoly.Complex"),
    "region_inradius None": (lambda n, c, r: jaxpoly.region_inradius(n, None), jaxpoly.InvalidArgumentError, "jaxpoly.Regions"),
    "vertex_system None": (lambda n, c, r: jaxpoly.geometry.vertex_system(None), jaxpoly.InvalidArgumentError, "jaxpoly.Complex"),
    "regions index_of wrong dim": (lambda n, c, r: r.contains(np.zeros((2, 5))), jaxpoly.InvalidArgumentError, "(..., 2)"),
    "regions index_of inf": (lambda n, c, r: r.index_of([[np.inf, 0.0]]), jaxpoly.InvalidArgumentError, "inf"),
    "enumerate batch 0": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), batch_size=0), jaxpoly.InvalidArgumentError, "batch_size"),
    "enumerate rays -1": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), rays=-1), jaxpoly.InvalidArgumentError, "rays"),
    "enumerate max_regions 0": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), max_regions=0), jaxpoly.InvalidArgumentError, "max_regions"),
    "sample without key": (lambda n, c, r: jaxpoly.sample_regions(n, (-1, 1), 5, key=None), jaxpoly.InvalidArgumentError, "PRNG key"),
    "sample with int key": (lambda n, c, r: jaxpoly.sample_regions(n, (-1, 1), 5, key=3), jaxpoly.InvalidArgumentError, "PRNG key"),
    "unknown model": (lambda n, c, r: jaxpoly.load_model("nope"), jaxpoly.ModelNotFoundError, "bunny-2d-2x50"),
    "missing npz": (lambda n, c, r: jaxpoly.load_npz("/nonexistent/x.npz"), jaxpoly.ModelNotFoundError, "no such model file"),
    "missing regions file": (lambda n, c, r: jaxpoly.Regions.load("/nonexistent/r.npz"), jaxpoly.LoadError, "no such file"),
    "missing complex file": (lambda n, c, r: jaxpoly.Complex.load("/nonexistent/c.npz"), jaxpoly.LoadError, "no such file"),
    "output_difference negative index": (lambda n, c, r: jaxpoly.output_difference(_three_outputs(), 0, -1),
                                          jaxpoly.InvalidNetworkError, "out of range"),
    "output_difference index too large": (lambda n, c, r: jaxpoly.output_difference(_three_outputs(), 0, 3),
                                           jaxpoly.InvalidNetworkError, "out of range"),
    "output_difference i == j": (lambda n, c, r: jaxpoly.output_difference(_three_outputs(), 1, 1),
                                 jaxpoly.InvalidNetworkError, "two different outputs"),
    "select_output float index": (lambda n, c, r: jaxpoly.select_output(_three_outputs(), 1.5),
                                  jaxpoly.InvalidNetworkError, "integer"),
    "plane through coincident points": (lambda n, c, r: jaxpoly.plane_through_points([0.1, 0.2], [0.1, 0.2], [1.0, 0.0]),
                                        jaxpoly.InvalidArgumentError, "span a plane"),
    "plane through points of different lengths": (lambda n, c, r: jaxpoly.plane_through_points([0, 0, 0], [1, 0], [0, 1, 0]),
                                                  jaxpoly.InvalidArgumentError, "same length"),
    "slice through strings": (lambda n, c, r: _plot().slice_through_points([["a"] * 5] * 3), jaxpoly.InvalidNetworkError,
                              "real coordinates"),
    "slice through ragged points": (lambda n, c, r: _plot().slice_through_points([[0, 0], [1, 1, 1], [0, 1]]),
                                    jaxpoly.InvalidNetworkError, "real coordinates"),
    "slice margin negative": (lambda n, c, r: _plot().slice_through_points(np.eye(3), margin=-1), jaxpoly.InvalidArgumentError,
                              "margin"),
    "regions vs time list": (lambda n, c, r: _plot().plot_regions_vs_time([1, 2]), jaxpoly.InvalidArgumentError, "a dict"),
    "regions vs time not a pair": (lambda n, c, r: _plot().plot_regions_vs_time({"a": [1, 2, 3]}),
                                   jaxpoly.InvalidArgumentError, "pair"),
    "regions vs time strings": (lambda n, c, r: _plot().plot_regions_vs_time({"a": (["x"], [1])}),
                                jaxpoly.InvalidArgumentError, "pair"),
    "enumerate tol nan": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), tol=float("nan")), jaxpoly.InvalidArgumentError, "tol"),
    "enumerate tol negative": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), tol=-1.0), jaxpoly.InvalidArgumentError, "tol"),
    "enumerate tol 0": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), tol=0.0), jaxpoly.InvalidArgumentError, "tol"),
    "enumerate tol below float64": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), tol=1e-15), jaxpoly.InvalidArgumentError, "below what the float64 LPs resolve"),
    "enumerate tol too large": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), tol=10.0), jaxpoly.InvalidArgumentError, "tol"),
    "enumerate max_regions float": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), max_regions=2.5), jaxpoly.InvalidArgumentError, "max_regions"),
    "enumerate max_regions str": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), max_regions="3"), jaxpoly.InvalidArgumentError, "max_regions"),
    "enumerate seed -1": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), seed=-1), jaxpoly.InvalidArgumentError, "seed"),
    "enumerate devices []": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), devices=[]), jaxpoly.InvalidArgumentError, "devices"),
    "enumerate devices 3": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), devices=3), jaxpoly.InvalidArgumentError, "devices"),
    "enumerate devices twice": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), devices=jax.devices()[:1] * 2),
                                jaxpoly.InvalidArgumentError, "more than once"),
    "enumerate level_set str": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), level_set="yes"), jaxpoly.InvalidArgumentError, "level_set"),
    "sample level_set str": (lambda n, c, r: jaxpoly.sample_regions(n, (-1, 1), 5, key=jax.random.key(0), level_set="yes"),
                             jaxpoly.InvalidArgumentError, "level_set"),
    "enumerate object weights": (lambda n, c, r: jaxpoly.enumerate_regions(_retyped(n, object), (-1, 1)), jaxpoly.InvalidNetworkError, "dtype object"),
    "enumerate str weights": (lambda n, c, r: jaxpoly.enumerate_regions(_retyped(n, str), (-1, 1)), jaxpoly.InvalidNetworkError, "real numbers"),
    "enumerate complex weights": (lambda n, c, r: jaxpoly.enumerate_regions(_retyped(n, complex, 1j), (-1, 1)), jaxpoly.InvalidNetworkError, "complex"),
    "sample complex weights": (lambda n, c, r: jaxpoly.sample_regions(_retyped(n, complex, 1j), (-1, 1), 5, key=jax.random.key(0)),
                               jaxpoly.InvalidNetworkError, "complex"),
    "regions facets -1": (lambda n, c, r: r.facets(-1), jaxpoly.InvalidArgumentError, "out of range"),
    "Complex.save to a missing folder": (lambda n, c, r: c.save("/nonexistent-jaxpoly-dir/c.npz"), jaxpoly.SaveError,
                                         "does not exist"),
    "Regions.save path None": (lambda n, c, r: r.save(None), jaxpoly.SaveError, "expected a path"),
    "save_npz to a missing folder": (lambda n, c, r: jaxpoly.save_npz(n, "/nonexistent-jaxpoly-dir/n.npz"), jaxpoly.SaveError,
                                     "does not exist"),
    "Mesh.save path 3": (lambda n, c, r: c.level_set().save(3), jaxpoly.SaveError, "expected a path"),
    "ExactGeometry unknown keyword": (lambda n, c, r: jaxpoly.ExactGeometry(n, (-0.5, 0.5), capacty=64), jaxpoly.InvalidArgumentError,
                                      "ExactGeometry got unknown keyword(s) 'capacty'"),
    "refresh_if_stale unknown keyword": (lambda n, c, r: jaxpoly.refresh_if_stale(n, c, foo=1), jaxpoly.InvalidArgumentError,
                                         "refresh_if_stale got unknown"),
    "from_flax dict output": (lambda n, c, r: jaxpoly.from_flax(lambda x: {"y": x}, None, input_dim=2), jaxpoly.InvalidNetworkError,
                              "returns dict"),
    "from_flax softplus": (lambda n, c, r: jaxpoly.from_flax(jax.nn.softplus, None, input_dim=2), jaxpoly.UnsupportedLayerError,
                           "in softplus"),
    # the activation is named, and the max-pooling hint of its reduce_max is not given
    "from_flax softmax": (lambda n, c, r: jaxpoly.from_flax(jax.nn.softmax, None, input_dim=2), jaxpoly.UnsupportedLayerError,
                          "`reduce_max` applied to an input-dependent value by jax.nn.softmax is not piecewise affine; only piecewise-linear"),
    "from_flax gelu": (lambda n, c, r: jaxpoly.from_flax(jax.nn.gelu, None, input_dim=2), jaxpoly.UnsupportedLayerError,
                       "by jax.nn.gelu"),
    "bounds as pairs per coordinate 2D": (lambda n, c, r: jaxpoly.enumerate_regions(n, np.array([[-1.0, 1.0], [-1.0, 1.0]])),
                                          jaxpoly.InvalidBoundsError, "not one (lo, hi) pair per coordinate: pass np.transpose(pairs)"),
    "bounds as pairs per coordinate 3D": (lambda n, c, r: jaxpoly.extract(jaxpoly.from_arrays([np.ones((3, 2)), np.ones((2, 1))], [np.zeros(2), np.zeros(1)]),
                                                                          [(-1, 1), (0, 2), (0, 1)]),
                                          jaxpoly.InvalidBoundsError, "not one (lo, hi) pair per coordinate"),
    "from_arrays torch layout": (lambda n, c, r: jaxpoly.from_arrays([np.ones((6, 2)), np.ones((1, 6))], [np.zeros(6), np.zeros(1)]),
                                 jaxpoly.InvalidNetworkError, "PyTorch's Linear.weight is (out, in), pass its transpose"),
    "Stage sources of strings": (lambda n, c, r: jaxpoly.Stage((np.ones((2, 3)),), np.zeros(3), ("a",)), jaxpoly.InvalidNetworkError,
                                 "sources must be a sequence of integers"),
    "Network stages None": (lambda n, c, r: jaxpoly.Network(None, n.output), jaxpoly.InvalidNetworkError, "sequence of jaxpoly.Stage"),
    # weights or boxes whose values overflow: extract's float64 (squared in volumes) and float32 limits
    "extract weights overflow": (lambda n, c, r: jaxpoly.extract(jaxpoly.from_arrays([1e160 * np.ones((2, 2)), np.ones((2, 1))],
                                                                                      [np.zeros(2), np.zeros(1)]), (-1, 1)),
                                 jaxpoly.InvalidNetworkError, "may reach 4e+160 over the box"),
    "extract float32 weights overflow": (lambda n, c, r: jaxpoly.extract(jaxpoly.from_arrays([1e20 * np.ones((2, 2)), 1e20 * np.ones((2, 1))],
                                                                                              [np.zeros(2), np.zeros(1)]), (-1, 1), dtype=np.float32),
                                         jaxpoly.InvalidNetworkError, "beyond the 1e+30 this engine accepts"),
    "extract boolean bounds": (lambda n, c, r: jaxpoly.extract(n, (False, True)), jaxpoly.InvalidBoundsError, "booleans"),
    "enumerate boolean bounds": (lambda n, c, r: jaxpoly.enumerate_regions(n, (np.zeros(2), np.ones(2, bool))),
                                 jaxpoly.InvalidBoundsError, "booleans"),
    "extract box overflow": (lambda n, c, r: jaxpoly.extract(n, (-1e200, 1e200)), jaxpoly.InvalidBoundsError,
                             "the box reaches 1e+200, beyond the 1e+150"),
    "zero input dim": (lambda n, c, r: jaxpoly.extract(jaxpoly.from_arrays([np.ones((0, 3)), np.ones((3, 1))], [np.zeros(3), np.zeros(1)]), (-1, 1)),
                       jaxpoly.InvalidNetworkError, "at least 1"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_a_jaxpoly_error(name, net2, complex2, regions2):
    fn, err, needle = CASES[name]
    with pytest.raises(err, match=None) as info:
        fn(net2, complex2, regions2)
    assert isinstance(info.value, jaxpoly.JaxpolyError)
    assert needle in str(info.value), str(info.value)


def test_region_of_an_empty_batch(complex2):
    """No points, no regions (a forward pass over zero rows once failed inside JAX)."""
    out = complex2.region_of(np.zeros((0, 2)))
    assert out.shape == (0,) and out.dtype.kind == "i"


def test_foreign_npz_files_are_named(tmp_path, net2):
    p = tmp_path / "other.npz"
    np.savez(p, a=np.zeros(3))
    with pytest.raises(jaxpoly.LoadError, match="lacks"):
        jaxpoly.Complex.load(p)
    with pytest.raises(jaxpoly.LoadError, match="lacks"):
        jaxpoly.Regions.load(p)
    q = tmp_path / "text.npz"
    q.write_text("not a zip")
    with pytest.raises(jaxpoly.LoadError, match="not a readable"):
        jaxpoly.Regions.load(q)


def test_save_load_roundtrip_still_works(tmp_path, complex2, regions2, net2):
    complex2.save(tmp_path / "c.npz")
    regions2.save(tmp_path / "r.npz")
    c = jaxpoly.Complex.load(tmp_path / "c.npz")
    r = jaxpoly.Regions.load(tmp_path / "r.npz", net=net2)
    assert c.f_vector == complex2.f_vector and len(r) == len(regions2)
    np.testing.assert_array_equal(r.index_of(regions2.witnesses), np.arange(len(regions2)))
    assert jax.random.PRNGKey(0).shape == (2,)


def test_default_memory_limits_follow_the_device(monkeypatch, net2):
    from jaxpoly import enumeration, extraction, memory

    assert memory.device_bytes() == memory.host_bytes() > 0  # CPU backend: the host's memory
    monkeypatch.setattr(extraction, "device_bytes", lambda: 1 << 20)
    with pytest.raises(jaxpoly.CapacityError, match="max_memory"):
        jaxpoly.extract(net2, (-0.5, 0.5))
    monkeypatch.setattr(enumeration, "device_bytes", lambda: 1 << 20)
    with pytest.raises(jaxpoly.CapacityError, match="batch_size"):
        jaxpoly.enumerate_regions(net2, (-0.5, 0.5), batch_size=256)


def test_device_memory_on_an_accelerator(monkeypatch):
    from jaxpoly import memory

    class FakeGPU:
        platform = "gpu"

        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    host = memory.host_bytes()
    monkeypatch.setattr(memory.jax, "devices", lambda: [FakeGPU({"bytes_limit": 1 << 30})])
    assert memory.device_bytes() == min(1 << 30, host)
    monkeypatch.setattr(memory.jax, "devices", lambda: [FakeGPU(None)])  # no allocator statistics
    assert memory.device_bytes() == host


def test_region_of_reads_a_flat_array_as_points_in_1d():
    """In d = 1, ``(n,)`` is n points (not one point of n coordinates)."""
    net = jaxpoly.from_arrays([np.array([[1.0, -1.0]]), np.ones((2, 1))], [np.array([0.0, 0.5]), np.zeros(1)])
    c = jaxpoly.extract(net, (-1, 1))
    got = c.region_of([-0.9, 0.25, 0.9])
    assert len(set(got.tolist())) == 3
    assert np.array_equal(got, c.region_of([[-0.9], [0.25], [0.9]]))


def test_save_to_a_folder_the_system_refuses(tmp_path, regions2):
    """The operating system's refusal (here: a path under a file) is a SaveError too, an OSError."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(jaxpoly.SaveError, match="cannot write a jaxpoly.Regions") as info:
        regions2.save(tmp_path / "file" / "r.npz")
    assert isinstance(info.value, OSError)


def test_region_queries_read_a_flat_array_as_points_in_1d():
    """``Regions.index_of`` and ``contains`` in d = 1: ``(n,)`` is n points, as for the complex."""
    net = jaxpoly.from_arrays([np.array([[1.0, -1.0]]), np.ones((2, 1))], [np.array([0.0, 0.5]), np.zeros(1)])
    R = jaxpoly.enumerate_regions(net, (-1, 1))
    got = R.index_of([-0.9, 0.25, 0.9, 2.0])
    assert got.shape == (4,) and len(set(got[:3].tolist())) == 3 and got[3] == -1
    assert np.array_equal(got, R.index_of([[-0.9], [0.25], [0.9], [2.0]]))
    assert R.contains([0.25, 2.0]).tolist() == [True, False]


def test_a_breakpoint_that_does_not_bend_is_dropped():
    """An activation whose slopes agree across a breakpoint is affine there: no hyperplanes (they would
    split one linear region into several patterns with the same affine map)."""
    act = jaxpoly.piecewise_linear([-1.0, 0.0, 1.0], [0.5, 0.5, 2.0, 2.0])
    assert act.breakpoints == (0.0,) and act.slopes == (0.5, 2.0)
    z = np.linspace(-3, 3, 13)
    full = 0.5 * z + 1.5 * (np.maximum(z, 0.0))
    np.testing.assert_allclose(np.asarray(act(z)), full)
    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((2, 3)), rng.standard_normal((3, 1))
    flat = jaxpoly.from_arrays([W1, W2], [np.zeros(3), np.zeros(1)], activation=jaxpoly.piecewise_linear([0.0], [1.0, 1.0]))
    assert flat.num_hyperplanes == 0 and len(jaxpoly.enumerate_regions(flat, (-1, 1))) == 1


def test_region_inradius_of_loaded_regions_uses_the_network_given(tmp_path, net2, regions2):
    """A Regions loaded from a file has no network: region_inradius takes the one it is given (it
    raised, naming inradius_system), and says what to do when that one is traced."""
    regions2.save(tmp_path / "r.npz")
    loaded = jaxpoly.Regions.load(tmp_path / "r.npz")
    np.testing.assert_allclose(np.asarray(jaxpoly.region_inradius(net2, loaded, [0, 3])),
                               np.asarray(jaxpoly.region_inradius(net2, regions2, [0, 3])), rtol=1e-12)
    with pytest.raises(jaxpoly.InvalidArgumentError, match="Regions.load"):
        jax.grad(lambda n: jaxpoly.region_inradius(n, loaded).sum())(net2)
