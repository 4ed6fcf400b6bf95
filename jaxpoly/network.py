"""The network spec: a DAG of affine stages, each followed by a piecewise-linear activation.

A :class:`Network` computes, for an input ``x`` of shape ``(d,)``::

    a_0 = x
    z_i = sum_k a_{sources_i[k]} @ kernels_i[k] + bias_i        (pre-activation of stage i, i = 1..L)
    a_i = activation_i(z_i)
    y   = sum_k a_{output.sources[k]} @ output.kernels[k] + output.bias

so a stage may read the network input and any earlier stage (residual/skip connections: a ResNet
block ``x + W2 relu(W1 x)`` is a stage ``relu(x W1)`` and an output reading sources ``(0, 1)``).

Every breakpoint ``t`` of a stage's activation contributes one *hyperplane* per neuron, ``z - t = 0``
(ReLU and leaky-ReLU have the single breakpoint 0, so hyperplanes = neurons). On each linear region
every neuron is affine in ``x``; :meth:`Network.hyperplane_maps` returns those maps for an activation
pattern — the one interface both exact engines use.

Networks are pytrees (weights are leaves; sources and activations are static), so they pass through
``jax.jit``, ``jax.grad`` and ``jax.vmap``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpoly.arguments import is_integer
from jaxpoly.bounds import MAX_MAGNITUDE, RESCALE_WEIGHTS
from jaxpoly.errors import InvalidArgumentError, InvalidNetworkError
from jaxpoly.pytree import pytree_dataclass

__all__ = [
    "Activation",
    "relu",
    "leaky_relu",
    "identity",
    "hard_tanh",
    "relu6",
    "piecewise_linear",
    "Stage",
    "Network",
    "AffineMaps",
    "HyperplaneId",
]

Array = Any  # jax.Array or np.ndarray


# ----------------------------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Activation:
    """A continuous piecewise-linear scalar function, applied element-wise.

    ``f(z) = value_at_zero + slopes[0] * z + sum_i (slopes[i+1] - slopes[i]) * (relu(z - b_i) - relu(-b_i))``
    with ``b = breakpoints`` strictly increasing and ``len(slopes) == len(breakpoints) + 1``.
    Hashable, so it is static data of a pytree.
    """

    name: str
    breakpoints: tuple[float, ...]
    slopes: tuple[float, ...]
    value_at_zero: float = 0.0

    def __post_init__(self):
        try:
            bps = tuple(_number(b) for b in self.breakpoints)
            sl = tuple(_number(s) for s in self.slopes)
            v0 = _number(self.value_at_zero)
        except (TypeError, ValueError):
            raise InvalidNetworkError(
                f"activation {self.name!r}: breakpoints, slopes and value_at_zero must be real numbers (sequences "
                f"of them), got {self.breakpoints!r}, {self.slopes!r}, {self.value_at_zero!r}") from None
        object.__setattr__(self, "breakpoints", bps)
        object.__setattr__(self, "slopes", sl)
        object.__setattr__(self, "value_at_zero", v0)
        if len(sl) != len(bps) + 1:
            raise InvalidNetworkError(
                f"activation {self.name!r}: {len(bps)} breakpoints need {len(bps) + 1} slopes, got {len(sl)}"
            )
        if not all(math.isfinite(v) for v in bps + sl + (self.value_at_zero,)):
            raise InvalidNetworkError(f"activation {self.name!r}: breakpoints and slopes must be finite")
        if any(b1 >= b2 for b1, b2 in zip(bps, bps[1:])):
            raise InvalidNetworkError(f"activation {self.name!r}: breakpoints must be strictly increasing")
        # a breakpoint where the slope does not change is none (leaky_relu(1.0) is the identity): its
        # hyperplanes would split regions with the same affine map
        bends = [i for i in range(len(bps)) if sl[i] != sl[i + 1]]
        object.__setattr__(self, "breakpoints", tuple(bps[i] for i in bends))
        object.__setattr__(self, "slopes", (sl[0],) + tuple(sl[i + 1] for i in bends))

    @property
    def num_breakpoints(self) -> int:
        """Number of kinks of the activation (1 for ReLU, 2 for hard-tanh, 0 for identity)."""
        return len(self.breakpoints)

    @property
    def is_identity(self) -> bool:
        """True when the activation is affine (no breakpoint), so it adds no hyperplane."""
        return not self.breakpoints

    def breakpoint_values(self) -> tuple[float, ...]:
        """``f(b_i)`` for every breakpoint, walked outwards from ``value_at_zero`` one piece at a time, so
        a plateau (slope 0) carries its value unchanged (hard-tanh's are exactly ``min_val, max_val``)."""
        bps, sl = self.breakpoints, self.slopes
        j = sum(b < 0 for b in bps)  # the piece holding 0: (b_{j-1}, b_j]
        vals = [0.0] * len(bps)
        if j < len(bps):
            vals[j] = self.value_at_zero + sl[j] * bps[j]
        if j > 0:
            vals[j - 1] = self.value_at_zero + sl[j] * bps[j - 1]
        for i in range(j + 1, len(bps)):
            vals[i] = vals[i - 1] if sl[i] == 0 else vals[i - 1] + sl[i] * (bps[i] - bps[i - 1])
        for i in range(j - 2, -1, -1):
            vals[i] = vals[i + 1] if sl[i + 1] == 0 else vals[i + 1] - sl[i + 1] * (bps[i + 1] - bps[i])
        return tuple(vals)

    def __call__(self, z: Array) -> Array:
        """``f(z)`` element-wise, each piece evaluated on its own: piece ``k`` (``k`` breakpoints below
        ``z``, the same ``z > b`` test as :meth:`Network.pattern`) is ``f(b) + slopes[k] * (z - b)`` at
        its nearest breakpoint ``b``, and a plateau is the constant ``f(b)`` exactly, so that a deeper
        neuron fed by saturated units is constant on a region, not constant up to round-off."""
        z = jnp.asarray(z)
        bps, sl = self.breakpoints, self.slopes
        if not bps:
            return self.value_at_zero + sl[0] * z
        vals = self.breakpoint_values()
        dtype = jnp.result_type(z, 1.0)

        def piece(k: int) -> Array:
            b, v = (bps[0], vals[0]) if k == 0 else (bps[k - 1], vals[k - 1])
            return jnp.full(z.shape, v, dtype) if sl[k] == 0 else (v + sl[k] * (z - b)).astype(dtype)

        out = piece(0)
        for k in range(1, len(sl)):
            out = jnp.where(z > bps[k - 1], piece(k), out)
        return out

    def slope_intercept(self, above: Array) -> tuple[Array, Array]:
        """The affine piece selected by ``above[..., i] = (z > breakpoints[i])``.

        Args:
          above: bool ``(..., m)`` with ``m = num_breakpoints``.
        Returns:
          ``(slope, intercept)``, each ``(...,)``, with ``f(z) = slope * z + intercept`` on that piece.
        """
        above = jnp.asarray(above)
        slope = jnp.full(above.shape[:-1], self.slopes[0])
        intercept = jnp.full(above.shape[:-1], self.value_at_zero)
        for i, b in enumerate(self.breakpoints):
            jump = self.slopes[i + 1] - self.slopes[i]
            q = above[..., i]
            slope = slope + jump * q
            intercept = intercept + jump * (jnp.where(q, -b, 0.0) - max(-b, 0.0))
        return slope, intercept


def relu() -> Activation:
    """``max(z, 0)``: one breakpoint at 0."""
    return Activation("relu", (0.0,), (0.0, 1.0))


def _number(v: Any) -> float:
    """``v`` as a float; ``TypeError`` for strings, booleans and other non-numbers."""
    if isinstance(v, (str, bytes, bool, np.bool_)) or v is None:
        raise TypeError(f"not a number: {v!r}")
    return float(v)


def _parameter(v: Any, what: str) -> float:
    try:
        return _number(v)
    except (TypeError, ValueError):
        raise InvalidNetworkError(f"{what} must be a real number, got {v!r}") from None


def leaky_relu(negative_slope: float = 0.01) -> Activation:
    """``z if z > 0 else negative_slope * z``: same partition as ReLU; with ``negative_slope == 1`` it is
    the identity (no breakpoint, so no hyperplane)."""
    negative_slope = _parameter(negative_slope, "leaky_relu's negative_slope")
    if negative_slope == 1.0:
        return identity()
    return Activation(f"leaky_relu({negative_slope:g})", (0.0,), (float(negative_slope), 1.0))


def identity() -> Activation:
    """No activation (a linear stage): adds no hyperplane."""
    return Activation("identity", (), (1.0,))


def hard_tanh(min_val: float = -1.0, max_val: float = 1.0) -> Activation:
    """``clip(z, min_val, max_val)``: two breakpoints, so two hyperplanes per neuron."""
    min_val, max_val = _parameter(min_val, "hard_tanh's min_val"), _parameter(max_val, "hard_tanh's max_val")
    if not min_val < max_val:
        raise InvalidNetworkError(f"hard_tanh needs min_val < max_val, got {min_val} >= {max_val}")
    value_at_zero = min(max(0.0, min_val), max_val)
    return Activation(f"hard_tanh({min_val:g},{max_val:g})", (min_val, max_val), (0.0, 1.0, 0.0), value_at_zero)


def relu6() -> Activation:
    """``clip(z, 0, 6)``: breakpoints at 0 and 6."""
    return Activation("relu6", (0.0, 6.0), (0.0, 1.0, 0.0))


def piecewise_linear(breakpoints: Sequence[float], slopes: Sequence[float], value_at_zero: float = 0.0,
                     name: str = "piecewise_linear") -> Activation:
    """Any continuous piecewise-linear activation (see :class:`Activation`)."""
    try:
        breakpoints, slopes = tuple(breakpoints), tuple(slopes)
    except TypeError:
        raise InvalidNetworkError(f"piecewise_linear needs sequences of breakpoints and slopes, got {breakpoints!r} "
                                  f"and {slopes!r}") from None
    return Activation(name, breakpoints, slopes, value_at_zero)


_NAMED = {"relu": relu, "identity": identity, "linear": identity, "relu6": relu6, "hard_tanh": hard_tanh}


def activation_from_name(name: str, negative_slope: float = 0.01) -> Activation:
    """``"relu" | "leaky_relu" | "identity" | "relu6" | "hard_tanh"`` → :class:`Activation`."""
    if name == "leaky_relu":
        return leaky_relu(negative_slope)
    if name not in _NAMED:
        raise InvalidNetworkError(
            f"unknown activation {name!r}; use one of relu, leaky_relu, identity, relu6, hard_tanh "
            "or build one with jaxpoly.piecewise_linear"
        )
    return _NAMED[name]()


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _compiled(*static: str):
    """A :class:`Network` method run as one compiled call (the network is a pytree argument) rather than
    op by op: outside a ``jit`` every op of an evaluation compiles on its own for each new shape (tens of
    milliseconds each, seconds for a network). Inside a trace it is inlined as usual."""

    def wrap(method):
        compiled = jax.jit(method, static_argnames=static)

        @functools.wraps(method)
        def call(self, x, *args, **kwargs):
            return compiled(self, x if isinstance(x, (jax.Array, np.ndarray)) else jnp.asarray(x), *args, **kwargs)

        return call

    return wrap


@pytree_dataclass(("kernels", "bias"), ("sources", "activation"))
@dataclasses.dataclass(frozen=True, eq=False)
class Stage:
    """One affine map followed by an activation.

    Attributes:
      kernels: one ``(in_k, width)`` matrix per source (Flax ``kernel`` convention: ``z = a @ K``).
      bias: ``(width,)``.
      sources: static; ``sources[k]`` is 0 for the network input or ``j >= 1`` for stage ``j``'s
        activations.
      activation: static :class:`Activation`.
    """

    kernels: tuple[Array, ...]
    bias: Array
    sources: tuple[int, ...] = (0,)
    activation: Activation = dataclasses.field(default_factory=relu)

    def __post_init__(self):
        kernels = tuple(self.kernels) if isinstance(self.kernels, (list, tuple)) else (self.kernels,)
        object.__setattr__(self, "kernels", kernels)
        sources = tuple(self.sources) if isinstance(self.sources, (list, tuple)) else None
        if sources is None or not all(is_integer(s) for s in sources):
            raise InvalidNetworkError(f"a stage's sources must be a sequence of integers (0: the input, j: stage "
                                      f"j), got {self.sources!r}")
        object.__setattr__(self, "sources", tuple(int(s) for s in sources))
        if len(self.kernels) != len(self.sources) or not self.kernels:
            raise InvalidNetworkError(
                f"a stage needs one kernel per source: got {len(self.kernels)} kernels for sources {self.sources}"
            )
        if len(set(self.sources)) != len(self.sources):
            raise InvalidNetworkError(f"a stage lists a source twice: {self.sources}; add the kernels instead")
        for k in self.kernels:
            if np.ndim(k) != 2:
                raise InvalidNetworkError(f"kernels must be 2-D (in, out), got shape {np.shape(k)}")
        widths = {np.shape(k)[1] for k in self.kernels}
        if len(widths) != 1:
            raise InvalidNetworkError(f"kernels of one stage disagree on the output width: {sorted(widths)}")
        if np.shape(self.bias) != (self.width,):
            raise InvalidNetworkError(f"bias shape {np.shape(self.bias)} does not match width {self.width}")

    @property
    def width(self) -> int:
        """Number of neurons of this stage."""
        return int(np.shape(self.kernels[0])[1])

    def affine(self, act: Array) -> Array:
        """Pre-activation of a stage that reads a single source: ``act @ kernels[0] + bias``."""
        return act @ self.kernels[0] + self.bias

    def preactivation(self, acts: Sequence[Array]) -> Array:
        """``sum_k acts[sources[k]] @ kernels[k] + bias`` for activations listed by source index."""
        z = self.bias
        for s, k in zip(self.sources, self.kernels):
            z = z + acts[s] @ k
        return z


class AffineMaps(NamedTuple):
    """Affine maps ``x -> x @ A.T + c`` valid on one linear region (leading batch dims allowed).

    Attributes:
      hyper_A: ``(..., H, d)`` and hyper_c ``(..., H)``: every hyperplane's function ``z - t``.
      out_A: ``(..., out, d)`` and out_c ``(..., out)``: the network output.
    """

    hyper_A: Array
    hyper_c: Array
    out_A: Array
    out_c: Array


class HyperplaneId(NamedTuple):
    """Where hyperplane ``h`` comes from: hidden stage (0-based), neuron in it, breakpoint value."""

    stage: int
    neuron: int
    breakpoint: float


@pytree_dataclass(("stages", "output"), ())
@dataclasses.dataclass(frozen=True, eq=False)
class Network:
    """A piecewise-affine network: hidden :class:`Stage` s then an affine ``output`` stage.

    Attributes:
      stages: hidden stages, in order (stage ``i`` is source ``i + 1``).
      output: the final affine map; its activation must be the identity.

    Shapes: ``input_dim = d``, ``output_dim = out``, ``num_neurons = N`` (units of stages that have a
    breakpoint), ``num_hyperplanes = H`` (one per neuron and breakpoint; ``H = N`` for ReLU nets).
    """

    stages: tuple[Stage, ...]
    output: Stage

    def __post_init__(self):
        if not isinstance(self.stages, (list, tuple)):
            raise InvalidNetworkError(f"Network(stages, output) takes a sequence of jaxpoly.Stage objects, got "
                                      f"{type(self.stages).__name__}")
        object.__setattr__(self, "stages", tuple(self.stages))
        if not isinstance(self.output, Stage) or not all(isinstance(s, Stage) for s in self.stages):
            raise InvalidNetworkError("Network(stages, output) takes jaxpoly.Stage objects")
        if not self.output.activation.is_identity:
            raise InvalidNetworkError(
                "the output stage must have the identity activation; put a final nonlinearity in a hidden "
                "stage and read it with an identity output stage"
            )
        in_dims: list[int | None] = [None]  # width of each source; source 0 = input, set below
        for i, st in enumerate(self.stages + (self.output,)):
            where = f"stage {i}" if i < len(self.stages) else "the output stage"
            for s, k in zip(st.sources, st.kernels):
                if not 0 <= s <= i:
                    raise InvalidNetworkError(
                        f"{where} reads source {s}, but only the input (0) and earlier stages (1..{i}) exist"
                    )
                rows = int(np.shape(k)[0])
                if in_dims[s] is None:
                    in_dims[s] = rows
                elif in_dims[s] != rows:
                    what = "the input" if s == 0 else f"stage {s - 1}"
                    raise InvalidNetworkError(
                        f"{where}: kernel has {rows} input rows but {what} has width {in_dims[s]}"
                    )
            in_dims.append(st.width)
        if in_dims[0] is None:
            raise InvalidNetworkError("no stage reads the network input (source 0)")

    # -- sizes ---------------------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        """``d``: the input dimension."""
        for st in self.stages + (self.output,):
            for s, k in zip(st.sources, st.kernels):
                if s == 0:
                    return int(np.shape(k)[0])
        raise AssertionError("unreachable: validated at construction")

    @property
    def output_dim(self) -> int:
        """Number of outputs of the network."""
        return self.output.width

    @property
    def widths(self) -> tuple[int, ...]:
        """Width of every hidden stage."""
        return tuple(st.width for st in self.stages)

    @property
    def activations(self) -> tuple[Activation, ...]:
        """Each hidden stage's activation, in order."""
        return tuple(st.activation for st in self.stages)

    @property
    def num_neurons(self) -> int:
        """Units of hidden stages with at least one breakpoint."""
        return sum(st.width for st in self.stages if not st.activation.is_identity)

    @property
    def num_hyperplanes(self) -> int:
        """``H``: breakpoint hyperplanes of all hidden neurons (one per neuron and breakpoint)."""
        return sum(st.width * st.activation.num_breakpoints for st in self.stages)

    @property
    def hyperplane_offsets(self) -> tuple[int, ...]:
        """``offsets[i]``: index of stage ``i``'s first hyperplane; ``offsets[-1] = H``."""
        out = [0]
        for st in self.stages:
            out.append(out[-1] + st.width * st.activation.num_breakpoints)
        return tuple(out)

    @property
    def is_sequential(self) -> bool:
        """True for a plain MLP: each stage reads only the previous one."""
        return all(st.sources == (i,) for i, st in enumerate(self.stages + (self.output,)))

    def hyperplane_id(self, h: int) -> HyperplaneId:
        """Which stage, neuron and breakpoint hyperplane ``h`` belongs to (neuron-major order)."""
        offs = self.hyperplane_offsets
        if not 0 <= h < offs[-1]:
            raise IndexError(f"hyperplane {h} out of range [0, {offs[-1]})")
        i = int(np.searchsorted(offs, h, side="right")) - 1
        m = self.stages[i].activation.num_breakpoints
        neuron, b = divmod(h - offs[i], m)
        return HyperplaneId(i, neuron, self.stages[i].activation.breakpoints[b])

    # -- evaluation ----------------------------------------------------------------------------------
    def _forward(self, x: Array) -> tuple[Array, list[Array]]:
        acts = [x]
        pres = []
        for st in self.stages:
            z = st.preactivation(acts)
            pres.append(z)
            acts.append(st.activation(z))
        return self.output.preactivation(acts), pres

    @_compiled()
    def __call__(self, x: Array) -> Array:
        """Network output, ``(..., d) -> (..., out)``."""
        return self._forward(jnp.asarray(x))[0]

    @_compiled()
    def preactivations(self, x: Array) -> Array:
        """All hidden pre-activations (stages with a breakpoint), layer order: ``(..., d) -> (..., N)``."""
        x = jnp.asarray(x)
        _, pres = self._forward(x)
        parts = [z for z, st in zip(pres, self.stages) if not st.activation.is_identity]
        if not parts:
            return jnp.zeros(x.shape[:-1] + (0,), x.dtype)
        return jnp.concatenate(parts, axis=-1)

    @_compiled()
    def hyperplane_values(self, x: Array) -> Array:
        """``z - t`` for every neuron and breakpoint ``t``: ``(..., d) -> (..., H)``."""
        x = jnp.asarray(x)
        _, pres = self._forward(x)
        return self._hyperplane_values_from(pres, x)

    def _hyperplane_values_from(self, pres: list[Array], x: Array) -> Array:
        parts = []
        for z, st in zip(pres, self.stages):
            bp = st.activation.breakpoints
            if bp:
                parts.append((z[..., :, None] - jnp.asarray(bp, z.dtype)).reshape(z.shape[:-1] + (-1,)))
        if not parts:
            return jnp.zeros(x.shape[:-1] + (0,), x.dtype)
        return jnp.concatenate(parts, axis=-1)

    @_compiled("stage")
    def stage_hyperplane_values(self, x: Array, stage: int) -> Array:
        """``z - t`` for the hyperplanes of one hidden stage: ``(..., d) -> (..., width * m)``."""
        x = jnp.asarray(x)
        acts = [x]
        for st in self.stages[: stage + 1]:
            z = st.preactivation(acts)
            acts.append(st.activation(z))
        st = self.stages[stage]
        bp = jnp.asarray(st.activation.breakpoints, z.dtype)
        return (z[..., :, None] - bp).reshape(z.shape[:-1] + (-1,))

    def _forward_round_off(self, x: Array, stop: int | None = None) -> tuple[list[Array], list[Array]]:
        """The pre-activations of stages ``0..stop-1`` (all stages, then the output, for ``None``) at
        ``x (..., d)`` and their round-off of the same shapes (:func:`stage_round_off`)."""
        x = jnp.asarray(x)
        acts, carried, pres, errs = [x], [jnp.zeros_like(x)], [], []
        for st in (self.stages + (self.output,))[: stop]:
            z = st.preactivation(acts)
            err = stage_round_off(st, [acts[s] for s in st.sources], [carried[s] for s in st.sources], z.dtype)
            a = st.activation(z)
            pres.append(z)
            errs.append(err)
            acts.append(a)
            carried.append(activation_round_off(st.activation, a, err))
        return pres, errs

    @_compiled("level_set")
    def hyperplane_values_and_round_off(self, x: Array, *, level_set: bool = False) -> tuple[Array, Array]:
        """:meth:`hyperplane_values` ``(..., H)`` (then the first output's value with ``level_set``:
        ``(..., H + 1)``) and the round-off of each at ``x`` (:func:`stage_round_off`, in ``x``'s precision):
        below it a value is zero as far as floating point tells."""
        x = jnp.asarray(x)
        pres, perrs = self._forward_round_off(x)
        vals, bounds = [], []
        for z, err, st in zip(pres, perrs, self.stages):
            if st.activation.breakpoints:
                v, e = breakpoint_hyperplanes(st.activation, z, err)
                vals.append(v)
                bounds.append(e)
        if level_set:
            vals.append(pres[-1][..., :1])
            bounds.append(perrs[-1][..., :1])
        if not vals:
            empty = jnp.zeros(x.shape[:-1] + (0,), x.dtype)
            return empty, empty
        return jnp.concatenate(vals, axis=-1), jnp.concatenate(bounds, axis=-1)

    @_compiled("level_set")
    def pattern(self, x: Array, *, level_set: bool = False) -> Array:
        """Activation pattern at ``x (..., d)`` as bool ``(..., H)``: each hyperplane's value is ``> 0``
        beyond its round-off (:meth:`hyperplane_values_and_round_off`, about 1e-15 of the terms it sums);
        with ``level_set``, then the first output's sign the same way ``(..., H + 1)``.

        A neuron that vanishes identically on a region (its inputs all off, or cancelling exactly, as
        in ``relu(x) - relu(-x) - x``) evaluates to round-off of either sign there; this counts it as
        inactive, the region's pattern, as every engine does. A point within round-off of a real
        boundary is on it up to the evaluation's precision and counts as on the inactive side."""
        v, err = self.hyperplane_values_and_round_off(x, level_set=level_set)
        return v > err

    @_compiled()
    def affine_maps(self, pattern: Array) -> AffineMaps:
        """Per-region affine maps of every hyperplane and of the output.

        Args:
          pattern: bool ``(..., H)``, a region's activation pattern (``z > t`` per hyperplane).
        Returns:
          :class:`AffineMaps` with ``hyper_A (..., H, d)``, ``hyper_c (..., H)``, ``out_A (..., out, d)``,
          ``out_c (..., out)``.
        """
        pattern = jnp.asarray(pattern, bool)
        d = self.input_dim
        dtype = jnp.result_type(*[k for st in self.stages + (self.output,) for k in st.kernels], float)
        batch = pattern.shape[:-1]
        eye = jnp.broadcast_to(jnp.eye(d, dtype=dtype), batch + (d, d))  # rows: units, cols: x
        maps = [(eye, jnp.zeros(batch + (d,), dtype))]
        hyper_A, hyper_c = [], []
        offs = self.hyperplane_offsets

        def pre_map(st):
            A = 0.0
            c = st.bias
            for s, k in zip(st.sources, st.kernels):
                As, cs = maps[s]
                A = A + jnp.einsum("...id,io->...od", As, k)
                c = c + cs @ k
            return A, c

        for i, st in enumerate(self.stages):
            A, c = pre_map(st)
            m = st.activation.num_breakpoints
            if m:
                bp = jnp.asarray(st.activation.breakpoints, dtype)
                hyper_A.append(jnp.repeat(A, m, axis=-2))
                hyper_c.append((c[..., :, None] - bp).reshape(batch + (-1,)))
                above = pattern[..., offs[i] : offs[i + 1]].reshape(batch + (st.width, m))
                slope, icpt = st.activation.slope_intercept(above)
            else:
                slope, icpt = st.activation.slope_intercept(jnp.zeros(batch + (st.width, 0), bool))
            maps.append((slope[..., None] * A, slope * c + icpt))
        out_A, out_c = pre_map(self.output)
        if hyper_A:
            hA, hc = jnp.concatenate(hyper_A, axis=-2), jnp.concatenate(hyper_c, axis=-1)
        else:
            hA, hc = jnp.zeros(batch + (0, d), dtype), jnp.zeros(batch + (0,), dtype)
        return AffineMaps(hA, hc, out_A, out_c)

    # -- conversions ---------------------------------------------------------------------------------
    def astype(self, dtype) -> "Network":
        """A copy with every weight cast to ``dtype`` (NumPy arrays, so float64 survives without x64)."""
        return jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=dtype), self)

    def __repr__(self) -> str:
        acts = ", ".join(sorted({a.name for a in self.activations})) or "none"
        kind = "sequential" if self.is_sequential else "with skip connections"
        return (
            f"Network(input_dim={self.input_dim}, widths={self.widths}, output_dim={self.output_dim}, "
            f"activations={acts}, {kind})"
        )


