"""Networks from Flax modules (``flax.linen`` and ``flax.nnx``) by abstract interpretation of a jaxpr.

The module is traced with :func:`jax.make_jaxpr` on a batch of one example, in float64, and the jaxpr
is interpreted with every value either a *constant* (parameters and anything computed from them
alone) or an *affine expression* of the network input and of the hidden stages created so far::

    value = sum_s  sum_i  a_s[i] * coefs[s][i, ...]  +  const

where ``a_0`` is the flattened input and ``a_j`` (``j >= 1``) the activations of hidden stage ``j``.
Linear primitives act on each coefficient row; piecewise-linear ones (``max``, ``min``, ``abs``,
``jnp.where`` with a continuous split) close the current affine expression into a new hidden
:class:`~jaxpoly.network.Stage` and continue from its activations. Everything else that touches the
input raises :class:`~jaxpoly.errors.UnsupportedLayerError` naming the primitive.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Sequence

import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import numpy as np

from jaxpoly.errors import InvalidNetworkError, UnsupportedLayerError
from jaxpoly.network import Activation, Network, Stage, identity, leaky_relu, piecewise_linear, relu

__all__ = ["from_flax"]

# Relative tolerance when deciding that two affine expressions are proportional (float64 rounding of
# e.g. ``0.01 * x`` versus ``x`` is far below it; a genuinely different expression is far above it).
_PROP_RTOL = 1e-11


# ----------------------------------------------------------------------------------------------------
# Values of the abstract interpretation
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Affine:
    """``sum_s a_s @ coefs[s].reshape(n_s, -1) + const`` with ``coefs[s]`` of shape ``(n_s, *shape)``
    (float64 NumPy arrays)."""

    coefs: dict[int, np.ndarray]
    const: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.const.shape)


@dataclasses.dataclass
class _Sign:
    """A comparison of input-dependent values, true where ``z > 0`` (the boundary never matters: it
    is only accepted where the selected result is continuous)."""

    z: _Affine


_Value = Any  # _Affine | _Sign | constant array


def _is_const(v: _Value) -> bool:
    return not isinstance(v, (_Affine, _Sign))


def _is_extended(dt: Any) -> bool:
    """PRNG key arrays and other dtypes NumPy cannot hold."""
    try:
        return jnp.issubdtype(dt, jax.dtypes.extended)
    except TypeError:
        return True


def _widen(x: Any) -> Any:
    """Constants become NumPy arrays, floats in float64 whatever the model's dtype, so the
    conversion is exact; PRNG keys stay JAX arrays."""
    dt = getattr(x, "dtype", None)
    if dt is None:
        return np.asarray(x)
    if _is_extended(dt):
        return x
    if jnp.issubdtype(dt, jnp.floating):
        return np.asarray(x, np.float64)
    return np.asarray(x)


_DTYPE_PARAMS = ("new_dtype", "preferred_element_type", "dtype", "out_dtype")


def _widen_params(prim_name: str, params: dict) -> dict:
    if prim_name == "bitcast_convert_type":
        return params
    out = dict(params)
    for key in _DTYPE_PARAMS:
        dt = out.get(key)
        if dt is not None:
            try:
                floating = jnp.issubdtype(dt, jnp.floating)
            except TypeError:
                continue
            if floating:
                out[key] = np.dtype(np.float64)
    return out


def _as_affine(v: _Value) -> _Affine:
    return v if isinstance(v, _Affine) else _Affine({}, np.asarray(v, np.float64))


def _broadcast(a: _Affine, shape: tuple[int, ...]) -> _Affine:
    coefs = {s: np.broadcast_to(c, c.shape[:1] + shape) for s, c in a.coefs.items()}
    return _Affine(coefs, np.broadcast_to(a.const, shape))


def _add(a: _Value, b: _Value) -> _Value:
    """``a + b`` with NumPy broadcasting."""
    if _is_const(a) and _is_const(b):
        return np.asarray(a) + np.asarray(b)
    a, b = _as_affine(a), _as_affine(b)
    shape = tuple(np.broadcast_shapes(a.shape, b.shape))
    a, b = _broadcast(a, shape), _broadcast(b, shape)
    coefs = dict(a.coefs)
    for s, c in b.coefs.items():
        coefs[s] = coefs[s] + c if s in coefs else c
    return _Affine(coefs, a.const + b.const)


def _scale(k: Any, a: _Value) -> _Value:
    """``k * a`` for a constant ``k`` broadcastable to ``a``'s shape."""
    k = np.asarray(k, np.float64)
    if _is_const(a):
        return k * np.asarray(a)
    shape = tuple(np.broadcast_shapes(k.shape, a.shape))
    a = _broadcast(a, shape)
    return _Affine({s: c * k for s, c in a.coefs.items()}, a.const * k)


def _sub(a: _Value, b: _Value) -> _Value:
    return _add(a, _scale(-1.0, b))


def _stacked(a: _Affine, sources: Sequence[int], widths: dict[int, int]) -> np.ndarray:
    """All coefficients and the constant of ``a`` as one ``(P, N)`` matrix (rows: source units then
    the constant; columns: elements)."""
    n = int(np.prod(a.shape, dtype=np.int64))
    rows = []
    for s in sources:
        c = a.coefs.get(s)
        rows.append(np.zeros((widths[s], n)) if c is None else np.reshape(c, (-1, n)))
    rows.append(np.reshape(a.const, (1, n)))
    return np.concatenate(rows, axis=0)


