"""Model files and names → :class:`~jaxpoly.Network`: one entry point for the CLI and scripts.

:func:`load_network` accepts

* a bundled model name (``bunny-2d-2x50``, …; :data:`jaxpoly.BUNDLED_MODELS`);
* a ``.npz`` file (:func:`jaxpoly.load_npz`: ``W0, b0, …`` or the general layout of
  :func:`jaxpoly.save_npz`);
* a TorchScript file (``torch.jit.save`` of a scripted or traced ``nn.Sequential`` of supported
  layers; needs PyTorch);
* weights-only checkpoints plus an architecture description ``arch``: a Flax checkpoint written with
  ``flax.serialization.to_bytes`` / ``msgpack_serialize`` (``.msgpack``), an Orbax checkpoint folder
  (needs ``orbax-checkpoint``), or a PyTorch state dict (``torch.save(model.state_dict(), "m.pt")``).

Architecture descriptions (``arch``) describe an MLP — dense layers with one piecewise-linear activation
after every layer but the last:

* a string ``"mlp:2,64,64,1:relu"`` — kind, the layer widths from input to output (optional: the
  widths are read from the weights and only checked when given), the activation (``relu``, default;
  ``leaky_relu`` or ``leaky_relu=0.2``; ``relu6``; ``hard_tanh``; ``identity``);
* a JSON file or JSON string ``{"kind": "mlp", "widths": [2, 64, 64, 1], "activation": "leaky_relu",
  "negative_slope": 0.2}``;
* a dict of the same keys, or an :class:`Arch`.

The dense layers are found in the checkpoint as dicts holding a 2-D ``kernel`` (Flax, ``(in, out)``)
or as ``<prefix>.weight`` 2-D tensors (PyTorch, ``(out, in)``) with their biases, taken in natural
name order (Flax: ``Dense_2`` before ``Dense_10``) or in stored order (PyTorch: the registration
order), each falling back to the other when it does not chain into an MLP. A checkpoint holding a
``params`` entry (a train state) is read from it. Any other floating-point parameter (BatchNorm,
LayerNorm, convolutions, …) is refused, since the MLP read without it would be another network.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxpoly.arguments import is_integer
from jaxpoly.convert.arrays import from_arrays, load_npz
from jaxpoly.errors import InvalidNetworkError, JaxpolyError, ModelLoadError, ModelNotFoundError
from jaxpoly.files import as_path, saved_npz_name
from jaxpoly.models import _ALIASES, BUNDLED_MODELS, bundled_model_path
from jaxpoly.network import Network, activation_from_name

__all__ = ["Arch", "parse_arch", "load_network", "ModelLoadError", "ModelNotFoundError", "MODEL_FORMATS"]

log = logging.getLogger("jaxpoly")

#: The formats :func:`load_network` reads, for messages and ``--help``.
MODEL_FORMATS = ("a bundled name, .npz, TorchScript (.pt/.ts), or with an architecture (arch): a Flax msgpack "
                 "checkpoint (.msgpack), an Orbax checkpoint folder, or a PyTorch state dict (.pt/.pth)")

_NPZ_EXT = (".npz",)
_FLAX_EXT = (".msgpack", ".flax", ".mpk")
_TORCH_EXT = (".pt", ".pth", ".ts", ".torchscript", ".jit")


# ----------------------------------------------------------------------------------------------------
# Architecture descriptions
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Arch:
    """An MLP architecture: ``widths`` from input to output (``None``: read from the weights), the
    activation after every layer but the last (``None``: ReLU, unless the file stores its own), and the
    leaky-ReLU slope."""

    kind: str = "mlp"
    widths: tuple[int, ...] | None = None
    activation: str | None = None
    negative_slope: float = 0.01

    def __post_init__(self):
        if self.kind != "mlp":
            raise ModelLoadError(f"unknown architecture kind {self.kind!r}: only 'mlp' is supported")
        if self.widths is not None:
            object.__setattr__(self, "widths", _int_widths(self.widths))
        if self.widths is not None and (len(self.widths) < 2 or any(int(w) < 1 for w in self.widths)):
            raise ModelLoadError(f"architecture widths must be >= 2 positive integers (input .. output), "
                                 f"got {list(self.widths)}")
        try:
            activation_from_name(self.activation_name, self.negative_slope)
        except InvalidNetworkError as e:
            raise ModelLoadError(f"architecture: {e}") from None


    @property
    def activation_name(self) -> str:
        """The activation applied: :attr:`activation`, or ``"relu"`` when none was given."""
        return "relu" if self.activation is None else self.activation


def _int_widths(widths: Any) -> tuple[int, ...]:
    """Layer widths as ints: ints, integral finite floats (``2.0`` from JSON) or digit strings; anything
    else (``2.7``, ``1e400``, ``"x"``) is refused rather than truncated."""
    try:
        ws = list(widths)
    except TypeError:
        raise ModelLoadError(f"architecture widths must be a list of positive integers, got {widths!r}") from None
    out = []
    for w in ws:
        if isinstance(w, str) and w.strip().isdigit():
            w = int(w)
        integral = isinstance(w, (int, np.integer)) or (isinstance(w, (float, np.floating)) and math.isfinite(w)
                                                        and float(w).is_integer())
        if isinstance(w, (bool, np.bool_)) or not integral:
            raise ModelLoadError(f"architecture widths must be positive integers, got {w!r} in {ws!r}")
        out.append(int(w))
    return tuple(out)


_ARCH_HELP = ('an architecture is "mlp:IN,H1,...,OUT:ACTIVATION" (e.g. "mlp:2,64,64,1:relu"; widths optional, '
              'activation relu | leaky_relu[=SLOPE] | relu6 | hard_tanh | identity) or a JSON file '
              '{"kind": "mlp", "widths": [...], "activation": "relu"}')


def _arch_from_dict(d: dict) -> Arch:
    unknown = set(d) - {"kind", "type", "widths", "activation", "negative_slope"}
    if unknown:
        raise ModelLoadError(f"unknown architecture keys {sorted(unknown)}; {_ARCH_HELP}")
    widths = d.get("widths")
    try:
        slope = float(d.get("negative_slope", 0.01))
    except (TypeError, ValueError):
        raise ModelLoadError(f"bad architecture {d!r}; {_ARCH_HELP}") from None
    act = d.get("activation")
    return Arch(str(d.get("kind", d.get("type", "mlp"))), widths, None if act is None else str(act), slope)


def parse_arch(spec: Any) -> Arch:
    """An :class:`Arch` from a string (``"mlp:2,64,64,1:relu"``, a JSON string, or a JSON file path), a
    dict, or an :class:`Arch` (see the module docstring)."""
    if isinstance(spec, Arch):
        return spec
    if isinstance(spec, dict):
        return _arch_from_dict(spec)
    if not isinstance(spec, (str, os.PathLike)):
        raise ModelLoadError(f"arch must be a string, a dict or an Arch, got {type(spec).__name__}")
    s = os.fspath(spec).strip()
    if s.startswith("{") or (s.endswith(".json") or os.path.isfile(s)):
        try:
            if s.startswith("{"):
                d = json.loads(s)
            else:
                with open(s) as fh:
                    d = json.load(fh)
        except FileNotFoundError:
            raise ModelNotFoundError(f"no such architecture file: {s}") from None
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"architecture {s} is not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ModelLoadError(f"architecture JSON must be an object; {_ARCH_HELP}")
        return _arch_from_dict(d)
    parts = s.split(":")
    if parts[0] != "mlp" or len(parts) > 3:
        raise ModelLoadError(f"cannot parse architecture {s!r}; {_ARCH_HELP}")
    widths, act, slope = None, None, 0.01
    for p in parts[1:]:
        p = p.strip()
        if re.fullmatch(r"\d+(\s*,\s*\d+)*", p):
            widths = tuple(int(w) for w in p.split(","))
        else:
            m = re.fullmatch(r"([a-z_0-9]+)(?:=|\()?([-+0-9.eE]+)?\)?", p)
            if not m:
                raise ModelLoadError(f"cannot parse {p!r} in architecture {s!r}; {_ARCH_HELP}")
            act = m.group(1)
            if m.group(2) is not None and act != "leaky_relu":
                raise ModelLoadError(f"the activation {act!r} takes no parameter (only leaky_relu=SLOPE does), got "
                                     f"{p!r}; {_ARCH_HELP}")
            if m.group(2) is not None:
                try:
                    slope = float(m.group(2))
                except ValueError:
                    raise ModelLoadError(f"bad slope in {p!r}; {_ARCH_HELP}") from None
    return Arch("mlp", widths, act, slope)


def _mlp(layers: list[tuple[str, np.ndarray, np.ndarray]], arch: Arch, where: str, *,
         stored_first: bool = False) -> Network:
    """A network from dense layers ``(name, W (in, out), b (out,))`` checked against ``arch.widths``, in
    the order :func:`dense_layer_order` finds; ``stored_first``: the stored order wins where it chains
    (PyTorch state dicts keep the registration order; Flax trees are sorted by name whenever JAX maps
    them)."""
    if not layers:
        raise ModelLoadError(f"{where}: found no dense layers (2-D kernels/weights) in the checkpoint")
    stored = stored_first and all(a[1].shape[1] == b[1].shape[0] for a, b in zip(layers, layers[1:]))
    if not stored:
        order = dense_layer_order([n for n, _, _ in layers], [W.shape for _, W, _ in layers], where, ModelLoadError)
        layers = [layers[i] for i in order]
    widths = (layers[0][1].shape[0],) + tuple(W.shape[1] for _, W, _ in layers)
    if arch.widths is not None and tuple(arch.widths) != widths:
        raise ModelLoadError(f"{where}: the architecture says widths {list(arch.widths)} but the checkpoint "
                             f"holds {list(widths)}")
    try:
        return from_arrays([W for _, W, _ in layers], [b for _, _, b in layers], activation=arch.activation_name,
                           negative_slope=arch.negative_slope)
    except InvalidNetworkError as e:
        raise ModelLoadError(f"{where}: {e}") from None


def dense_layer_order(names: list[str], shapes: list[tuple[int, int]], where: str,
                      error: type[Exception] = InvalidNetworkError) -> list[int]:
    """The order of an MLP's dense layers, from their names and kernel shapes ``(in, out)``: the one
    order in which the shapes chain and layers whose names differ only in their numbers (``Dense_2``,
    ``Dense_10``; ``fc1``, ``fc2``) keep their numbers' order. Names carry no order across such
    families (``input``, ``hidden``, ``output``), so where the shapes chain in more than one order
    (``hidden`` and ``input`` both 2 -> 2) ``error`` is raised instead of guessing."""
    family: dict[str, list[int]] = {}
    for i in sorted(range(len(names)), key=lambda i: _natural_key(names[i])):
        family.setdefault(re.sub(r"\d+", "#", names[i]), []).append(i)
    queues = list(family.values())
    memo: dict = {}

    def count(taken: tuple[int, ...], width: int | None) -> int:
        """Completions (up to 2) once ``taken[f]`` layers of family ``f`` are placed, the last giving ``width``."""
        if all(t == len(q) for t, q in zip(taken, queues)):
            return 1
        if (taken, width) not in memo:
            n = 0
            for f, q in enumerate(queues):
                if taken[f] < len(q) and (width is None or shapes[q[taken[f]]][0] == width) and n < 2:
                    n += count(taken[:f] + (taken[f] + 1,) + taken[f + 1:], shapes[q[taken[f]]][1])
            memo[taken, width] = min(n, 2)
        return memo[taken, width]

    def listing() -> str:
        return ", ".join(f"{n}: {a}->{b}" for n, (a, b) in zip(names, shapes))

    if len(names) > 1 and len(queues) > 12:  # the search visits up to 2^families states
        raise error(f"{where}: cannot order {len(names)} dense layers of {len(queues)} differently named "
                    "families by their names; name them with one prefix and their index (Dense_0, Dense_1, ...)")
    found = count((0,) * len(queues), None)
    if found == 0:
        raise error(f"{where}: the dense layers do not chain into an MLP in any order their names allow ({listing()})")
    if found > 1:
        raise error(f"{where}: the dense layers chain into an MLP in more than one order ({listing()}), and their "
                    "names do not say which (layers named with one prefix and their index do: Dense_0, Dense_1, ...); "
                    "rename them, or convert the model with jaxpoly.from_flax(module, variables, input_dim=...), "
                    "which follows what it computes")
    order, taken, width = [], [0] * len(queues), None
    while len(order) < len(names):
        f = next(f for f, q in enumerate(queues) if taken[f] < len(q)
                 and (width is None or shapes[q[taken[f]]][0] == width)
                 and count(tuple(taken[:f] + [taken[f] + 1] + taken[f + 1:]), shapes[q[taken[f]]][1]) == 1)
        order.append(queues[f][taken[f]])
        width = shapes[order[-1]][1]
        taken[f] += 1
    return order


def _natural_key(name: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name)]


# ----------------------------------------------------------------------------------------------------
# Flax / Orbax parameter trees
# ----------------------------------------------------------------------------------------------------


def _unwrap(v: Any) -> Any:
    """nnx state leaves serialised as ``{"value": array}`` → the array."""
    if isinstance(v, dict) and set(v) == {"value"}:
        return v["value"]
    return v


def _is_float(x: Any) -> bool:
    """A real or complex floating-point array or tensor (a parameter; integer leaves are counters, RNG
    state or other bookkeeping)."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        return False
    if hasattr(x, "is_floating_point"):  # a torch tensor
        return bool(x.is_floating_point() or x.is_complex())
    try:
        dt = np.dtype(dt)
    except TypeError:
        return False
    return dt.kind in "fc" or "float" in dt.name