def validate_network(net: Network, *, scalar_output: bool = False, need_hidden: bool = False) -> None:
    """Raise :class:`InvalidNetworkError` unless ``net`` is usable: finite weights, and optionally a
    scalar output (for level sets) and at least one hyperplane."""
    _expect_network(net)
    if net.input_dim < 1 or net.output_dim < 1:
        raise InvalidNetworkError(f"the network maps R^{net.input_dim} to R^{net.output_dim}; both dimensions "
                                  "must be at least 1")
    for path, leaf in jax.tree_util.tree_leaves_with_path(net):
        dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
        if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer) or dtype == np.bool_):
            fix = ("keep the real part (np.real) if the imaginary part is meant to be zero"
                   if jnp.issubdtype(dtype, jnp.complexfloating) else "convert them, e.g. np.asarray(w, np.float64)")
            raise InvalidNetworkError(
                f"weights at {jax.tree_util.keystr(path)} have dtype {dtype}, but a network's weights must be real "
                f"numbers; {fix}"
            )
        if _is_concrete(leaf) and not np.all(np.isfinite(np.asarray(leaf))):
            raise InvalidNetworkError(
                f"weights at {jax.tree_util.keystr(path)} contain NaN or inf; fix or reload the parameters"
            )
    if scalar_output and net.output_dim != 1:
        raise InvalidNetworkError(
            f"a level set needs a scalar output, but the network has {net.output_dim} outputs; "
            "pass level_set=False or select one output (e.g. jaxpoly.select_output(net, k))"
        )
    if need_hidden and net.num_hyperplanes == 0:
        raise InvalidNetworkError("the network has no hidden neuron with a breakpoint: it is affine everywhere")


