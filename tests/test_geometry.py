"""Differentiable geometry: recomputed vertices, their derivatives against finite differences through
re-extraction, staleness, losses, and the examples (smoke runs)."""

from __future__ import annotations

import importlib.util
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxpoly
from jaxpoly import geometry as g
from jaxpoly.sizes import power_of_two
from jaxpoly.training import ExactGeometry, refresh_if_stale

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_net(d: int, widths: tuple[int, ...], seed: int) -> jaxpoly.Network:
    """A random ReLU MLP whose output's zero set crosses [-1, 1]^d (output bias set to the median)."""
    rng = np.random.default_rng(seed)
    sizes = [d, *widths, 1]
    Ws = [rng.normal(size=(a, b)) / np.sqrt(a) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(size=b) * 0.3 for b in sizes[1:]]
    bs[-1] = np.zeros(1)
    net = jaxpoly.from_arrays(Ws, bs)
    y = np.asarray(net(rng.uniform(-1, 1, size=(512, d))))[:, 0]
    bs[-1] = np.array([-np.median(y)])
    return jaxpoly.from_arrays(Ws, bs)


def keys(c: jaxpoly.Complex) -> list[tuple[int, ...]]:
    """Each vertex's combinatorial identity: its sorted hyperplane ids."""
    return [tuple(sorted(int(z) for z in row if z >= 0)) for row in c.vertex_zeros]


def same_combinatorics(a: jaxpoly.Complex, b: jaxpoly.Complex) -> bool:
    return sorted(keys(a)) == sorted(keys(b))


def matched_positions(base: jaxpoly.Complex, other: jaxpoly.Complex) -> np.ndarray:
    """``other``'s vertices in ``base``'s order, matched by key (nearest position among equal keys)."""
    assert same_combinatorics(base, other), "the perturbation changed the combinatorics"
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys(other)):
        groups.setdefault(k, []).append(i)
    out = np.empty_like(base.vertices)
    for i, k in enumerate(keys(base)):
        cand = groups[k]
        j = cand[int(np.argmin(np.linalg.norm(other.vertices[cand] - base.vertices[i], axis=1)))]
        out[i] = other.vertices[j]
    return out


def axpy(net, delta, h):
    return jax.tree.map(lambda a, b: np.asarray(a) + h * np.asarray(b), net, delta)


def random_direction(net, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: rng.normal(size=np.shape(a)), net)


def fd_positions(net, delta, c, box, eps=1e-6):
    """Central differences of the vertex positions along ``delta``, by re-extraction."""
    xp = matched_positions(c, jaxpoly.extract(axpy(net, delta, eps), box))
    xm = matched_positions(c, jaxpoly.extract(axpy(net, delta, -eps), box))
    return (xp - xm) / (2 * eps)


def categories(c: jaxpoly.Complex) -> dict[str, np.ndarray]:
    d = c.dim
    vz = c.vertex_zeros
    facets = np.sum((vz >= 0) & (vz < 2 * d), axis=1)
    on_level = np.any(vz == c.level_set_hyperplane, axis=1)
    return {"interior": (facets == 0) & ~on_level, "facet": (facets > 0) & (facets < d), "level_set": on_level}


def rel_err(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300))


# ----------------------------------------------------------------------------------------------------
# Positions
# ----------------------------------------------------------------------------------------------------


def test_positions_match_extract_bunny_2d():
    net = jaxpoly.load_model("bunny-2d-2x50")
    c = jaxpoly.extract(net, (-0.5, 0.5))
    x = np.asarray(g.vertex_positions(net, c))
    assert x.shape == c.vertices.shape
    assert np.abs(x - c.vertices).max() <= 1e-10
    m = c.level_set_mesh()
    assert m.num_vertices > 0
    assert np.abs(np.asarray(g.level_set_positions(net, c)) - m.vertices).max() <= 1e-10
    assert not g.is_stale(net, c)


@pytest.mark.parametrize("d,widths,seed", [pytest.param(2, (8, 8), 3, marks=pytest.mark.slow), (3, (6, 6), 2)])
def test_positions_match_extract_random(d, widths, seed):
    net = random_net(d, widths, seed)
    c = jaxpoly.extract(net, (-1.0, 1.0))
    assert c.level_set_mesh().num_vertices > 0
    assert np.abs(np.asarray(g.vertex_positions(net, c)) - c.vertices).max() <= 1e-10
    assert np.abs(np.asarray(g.level_set_positions(net, c)) - c.level_set_mesh().vertices).max() <= 1e-10


def test_degenerate_vertex_three_lines_through_origin():
    # x = 0, y = 0 and x = y meet at the origin (3 > d hyperplanes), x = y also through two corners.
    net = jaxpoly.from_arrays([np.array([[1.0, 0, 1], [0, 1, -1]]), np.ones((3, 1))], [np.zeros(3), [-0.3]])
    c = jaxpoly.extract(net, (-1.0, 1.0), level_set=False)
    assert np.any(np.sum(c.vertex_zeros >= 0, axis=1) > 2)
    x = g.vertex_positions(net, c)
    assert np.abs(np.asarray(x) - c.vertices).max() <= 1e-12
    grad = jax.grad(lambda n: jnp.sum(g.vertex_positions(n, c) ** 2))(net)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(grad))
    assert not g.is_stale(net, c)
    # Moving one of the three lines splits the origin: stale.
    moved = jaxpoly.from_arrays([np.array([[1.0, 0, 1], [0, 1, -1]]), np.ones((3, 1))], [[0, 0, 1e-3], [-0.3]])
    assert g.is_stale(moved, c)


