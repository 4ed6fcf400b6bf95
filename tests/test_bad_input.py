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
    return jaxpoly.enumerate_regions(net2, (-0.5, 0.5), max_regions=20)


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
    "enumerate tol nan": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), tol=float("nan")), jaxpoly.InvalidArgumentError, "tol"),
    "enumerate tol negative": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), tol=-1.0), jaxpoly.InvalidArgumentError, "tol"),
    "enumerate tol 0": (lambda n, c, r: jaxpoly.enumerate_regions(n, (-1, 1), tol=0.0), jaxpoly.InvalidArgumentError, "tol"),
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