def _proportional(u: _Value, v: _Value) -> np.ndarray | None:
    """Elementwise ``k`` with ``u = k * v`` as affine expressions (same shape), or ``None``.

    Elements where ``v`` is identically zero need ``u`` identically zero there too (then ``k = 0``).
    """
    u, v = _as_affine(u), _as_affine(v)
    shape = tuple(np.broadcast_shapes(u.shape, v.shape))
    u, v = _broadcast(u, shape), _broadcast(v, shape)
    widths = {s: c.shape[0] for s, c in list(u.coefs.items()) + list(v.coefs.items())}
    sources = sorted(widths)
    U, V = _stacked(u, sources, widths), _stacked(v, sources, widths)
    vv = np.sum(V * V, axis=0)
    k = np.where(vv > 0, np.sum(U * V, axis=0) / np.where(vv > 0, vv, 1.0), 0.0)
    resid = np.max(np.abs(U - k * V), axis=0)
    scale = np.maximum(np.max(np.abs(U), axis=0), np.abs(k) * np.max(np.abs(V), axis=0))
    if np.any(resid > _PROP_RTOL * scale):
        return None
    return k.reshape(shape)


def _uniform(k: np.ndarray) -> float | None:
    """The common value of ``k`` if all entries agree (to rounding), else ``None``."""
    k = np.asarray(k, np.float64).ravel()
    if k.size == 0:
        return None
    lo, hi = float(k.min()), float(k.max())
    if hi - lo > 1e-12 * max(1.0, abs(hi), abs(lo)):
        return None
    return _snap(float(np.median(k)))


def _snap(t: float) -> float:
    """Round away float noise such as ``0.010000000000000002`` so activation names stay readable."""
    short = float(f"{t:.12g}")
    return short if abs(short - t) <= 1e-14 * max(1.0, abs(t)) else t


def _activation(alpha: float, beta: float) -> Activation:
    """The activation with slope ``alpha`` below 0 and ``beta`` above."""
    if (alpha, beta) == (0.0, 1.0):
        return relu()
    if (alpha, beta) == (-1.0, 1.0):
        return piecewise_linear((0.0,), (-1.0, 1.0), name="abs")
    if beta == 1.0:
        return leaky_relu(alpha)
    return piecewise_linear((0.0,), (alpha, beta), name=f"pwl({alpha:g},{beta:g})")


# ----------------------------------------------------------------------------------------------------
# NumPy versions of common primitives, with a leading batch axis on every array operand; they avoid a
# JAX compilation per primitive and shape, which dominates the conversion time otherwise.
# ----------------------------------------------------------------------------------------------------