def _absolute_propagation(net: Network, reach, xp=np) -> list:
    """Absolute values pushed through the stages: per stage, then the output, ``(coef (width,), value
    (width,))``, bounds over every activation pattern on each unit's coefficient 1-norm and on its value
    where the input's coordinates are at most ``reach (d,)`` in magnitude. A unit's coefficients have
    1-norm at most ``sum_k |K_k|^T g_k`` (``g`` the sources' bounds times their activation's largest
    ``|slope|``) and its value at most ``|bias| + sum_k |K_k|^T v_k``, with ``|f(z)| <= |f(0)| + max|slope|
    |z|`` for the activations. ``xp``: ``numpy`` or ``jax.numpy`` (traceable)."""
    g, v = [xp.ones(net.input_dim)], [reach]  # per source
    out = []
    for st in net.stages + (net.output,):
        gz, vz = 0.0, xp.abs(st.bias)
        for s, k in zip(st.sources, st.kernels):
            k = xp.abs(k)
            gz, vz = gz + g[s] @ k, vz + v[s] @ k
        out.append((gz, vz))
        slope = max(abs(a) for a in st.activation.slopes)
        g.append(slope * gz)
        v.append(abs(st.activation.value_at_zero) + slope * vz)
    return out


def stage_round_off(st: Stage, sources: Sequence[Array], errors: Sequence[Array], dtype) -> Array:
    """An estimate ``(..., width)`` of the round-off of a stage's pre-activation from its ``sources`` (as
    ``st.sources``), which carry ``errors`` of the same shapes in: the stage's own sum of ``n`` terms
    errs by at most ``(n + 1) eps`` times the sum of their magnitudes ``|b| + sum_k |a_k| @ |K_k|``, and
    the sources' errors pass through the kernels in quadrature (``sqrt(sum_k e_k^2 @ K_k^2)``, as
    independent errors do). Bounding those through ``|K|`` instead grows with depth far past the actual
    errors (to 1e-8 of a deep hyperplane's values in the 8-layer bunny); in quadrature 7e-12 there."""
    eps = jnp.finfo(dtype).eps
    n = 1 + sum(int(k.shape[0]) for k in st.kernels)
    mag, var = jnp.abs(st.bias), 0.0
    for a, e, k in zip(sources, errors, st.kernels):
        mag, var = mag + jnp.abs(a) @ jnp.abs(k), var + (e * e) @ (k * k)
    return (n + 1) * eps * mag + jnp.sqrt(var)