def _real_array(x: Any, what: str, where: str) -> np.ndarray:
    """A checkpoint's array (NumPy, JAX or torch) as float64, refusing complex and non-numeric values."""
    if hasattr(x, "detach"):  # a torch tensor
        if x.is_complex():
            raise ModelLoadError(f"{where}: {what} is complex ({x.dtype}); a piecewise-affine network has real weights")
        return x.detach().cpu().double().numpy()
    a = np.asarray(x)
    if np.iscomplexobj(a):
        raise ModelLoadError(f"{where}: {what} is complex ({a.dtype}); a piecewise-affine network has real weights")
    try:
        return a.astype(np.float64)
    except (TypeError, ValueError):
        raise ModelLoadError(f"{where}: {what} is a {type(x).__name__} of dtype {a.dtype}, not an array of "
                             "numbers") from None


def _listing(names: list[str], most: int = 6) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", … ({len(names)} in all)" if len(names) > most else "")


def dense_layers_from_tree(tree: Any, where: str, *, error: type[Exception] = ModelLoadError,
                           reader: str = "an 'mlp' architecture", as_numpy: bool = True) -> list[tuple[str, Any, Any]]:
    """The Dense layers ``(path, kernel (in, out), bias (out,))`` of a Flax parameter tree (``{"params":
    ...}`` or the params themselves), in the tree's order; batch statistics and any other floating-point
    parameter are refused with ``error`` (the MLP ``reader`` makes without them would be a different
    network). ``as_numpy``: kernels and biases as float64 NumPy (else as given, e.g. traced; a missing
    bias is then zeros of the kernel's dtype)."""
    if isinstance(tree, Mapping) and isinstance(tree.get("params"), Mapping) and "kernel" not in tree:
        stats = tree.get("batch_stats")
        if isinstance(stats, Mapping) and stats:
            raise error(
                f"{where}: the variables hold batch statistics (batch_stats: {_listing(sorted(map(str, stats)))}), "
                f"so the model has BatchNorm layers, which {reader} does not read; convert it with "
                "jaxpoly.from_flax(module, variables, input_dim=...) (BatchNorm with use_running_average=True is "
                "folded), and save the network with jaxpoly.save_npz"
            )
        tree = tree["params"]
    out: list[tuple[str, Any, Any]] = []
    unused: list[str] = []

    def walk(node: Any, path: str) -> None:
        node = _unwrap(node)
        if not isinstance(node, Mapping):
            if _is_float(node):
                unused.append(path or "/")
            return
        if "kernel" in node:
            k, b = _unwrap(node["kernel"]), _unwrap(node.get("bias"))
            if as_numpy:
                k = _real_array(k, f"{path or '/'}/kernel", where)
            if np.ndim(k) != 2:
                raise error(f"{where}: layer {path or '/'} has a {np.ndim(k)}-D kernel of shape {np.shape(k)}; "
                            f"{reader} reads only Dense layers (convert other models with jaxpoly.from_flax)")
            if b is None:
                b = np.zeros(k.shape[1]) if as_numpy else jnp.zeros(k.shape[1:], jnp.result_type(k))
            elif as_numpy:
                b = _real_array(b, f"{path or '/'}/bias", where)
            out.append((path, k, b))
            for key, child in node.items():
                if key not in ("kernel", "bias"):
                    walk(child, f"{path}/{key}" if path else str(key))
            return
        for key, child in node.items():
            walk(child, f"{path}/{key}" if path else str(key))

    walk(tree, "")
    if unused:
        raise error(
            f"{where}: the parameters include some that are not Dense layers ({_listing(unused)}); {reader} reads "
            "only Dense kernels and biases, and the network without those layers (BatchNorm, LayerNorm, "
            "convolutions, …) would compute something else. Convert such models with "
            "jaxpoly.from_flax(module, variables, input_dim=...) (and save them with jaxpoly.save_npz)"
        )
    return out


