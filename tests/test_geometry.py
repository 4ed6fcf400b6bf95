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


@pytest.mark.parametrize("d,widths,seed", [(2, (8, 8), 3), (3, (6, 6), 2)])
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


@pytest.mark.parametrize("d,widths,seed", [(2, (8, 8), 3), (3, (6, 6), 2)])
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
    assert ls.num_vertices == n and ls.size == g._bucket(n)
    edges, emask = geo.level_edges()
    assert emask.sum() == geo.mesh.num_edges and np.all(edges[emask] < n)
    moved = axpy(net, random_direction(net, 5), 0.1)
    assert geo.update(moved) and geo.num_extractions == 2
    assert not geo.update(moved)
    strict = ExactGeometry(net, (-1.0, 1.0), strict=True)
    with pytest.raises(jaxpoly.StaleCombinatoricsError):
        strict.update(moved)


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


@pytest.mark.parametrize("name", ["fit_sdf_exact_mesh", "margin_classifier"])
def test_example_smoke(name, tmp_path):
    result = _load_example(name).main(steps=400, refine_steps=3, out_dir=str(tmp_path), widths=(8, 8))
    assert result["level_set_vertices"] > 0
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fit_sdf_exact_mesh", "margin_classifier"])
def test_example_full(name, tmp_path):
    result = _load_example(name).main(out_dir=str(tmp_path))
    assert result["improved"]