def _np_broadcast_in_dim(x: np.ndarray, shape: Sequence[int], broadcast_dimensions: Sequence[int], **_) -> np.ndarray:
    inter = [x.shape[0]] + [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        inter[d + 1] = x.shape[i + 1]
    return np.broadcast_to(x.reshape(inter), (x.shape[0],) + tuple(shape))


def _np_slice(x: np.ndarray, start_indices, limit_indices, strides, **_) -> np.ndarray:
    strides = strides or (1,) * len(start_indices)
    return x[(slice(None),) + tuple(slice(a, b, c) for a, b, c in zip(start_indices, limit_indices, strides))]


def _shift(axes: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(a) + 1 for a in axes)


_NUMPY_PRIMS: dict[str, Callable[..., np.ndarray]] = {
    "add": lambda a, b: a + b,
    "add_any": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "neg": lambda a: -a,
    "mul": lambda a, b, **_: a * b,
    "div": lambda a, b: a / b,
    "max": lambda a, b: np.maximum(a, b),
    "min": lambda a, b: np.minimum(a, b),
    "sqrt": lambda a, **_: np.sqrt(a),
    "rsqrt": lambda a, **_: 1.0 / np.sqrt(a),
    "copy": lambda a: a,
    "copy_p": lambda a: a,
    "convert_element_type": lambda a, new_dtype, **_: a.astype(new_dtype),
    "reshape": lambda a, new_sizes, **_: a.reshape((a.shape[0],) + tuple(new_sizes)),
    "broadcast_in_dim": _np_broadcast_in_dim,
    "transpose": lambda a, permutation: a.transpose((0,) + _shift(permutation)),
    "squeeze": lambda a, dimensions: np.squeeze(a, axis=_shift(dimensions)),
    "expand_dims": lambda a, dimensions: np.expand_dims(a, axis=_shift(dimensions)),
    "reduce_sum": lambda a, axes, **_: a.sum(axis=_shift(axes), dtype=a.dtype),
    "concatenate": lambda *xs, dimension: np.concatenate(xs, axis=dimension + 1),
    "slice": _np_slice,
    "rev": lambda a, dimensions: np.flip(a, axis=_shift(dimensions)),
}
_ELEMENTWISE = {"add", "add_any", "sub", "mul", "div", "max", "min"}
_NUMPY_FLOAT_ONLY = {"div", "sqrt", "rsqrt", "max", "min"}  # integer semantics differ from lax


def _numpy_ok(name: str, params: dict, args: Sequence[Any]) -> bool:
    if name not in _NUMPY_PRIMS or not all(isinstance(a, np.ndarray) for a in args):
        return False
    if name == "reshape" and params.get("dimensions") is not None:
        return False
    if name == "broadcast_in_dim" and list(params["broadcast_dimensions"]) != sorted(params["broadcast_dimensions"]):
        return False
    if name in _NUMPY_FLOAT_ONLY and not all(a.dtype == np.float64 for a in args):
        return False
    return all(a.dtype != object for a in args)


def _bind_batched(prim: Any, params: dict, args: Sequence[Any], axes: Sequence[int | None]) -> list[np.ndarray]:
    """``prim`` mapped over axis 0 of the operands whose axis is 0 (others unbatched)."""
    name = prim.name
    if _numpy_ok(name, params, args):
        batch = next(a.shape[0] for a, ax in zip(args, axes) if ax == 0)
        if name in _ELEMENTWISE:
            # lax lets a scalar meet an array: unbatched scalars broadcast from the right already,
            # batched ones need their per-example axes spelled out
            rank = max(a.ndim - (ax == 0) for a, ax in zip(args, axes))
            np_args = [a.reshape(a.shape[:1] + (1,) * rank) if ax == 0 and a.ndim == 1 else a
                       for a, ax in zip(args, axes)]
        else:
            np_args = [a if ax == 0 else np.broadcast_to(a, (batch,) + a.shape) for a, ax in zip(args, axes)]
        keep = {k: v for k, v in params.items() if k not in ("sharding", "out_sharding", "accuracy")}
        out = _NUMPY_PRIMS[name](*np_args, **keep)
        return [np.asarray(out)]
    out = jax.vmap(lambda *xs: prim.bind(*xs, **params), in_axes=list(axes))(*args)
    outs = list(out) if prim.multiple_results else [out]
    return [_widen(o) for o in outs]


def _bind_const(prim: Any, params: dict, args: Sequence[Any]) -> list[Any]:
    """``prim`` on constants."""
    if _numpy_ok(prim.name, params, args):
        return [np.asarray(o[0]) for o in _bind_batched(prim, params, [a[None] for a in args], [0] * len(args))]
    out = prim.bind(*args, **params)
    outs = list(out) if prim.multiple_results else [out]
    return [_widen(o) for o in outs]


# ----------------------------------------------------------------------------------------------------
# Primitive tables
# ----------------------------------------------------------------------------------------------------

_ALL = None  # "jointly linear in every operand"

# Primitives that are jointly linear in the listed operands (the others must be constants).
_LINEAR: dict[str, tuple[int, ...] | None] = {
    "add": _ALL, "sub": _ALL, "add_any": _ALL, "neg": _ALL, "concatenate": _ALL, "pad": _ALL,
    "reshape": (0,), "broadcast_in_dim": (0,), "transpose": _ALL, "squeeze": _ALL, "expand_dims": _ALL,
    "slice": _ALL, "rev": _ALL, "reduce_sum": _ALL, "copy": _ALL, "copy_p": _ALL, "cumsum": _ALL,
    "reduce_window_sum": _ALL, "sharding_constraint": _ALL, "split": _ALL,
    "dynamic_slice": (0,), "dynamic_update_slice": (0, 1), "gather": (0,), "scatter-add": (0, 2),
    "scatter_add": (0, 2), "scatter": (0, 2), "div": (0,), "scatter-mul": (0,), "scatter_mul": (0,), "tile": _ALL,
}
# Bilinear primitives: linear in whichever operand depends on the input, if only one does.
_BILINEAR = {"mul", "dot_general", "conv_general_dilated"}
# Primitives that draw random bits: a model using them at inference is not one fixed function.
_RANDOM = {"random_bits", "threefry2x32", "rng_bit_generator", "rng_uniform"}
# Shape-only primitives that may also move a comparison result around (``jnp.where`` broadcasting).
_STRUCTURAL = {"broadcast_in_dim", "reshape", "transpose", "squeeze", "expand_dims", "slice", "rev", "copy",
               "copy_p", "sharding_constraint"}
_CALLS_WITH_JAXPR = ("jaxpr", "call_jaxpr", "fun_jaxpr")
# Primitives that just call a sub-jaxpr on their operands (interpreted inline).
_CALL_PRIMITIVES = {"pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
                    "custom_vjp_call_jaxpr", "remat", "remat2", "checkpoint", "named_call"}

_ACTIVATION_HINT = (
    "only piecewise-linear operations are supported (relu, leaky_relu, abs, max/min, clip, jnp.where with "
    "a continuous split); replace it with one of those"
)
_HINTS = {
    "reduce_max": "max-pooling and max over features are not supported; use a strided convolution or avg_pool",
    "reduce_min": "min over features is not supported",
    "reduce_window_max": "max-pooling is not supported; use a strided convolution or avg_pool",
    "argmax": "argmax is not continuous", "argmin": "argmin is not continuous",
    "sort": "sorting is not supported",
    "mul": "products of two input-dependent values (gating, attention, normalisation by input statistics) "
           "are not supported",
    "div": "only division by a constant is supported",
    "dot_general": "products of two input-dependent values (attention, bilinear layers) are not supported",
    "conv_general_dilated": "convolutions whose kernel depends on the input are not supported",
    "select_n": "jnp.where on an input-dependent condition is supported only for a comparison of an affine "
                "value with a constant whose two branches agree on the boundary (e.g. a leaky ReLU); write "
                "clipping with jnp.clip, jnp.maximum or jnp.minimum",
    "eq": "equality tests on the input are not continuous", "ne": "equality tests on the input are not continuous",
}
_NORM_HINT = (
    "normalisation by statistics of the input is not piecewise affine: BatchNorm must use its running "
    "averages (flax.linen: nn.BatchNorm(use_running_average=True); flax.nnx: call model.eval() before "
    "converting); LayerNorm/GroupNorm/RMSNorm are not supported"
)


def _where(eqn: Any, prefix: str) -> str:
    stack = str(eqn.source_info.name_stack)
    stack = "/".join(p for p in (prefix, stack) if p)
    return f" (in {stack})" if stack else ""


def _nn_function(eqn: Any) -> str | None:
    """The public ``jax.nn`` function (``softmax``, ``gelu``, ...; also flax's ``nn.*`` activations, the
    same functions) an equation was traced in, from its traceback (the outermost such frame), or None."""
    try:
        frames = eqn.source_info.traceback.frames
    except AttributeError:
        return None
    nn = os.sep + os.path.join("jax", "_src", "nn") + os.sep
    names = [f.function_name for f in frames if nn in f.file_name and not f.function_name.startswith("_")]
    return f"jax.nn.{names[-1]}" if names else None


def _from_normalization(eqn: Any, prefix: str) -> bool:
    stack = prefix + "/" + str(eqn.source_info.name_stack)
    if "Norm" in stack:
        return True
    try:
        frames = eqn.source_info.traceback.frames
    except AttributeError:
        return False
    return any(f.file_name.endswith("normalization.py") for f in frames)


# ----------------------------------------------------------------------------------------------------
# The interpreter
# ----------------------------------------------------------------------------------------------------


class _Interpreter:
    """Evaluates a jaxpr on affine expressions, collecting the hidden stages it creates."""

    def __init__(self):
        self.stages: list[Stage] = []

    # -- errors --------------------------------------------------------------------------------------
    def _unsupported(self, eqn: Any, prefix: str, what: str | None = None) -> UnsupportedLayerError:
        name = eqn.primitive.name
        called = _nn_function(eqn)
        if _from_normalization(eqn, prefix):
            hint = _NORM_HINT
        else:
            # inside an activation (jax.nn.softmax's reduce_max), the primitive's own hint would mislead
            hint = _ACTIVATION_HINT if called else _HINTS.get(name, _ACTIVATION_HINT)
        what = what or f"primitive `{name}` applied to an input-dependent value"
        if called:
            what += f" by {called}"
        return UnsupportedLayerError(f"from_flax: {what}{_where(eqn, prefix)} is not piecewise affine; {hint}")

    # -- jaxpr walking -------------------------------------------------------------------------------
    def run(self, jaxpr: jcore.Jaxpr, consts: Sequence[Any], args: Sequence[_Value], prefix: str = "") -> list:
        env: dict[Any, _Value] = {}

        def read(v):
            if isinstance(v, jcore.Literal):
                return _widen(np.asarray(v.val, dtype=v.aval.dtype))
            return env[v]

        for var, val in zip(jaxpr.constvars, consts):
            env[var] = _widen(val)
        for var, val in zip(jaxpr.invars, args):
            env[var] = val
        for eqn in jaxpr.eqns:
            outs = self.eqn(eqn, [read(v) for v in eqn.invars], prefix)
            for var, val in zip(eqn.outvars, outs):
                if not isinstance(var, jcore.DropVar):
                    env[var] = val
        return [read(v) for v in jaxpr.outvars]

    def run_closed(self, closed: Any, args: Sequence[_Value], prefix: str) -> list:
        if isinstance(closed, jcore.ClosedJaxpr):
            return self.run(closed.jaxpr, closed.consts, args, prefix)
        return self.run(closed, (), args, prefix)

    def eqn(self, eqn: Any, ins: list[_Value], prefix: str) -> list[_Value]:
        name = eqn.primitive.name
        params = _widen_params(name, eqn.params)
        sub_prefix = "/".join(p for p in (prefix, str(eqn.source_info.name_stack)) if p)
        if name == "cond":
            return self._cond(eqn, ins, params, sub_prefix)
        if name == "scan":
            return self._scan(eqn, ins, params, sub_prefix)
        if name == "while":
            return self._while(eqn, ins, params, sub_prefix)
        if name in _CALL_PRIMITIVES:
            # the called function's name (jax.nn.softplus: softplus/logaddexp) names where an error is
            called = params.get("name")
            if isinstance(called, str) and called:
                sub_prefix = "/".join(p for p in (sub_prefix, called) if p)
            for key in _CALLS_WITH_JAXPR:
                sub = params.get(key)
                if isinstance(sub, (jcore.ClosedJaxpr, jcore.Jaxpr)):
                    return self.run_closed(sub, ins, sub_prefix)
        if name in _RANDOM:
            raise UnsupportedLayerError(
                f"from_flax: the model draws random numbers (`{name}`{_where(eqn, prefix)}), so it is not one fixed "
                "function; put Dropout and other stochastic layers in inference mode (flax.nnx: model.eval(); "
                "flax.linen: deterministic=True)"
            )
        if all(_is_const(v) for v in ins):
            return _bind_const(eqn.primitive, params, ins)
        return self._nonconst(eqn, ins, params, prefix)

    # -- primitives on input-dependent values --------------------------------------------------------
    def _nonconst(self, eqn: Any, ins: list[_Value], params: dict, prefix: str) -> list[_Value]:
        prim, name = eqn.primitive, eqn.primitive.name
        signs = [i for i, v in enumerate(ins) if isinstance(v, _Sign)]
        if name == "select_n" and isinstance(ins[0], _Sign) and len(signs) == 1 and len(ins) == 3:
            out = self._select(ins[0], ins[1], ins[2])
            if out is None:
                raise self._unsupported(eqn, prefix)
            return [out]
        if signs:
            if name in _STRUCTURAL and len(ins) == 1:
                return [_Sign(self._linear(prim, params, [ins[0].z], (0,))[0])]
            if name == "not":
                return [_Sign(_scale(-1.0, ins[0].z))]
            raise self._unsupported(eqn, prefix, f"a comparison of input-dependent values used by `{name}`")
        if name == "convert_element_type":
            if jnp.issubdtype(params["new_dtype"], jnp.floating):
                return [ins[0]]
            raise self._unsupported(eqn, prefix, f"converting an input-dependent value to {params['new_dtype']} "
                                                 "(integer or boolean ops on the input)")
        if name in ("reduce_precision", "optimization_barrier", "stop_gradient") or (
                name == "integer_pow" and params.get("y") == 1):
            return list(ins)
        if name in _LINEAR:
            lin = _LINEAR[name]
            lin = tuple(range(len(ins))) if lin is _ALL else lin
            if any(not _is_const(v) for i, v in enumerate(ins) if i not in lin):
                raise self._unsupported(eqn, prefix)
            return self._linear(prim, params, ins, lin)
        if name in _BILINEAR:
            dep = [i for i, v in enumerate(ins) if not _is_const(v)]
            if len(dep) != 1:
                raise self._unsupported(eqn, prefix)
            return self._linear(prim, params, ins, tuple(dep))
        if name == "select_n" and _is_const(ins[0]):
            return self._linear(prim, params, ins, tuple(range(1, len(ins))))
        if name in ("gt", "ge"):
            return [_Sign(_as_affine(_sub(ins[0], ins[1])))]
        if name in ("lt", "le"):
            return [_Sign(_as_affine(_sub(ins[1], ins[0])))]
        if name == "max":
            return [self._max(*ins)]
        if name == "min":
            return [self._min(*ins)]
        if name == "abs":
            return [self._pwl(_scale(-1.0, ins[0]), 2.0, ins[0])]
        if name == "clamp":
            lo, x, hi = ins
            return [self._min(self._max(x, lo), hi)]
        raise self._unsupported(eqn, prefix)

    @staticmethod
    def _linear(prim: Any, params: dict, ins: Sequence[_Value], lin: tuple[int, ...]) -> list[_Value]:
        """Apply a primitive that is jointly linear in the operands ``lin`` (others constant).

        One batched call computes the constant (row 0, from the operands' constants) and every
        coefficient row (from the operands' coefficients, zero for operands without that source).
        """
        widths: dict[int, int] = {}
        for i in lin:
            if isinstance(ins[i], _Affine):
                widths.update({s: c.shape[0] for s, c in ins[i].coefs.items()})
        sources = sorted(widths)
        args, axes = [], []
        for i, v in enumerate(ins):
            if i not in lin:
                args.append(v)
                axes.append(None)
                continue
            a = _as_affine(v)
            rows = [a.const[None]] + [a.coefs[s] if s in a.coefs else np.zeros((widths[s],) + a.shape) for s in sources]
            args.append(np.concatenate(rows, axis=0))
            axes.append(0)
        outs = []
        for out in _bind_batched(prim, params, args, axes):
            coefs, off = {}, 1
            for s in sources:
                coefs[s] = out[off : off + widths[s]]
                off += widths[s]
            outs.append(_Affine(coefs, np.asarray(out[0])))
        return outs

    # -- piecewise-linear primitives -----------------------------------------------------------------
    def _max(self, a: _Value, b: _Value) -> _Value:
        if _is_const(a) and _is_const(b):
            return np.maximum(a, b)
        if _is_const(b):
            return self._pwl(b, 1.0, _sub(a, b))
        if _is_const(a):
            return self._pwl(a, 1.0, _sub(b, a))
        for u, v in _proportional_pairs(a, b):  # max(u, beta u) = min(beta, 1) u + |1 - beta| relu(u)
            beta = _proportional(v, u)
            if beta is not None:
                return self._pwl(_scale(np.minimum(beta, 1.0), u), np.abs(1.0 - beta), u)
        return self._pwl(b, 1.0, _sub(a, b))

    def _min(self, a: _Value, b: _Value) -> _Value:
        if _is_const(a) and _is_const(b):
            return np.minimum(a, b)
        if _is_const(b):
            return self._pwl(a, -1.0, _sub(a, b))  # a - relu(a - b)
        if _is_const(a):
            return self._pwl(b, -1.0, _sub(b, a))
        for u, v in _proportional_pairs(a, b):  # min(u, beta u) = max(beta, 1) u - |1 - beta| relu(u)
            beta = _proportional(v, u)
            if beta is not None:
                return self._pwl(_scale(np.maximum(beta, 1.0), u), -np.abs(1.0 - beta), u)
        return self._pwl(a, -1.0, _sub(a, b))

    def _select(self, pred: _Sign, x_false: _Value, x_true: _Value) -> _Value | None:
        """``x_true`` where ``z > 0`` else ``x_false``; continuous only if the jump ``x_true - x_false`` is
        ``k z`` on the side where it is added.

        The jump is tested as it stands, then as it is on either side (:meth:`_on_side`): in
        ``jnp.where(x > 1, 1, jnp.where(x < -1, -1, x))`` (``jax.nn.hard_tanh``) the inner ``where`` opens
        a stage on ``-1 - x``, whose units are 0 where ``x > 1``, so the jump there is ``1 - x``.
        """
        shape = tuple(np.broadcast_shapes(pred.z.shape, _as_affine(x_false).shape, _as_affine(x_true).shape))
        z = _broadcast(pred.z, shape)
        jump = _broadcast(_as_affine(_sub(x_true, x_false)), shape)
        k = _proportional(jump, z)
        if k is not None:
            return self._pwl(_add(x_false, np.zeros(shape)), k, z)
        # x_false + [z > 0] * jump, or x_true + [-z > 0] * (-jump)
        for base, side, step in ((x_false, z, jump), (x_true, _scale(-1.0, z), _scale(-1.0, jump))):
            k = _proportional(self._on_side(step, side), side)
            if k is not None:
                return self._pwl(_add(base, np.zeros(shape)), k, side)
        return None

    def _on_side(self, d: _Affine, z: _Affine) -> _Affine:
        """``d`` as it is where ``z > 0`` (both of one shape): a hidden unit read by element ``e`` of ``d``
        whose pre-activation is ``alpha z_e + beta`` (``alpha != 0``) and whose activation has no
        breakpoint in the range that takes for ``z_e > 0`` is replaced by its affine piece there,
        ``slope * alpha z_e + act(beta)``. Other units are kept."""
        shape = d.shape
        n = int(np.prod(shape, dtype=np.int64))
        zf = _Affine({s: np.reshape(c, (-1, n)) for s, c in z.coefs.items()}, np.reshape(z.const, n))
        coefs = {s: np.reshape(c, (-1, n)) for s, c in d.coefs.items()}
        const, gain = np.array(np.reshape(d.const, n), np.float64), np.zeros(n)
        for j in [s for s in coefs if s >= 1]:
            us, es = np.nonzero(coefs[j])
            if not len(us):
                continue
            st = self.stages[j - 1]
            pre = _Affine(dict(zip(st.sources, st.kernels)), np.asarray(st.bias, np.float64))
            widths = {s: c.shape[0] for s, c in list(pre.coefs.items()) + list(zf.coefs.items())}
            P, Z = _stacked(pre, sorted(widths), widths), _stacked(zf, sorted(widths), widths)
            pu, ze = P[:-1, us], Z[:-1, es]
            zz = np.sum(ze * ze, axis=0)
            alpha = np.sum(pu * ze, axis=0) / np.where(zz > 0, zz, 1.0)
            beta = P[-1, us] - alpha * Z[-1, es]
            scale = np.maximum(np.max(np.abs(pu), axis=0), np.abs(P[-1, us]))
            ok = (zz > 0) & (alpha != 0) & (np.max(np.abs(pu - alpha * ze), axis=0) <= _PROP_RTOL * scale)
            bps, tol = np.asarray(st.activation.breakpoints), _PROP_RTOL * scale
            if bps.size:  # z_e > 0 is p > beta for alpha > 0, p < beta for alpha < 0
                ok &= np.where(alpha > 0, beta >= bps.max() - tol, beta <= bps.min() + tol)
            if not np.any(ok):
                continue
            us, es, alpha, beta = us[ok], es[ok], alpha[ok], beta[ok]
            slope = np.where(alpha > 0, st.activation.slopes[-1], st.activation.slopes[0])
            c = coefs[j][us, es]
            np.add.at(gain, es, c * slope * alpha)
            np.add.at(const, es, c * np.asarray(st.activation(beta), np.float64))
            coefs[j] = np.array(coefs[j])
            coefs[j][us, es] = 0.0
        out = _Affine({s: c.reshape((c.shape[0],) + shape) for s, c in coefs.items()}, const.reshape(shape))
        return _add(out, _scale(gain.reshape(shape), z))

    def _pwl(self, base: _Value, k: Any, z: _Value) -> _Value:
        """``base + k * relu(z)``, opening a new hidden stage on ``z``.

        When ``base = alpha z`` and ``alpha``, ``k`` are the same for every element the whole value is
        one activation of ``z`` (slopes ``alpha`` and ``alpha + k``), e.g. a leaky ReLU.
        """
        z = _as_affine(z)
        k = np.broadcast_to(np.asarray(k, np.float64), z.shape)
        if not np.any(k):
            return base
        alpha_arr = _proportional(base, z)
        alpha = None if alpha_arr is None else _uniform(alpha_arr)
        k_u = _uniform(k)
        if alpha is not None and k_u is not None:
            beta = _snap(alpha + k_u)
            if alpha == -1.0 and beta != 1.0:  # f(z) = g(-z) with g a (leaky) ReLU: use that form
                z, alpha, beta = _scale(-1.0, z), -beta, -alpha
            act = _activation(alpha, beta)
            out = self._new_stage(z, act)
            if out is not None:
                return out
            return np.asarray(act(z.const), np.float64)
        h = self._new_stage(z, relu())
        if h is None:
            return _add(base, k * np.maximum(z.const, 0.0))
        return _add(base, _scale(k, h))

    def _new_stage(self, z: _Affine, act: Activation) -> _Affine | None:
        """Append a hidden stage with pre-activation ``z`` (flattened); return its activations, or
        ``None`` if ``z`` does not depend on the input (then nothing is appended)."""
        n = int(np.prod(z.shape, dtype=np.int64))
        kernels, sources = _kernels(z)
        if not sources:
            return None
        self.stages.append(Stage(tuple(kernels), np.asarray(z.const, np.float64).reshape(n), tuple(sources), act))
        j = len(self.stages)
        return _Affine({j: np.eye(n).reshape((n,) + z.shape)}, np.zeros(z.shape))

    # -- control flow --------------------------------------------------------------------------------
    def _cond(self, eqn: Any, ins: list[_Value], params: dict, prefix: str) -> list[_Value]:
        index, ops = ins[0], ins[1:]
        if not _is_const(index):
            raise self._unsupported(eqn, prefix, "lax.cond on an input-dependent predicate")
        return self.run_closed(params["branches"][int(index)], ops, prefix)

    def _while(self, eqn: Any, ins: list[_Value], params: dict, prefix: str) -> list[_Value]:
        nc, nb = params["cond_nconsts"], params["body_nconsts"]
        cconsts, bconsts, carry = ins[:nc], ins[nc : nc + nb], list(ins[nc + nb :])
        while True:
            (go,) = self.run_closed(params["cond_jaxpr"], list(cconsts) + carry, prefix)
            if not _is_const(go):
                raise self._unsupported(eqn, prefix, "a while loop whose condition depends on the input")
            if not bool(go):
                return carry
            carry = self.run_closed(params["body_jaxpr"], list(bconsts) + carry, prefix)

    def _scan(self, eqn: Any, ins: list[_Value], params: dict, prefix: str) -> list[_Value]:
        """Unrolled: every iteration may open its own stages."""
        nc, ncar, length = params["num_consts"], params["num_carry"], params["length"]
        consts, carry, xs = ins[:nc], list(ins[nc : nc + ncar]), ins[nc + ncar :]
        if any(isinstance(v, _Sign) for v in ins):
            raise self._unsupported(eqn, prefix, "a comparison result carried through lax.scan")
        ys_steps: list[list[_Value]] = []
        order = range(length - 1, -1, -1) if params["reverse"] else range(length)
        for t in order:
            outs = self.run_closed(params["jaxpr"], list(consts) + carry + [_index0(x, t) for x in xs], prefix)
            carry, ys = list(outs[:ncar]), outs[ncar:]
            ys_steps.append(ys)
        if params["reverse"]:
            ys_steps.reverse()
        n_ys = len(eqn.outvars) - ncar
        ys = [_stack0([step[j] for step in ys_steps]) for j in range(n_ys)]
        if length == 0:
            ys = [_widen(np.zeros(v.aval.shape, v.aval.dtype)) for v in eqn.outvars[ncar:]]
        return carry + ys


def _proportional_pairs(a: _Affine, b: _Affine) -> list[tuple[_Affine, _Affine]]:
    """``(u, v)`` orders to try for ``v = beta u``: the larger operand first, so that a leaky ReLU
    ``max(0.3 z, z)`` opens its stage on ``z`` rather than on ``0.3 z``."""
    ratio = _proportional(b, a)
    if ratio is not None and np.max(np.abs(ratio), initial=0.0) > 1.0:
        return [(b, a), (a, b)]
    return [(a, b), (b, a)]


def _index0(v: _Value, t: int) -> _Value:
    if isinstance(v, _Affine):
        return _Affine({s: c[:, t] for s, c in v.coefs.items()}, v.const[t])
    return v[t]


def _stack0(vals: list[_Value]) -> _Value:
    if all(_is_const(v) for v in vals):
        return np.stack(vals)
    affs = [_as_affine(v) for v in vals]
    widths = {s: c.shape[0] for a in affs for s, c in a.coefs.items()}
    coefs = {}
    for s, w in widths.items():
        coefs[s] = np.stack([a.coefs.get(s, np.zeros((w,) + a.shape)) for a in affs], axis=1)
    return _Affine(coefs, np.stack([a.const for a in affs]))


def _kernels(z: _Affine) -> tuple[list[np.ndarray], list[int]]:
    """Per-source ``(n_s, N)`` kernels of a flattened affine value, dropping identically-zero ones."""
    n = int(np.prod(z.shape, dtype=np.int64))
    kernels, sources = [], []
    for s in sorted(z.coefs):
        K = np.asarray(z.coefs[s], np.float64).reshape(-1, n)
        if np.any(K):
            kernels.append(K)
            sources.append(s)
    return kernels, sources


# ----------------------------------------------------------------------------------------------------
# Module handling
# ----------------------------------------------------------------------------------------------------


def _input_shape(input_dim: int | Sequence[int]) -> tuple[int, ...]:
    try:
        shape = (input_dim,) if isinstance(input_dim, (int, np.integer)) else tuple(input_dim)
    except TypeError:  # not an int and not iterable (e.g. 3.0)
        shape = ()
    if not shape or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape):
        raise InvalidNetworkError(
            f"input_dim must be a positive int or a tuple of positive ints (one example's shape), got {input_dim!r}"
        )
    return tuple(int(s) for s in shape)


