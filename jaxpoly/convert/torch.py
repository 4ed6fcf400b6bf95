"""Networks from PyTorch ``nn.Sequential`` models.

PyTorch is imported only when :func:`from_torch` is called, so jaxpoly does not depend on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxpoly.errors import InvalidNetworkError, UnsupportedLayerError
from jaxpoly.network import Activation, Network, Stage, hard_tanh, identity, leaky_relu, relu, relu6

__all__ = ["from_torch"]

_SUPPORTED = (
    "Sequential, Linear, ReLU, LeakyReLU, ReLU6, Hardtanh, Identity, Flatten, Dropout (eval mode), "
    "BatchNorm1d (eval mode)"
)


def _import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ModuleNotFoundError("from_torch needs PyTorch: pip install torch==2.13.0 (CPU build)") from None
    return torch


def _numpy(t: Any, what: str) -> np.ndarray:
    """A parameter as a float64 NumPy array, checked real and finite."""
    if t.is_complex():
        raise InvalidNetworkError(
            f"from_torch: {what} is complex ({t.dtype}); a piecewise-affine network has real weights (convert "
            "the parameters to a real dtype before converting)"
        )
    arr = t.detach().cpu().double().numpy()
    if not np.all(np.isfinite(arr)):
        raise InvalidNetworkError(f"from_torch: {what} contains NaN or inf; fix the parameters before converting")
    return arr


def _classes(torch: Any) -> tuple[type, ...]:
    """The supported ``torch.nn`` classes, most specific first (``ReLU6`` subclasses ``Hardtanh``)."""
    nn = torch.nn
    return (nn.Sequential, nn.Linear, nn.BatchNorm1d, nn.Identity, nn.Flatten, nn.Dropout, nn.ReLU, nn.LeakyReLU,
            nn.ReLU6, nn.Hardtanh)


def _kind(layer: Any, path: str, torch: Any) -> type:
    """The supported ``torch.nn`` class ``layer`` (at ``path``; ``""``: the model itself) is an instance of;
    raises for any other module, for a subclass that overrides ``forward`` (what it computes is not
    known), and for an uninitialised lazy layer."""
    where = path or type(layer).__name__
    kind = next((c for c in _classes(torch) if isinstance(layer, c)), None)
    if kind is None:
        raise UnsupportedLayerError(_unsupported_message(layer, path, torch))
    if type(layer).forward is not kind.forward:
        raise UnsupportedLayerError(
            f"from_torch: {where} is {type(layer).__name__}, a subclass of nn.{kind.__name__} that overrides "
            f"forward(), so what it computes cannot be read; write it as an nn.Sequential of supported layers "
            f"({_SUPPORTED})"
        )
    if kind is torch.nn.Linear and torch.nn.parameter.is_lazy(layer.weight):
        raise InvalidNetworkError(
            f"from_torch: {where} is an uninitialised {type(layer).__name__}, whose input size is not known yet; "
            "run one forward pass on an example input (model(x)) before converting"
        )
    _refuse_hooks(layer, where, torch)
    return kind


def _refuse_hooks(layer: Any, where: str, torch: Any) -> None:
    """Forward hooks and pre-hooks change what a module computes (the old-style ``weight_norm`` and
    ``spectral_norm`` recompute ``weight`` in one), and the weights read here would then not be the
    ones the model uses: raise, naming the hook."""
    g = torch.nn.modules.module
    hooks = [*getattr(layer, "_forward_pre_hooks", {}).values(), *getattr(layer, "_forward_hooks", {}).values(),
             *getattr(g, "_global_forward_pre_hooks", {}).values(), *getattr(g, "_global_forward_hooks", {}).values()]
    if not hooks:
        return
    name = getattr(hooks[0], "__qualname__", None) or type(hooks[0]).__name__  # a function, or a hook object
    fix = "remove it (handle.remove()) or fold what it does into the layers"
    if name in ("WeightNorm", "SpectralNorm"):
        fix = (f"bake the weight in with torch.nn.utils.remove_{'weight' if name == 'WeightNorm' else 'spectral'}_norm"
               f"(layer) (or use torch.nn.utils.parametrizations, which from_torch reads)")
    raise UnsupportedLayerError(
        f"from_torch: {where} has a forward hook ({name}), which changes what it computes, so the weights read "
        f"would not be the model's; {fix}, then convert")


def _unsupported_message(layer: Any, path: str, torch: Any) -> str:
    name = type(layer).__name__
    what = f"layer {path}" if path else "the model"
    if not isinstance(layer, torch.nn.Module):
        return f"from_torch: {what} is a {name}, not a torch.nn.Module"
    if type(layer).__module__.startswith("torch."):
        return (f"from_torch: {what} is {name}, which is not supported (not piecewise affine or unknown); "
                f"supported layers: {_SUPPORTED}")
    msg = (f"from_torch: {what} is {name}, a custom module whose forward() cannot be read; from_torch converts "
           f"(nested) nn.Sequential models of {_SUPPORTED}")
    inner = next((n for n, m in layer.named_modules() if n and isinstance(m, torch.nn.Sequential)), None)
    if inner is not None:
        msg += (f". If its forward() only runs its nn.Sequential {inner!r}, convert that: "
                + (f"from_torch(model.{inner})" if not path else f"put model.{path}.{inner} in its place"))
    return msg


def _leaves(module: Any, torch: Any, path: str = "") -> list[tuple[str, Any, type]]:
    """``(path, layer, kind)`` for every layer of (nested) ``nn.Sequential`` containers, in the order
    ``Sequential.forward`` runs them (a module listed twice runs twice); ``kind`` is its supported
    ``torch.nn`` class (:func:`_kind`)."""
    kind = _kind(module, path, torch)
    if kind is torch.nn.Sequential:
        out = []
        for name, child in module._modules.items():  # named_children() skips a module's repeats
            out.extend(_leaves(child, torch, f"{path}.{name}" if path else name))
        return out
    return [(path or type(module).__name__, module, kind)]


def _activation(layer: Any, kind: type, torch: Any) -> Activation | None:
    nn = torch.nn
    if kind is nn.ReLU:
        return relu()
    if kind is nn.LeakyReLU:
        return leaky_relu(float(layer.negative_slope))
    if kind is nn.ReLU6:
        return relu6()
    if kind is nn.Hardtanh:
        return hard_tanh(float(layer.min_val), float(layer.max_val))
    return None


def _affine(layer: Any, kind: type, where: str, width: int, torch: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` with ``y = x @ W + b`` for an affine layer of class ``kind`` (``W`` of shape
    ``(width, out)``; the identity for no-ops)."""
    nn = torch.nn
    if kind is nn.Linear:
        if layer.in_features != width:
            raise InvalidNetworkError(
                f"from_torch: {where} (Linear) expects {layer.in_features} inputs but the previous layer gives {width}"
            )
        W = _numpy(layer.weight, f"{where}.weight").T  # torch stores (out, in)
        b = _numpy(layer.bias, f"{where}.bias") if layer.bias is not None else np.zeros(W.shape[1])
        return W, b
    if kind is nn.BatchNorm1d:
        if layer.running_mean is None or layer.running_var is None:
            raise UnsupportedLayerError(
                f"from_torch: {where} is BatchNorm1d(track_running_stats=False), which normalises by the statistics "
                "of each batch even in eval mode, so its output is not a fixed function of one input (not piecewise "
                "affine); train it with track_running_stats=True, or remove it"
            )
        if layer.training:
            raise UnsupportedLayerError(
                f"from_torch: {where} is BatchNorm1d in training mode (batch statistics are not piecewise affine); "
                "call model.eval() before converting"
            )
        if layer.num_features != width:
            raise InvalidNetworkError(
                f"from_torch: {where} (BatchNorm1d) has {layer.num_features} features, input has {width}"
            )
        var = _numpy(layer.running_var, f"{where}.running_var") + float(layer.eps)
        if np.any(var <= 0):
            raise InvalidNetworkError(
                f"from_torch: {where}.running_var + eps has non-positive entries (smallest {var.min():g}), so the "
                "layer would divide by the square root of a non-positive number; its running statistics are "
                "corrupt: recompute them, or reset them with reset_running_stats()"
            )
        scale = 1.0 / np.sqrt(var)
        shift = -_numpy(layer.running_mean, f"{where}.running_mean") * scale
        if layer.affine:
            gamma, beta = _numpy(layer.weight, f"{where}.weight"), _numpy(layer.bias, f"{where}.bias")
            scale, shift = scale * gamma, shift * gamma + beta
        return np.diag(scale), shift
    if kind is nn.Flatten:
        # the network input is already one flattened example, so only a full flatten is a no-op
        if layer.start_dim != 1 or layer.end_dim != -1:
            raise UnsupportedLayerError(
                f"from_torch: {where} is Flatten(start_dim={layer.start_dim}, end_dim={layer.end_dim}); "
                "only Flatten() (start_dim=1, end_dim=-1) is supported"
            )
    if kind is nn.Dropout and layer.training and layer.p > 0:
        raise UnsupportedLayerError(
            f"from_torch: {where} is Dropout in training mode; call model.eval() before converting"
        )
    return np.eye(width), np.zeros(width)  # Identity, Flatten(), Dropout in eval mode