# ----------------------------------------------------------------------------------------------------
# Derivatives against finite differences through re-extraction
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d,widths,seed", [pytest.param(2, (8, 8), 3, marks=pytest.mark.slow), (3, (6, 6), 2)])
def test_jvp_and_grad_match_finite_differences(d, widths, seed):
    net = random_net(d, widths, seed)
    box = (-1.0, 1.0)
    c = jaxpoly.extract(net, box)
    system = g.vertex_system(c)
    delta = random_direction(net, seed + 100)
    fd = fd_positions(net, delta, c, box)
    x, jvp = jax.jvp(lambda n: g.vertex_positions(n, system), (net,), (delta,))
    jvp = np.asarray(jvp)
    for name, sel in categories(c).items():
        assert sel.any(), name
        err = rel_err(jvp[sel], fd[sel])
        assert err <= 1e-6, (name, err)
        assert np.abs(fd[sel]).max() > 1e-3, name  # the derivative is not trivially zero
    # Reverse mode agrees: <grad of <w, x>, delta> = <w, jvp>.
    w = np.random.default_rng(seed).normal(size=jvp.shape)
    grad = jax.grad(lambda n: jnp.sum(w * g.vertex_positions(n, system)))(net)
    lhs = sum(float(np.sum(np.asarray(a) * np.asarray(b))) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(delta)))
    assert abs(lhs - float(np.sum(w * jvp))) <= 1e-9 * max(1.0, abs(lhs))


def test_second_derivatives_through_the_implicit_rule():
    """The custom JVP rule is itself differentiable: the Hessian of a loss over the vertices w.r.t. the
    first-layer weights (which move the normals, hence ``M``) matches central differences of its
    gradient."""
    net = random_net(2, (6,), 0)
    c = jaxpoly.extract(net, (-1.0, 1.0))
    system = g.vertex_system(c)
    k0, b0, k1, b1 = net.stages[0].kernels[0], net.stages[0].bias, net.output.kernels[0], net.output.bias

    def loss(w):
        n = g.network_from_params([w.reshape(k0.shape), k1], [b0, b1])
        return jnp.sum(jnp.sin(3.0 * g.vertex_positions(n, system)))

    w0 = jnp.asarray(k0).reshape(-1)
    hess = np.asarray(jax.jit(jax.hessian(loss))(w0))
    grad = jax.jit(jax.grad(loss))
    eps = 1e-5
    fd = np.stack([(np.asarray(grad(w0.at[i].add(eps))) - np.asarray(grad(w0.at[i].add(-eps)))) / (2 * eps)
                   for i in range(w0.shape[0])])
    assert np.abs(hess).max() > 1e-2
    assert np.abs(hess - fd).max() <= 1e-6 * np.abs(hess).max()


def test_jacobian_single_parameters_every_layer():
    """``jax.jacobian`` w.r.t. the Network: one entry per layer (first-layer weight, hidden bias,
    output weight), each against central differences; deep vertices depend on the first layer."""
    net = random_net(2, (8, 8), 3)
    box = (-1.0, 1.0)
    c = jaxpoly.extract(net, box)
    system = g.vertex_system(c)
    jac = jax.jacobian(lambda n: g.vertex_positions(n, system))(net)
    leaves, treedef = jax.tree.flatten(net)
    jleaves = jax.tree.leaves(jac)
    d = c.dim
    H0 = net.stages[0].width
    deep = np.array([any(z >= 2 * d + H0 for z in row) for row in c.vertex_zeros])
    # leaves: stage0 kernel, stage0 bias, stage1 kernel, stage1 bias, output kernel, output bias
    for leaf_i, entry in [(0, (1, 2)), (3, (4,)), (4, (5, 0))]:
        onehot = [np.zeros(np.shape(leaf)) for leaf in leaves]
        onehot[leaf_i][entry] = 1.0
        delta = jax.tree.unflatten(treedef, onehot)
        fd = fd_positions(net, delta, c, box)
        J = np.asarray(jleaves[leaf_i])[(slice(None), slice(None)) + entry]
        assert rel_err(J, fd) <= 1e-6, (leaf_i, rel_err(J, fd))
        if leaf_i == 0:
            assert np.abs(J[deep]).max() > 1e-3  # second-layer vertices move with first-layer weights


def test_gradient_of_exact_length_matches_finite_differences():
    net = random_net(2, (8, 8), 3)
    box = (-1.0, 1.0)
    c = jaxpoly.extract(net, box)
    edges = c.level_set_mesh().edges
    length = lambda n: g.level_set_length(g.level_set_positions(n, c), edges)  # noqa: E731
    delta = random_direction(net, 7)
    _, dl = jax.jvp(length, (net,), (delta,))
    eps = 1e-6
    lp = float(g.level_set_length(jaxpoly.extract(axpy(net, delta, eps), box).level_set_mesh().vertices, edges))
    lm = float(g.level_set_length(jaxpoly.extract(axpy(net, delta, -eps), box).level_set_mesh().vertices, edges))
    assert abs(float(dl) - (lp - lm) / (2 * eps)) <= 1e-6 * abs(float(dl))


# ----------------------------------------------------------------------------------------------------
# jit, vmap, Flax params
# ----------------------------------------------------------------------------------------------------


def test_jit_and_vmap_over_an_ensemble():
    net = random_net(3, (6, 6), 2)
    c = jaxpoly.extract(net, (-1.0, 1.0))
    system = g.level_set_system(c, pad_to="bucket")
    n = c.level_set_mesh().num_vertices
    assert system.size >= n and system.size & (system.size - 1) == 0
    eager = np.asarray(g.vertex_positions(net, system))
    jitted = np.asarray(jax.jit(g.vertex_positions)(net, system))
    assert np.abs(jitted - eager).max() <= 1e-13
    assert np.abs(jitted[:n] - c.level_set_mesh().vertices).max() <= 1e-10
    assert np.all(jitted[n:] == c.lo)  # padding rows sit at the box corner
    delta = random_direction(net, 1)
    nets = [axpy(net, delta, 1e-4 * k) for k in range(3)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *nets)
    ens = jax.jit(jax.vmap(lambda m: g.vertex_positions(m, system)))(stacked)
    assert ens.shape == (3, system.size, 3)
    for k in range(3):
        assert np.abs(np.asarray(ens[k]) - np.asarray(g.vertex_positions(nets[k], system))).max() <= 1e-13
    grads = jax.jit(jax.vmap(jax.grad(lambda m: jnp.sum(g.vertex_positions(m, system)[:n] ** 2))))(stacked)
    assert jax.tree.leaves(grads)[0].shape[0] == 3


