"""from_flax: flax.linen and flax.nnx modules to Networks, by abstract interpretation of the jaxpr."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpoly.convert.flax import from_flax
from jaxpoly.errors import InvalidNetworkError, UnsupportedLayerError

F64 = jnp.float64


def _inputs(n: int, shape, seed: int = 0) -> np.ndarray:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return np.random.default_rng(seed).normal(size=(n,) + shape)


def _f64(tree):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, F64), tree)


def _randomize(tree, seed: int):
    """Every floating leaf (arrays or shapes) replaced by random float64 values: normal ones, or
    positive ones for variances, so that folding BatchNorm is not trivial."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    rng = np.random.default_rng(seed)
    out = []
    for path, leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            out.append(leaf)
            continue
        if "var" in jax.tree_util.keystr(path):
            v = rng.uniform(0.3, 3.0, size=leaf.shape)
        else:
            v = rng.normal(size=leaf.shape)
        out.append(jnp.asarray(v, F64))
    return jax.tree_util.tree_unflatten(treedef, out)


def _init(module, shape, seed: int = 0):
    """Random float64 linen variables (``jax.eval_shape`` avoids running the slow initializers)."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1,) + tuple(shape), F64))
    return _randomize(shapes, seed)


def _nnx(build, seed: int = 0):
    """An nnx module built abstractly, then given random float64 parameters."""
    graphdef, state = nnx.split(nnx.eval_shape(build))
    return nnx.merge(graphdef, _randomize(state, seed))


def _check(net, model_fn, x: np.ndarray, pre=None) -> None:
    """Outputs agree to 1e-12 and, given the source's pre-activations, so do activation patterns."""
    flat = x.reshape(x.shape[0], -1)
    want = np.asarray(model_fn(jnp.asarray(x))).reshape(x.shape[0], -1)
    np.testing.assert_allclose(np.asarray(net(flat)), want, atol=1e-12, rtol=0)
    if pre is not None:
        np.testing.assert_array_equal(np.asarray(net.pattern(flat)), np.asarray(pre) > 0)


def _float64_weights(net) -> bool:
    return all(isinstance(a, np.ndarray) and a.dtype == np.float64 for a in jax.tree_util.tree_leaves(net))


# ----------------------------------------------------------------------------------------------------
# flax.linen
# ----------------------------------------------------------------------------------------------------


def test_linen_dense_is_affine():
    model = nn.Dense(3)
    v = _init(model, (4,))
    net = from_flax(model, v, input_dim=4)
    assert net.stages == () and net.input_dim == 4 and net.output_dim == 3
    np.testing.assert_array_equal(net.output.kernels[0], v["params"]["kernel"])
    _check(net, lambda x: model.apply(v, x), _inputs(20, 4))


def test_linen_sequential_mlp_is_sequential():
    model = nn.Sequential([nn.Dense(8), nn.relu, nn.Dense(6), nn.relu, nn.Dense(2)])
    v = _init(model, (3,))
    net = from_flax(model, v, input_dim=3)
    assert net.is_sequential and len(net.stages) == 2 and net.widths == (8, 6)
    assert [a.name for a in net.activations] == ["relu", "relu"]
    assert _float64_weights(net)
    p = v["params"]
    np.testing.assert_array_equal(net.stages[1].kernels[0], p["layers_2"]["kernel"])  # exact, not just close
    x = _inputs(200, 3)
    z1 = x @ p["layers_0"]["kernel"] + p["layers_0"]["bias"]
    z2 = np.maximum(z1, 0) @ p["layers_2"]["kernel"] + p["layers_2"]["bias"]
    _check(net, lambda x: model.apply(v, x), x, np.concatenate([z1, z2], axis=1))


class CompactMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(7, name="d0")(x))
        x = nn.leaky_relu(nn.Dense(5, name="d1")(x), negative_slope=0.1)
        return nn.Dense(2, name="out")(x)


