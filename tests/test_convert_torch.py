"""from_torch: PyTorch nn.Sequential models to Networks."""

import sys

import numpy as np
import pytest

from jaxpoly.convert.torch import from_torch
from jaxpoly.errors import InvalidNetworkError, UnsupportedLayerError

torch = pytest.importorskip("torch")
nn = torch.nn


def _inputs(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def _run(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _pre_activations(model: nn.Sequential, x: np.ndarray) -> np.ndarray:
    """Inputs of every activation layer, concatenated: the source's activation pattern is ``> 0``."""
    acts = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: acts.append(inp[0].numpy()))
             for m in model.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    with torch.no_grad():
        model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    return np.concatenate(acts, axis=-1)


def _seeded(model: nn.Module) -> nn.Module:
    return model.double().eval()


def test_mlp_outputs_and_pattern():
    torch.manual_seed(0)
    model = _seeded(nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2)))
    net = from_torch(model)
    assert net.is_sequential and net.widths == (8, 6) and net.input_dim == 3 and net.output_dim == 2
    assert all(a.name == "relu" for a in net.activations)
    assert all(isinstance(k, np.ndarray) and k.dtype == np.float64 for st in net.stages for k in st.kernels)
    x = _inputs(200, 3)
    np.testing.assert_allclose(np.asarray(net(x)), _run(model, x), atol=1e-12, rtol=0)
    np.testing.assert_array_equal(np.asarray(net.pattern(x)), _pre_activations(model, x) > 0)


def test_kernel_is_transposed_weight():
    torch.manual_seed(1)
    lin = nn.Linear(4, 2).double()
    net = from_torch(nn.Sequential(lin))
    np.testing.assert_array_equal(net.output.kernels[0], lin.weight.detach().numpy().T)
    assert net.stages == ()


def test_leaky_relu_nested_flatten_and_composed_linears():
    torch.manual_seed(2)
    model = _seeded(nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(5, 7), nn.Identity(), nn.Linear(7, 4)),  # composed into one stage kernel
        nn.LeakyReLU(0.2),
        nn.Sequential(nn.Sequential(nn.Linear(4, 4, bias=False)), nn.ReLU()),
        nn.Dropout(0.5),
        nn.Linear(4, 1),
    ))
    net = from_torch(model)
    assert net.widths == (4, 4) and net.is_sequential
    assert net.activations[0].slopes == (0.2, 1.0) and net.activations[1].name == "relu"
    x = _inputs(300, 5, seed=3)
    np.testing.assert_allclose(np.asarray(net(x)), _run(model, x), atol=1e-12, rtol=0)
    np.testing.assert_array_equal(np.asarray(net.pattern(x)), _pre_activations(model, x) > 0)


def test_batchnorm1d_eval_is_folded():
    torch.manual_seed(3)
    bn = nn.BatchNorm1d(6)
    with torch.no_grad():
        bn.running_mean.copy_(torch.linspace(-1, 1, 6))
        bn.running_var.copy_(torch.linspace(0.5, 3, 6))
        bn.weight.copy_(torch.linspace(0.5, 2, 6))
        bn.bias.copy_(torch.linspace(-0.3, 0.3, 6))
    model = _seeded(nn.Sequential(nn.Linear(3, 6), bn, nn.ReLU(), nn.Linear(6, 1)))
    net = from_torch(model)
    assert net.widths == (6,)
    x = _inputs(100, 3, seed=4)
    np.testing.assert_allclose(np.asarray(net(x)), _run(model, x), atol=1e-12, rtol=0)
    np.testing.assert_array_equal(np.asarray(net.pattern(x)), _pre_activations(model, x) > 0)
    model.train()
    with pytest.raises(UnsupportedLayerError, match="eval"):
        from_torch(model)


@pytest.mark.parametrize("layer", [nn.Tanh(), nn.Conv2d(1, 1, 3), nn.Sigmoid()])
def test_unsupported_module_is_named(layer):
    model = nn.Sequential(nn.Linear(2, 2), layer, nn.Linear(2, 1))
    with pytest.raises(UnsupportedLayerError, match=type(layer).__name__):
        from_torch(model)


def test_size_mismatch_and_nan():
    with pytest.raises(InvalidNetworkError, match="expects 3 inputs"):
        from_torch(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(3, 1)))
    bad = nn.Sequential(nn.Linear(2, 2))
    with torch.no_grad():
        bad[0].weight[0, 0] = float("nan")
    with pytest.raises(InvalidNetworkError, match="NaN"):
        from_torch(bad)


def test_missing_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ModuleNotFoundError, match="pip install torch"):
        from_torch(object())


