"""``extract``: the complete polyhedral complex of a network inside a box, by edge subdivision.

The host loop runs one jit-compiled stage at a time (:func:`jaxpoly.subdivision.run_stage`): at most
one host round-trip per stage, plus one per capacity growth. When a stage reports an overflow the
arrays are grown geometrically and the stage resumes at the hyperplane that overflowed, so no cell is
ever dropped; compiled kernels are cached per capacity bucket and reused across calls.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpoly import subdivision as sd
from jaxpoly.arguments import check_flag, is_integer, is_real
from jaxpoly.bounds import MAX_MAGNITUDE, MAX_MAGNITUDE_FLOAT32, TRANSLATE_INPUT, as_box
from jaxpoly.complex import Complex
from jaxpoly.errors import CapacityError, DegenerateError, InvalidArgumentError, PrecisionWarning, warn
from jaxpoly.interrupts import CtrlC
from jaxpoly.lattice import complex_from_regions
from jaxpoly.memory import device_bytes, release_compiled_kernels
from jaxpoly.network import (Network, breakpoint_hyperplanes, restrict_to_plane, validate_magnitudes,
                             validate_network)
from jaxpoly.sizes import bucket

__all__ = ["extract", "DEFAULT_RTOL"]

log = logging.getLogger("jaxpoly")

#: Tolerance rule: a vertex lies on a hyperplane when ``|value| <= rtol * max_vertices |value|``.
DEFAULT_RTOL = {np.dtype(np.float64): 1e-13, np.dtype(np.float32): 1e-5}

_MAX_VERTICES_DEFAULT = 200_000_000
# Initial vertex capacity by input dimension: each hyperplane step costs time proportional to the
# capacity, so it starts near the size of typical complexes (2D bunnies: 300-3,000 vertices; the 3D
# 3x16 bunny: 27,562) and grows (one recompilation per growth) when a network makes more.
_DEFAULT_VERTICES = {1: 1024, 2: 4096, 3: 32768}


_VALUE_BLOCK = 1 << 13  # row block of the passes over a stage's values, _fold_rows (capacities: multiples from 2^15 on)
_NARROW_BYTES = 16 << 20


@functools.partial(jax.jit, static_argnames=("stage", "width"))
def _values_from_input(net: Network, x: jax.Array, nv: jax.Array, stage: int | None, width: int
                       ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Hyperplane values of hidden ``stage`` (or the output, ``stage=None``) at ``x (Vc, d)``, by a
    forward pass; padded to ``width`` columns. Also returns each column's largest magnitude over the
    ``nv`` valid rows ``(width,)``, as :func:`_values_from_previous` does, and their largest round-off
    ``(width,)`` (:meth:`Network.hyperplane_values_and_round_off`: below it a value is zero whatever
    ``rtol``). The values are written block by block into one ``(Vc, width)`` buffer
    (:func:`_fold_rows`; a whole-array pass held another copy of them), and as there the padding rows'
    values are not computed (nothing reads them)."""
    k = len(net.stages) if stage is None else stage

    def fn(p):
        pres, errs = net._forward_round_off(p, k + 1)
        if stage is None:
            return pres[-1], errs[-1]
        return breakpoint_hyperplanes(net.stages[stage].activation, pres[-1], errs[-1])

    dtype = jax.eval_shape(fn, x[:1])[0].dtype

    def step(start, rows, carry):
        buf, scales, noise = carry
        block, err = fn(jax.lax.dynamic_slice_in_dim(x, start, rows))
        block = jnp.pad(block.astype(dtype), ((0, 0), (0, width - block.shape[1])))
        err = jnp.pad(err.astype(dtype), ((0, 0), (0, width - err.shape[1])))
        valid = start + jnp.arange(rows) < nv
        scales = jnp.maximum(scales, sd.column_maxima(block, valid))
        noise = jnp.maximum(noise, sd.column_maxima(err, valid))
        return jax.lax.dynamic_update_slice_in_dim(buf, block, start, 0), scales, noise

    init = (jnp.zeros((x.shape[0], width), dtype), jnp.zeros((width,), dtype), jnp.zeros((width,), dtype))
    return _fold_rows(x.shape[0], nv, step, init)


_ROUND_OFF_WARN = 1e-8  # extract warns where round-off exceeds this much of a hyperplane's largest value


@functools.partial(jax.jit, static_argnames=("width",))
def _coarsest(scales: jax.Array, noise: jax.Array, width: int) -> jax.Array:
    """The largest ``noise / scale`` over the stage's first ``width`` columns with values (0 if none)."""
    sc, nz = scales[:width], noise[:width]
    return jnp.max(jnp.where(sc > nz, nz / jnp.where(sc > 0, sc, 1), 0.0), initial=0.0)