def test_linen_compact_mlp_relu_and_leaky_relu():
    model = CompactMLP()
    v = _init(model, (4,))
    net = from_flax(model, v, input_dim=4)
    assert net.is_sequential and net.widths == (7, 5)
    assert net.activations[0].name == "relu"
    assert net.activations[1].slopes == pytest.approx((0.1, 1.0), abs=1e-15)
    x = _inputs(300, 4, seed=1)
    _, inter = model.apply(v, jnp.asarray(x), capture_intermediates=True)
    pre = np.concatenate([inter["intermediates"][k]["__call__"][0] for k in ("d0", "d1")], axis=1)
    _check(net, lambda x: model.apply(v, x), x, pre)


def test_linen_conv_on_fixed_image_shape():
    model = nn.Sequential([nn.Conv(3, (3, 3)), nn.relu, lambda x: x.reshape((x.shape[0], -1)), nn.Dense(2)])
    v = _init(model, (6, 6, 1))
    net = from_flax(model, v, input_dim=(6, 6, 1))
    assert net.input_dim == 36 and net.widths == (108,) and net.is_sequential
    x = _inputs(50, (6, 6, 1), seed=2)
    conv = nn.Conv(3, (3, 3))
    pre = conv.apply({"params": v["params"]["layers_0"]}, jnp.asarray(x)).reshape(50, -1)
    _check(net, lambda x: model.apply(v, x), x, pre)


class BNNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.BatchNorm(use_running_average=True)(nn.Dense(5)(x))
        return nn.Dense(1)(nn.relu(x))


def test_linen_batchnorm_running_average_is_folded():
    model = BNNet()
    v = _init(model, (3,), seed=3)
    net = from_flax(model, v, input_dim=3)
    assert net.widths == (5,) and net.is_sequential
    x = _inputs(100, 3, seed=4)
    p, s = v["params"], v["batch_stats"]["BatchNorm_0"]
    z = x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    bn = p["BatchNorm_0"]
    pre = (z - s["mean"]) / np.sqrt(s["var"] + 1e-5) * bn["scale"] + bn["bias"]
    _check(net, lambda x: model.apply(v, x), x, pre)


class BNTrain(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.BatchNorm(use_running_average=False)(nn.Dense(3)(x))


def test_linen_batchnorm_training_mode_is_rejected():
    model = BNTrain()
    v = _init(model, (3,))
    with pytest.raises(UnsupportedLayerError, match="use_running_average=True"):
        from_flax(model, v, input_dim=3)


class ResMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        for i in range(2):
            h = nn.relu(nn.Dense(6, name=f"in{i}")(x))
            x = x + nn.Dense(4, name=f"out{i}")(h)
        return nn.Dense(2)(x)


def test_linen_residual_mlp_has_skip_connections():
    model = ResMLP()
    v = _init(model, (4,))
    net = from_flax(model, v, input_dim=4)
    assert net.widths == (6, 6) and not net.is_sequential
    assert [st.sources for st in net.stages + (net.output,)] == [(0,), (0, 1), (0, 1, 2)]
    x = _inputs(200, 4, seed=5)
    p = v["params"]
    dense = lambda name, a: a @ p[name]["kernel"] + p[name]["bias"]  # noqa: E731
    z1 = dense("in0", x)
    r1 = x + dense("out0", np.maximum(z1, 0))
    z2 = dense("in1", r1)
    _check(net, lambda x: model.apply(v, x), x, np.concatenate([z1, z2], axis=1))


def test_linen_float32_params_are_widened_even_without_x64():
    model = nn.Sequential([nn.Dense(5), nn.relu, nn.Dense(1)])
    v = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), _init(model, (3,)))  # float32 parameters
    with jax.enable_x64(False):
        net = from_flax(model, v, input_dim=3)
    assert _float64_weights(net)
    np.testing.assert_array_equal(net.stages[0].kernels[0], np.asarray(v["params"]["layers_0"]["kernel"], np.float64))
    _check(net, lambda x: model.apply(_f64(v), x), _inputs(50, 3))


