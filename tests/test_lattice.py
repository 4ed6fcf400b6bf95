"""The complex built from certified regions (jaxpoly.lattice): the engine ``extract`` falls back to on
configurations edge subdivision does not resolve (a hyperplane containing an edge while cutting
elsewhere in d >= 3), checked against hand counts, the LP reference, sampling and edge subdivision."""

import os
import warnings

import jax
import numpy as np
import pytest
from scipy.spatial import ConvexHull

import jaxpoly
from jaxpoly import extract
from reference import lp_f_vector

jax.config.update("jax_enable_x64", True)

DATA = os.path.join(os.path.dirname(__file__), "data")


def lines_net(normals, offsets):
    normals = np.asarray(normals, float)
    return jaxpoly.from_arrays([normals.T, np.ones((len(normals), 1))], [np.asarray(offsets, float), np.zeros(1)])


def zero_bias_net(d, widths, seed):
    """A freshly initialised MLP: random kernels, zero biases (Flax's default)."""
    rng = np.random.default_rng(seed)
    sizes = [d, *widths, 1]
    return jaxpoly.from_arrays([rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(sizes, sizes[1:])],
                               [np.zeros(b) for b in sizes[1:]])


def point_set(x, decimals=9):
    return {tuple(p) for p in np.round(np.asarray(x), decimals) + 0.0}


def segment_set(mesh):
    return {tuple(sorted(map(tuple, np.round(mesh.vertices[s], 9) + 0.0))) for s in mesh.edges}


def test_three_planes_through_a_line():
    """x = 0, y = 0, x = y contain the z axis; with z = 0.3 they cut [-1, 1]^3 into 6 wedges x 2 = 12
    cells. Vertices: 8 corners; on z = -1 and z = 1 the axis point and the ends of x = 0 and y = 0 (x = y
    ends in corners): 5 each; on z = 0.3 the same 5 plus the section's 4 corners: 27. Edges and 2-faces
    from the LP reference (Euler fixes their difference)."""
    net = lines_net([[1, 0, 0], [0, 1, 0], [1, -1, 0], [0, 0, 1]], [0, 0, 0, -0.3])
    with pytest.raises(jaxpoly.DegenerateError, match="vanishes on an edge"):
        extract(net, (-1, 1), level_set=False, engine="subdivision")
    with pytest.raises(jaxpoly.CapacityError, match="27 vertices"):
        extract(net, (-1, 1), level_set=False, max_vertices=20)
    c = extract(net, (-1, 1), level_set=False)
    assert c.timings["engine"] == "regions" and "vanishes on an edge" in c.timings["reason"]
    assert c.f_vector == (27, 60, 46, 12)
    assert c.f_vector == lp_f_vector(net, -np.ones(3), np.ones(3))
    assert c.euler_characteristic == 1
    axis = np.nonzero(np.all(np.abs(c.vertices[:, :2]) < 1e-12, axis=1))[0]
    axis = axis[np.argsort(c.vertices[axis, 2])]
    assert np.allclose(c.vertices[axis, 2], [-1.0, 0.3, 1.0])
    # the axis points: 6 edges in their horizontal plane (three lines through them) + the axis
    deg = np.bincount(c.edges.ravel(), minlength=c.num_vertices)
    assert deg[axis].tolist() == [7, 8, 7]
    # every vertex on its defining planes
    signs = c.vertex_signs
    assert np.all(signs[axis][:, :3] == 0)
    # the cells' volumes: the square's six pieces (four triangles of area 1/2, two quadrants of area 1)
    # times heights 1.3 and 0.7
    want = sorted(a * h for a in (0.5, 0.5, 0.5, 0.5, 1.0, 1.0) for h in (1.3, 0.7))
    np.testing.assert_allclose(np.sort(c.region_volumes()), want, rtol=1e-12)


