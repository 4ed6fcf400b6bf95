"""Networks from plain arrays and ``.npz`` files."""

from __future__ import annotations

import json
import os
import re
from typing import Sequence

import numpy as np

from jaxpoly.errors import InvalidNetworkError, ModelLoadError, ModelNotFoundError
from jaxpoly.files import as_path, saved_npz_name, writing
from jaxpoly.network import Activation, Network, Stage, activation_from_name, identity, piecewise_linear, validate_network

__all__ = ["from_arrays", "load_npz", "save_npz", "network_arrays", "network_from_arrays"]


def _as_float_array(a, what: str) -> np.ndarray:
    if np.iscomplexobj(a):
        raise InvalidNetworkError(f"{what} is complex ({np.asarray(a).dtype}); a piecewise-affine network has real "
                                  "weights (pass the real part explicitly if that is what you mean)")
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidNetworkError(f"{what} is not a numeric array: {e}") from None
    if not np.all(np.isfinite(arr)):
        raise InvalidNetworkError(f"{what} contains NaN or inf; fix the parameters before converting")
    return arr


def from_arrays(
    weights: Sequence, biases: Sequence, *, activation: str | Activation = "relu", negative_slope: float = 0.01
) -> Network:
    """A sequential MLP from per-layer arrays.

    Args:
      weights: ``weights[i]`` of shape ``(in_i, out_i)`` (Flax ``kernel`` convention, ``z = a @ W + b``).
      biases: ``biases[i]`` of shape ``(out_i,)``.
      activation: applied after every layer but the last: a name (``"relu"``, ``"leaky_relu"``,
        ``"identity"``, ``"relu6"``, ``"hard_tanh"``) or an :class:`Activation`.
      negative_slope: for ``"leaky_relu"``.
    Returns:
      A :class:`Network` whose weights are float64 NumPy arrays.
    """
    try:
        weights, biases = list(weights), list(biases)
    except TypeError:
        raise InvalidNetworkError(f"from_arrays needs sequences of weight matrices and bias vectors, got "
                                  f"{type(weights).__name__} and {type(biases).__name__}") from None
    if not weights:
        raise InvalidNetworkError("from_arrays needs at least one layer")
    if len(weights) != len(biases):
        raise InvalidNetworkError(f"{len(weights)} weight matrices but {len(biases)} bias vectors")
    act = activation if isinstance(activation, Activation) else activation_from_name(activation, negative_slope)
    Ws = [_as_float_array(w, f"weights[{i}]") for i, w in enumerate(weights)]
    bs = [_as_float_array(b, f"biases[{i}]") for i, b in enumerate(biases)]
    # PyTorch's Linear.weight is (out, in): the errors name the transpose where the shapes say so
    torch_hint = ("; weights are (in, out): PyTorch's Linear.weight is (out, in), pass its transpose (W.T) or "
                  "use jaxpoly.from_torch")
    for i, (w, b) in enumerate(zip(Ws, bs)):
        if w.ndim != 2:
            raise InvalidNetworkError(f"weights[{i}] must be 2-D (in, out), got shape {w.shape}")
        if b.shape != (w.shape[1],):
            hint = torch_hint if b.shape == (w.shape[0],) else ""
            raise InvalidNetworkError(f"biases[{i}] has shape {b.shape}, expected ({w.shape[1]},) to match weights[{i}] "
                                      f"of shape {w.shape}{hint}")
        if i and w.shape[0] != Ws[i - 1].shape[1]:
            hint = torch_hint if w.shape[1] == Ws[i - 1].shape[0] else ""
            raise InvalidNetworkError(
                f"weights[{i}] expects {w.shape[0]} inputs but layer {i - 1} has {Ws[i - 1].shape[1]} outputs{hint}"
            )
    stages = tuple(Stage((w,), b, (i,), act) for i, (w, b) in enumerate(zip(Ws[:-1], bs[:-1])))
    return Network(stages, Stage((Ws[-1],), bs[-1], (len(stages),), identity()))


def _activation_to_json(a: Activation) -> str:
    return json.dumps({"name": a.name, "breakpoints": a.breakpoints, "slopes": a.slopes,
                       "value_at_zero": a.value_at_zero})


def _activation_from_json(s: str) -> Activation:
    d = json.loads(s)
    return piecewise_linear(d["breakpoints"], d["slopes"], d["value_at_zero"], d["name"])


def network_arrays(net: Network) -> dict[str, np.ndarray]:
    """``net`` as a flat dict of arrays (the ``.npz`` layout of :func:`save_npz`)."""
    arrays: dict[str, np.ndarray] = {}
    all_stages = net.stages + (net.output,)
    if net.is_sequential and all(st.activation.name == "relu" for st in net.stages):
        for i, st in enumerate(all_stages):
            arrays[f"W{i}"] = np.asarray(st.kernels[0], np.float64).T
            arrays[f"b{i}"] = np.asarray(st.bias, np.float64)
        return arrays
    arrays["format"] = np.array("jaxpoly-stages-v1")
    arrays["num_stages"] = np.array(len(all_stages))
    for i, st in enumerate(all_stages):
        arrays[f"stage{i}_sources"] = np.asarray(st.sources, np.int64)
        arrays[f"stage{i}_bias"] = np.asarray(st.bias, np.float64)
        arrays[f"stage{i}_activation"] = np.array(_activation_to_json(st.activation))
        for k, K in enumerate(st.kernels):
            arrays[f"stage{i}_kernel{k}"] = np.asarray(K, np.float64)
    return arrays


