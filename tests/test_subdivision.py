"""Edge subdivision (`jaxpoly.extract`) against independent references: the bunny reference counts,
closed forms for generic arrangements, Euler's relation, hand-counted degenerate arrangements,
vertex equations, sampling, and a scipy LP reference."""

import os
from math import comb

import jax
import numpy as np
import pytest

import jaxpoly
from jaxpoly import extract

from conftest import DATA

# ../shared/models/README.md (reference PyTorch implementation, identical in float32 and float64).
BUNNY = {
    "2_2x50_relu_bunny.npz": ((289, 543, 255), (10, 9)),
    "2_2x100_relu_bunny.npz": ((3203, 6287, 3085), (117, 114)),
    "2_4x32_relu_bunny.npz": ((1284, 2507, 1224), (41, 38)),
    "3_3x16_relu_bunny.npz": ((27562, 80656, 78682, 25587), (2878, 5751)),
}


def lines_net(normals, offsets):
    """A one-hidden-layer net whose hyperplanes are ``normals @ x + offsets = 0``."""
    normals = np.asarray(normals, float)
    n = len(normals)
    return jaxpoly.from_arrays([normals.T, np.ones((n, 1))], [np.asarray(offsets, float), np.zeros(1)])


def random_net(rng, d, widths, out=1):
    sizes = [d, *widths, out]
    Ws = [rng.normal(size=(a, b)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(size=b) * 0.3 for b in sizes[1:]]
    return jaxpoly.from_arrays(Ws, bs)


@pytest.mark.parametrize("name", list(BUNNY))
def test_bunny_counts_match_reference(name):
    """Vertex/edge/face counts and level-set counts equal the reference implementation's."""
    net = jaxpoly.load_npz(os.path.join(DATA, name))
    c = extract(net, (-0.5, 0.5))
    f, ls = BUNNY[name]
    assert c.f_vector == f
    assert c.euler_characteristic == 1
    mesh = c.level_set()
    assert (mesh.num_vertices, mesh.num_edges) == ls
    if c.dim == 3:
        assert mesh.num_faces == 2874
    assert len(c.regions) == f[-1]


@pytest.mark.parametrize("d,n", [(1, 6), (2, 9), (3, 8), (4, 7), (5, 6)])
def test_generic_single_layer_closed_form(d, n):
    """n generic hyperplanes with all intersections inside the box: sum_{i<=d} C(n, i) regions."""
    rng = np.random.default_rng(d)
    A = rng.normal(size=(n, d))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    c = extract(lines_net(A, rng.uniform(-0.1, 0.1, n)), (-100, 100), level_set=False)
    assert c.num_regions == sum(comb(n, i) for i in range(d + 1))
    assert c.euler_characteristic == 1


@pytest.mark.parametrize("d", [2, 3, 4])
def test_interior_vertices_have_degree_2d(d):
    """In a generic complex every vertex off the box boundary meets 2d edges."""
    rng = np.random.default_rng(10 + d)
    c = extract(random_net(rng, d, [6, 5]), (-1, 1))
    deg = np.bincount(c.edges.ravel(), minlength=c.num_vertices)
    interior = ~np.any(c.vertex_facets, axis=1)
    assert interior.sum() > 0
    assert np.all(deg[interior] == 2 * d)
    assert c.euler_characteristic == 1


@pytest.mark.parametrize("d", [2, 3, 4])
def test_vertices_solve_their_hyperplane_equations(d):
    """Each vertex lies in the box and on its d defining hyperplanes (to 1e-9), evaluated through the
    network at the vertex itself."""
    rng = np.random.default_rng(20 + d)
    net = random_net(rng, d, [5, 5])
    c = extract(net, (-1, 1))
    assert np.all(c.vertices >= -1 - 1e-12) and np.all(c.vertices <= 1 + 1e-12)
    hv = np.asarray(net.hyperplane_values(c.vertices))
    vals = np.concatenate([hv, np.asarray(net(c.vertices))], axis=1)
    z = c.vertex_zeros
    assert np.all(np.sum(z >= 0, axis=1) >= d)
    for k in range(z.shape[1]):
        ids = z[:, k]
        facet = (ids >= 0) & (ids < 2 * d)
        axis, side = ids[facet] // 2, ids[facet] % 2
        bound = np.where(side == 0, -1.0, 1.0)
        assert np.allclose(c.vertices[facet, axis], bound, atol=1e-12)
        hyper = ids >= 2 * d
        err = np.abs(vals[np.nonzero(hyper)[0], ids[hyper] - 2 * d])
        assert err.max(initial=0) < 1e-9


@pytest.mark.parametrize("d", [2, 3])
def test_sampled_patterns_are_regions(d):
    """Every activation pattern seen by random sampling is one of the extracted cells, and every cell's
    witness has the cell's pattern; region_of finds the cell of each sample."""
    rng = np.random.default_rng(30 + d)
    net = random_net(rng, d, [8, 8])
    c = extract(net, (-1, 1))
    cells = c.regions
    X = rng.uniform(-1, 1, size=(20000, d))
    pats = np.concatenate([np.asarray(net.pattern(X)), np.asarray(net(X)) > 0], axis=1)
    known = {p.tobytes() for p in cells.patterns}
    assert all(p.tobytes() in known for p in np.unique(pats, axis=0))
    wp = np.concatenate([np.asarray(net.pattern(cells.witnesses)), np.asarray(net(cells.witnesses)) > 0], axis=1)
    assert np.array_equal(wp, cells.patterns)
    idx = c.region_of(X)
    assert np.all(idx >= 0)
    assert np.array_equal(cells.patterns[idx], pats)
    assert len(np.unique(cells.patterns, axis=0)) == len(cells)


# -- degenerate arrangements: counts by hand -------------------------------------------------------


def test_four_lines_through_a_common_point():
    """x=0, y=0, x-y=0, x+y=1 in [-2,2]^2: three lines meet at the origin, so 10 regions, not 11.
    V = 4 corners + 4 (x=0, y=0 on the boundary) + 2 (x+y=1 on the boundary) + 4 interior = 14
    (x-y=0 ends in two corners); Euler gives E = 14 + 10 - 1 = 23."""
    c = extract(lines_net([[1, 0], [0, 1], [1, -1], [1, 1]], [0, 0, 0, -1]), (-2, 2), level_set=False)
    assert c.f_vector == (14, 23, 10)
    origin = np.nonzero(np.all(np.abs(c.vertices) < 1e-12, axis=1))[0]
    assert len(origin) == 1
    assert np.sum(c.edges == origin[0]) == 6  # three lines through it


def test_duplicated_and_opposite_neurons_change_nothing():
    """A neuron repeated (scaled by 2, or negated) adds no region and no vertex."""
    base = extract(lines_net([[1, 0], [0, 1], [1, 1]], [0, 0, -1]), (-2, 2), level_set=False)
    dup = extract(lines_net([[1, 0], [0, 1], [2, 0], [-1, 0], [1, 1]], [0, 0, 0, 0, -1]), (-2, 2), level_set=False)
    assert dup.f_vector == base.f_vector == (13, 19, 7)
    assert dup.euler_characteristic == 1
    assert len(dup.regions) == 7


def test_hyperplane_on_box_facet_dead_and_zero_neurons():
    """x = 2 on the facet of [-2,2]^2, a neuron with zero weights and bias, and one that never changes
    sign in the box leave the two axes' 4 regions."""
    c = extract(lines_net([[1, 0], [0, 1], [1, 0], [0, 0], [1, 0.5]], [0, 0, -2, 0, 10]), (-2, 2), level_set=False)
    assert c.f_vector == (9, 12, 4)
    # dead neurons vanish at every vertex but take no hyperplane slot there (the slots are not grown)
    c = extract(lines_net([[1, 0], [0, 1], [0, 0], [0, 0], [0, 0]], [0, 0, 0, 0, 0]), (-2, 2), level_set=False)
    assert c.f_vector == (9, 12, 4) and c.timings["stages"][0]["capacity"][4] == 2


def test_cells_thinner_than_float64_spacing_in_a_far_box_are_merged_with_a_warning():
    """Parallel lines 3e-12 apart (in a box of half-width 1e-3 centred at 1e5, where float64's spacing is
    1.5e-11) bound slabs with no float64 point inside: their cells' witnesses cannot be placed, and
    ``regions`` raised an internal error ("Please report"), then (12-07) InvalidBoundsError. Now the
    hyperplanes' values there are within their round-off (1.7e-7 of their range: the offsets cancel
    terms of 1e8), so the slabs merge, with a warning to translate the input, and the complex is
    consistent. Centred at the origin the same arrangement resolves every slab (more cells)."""
    rng = np.random.default_rng(0)
    N = rng.standard_normal((8, 2))
    N /= np.linalg.norm(N, axis=1, keepdims=True)
    off = 0.25 * rng.standard_normal(8)
    A = np.concatenate([N, N[4:]])
    o = np.concatenate([off, off[4:] + np.array([1e-5, 1e-7, 1e-8, 3e-9])])
    h, out = 1e-3, rng.standard_normal((12, 1))

    def net_at(c):
        return jaxpoly.from_arrays([(A / h).T, out], [o - (c / h) * A.sum(axis=1), np.zeros(1)])

    c = 1e5
    with pytest.warns(jaxpoly.PrecisionWarning, match="resolves some hyperplanes only to 1.7e-07.*Translate the input"):
        C = extract(net_at(c), (c - h, c + h), level_set=False)
    assert len(C.regions.witnesses) == C.num_regions and C.euler_characteristic == 1
    assert np.array_equal(C.region_of(C.regions.witnesses), np.arange(C.num_regions))
    C0 = extract(net_at(0.0), (-h, h), level_set=False)
    assert C0.num_regions > C.num_regions and len(C0.regions.witnesses) == C0.num_regions
    assert C0.timings["round_off"] < 1e-14


def test_parallel_and_corner_lines():
    """Three parallel lines and one across give 8 regions; both diagonals of the square end in its
    corners and give 4."""
    c = extract(lines_net([[1, 0], [1, 0], [1, 0], [0, 1]], [0, -0.5, 0.5, 0]), (-2, 2), level_set=False)
    assert c.num_regions == 8
    c = extract(lines_net([[1, -1], [1, 1]], [0, 0]), (-2, 2), level_set=False)
    assert c.f_vector == (5, 8, 4)


@pytest.mark.parametrize("d,n", [(2, 6), (3, 5)])
def test_central_arrangement_fan(d, n):
    """n generic hyperplanes through the origin (zero biases): a central arrangement has
    2 * sum_{i<d} C(n-1, i) regions."""
    rng = np.random.default_rng(40 + d)
    c = extract(lines_net(rng.normal(size=(n, d)), np.zeros(n)), (-1, 1), level_set=False)
    assert c.num_regions == 2 * sum(comb(n - 1, i) for i in range(d))
    assert c.euler_characteristic == 1


def test_leaky_relu_single_layer_same_partition_as_relu():
    """With one hidden layer, leaky-ReLU (breakpoint at 0) cuts exactly the ReLU hyperplanes."""
    rng = np.random.default_rng(5)
    Ws, bs = [rng.normal(size=(2, 7)), rng.normal(size=(7, 1))], [rng.normal(size=7) * 0.3, np.full(1, 0.1)]
    a = extract(jaxpoly.from_arrays(Ws, bs), (-1, 1), level_set=False)
    b = extract(jaxpoly.from_arrays(Ws, bs, activation="leaky_relu", negative_slope=0.1), (-1, 1), level_set=False)
    assert a.f_vector == b.f_vector
    assert np.allclose(np.sort(a.vertices, axis=0), np.sort(b.vertices, axis=0))


@pytest.mark.parametrize("act", ["leaky_relu", "hard_tanh"])
def test_deep_non_relu_activations_match_lp_reference(act):
    """Deeper layers bend differently under leaky-ReLU / hard-tanh; the f-vector still matches the
    LP reference, which handles any piecewise-linear activation."""
    from reference import lp_f_vector

    rng = np.random.default_rng(7)
    Ws = [rng.normal(size=(2, 5)), rng.normal(size=(5, 4)) / 2, rng.normal(size=(4, 1))]
    bs = [rng.normal(size=5) * 0.3, rng.normal(size=4) * 0.3, np.full(1, 0.1)]
    net = jaxpoly.from_arrays(Ws, bs, activation=act, negative_slope=0.1)
    c = extract(net, (-1, 1))
    assert c.f_vector == lp_f_vector(net, -np.ones(2), np.ones(2), level_set=True)


def test_residual_network():
    """A residual block h = relu(x + W2 relu(W1 x)) (a stage reading the input and stage 1): Euler holds
    and every sampled point falls in a cell whose pattern it has."""
    rng = np.random.default_rng(6)
    s1 = jaxpoly.Stage((rng.normal(size=(2, 6)),), rng.normal(size=6) * 0.3, (0,), jaxpoly.relu())
    s2 = jaxpoly.Stage((np.eye(2), rng.normal(size=(6, 2))), rng.normal(size=2) * 0.3, (0, 1), jaxpoly.relu())
    out = jaxpoly.Stage((rng.normal(size=(2, 1)), rng.normal(size=(2, 1))), np.zeros(1), (0, 2), jaxpoly.identity())
    net = jaxpoly.Network((s1, s2), out)
    c = extract(net, (-1, 1))
    assert c.euler_characteristic == 1
    X = rng.uniform(-1, 1, size=(5000, 2))
    idx = c.region_of(X)
    assert np.all(idx >= 0)
    assert np.array_equal(c.regions.patterns[idx, :-1], np.asarray(net.pattern(X)))


def test_hard_tanh_two_hyperplanes_per_neuron():
    """hard_tanh on one layer: each neuron gives the two parallel lines z = -1 and z = 1."""
    normals = np.array([[1.0, 0.0], [0.0, 1.0]])
    net = jaxpoly.from_arrays([normals.T * 2, np.ones((2, 1))], [np.zeros(2), np.zeros(1)], activation="hard_tanh")
    c = extract(net, (-2, 2), level_set=False)
    assert c.num_regions == 9  # x = ±1/2 and y = ±1/2: a 3x3 grid


def test_float32_matches_on_bunny():
    """float32 reproduces the reference counts on a bunny (they are identical in the reference too), and
    its cells' volumes (float64, from float32 vertices) those of the float64 complex to float32's
    round-off."""
    net = jaxpoly.load_npz(os.path.join(DATA, "2_2x50_relu_bunny.npz"))
    c32, c64 = extract(net, (-0.5, 0.5), dtype=np.float32), extract(net, (-0.5, 0.5))
    assert c32.f_vector == (289, 543, 255)
    v32 = c32.region_volumes()[c32.region_of(c64.regions.witnesses)]
    assert v32.dtype == np.float64
    np.testing.assert_allclose(v32, c64.region_volumes(), rtol=0, atol=1e-6)


@pytest.mark.slow  # (growth: also test_split_overflow_in_3d_grows_instead_of_reporting_degeneracy)
def test_small_capacity_grows_without_dropping():
    """Starting from a tiny capacity forces several regrowths; the result is unchanged."""
    net = jaxpoly.load_npz(os.path.join(DATA, "2_2x50_relu_bunny.npz"))
    assert extract(net, (-0.5, 0.5), capacity=64).f_vector == (289, 543, 255)


def test_split_overflow_in_3d_grows_instead_of_reporting_degeneracy():
    """In 3D a step whose splits overflow sees a truncated list of crossing points, so its pairing check
    fails too; that must trigger growth, not a DegenerateError (seen on the 8x32 bunny's layer 5). From
    2,048 edges the second stage's first step overflows its splits with a failed pairing check (flags 68;
    from 64 the same happens later, after four more regrowths and their compilations)."""
    net = jaxpoly.load_npz(os.path.join(DATA, "3_3x16_relu_bunny.npz"))
    c = extract(net, (-0.5, 0.5), capacity=2048)
    assert c.f_vector == (27562, 80656, 78682, 25587)
    assert sum(s["regrows"] for s in c.timings["stages"]) >= 3


def test_output_vanishing_on_a_region_2d():
    """y = relu(x1) - relu(x2) with zero output bias vanishes on the whole negative quadrant and changes
    sign elsewhere. The level set is the boundary of {y > 0}: the segment x1 = 0, x2 < 0 (between the
    zero quadrant and y = x1 > 0) and the diagonal of the positive quadrant: 5 regions (hand count).
    An output that only touches zero (relu(x1) + relu(x2)) cuts nothing."""
    W = np.eye(2)
    cross = jaxpoly.from_arrays([W, np.array([[1.0], [-1.0]])], [np.zeros(2), np.zeros(1)])
    c = extract(cross, (-1, 1))
    assert c.f_vector == (9, 13, 5) and c.euler_characteristic == 1  # 4 corners, 4 axis ends, origin
    mesh = c.level_set()
    segs = {tuple(sorted(map(tuple, np.round(mesh.vertices[s], 12)))) for s in mesh.edges}
    assert segs == {((0.0, -1.0), (0.0, 0.0)), ((0.0, 0.0), (1.0, 1.0))}
    # every region's pattern (x1 > 0, x2 > 0, y > 0), and the zero quadrant's points find their region
    pats = {tuple(p) for p in np.asarray(c.regions.patterns)}
    assert pats == {(False, False, False), (True, False, True), (False, True, False), (True, True, True),
                    (True, True, False)}
    assert np.all(c.region_of([[-0.5, -0.5], [0.5, -0.5], [0.6, 0.2], [0.2, 0.6], [-0.5, 0.5]]) >= 0)
    assert extract(cross, (-1, 1), level_set=False).num_regions == 4
    touch = jaxpoly.from_arrays([W, np.ones((2, 1))], [np.zeros(2), np.zeros(1)])
    assert extract(touch, (-1, 1)).num_regions == 4


def _mesh_sets(mesh):
    """A mesh as engine-independent sets: rounded points, segments and polygons (as point sets)."""
    def pts(x):
        return tuple(sorted(map(tuple, np.round(x, 9) + 0.0)))
    return set(pts(mesh.vertices)), {pts(mesh.vertices[e]) for e in mesh.edges}, {pts(mesh.vertices[f]) for f in mesh.faces()}


@pytest.mark.parametrize("d", [pytest.param(1, marks=pytest.mark.slow), 2, 3, pytest.param(4, marks=pytest.mark.slow)])
def test_level_set_on_a_hidden_plane_is_the_boundary_of_positive_output(d, tmp_path):
    """y = relu(x0 - 0.2) vanishes on the whole region x0 <= 0.2, and its zero set's boundary lies on the
    hidden plane x0 = 0.2. The level set is the boundary of {y > 0}: that plane's piece in [-1, 1]^d
    (2^(d-1) corners, (d-1) 2^(d-2) edges, in 3D one square facing +x0), with every vertex on y = 0 and
    its differentiable positions. y = -relu(x0 - 0.2) is positive nowhere, so its level set is empty, as
    is one on a box facet (y = x0 - 1 or 1 - x0: a face with a single cell). Edge subdivision and the
    regions engine agree on all of these (checked in 2D and 3D), and on two planes meeting inside
    (y = relu(z0) + relu(z1)); subdivision once returned the zero region's vertices without edges or
    polygons in 3D."""
    # one architecture (d -> 2 -> 1; a dead second neuron where one suffices) for one compilation
    e0 = np.c_[np.eye(d)[:, :1], np.zeros((d, 1))]
    W = np.random.default_rng(81).standard_normal((d, 2))

    def net_of(W0, b0, w, b):
        return jaxpoly.from_arrays([W0, np.array(w, float).reshape(2, 1)], [np.array(b0, float), np.array([b], float)])

    nets = {
        "relu": net_of(e0, [-0.2, 0], [1, 0], 0),  # relu(x0 - 0.2)
        "neg": net_of(e0, [-0.2, 0], [-1, 0], 0),  # -relu(x0 - 0.2)
        "facet": net_of(e0, [5, 0], [1, 0], -6),  # x0 - 1
        "facet_inside": net_of(e0, [5, 0], [-1, 0], 6),  # 1 - x0
        "two": net_of(W, [0.1, -0.2], [1, 1], 0),  # relu(z0) + relu(z1)
    }
    for name, net in nets.items():
        c = extract(net, (-1, 1))
        assert c.timings["engine"] == "subdivision"
        mesh = c.level_set()
        if d in (2, 3):  # (the regions engine's compilations cost ~6 s per dimension)
            assert _mesh_sets(mesh) == _mesh_sets(extract(net, (-1, 1), engine="regions").level_set()), name
        if name == "relu":
            assert mesh.num_vertices == 2 ** (d - 1) and np.allclose(mesh.vertices[:, 0], 0.2)
            assert mesh.num_edges == (d - 1) * 2 ** max(d - 2, 0) * (d > 1)
            if d == 3:
                assert mesh.num_faces == 1
                tri = mesh.vertices[mesh.triangles[0]]
                assert np.cross(tri[1] - tri[0], tri[2] - tri[0])[0] > 0  # facing where y increases
        elif name == "two":
            assert mesh.num_vertices > 0 and mesh.num_faces == (2 if d == 3 else 0)
        else:
            assert mesh.num_vertices == mesh.num_edges == mesh.num_faces == 0, name
        if mesh.num_vertices:
            assert np.abs(np.asarray(net(mesh.vertices))).max() <= 1e-12
            if d < 4:
                assert np.abs(np.asarray(jaxpoly.level_set_positions(net, c)) - mesh.vertices).max() <= 1e-12
        if d == 3:
            mesh.save(tmp_path / f"{name}.obj")  # empty meshes too (once refused as "line segments")
            assert (tmp_path / f"{name}.obj").read_text().startswith("#")
            mesh.save(tmp_path / f"{name}.vtk")  # empty ones readable too (meshio's own were not)
            import meshio

            assert len(meshio.read(tmp_path / f"{name}.vtk").points) == mesh.num_vertices
        if d == 1 and mesh.num_vertices:  # points only: VTK files hold them as vertex cells (no cells: unreadable)
            import meshio

            for ext in (".vtk", ".vtu"):
                mesh.save(tmp_path / f"{name}{ext}")
                assert np.array_equal(meshio.read(tmp_path / f"{name}{ext}").points[:, :1], mesh.vertices)


def test_hyperplanes_meeting_within_round_off_in_a_tiny_box():
    """z1 = relu(1 + x0) - 1 = x0 and z2 = relu(1 - x0) - 1 = -x0 vanish on the same point (line), but
    their values carry round-off of the O(1) terms they cancel (~2e-16), above rtol times their scale in
    a box of 1e-3 or 1e-6 (1e-16, 1e-19). Edge subdivision cut them apart, a sliver of 1e-16 between
    them with a pattern of its own (3 regions in 1D instead of 2; found by fuzzing); values within their
    round-off bound are zero now. Both engines and the LP reference agree, without warnings (the
    completeness probe once saw the round-off patterns beside the point as unlisted regions)."""
    import warnings

    from reference import lp_f_vector

    for d in (1, 2):
        W0 = np.zeros((d, d + 1))
        W0[0, :2] = [1.0, -1.0]
        W1 = np.zeros((d + 1, 2))
        W1[0, 0] = W1[1, 1] = 1.0
        if d == 2:  # x1 = 0 and a generic line
            W0[1, 2], W1[2] = 1.0, [0.3, 0.2]
        net = jaxpoly.from_arrays([W0, W1, np.ones((2, 1))], [np.r_[1.0, 1.0, np.zeros(d - 1)], -np.ones(2), [-1e-4]])
        for w in (1e-3, 1e-6):
            box = (-w * np.ones(d), w * np.ones(d))
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                c = extract(net, box, level_set=False)
                r = jaxpoly.enumerate_regions(net, box)
            assert c.f_vector == lp_f_vector(net, *box, level_set=False) == ((3, 2) if d == 1 else (10, 14, 5))
            assert len(r) == c.num_regions and c.timings["near_misses"] == 0
    # every second-layer plane through x = 0 (b1 = -b0 W1 cancels terms of 1 to values of 1e-7), and an
    # output that vanishes for x < 0 by cancellation (its error is carried in from the second layer):
    # 5 cells and "witnesses do not reproduce the cell's sign vector" before
    W1 = np.array([[0.0, 1, -2, 1], [-1, 0, 1, -1], [2, -2, 1, -1], [2, -1, 2, 2]])
    net = jaxpoly.from_arrays([np.array([[-1.0, -1, 2, -1]]), W1, np.array([[-1.0], [-1], [0], [1]])],
                              [np.ones(4), -np.ones(4) @ W1, np.zeros(1)])
    with pytest.warns(jaxpoly.PrecisionWarning, match="resolves some hyperplanes only to 1.6e-07"):
        c = extract(net, (-1e-7, 1e-7))
    assert c.f_vector == (3, 2) and np.array_equal(c.region_of(c.regions.witnesses), [0, 1])


def test_near_misses_of_a_huge_box_are_reported():
    """x = 0, y = 0 and x + y = 1e-4 bound a triangle: 7 regions. The tolerance rule is relative to each
    hyperplane's largest value over the box (~2e10 in [-1e10, 1e10]^2, so 1e-13 of it is 2e-3 > 1e-4): the
    triangle's corners merge into one vertex and the count drops to 6. That is logged as a warning naming
    the box, and a smaller rtol recovers the triangle."""
    net = lines_net([[1, 0], [0, 1], [1, 1]], [0, 0, -1e-4])
    assert extract(net, (-1e6, 1e6), level_set=False).num_regions == 7  # no warning (they are errors here)
    with pytest.warns(jaxpoly.PrecisionWarning) as caught:
        c = extract(net, (-1e10, 1e10), level_set=False)
    assert c.num_regions == 6 and c.timings["near_misses"] > 0
    assert len(caught) == 1 and "1e+10" in str(caught[0].message) and "near-misses" in str(caught[0].message)
    assert extract(net, (-1e10, 1e10), level_set=False, rtol=1e-15).num_regions == 7


def test_passes_over_stage_values_are_exact_and_read_them_block_by_block():
    """The near-miss pass counts exactly the valid entries in the band (against NumPy, padding rows and
    columns excluded), the zero-slot pass finds the most slots a vertex needs, the forward pass gives the
    network's values, and none needs a temporary the size of the stage's values: whole-array versions
    kept 1.5x, 0.8x and 1x their size (+3 GB and +6 s on a 2D net with two layers of 512)."""
    from jaxpoly import extraction

    rng = np.random.default_rng(0)
    V, W, nv, width = 1 << 16, 256, 60_001, 200
    scales = rng.uniform(0.5, 2.0, W)
    unit = rng.choice([0.0, 1e-3, 1e-12, 1e-14, 1e-16], size=(V, W), p=[0.2, 0.5, 0.1, 0.1, 0.1])
    vals = unit * scales * rng.choice([-1.0, 1.0], size=(V, W))
    noise = np.where(np.arange(W) % 7 == 0, 1e-12 * scales, 0.0)  # (round-off above rtol: no band there)
    with jax.enable_x64(True):
        args = (jax.numpy.asarray(vals), jax.numpy.asarray(scales), jax.numpy.asarray(noise), jax.numpy.int32(nv),
                jax.numpy.int32(width), jax.numpy.float64(1e-13), jax.numpy.float64(1e-15))
        count, worst = extraction._near_misses(*args)
        temp = extraction._near_misses.lower(*args).compile().memory_analysis().temp_size_in_bytes
    a = np.abs(vals[:nv, :width]) / scales[:width]
    band = (a <= np.maximum(1e-13, noise[:width] / scales[:width])) & (a > np.maximum(1e-15, noise[:width] / scales[:width]))
    assert int(count) == band.sum() > 0 and np.isclose(float(worst), a[band].max(), rtol=1e-12)
    assert temp < vals.nbytes / 4, temp / vals.nbytes
    # the zero-slot count at a stage's start: the same kind of pass (it held 0.8x the values)
    vz = rng.integers(-1, 3, size=(V, 4)).astype(np.int32)
    scales[3] = 0.0  # a dead column takes no slot
    with jax.enable_x64(True):
        zargs = (jax.numpy.asarray(vz), jax.numpy.asarray(vals), jax.numpy.asarray(scales), jax.numpy.asarray(noise),
                 jax.numpy.int32(nv))
        most = extraction._zero_slots_needed(*zargs, width=width, rtol=1e-13)
        temp = extraction._zero_slots_needed.lower(*zargs, width=width, rtol=1e-13).compile().memory_analysis()
    tol = np.maximum(1e-13 * scales[:width], noise[:width])
    on = (np.abs(vals[:nv, :width]) <= tol) & (scales[:width] > noise[:width])
    assert int(most) == ((vz[:nv] >= 0).sum(1) + on.sum(1)).max()
    assert temp.temp_size_in_bytes < vals.nbytes / 4
    # a stage's values by a forward pass (residual networks, first stages): the network's own values and
    # column maxima on the valid rows, written into one buffer (a whole-array pass held another copy)
    net = jaxpoly.from_arrays([rng.normal(size=(2, 64)), rng.normal(size=(64, 64)), rng.normal(size=(64, 1))],
                              [rng.normal(size=64), rng.normal(size=64), np.zeros(1)])
    x = rng.normal(size=(V, 2))
    with jax.enable_x64(True):
        for stage in (0, 1, None):
            xargs = (net, jax.numpy.asarray(x), jax.numpy.int32(nv), stage, 80)
            got, scale, noise = extraction._values_from_input(*xargs)
            temp = extraction._values_from_input.lower(*xargs).compile().memory_analysis().temp_size_in_bytes
            want = np.asarray(net(x[:nv]) if stage is None else net.stage_hyperplane_values(x[:nv], stage))
            k = want.shape[1]
            err = np.asarray(net.hyperplane_values_and_round_off(x[:nv], level_set=True)[1])
            err = err[:, -1:] if stage is None else err[:, 64 * stage : 64 * (stage + 1)]  # their round-off
            np.testing.assert_allclose(np.asarray(noise)[:k], err.max(0), rtol=1e-12)
            np.testing.assert_allclose(np.asarray(got)[:nv, :k], want, rtol=1e-12, atol=1e-12)
            assert not np.asarray(got)[:nv, k:].any()
            np.testing.assert_allclose(np.asarray(scale)[:k], np.abs(want).max(0), rtol=1e-12)
            assert temp < 0.8 * got.nbytes, (stage, temp / got.nbytes)  # (a few blocks: values, round-off; 1x: a copy)


@pytest.mark.parametrize("widths,seed", [pytest.param((4, 4), 0, marks=pytest.mark.slow),
                                         pytest.param((4, 4), 3, marks=pytest.mark.slow),
                                         pytest.param((8, 8), 0, marks=pytest.mark.slow),
                                         pytest.param((6, 6, 6), 3, marks=pytest.mark.slow)])
def test_zero_bias_networks_2d(widths, seed):
    """Freshly initialised networks have zero biases: deep neurons (and the output) vanish on whole
    cells where their inputs are all off. The complex agrees with the LP search region by region, is a
    complex in the box (Euler 1), certifies its regions, and every sampled pattern is one of them."""
    rng = np.random.default_rng(seed)
    sizes = [2, *widths, 1]
    net = jaxpoly.from_arrays([rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(sizes, sizes[1:])],
                              [np.zeros(b) for b in sizes[1:]])
    c = extract(net, (-1, 1))
    assert c.euler_characteristic == 1
    got = {p.tobytes() for p in np.asarray(c.regions.patterns)}
    want = {p.tobytes() for p in np.asarray(jaxpoly.enumerate_regions(net, (-1, 1), level_set=True).patterns)}
    assert got == want
    pats = jaxpoly.sample_regions(net, (-1, 1), 20_000, key=jax.random.PRNGKey(seed), level_set=True)
    assert {p.tobytes() for p in np.asarray(pats)} <= got
    x = np.random.default_rng(seed).uniform(-1, 1, (2000, 2))
    assert np.all(c.region_of(x) >= 0)
    mesh = c.level_set()
    assert np.abs(np.asarray(net(mesh.vertices))).max() <= 1e-9
    # the differentiable positions reproduce the vertices, and the combinatorics hold at these weights
    assert np.abs(np.asarray(jaxpoly.vertex_positions(net, c)) - c.vertices).max() <= 1e-10
    assert not jaxpoly.is_stale(net, c)


# -- bad input ---------------------------------------------------------------------------------------


def test_bad_bounds_and_networks():
    net = jaxpoly.load_model("bunny-2d")
    with pytest.raises(jaxpoly.InvalidBoundsError, match="inverted"):
        extract(net, (0.5, -0.5))
    with pytest.raises(jaxpoly.InvalidBoundsError, match="finite"):
        extract(net, (-np.inf, 0.5))
    with pytest.raises(jaxpoly.InvalidBoundsError, match="shape"):
        extract(net, (np.zeros(3), np.ones(3)))
    with pytest.raises(jaxpoly.InvalidBoundsError):
        extract(net, (1.0,))
    bad = jaxpoly.from_arrays([np.ones((2, 3)), np.ones((3, 2))], [np.zeros(3), np.zeros(2)])
    with pytest.raises(jaxpoly.InvalidNetworkError, match="scalar output"):
        extract(bad, (-1, 1))
    nan_net = jax.tree_util.tree_map(lambda a: np.full_like(a, np.nan), net)
    with pytest.raises(jaxpoly.InvalidNetworkError, match="NaN"):
        extract(nan_net, (-1, 1))
    with pytest.raises(jaxpoly.CapacityError, match="max_vertices"):
        extract(net, (-0.5, 0.5), capacity=64, max_vertices=100)
    with pytest.raises(jaxpoly.CapacityError, match="max_memory"):
        extract(net, (-0.5, 0.5), capacity=64, max_memory=100_000)
    for kwargs in ({"capacity": 0}, {"max_vertices": -5}, {"max_memory": 1.5}, {"rtol": np.nan},
                   {"dtype": np.int32}, {"slice": (np.zeros(2),)}):
        with pytest.raises(jaxpoly.InvalidArgumentError):
            extract(net, (-0.5, 0.5), **kwargs)


def test_memory_estimate_covers_the_state():
    """The memory guard's estimate is at least the bytes of the arrays it guards."""
    from jaxpoly import subdivision as sd
    from jaxpoly.extraction import _state_bytes

    cap = sd.Capacity(vertices=4096, edges=12288, splits=512, zero_edges=64, zero_slots=3)
    state = sd.init_box(np.zeros(3), np.ones(3), sd.hash_table(20), cap, np.float64)
    vals = np.zeros((cap.vertices, 16))
    actual = sum(np.asarray(a).nbytes for a in state) + vals.nbytes
    assert actual <= _state_bytes(cap, 3, 16, 8) <= 3 * actual


def test_save_load_roundtrip(tmp_path):
    net = jaxpoly.load_model("bunny-2d")
    c = extract(net, (-0.5, 0.5))
    c.save(tmp_path / "c.npz")
    c2 = jaxpoly.Complex.load(tmp_path / "c.npz")
    assert c2.f_vector == c.f_vector
    assert np.array_equal(c2.vertices, c.vertices)
    assert np.array_equal(c2.regions.patterns, c.regions.patterns)


_CORRUPT = {
    "edge out of range": lambda f: {"edges": np.where(np.arange(f["edges"].size).reshape(f["edges"].shape) == 0,
                                                      10**6, f["edges"]).astype(np.int32)},
    "nan vertex": lambda f: {"vertices": np.where(np.arange(f["vertices"].size).reshape(f["vertices"].shape) == 0,
                                                  np.nan, f["vertices"])},
    "inverted box": lambda f: {"lo": f["hi"], "hi": f["lo"]},
    "1-D vertex zeros": lambda f: {"vertex_zeros": f["vertex_zeros"][:, 0]},
    "wrong dimension": lambda f: {"vertices": np.zeros((3, 5))},
    "network of another dimension": lambda f: {"net_W0": np.zeros((f["net_W0"].shape[0], 3))},
    "string vertices": lambda f: {"vertices": f["vertices"].astype(str)},
    "short hash table": lambda f: {"hash_table": f["hash_table"][:1]},
    "hyperplane id out of range": lambda f: {"edge_zeros": f["edge_zeros"] + 100},
    "altered hash table": lambda f: {"hash_table": f["hash_table"] ^ np.uint64(2)},
    "network of mismatched arrays": lambda f: {"net_b0": np.zeros(f["net_b0"].size + 1)},
    "network with NaN": lambda f: {"net_W0": f["net_W0"] * np.nan},
}


@pytest.mark.parametrize("how", list(_CORRUPT))
def test_load_refuses_a_corrupt_complex(tmp_path, how):
    """Arrays that do not fit together or the network raise LoadError on load, not later in a query."""
    rng = np.random.default_rng(0)
    extract(random_net(rng, 2, [4]), (-1, 1)).save(tmp_path / "c.npz")
    f = dict(np.load(tmp_path / "c.npz"))
    f.update(_CORRUPT[how](f))
    np.savez(tmp_path / "bad.npz", **f)
    with pytest.raises(jaxpoly.LoadError, match="not a valid saved jaxpoly.Complex"):
        jaxpoly.Complex.load(tmp_path / "bad.npz")


# -- the independent scipy/HiGHS reference (tests/reference.py) ---------------------------------------


@pytest.mark.parametrize("d,widths,seed", [(2, [5, 4], 0), pytest.param(2, [4, 4, 3], 1, marks=pytest.mark.slow),
                                           (3, [4, 3], 2), (3, [3, 3, 3], 3)])
def test_f_vector_matches_lp_reference(d, widths, seed):
    """Vertices and every f_k agree with the LP reference's face enumeration (level set included)."""
    from reference import lp_f_vector, lp_vertices

    rng = np.random.default_rng(100 + seed)
    net = random_net(rng, d, widths)
    c = extract(net, (-1, 1))
    assert c.f_vector == lp_f_vector(net, -np.ones(d), np.ones(d), level_set=True)
    ref = lp_vertices(net, -np.ones(d), np.ones(d), level_set=True)
    got = c.vertices[np.lexsort(c.vertices.T[::-1])]
    assert np.allclose(got, ref, atol=1e-9)


@pytest.mark.parametrize("d,widths,seed", [(4, [5, 4], 4), (4, [4, 3, 3], 5)])
def test_regions_match_lp_reference_4d(d, widths, seed):
    """In d = 4 the cells' activation patterns equal the LP reference's regions."""
    from reference import lp_regions

    rng = np.random.default_rng(200 + seed)
    net = random_net(rng, d, widths)
    c = extract(net, (-1, 1))
    ref = {r.pattern for r in lp_regions(net, -np.ones(d), np.ones(d), level_set=True)}
    got = {tuple(bool(b) for b in p) for p in c.regions.patterns}
    assert got == ref
    assert c.euler_characteristic == 1


def test_slice_of_a_higher_dimensional_network():
    """Extracting on a plane through three points equals extracting the explicitly composed 2D network,
    and the plane's cells are exactly the patterns sampled on the plane."""
    rng = np.random.default_rng(8)
    net = random_net(rng, 6, [8, 6])
    pts = rng.normal(size=(3, 6))
    origin, u, v = jaxpoly.plane_through_points(*pts)
    c = extract(net, (-2, 2), slice=(origin, u, v))
    S = rng.uniform(-2, 2, size=(20000, 2))
    X = origin + S[:, :1] * u + S[:, 1:] * v
    pats = np.concatenate([np.asarray(net.pattern(X)), np.asarray(net(X)) > 0], axis=1)
    idx = c.region_of(S)
    assert np.all(idx >= 0)
    assert np.array_equal(c.regions.patterns[idx], pats)
    assert c.euler_characteristic == 1
    with pytest.raises(jaxpoly.InvalidArgumentError, match="collinear"):
        jaxpoly.plane_through_points(pts[0], pts[1], 2 * pts[1] - pts[0])
    with pytest.raises(jaxpoly.InvalidNetworkError, match="shape"):
        extract(net, (-1, 1), slice=(origin[:3], u, v))


def test_triple_point_in_floating_point():
    """Three lines through the non-representable point (1/3, 1/7): roundoff (~1e-16) stays inside the
    tolerance rule, so the triple point is one vertex and there are 6 regions, not 7."""
    p = np.array([1 / 3, 1 / 7])
    rng = np.random.default_rng(9)
    normals = rng.normal(size=(3, 2))
    c = extract(lines_net(normals, -normals @ p), (-1, 1), level_set=False)
    assert c.num_regions == 6
    assert c.euler_characteristic == 1


def test_near_degenerate_vertex_is_kept():
    """The first three layers of the 8x32 bunny contain a vertex 9e-12 (relative) off a hyperplane;
    it is a genuine vertex, and the per-layer counts equal the reference's (181,032 / 537,998)."""
    net = jaxpoly.load_npz(os.path.join(DATA, "3_8x32_relu_bunny.npz"))
    trunc = jaxpoly.Network(net.stages[:3], jaxpoly.Stage((np.ones((32, 1)),), np.zeros(1), (3,), jaxpoly.identity()))
    c = extract(trunc, (-0.5, 0.5), level_set=False)
    assert (c.num_vertices, c.num_edges) == (181032, 537998)
    assert [s["vertices"] for s in c.timings["stages"]] == [5155, 47970, 181032]
    assert c.euler_characteristic == 1


def test_face_count_survives_a_collision_in_one_hash_word():
    """The f-vector counts each hash word with a plain sort; a collision in one word only (two faces
    equal in word 0, different in word 1) must be detected and counted exactly."""
    from jaxpoly.complex import _count_faces

    r = np.array([[0, 0], [0, 0], [3, 3]], np.uint64)  # facets 0, 1 (never flipped to −), hyperplane 2
    ez = np.array([[2], [2], [2]], np.int32)
    eh = np.array([[10, 20], [10, 21], [10, 20]], np.uint64)  # faces: {10±3} x {20±3, 21±3}
    assert _count_faces(eh, ez, r, 2, 1) == 4
    assert _count_faces(eh[[0, 2]], ez[:2], r, 2, 1) == 2


@pytest.mark.parametrize("case", ["3_3x16", "2_2x100", pytest.param("2_4x32_small", marks=pytest.mark.slow),
                                  "hard_tanh_3d"])
def test_kept_sign_masks_equal_rebuilt_masks(case, monkeypatch):
    """A stage's packed sign masks, kept current through its steps (split halves, new vertices, new face
    edges), give exactly what masks rebuilt from scratch before every hyperplane give: the same vertices,
    edges, zero sets and hashes (more than 32 columns, regrowth mid-stage, two hyperplanes per neuron)."""
    import functools

    from jaxpoly import subdivision as sd

    kwargs = {}
    if case == "hard_tanh_3d":
        rng = np.random.default_rng(7)
        Ws = [rng.normal(size=(3, 20)), rng.normal(size=(20, 20)) / 4, rng.normal(size=(20, 1))]
        bs = [rng.normal(size=20) * 0.3, rng.normal(size=20) * 0.3, np.zeros(1)]
        net = jaxpoly.from_arrays(Ws, bs, activation="hard_tanh")
    else:
        name = {"3_3x16": "3_3x16_relu_bunny.npz", "2_2x100": "2_2x100_relu_bunny.npz",
                "2_4x32_small": "2_4x32_relu_bunny.npz"}[case]
        net = jaxpoly.load_npz(os.path.join(DATA, name))
        if case == "2_4x32_small":
            kwargs["capacity"] = 64
    kept = extract(net, (-0.5, 0.5), **kwargs)
    monkeypatch.setattr(sd, "run_stage", functools.partial(sd.run_stage, rebuild_masks=True))
    rebuilt = extract(net, (-0.5, 0.5), **kwargs)
    for field in ("vertices", "edges", "vertex_zeros", "edge_zeros", "edge_hash"):
        np.testing.assert_array_equal(getattr(kept, field), getattr(rebuilt, field), err_msg=field)


def test_level_set_respects_max_vertices():
    """The level set's growth before its step is clamped to max_vertices: past it, a CapacityError."""
    from jaxpoly.sizes import bucket

    net = jaxpoly.load_model("bunny-2d-4x32")
    v0 = extract(net, (-0.5, 0.5), level_set=False).num_vertices
    v1 = extract(net, (-0.5, 0.5)).num_vertices
    cap = bucket(v0)
    assert v0 <= cap < v1  # the hidden layers fit the first capacity bucket, the level set does not
    assert extract(net, (-0.5, 0.5), level_set=False, capacity=v0, max_vertices=cap).num_vertices == v0
    with pytest.raises(jaxpoly.CapacityError, match="max_vertices"):
        extract(net, (-0.5, 0.5), capacity=v0, max_vertices=cap)
    c = extract(net, (-0.5, 0.5), capacity=v0, max_vertices=v1 + 2)  # grows to at most v1 + 2
    assert c.num_vertices == v1 and c.timings["stages"][-1]["capacity"][0] <= v1 + 2


def test_max_vertices_is_enforced_below_the_initial_capacity():
    """max_vertices refuses any complex with more vertices, even one that fits the first capacity bucket
    (bunny-2d: 289 vertices, far below the initial 4096)."""
    net = jaxpoly.load_model("bunny-2d")
    assert extract(net, (-0.5, 0.5), max_vertices=289).num_vertices == 289
    with pytest.raises(jaxpoly.CapacityError, match="289 vertices after the level set, more than max_vertices=288"):
        extract(net, (-0.5, 0.5), max_vertices=288)


def test_stage_estimate_extrapolates_the_trend_of_new_vertices():
    """The growth estimate after an overflow: new vertices per column rising linearly are summed to the
    stage's end exactly; a falling trend is not extrapolated (the mean is); too few columns: none."""
    from jaxpoly.extraction import _stage_estimate

    k = np.arange(1, 101)
    counts = np.concatenate([[1000], 1000 + np.cumsum(5 + 2 * k)])  # increment 5 + 2k at column k
    final, most = _stage_estimate(counts[:41], width=100)
    assert final == counts[-1] and most == 5 + 2 * 100
    falling = np.concatenate([[0], np.cumsum(np.linspace(50, 10, 40))])
    final, most = _stage_estimate(falling, width=100)
    assert final == pytest.approx(falling[-1] + 60 * 30, rel=1e-9) and most == 50
    assert _stage_estimate(counts[:5], width=100) is None


def test_a_ctrl_c_lost_in_a_finalizer_still_stops_extraction(monkeypatch, lose_a_ctrl_c):
    from jaxpoly import subdivision as sd

    finalized, dropped = lose_a_ctrl_c
    net = jaxpoly.load_npz(os.path.join(DATA, "3_3x16_relu_bunny.npz"))
    orig, calls = sd.run_stage, []

    def lossy(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            finalized()
        return orig(*args, **kwargs)

    monkeypatch.setattr(sd, "run_stage", lossy)
    with pytest.raises(KeyboardInterrupt):
        extract(net, (-0.5, 0.5), engine="subdivision")
    assert len(calls) == 2 and not dropped  # stopped after the step that ran when Ctrl-C came