def activation_round_off(act: Activation, a: Array, err: Array) -> Array:
    """The error of an activation's output ``a`` whose input errs by ``err``: its largest ``|slope|``
    times ``err``, and a rounding of its own."""
    return max(abs(s) for s in act.slopes) * err + jnp.finfo(a.dtype).eps * jnp.abs(a)


def breakpoint_hyperplanes(act: Activation, z: Array, err: Array) -> tuple[Array, Array]:
    """The hyperplane values ``z - t`` for every breakpoint ``t`` of ``act`` (``(..., width * m)``, the
    layout of :meth:`Network.hyperplane_values`) and their round-off, from ``z`` erring by ``err``."""
    v = (z[..., :, None] - jnp.asarray(act.breakpoints, z.dtype)).reshape(z.shape[:-1] + (-1,))
    m = len(act.breakpoints)
    return v, jnp.repeat(err, m, axis=-1) + jnp.finfo(v.dtype).eps * jnp.abs(v)


def box_round_off(net: Network, lo: np.ndarray, hi: np.ndarray, level_set: bool = False) -> np.ndarray:
    """``(H,)`` (``H + 1`` with the level set) float64: an upper bound over the box ``[lo, hi]`` of each
    hyperplane's round-off (:meth:`Network.hyperplane_values_and_round_off`): the same estimate from the
    largest magnitudes of the stages' values there (:func:`_absolute_propagation`), one threshold per
    hyperplane for fast pattern tests over many points (coarser than the per-point one, most in deep nets)."""
    net = net.astype(np.float64)
    reach = np.maximum(np.abs(np.asarray(lo, np.float64)), np.abs(np.asarray(hi, np.float64)))
    mags, errs, parts = [reach], [np.zeros(net.input_dim)], []
    with np.errstate(over="ignore", invalid="ignore"):
        for st, (_, vz) in zip(net.stages + (net.output,), _absolute_propagation(net, reach)):
            err = stage_round_off(st, [mags[s] for s in st.sources], [errs[s] for s in st.sources], np.float64)
            act = st.activation
            mags.append(abs(act.value_at_zero) + max(abs(v) for v in act.slopes) * vz)  # |f(z)| over the box
            errs.append(activation_round_off(act, mags[-1], err))
            if st is not net.output and act.breakpoints:
                # (z = vz + max|t| makes |z - t| at least its largest value over the box)
                parts.append(breakpoint_hyperplanes(act, vz + np.max(np.abs(act.breakpoints)), err)[1])
        if level_set:
            parts.append(err[:1])
    return np.asarray(np.concatenate(parts) if parts else np.zeros((0,)), np.float64)