def test_output_vanishing_on_a_region_3d():
    """y = relu(x1) - relu(x2), zero output bias, extruded along x3: the 2D complex (9, 13, 5) becomes
    prisms: V = 2 * 9, E = 2 * 13 + 9, F = 2 * 5 + 13, 5 cells. The level set is the boundary of
    {y > 0}: two rectangles (the strip x1 = 0, x2 < 0 and the diagonal strip), not the zero quadrant."""
    W = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    cross = jaxpoly.from_arrays([W, np.array([[1.0], [-1.0]])], [np.zeros(2), np.zeros(1)])
    c = extract(cross, (-1, 1))
    assert c.timings["engine"] == "regions"
    assert c.f_vector == (18, 35, 23, 5)
    mesh = c.level_set()
    assert mesh.num_faces == 2
    assert point_set(mesh.vertices) == {(0.0, -1.0, -1.0), (0.0, -1.0, 1.0), (0.0, 0.0, -1.0), (0.0, 0.0, 1.0),
                                        (1.0, 1.0, -1.0), (1.0, 1.0, 1.0)}
    pats = {tuple(p) for p in np.asarray(c.regions.patterns)}
    assert pats == {(False, False, False), (True, False, True), (False, True, False), (True, True, True),
                    (True, True, False)}
    assert np.all(c.region_of([[-0.5, -0.5, 0.2], [0.5, -0.5, 0.0], [0.6, 0.2, -0.3]]) >= 0)


@pytest.mark.parametrize("widths,seed", [pytest.param((4, 3), 2, marks=pytest.mark.slow)])
def test_zero_bias_networks_3d(widths, seed):
    """Freshly initialised 3D networks: deep neurons vanish on whole cells and their cuts run along
    edges. The complex agrees with the LP reference's f-vector, certifies its cells, holds every sampled
    pattern, and its vertices, level set and differentiable positions are consistent."""
    net = zero_bias_net(3, widths, seed)
    c = extract(net, (-1, 1))
    assert c.timings["engine"] == "regions"
    assert c.f_vector == lp_f_vector(net, -np.ones(3), np.ones(3), level_set=True)
    got = {p.tobytes() for p in np.asarray(c.regions.patterns)}
    pats = jaxpoly.sample_regions(net, (-1, 1), 20_000, key=jax.random.PRNGKey(seed), level_set=True)
    assert {p.tobytes() for p in np.asarray(pats)} <= got
    x = np.random.default_rng(seed).uniform(-1, 1, (2000, 3))
    assert np.all(c.region_of(x) >= 0)
    mesh = c.level_set()
    assert mesh.num_faces > 0 and np.abs(np.asarray(net(mesh.vertices))).max() <= 1e-9
    assert np.abs(np.asarray(jaxpoly.vertex_positions(net, c)) - c.vertices).max() <= 1e-10
    assert not jaxpoly.is_stale(net, c)
    # every vertex lies on at least d hyperplanes, each within roundoff of zero there
    vals = c._internal_values(c.vertices)
    for v in range(c.num_vertices):
        hs = c.vertex_hyperplanes[v]
        hs = hs[hs >= 0]
        assert len(hs) + c.vertex_facets[v].sum() >= 3
        assert np.all(np.abs(vals[v, hs]) <= 1e-9)


def test_zero_bias_network_4d():
    """d = 4: Euler's relation and sampling (the LP reference is too slow here); the cells' volumes
    tile the box and match Qhull's (the output vanishes on whole cells: the cuts recorded there bound
    none of them)."""
    net = zero_bias_net(4, (5, 4), 0)
    c = extract(net, (-1, 1))
    assert c.timings["engine"] == "regions"
    assert c.euler_characteristic == 1
    vol = c.region_volumes()
    np.testing.assert_allclose(vol.sum(), 16.0, rtol=1e-12)
    hulls = [ConvexHull(c.vertices[c.regions.vertices_of(r)]).volume for r in range(c.num_regions)]
    np.testing.assert_allclose(vol, hulls, rtol=0, atol=1e-12)
    got = {p.tobytes() for p in np.asarray(c.regions.patterns)}
    pats = jaxpoly.sample_regions(net, (-1, 1), 50_000, key=jax.random.PRNGKey(0), level_set=True)
    assert {p.tobytes() for p in np.asarray(pats)} <= got


def _assert_same_complex(a, b):
    assert a.f_vector == b.f_vector
    assert point_set(a.vertices) == point_set(b.vertices)
    assert {tuple(sorted(map(tuple, np.round(a.vertices[e], 8) + 0.0))) for e in a.edges} == \
        {tuple(sorted(map(tuple, np.round(b.vertices[e], 8) + 0.0))) for e in b.edges}
    assert {p.tobytes() for p in np.asarray(a.regions.patterns)} == {p.tobytes() for p in np.asarray(b.regions.patterns)}