def _check_finite(tree: Any, what: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dt = getattr(leaf, "dtype", None)
        if dt is None or not jnp.issubdtype(dt, jnp.inexact):
            continue
        if jnp.issubdtype(dt, jnp.complexfloating):
            raise InvalidNetworkError(
                f"{what} at {jax.tree_util.keystr(path)} are complex ({dt}); a piecewise-affine network has real "
                "weights"
            )
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise InvalidNetworkError(
                f"{what} at {jax.tree_util.keystr(path)} contain NaN or inf; fix the parameters before converting"
            )


def _first_kernel_hint(tree: Any) -> str:
    """What the first kernel among the parameters says about the expected input."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if "kernel" not in jax.tree_util.keystr(path):
            continue
        shape = tuple(np.shape(leaf))
        if len(shape) == 2:
            return (f"; the first kernel {jax.tree_util.keystr(path)} has shape {shape}, so input_dim={shape[0]} "
                    "is expected")
        if len(shape) > 2:
            return (f"; the first kernel {jax.tree_util.keystr(path)} has shape {shape}: pass the image shape, e.g. "
                    f"input_dim=(H, W, {shape[-2]})")
        return ""
    return ""


def _apply_fn(module: Any, variables: Any) -> tuple[Callable, Any]:
    """``(fn, params)`` with ``fn(params, x)`` the module's forward pass and ``params`` its state."""
    try:
        import flax.linen as nn
        from flax import nnx
    except ImportError as e:  # pragma: no cover - flax is a dependency
        raise ModuleNotFoundError("from_flax needs Flax: pip install flax") from e
    if isinstance(module, nn.Module):
        if variables is None:
            raise InvalidNetworkError(
                f"{type(module).__name__} is a flax.linen module: pass its variables, "
                "from_flax(module, variables, input_dim=...) with variables = module.init(key, x)"
            )
        return (lambda v, x: module.apply(v, x)), variables
    if isinstance(module, nnx.Module):
        if variables is not None:
            raise InvalidNetworkError(
                "a flax.nnx module holds its own parameters: call from_flax(model, input_dim=...)"
            )
        graphdef, state = nnx.split(module)
        # merge a copy inside the trace, so stateful layers cannot leak tracers into the user's model
        return (lambda s, x: nnx.merge(graphdef, s)(x)), state
    if callable(module):
        if variables is None:
            return (lambda _, x: module(x)), None
        return (lambda v, x: module(v, x)), variables
    raise InvalidNetworkError(f"from_flax expects a flax.linen or flax.nnx module, got {type(module).__name__}")


def _trace(fn: Callable, params: Any, shape: tuple[int, ...]) -> Any:
    try:
        from flax.errors import (InvalidRngError, ModifyScopeVariableError, ScopeCollectionNotFound,
                                 ScopeParamShapeError)
    except ImportError:  # pragma: no cover
        InvalidRngError = ModifyScopeVariableError = ScopeCollectionNotFound = ScopeParamShapeError = ()  # noqa: N806
    x = jax.ShapeDtypeStruct((1,) + shape, jnp.float64)
    try:
        return jax.make_jaxpr(fn, return_shape=True)(params, x)
    except ScopeCollectionNotFound as e:
        hint = ""
        if isinstance(params, dict) and "params" not in params:
            hint = (": these look like bare parameters (no 'params' collection); pass the variables returned by "
                    "module.init, or wrap them: from_flax(module, {'params': params}, input_dim=...)")
        raise InvalidNetworkError(
            f"from_flax: the variables lack a collection the module reads ({str(e).splitlines()[0]}){hint}"
        ) from None
    except InvalidRngError as e:
        raise UnsupportedLayerError(
            f"from_flax: the module needs random numbers ({e}); put Dropout and other stochastic layers in "
            "inference mode (deterministic=True)"
        ) from None
    except ModifyScopeVariableError as e:
        raise UnsupportedLayerError(
            f"from_flax: the module updates a variable collection while running ({e}). If it is BatchNorm in "
            "training mode, use nn.BatchNorm(use_running_average=True): normalising by batch statistics is not "
            "piecewise affine"
        ) from None
    except (TypeError, ValueError, ScopeParamShapeError) as e:
        if isinstance(e, (UnsupportedLayerError, InvalidNetworkError)):
            raise
        raise InvalidNetworkError(
            f"from_flax: the module cannot be applied to an input of shape {(1,) + shape} "
            f"(input_dim={shape if len(shape) > 1 else shape[0]}): "
            f"{type(e).__name__}: {str(e).splitlines()[0].rstrip('.')}"
            f"{_first_kernel_hint(params)}"
        ) from None


def from_flax(module: Any, variables: Any = None, *, input_dim: int | Sequence[int]) -> Network:
    """Convert a piecewise-affine Flax model to a :class:`~jaxpoly.network.Network`.

    Args:
      module: a ``flax.linen`` module (with ``variables``) or a ``flax.nnx`` module (``variables=None``).
        Any other callable is accepted too: ``fn(x)``, or ``fn(variables, x)`` when variables are given
        (e.g. ``lambda v, x: model.apply(v, x, train=False)`` for a module with extra arguments).
      variables: the linen variables (``module.init(...)``); ``None`` for nnx.
      input_dim: the per-example input shape: an int ``d`` for flat inputs, or a tuple such as
        ``(8, 8, 1)`` for convolutions on a fixed image size. The network's input is one example
        flattened in row-major (``np.reshape``) order, of dimension ``prod(input_dim)``.
    Returns:
      A :class:`Network` whose weights are float64 NumPy arrays, computing the module's output
      (flattened per example) exactly in real arithmetic. Hidden stages are opened at every ``max``,
      ``min``, ``abs`` or continuous ``jnp.where`` (ReLU, leaky ReLU, clip, …); linear layers,
      convolutions, inference-mode BatchNorm, reshapes and residual additions are folded into the
      stages' kernels, one kernel per source read.

    Linear maps are stored densely (a convolution becomes its full ``(in, out)`` matrix), so memory is
    ``O(in * out)`` per layer: fine for small images, not for ImageNet-sized ones. ``lax.scan``,
    ``fori_loop`` and ``cond`` with a constant predicate are unrolled.

    Raises:
      UnsupportedLayerError: an operation on the input is not piecewise affine (``tanh``, softmax,
        max-pooling, batch statistics, …); the message names the primitive.
      InvalidNetworkError: ``input_dim`` does not fit the module, linen variables are missing, the
        parameters are not finite, or the output is not a single array.
    """
    shape = _input_shape(input_dim)
    d = int(np.prod(shape))
    fn, params = _apply_fn(module, variables)
    _check_finite(params, "parameters")
    with jax.enable_x64(True):
        closed, out = _trace(fn, params, shape)
        if not isinstance(out, jax.ShapeDtypeStruct):
            raise InvalidNetworkError(
                f"from_flax: the module returns {type(out).__name__} of {len(closed.jaxpr.outvars)} array(s); it must "
                "return a single array (wrap it so that it returns only the network output)"
            )
        interp = _Interpreter()
        x = _Affine({0: np.eye(d).reshape((d, 1) + shape)}, np.zeros((1,) + shape))
        leaves = [_widen(leaf) for leaf in jax.tree_util.tree_leaves(params)]
        (y,) = interp.run(closed.jaxpr, closed.consts, leaves + [x])
        output = _output_stage(y, d)
    net = Network(tuple(interp.stages), output)
    _check_finite(net, "converted weights")
    _check_examples_independent(fn, params, shape)
    return net


def _check_examples_independent(fn: Callable, params: Any, shape: tuple[int, ...]) -> None:
    """The module was read on a batch of one; an operation across the batch axis (a mean over axis 0,
    batch statistics computed by hand) reads the other examples of a batch, which a batch of one does
    not show. Two random examples run together and one by one must agree."""
    x = np.random.default_rng(0).standard_normal((2,) + shape)
    try:
        with jax.enable_x64(True):
            both = np.asarray(fn(params, jnp.asarray(x)), np.float64)
            alone = np.concatenate([np.asarray(fn(params, jnp.asarray(x[i:i + 1])), np.float64) for i in range(2)])
    except Exception:  # noqa: BLE001 - a module that cannot run a batch of two is not checked
        return
    if both.shape == alone.shape and not np.allclose(both, alone, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(alone).max())):
        raise UnsupportedLayerError(
            "from_flax: the module's output for one example depends on the other examples of its batch (an "
            "operation across the batch axis, such as a mean over axis 0 or batch statistics), so it is not a "
            "function of one input; make every operation act on each example alone"
        )


def _output_stage(y: _Value, d: int) -> Stage:
    if isinstance(y, _Sign):
        raise InvalidNetworkError("from_flax: the module returns a comparison (booleans), not a real-valued output")
    y = _as_affine(y)
    if len(y.shape) > 1 and y.shape[0] != 1:
        raise InvalidNetworkError(f"from_flax: output of shape {y.shape} for a batch of one lost its batch axis")
    n = int(np.prod(y.shape, dtype=np.int64))
    kernels, sources = _kernels(y)
    if not sources:  # a constant output still reads the input (with a zero kernel)
        kernels, sources = [np.zeros((d, n))], [0]
    return Stage(tuple(kernels), np.asarray(y.const, np.float64).reshape(n), tuple(sources), identity())