def magnitude_bound(net: Network, lo: np.ndarray, hi: np.ndarray) -> float:
    """An upper bound on the magnitude of every pre-activation's coefficients and of its values over the
    box ``[lo, hi]`` (``inf`` where the bound itself overflows float64), for concrete weights
    (:func:`_absolute_propagation`)."""
    reach = np.maximum(np.abs(np.asarray(lo, np.float64)), np.abs(np.asarray(hi, np.float64)))
    worst = 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        for gz, vz in _absolute_propagation(net.astype(np.float64), reach):
            top = max(np.max(gz, initial=0.0), np.max(vz, initial=0.0))
            worst = math.inf if np.isnan(top) else max(worst, float(top))
    return worst


#: A hyperplane whose coefficients are at most this times its scale (:func:`hyperplane_scales`) on a region
#: is constant there.
CONSTANT_RTOL = 1e-12


def hyperplane_scales(net: Network, level_set: bool = False, xp=jnp) -> jax.Array:
    """``(H,)`` (``H + 1`` with the level set): a bound, over every activation pattern, on the 1-norm of
    each hyperplane's coefficients in input space (:func:`_absolute_propagation`). Round-off in a
    region's pulled-back hyperplane is a small multiple of eps times it, so a hyperplane whose
    coefficients are below :data:`CONSTANT_RTOL` of it is constant on the region (a dead neuron): a scale of each
    hyperplane's own, so rescaling a layer, or the input, keeps the partition. ``xp``: ``jax.numpy``
    (traceable) or ``numpy``."""
    bounds = _absolute_propagation(net, xp.zeros(net.input_dim), xp)
    parts = [xp.repeat(xp.broadcast_to(gz, (st.width,)), st.activation.num_breakpoints)
             for st, (gz, _) in zip(net.stages, bounds)]
    if level_set:
        parts.append(xp.broadcast_to(bounds[-1][0], (net.output.width,))[:1])
    return xp.concatenate(parts) if parts else xp.zeros((0,))