@jax.jit
def _opposite_edges(ends: jax.Array, ne: jax.Array, v: jax.Array) -> jax.Array:
    """How many of the ``ne`` edges have endpoint values ``v (Vc,)`` of strictly opposite signs."""
    valid = jnp.arange(ends.shape[0]) < ne
    return jnp.sum(valid & (v[ends[:, 0]] * v[ends[:, 1]] < 0), dtype=jnp.int32)


def _fold_rows(n: int, nv: jax.Array, step, init):
    """``carry = step(start, rows, carry)`` over the blocks of ``rows`` rows (of ``n``) that hold the
    ``nv`` valid ones (a ``fori_loop``): a pass over a ``(Vc, W)`` array whose temporaries are one
    block's, not the array's (over the whole array XLA's CPU backend kept ``|vals|`` and masks in
    memory: up to 1.5x the values)."""
    rows = math.gcd(n, _VALUE_BLOCK)
    return jax.lax.fori_loop(0, (nv + rows - 1) // rows, lambda i, carry: step(i * rows, rows, carry), init)


@functools.partial(jax.jit, static_argnames=("width", "rtol"))
def _zero_slots_needed(vz: jax.Array, vals: jax.Array, scales: jax.Array, noise: jax.Array, nv: jax.Array, *,
                       width: int, rtol: float) -> jax.Array:
    """The most hyperplanes one vertex may lie on by the end of a stage: the ones it lies on now plus
    the stage's columns ``vals[:, :width]`` that are zero there under the tolerance rule, except those
    zero on every vertex (dead neurons: they cut nothing and take no slot). An upper bound for the
    existing vertices; a split point on several of the stage's hyperplanes still overflows and grows."""
    sc, tol = scales[:width], sd.tolerances(scales, noise, rtol)[:width]

    def step(start, rows, most):
        on = (jnp.abs(jax.lax.dynamic_slice_in_dim(vals, start, rows)[:, :width]) <= tol) & (sc > noise[:width])
        zeros = (jnp.sum(jax.lax.dynamic_slice_in_dim(vz, start, rows) >= 0, axis=1, dtype=jnp.int32)
                 + jnp.sum(on, axis=1, dtype=jnp.int32))
        return jnp.maximum(most, jnp.max(jnp.where(start + jnp.arange(rows) < nv, zeros, 0)))

    return _fold_rows(vals.shape[0], nv, step, jnp.int32(0))


@jax.jit
def _near_misses(vals: jax.Array, scales: jax.Array, noise: jax.Array, nv: jax.Array, width: jax.Array,
                 rtol: jax.Array, floor: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Values the tolerance rule decided though they are far above roundoff: how many of the ``nv`` valid
    rows of ``vals[:, :width]`` have ``max(floor * scale, noise) < |v| <= max(rtol * scale, noise)`` (a
    vertex put on a hyperplane it misses by more than roundoff), and the largest such ``|v| / scale``. (Sizes and
    tolerances are traced: one compilation per shape of ``vals``.) Block by block (:func:`_fold_rows`;
    over the whole array: +3 GB and +6 s on a 2D net with two layers of 512)."""
    cols = vals.shape[1]
    sc, tol = scales[:cols], sd.tolerances(scales, noise, rtol)[:cols]
    low = jnp.maximum(floor * sc, noise[:cols])
    unit = jnp.where(sc > 0, sc, 1)

    def step(start, rows, carry):
        count, worst = carry
        a = jnp.abs(jax.lax.dynamic_slice_in_dim(vals, start, rows))
        band = ((start + jnp.arange(rows) < nv)[:, None] & (jnp.arange(cols) < width) & (a <= tol) & (a > low))
        return count + jnp.sum(band, dtype=jnp.int32), jnp.maximum(worst, jnp.max(jnp.where(band, a / unit, 0)))

    return _fold_rows(vals.shape[0], nv, step, (jnp.int32(0), jnp.zeros((), vals.dtype)))


@functools.partial(jax.jit, static_argnames=("prev", "stage"), donate_argnums=(1,))
def _values_from_previous(net: Network, vals: jax.Array, nv: jax.Array, prev: int, stage: int | None,
                          scales: jax.Array, noise: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Hyperplane values of ``stage`` (``None``: the output) from the previous stage's values, when the
    stage reads only that stage: one affine map per vertex instead of a forward pass from the input.

    ``vals (Vc, W)`` holds the previous stage's values and is overwritten in place, block of rows by
    block of rows, so no second ``(Vc, W)`` buffer is needed; only the blocks holding the ``nv`` valid
    rows are computed (the padding rows keep stale values, which nothing reads). Also returns each
    column's largest magnitude over the valid rows ``(W,)`` (what :func:`jaxpoly.subdivision.run_stage`
    would otherwise compute in another pass over ``vals``) and their largest round-off ``(W,)``
    (:func:`jaxpoly.network.stage_round_off`; the previous stage's values err by at most its ``noise``,
    its largest round-off, plus a few eps of its ``scales`` where they were interpolated).
    """
    st_prev = net.stages[prev]
    m = st_prev.activation.num_breakpoints
    bp0 = st_prev.activation.breakpoints[0]
    st = net.output if stage is None else net.stages[stage]
    n, width = vals.shape
    cols = slice(0, st_prev.width * m, m)  # the pre-activations' columns (the first breakpoint's)
    # jaxpoly.network.stage_round_off with the carried errors at their largest (per column): then only the
    # largest magnitude of the stage's terms varies by row
    slope = max(abs(v) for v in st_prev.activation.slopes)
    a_err = slope * (noise[cols] + 4 * jnp.finfo(vals.dtype).eps * scales[cols])
    carried = jnp.sqrt((a_err * a_err) @ (st.kernels[0] * st.kernels[0]))
    k_abs = jnp.abs(st.kernels[0])

    def fn(v):
        a = st_prev.activation(v[:, cols] + bp0)
        out, mag = st.affine(a), jnp.abs(a) @ k_abs
        if stage is not None:
            bp = jnp.asarray(st.activation.breakpoints, out.dtype)
            out = (out[:, :, None] - bp).reshape(out.shape[0], -1)
        return jnp.pad(out, ((0, 0), (0, width - out.shape[1]))).astype(v.dtype), mag

    def step(start, rows, carry):
        buf, scales, most = carry
        block, mag = fn(jax.lax.dynamic_slice_in_dim(buf, start, rows))
        valid = start + jnp.arange(rows) < nv
        scales = jnp.maximum(scales, sd.column_maxima(block, valid))
        most = jnp.maximum(most, sd.column_maxima(mag, valid))
        return jax.lax.dynamic_update_slice_in_dim(buf, block, start, 0), scales, most

    init = (vals, jnp.zeros((width,), vals.dtype), jnp.zeros((st.width,), vals.dtype))
    vals, scales, most = _fold_rows(n, nv, step, init)
    n_terms = 1 + st.kernels[0].shape[0]
    err = (n_terms + 1) * jnp.finfo(vals.dtype).eps * (jnp.abs(st.bias) + most) + carried  # (st.width,)
    if stage is not None:  # per breakpoint (z - t rounds once more, at most eps of the largest |z - t|)
        m2 = st.activation.num_breakpoints
        err = jnp.repeat(err, m2) + jnp.finfo(vals.dtype).eps * scales[: st.width * m2]
    return vals, scales, jnp.pad(err, (0, width - err.shape[0])).astype(vals.dtype)


def extract(
    net: Network,
    bounds: Sequence[Any],
    *,
    level_set: bool = True,
    dtype: Any = None,
    capacity: int | None = None,
    max_vertices: int | None = None,
    max_memory: int | None = None,
    rtol: float | None = None,
    progress: bool = False,
    slice: tuple[Any, Any, Any] | None = None,  # noqa: A002 - the documented keyword
    engine: str = "auto",
) -> Complex:
    """The complete polyhedral complex of ``net`` inside the box ``bounds = (lo, hi)``.

    Every hidden neuron's breakpoint hyperplane (bent by the earlier layers) subdivides the box; with
    ``level_set=True`` the zero set of the scalar output is added last, so the complex contains the
    exact level-set mesh (an SDF's surface, a classifier's decision boundary).

    Args:
      net: the network (``input_dim = d >= 1``).
      bounds: ``(lo, hi)``, each a scalar or an array ``(d,)``, with ``lo < hi``.
      level_set: add the output's zero set as the last hyperplane (needs a scalar output).
      dtype: ``float64`` (default, exact to the tolerance rule) or ``float32`` (half the memory; the
        tolerance widens to ``1e-5`` relative, so near-degenerate vertices may merge or split
        differently and counts may differ from the float64 complex: they do on three of the four
        bundled bunnies, each time with the near-miss warning described under ``rtol``). Geometry on a
        float32 complex (:func:`~jaxpoly.vertex_positions`, :func:`~jaxpoly.is_stale`) recomputes its
        vertices in float64 from float32's combinatorics.
      capacity: initial vertex capacity (grown automatically; a hint to avoid recompiles).
      max_vertices: refuse complexes with more vertices than this (default 2e8) with a
        :class:`~jaxpoly.CapacityError`, raised as soon as a stage goes beyond it.
      max_memory: bytes the padded arrays may take (default 90% of the default device's memory:
        physical memory on CPU, the allocator's limit on a GPU); a growth beyond
        it raises :class:`~jaxpoly.CapacityError` with the size reached, instead of swapping or being
        killed by the OS.
      rtol: edge subdivision's tolerance rule — a vertex lies on a hyperplane when the hyperplane's
        value there is at most ``rtol`` times its largest magnitude over the current vertices (default
        1e-13 in float64: roundoff at vertices on a hyperplane is ~1e-15, the closest genuine near-miss
        in the bunny networks ~1e-11). The rule is relative to the box: in a box far larger than where
        the hyperplanes meet, genuine near-misses fall under it and merge. Values it decides far above
        roundoff (between ``sqrt(rtol * eps)`` and ``rtol`` times the scale) are reported by a
        :class:`~jaxpoly.PrecisionWarning`, and counted in ``timings["near_misses"]``. In float64 the
        tolerance is at least the largest round-off of the hyperplane's values at the vertices
        (:meth:`Network.hyperplane_values_and_round_off`), so hyperplanes meeting where their values
        come from cancelling larger terms (tiny boxes, boxes far from the origin) are not cut apart;
        where that round-off exceeds 1e-8 of a hyperplane's values a PrecisionWarning says so
        (``timings["round_off"]``: the largest ratio). The regions engine does not use ``rtol`` (it
        computes the exact complex in float64).
      progress: log a line per stage (to the ``jaxpoly`` logger) and show a progress bar.
      slice: ``(origin, u, v)``: extract on the plane ``x = origin + s u + t v`` of a
        high-dimensional input instead (``bounds`` then bound ``(s, t)``; the complex's vertices are
        plane coordinates — map them back with ``origin + s u + t v``). See
        :func:`jaxpoly.plane_through_points` for the plane through three data points.
      engine: ``"auto"`` (default): edge subdivision, and where it meets a configuration it does not
        resolve (a hyperplane containing an edge of the complex while cutting elsewhere, in ``d >= 3``:
        three planes through one line, or a neuron vanishing on whole regions as zero biases make it)
        the complex is built from the certified regions instead (:mod:`jaxpoly.lattice`: exact, float64,
        slower; ``timings["engine"]`` says which ran and why; where the regions do not fit together
        either, a :class:`~jaxpoly.DegenerateError` gives both reasons). ``"subdivision"``: raise
        :class:`~jaxpoly.DegenerateError` there instead. ``"regions"``: always build from the regions
        (a cross-check of the two engines).

    Returns:
      A :class:`~jaxpoly.Complex`.
    Raises:
      InvalidNetworkError, InvalidBoundsError, InvalidArgumentError, CapacityError, DegenerateError.
    """
    release_compiled_kernels()
    level_set, progress = check_flag(level_set, "level_set"), check_flag(progress, "progress")
    validate_network(net, scalar_output=level_set)
    if slice is not None:
        try:
            origin, u, v = slice
        except (TypeError, ValueError):
            raise InvalidArgumentError("slice must be a triple (origin, u, v) of arrays of shape (d,)") from None
        net = restrict_to_plane(net, origin, u, v)
    try:
        dt = np.dtype(dtype or np.float64)
    except TypeError:
        dt = None
    if dt not in DEFAULT_RTOL:
        raise InvalidArgumentError(f"dtype must be float32 or float64, got {dtype!r}")
    dtype = dt
    for name, val in (("capacity", capacity), ("max_vertices", max_vertices), ("max_memory", max_memory)):
        if val is not None and not (is_integer(val) and val > 0):
            raise InvalidArgumentError(f"{name} must be a positive integer or None, got {val!r}")
    if engine not in ("auto", "subdivision", "regions"):
        raise InvalidArgumentError(f"engine must be 'auto', 'subdivision' or 'regions', got {engine!r}")
    if rtol is not None and not (is_real(rtol) and np.isfinite(rtol) and 0 <= rtol < 1e-2):
        raise InvalidArgumentError(f"rtol must be a small non-negative number (default 1e-13), got {rtol!r}")
    rtol = DEFAULT_RTOL[dtype] if rtol is None else float(rtol)
    max_vertices = int(max_vertices or _MAX_VERTICES_DEFAULT)
    max_memory = int(max_memory or 0.9 * device_bytes())
    d = net.input_dim
    # coordinates and pre-activations that overflow (float64: squared in volumes and certificates)
    limit = MAX_MAGNITUDE if dtype == np.float64 else MAX_MAGNITUDE_FLOAT32
    lo, hi = as_box(bounds, d, max_abs=limit)
    validate_magnitudes(net, lo, hi, limit=limit)
    H = net.num_hyperplanes
    num_facets = 2 * d
    r_np = sd.hash_table(num_facets + H + 1)
    # Work in float64 regardless of the user's x64 setting; float32 runs cast the network.
    with jax.enable_x64(True):
        def from_regions(reason: str) -> Complex:
            return complex_from_regions(net, lo, hi, level_set=level_set, hash_table=r_np,
                                        max_vertices=max_vertices, reason=reason, dtype=dtype)

        if engine == "regions":
            return from_regions("engine='regions'")
        try:
            with CtrlC() as ctrl_c:
                return _extract(net, lo, hi, level_set, dtype, capacity, max_vertices, max_memory, rtol, progress,
                                r_np.copy(), ctrl_c)
        except DegenerateError as e:
            if engine == "subdivision":
                raise
            log.info("%s; building the complex from its regions instead", e)
            try:
                return from_regions(str(e))
            except DegenerateError as e2:
                raise DegenerateError(f"{e2} [engine='auto' had turned to the regions engine because edge "
                                      f"subdivision met: {e}]") from e2


def _extract(net, lo, hi, level_set, dtype, capacity, max_vertices, max_memory, rtol, progress, r_np,
             ctrl_c: CtrlC) -> Complex:
    d = net.input_dim
    num_facets = 2 * d
    work_net = net.astype(dtype)
    stages = [i for i, st in enumerate(net.stages) if st.activation.num_breakpoints]
    widths = [net.stages[i].width * net.stages[i].activation.num_breakpoints for i in stages]
    W = max(widths + [1])
    # One default bucket holds the small networks outright (one compilation); larger ones grow.
    vcap = bucket(capacity or max(_DEFAULT_VERTICES.get(d, 65536), 64 * 2**d))
    vcap = min(vcap, bucket(max(max_vertices, 2**d)))  # no more room than max_vertices (and the corners) need
    cap = sd.Capacity(vertices=vcap, edges=bucket(vcap * d), splits=bucket(vcap // 8),
                      zero_edges=64, zero_slots=d)
    itemsize = np.dtype(dtype).itemsize
    _check_memory(None, cap, None, d, W, itemsize, max_memory)
    state = sd.init_box(lo, hi, r_np, cap, dtype)
    offs = net.hyperplane_offsets
    timings = {"engine": "subdivision", "stages": []}
    t_start = time.perf_counter()
    plan = [(i, offs[i], w) for i, w in zip(stages, widths)]
    if level_set:
        plan.append((None, net.num_hyperplanes, 1))
    bar = _progress_bar(progress, len(plan))

    def grow_to(state, vals, cap, new):
        _check_memory(cap, new, state, d, vals.shape[1], itemsize, max_memory)
        if (new.vertices, new.edges, new.zero_slots) == (cap.vertices, cap.edges, cap.zero_slots):
            return state, vals, new  # only a step's own sizes changed: no array to copy
        return (*sd.grow(state, vals, new), new)

    # Roundoff puts a vertex on its hyperplanes to ~eps of their scale, genuine near-misses sit far
    # above (~1e-11 in the bunny networks): values the tolerance rule decides between the geometric
    # middle of eps and rtol and rtol itself are reported (see _warn_near_misses).
    floor = math.sqrt(rtol * float(np.finfo(dtype).eps))
    near = []
    prev, vals, scales, noise = None, None, None, None
    coarse = []  # per stage: the largest round-off relative to a hyperplane's values (read at the end)
    for stage, off, width in plan:
        ctrl_c.check()
        t0 = time.perf_counter()
        nv = int(state.nv)
        x = state.x
        r = jnp.asarray(r_np)
        reads = net.output.sources if stage is None else net.stages[stage].sources
        # (scales: the columns' largest magnitudes over the valid vertices, which run_stage needs; noise:
        # their largest round-off bounds, below which a value is zero whatever rtol)
        if prev is not None and reads == (prev + 1,):
            vals, scales, noise = _values_from_previous(work_net, vals, state.nv, prev, stage, scales, noise)
        else:
            vals, scales, noise = _values_from_input(work_net, x, state.nv, stage, W)
        if dtype != np.float64:  # (float32's rtol is above its round-off; a floor would merge near-misses)
            noise = jnp.zeros_like(noise)
        coarse.append(_coarsest(scales, noise, width))
        prev = stage
        if stage is None:
            if vals.shape[1] > 1 and vals.nbytes > _NARROW_BYTES:
                vals = vals[:, :1]  # the level set needs one column; on large complexes that frees gigabytes
                scales, noise = scales[:1], noise[:1]
            # Its new vertices are the edges it splits: count them (an upper bound: no tolerance) and grow
            # once now rather than overflow, grow and redo the step. About d - 1 new edges per split.
            k = int(_opposite_edges(state.ends, state.ne, vals[:, 0]))
            need_v, need_e = int(state.nv) + k, int(state.ne) + d * k + 1024
            if need_v > cap.vertices or need_e > cap.edges or k > cap.splits:
                # (clamped to max_vertices: a level set that needs more overflows and _grown says so)
                new = sd.Capacity(max(cap.vertices, min(bucket(need_v * 1.05), max_vertices)),
                                  max(cap.edges, bucket(need_e)), max(cap.splits, bucket(k)),
                                  cap.zero_edges, cap.zero_slots)
                state, vals, cap = grow_to(state, vals, cap, new)
        # Zero-bias networks put every hyperplane through the origin: grow the vertices' zero slots once,
        # to what the stage needs, rather than by overflow (each growth is a recompilation).
        zs = int(_zero_slots_needed(state.vz, vals, scales, noise, state.nv, width=width, rtol=rtol))
        if zs > cap.zero_slots:
            state, vals, cap = grow_to(state, vals, cap, cap._replace(zero_slots=zs + 1))
        start = 0
        grows = 0
        counts = np.zeros(width + 1, np.int64)  # vertices after each column (counts[0]: before the stage)
        counts[0] = int(state.nv)
        while True:
            ctrl_c.check()
            state, vals, flags, failed_at, skipped, scales, after = sd.run_stage(
                state, vals, scales, noise, r, jnp.int32(num_facets + off), jnp.int32(start), jnp.int32(width),
                cap=cap, num_facets=num_facets, rtol=rtol)
            skipped = np.asarray(skipped)[:width]
            done = width if int(flags) == 0 else int(failed_at)
            counts[start + 1 : done + 1] = np.asarray(after)[start:done]
            r_np[num_facets + off + np.nonzero(skipped[start:done])[0] + start] = 0
            flags = int(flags)
            if flags == 0:
                break
            failed_at = int(failed_at)
            hyper = off + failed_at
            if not flags & sd.CAPACITY_FLAGS:  # an overflowing step's other flags saw truncated arrays
                _raise_degenerate(flags, net, hyper, level_set and stage is None)
            new = _grown(cap, flags, state, max_vertices, _stage_estimate(counts[: failed_at + 1], width),
                         columns_left=width - failed_at)
            try:
                state, vals, cap = grow_to(state, vals, cap, new)
            except CapacityError:  # the estimate may overshoot: fall back to plain doubling
                new = _grown(cap, flags, state, max_vertices)
                state, vals, cap = grow_to(state, vals, cap, new)
            start = failed_at
            grows += 1
        nv2, ne2 = int(state.nv), int(state.ne)
        near.append((*_near_misses(vals, scales, noise, state.nv, width, rtol, floor), stage))  # (read at the end)
        if nv2 > max_vertices:  # (capacities are rounded up to buckets, so a stage may fit and still exceed it)
            raise CapacityError(
                f"the complex has {nv2:,} vertices after {'the level set' if stage is None else f'stage {stage}'}, "
                f"more than max_vertices={max_vertices:,}; raise max_vertices if memory allows, shrink the box, or "
                "extract a 2D slice"
            )
        dt = time.perf_counter() - t0
        timings["stages"].append({"stage": "level_set" if stage is None else stage, "vertices": nv2,
                                  "edges": ne2, "seconds": dt, "regrows": grows, "capacity": list(cap),
                                  "peak_rss_mb": _peak_rss_mb()})
        log.info("stage %s: %d vertices, %d edges (%.2fs)", "level set" if stage is None else stage,
                 nv2, ne2, dt)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(vertices=nv2, edges=ne2)
        # Grow before the next stage when it is predicted not to fit. Growth ratios shrink from layer to
        # layer (8x32 bunny: 9.3, 3.8, 2.8, 2.5, 2.1, 2.2, 1.7), so the next ratio is predicted as this
        # one to the power 3/4 (scaled by the widths); an underestimate only costs a regrowth mid-stage.
        # The first stage grows from the 2^d corners, no guide to the next: it grows on overflow. The level
        # set grows at its start, from an exact count.
        nxt = plan.index((stage, off, width)) + 1
        if 1 < nxt < len(plan) and plan[nxt][0] is not None:
            ratio = max(nv2 / max(nv, 1), 1.0) ** (0.75 * plan[nxt][2] / max(width, 1))
            target = min(int(nv2 * ratio * 1.15) + 1024, max_vertices)
            new_edges = int(ne2 + (target - nv2) * d * 1.15)  # about d new edges per new vertex
            # A shortfall under 1.5x costs one regrowth on overflow anyway (capacities double), so only a
            # larger one is worth growing for now.
            if target > 1.5 * cap.vertices or new_edges > 1.5 * cap.edges:
                new = sd.Capacity(max(cap.vertices, bucket(target)), max(cap.edges, bucket(new_edges)),
                                  max(cap.splits, bucket((target - nv2) // max(plan[nxt][2], 1) * 3)),
                                  cap.zero_edges, cap.zero_slots)
                state, vals, cap = grow_to(state, vals, cap, new)
    if bar is not None:
        bar.close()
    ctrl_c.check()
    near = [(int(n), float(worst), stage) for n, worst, stage in jax.device_get(near) if n]
    if near:
        _warn_near_misses(near, lo, hi, rtol, dtype)
    timings["near_misses"] = sum(n for n, _, _ in near)
    timings["round_off"] = max([float(c) for c in jax.device_get(coarse)], default=0.0)
    if timings["round_off"] > _ROUND_OFF_WARN:
        far = bool(np.max(np.abs(lo + hi) / 2) > np.max(hi - lo) / 2)
        warn(PrecisionWarning,
             f"extract: float64 resolves some hyperplanes only to {timings['round_off']:.2g} of their largest value "
             "over the box (the round-off of the larger terms that cancel to give them), so features thinner than "
             "that merge. " + (TRANSLATE_INPUT if far else "The box is small for the magnitudes inside the network: "
                               "such features are below float64's resolution there."))
    timings["total_seconds"] = time.perf_counter() - t_start
    nv, ne = int(state.nv), int(state.ne)
    return Complex.from_state(
        net=net, lo=lo, hi=hi, level_set=level_set,
        x=_head(state.x, nv), vz=_head(state.vz, nv), ends=_head(state.ends, ne), ez=_head(state.ez, ne),
        eh=_head(state.eh, ne), hash_table=r_np, timings=timings, em=_head(state.em, ne), ez2=_head(state.ez2, ne),
    )


def _head(a: jax.Array, n: int) -> np.ndarray:
    """The first ``n`` rows of a padded array as a host copy (sliced on the host: on the device each
    new ``n`` compiles a slice)."""
    return np.array(np.asarray(a)[:n])


def _warn_near_misses(near: list, lo: np.ndarray, hi: np.ndarray, rtol: float, dtype) -> None:
    """Warn (:class:`~jaxpoly.PrecisionWarning`) about the values the tolerance rule decided well above roundoff (``near``: per stage,
    ``(count, largest |v| / scale, stage)``): each may be a genuine near-miss merged into a degenerate
    vertex, so the complex may differ from the exact one. The rule is relative to each hyperplane's
    largest value over the box, so a box much larger than where the network's hyperplanes meet widens it
    in absolute terms (a random 2-layer net in a +-1e10 box: one region lost to a 6.5e-4 near-miss)."""
    count = sum(n for n, _, _ in near)
    worst = max(near, key=lambda t: t[1])
    where = "the level set" if worst[2] is None else f"stage {worst[2]}"
    box = float(max(np.abs(lo).max(), np.abs(hi).max()))
    name = np.dtype(dtype).name
    warn(
        PrecisionWarning,
        "extract: the tolerance rule (rtol=%g) put vertices on hyperplanes they miss by up to %.1e of the "
        "hyperplane's largest value over the box (%d vertex-hyperplane pairs, the worst at %s), far above "
        "%s roundoff (%.0e): they may be genuine near-misses merged into one vertex, so the counts may differ "
        "from the exact complex. %sThe rule is relative to the box (coordinates up to %g here): extract in a "
        "box closer to where the network's hyperplanes meet, or pass a smaller rtol.",
        rtol, worst[1], count, where, name, float(np.finfo(dtype).eps),
        "Extract in float64 (the default dtype) to resolve them. " if name != "float64" else "", box)


def _peak_rss_mb() -> float | None:
    """This process's peak resident memory so far, in MiB (``None`` where the OS does not say)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _state_bytes(cap: sd.Capacity, d: int, width: int, itemsize: int) -> int:
    """Bytes of the padded state and stage values at capacity ``cap`` (see :mod:`jaxpoly.subdivision`)."""
    words = -(-width // 32)  # a stage's packed sign masks: 2 words per vertex, 3 per edge (per 32 columns)
    per_vertex = d * itemsize + 4 * cap.zero_slots + width * itemsize + 8 * words
    per_edge = 8 + 4 * max(d - 1, 1) + 16 + 12 * words
    # A step's temporaries: a few per-edge masks/indices and per-split rows (positions, keys, slots).
    per_step = 6 * cap.edges + cap.splits * (8 * d + 8 * d * 2 + 4 * cap.zero_slots + 64)
    return cap.vertices * per_vertex + cap.edges * per_edge + per_step


def _check_memory(old: sd.Capacity | None, new: sd.Capacity, state: sd.State | None, d: int, width: int,
                  itemsize: int, limit: int) -> None:
    """Refuse a growth whose arrays (old and new side by side while copying) would not fit ``limit``."""
    need = (_state_bytes(old, d, width, itemsize) if old else 0) + _state_bytes(new, d, width, itemsize)
    if need > limit:
        nv, ne = (int(state.nv), int(state.ne)) if state is not None else (0, 0)
        raise CapacityError(
            f"the complex has reached {nv:,} vertices and {ne:,} edges; growing to "
            f"{new.vertices:,} vertices / {new.edges:,} edges needs about {need / 2**30:.1f} GiB, more than "
            f"the {limit / 2**30:.1f} GiB allowed (max_memory). Shrink the box, extract a 2D slice, use "
            "dtype=float32, or raise max_memory on a machine with more memory."
        )


def _stage_estimate(counts: np.ndarray, width: int) -> tuple[int, int] | None:
    """Vertices at the end of a stage and the most one of its remaining columns adds, extrapolated from
    ``counts`` (vertices before the stage, then after each of its first columns): the new vertices per
    column grow about linearly along a stage (a column crosses the earlier layers' cells and the stage's
    earlier hyperplanes), so the trend of the columns so far is fitted and summed. ``None``
    with fewer than 8 columns to go by."""
    j = len(counts) - 1
    if j < 8 or j >= width:
        return None
    inc = np.diff(counts).astype(np.float64)
    k = np.arange(1, j + 1, dtype=np.float64)
    b, a = np.polyfit(k, inc, 1)
    if b < 0:  # a falling trend (early columns crossing more of the box) is not extrapolated
        a, b = inc.mean(), 0.0
    rest = np.maximum(a + b * np.arange(j + 1, width + 1), 0.0)
    return int(counts[-1] + rest.sum()), int(max(rest.max(initial=0.0), inc.max()))


def _grown(cap: sd.Capacity, flags: int, state: sd.State, max_vertices: int,
           estimate: tuple[int, int] | None = None, columns_left: int = 0) -> sd.Capacity:
    """Capacities after an overflow: double what overflowed, and keep the others in proportion (about
    ``d`` edges per vertex), so one regrowth (one recompilation) serves the rest of the stage. With the
    stage's ``estimate`` (:func:`_stage_estimate`: final vertices, most new vertices per column) the
    vertices and splits grow at once to 1.1x / 2x of it when that is more (a wide stage otherwise
    doubles several times, and each growth copies its ``V x W`` values); the zero slots grow by the
    stage's ``columns_left`` when that is more (room for every one of them at one vertex)."""
    v, e, s, z, zs = cap
    d = state.x.shape[1]
    if flags & sd.FLAG_VERTICES:
        v = bucket(2 * v)
    if flags & sd.FLAG_EDGES:
        e = bucket(2 * e)
    if flags & sd.FLAG_SPLITS:
        s = bucket(2 * s)
    # many hyperplanes through one vertex (zero biases): grow fast, each growth is a recompilation
    if flags & sd.FLAG_ZERO_EDGES:
        z = bucket(16 * z)
    if flags & sd.FLAG_ZERO_SLOTS:
        zs = max(2 * zs, zs + columns_left)
    if flags & (sd.FLAG_VERTICES | sd.FLAG_EDGES):
        v = max(v, bucket(int(state.nv) * 1.5))
        e = max(e, bucket(v * max(d, 1)), bucket(int(state.ne) * 1.5))
    if estimate is not None and flags & (sd.FLAG_VERTICES | sd.FLAG_EDGES | sd.FLAG_SPLITS):
        ev, es = estimate
        ev = min(int(ev * 1.1), max_vertices)
        if ev > v:
            v = bucket(ev)
            e = max(e, bucket(ev * int(state.ne) / max(int(state.nv), 1) * 1.05))
        s = max(s, bucket(es * 2))  # a column's splits vary widely around the trend
    s = min(s, v)
    e = max(e, bucket(int(state.ne) + 2 * s))
    if v > max_vertices and v > cap.vertices:
        raise CapacityError(
            f"the complex needs more than {cap.vertices:,} vertices (reached {int(state.nv):,}); "
            f"raise max_vertices (now {max_vertices:,}) if memory allows, shrink the box, or extract a "
            "2D slice"
        )
    return sd.Capacity(v, e, s, z, zs)


def _raise_degenerate(flags: int, net: Network, hyper: int, is_level_set: bool) -> None:
    bad = flags & ~sd.CAPACITY_FLAGS
    if not bad:
        return
    where = "the output's level set" if is_level_set else (
        "stage {0}, neuron {1} (breakpoint {2:g})".format(*net.hyperplane_id(hyper)))
    reasons = ", ".join(name for bit, name in sd.FLAG_NAMES.items() if bad & bit)
    raise DegenerateError(
        f"non-generic arrangement at {where}: {reasons}. This configuration is not resolved by this "
        "version, so no complex is returned. Perturb that neuron's bias (or the output bias) slightly, "
        "or shrink or shift the box."
    )


def _progress_bar(progress: bool, total: int):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="jaxpoly.extract", unit="stage")
