"""Volumes of convex polytopes (jaxpoly.volumes) and of a complex's cells (Complex.region_volumes),
against scipy's Qhull, closed forms, shoelace areas and sampling."""

import os

import jax
import numpy as np
import pytest
from scipy.spatial import ConvexHull, HalfspaceIntersection

import jaxpoly
from jaxpoly import extract
from jaxpoly.volumes import polytope_volumes

jax.config.update("jax_enable_x64", True)

DATA = os.path.join(os.path.dirname(__file__), "data")


def mlp(seed, d, widths, *, zero_bias=False, activation="relu"):
    rng = np.random.default_rng(seed)
    sizes = [d, *widths, 1]
    return jaxpoly.from_arrays([rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(sizes, sizes[1:])],
                               [np.zeros(b) if zero_bias else 0.5 * rng.standard_normal(b) for b in sizes[1:]],
                               activation=activation)


def random_polytope(rng, d, cuts):
    """The cube [-1, 1]^d cut by random halfspaces: ``(A, b)`` with ``A x <= b``, and its vertices."""
    A = np.concatenate([np.eye(d), -np.eye(d), rng.standard_normal((cuts, d))])
    b = np.concatenate([np.ones(2 * d), rng.uniform(0.1, 1.0, cuts)])
    if d == 1:
        return A, b, np.array([[np.max(-b[A[:, 0] < 0] / -A[A[:, 0] < 0, 0])], [np.min(b[A[:, 0] > 0] / A[A[:, 0] > 0, 0])]])
    v = HalfspaceIntersection(np.concatenate([A, -b[:, None]], axis=1), np.zeros(d)).intersections
    return A, b, np.unique(np.round(v, 13), axis=0)


def padded(polys):
    """Stack ``(vertices, A, b)`` polytopes ``{A x <= b}`` as :func:`polytope_volumes` takes them (their
    incidences: vertices within 1e-9 of a hyperplane)."""
    m, d, c = max(len(v) for v, _, _ in polys), polys[0][0].shape[1], max(len(b) for _, _, b in polys)
    C = len(polys)
    pts, mask, inc = np.zeros((C, m, d)), np.zeros((C, m), bool), np.zeros((C, m, c), bool)
    normals = np.zeros((C, c, d))
    for k, (v, A, b) in enumerate(polys):
        pts[k, : len(v)], mask[k, : len(v)], normals[k, : len(b)] = v, True, A
        inc[k, : len(v), : len(b)] = np.abs(v @ A.T - b) < 1e-9
    return pts, mask, normals, inc


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_polytope_volumes_match_qhull(d):
    """Random cut cubes; the incidences also list supporting hyperplanes that touch a single vertex or
    repeat a facet's, which must change nothing."""
    rng = np.random.default_rng(d)
    polys, ref = [], []
    for _ in range(12):
        A, b, v = random_polytope(rng, d, 5)
        # a hyperplane through one vertex, the polytope on one side; and a facet's hyperplane twice
        a = rng.standard_normal(d)
        k = np.argmax(v @ a)
        A, b = np.concatenate([A, a[None], A[:1]]), np.concatenate([b, [v[k] @ a], b[:1]])
        polys.append((v, A, b))
        ref.append(v.max() - v.min() if d == 1 else ConvexHull(v).volume)
    got = polytope_volumes(*padded(polys))
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_polytope_volumes_of_flat_and_tiny_polytopes():
    """A square in 3D (all its vertices on one plane) has no volume; a simplex scaled by 1e-6 has
    1e-18 of the unit one's, away from the origin too."""
    sq = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], float)
    square = (sq, np.array([[-1.0, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1]]), np.array([0.0, 1, 0, 1, 0]))
    simplex = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    A = np.concatenate([-np.eye(3), np.ones((1, 3))])
    tiny = 1e-6 * simplex + 3.0
    got = polytope_volumes(*padded([square, (simplex, A, np.array([0.0, 0, 0, 1])),
                                    (tiny, A, np.array([-3.0, -3, -3, 9 + 1e-6]))]))
    assert got[0] == 0.0
    exact = abs(np.linalg.det(tiny[1:] - tiny[0])) / 6  # of the rounded vertices (exact differences)
    np.testing.assert_allclose(got[1:], [1 / 6, exact], rtol=1e-12)
    # a point and a segment (no incidences, no faces), and no polytopes at all
    seg = np.array([[0.0, 0, 0], [1, 0, 0]])
    none = (np.zeros((1, 3)), np.zeros(1))
    assert polytope_volumes(*padded([(seg[:1], *none), (seg, *none)])).tolist() == [0, 0]
    assert polytope_volumes(np.zeros((0, 4, 2)), np.zeros((0, 4), bool), np.zeros((0, 1, 2)),
                            np.zeros((0, 4, 1), bool)).shape == (0,)