def test_flax_params_gradient_matches_network_gradient():
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for w in (8, 8):
                x = nn.relu(nn.Dense(w, param_dtype=jnp.float64)(x))
            return nn.Dense(1, param_dtype=jnp.float64)(x)

    params = MLP().init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    rng = np.random.default_rng(0)  # Flax biases start at 0: all first-layer lines through the origin
    params = jax.tree.map(lambda a: a + 0.3 * rng.normal(size=a.shape), params)
    net = g.network_from_flax_params(params)
    c = jaxpoly.extract(net, (-1.0, 1.0))
    system = g.vertex_system(c)
    f_params = jax.grad(lambda p: jnp.sum(g.vertex_positions(p, system, to_network=g.network_from_flax_params) ** 2))
    f_net = jax.grad(lambda n: jnp.sum(g.vertex_positions(n, system) ** 2))
    gp, gn = f_params(params), f_net(net)
    assert np.allclose(gp["params"]["Dense_0"]["kernel"], gn.stages[0].kernels[0], rtol=1e-12, atol=1e-14)
    assert np.allclose(gp["params"]["Dense_2"]["bias"], gn.output.bias, rtol=1e-12, atol=1e-14)
    assert np.abs(gp["params"]["Dense_0"]["kernel"]).max() > 0


# ----------------------------------------------------------------------------------------------------
# Staleness and the training helpers
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d,widths,seed", [(2, (8, 8), 3), (3, (6, 6), 2)])
def test_is_stale_agrees_with_re_extraction(d, widths, seed):
    net = random_net(d, widths, seed)
    box = (-1.0, 1.0)
    c = jaxpoly.extract(net, box)
    outcomes = set()
    for k, scale in enumerate([1e-9, 1e-6, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]):
        moved = axpy(net, random_direction(net, 50 + k), scale)
        changed = not same_combinatorics(c, jaxpoly.extract(moved, box))
        assert g.is_stale(moved, c) == changed, scale
        outcomes.add(changed)
    assert outcomes == {False, True}


def test_refresh_if_stale_and_errors():
    net = random_net(2, (8, 8), 3)
    box = (-1.0, 1.0)
    c = jaxpoly.extract(net, box)
    assert refresh_if_stale(net, c) is c
    moved = axpy(net, random_direction(net, 5), 0.1)
    assert g.is_stale(moved, c)
    with pytest.raises(jaxpoly.StaleCombinatoricsError, match="[Rr]e-extract"):
        refresh_if_stale(moved, c, strict=True)
    c2 = refresh_if_stale(moved, c, box)
    assert c2 is not c and not g.is_stale(moved, c2)
    assert np.abs(np.asarray(g.vertex_positions(moved, c2)) - c2.vertices).max() <= 1e-10
    other = random_net(2, (8, 6), 3)
    for call in (lambda: g.vertex_positions(other, c), lambda: g.is_stale(other, c), lambda: refresh_if_stale(other, c)):
        with pytest.raises(jaxpoly.InvalidNetworkError, match="does not belong"):
            call()
    bad = jax.tree.map(lambda a: np.asarray(a).copy(), net)
    bad.stages[1].bias[2] = np.nan
    for call in (lambda: g.vertex_positions(bad, c), lambda: g.is_stale(bad, c), lambda: refresh_if_stale(bad, c)):
        with pytest.raises(jaxpoly.InvalidNetworkError, match="NaN"):
            call()
    flat = jaxpoly.extract(net, box, level_set=False)
    with pytest.raises(jaxpoly.JaxpolyError):
        g.level_set_positions(net, flat)


def test_exact_geometry_helper():
    net = random_net(2, (8, 8), 3)
    geo = ExactGeometry(net, (-1.0, 1.0))
    assert not geo.update(net) and geo.num_extractions == 1
    n = geo.mesh.num_vertices
    ls = geo.level_system
    assert ls.num_vertices == n and ls.size == power_of_two(n)
    edges, emask = geo.level_edges()
    assert emask.sum() == geo.mesh.num_edges and np.all(edges[emask] < n)
    moved = axpy(net, random_direction(net, 5), 0.1)
    assert geo.update(moved) and geo.num_extractions == 2
    assert not geo.update(moved)
    strict = ExactGeometry(net, (-1.0, 1.0), strict=True)
    with pytest.raises(jaxpoly.StaleCombinatoricsError):
        strict.update(moved)