@pytest.mark.parametrize("case", ["bunny2d", "random3d", "random4d"])
def test_engines_agree_on_generic_networks(case):
    """The two engines, independent from the first step on, give the same complex."""
    if case == "bunny2d":
        net, d = jaxpoly.load_npz(os.path.join(DATA, "2_2x50_relu_bunny.npz")), 2
        bounds = (-0.5, 0.5)
    else:
        d = 3 if case == "random3d" else 4
        rng = np.random.default_rng(d)
        sizes = [d, 6, 5, 1] if d == 3 else [d, 5, 4, 1]
        net = jaxpoly.from_arrays([rng.standard_normal((a, b)) for a, b in zip(sizes, sizes[1:])],
                                  [rng.standard_normal(b) * 0.3 for b in sizes[1:]])
        bounds = (-1, 1)
    a = extract(net, bounds)
    b = extract(net, bounds, engine="regions")
    assert a.timings["engine"] == "subdivision" and b.timings["engine"] == "regions"
    _assert_same_complex(a, b)
    if case == "bunny2d":
        assert b.f_vector == (289, 543, 255)
    ma, mb = a.level_set(), b.level_set()
    assert point_set(ma.vertices) == point_set(mb.vertices)
    assert segment_set(ma) == segment_set(mb)
    if d == 3:
        assert ma.num_faces == mb.num_faces
        fa = {tuple(sorted(point_set(ma.vertices[f]))) for f in ma.faces()}
        fb = {tuple(sorted(point_set(mb.vertices[f]))) for f in mb.faces()}
        assert fa == fb


def test_engines_agree_on_a_zero_bias_network_2d():
    """In 2D edge subdivision resolves cuts along edges itself; the engines agree on every face and on
    the level set (this one runs only along existing edges: subdivision once dropped it as a
    hyperplane that cuts nothing, leaving the mesh without segments)."""
    net = zero_bias_net(2, (8, 8), 0)
    a, b = extract(net, (-1, 1)), extract(net, (-1, 1), engine="regions")
    # every line passes through the origin: its hyperplane slots grow once, to what a stage needs
    # (they grew by 2 per overflow, 8 recompilations here)
    assert sum(s["regrows"] for s in a.timings["stages"]) <= 2
    _assert_same_complex(a, b)
    assert segment_set(a.level_set()) == segment_set(b.level_set())
    assert len(segment_set(b.level_set())) > 0


def test_save_load_round_trip(tmp_path):
    normals = np.array([[1, 0, 0], [0, 1, 0], [1, -1, 0], [0, 0, 1]], float)
    net = jaxpoly.from_arrays([normals.T, np.array([[1.0], [-1.0], [0.5], [0.2]])],
                              [np.array([0, 0, 0, -0.3]), np.array([-0.1])])
    c = extract(net, (-1, 1))
    assert c.timings["engine"] == "regions"
    c.save(tmp_path / "c.npz")
    d = jaxpoly.Complex.load(tmp_path / "c.npz")
    assert d.f_vector == c.f_vector
    assert np.array_equal(d.regions.patterns, c.regions.patterns)
    x = np.random.default_rng(0).uniform(-1, 1, (500, 3))
    assert np.array_equal(d.region_of(x), c.region_of(x))
    assert d.level_set().num_faces == c.level_set().num_faces > 0


@pytest.mark.slow  # (CI time: a regression guard for pytree copies, run with -m slow)
def test_copies_made_by_jax_keep_the_complex(tmp_path):
    """A Complex is a pytree: ``jax.tree.map`` and ``jax.device_put`` copies keep what is not a field
    too: the hash multipliers (extraction zeroes some), 2D edge flips, and a regions-engine complex's
    faces and cells (a zero-bias 2D net's copy failed an internal check on its regions; a 3D one's
    reported f-vector (123, 314, 290, 91), Euler characteristic 8)."""
    from jaxpoly.subdivision import hash_table

    rng = np.random.default_rng(3)
    sizes = [2, 6, 6, 1]
    flat = jaxpoly.from_arrays([rng.standard_normal((a, b)) for a, b in zip(sizes, sizes[1:])],
                               [np.zeros(6), np.zeros(6), 0.3 * rng.standard_normal(1)])
    a = extract(flat, (-1, 1))
    assert a.timings["engine"] == "subdivision" and not np.array_equal(a.hash_table, hash_table(len(a.hash_table)))
    normals = np.array([[1, 0, 0], [0, 1, 0], [1, -1, 0], [0, 0, 1]], float)  # three planes through a line
    b = extract(jaxpoly.from_arrays([normals.T, np.array([[1.0], [-1.0], [0.5], [0.2]])],
                                    [np.array([0, 0, 0, -0.3]), np.array([-0.1])]), (-1, 1))
    assert b.timings["engine"] == "regions"
    b.save(tmp_path / "b.npz")
    x = np.random.default_rng(1).uniform(-1, 1, (300, 3))
    for c in (a, b, jaxpoly.Complex.load(tmp_path / "b.npz")):
        for copy in (jax.tree.map(lambda v: v, c), jax.device_put(c)):
            assert copy.f_vector == c.f_vector and copy.euler_characteristic == 1
            assert np.array_equal(np.asarray(copy.regions.patterns), np.asarray(c.regions.patterns))
            assert np.array_equal(copy.region_of(x[:, : c.dim]), c.region_of(x[:, : c.dim]))
            assert copy.level_set().num_vertices == c.level_set().num_vertices