def test_linen_dropout_needs_deterministic():
    def make(det):
        return nn.Sequential([nn.Dense(4), nn.Dropout(0.5, deterministic=det), nn.relu, nn.Dense(1)])

    v = _init(make(True), (3,))
    net = from_flax(make(True), v, input_dim=3)
    assert net.widths == (4,)
    with pytest.raises(UnsupportedLayerError, match="deterministic=True"):
        from_flax(make(False), v, input_dim=3)


# ----------------------------------------------------------------------------------------------------
# flax.nnx
# ----------------------------------------------------------------------------------------------------


def test_nnx_linear_and_sequential():
    lin = _nnx(lambda: nnx.Linear(4, 3, param_dtype=F64, rngs=nnx.Rngs(0)))
    net = from_flax(lin, input_dim=4)
    assert net.stages == ()
    _check(net, lin, _inputs(20, 4))

    model = _nnx(lambda: nnx.Sequential(nnx.Linear(3, 8, param_dtype=F64, rngs=nnx.Rngs(0)), nnx.relu,
                                        nnx.Linear(8, 1, param_dtype=F64, rngs=nnx.Rngs(1))), seed=1)
    net = from_flax(model, input_dim=3)
    assert net.is_sequential and net.widths == (8,)
    x = _inputs(100, 3, seed=1)
    _check(net, model, x, model.layers[0](jnp.asarray(x)))


def test_nnx_conv():
    model = _nnx(lambda: nnx.Sequential(
        nnx.Conv(1, 2, (3, 3), strides=2, param_dtype=F64, rngs=nnx.Rngs(0)), nnx.relu,
        lambda z: z.reshape(z.shape[0], -1), nnx.Linear(18, 2, param_dtype=F64, rngs=nnx.Rngs(1))), seed=2)
    net = from_flax(model, input_dim=(6, 6, 1))
    assert net.input_dim == 36 and net.widths == (18,)
    x = _inputs(50, (6, 6, 1), seed=2)
    _check(net, model, x, model.layers[0](jnp.asarray(x)).reshape(50, -1))


def test_nnx_batchnorm_after_eval():
    model = _nnx(lambda: nnx.Sequential(
        nnx.Linear(3, 4, param_dtype=F64, rngs=nnx.Rngs(0)), nnx.BatchNorm(4, param_dtype=F64, rngs=nnx.Rngs(0)),
        nnx.relu, nnx.Linear(4, 1, param_dtype=F64, rngs=nnx.Rngs(1))), seed=3)
    l0, bn = model.layers[0], model.layers[1]
    assert float(jnp.min(bn.var[...])) > 0.29 and float(jnp.max(jnp.abs(bn.mean[...]))) > 0.1
    with pytest.raises(UnsupportedLayerError, match=r"model\.eval\(\)"):
        from_flax(model, input_dim=3)  # training mode: batch statistics
    model.eval()
    net = from_flax(model, input_dim=3)
    assert net.widths == (4,)
    x = _inputs(100, 3, seed=3)
    _check(net, model, x, bn(l0(jnp.asarray(x))))


def test_nnx_dropout_needs_eval():
    lin = lambda i, o, seed: _nnx(lambda: nnx.Linear(i, o, param_dtype=F64, rngs=nnx.Rngs(0)), seed)  # noqa: E731
    model = nnx.Sequential(lin(3, 4, 0), nnx.Dropout(0.5, rngs=nnx.Rngs(1)), nnx.relu, lin(4, 1, 1))
    with pytest.raises(UnsupportedLayerError, match="random"):
        from_flax(model, input_dim=3)
    model.eval()
    _check(from_flax(model, input_dim=3), model, _inputs(20, 3))


class NNXResMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.inp = nnx.Linear(3, 5, param_dtype=F64, rngs=rngs)
        self.hidden = nnx.Linear(5, 5, param_dtype=F64, rngs=rngs)
        self.out = nnx.Linear(5, 2, param_dtype=F64, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.inp(x))
        h = h + nnx.relu(self.hidden(h))
        return self.out(h)