def test_exact_geometry_on_a_plane_of_a_higher_dimensional_input():
    """With ``slice``, the complex is that of the network on the plane: update/positions/check take the
    full network (update failed on the very network it was built from: "does not belong to this
    network"; given the restricted one, re-extraction restricted it twice), and a jitted step reads the
    positions through on_plane, differentiably."""
    net = random_net(5, (8, 8), 4)
    plane = (np.zeros(5), np.eye(5)[0], np.eye(5)[1] + 0.5 * np.eye(5)[3])
    geo = ExactGeometry(net, (-1.0, 1.0), slice=plane)
    assert not geo.update(net) and geo.num_extractions == 1
    np.testing.assert_allclose(np.asarray(geo.positions(net)), geo.complex.vertices, atol=1e-12)
    moved = axpy(net, random_direction(net, 5), 0.1)
    assert geo.update(moved) and geo.num_extractions == 2
    fresh = jaxpoly.extract(moved, (-1.0, 1.0), slice=plane)
    assert geo.complex.f_vector == fresh.f_vector
    geo.check(moved)
    with pytest.raises(jaxpoly.InvalidArgumentError, match="pass the full network"):
        geo.update(jaxpoly.restrict_to_plane(moved, *plane))
    assert refresh_if_stale(moved, geo.complex, slice=plane) is geo.complex
    assert refresh_if_stale(net, geo.complex, slice=plane).f_vector == jaxpoly.extract(net, (-1, 1), slice=plane).f_vector
    system = geo.level_system
    grad = jax.jit(jax.grad(lambda n: jnp.sum(g.vertex_positions(geo.on_plane(n), system) ** 2)))(moved)
    eps, direction = 1e-6, random_direction(moved, 7)
    f = lambda n: float(jnp.sum(g.vertex_positions(geo.on_plane(n), system) ** 2))  # noqa: E731
    fd = (f(axpy(moved, direction, eps)) - f(axpy(moved, direction, -eps))) / (2 * eps)
    dot = sum(float(jnp.vdot(a, b)) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
    assert abs(dot - fd) <= 1e-6 * max(1.0, abs(fd))


def test_is_stale_tolerance_follows_the_dtype_of_the_computation():
    """The same weights stored in float32 (Flax's default param_dtype), or any network with x64 off,
    solve and evaluate in float32: own hyperplanes come back within ~16 eps, not the float64 tolerance
    (1e-8), so is_stale allows STALE_ROUNDOFF eps. Identical weights are not stale (and nothing is
    re-extracted or raised), while a real change of the combinatorics is stale in both precisions."""
    net = jaxpoly.load_model("bunny-2d-2x50")
    c = jaxpoly.extract(net, (-0.5, 0.5))
    net32 = net.astype(np.float32)
    assert not g.is_stale(net, c) and not g.is_stale(net32, c)
    assert np.asarray(g.vertex_positions(net32, c)).dtype == np.float32
    assert refresh_if_stale(net32, c, strict=True) is c
    geo = ExactGeometry(net, (-0.5, 0.5))
    assert not any(geo.update(net32) for _ in range(2)) and geo.num_extractions == 1
    with jax.enable_x64(False):
        assert not g.is_stale(net, c)
    moved = axpy(net, random_direction(net, 5), 1e-2)
    assert not same_combinatorics(c, jaxpoly.extract(moved, (-0.5, 0.5)))
    assert g.is_stale(moved, c) and g.is_stale(moved.astype(np.float32), c)


def test_geometry_on_a_float32_complex():
    """A float32 complex's vertices were interpolated and snapped in float32 (here up to 6e-6 off the
    float64 solution of their own hyperplanes): the geometry recomputes them in float64 from float32's
    combinatorics, within float32's tolerance, instead of failing an internal check."""
    net = jaxpoly.load_model("bunny-2d-2x100")
    with pytest.warns(jaxpoly.PrecisionWarning, match="near-misses"):  # 7 (README: float32)
        c = jaxpoly.extract(net, (-0.5, 0.5), dtype=np.float32)
    x = np.asarray(g.vertex_positions(net, c))
    assert x.shape == c.vertices.shape and 1e-6 < np.abs(x - c.vertices).max() <= 1e-4
    assert not g.is_stale(net, c) and not g.is_stale(net.astype(np.float32), c)
    assert g.level_set_positions(net, c).shape == c.level_set_mesh().vertices.shape
    with pytest.warns(jaxpoly.PrecisionWarning, match="near-misses"):
        assert not ExactGeometry(net, (-0.5, 0.5), dtype=np.float32).update(net)


def test_region_inradius_of_a_complex_without_level_set():
    """The complex's patterns have no output column then (a complex's ``level_set`` is its mesh method,
    which once passed for ``has_level_set`` and made every such complex 'not belong' to its network)."""
    net = random_net(2, (6, 5), 1)
    c = jaxpoly.extract(net, (-1.0, 1.0), level_set=False)
    r = np.asarray(g.region_inradius(net, c))
    assert r.shape == (c.num_regions,) and np.all(r > 0)


# ----------------------------------------------------------------------------------------------------
# Losses and statistics
# ----------------------------------------------------------------------------------------------------


def test_losses_closed_forms():
    a = jnp.array([[0.0, 0.0]])
    b = jnp.array([[3.0, 4.0]])
    assert float(g.chamfer_distance(a, b)) == pytest.approx(50.0)
    assert float(g.chamfer_distance(a, b, squared=False)) == pytest.approx(10.0)
    a_pad = jnp.array([[0.0, 0.0], [100.0, 100.0]])
    assert float(g.chamfer_distance(a_pad, b, mask_a=jnp.array([True, False]))) == pytest.approx(50.0)
    assert float(g.hausdorff_distance(jnp.array([[0.0, 0], [1, 0]]), jnp.array([[0.0, 0]]))) == pytest.approx(1.0)
    sq = jnp.array([[0.0, 0], [1, 0], [1, 1], [0, 1]])
    loop = jnp.array([[0, 1], [1, 2], [2, 3], [3, 0]])
    assert float(g.level_set_length(sq, loop)) == pytest.approx(4.0)
    assert float(g.level_set_length(sq, jnp.array([[0, 2], [0, 0]]), mask=jnp.array([True, False]))) == pytest.approx(
        np.sqrt(2))
    tri = jnp.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert float(g.level_set_area(tri, jnp.array([[0, 1, 2], [0, 1, 3]]))) == pytest.approx(1.0)
    pts = jnp.array([[0.0, 0], [1, 0], [3, 0]])
    assert float(g.edge_length_variance(pts, jnp.array([[0, 1], [1, 2]]))) == pytest.approx(0.25)
    q = jnp.array([[0.5, 1.0], [2.0, 0.0]])
    assert np.allclose(g.boundary_distances(q, pts), [np.sqrt(1.25), 1.0])
    assert np.allclose(g.segment_distances(q, pts, jnp.array([[0, 1], [1, 2]])), [1.0, 0.0])
    assert float(g.margin_loss(q, pts, 1.5)) == pytest.approx(((1.5 - np.sqrt(1.25)) ** 2 + 0.25) / 2)
    # Gradients are finite where a distance is zero.
    grad = jax.grad(lambda p: g.margin_loss(q, p, 1.5, edges=jnp.array([[0, 1], [1, 2]])))(pts)
    assert np.all(np.isfinite(grad))


def test_count_regions():
    lines = jaxpoly.from_arrays([np.eye(2), np.ones((2, 1))], [np.array([0.1, -0.2]), np.zeros(1)])
    assert g.count_regions(lines, (-1.0, 1.0)) == 4
    net = random_net(2, (8, 8), 3)
    assert g.count_regions(net, (-1.0, 1.0)) == jaxpoly.extract(net, (-1.0, 1.0), level_set=False).num_regions


# ----------------------------------------------------------------------------------------------------
# Examples
# ----------------------------------------------------------------------------------------------------


def _load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # Flax modules are dataclasses: their module must be importable
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", [pytest.param("fit_sdf_exact_mesh", marks=pytest.mark.slow), "margin_classifier"])
def test_example_smoke(name, tmp_path):
    result = _load_example(name).main(steps=400, refine_steps=3, out_dir=str(tmp_path), widths=(8, 8))
    assert result["level_set_vertices"] > 0
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fit_sdf_exact_mesh", "margin_classifier"])
def test_example_full(name, tmp_path):
    result = _load_example(name).main(out_dir=str(tmp_path))
    assert result["improved"]


# ----------------------------------------------------------------------------------------------------
# Region inradii (Chebyshev radii) and their derivatives
# ----------------------------------------------------------------------------------------------------


def _np_layers(net):
    """``(Ws, bs)`` of a sequential ReLU MLP built by ``from_arrays`` (NumPy)."""
    Ws = [np.asarray(st.kernels[0]) for st in net.stages] + [np.asarray(net.output.kernels[0])]
    bs = [np.asarray(st.bias) for st in net.stages] + [np.asarray(net.output.bias)]
    return Ws, bs


def chebyshev_reference(net, patterns, lo, hi, level_set=False):
    """Independent Chebyshev radii: each region's hyperplanes from a NumPy walk through the layers
    (sequential ReLU MLP, pattern bit = pre-activation > 0), one SciPy ``linprog`` per region."""
    from scipy.optimize import linprog

    Ws, bs = _np_layers(net)
    d = Ws[0].shape[0]
    out = []
    for pat in np.asarray(patterns, bool):
        A, c = np.eye(d), np.zeros(d)  # current layer's input as an affine map of x: x -> x @ A + c
        rows_a, rows_c, k = [], [], 0
        for W, b in zip(Ws[:-1], bs[:-1]):
            za, zc = A @ W, c @ W + b
            on = pat[k : k + W.shape[1]]
            rows_a.append(za.T)
            rows_c.append(zc)
            A, c = za * on, zc * on
            k += W.shape[1]
        if level_set:
            rows_a.append((A @ Ws[-1]).T[:1])
            rows_c.append((c @ Ws[-1] + bs[-1])[:1])
        a, cc = np.concatenate(rows_a), np.concatenate(rows_c)
        s = np.where(pat, 1.0, -1.0)
        nrm = np.linalg.norm(a, axis=1)
        A_ub = np.concatenate([np.concatenate([-s[:, None] * a, nrm[:, None]], 1),
                               np.concatenate([np.eye(d), np.ones((d, 1))], 1),
                               np.concatenate([-np.eye(d), np.ones((d, 1))], 1)])
        b_ub = np.concatenate([s * cc, np.broadcast_to(hi, d), -np.broadcast_to(lo, d)])
        res = linprog(-np.eye(d + 1)[d], A_ub=A_ub, b_ub=b_ub, bounds=[(None, None)] * (d + 1), method="highs")
        assert res.status == 0
        out.append(res.x[d])
    return np.array(out)


def _leaf_directions(net, seed):
    """One random direction per parameter array (every weight matrix and bias vector of every layer)."""
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree.flatten(net)
    for i in range(len(leaves)):
        yield i, jax.tree.unflatten(treedef, [rng.normal(size=np.shape(a)) if j == i else np.zeros(np.shape(a))
                                              for j, a in enumerate(leaves)])


@pytest.mark.parametrize("d,widths,seed,level_set", [pytest.param(2, (6, 5), 1, False, marks=pytest.mark.slow),
                                                     (3, (5, 4), 1, True)])
def test_region_inradius_matches_linprog_and_finite_differences(d, widths, seed, level_set):
    """Two hidden layers (deep hyperplanes bent by the first layer). In 2D the regions come from
    ``enumerate_regions``, whose stored ``inradius`` is the same Chebyshev radius for every cell of a
    level after the first (LP-certified); in 3D from ``extract`` with a level set: the cells are also
    split (and bounded) by the output's zero set."""
    net = random_net(d, widths, seed)
    box = (-1.0, 1.0)
    if level_set:
        src = jaxpoly.extract(net, box, level_set=True)
        pats = src.regions.patterns
    else:
        src = jaxpoly.enumerate_regions(net, box, batch_size=16)
        pats = src.patterns
    R = len(pats)
    ref = chebyshev_reference(net, pats, -1.0, 1.0, level_set)
    r = np.asarray(g.region_inradius(net, src))
    assert r.shape == (R,) and np.all(ref > 0)
    assert np.abs(r - ref).max() <= 1e-9
    if not level_set:
        assert np.abs(r - src.inradius).max() <= 1e-8
    # a selection; a padded system under jit
    sel = np.arange(0, R, 3)[:16]
    system = g.inradius_system(src, sel, pad_to=32)
    rp = np.asarray(jax.jit(g.region_inradius)(net, system))
    assert rp.shape == (32,) and np.abs(rp[: len(sel)] - ref[sel]).max() <= 1e-9 and np.all(rp[len(sel) :] == 0)
    # derivatives: one random direction per weight/bias array, jvp against central differences of the
    # independent LP (on the selection); reverse mode agrees with the jvp
    grad = jax.grad(lambda n: jnp.sum(g.region_inradius(n, system)))(net)
    eps = 1e-6
    for i, delta in _leaf_directions(net, seed + 7):
        fd = (chebyshev_reference(axpy(net, delta, eps), pats[sel], -1.0, 1.0, level_set)
              - chebyshev_reference(axpy(net, delta, -eps), pats[sel], -1.0, 1.0, level_set)) / (2 * eps)
        _, jvp = jax.jvp(lambda n: g.region_inradius(n, system), (net,), (delta,))
        jvp = np.asarray(jvp)[: len(sel)]
        if i >= len(jax.tree.leaves(net)) - 2 and not level_set:  # the output layer bounds no region
            assert np.all(fd == 0) and np.all(jvp == 0), i
            continue
        assert np.abs(fd).max() > 1e-3, i
        assert rel_err(jvp, fd) <= 1e-6, (i, rel_err(jvp, fd))
        lhs = sum(float(np.sum(np.asarray(a) * np.asarray(b))) for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(delta)))
        assert abs(lhs - jvp.sum()) <= 1e-9 * max(1.0, abs(lhs)), i