def network_from_arrays(data: dict[str, np.ndarray], where: str = "arrays", *,
                        activation: str | Activation | None = None, negative_slope: float = 0.01) -> Network:
    """Inverse of :func:`network_arrays`; also reads the plain ``W{i}, b{i}`` layout (W of shape (out, in))
    with ``activation`` (``None``: ReLU) after every layer but the last."""
    if "format" in data:
        if activation is not None:
            raise ModelLoadError(f"{where} stores every stage's activation (jaxpoly's general layout), so the "
                                 f"activation given ({activation!r}) would be ignored: leave it out")
        return _stages_from_arrays(data, where)
    activation = "relu" if activation is None else activation
    layers = {k: int(k[1:]) for k in data if re.fullmatch(r"[Wb](0|[1-9][0-9]*)", k)}
    if not any(k[0] == "W" for k in layers):
        raise InvalidNetworkError(
            f"{where} holds no weights: expected arrays W0, b0, W1, b1, … (W of shape (out, in)); found {sorted(data)}"
        )
    n = max(layers.values()) + 1
    missing = [f"{c}{i}" for i in range(n) for c in "Wb" if f"{c}{i}" not in layers]
    if missing:
        raise InvalidNetworkError(
            f"{where}: the layers must be numbered W0, b0, W1, b1, … without gaps, but the file holds "
            f"{sorted(layers, key=lambda k: (layers[k], k))} (missing {missing})"
        )
    weights = [np.asarray(data[f"W{i}"]).T for i in range(n)]
    biases = [data[f"b{i}"] for i in range(n)]
    return from_arrays(weights, biases, activation=activation, negative_slope=negative_slope)


def _stages_from_arrays(data: dict[str, np.ndarray], where: str) -> Network:
    """The general ``jaxpoly-stages-v1`` layout of :func:`network_arrays`, every array checked."""
    if str(data["format"]) != "jaxpoly-stages-v1":
        raise InvalidNetworkError(f"{where}: unknown jaxpoly npz format {data['format']!s}")

    def get(key: str) -> np.ndarray:
        if key not in data:
            raise InvalidNetworkError(f"{where}: the jaxpoly-stages-v1 file lacks the array {key!r} (damaged, or not "
                                      "written by jaxpoly.save_npz)")
        return data[key]

    num = get("num_stages")
    if num.shape != () or not np.issubdtype(num.dtype, np.integer) or int(num) < 1:
        raise InvalidNetworkError(f"{where}: num_stages must be a positive integer (the hidden stages and the "
                                  f"output stage), got {num!s}")
    stages = []
    for i in range(int(num)):
        srcs = get(f"stage{i}_sources")
        if srcs.ndim != 1 or not np.issubdtype(srcs.dtype, np.integer):
            raise InvalidNetworkError(f"{where}: stage{i}_sources must be a 1-D integer array, got {srcs!s}")
        kern = tuple(_as_float_array(get(f"stage{i}_kernel{k}"), f"{where}: stage{i}_kernel{k}")
                     for k in range(len(srcs)))
        try:
            act = _activation_from_json(str(get(f"stage{i}_activation")))
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidNetworkError(f"{where}: stage{i}_activation is not a jaxpoly activation description "
                                      f"({type(e).__name__}: {e})") from None
        bias = _as_float_array(get(f"stage{i}_bias"), f"{where}: stage{i}_bias")
        try:
            stages.append(Stage(kern, bias, tuple(int(s) for s in srcs), act))
        except InvalidNetworkError as e:
            raise InvalidNetworkError(f"{where}: stage {i}: {e}") from None
    try:
        return Network(tuple(stages[:-1]), stages[-1])
    except InvalidNetworkError as e:
        raise InvalidNetworkError(f"{where}: {e}") from None


def save_npz(net: Network, path: str | os.PathLike) -> None:
    """Write ``net`` to ``.npz``.

    Sequential ReLU networks use the plain layout read by :func:`load_npz` (``W{i}`` of shape (out, in),
    ``b{i}``); any other network stores every stage's sources, kernels and activation as well.
    """
    validate_network(net)
    with writing(path, "a network") as path:
        np.savez(path, **network_arrays(net))


def load_npz(path: str | os.PathLike, *, activation: str | Activation | None = None,
             negative_slope: float = 0.01) -> Network:
    """Read a network from ``.npz``.

    Two layouts are accepted: PyTorch-style ``W0, b0, W1, b1, …`` with ``W{i}`` of shape (out, in)
    (the bundled bunny networks; ``activation``, ReLU by default, after every layer but the last), and
    the general layout written by :func:`save_npz` for networks with skip connections or mixed
    activations, which stores its activations (an ``activation`` given for such a file is refused with
    :class:`~jaxpoly.ModelLoadError`).
    """
    path = saved_npz_name(as_path(path, "a network .npz file", ModelLoadError))
    if not os.path.exists(path):
        raise ModelNotFoundError(f"no such model file: {path}")
    try:
        data = dict(np.load(path, allow_pickle=False))
    except Exception as e:  # noqa: BLE001 - numpy raises several types for non-npz input
        raise InvalidNetworkError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from None
    return network_from_arrays(data, path, activation=activation, negative_slope=negative_slope)