@pytest.mark.parametrize("d,widths,zero_bias,level_set", [
    (1, (6, 6), False, True),
    (2, (6, 6), True, True),  # deep neurons and the output vanish on whole cells
    (3, (6, 6), False, False),
])
def test_region_volumes_tile_the_box_and_match_qhull(d, widths, zero_bias, level_set):
    net = mlp(d, d, widths, zero_bias=zero_bias)
    lo, hi = -np.ones(d), np.linspace(0.5, 1.5, d)
    c = extract(net, (lo, hi), level_set=level_set)
    vol = c.region_volumes()
    assert vol.shape == (c.num_regions,) and np.all(vol > 0)
    np.testing.assert_allclose(vol.sum(), np.prod(hi - lo), rtol=1e-12)
    cells = c.regions
    for r in range(c.num_regions):
        v = c.vertices[cells.vertices_of(r)]
        ref = v.max() - v.min() if d == 1 else ConvexHull(v).volume
        assert abs(vol[r] - ref) <= 1e-12 * np.prod(hi - lo), (r, vol[r], ref)


def test_region_volumes_in_2d_match_the_shoelace_formula():
    """Each 2D cell's area from its vertices sorted by angle about their centroid (hard_tanh: two
    parallel lines per neuron)."""
    net = mlp(5, 2, (8, 6), activation="hard_tanh")
    c = extract(net, (-2, 2))
    cells = c.regions
    for r in range(c.num_regions):
        v = c.vertices[cells.vertices_of(r)]
        p = v - v.mean(0)
        v = v[np.argsort(np.arctan2(p[:, 1], p[:, 0]))]
        area = 0.5 * abs(np.sum(v[:, 0] * np.roll(v[:, 1], -1) - np.roll(v[:, 0], -1) * v[:, 1]))
        assert abs(c.region_volumes()[r] - area) <= 1e-13 * 16


@pytest.mark.parametrize("name", ["2_2x50_relu_bunny.npz", "3_3x16_relu_bunny.npz"])
def test_bunny_region_volumes_match_qhull_and_sampling(name):
    """The volumes tile the box; every 10th cell's matches Qhull's; and 10^5 uniform samples fall into
    50 groups of cells (cell index mod 50) as binomials about the groups' volumes (within 5 standard
    deviations: a single cell's count is too small to test, most hold a few samples or none)."""
    net = jaxpoly.load_npz(os.path.join(DATA, name))
    c = extract(net, (-0.5, 0.5))
    vol = c.region_volumes()
    np.testing.assert_allclose(vol.sum(), 1.0, rtol=1e-12)
    for r in range(0, c.num_regions, 10):
        assert abs(vol[r] - ConvexHull(c.vertices[c.regions.vertices_of(r)]).volume) <= 1e-14
    n = 100_000
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (n, c.dim))
    groups = np.arange(c.num_regions) % 50
    hits = np.bincount(groups[c.region_of(x)], minlength=50)
    p = np.bincount(groups, weights=vol, minlength=50)
    assert np.all(np.abs(hits - n * p) <= 5 * np.sqrt(n * p * (1 - p)))


def test_region_volumes_are_computed_once_and_survive_save_load(tmp_path):
    c = extract(mlp(1, 2, (6,)), (-1, 1))
    assert c.region_volumes() is c.region_volumes()
    c.save(tmp_path / "c.npz")
    np.testing.assert_allclose(jaxpoly.Complex.load(tmp_path / "c.npz").region_volumes(), c.region_volumes(),
                               rtol=1e-14)