def test_nnx_user_module_with_residual():
    model = _nnx(lambda: NNXResMLP(nnx.Rngs(3)), seed=4)
    net = from_flax(model, input_dim=3)
    assert [st.sources for st in net.stages + (net.output,)] == [(0,), (1,), (1, 2)]
    x = _inputs(200, 3, seed=4)
    z1 = model.inp(jnp.asarray(x))
    z2 = model.hidden(nnx.relu(z1))
    _check(net, model, x, np.concatenate([z1, z2], axis=1))


# ----------------------------------------------------------------------------------------------------
# Piecewise-linear primitives
# ----------------------------------------------------------------------------------------------------


def test_elementwise_piecewise_linear_ops():
    W = np.random.default_rng(6).normal(size=(3, 3))

    def f(x):
        z = x @ W
        return (jnp.clip(z, -1.0, 2.0) + jnp.abs(z) + jnp.minimum(z, 0.5 * z) + jnp.maximum(0.3 * z, z)
                + jnp.where(z < 0.5, 0.0, z - 0.5) + jnp.where(z > 0, z, -2.0 * z) + jax.nn.relu6(z))

    net = from_flax(f, input_dim=3)
    names = [a.name for a in net.activations]
    assert "abs" in names and "leaky_relu(0.3)" in names and "pwl(1,0.5)" in names and "leaky_relu(-2)" in names
    _check(net, f, _inputs(500, 3, seed=7))


def test_linear_and_identity_primitives_are_folded():
    """``jnp.tile``, ``lax.stop_gradient`` (the straight-through trick), ``.at[].multiply`` by a constant
    and ``** 1`` are linear (were refused as "not piecewise affine")."""
    W = np.random.default_rng(10).normal(size=(3, 4))

    def f(x):
        h = jax.nn.relu(x @ W)
        st = x @ W + jax.lax.stop_gradient(jax.nn.relu(x @ W) - x @ W)
        return jnp.concatenate([jnp.tile(h, 2), st, h.at[:, 1].multiply(3.0) ** 1], axis=-1)

    net = from_flax(f, input_dim=3)
    _check(net, f, _inputs(100, 3, seed=11))


def test_operations_across_the_batch_are_refused():
    """The module is read on a batch of one, where a mean over the batch axis is the identity: a model
    that centres its features over the batch was converted into another function, nothing said."""
    W = np.random.default_rng(12).normal(size=(3, 4))
    with pytest.raises(UnsupportedLayerError, match="other examples of its batch"):
        from_flax(lambda x: jax.nn.relu(x @ W) - jnp.mean(jax.nn.relu(x @ W), axis=0), input_dim=3)


def test_scan_and_fori_loop_are_unrolled():
    W = np.random.default_rng(8).normal(size=(3, 3))

    def f(x):
        x = jax.lax.scan(lambda c, _: (jax.nn.relu(c @ W + 0.1), None), x, None, length=2)[0]
        return jax.lax.fori_loop(0, 2, lambda i, c: jax.nn.relu(c @ W - 0.2), x)

    net = from_flax(f, input_dim=3)
    assert net.is_sequential and len(net.stages) == 4
    _check(net, f, _inputs(100, 3, seed=9))


# ----------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn, prim", [
    (jnp.tanh, "tanh"),
    (jax.nn.sigmoid, "logistic"),
    (lambda z: jax.nn.gelu(z, approximate=False), "erf"),
    (jax.nn.softmax, "reduce_max"),
    (lambda z: z * z, "mul"),
    (lambda z: 1.0 / z, "div"),
    (lambda z: nn.max_pool(z[..., None], (2,), strides=(2,))[..., 0], "reduce_window_max"),
    (lambda z: jnp.argmax(z, axis=-1, keepdims=True).astype(F64), "argmax"),
    (lambda z: jnp.where(z > 0, z + 1.0, z), "select_n"),  # discontinuous
])
def test_non_piecewise_affine_ops_are_named(fn, prim):
    with pytest.raises(UnsupportedLayerError, match=prim):
        from_flax(lambda x: fn(x @ np.ones((4, 4))), input_dim=4)


def test_layernorm_is_rejected_with_hint():
    model = nn.Sequential([nn.Dense(3), nn.LayerNorm()])
    with pytest.raises(UnsupportedLayerError, match="LayerNorm"):
        from_flax(model, _init(model, (2,)), input_dim=2)