def test_region_inradius_vs_vertex_path_regions():
    """For the cells of ``enumerate_regions``' first-level vertex path, ``Regions.inradius`` is the
    centroid's smallest slack: a certified ball, at most the Chebyshev radius (equality is the
    2-level case in the test above)."""
    net1 = random_net(2, (6,), 1)
    R1 = jaxpoly.enumerate_regions(net1, (-1.0, 1.0), batch_size=16)
    r1 = np.asarray(g.region_inradius(net1, R1))
    assert np.abs(r1 - chebyshev_reference(net1, R1.patterns, -1.0, 1.0)).max() <= 1e-9
    assert np.all(R1.inradius <= r1 + 1e-12) and np.any(R1.inradius < r1 - 1e-6)


def test_region_inradius_rectangles_non_unique_centre():
    """Axis-aligned neurons ``x = 0.3``, ``y = 0.2``: four rectangles, each with a non-unique Chebyshev
    centre (2 active constraints in 2D). The radius is half the short side; its derivative is exact in
    the directions that keep the rectangles, and for the weight that tilts the long sides (where the
    radius has a kink) the mean of the one-sided derivatives, i.e. the central difference."""
    W1, b1 = np.eye(2), np.array([-0.3, -0.2])
    lo, hi = np.array([-2.0, -1.0]), np.array([2.0, 1.0])

    def make(W):
        return jaxpoly.from_arrays([W, np.ones((2, 1))], [b1, np.zeros(1)])

    net = make(W1)
    pats = np.array([[False, False], [True, False], [False, True], [True, True]])
    # a hand-made Regions (no enumeration needed: the patterns are all inradius_system reads)
    regions = jaxpoly.Regions(patterns=pats, witnesses=np.zeros((4, 2)), inradius=np.zeros(4),
                              facet_ptr=np.zeros(5, np.int64), facet_idx=np.zeros(0, np.int64),
                              adjacency=np.zeros((0, 2), np.int64), lo=lo, hi=hi,
                              level_set=False, complete=True, net=net)
    system = g.inradius_system(regions)
    assert np.all(np.asarray(system.slot_mask).sum(axis=1) == 2)
    xs = np.where(pats[:, 0], 2.0 - 0.3, 0.3 + 2.0)  # the rectangles' sides
    ys = np.where(pats[:, 1], 1.0 - 0.2, 0.2 + 1.0)
    assert np.all(ys < xs)  # the y-neuron sets every short side
    r = np.asarray(g.region_inradius(net, regions))
    assert np.abs(r - ys / 2).max() <= 1e-12
    assert np.abs(r - chebyshev_reference(net, pats, lo, hi)).max() <= 1e-12
    w = np.array([1.0, 2.0, 3.0, 5.0])  # weights, so that the regions' derivatives do not cancel
    grad = jax.grad(lambda n: jnp.sum(w * g.region_inradius(n, system)))(net)
    gW, gb = np.asarray(grad.stages[0].kernels[0]), np.asarray(grad.stages[0].bias)
    # closed form in the smooth directions: the side y = -b (w = 1) moves down when b grows
    assert np.abs(gb - [0.0, np.sum(w * np.where(pats[:, 1], 0.5, -0.5))]).max() <= 1e-12
    assert np.abs(np.asarray(grad.output.kernels[0])).max() == 0.0
    r0 = w @ chebyshev_reference(net, pats, lo, hi)
    eps = 1e-7
    for i, j in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        E = np.zeros((2, 2))
        E[i, j] = eps
        rp = w @ chebyshev_reference(make(W1 + E), pats, lo, hi)
        rm = w @ chebyshev_reference(make(W1 - E), pats, lo, hi)
        central = (rp - rm) / (2 * eps)
        assert abs(gW[i, j] - central) <= 1e-6 * max(1.0, abs(central)), ((i, j), gW[i, j], central)
        if (i, j) == (0, 1):  # the y-neuron's x-coefficient tilts the long sides: a real kink
            right, left = (rp - r0) / eps, (r0 - rm) / eps
            assert abs(right - left) > 0.1, (left, right)


