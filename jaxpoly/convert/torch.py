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
    """A parameter as a float64 NumPy array, checked finite."""
    arr = t.detach().cpu().double().numpy()
    if not np.all(np.isfinite(arr)):
        raise InvalidNetworkError(f"from_torch: {what} contains NaN or inf; fix the parameters before converting")
    return arr


def _leaves(module: Any, torch: Any, path: str = "") -> list[tuple[str, Any]]:
    """``(path, layer)`` for every layer of (nested) ``nn.Sequential`` containers, in order."""
    if isinstance(module, torch.nn.Sequential):
        out = []
        for name, child in module.named_children():
            out.extend(_leaves(child, torch, f"{path}.{name}" if path else name))
        return out
    return [(path or type(module).__name__, module)]


def _activation(layer: Any, torch: Any) -> Activation | None:
    nn = torch.nn
    if type(layer) is nn.ReLU:
        return relu()
    if type(layer) is nn.LeakyReLU:
        return leaky_relu(float(layer.negative_slope))
    if type(layer) is nn.ReLU6:
        return relu6()
    if type(layer) is nn.Hardtanh:
        return hard_tanh(float(layer.min_val), float(layer.max_val))
    return None


def _affine(layer: Any, where: str, width: int, torch: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(W, b)`` with ``y = x @ W + b`` for an affine layer (``W`` of shape ``(width, out)``; the
    identity for no-ops), or ``None`` if the layer is not affine."""
    nn = torch.nn
    if isinstance(layer, nn.Linear):
        if layer.in_features != width:
            raise InvalidNetworkError(
                f"from_torch: {where} (Linear) expects {layer.in_features} inputs but the previous layer gives {width}"
            )
        W = _numpy(layer.weight, f"{where}.weight").T  # torch stores (out, in)
        b = _numpy(layer.bias, f"{where}.bias") if layer.bias is not None else np.zeros(W.shape[1])
        return W, b
    if isinstance(layer, nn.BatchNorm1d):
        if layer.training or layer.running_mean is None:
            raise UnsupportedLayerError(
                f"from_torch: {where} is BatchNorm1d in training mode (batch statistics are not piecewise affine); "
                "call model.eval() before converting"
            )
        if layer.num_features != width:
            raise InvalidNetworkError(
                f"from_torch: {where} (BatchNorm1d) has {layer.num_features} features, input has {width}"
            )
        scale = 1.0 / np.sqrt(_numpy(layer.running_var, f"{where}.running_var") + float(layer.eps))
        shift = -_numpy(layer.running_mean, f"{where}.running_mean") * scale
        if layer.affine:
            gamma, beta = _numpy(layer.weight, f"{where}.weight"), _numpy(layer.bias, f"{where}.bias")
            scale, shift = scale * gamma, shift * gamma + beta
        return np.diag(scale), shift
    if isinstance(layer, nn.Identity):
        return np.eye(width), np.zeros(width)
    if isinstance(layer, nn.Flatten):
        # the network input is already one flattened example, so only a full flatten is a no-op
        if layer.start_dim != 1 or layer.end_dim != -1:
            raise UnsupportedLayerError(
                f"from_torch: {where} is Flatten(start_dim={layer.start_dim}, end_dim={layer.end_dim}); "
                "only Flatten() (start_dim=1, end_dim=-1) is supported"
            )
        return np.eye(width), np.zeros(width)
    if isinstance(layer, nn.Dropout):
        if layer.training and layer.p > 0:
            raise UnsupportedLayerError(
                f"from_torch: {where} is Dropout in training mode; call model.eval() before converting"
            )
        return np.eye(width), np.zeros(width)
    return None


def _input_width(layers: list[tuple[str, Any]], torch: Any) -> int:
    for _, layer in layers:
        if isinstance(layer, torch.nn.Linear):
            return int(layer.in_features)
        if isinstance(layer, torch.nn.BatchNorm1d):
            return int(layer.num_features)
    raise InvalidNetworkError("from_torch: the model has no Linear layer, so its input dimension is unknown")


def from_torch(module: Any) -> Network:
    """Convert a PyTorch ``nn.Sequential`` of piecewise-affine layers to a :class:`~jaxpoly.network.Network`.

    Supported layers (``nn.Sequential`` may be nested): Linear, ReLU, LeakyReLU, ReLU6, Hardtanh,
    Identity, Flatten (a no-op: the network input is one flattened example), Dropout and BatchNorm1d in
    eval mode. Consecutive affine layers (Linear, BatchNorm1d, no-ops) are composed into one affine map,
    so every activation layer becomes one hidden stage.

    Args:
      module: a ``torch.nn.Sequential`` (or a single ``torch.nn.Linear``).
    Returns:
      A sequential :class:`Network` with float64 NumPy weights; kernels are ``(in, out)`` (the transposed
      PyTorch weights).
    Raises:
      ModuleNotFoundError: PyTorch is not installed.
      UnsupportedLayerError: a layer is not piecewise affine or unknown (the message names its class).
      InvalidNetworkError: layer sizes do not chain, or parameters are not finite.
    """
    torch = _import_torch()
    if not isinstance(module, torch.nn.Module):
        raise InvalidNetworkError(f"from_torch expects a torch.nn.Module, got {type(module).__name__}")
    layers = _leaves(module, torch)
    width = _input_width(layers, torch)
    W, b = np.eye(width), np.zeros(width)  # the affine map pending since the last activation
    stages: list[Stage] = []
    for where, layer in layers:
        act = _activation(layer, torch)
        if act is not None:
            stages.append(Stage((W,), b, (len(stages),), act))
            W, b = np.eye(width), np.zeros(width)
            continue
        aff = _affine(layer, where, width, torch)
        if aff is None:
            raise UnsupportedLayerError(
                f"from_torch: layer {where} is {type(layer).__name__}, which is not supported (not piecewise affine or "
                f"unknown); supported layers: {_SUPPORTED}"
            )
        W, b = W @ aff[0], b @ aff[0] + aff[1]
        width = aff[0].shape[1]
    return Network(tuple(stages), Stage((W,), b, (len(stages),), identity()))