def test_a_module_listed_twice_runs_twice():
    """Sequential.forward runs every entry, so one ReLU object or one shared Linear listed twice counts
    twice (named_children() would list it once)."""
    torch.manual_seed(4)
    act, shared = nn.ReLU(), nn.Linear(4, 4)
    model = _seeded(nn.Sequential(nn.Linear(2, 4), act, shared, act, shared, act, nn.Linear(4, 1)))
    net = from_torch(model)
    assert net.widths == (4, 4, 4)
    x = _inputs(300, 2, seed=5)
    np.testing.assert_allclose(np.asarray(net(x)), _run(model, x), atol=1e-12, rtol=0)
    np.testing.assert_array_equal(np.asarray(net.pattern(x)), _pre_activations(model, x) > 0)


class _Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


class _TanhLinear(nn.Linear):
    def forward(self, x):
        return torch.tanh(super().forward(x))


class _PlainReLU(nn.ReLU):  # a subclass that keeps ReLU's forward
    pass


@pytest.mark.parametrize("layer", [_Residual(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3)), _TanhLinear(3, 3)])
def test_subclass_that_overrides_forward_is_refused(layer):
    """What an overridden forward() computes is unknown: converting the base class's layer would be wrong."""
    with pytest.raises(UnsupportedLayerError, match=f"{type(layer).__name__}, a subclass of nn.*overrides forward"):
        from_torch(nn.Sequential(layer, nn.Linear(3, 1)))
    net = from_torch(_seeded(nn.Sequential(nn.Linear(3, 3), _PlainReLU(), nn.Linear(3, 1))))
    assert [a.name for a in net.activations] == ["relu"]


def test_custom_module_messages_point_at_the_fix():
    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))

        def forward(self, x):
            return self.net(x)

    with pytest.raises(UnsupportedLayerError, match=r"the model is MLP, a custom module.*from_torch\(model\.net\)"):
        from_torch(MLP())
    no_stats = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Linear(4, 1)).eval()
    with pytest.raises(UnsupportedLayerError, match="track_running_stats=False") as info:
        from_torch(no_stats)
    assert "training mode" not in str(info.value)


def test_corrupt_lazy_or_complex_parameters_are_refused():
    bn = nn.BatchNorm1d(4)
    with torch.no_grad():
        bn.running_var.fill_(-1.0)  # would give NaN weights
    with pytest.raises(InvalidNetworkError, match="running_var"):
        from_torch(nn.Sequential(nn.Linear(3, 4), bn.eval(), nn.ReLU(), nn.Linear(4, 1)))
    with pytest.raises(InvalidNetworkError, match="forward pass"):
        from_torch(nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.Linear(3, 1)))
    with pytest.raises(InvalidNetworkError, match="complex"):
        from_torch(nn.Sequential(nn.Linear(3, 2, dtype=torch.complex64)))


def test_forward_hooks_are_refused():
    """A forward hook changes what its module computes; the old-style weight_norm / spectral_norm are
    pre-hooks that recompute ``weight`` from other parameters (read after an optimizer step, ``weight``
    is stale). They were ignored: a wrong network, nothing said. The parametrizations are read."""
    x = _inputs(20, 3, seed=1)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)).double()
    handle = model[0].register_forward_hook(lambda mod, inp, out: 2.0 * out)
    with pytest.raises(UnsupportedLayerError, match="0 has a forward hook"):
        from_torch(model)
    handle.remove()
    np.testing.assert_allclose(np.asarray(from_torch(model)(x)), _run(model, x), atol=1e-12, rtol=0)
    for norm, fix in ((nn.utils.weight_norm, "remove_weight_norm"), (nn.utils.spectral_norm, "remove_spectral_norm"),
                      (nn.utils.parametrizations.weight_norm, None)):
        model = nn.Sequential(norm(nn.Linear(3, 4)), nn.ReLU(), nn.Linear(4, 1)).double().eval()
        if fix is None:
            with torch.no_grad():
                model[0].parametrizations.weight.original1.mul_(1.5)
            np.testing.assert_allclose(np.asarray(from_torch(model)(x)), _run(model, x), atol=1e-12, rtol=0)
        else:
            with pytest.raises(UnsupportedLayerError, match=fix):
                from_torch(model)


def test_leaky_relu_of_slope_one_is_the_identity():
    """LeakyReLU(1.0) is x -> x: no hidden stage and no hyperplane, as from_flax gives."""
    torch.manual_seed(5)
    model = _seeded(nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(1.0), nn.Linear(8, 1)))
    net = from_torch(model)
    assert net.stages == () and net.num_hyperplanes == 0
    x = _inputs(50, 2, seed=6)
    np.testing.assert_allclose(np.asarray(net(x)), _run(model, x), atol=1e-12, rtol=0)