def test_region_inradius_errors_and_loss():
    net = random_net(2, (6, 5), 1)
    c = jaxpoly.enumerate_regions(net, (-1.0, 1.0), batch_size=16)
    other = random_net(2, (6, 4), 1)
    with pytest.raises(jaxpoly.InvalidNetworkError, match="does not belong"):
        g.region_inradius(other, c)
    with pytest.raises(jaxpoly.InvalidNetworkError, match="do not belong"):
        g.inradius_system(c, net=other)
    bad = jax.tree.map(lambda a: np.asarray(a).copy(), net)
    bad.stages[1].bias[2] = np.nan
    with pytest.raises(jaxpoly.InvalidNetworkError, match="NaN"):
        g.region_inradius(bad, c)
    with pytest.raises(jaxpoly.InvalidNetworkError, match="NaN"):
        g.inradius_system(c, net=bad)
    with pytest.raises(jaxpoly.InvalidArgumentError):
        g.region_inradius(net, c, [len(c)])
    with pytest.raises(jaxpoly.InvalidArgumentError):
        g.region_inradius(net, g.inradius_system(c, [0]), [0])
    with pytest.raises(jaxpoly.InvalidArgumentError):
        g.inradius_system(c, pad_to=1)
    with pytest.raises(jaxpoly.InvalidNetworkError):
        g.region_inradius({"w": 1}, c)
    import dataclasses

    loaded = dataclasses.replace(c, net=None)  # as Regions.load gives it: region_inradius uses the net given
    np.testing.assert_allclose(np.asarray(g.region_inradius(net, loaded)), np.asarray(g.region_inradius(net, c)))
    with pytest.raises(jaxpoly.InvalidArgumentError, match="net="):
        g.inradius_system(loaded)
    # a complex whose regions no longer exist for the weights it is built from
    empty = jax.tree.map(lambda a: np.asarray(a).copy(), net)
    empty.stages[0].bias[:] += 10.0
    with pytest.raises(jaxpoly.JaxpolyError):
        g.inradius_system(c, net=empty)
    # the hinge loss
    r = jnp.array([0.1, 0.3, 0.05])
    assert float(g.inradius_loss(r, 0.2)) == pytest.approx((0.1 + 0.15) / 3)
    assert float(g.inradius_loss(r, 0.2, squared=True)) == pytest.approx((0.01 + 0.0225) / 3)
    assert float(g.inradius_loss(r, 0.2, mask=jnp.array([True, True, False]))) == pytest.approx(0.05)