def test_auto_fallback_builds_the_exact_complex_under_a_coarse_rtol():
    """rtol=5e-3 merges near-misses until edge subdivision meets a cut it cannot pair; the regions engine
    it turns to computes the exact complex (its vertices merge at float64 roundoff, not at rtol, which
    once gave incidences that formed no complex and an internal error)."""
    rng = np.random.default_rng(2)
    sizes = [3, 5, 4, 1]
    net = jaxpoly.from_arrays([rng.standard_normal((a, b)) for a, b in zip(sizes, sizes[1:])],
                              [rng.standard_normal(b) * 0.3 for b in sizes[1:]])
    with pytest.raises(jaxpoly.DegenerateError):
        extract(net, (-1, 1), rtol=5e-3, engine="subdivision")
    c = extract(net, (-1, 1), rtol=5e-3)
    assert c.timings["engine"] == "regions"
    assert c.f_vector == extract(net, (-1, 1)).f_vector


def test_regions_that_do_not_fit_raise_degenerate_error():
    """In a box 1e12 times larger than where this network's hyperplanes meet, edge subdivision meets an
    unpairable cut and the regions engine's box-relative tolerances lose regions: engine='auto' raises a
    DegenerateError giving both reasons and the box, not an internal error."""
    rng = np.random.default_rng(7)
    net = jaxpoly.from_arrays([rng.standard_normal((2, 4)), rng.standard_normal((4, 3)), rng.standard_normal((3, 1))],
                              [rng.standard_normal(4), rng.standard_normal(3), rng.standard_normal(1)])
    with pytest.raises(jaxpoly.DegenerateError, match="regions engine could not assemble") as info:
        with pytest.warns(jaxpoly.PrecisionWarning):  # thin cells and unlisted probes, then the error
            extract(net, (-1e12, 1e12))
    assert "edge subdivision met" in str(info.value) and "1e+12" in str(info.value)


@pytest.mark.parametrize("corner,size", [(3.0, 1e-6), (1e3, 1e-2)])
def test_a_small_box_far_from_the_origin(corner, size):
    """A zero-bias network (hyperplanes through the origin, two along the box's edge x = y) in a small
    box far away: the box's corner is on planes only up to the round-off of coordinates ~ ``corner``,
    which once merged nothing there (tolerances 1e-10 of the coordinates, 1e-4 of this box, and none for
    the values' round-off) and raised DegenerateError. Reference: the same network on ``[0, 1]^3`` with
    ``x = corner + size u`` folded into its first layer, whose vertices map back onto these."""
    W0 = np.array([[1, 0, 0, -1, 0, 1, -1, 1], [1, 0, 0, 1, 0, 1, -1, -1], [0, -1, 1, -1, 0, -1, -1, 0]], float)
    W1 = np.array([[0, 1, -1, -1, 0, 1, -1, 1]], float).T
    net = jaxpoly.from_arrays([W0, W1], [np.zeros(8), np.zeros(1)])
    ref = extract(jaxpoly.from_arrays([size * W0, W1], [corner * W0.sum(axis=0), np.zeros(1)]), (0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxpoly.PrecisionWarning)  # (3, 3 + 1e-6): far for its size
        c = extract(net, (corner, corner + size))
    assert c.timings["engine"] == "regions"
    assert c.f_vector == ref.f_vector == (9, 19, 15, 4)
    assert c.euler_characteristic == 1
    got = np.array(sorted(map(tuple, np.round((np.asarray(c.vertices) - corner) / size, 6))))
    want = np.array(sorted(map(tuple, np.round(np.asarray(ref.vertices), 6))))
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(np.sort(c.region_volumes()) / size**3, np.sort(ref.region_volumes()), rtol=1e-6)


def test_bad_engine():
    with pytest.raises(jaxpoly.InvalidArgumentError, match="engine"):
        extract(lines_net([[1, 0]], [0]), (-1, 1), engine="lp")