def _load_flax_msgpack(path: str, arch: Arch | None) -> Network:
    from flax import serialization

    try:
        with open(path, "rb") as fh:
            tree = serialization.msgpack_restore(fh.read())
    except Exception as e:  # noqa: BLE001 - msgpack raises many types on foreign bytes
        raise ModelLoadError(f"{path} is not a readable Flax msgpack checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(tree, dict):
        raise ModelLoadError(f"{path} is not a Flax checkpoint (it holds a {type(tree).__name__}, not a dict of "
                             "parameters)")
    return _mlp(dense_layers_from_tree(tree, path), _need_arch(arch, path, "a Flax msgpack checkpoint"), path)


def _orbax_item_dir(path: str) -> str | None:
    """The folder Orbax restores: ``path`` itself, the latest numeric step folder of a
    CheckpointManager directory, and inside it the only item folder (``default``, ``state``, …);
    ``None`` when no Orbax metadata is found on the way."""
    for _ in range(3):
        names = os.listdir(path)
        if "_METADATA" in names or "manifest.ocdbt" in names or "checkpoint" in names:
            return path
        steps = sorted((n for n in names if n.isdigit() and os.path.isdir(os.path.join(path, n))), key=int)
        subdirs = [n for n in names if os.path.isdir(os.path.join(path, n)) and not n.startswith((".", "_"))]
        if steps:
            path = os.path.join(path, steps[-1])
        elif len(subdirs) == 1:
            path = os.path.join(path, subdirs[0])
        else:
            return None
    return None


def _load_orbax(path: str, arch: Arch | None) -> Network:
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        raise ModelLoadError(f"{path} is a folder (an Orbax checkpoint?); reading it needs orbax-checkpoint: "
                             "pip install orbax-checkpoint") from None
    item = _orbax_item_dir(path)
    if item is None:
        raise ModelLoadError(f"{path} is a folder but not an Orbax checkpoint (no _METADATA found); "
                             f"expected {MODEL_FORMATS}")
    arch = _need_arch(arch, path, "an Orbax checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "sharding info not provided": we restore to host arrays
            tree = ocp.PyTreeCheckpointer().restore(os.path.abspath(item))
    except Exception as e:  # noqa: BLE001 - orbax raises many types for foreign folders
        raise ModelLoadError(f"{path} is not a readable Orbax checkpoint ({type(e).__name__}: {e})") from None
    return _mlp(dense_layers_from_tree(tree, path), arch, path)


# ----------------------------------------------------------------------------------------------------
# PyTorch
# ----------------------------------------------------------------------------------------------------


def _import_torch(path: str):
    try:
        import torch
    except ImportError:
        raise ModelLoadError(f"{path} is a PyTorch file; reading it needs PyTorch: pip install 'jaxpoly[torch]'") \
            from None
    return torch


def _is_torchscript(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


_CODE_CALL = {"LeakyReLU": r"leaky_relu_?", "Hardtanh": r"hardtanh_?"}
_CODE_ARGS = {"LeakyReLU": _CODE_CALL["LeakyReLU"] + r"\(\w+, ([^,)]+)",
              "Hardtanh": _CODE_CALL["Hardtanh"] + r"\(\w+, ([^,)]+), ([^,)]+)"}
_CODE_DEFAULTS = {"LeakyReLU": (0.01,), "Hardtanh": (-1.0, 1.0)}  # torch.nn's


def _script_float(mod: Any, attr: str, kind: str, group: int) -> float:
    """A scripted module's constant (``negative_slope``, ``min_val``…): an attribute when scripted, read
    back from the generated code when traced."""
    try:
        return float(getattr(mod, attr))
    except (AttributeError, RuntimeError):
        pass
    code = getattr(mod, "code", "")
    m = re.search(_CODE_ARGS[kind], code)
    if m:
        return float(m.group(group))
    if re.search(_CODE_CALL[kind] + r"\(\w+\)", code):  # traced at the defaults, which tracing leaves out
        return _CODE_DEFAULTS[kind][group - 1]
    raise ModelLoadError(f"cannot read {attr} of a TorchScript {kind} layer")


def _rebuild_sequential(mod: Any, torch: Any, where: str) -> Any:
    """An ``nn.Sequential`` rebuilt from a TorchScript module tree (for :func:`jaxpoly.from_torch`)."""
    nn = torch.nn
    kind = getattr(mod, "original_name", type(mod).__name__)
    if kind == "Sequential":
        return nn.Sequential(*[_rebuild_sequential(c, torch, f"{where}.{n}") for n, c in mod.named_children()])
    if kind == "Linear":
        w = mod.weight.detach()
        b = getattr(mod, "bias", None)
        layer = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=w.dtype)
        with torch.no_grad():
            layer.weight.copy_(w)
            if b is not None:
                layer.bias.copy_(b.detach())
        return layer
    if kind == "ReLU":
        return nn.ReLU()
    if kind == "ReLU6":
        return nn.ReLU6()
    if kind == "LeakyReLU":
        return nn.LeakyReLU(_script_float(mod, "negative_slope", kind, 1))
    if kind == "Hardtanh":
        return nn.Hardtanh(_script_float(mod, "min_val", kind, 1), _script_float(mod, "max_val", kind, 2))
    if kind in ("Identity", "Dropout"):
        return nn.Identity()
    if kind == "Flatten":
        return nn.Flatten()
    raise ModelLoadError(
        f"{where}: TorchScript layer of type {kind!r} is not supported; TorchScript models must be (nested) "
        "nn.Sequential of Linear, ReLU, LeakyReLU, ReLU6, Hardtanh, Identity, Flatten, Dropout. For other "
        "models convert the model in Python with jaxpoly.from_torch (which also folds eval-mode BatchNorm1d) "
        "and save the network with jaxpoly.save_npz; a plain MLP can also be read from its state dict with an "
        "architecture (arch='mlp:…')"
    )


def _load_torchscript(path: str, arch: Arch | None) -> Network:
    torch = _import_torch(path)
    from jaxpoly.convert.torch import from_torch

    try:
        mod = torch.jit.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(f"{path} is not a readable TorchScript file ({type(e).__name__}: {e})") from None
    if arch is not None:
        return _mlp(_dense_layers_from_state_dict(mod.state_dict(), path), arch, path, stored_first=True)
    if getattr(mod, "original_name", "") != "Sequential":
        raise ModelLoadError(
            f"{path}: the TorchScript model is a custom module ({getattr(mod, 'original_name', '?')}), whose "
            "forward cannot be read; script an nn.Sequential, or pass an architecture (arch='mlp:…') to read "
            "its Linear weights as an MLP"
        )
    seq = _rebuild_sequential(mod, torch, os.path.basename(path))
    try:
        return from_torch(seq)
    except JaxpolyError as e:
        raise ModelLoadError(f"{path}: {e}") from None


def _dense_layers_from_state_dict(sd: Any, where: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The Linear layers (2-D ``<prefix>weight`` and ``<prefix>bias``) of a PyTorch state dict; any other
    floating-point tensor is refused (an MLP read without it would be a different network)."""
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict):
        raise ModelLoadError(f"{where} holds a {type(sd).__name__}, not a state dict")
    if any(str(k).endswith("running_mean") for k in sd):
        raise ModelLoadError(
            f"{where}: the state dict holds BatchNorm layers, which the 'mlp' architecture does not describe; "
            "build the model in Python, load the state dict into it and convert it with "
            "jaxpoly.from_torch(model.eval()) (eval-mode BatchNorm1d is folded into the Linear layers), then "
            "jaxpoly.save_npz(net, path) writes a file every jaxpoly command reads"
        )
    out, used = [], set()
    for k, w in sd.items():
        if not str(k).endswith("weight") or getattr(w, "ndim", 0) != 2:
            continue
        prefix = k[: -len("weight")]
        b = sd.get(prefix + "bias")
        W = _real_array(_tensor(w, k, where), k, where).T
        bb = np.zeros(W.shape[1]) if b is None else _real_array(_tensor(b, prefix + "bias", where), prefix + "bias",
                                                                where)
        used.update((k, prefix + "bias"))
        out.append((prefix.rstrip("."), W, bb))
    unused = [str(k) for k, v in sd.items() if k not in used and _is_float(v)]
    if unused:
        raise ModelLoadError(
            f"{where}: the state dict holds parameters that are not Linear layers ({_listing(unused)}); an 'mlp' "
            "architecture reads only Linear weights and biases, and the network without those layers (LayerNorm, "
            "convolutions, …) would compute something else. Convert such models in Python with "
            "jaxpoly.from_torch(model) where it supports them, and save the network with jaxpoly.save_npz"
        )
    return out


def _tensor(t: Any, key: str, where: str) -> Any:
    if not hasattr(t, "detach"):
        raise ModelLoadError(f"{where}: {key} is of type {type(t).__name__}, not a tensor; a state dict maps parameter "
                             "names to tensors (torch.save(model.state_dict(), path))")
    return t


def _load_torch(path: str, arch: Arch | None) -> Network:
    if _is_torchscript(path):
        return _load_torchscript(path, arch)
    torch = _import_torch(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ModelLoadError(
            f"{path} is not a readable PyTorch state dict or TorchScript file ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); pickled nn.Module objects are not loaded (unsafe): "
            "save model.state_dict() or torch.jit.script(model)"
        ) from None
    return _mlp(_dense_layers_from_state_dict(sd, path), _need_arch(arch, path, "a PyTorch state dict"), path,
                stored_first=True)


# ----------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------


def _need_arch(arch: Arch | None, path: str, what: str) -> Arch:
    if arch is None:
        raise ModelLoadError(f"{path} is {what}: it holds weights only, so it needs an architecture "
                             f"(--arch / arch=), e.g. \"mlp:2,64,64,1:relu\"")
    return arch


def _sniff(path: str) -> str:
    """``npz | torch | flax | orbax | unknown`` from the extension, else from the content."""
    if os.path.isdir(path):
        return "orbax"
    ext = os.path.splitext(path)[1].lower()
    if ext in _NPZ_EXT:
        return "npz"
    if ext in _TORCH_EXT:
        return "torch"
    if ext in _FLAX_EXT:
        return "flax"
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        names = None
    if names is not None:
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        return "unknown"
    with open(path, "rb") as fh:
        head = fh.read(1)
    # msgpack maps start with a fixmap (0x80-0x8f), map16 (0xde) or map32 (0xdf) byte
    if head and (0x80 <= head[0] <= 0x8F or head[0] in (0xDE, 0xDF)):
        return "flax"
    return "unknown"


def load_network(model: str | os.PathLike, *, arch: Any = None, input_dim: int | None = None) -> Network:
    """A network from a bundled name or a model file (formats: see the module docstring).

    Args:
      model: a bundled model name (:data:`jaxpoly.BUNDLED_MODELS`, or ``bunny-2d``/``bunny-3d``), or the
        path of a ``.npz`` file, TorchScript file, Flax msgpack checkpoint, Orbax checkpoint folder or
        PyTorch state dict.
      arch: the architecture of a weights-only checkpoint (``"mlp:2,64,64,1:relu"``, a JSON file or
        string, a dict or an :class:`Arch`); for TorchScript it reads the file's Linear weights as that MLP
        instead of its module tree. For ``.npz`` files and bundled names its widths, if given, are
        checked against the file, and its activation applies to the plain ``W0, b0, …`` layout
        (``"mlp:leaky_relu=0.2"`` reads such a file with leaky ReLUs); a file in :func:`jaxpoly.save_npz`'s
        general layout keeps the activations it stores (an
        activation in ``arch`` is refused for it).
      input_dim: when given, the loaded network must have this input dimension.
    Returns:
      A :class:`~jaxpoly.Network` with float64 NumPy weights.
    Raises:
      ModelNotFoundError: no such file and no such bundled model (the message lists the names).
      ModelLoadError: unknown or unreadable format, an architecture that does not fit, a missing
        architecture, PyTorch or Orbax not installed, or the wrong input dimension.
      InvalidNetworkError, UnsupportedLayerError: the weights are not a valid piecewise-affine network.
    """
    s = as_path(model, "a model file or a bundled model's name", ModelLoadError)
    arch = None if arch is None else parse_arch(arch)
    if s not in BUNDLED_MODELS and s not in _ALIASES:
        s = saved_npz_name(s)
    if s in BUNDLED_MODELS or s in _ALIASES:
        net = _npz(bundled_model_path(s), arch)
    elif not os.path.exists(s):
        known = ", ".join(list(BUNDLED_MODELS) + list(_ALIASES))
        raise ModelNotFoundError(f"{s!r} is neither a file nor a bundled model (bundled: {known})")
    else:
        kind = _sniff(s)
        log.debug("loading %s as %s", s, kind)
        if kind == "npz":
            net = _npz(s, arch)
        elif kind == "torch":
            net = _load_torch(s, arch)
        elif kind == "flax":
            net = _load_flax_msgpack(s, arch)
        elif kind == "orbax":
            net = _load_orbax(s, arch)
        else:
            raise ModelLoadError(f"{s}: unknown model format; expected {MODEL_FORMATS}")
    if input_dim is not None and not is_integer(input_dim):
        raise ModelLoadError(f"input_dim must be a positive integer or None, got {input_dim!r}")
    if input_dim is not None and net.input_dim != int(input_dim):
        raise ModelLoadError(f"{s}: the network's input dimension is {net.input_dim}, expected {input_dim}")
    return net


def _npz(path: str, arch: Arch | None) -> Network:
    if arch is None:
        return load_npz(path)
    net = load_npz(path, activation=arch.activation, negative_slope=arch.negative_slope)
    widths = (net.input_dim,) + tuple(net.widths) + (net.output_dim,)
    if arch.widths is not None and tuple(arch.widths) != widths:
        raise ModelLoadError(f"{path}: the architecture says widths {list(arch.widths)} but the file holds "
                             f"{list(widths)}")
    return net