def _input_width(layers: list[tuple[str, Any, type]], torch: Any) -> int:
    for _, layer, kind in layers:
        if kind is torch.nn.Linear:
            return int(layer.in_features)
        if kind is torch.nn.BatchNorm1d:
            return int(layer.num_features)
    raise InvalidNetworkError("from_torch: the model has no Linear layer, so its input dimension is unknown")


def _check_finite(net: Network) -> None:
    """Finite parameters can still compose to non-finite weights (float64 overflow)."""
    for i, st in enumerate(net.stages + (net.output,)):
        if not all(np.all(np.isfinite(a)) for a in st.kernels + (st.bias,)):
            where = f"hidden stage {i}" if i < len(net.stages) else "the output stage"
            raise InvalidNetworkError(
                f"from_torch: the converted weights of {where} contain NaN or inf (composing the layers overflows "
                "float64); rescale the parameters before converting"
            )


def from_torch(module: Any) -> Network:
    """Convert a PyTorch ``nn.Sequential`` of piecewise-affine layers to a :class:`~jaxpoly.network.Network`.

    Supported layers (``nn.Sequential`` may be nested): Linear, ReLU, LeakyReLU, ReLU6, Hardtanh,
    Identity, Flatten (a no-op: the network input is one flattened example), Dropout and BatchNorm1d in
    eval mode. Consecutive affine layers (Linear, BatchNorm1d, no-ops) are composed into one affine map,
    so every activation layer becomes one hidden stage (but ``LeakyReLU(1.0)``, the identity, which joins
    the affine map). Layers run in the order ``Sequential.forward`` runs them: a module listed twice
    (one ``nn.ReLU()`` or a shared ``Linear`` reused) counts twice. Subclasses of these classes are
    accepted unless they override ``forward``.

    Args:
      module: a ``torch.nn.Sequential`` (or a single ``torch.nn.Linear``).
    Returns:
      A sequential :class:`Network` with float64 NumPy weights; kernels are ``(in, out)`` (the transposed
      PyTorch weights).
    Raises:
      ModuleNotFoundError: PyTorch is not installed.
      UnsupportedLayerError: a layer is not piecewise affine, unknown, a custom module or a subclass that
        overrides ``forward`` (the message names its class).
      InvalidNetworkError: layer sizes do not chain, parameters are complex or not finite (or BatchNorm
        running variances not positive), or a lazy layer is not initialised yet.
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise InvalidNetworkError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    layers = _leaves(module, torch)
    width = _input_width(layers, torch)
    W, b = np.eye(width), np.zeros(width)  # the affine map pending since the last activation
    stages: list[Stage] = []
    for where, layer, kind in layers:
        act = _activation(layer, kind, torch)
        if act is not None:
            if not act.is_identity:  # (LeakyReLU(1) is the identity: it joins the pending affine map)
                stages.append(Stage((W,), b, (len(stages),), act))
                W, b = np.eye(width), np.zeros(width)
            continue
        A, c = _affine(layer, kind, where, width, torch)
        W, b = W @ A, b @ A + c
        width = A.shape[1]
    net = Network(tuple(stages), Stage((W,), b, (len(stages),), identity()))
    _check_finite(net)
    return net