def validate_magnitudes(net: Network, lo: np.ndarray, hi: np.ndarray, *, limit: float = MAX_MAGNITUDE) -> None:
    """Raise :class:`InvalidNetworkError` unless :func:`magnitude_bound` over the box ``[lo, hi]`` is at
    most ``limit`` (:data:`jaxpoly.bounds.MAX_MAGNITUDE` for the exact engines, whose geometry squares
    coefficients and values; :data:`jaxpoly.bounds.MAX_VALUE` for plain evaluation). Weights that are
    not concrete (under ``jit``) are not checked."""
    if not all(_is_concrete(leaf) for leaf in jax.tree_util.tree_leaves(net)):
        return
    worst = magnitude_bound(net, lo, hi)
    if worst > limit:
        raise InvalidNetworkError(
            f"the network's pre-activations may reach {worst:.3g} over the box (a bound from the absolute values "
            f"of the weights), beyond the {limit:g} this engine accepts (larger values overflow its floating-point "
            f"arithmetic); {RESCALE_WEIGHTS}, or shrink the box"
        )


def _expect_network(net: Any) -> None:
    if not isinstance(net, Network):
        raise InvalidNetworkError(
            f"expected a jaxpoly.Network, got {type(net).__name__}; convert models with jaxpoly.from_flax, "
            "from_torch, from_arrays or load_npz"
        )