# ----------------------------------------------------------------------------------------------------
# Edge cases found by an audit (each test failed before its fix)
# ----------------------------------------------------------------------------------------------------


def test_hausdorff_gradient_is_finite_at_coincident_points():
    a = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    b = jnp.array([[0.0, 0.0], [1.0, 1.0]])
    value, grad = jax.value_and_grad(g.hausdorff_distance)(a, b)
    assert np.isclose(value, np.sqrt(2.0))  # a[2] -> b[1]
    assert np.allclose(grad, [[0, 0], [0, 0], [-np.sqrt(0.5), np.sqrt(0.5)]])
    assert np.array_equal(jax.grad(g.hausdorff_distance)(a, a), np.zeros((3, 2)))


def test_vertex_system_selects_vertices_like_regions():
    c = jaxpoly.extract(random_net(2, (6,), 0), (-1.0, 1.0))
    mask = np.zeros(c.num_vertices, bool)
    mask[[5, 7]] = True
    for sel in (mask, [5, 7], [5 - c.num_vertices, 7]):
        s = g.vertex_system(c, sel)
        assert list(s.index) == [5, 7]
        assert np.allclose(g.vertex_positions(c.net, s), c.vertices[[5, 7]], atol=1e-12)
    for bad in ([2.7], [c.num_vertices], mask[:-1]):
        with pytest.raises(jaxpoly.InvalidArgumentError):
            g.vertex_system(c, bad)
    for bad in ("abc", 2.5, True):
        with pytest.raises(jaxpoly.InvalidArgumentError, match="pad_to"):
            g.vertex_system(c, pad_to=bad)


def test_staleness_rejects_bad_rtol():
    net = random_net(2, (6,), 1)
    c = jaxpoly.extract(net, (-1.0, 1.0))
    assert not jaxpoly.is_stale(net, c, rtol=0.0)
    for bad in (float("nan"), -1e-8, float("inf"), "1e-8", None):
        with pytest.raises(jaxpoly.InvalidArgumentError, match="rtol"):
            jaxpoly.is_stale(net, c, rtol=bad)
        with pytest.raises(jaxpoly.InvalidArgumentError, match="rtol"):
            refresh_if_stale(net, c, rtol=bad)
    with pytest.raises(jaxpoly.InvalidArgumentError, match="rtol"):
        ExactGeometry(net, (-1.0, 1.0), rtol=float("nan"))


def test_network_from_flax_params_frozen_and_bias_free():
    import flax.linen as nn
    from flax.core import freeze

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(4, use_bias=False, param_dtype=jnp.float64)(x))
            return nn.Dense(1, param_dtype=jnp.float64)(x)

    model = MLP()
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    x = np.random.default_rng(0).uniform(-1, 1, (16, 2))
    for p in (params, freeze(params)):
        net = g.network_from_flax_params(p)
        assert np.allclose(net(x), model.apply(params, x), atol=1e-14)
    for bad in ([1, 2], None, {}):
        with pytest.raises(jaxpoly.InvalidNetworkError):
            g.network_from_flax_params(bad)