def test_input_dim_mismatch():
    model = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(1)])
    v = _init(model, (5,))
    with pytest.raises(InvalidNetworkError, match="input_dim=5"):
        from_flax(model, v, input_dim=3)
    lin = _nnx(lambda: nnx.Linear(5, 2, param_dtype=F64, rngs=nnx.Rngs(0)))
    with pytest.raises(InvalidNetworkError, match="input_dim=5"):
        from_flax(lin, input_dim=(2, 2))
    with pytest.raises(InvalidNetworkError, match="positive"):
        from_flax(lin, input_dim=0)


def test_linen_without_variables():
    with pytest.raises(InvalidNetworkError, match="variables"):
        from_flax(nn.Dense(2), input_dim=3)


def test_non_finite_params():
    model = nn.Dense(2)
    v = _init(model, (3,))
    v = jax.tree_util.tree_map(lambda a: a.at[0].set(jnp.nan), v)
    with pytest.raises(InvalidNetworkError, match="NaN"):
        from_flax(model, v, input_dim=3)


def test_output_must_be_one_array():
    with pytest.raises(InvalidNetworkError, match="single array"):
        from_flax(lambda x: (x, 2 * x), input_dim=3)


@pytest.mark.parametrize("kind", ["linen", "nnx", "where"])
def test_hard_tanh_is_clip_with_two_hyperplanes_per_neuron(kind):
    """``jax.nn.hard_tanh`` is ``where(z > 1, 1, where(z < -1, -1, z))``: the conversion is exact, and its
    hyperplanes are ``z = -1`` and ``z = 1`` for every neuron, as for ``clip(z, -1, 1)``."""
    W, b = np.random.default_rng(10).normal(size=(3, 5)), np.random.default_rng(11).normal(size=5)
    V = np.random.default_rng(12).normal(size=(5, 2))
    if kind == "linen":
        assert nn.hard_tanh is jax.nn.hard_tanh
        model = nn.Sequential([nn.Dense(5), nn.hard_tanh, nn.Dense(2)])
        v = {"params": {"layers_0": {"kernel": W, "bias": b}, "layers_2": {"kernel": V, "bias": np.zeros(2)}}}
        net = from_flax(model, v, input_dim=3)
        f = lambda x: model.apply(v, x)  # noqa: E731
    elif kind == "nnx":
        f = nnx.Sequential(lambda x: x @ W + b, nnx.hard_tanh, lambda h: h @ V)
        net = from_flax(f, input_dim=3)
    else:  # the other nesting order
        f = lambda x: jnp.where(x @ W + b < -1, -1.0, jnp.where(x @ W + b > 1, 1.0, x @ W + b)) @ V  # noqa: E731
        net = from_flax(f, input_dim=3)
    x = _inputs(2000, 3, seed=13)
    z = x @ W + b
    assert np.mean(np.abs(z) > 1) > 0.2 and np.mean(np.abs(z) < 1) > 0.2  # every piece is hit
    _check(net, f, x)
    np.testing.assert_allclose(np.asarray(net(x)), np.clip(z, -1, 1) @ V, atol=1e-12, rtol=0)
    assert net.num_hyperplanes == 2 * 5
    got = np.sort(np.abs(np.asarray(net.hyperplane_values(x))), axis=1)
    want = np.sort(np.abs(np.concatenate([z - 1, z + 1], axis=1)), axis=1)
    np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)


def test_bare_params_bad_input_dim_and_complex_params():
    model = nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(1)])
    v = _init(model, (3,))
    with pytest.raises(InvalidNetworkError, match=r"\{'params': params\}"):
        from_flax(model, v["params"], input_dim=3)
    with pytest.raises(InvalidNetworkError, match="positive int"):
        from_flax(model, v, input_dim=3.0)
    cv = jax.tree_util.tree_map(lambda a: a.astype(jnp.complex128), v)
    with pytest.raises(InvalidNetworkError, match="complex"):
        from_flax(model, cv, input_dim=3)