def _vector(a: Any, name: str, error: type) -> np.ndarray:
    """``a`` flattened to float64 ``(n,)``, or ``error`` naming ``name``: not numbers, complex, not 1-D
    (a single row or column is accepted), or not finite."""
    try:
        v = np.asarray(a)
    except (TypeError, ValueError):
        v = None
    if v is None or v.dtype.kind not in "biuf":
        raise error(f"{name} must be a vector of real numbers, got {str(a)[:60]!r}")
    v = v.astype(np.float64)
    if sum(n > 1 for n in v.shape) > 1:
        raise error(f"{name} must be a vector, got an array of shape {v.shape}")
    v = v.reshape(-1)
    if not np.all(np.isfinite(v)):
        raise error(f"{name} contains NaN or inf")
    return v


def _output_index(net: Network, index: Any, what: str) -> int:
    """``index`` as an output index of ``net``, checked an integer in ``[0, output_dim)``."""
    _expect_network(net)
    if not is_integer(index):
        raise InvalidNetworkError(f"{what} must be an integer output index, got {index!r}")
    if not 0 <= index < net.output_dim:
        raise InvalidNetworkError(f"output index {index} out of range for {net.output_dim} outputs")
    return int(index)


def select_output(net: Network, index: int) -> Network:
    """The same network with only output ``index`` kept (for level sets of one logit)."""
    index = _output_index(net, index, "select_output's index")
    o = net.output
    return Network(net.stages, Stage(tuple(k[:, index : index + 1] for k in o.kernels), o.bias[index : index + 1],
                                     o.sources, o.activation))