def test_network_from_flax_params_orders_layers_by_shape_and_refuses_what_it_cannot_read(tmp_path):
    """Layer names order layers only within one family (``hidden_0``, ``hidden_1``); across families the
    shapes decide, and where they chain in two orders (``input`` and ``hidden`` both 2 -> 2) it raises:
    it read ``hidden, input, output`` (alphabetical), a wrong network, with nothing said. BatchNorm's
    parameters and statistics were dropped silently; now refused. ``load_network`` reads the same way."""
    import flax.linen as nn
    from flax import serialization

    def mlp(names, widths, norm=False):
        class MLP(nn.Module):
            @nn.compact
            def __call__(self, x):
                for name, w in zip(names[:-1], widths[:-1]):
                    x = nn.Dense(w, name=name, param_dtype=jnp.float64)(x)
                    x = nn.relu(nn.BatchNorm(use_running_average=True)(x) if norm else x)
                return nn.Dense(widths[-1], name=names[-1], param_dtype=jnp.float64)(x)
        return MLP()

    x = np.random.default_rng(0).uniform(-1, 1, (16, 2))
    model = mlp(["hidden_0", "hidden_1", "final"], [5, 5, 1])  # "final" sorts first
    v = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))
    assert np.allclose(g.network_from_flax_params(v)(x), model.apply(v, x), atol=1e-14)
    (tmp_path / "a.msgpack").write_bytes(serialization.to_bytes(v))
    assert np.allclose(jaxpoly.load_network(tmp_path / "a.msgpack", arch="mlp")(x), model.apply(v, x), atol=1e-14)
    model = mlp(["input", "hidden", "output"], [2, 2, 1])
    v = model.init(jax.random.PRNGKey(1), jnp.zeros((1, 2)))
    with pytest.raises(jaxpoly.InvalidNetworkError, match="more than one order"):
        g.network_from_flax_params(v)
    (tmp_path / "b.msgpack").write_bytes(serialization.to_bytes(v))
    with pytest.raises(jaxpoly.ModelLoadError, match="more than one order"):
        jaxpoly.load_network(tmp_path / "b.msgpack", arch="mlp:2,2,2,1:relu")
    model = mlp(["Dense_0", "Dense_1"], [4, 1], norm=True)
    v = model.init(jax.random.PRNGKey(2), jnp.zeros((1, 2)))
    with pytest.raises(jaxpoly.InvalidNetworkError, match="batch statistics"):
        g.network_from_flax_params(v)
    with pytest.raises(jaxpoly.InvalidNetworkError, match="BatchNorm_0"):
        g.network_from_flax_params(v["params"])


def test_geometry_of_a_fresh_complex_inside_jit():
    """The complex's systems are built (and cached) outside the trace, also on the first call."""
    net = random_net(2, (6,), 2)
    for fn in (jaxpoly.vertex_positions, jaxpoly.level_set_positions, jaxpoly.region_inradius):
        c = jaxpoly.extract(net, (-1.0, 1.0))
        inside = jax.jit(lambda n: fn(n, c))(net)
        assert np.allclose(inside, fn(net, c), atol=1e-14)


def test_empty_systems_give_empty_results():
    rng = np.random.default_rng(0)
    net = jaxpoly.from_arrays([rng.normal(size=(2, 6)), rng.normal(size=(6, 1))],
                              [0.3 * rng.normal(size=6), np.array([100.0])])  # no zero of the output in the box
    c = jaxpoly.extract(net, (-1.0, 1.0))
    empty = g.level_set_system(c)
    assert empty.num_vertices == 0
    assert g.level_set_positions(net, empty).shape == (0, 2)
    assert g.vertex_positions(net, g.vertex_system(c, [])).shape == (0, 2)
    assert g.stale_vertices(net, empty).shape == (0,)
    assert jaxpoly.region_inradius(net, g.inradius_system(c, [])).shape == (0,)
    assert jax.grad(lambda n: jnp.sum(g.level_set_positions(n, empty)))(net).stages[0].bias.shape == (6,)


def test_losses_on_empty_sets():
    pts = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    empty, no_edges = jnp.zeros((0, 2)), jnp.zeros((0, 2), int)
    for fn in (g.chamfer_distance, g.hausdorff_distance):
        with pytest.raises(jaxpoly.InvalidArgumentError, match="empty"):
            fn(empty, pts)
        with pytest.raises(jaxpoly.InvalidArgumentError, match="empty"):
            fn(pts, empty)
    assert np.all(np.isinf(g.boundary_distances(pts, empty)))
    assert np.all(np.isinf(g.segment_distances(pts, pts, no_edges)))
    assert np.all(np.isinf(g.boundary_distances(pts, pts, mask=jnp.zeros(2, bool))))
    assert float(g.margin_loss(pts, empty, 0.1)) == 0.0
    assert float(g.margin_loss(pts, pts, 0.1, edges=no_edges)) == 0.0
    assert float(g.margin_loss(empty, pts, 0.1)) == 0.0
    assert float(g.edge_length_variance(pts, no_edges)) == 0.0
    assert float(g.inradius_loss(jnp.zeros((0,)), 0.1)) == 0.0
    none, some = jnp.zeros(2, bool), jnp.ones(2, bool)
    assert np.isinf(g.chamfer_distance(pts, pts, mask_a=none))  # one side empty
    assert float(g.chamfer_distance(pts, pts, mask_a=none, mask_b=none)) == 0.0
    assert float(g.chamfer_distance(pts, pts, mask_a=some, mask_b=some)) == 0.0
    grad = jax.grad(lambda p: g.margin_loss(p, pts[:1], 2.0))(pts)  # point 0 on the boundary vertex
    assert np.all(np.isfinite(grad))