def output_difference(net: Network, i: int, j: int) -> Network:
    """A scalar network ``y_i - y_j``: its zero set is the decision boundary between classes i and j
    (``0 <= i, j < output_dim``, ``i != j``)."""
    i, j = _output_index(net, i, "output_difference's i"), _output_index(net, j, "output_difference's j")
    if i == j:
        raise InvalidNetworkError(f"output_difference needs two different outputs, got i = j = {i} (y_i - y_j would "
                                  "be 0 everywhere)")
    o = net.output
    kern = tuple(k[:, i : i + 1] - k[:, j : j + 1] for k in o.kernels)
    return Network(net.stages, Stage(kern, o.bias[i : i + 1] - o.bias[j : j + 1], o.sources, o.activation))


def restrict_to_plane(net: Network, origin: Array, u: Array, v: Array) -> Network:
    """``net`` restricted to the plane ``x = origin + s u + t v``: a network of the two inputs ``(s, t)``.

    Every kernel that reads the network input is composed with the plane's parametrisation (exact:
    the composition of affine maps is affine), so the restricted network's complex is the original
    complex sliced by the plane (the SplineCam view).

    Args:
      origin, u, v: ``(d,)`` a point and two linearly independent directions in input space.
    """
    o, u, v = _input_vectors(net, "slice", origin=origin, u=u, v=v)
    P = np.stack([u, v])  # (2, d)
    if np.linalg.matrix_rank(P / max(np.abs(P).max(), 1e-300), tol=1e-12) < 2:
        raise InvalidNetworkError("slice directions u and v must be linearly independent")
    return compose_input(net, P, o)


def restrict_to_line(net: Network, p0: Array, p1: Array) -> Network:
    """``net`` restricted to the line through ``p0`` and ``p1``: a network of one input ``t``, with
    ``x = p0 + t (p1 - p0)`` (``t = 0`` at ``p0``, ``t = 1`` at ``p1``).

    Exact, as :func:`restrict_to_plane`: ``extract(restrict_to_line(net, a, b), (0, 1),
    level_set=False)`` gives the linear regions the segment from ``a`` to ``b`` crosses (its vertices
    are the crossing points, in ``t``), the count studied along interpolation paths between inputs.

    Args:
      p0, p1: ``(d,)`` two distinct points in input space.
    """
    p0, p1 = _input_vectors(net, "line point", p0=p0, p1=p1)
    if np.all(p0 == p1):
        raise InvalidNetworkError("the line's points p0 and p1 coincide: pick two distinct points")
    return compose_input(net, (p1 - p0)[None], p0)


def _input_vectors(net: Network, what: str, **vectors: Array) -> list[np.ndarray]:
    """Each of ``vectors`` as float64 ``(d,)`` for ``net``'s input dimension ``d``, or
    :class:`InvalidNetworkError` naming it (``what`` and its keyword)."""
    _expect_network(net)
    d = net.input_dim
    out = []
    for name, a in vectors.items():
        v = _vector(a, f"{what} {name}", InvalidNetworkError)
        if v.shape != (d,):
            raise InvalidNetworkError(f"{what} {name} must have shape ({d},) for input_dim={d}, got {v.shape}")
        out.append(v)
    return out


def compose_input(net: Network, P: np.ndarray, origin: np.ndarray) -> Network:
    """``net`` of the input ``z (k,)`` read as ``x = origin + z P`` (``P (k, d)``, ``origin (d,)``): every
    kernel that reads the network input becomes ``P @ kernel`` and adds ``origin @ kernel`` to its
    stage's bias. With a diagonal ``P`` of powers of two and a zero ``origin`` the new network's values
    at ``z`` are the old one's at ``x`` bit for bit."""

    def composed(st: Stage) -> Stage:
        kernels, bias = [], st.bias
        for s, k in zip(st.sources, st.kernels):
            if s == 0:
                kernels.append(P @ k)
                bias = bias + origin @ k
            else:
                kernels.append(k)
        return Stage(tuple(kernels), bias, st.sources, st.activation)

    return Network(tuple(composed(st) for st in net.stages), composed(net.output))


def plane_through_points(p0: Array, p1: Array, p2: Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(origin, u, v)`` of the plane through three points, with ``p0 -> (0, 0)``, ``p1 -> (1, 0)`` and
    ``p2`` at ``(s, t)`` with ``t > 0``; ``u, v`` orthogonal with ``|u| = |p1 - p0|``.

    Raises:
      InvalidArgumentError: the points are of different lengths, not finite, or do not span a plane
        (two coincide, or all three are collinear).
    """
    p0, p1, p2 = (_vector(p, f"point p{i}", InvalidArgumentError) for i, p in enumerate((p0, p1, p2)))
    if not p0.shape == p1.shape == p2.shape:
        raise InvalidArgumentError(f"the three points must have the same length, got {p0.size}, {p1.size} and "
                                   f"{p2.size} coordinates")
    u = p1 - p0
    w = p2 - p0
    scale = max(np.abs(np.stack([p0, p1, p2])).max(initial=0.0), 1e-300)
    if np.linalg.norm(u) <= 1e-12 * scale:
        raise InvalidArgumentError("the three points must span a plane, but the first two coincide; pick three "
                                   "distinct points that are not collinear")
    v = w - (w @ u) / (u @ u) * u
    if np.linalg.norm(w) <= 1e-12 * scale or np.linalg.norm(v) <= 1e-12 * np.linalg.norm(w):  # relative: any scale
        raise InvalidArgumentError("the three points are collinear (or two coincide): they do not span a plane; "
                                   "pick three points that are not on one line")
    v = v / np.linalg.norm(v) * np.linalg.norm(u)
    return p0, u, v
