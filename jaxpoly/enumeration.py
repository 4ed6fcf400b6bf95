"""``enumerate_regions``: every linear region of a network inside a box, by graph search over regions.

Algorithm (after Balestriero & LeCun, "Fast and Exact Enumeration of Deep Networks Partitions
Regions", ICASSP 2023). Levels are the hidden stages with a breakpoint, in order, plus the output's
zero set with ``level_set=True``. Inside a cell of levels ``1..l`` every hyperplane of level ``l + 1``
is affine (:meth:`Network.affine_maps` of the cell's pattern), so level ``l + 1`` is a hyperplane
arrangement restricted to the cell, whose facets bound it. Each level is a breadth-first search over
the cells of those arrangements, all parents at once:

* seed: one point per parent cell inside its inscribed ball, chosen away from the new hyperplanes;
  its pattern names the first cell of the parent's sub-arrangement;
* per batch of ``batch_size`` cells (padded, so every kernel compiles once): constraints
  (:func:`jaxpoly.oracle.cell_rows`), Chebyshev centre and inradius (the certificate: a cell counts
  iff its inradius exceeds ``tol * |half-diagonal|``), facets (:func:`jaxpoly.oracle.classify_facets`:
  rays, then LPs for what rays missed);
* neighbours: crossing a facet on a hyperplane of the current level flips that hyperplane's bit (and
  the bits of every hyperplane that coincides with it); parent facets are never crossed. New patterns
  are deduplicated on the host by their packed bits.

Regions are the cells of the last level. Exact up to the tolerance: every cell whose inradius exceeds
``tol`` (relative to the box half-diagonal) and that is connected to the seed through such cells is
found (a neighbour of inradius ``rho`` makes its facet exceed the redundancy test by ``2 rho``).
Adjacency pairs are found by flipping each facet's coincident hyperplanes and looking the pattern up.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpoly import oracle
from jaxpoly.bounds import as_box
from jaxpoly.errors import CapacityError
from jaxpoly.network import Network, validate_network
from jaxpoly.regions import Regions, pattern_keys

__all__ = ["enumerate_regions", "sample_regions", "estimate_batch_bytes"]

log = logging.getLogger("jaxpoly")

_SEED_CANDIDATES = 32


def estimate_batch_bytes(d: int, num_hyperplanes: int, batch_size: int, rays: int) -> int:
    """Rough peak bytes of one batch: rays ``(B, R, M)`` arrays, the ``(B, M, M)`` coincidence test,
    the affine maps and the padded LP instances (4 redundancy LPs per cell in flight)."""
    M = 2 * d + num_hyperplanes
    per_cell = 8 * (4 * rays * M + 2 * M * M + 3 * num_hyperplanes * d + 6 * (2 * d + 4) * (M + 2 * d + 2) * (d + 1))
    return int(batch_size) * per_cell


def _memory_limit() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _levels(net: Network, level_set: bool) -> list[tuple[int, int]]:
    offs = net.hyperplane_offsets
    out = [(offs[i], offs[i + 1]) for i in range(len(net.stages)) if offs[i + 1] > offs[i]]
    if level_set:
        out.append((offs[-1], offs[-1] + 1))
    return out


def _unit_rays(num: int, d: int, seed: int) -> jax.Array:
    """``(num, d)`` directions: the ``2 d`` axis directions then random unit vectors."""
    eye = np.eye(d)
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((max(num - 2 * d, 0), d))
    U = np.concatenate([eye, -eye, g / np.linalg.norm(g, axis=1, keepdims=True)])[:num]
    return jnp.asarray(U)


def _pad_rows(a: np.ndarray, size: int) -> np.ndarray:
    if len(a) == size:
        return a
    return np.concatenate([a, np.repeat(a[:1], size - len(a), axis=0)])


def _seed_points(rows: oracle.CellRows, w: jax.Array, r: jax.Array, offsets: jax.Array, stage_mask: jax.Array
                 ) -> jax.Array:
    """For each parent the candidate point ``w + r * offsets[k]`` farthest from every non-constant
    hyperplane of the next level (``stage_mask (M,)``): ``(B, d)``."""
    Y = w[:, None, :] + r[:, None, None] * offsets[None]  # (B, K, d)
    dist = jnp.abs(jnp.einsum("bmd,bkd->bkm", rows.A, Y) - rows.b[:, None, :])
    use = (stage_mask[None, :] & rows.rows_ok)[:, None, :]
    score = jnp.min(jnp.where(use, dist, jnp.inf), axis=-1)  # (B, K)
    k = jnp.argmax(score, axis=1)
    return jnp.take_along_axis(Y, k[:, None, None], axis=1)[:, 0]


_seed_points_jit = jax.jit(_seed_points)


def _hyper_values(net: Network, x: jax.Array, level_set: bool) -> jax.Array:
    v = net.hyperplane_values(x)
    if level_set:
        v = jnp.concatenate([v, net(x)[:, :1]], axis=1)
    return v


_hyper_values_jit = jax.jit(_hyper_values, static_argnames=("level_set",))


class _Ctx:
    """Static data of one run (box, sizes, options, counters)."""

    def __init__(self, net, lo, hi, level_set, batch_size, rays, tol, seed, sharding):
        self.net, self.level_set = net, level_set
        self.d = net.input_dim
        self.Hp = net.num_hyperplanes + int(level_set)
        # padded slot count (multiple of 8, at least 24): networks of similar sizes share LP kernels
        self.M = max(24, -(-(2 * self.d + self.Hp) // 8) * 8)
        self.centre = (lo + hi) / 2
        self.half = (hi - lo) / 2
        self.radius = float(np.linalg.norm(self.half))
        self.tol = tol * self.radius
        self.B = batch_size
        self.U = _unit_rays(rays, self.d, seed)
        rng = np.random.default_rng(seed + 1)
        g = rng.standard_normal((_SEED_CANDIDATES - 1, self.d))
        g *= (0.9 * rng.random((_SEED_CANDIDATES - 1, 1)) ** (1 / self.d)) / np.linalg.norm(g, axis=1, keepdims=True)
        self.seed_offsets = jnp.asarray(np.concatenate([np.zeros((1, self.d)), g]))
        self.sharding = sharding
        self.stats = {"lps": 0, "lp_fallbacks": 0, "rays": 0, "cells": 0, "batches": 0,
                      "empty_cells": 0, "seed_failures": 0}

    def put(self, a: np.ndarray) -> jax.Array:
        return jnp.asarray(a) if self.sharding is None else jax.device_put(a, self.sharding)

    def slot_mask(self, stage: tuple[int, int]) -> np.ndarray:
        s = np.zeros(self.M, bool)
        s[2 * self.d + stage[0] : 2 * self.d + stage[1]] = True
        return s


def _process_batch(ctx: _Ctx, pats: np.ndarray, pmask: np.ndarray, stage: tuple[int, int]):
    """Certify and classify up to ``B`` cells of one level. Returns host arrays for the valid cells:
    ``(good (n,), witness (n, d), radius (n,), facets (n, M), same (n, M, M), rows_ok (n, M))``."""
    n = len(pats)
    pats_p, pmask_p = _pad_rows(pats, ctx.B), _pad_rows(pmask, ctx.B)
    rows = oracle.cell_rows(ctx.net, ctx.put(pats_p), ctx.put(pmask_p), jnp.asarray(ctx.centre),
                            jnp.asarray(ctx.half), stage=stage, level_set=ctx.level_set,
                            num_slots=ctx.M)
    wit, rad, fb = oracle.chebyshev(rows, 2.0 * ctx.radius)
    valid = np.zeros(ctx.B, bool)
    valid[:n] = True
    good = valid & (rad > ctx.tol)
    facets, cnt = oracle.classify_facets(rows, wit, good, ctx.U, tol=ctx.tol, margin=1e-9 * ctx.radius,
                                         delta=2.0 * ctx.radius)
    st = ctx.stats
    st["lps"] += n + cnt.lps
    st["lp_fallbacks"] += fb + cnt.fallbacks
    st["rays"] += cnt.rays
    st["batches"] += 1
    st["cells"] += int(good.sum())
    st["empty_cells"] += int((valid & ~good).sum())
    same = np.asarray(rows.same)[:n]
    return good[:n], wit[:n], rad[:n], facets[:n], same, np.asarray(rows.rows_ok)[:n]


def _flips(pats, facets, same, rows_ok, slots: np.ndarray, d: int):
    """Neighbour patterns across the facets in ``slots (M,)``: ``(src (k,), slot (k,), patterns (k, H'))``."""
    F = facets & slots[None, :]
    src, slot = np.nonzero(F)
    h = slice(2 * d, 2 * d + pats.shape[1])
    flip = same[src, slot, h] & rows_ok[src, h] & slots[None, h]
    return src, slot, pats[src] ^ flip


def _seed_level(ctx: _Ctx, par_pat, par_wit, par_rad, stage) -> np.ndarray:
    """Patterns ``(n, H')`` of one seed cell per parent for the level ``stage``."""
    out = np.zeros_like(par_pat)
    smask = jnp.asarray(ctx.slot_mask(stage))
    keep = np.arange(ctx.Hp) < stage[0]
    new = (np.arange(ctx.Hp) >= stage[0]) & (np.arange(ctx.Hp) < stage[1])
    for s in range(0, len(par_pat), ctx.B):
        p = _pad_rows(par_pat[s : s + ctx.B], ctx.B)
        n = min(ctx.B, len(par_pat) - s)
        pm = np.zeros((ctx.B, ctx.M), bool)
        rows = oracle.cell_rows(ctx.net, ctx.put(p), ctx.put(pm), jnp.asarray(ctx.centre), jnp.asarray(ctx.half),
                                stage=stage, level_set=ctx.level_set, num_slots=ctx.M)
        y = _seed_points_jit(rows, ctx.put(_pad_rows(par_wit[s : s + ctx.B], ctx.B)),
                             ctx.put(_pad_rows(par_rad[s : s + ctx.B], ctx.B)), ctx.seed_offsets, smask)
        bits = np.asarray(_hyper_values_jit(ctx.net, y + jnp.asarray(ctx.centre), ctx.level_set) > 0)[:n]
        out[s : s + n] = np.where(keep, p[:n], np.where(new, bits, False))
    return out


class _Queue:
    """FIFO of ``(pattern, parent mask)`` rows kept as a deque of array chunks."""

    def __init__(self, Hp: int, M: int):
        self.chunks: collections.deque = collections.deque()
        self.size = 0
        self.Hp, self.M = Hp, M

    def push(self, pats: np.ndarray, masks: np.ndarray) -> None:
        if len(pats):
            self.chunks.append((pats, masks))
            self.size += len(pats)

    def pop(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        ps, ms, got = [], [], 0
        while self.chunks and got < n:
            p, m = self.chunks.popleft()
            if got + len(p) > n:
                k = n - got
                self.chunks.appendleft((p[k:], m[k:]))
                p, m = p[:k], m[:k]
            ps.append(p)
            ms.append(m)
            got += len(p)
        self.size -= got
        if not ps:
            return np.zeros((0, self.Hp), bool), np.zeros((0, self.M), bool)
        return np.concatenate(ps), np.concatenate(ms)


def _new_only(known: set, pats: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``pats`` whose key is not in ``known`` (first occurrence; adds them)."""
    sel = []
    for j, k in enumerate(pattern_keys(pats)):
        if k not in known:
            known.add(k)
            sel.append(j)
    return np.asarray(sel, np.int64)


def _search_level(ctx: _Ctx, seeds: np.ndarray, seed_mask: np.ndarray, stage, final: bool,
                  max_regions: int | None, progress: bool):
    """BFS over the cells of one level, from one seed pattern per parent.

    Returns ``(patterns, witnesses, radii, facets, adjacency, stopped)``: per-batch lists of arrays,
    and on the final level the adjacency candidates ``(region index (k,), neighbour keys)``.
    """
    slots = ctx.slot_mask(stage)
    all_h = np.arange(ctx.M) >= 2 * ctx.d
    known: set[bytes] = set()
    queue = _Queue(ctx.Hp, ctx.M)
    sel = _new_only(known, seeds)
    queue.push(seeds[sel], seed_mask[sel])
    n_seeds, popped = len(sel), 0
    out_p, out_w, out_r, out_f, adj = [], [], [], [], []
    count = 0
    stopped = False
    while queue.size:
        take = ctx.B
        if final and max_regions is not None:
            if count >= max_regions:
                stopped = True
                break
            take = min(take, max_regions - count)
        pats, pmask = queue.pop(take)
        is_seed = np.arange(popped, popped + len(pats)) < n_seeds
        popped += len(pats)
        good, wit, rad, facets, same, rows_ok = _process_batch(ctx, pats, pmask, stage)
        ctx.stats["seed_failures"] += int((is_seed & ~good).sum())
        pats, pmask, wit, rad, facets = pats[good], pmask[good], wit[good], rad[good], facets[good]
        same, rows_ok = same[good], rows_ok[good]
        src, _, nb = _flips(pats, facets, same, rows_ok, slots, ctx.d)
        sel = _new_only(known, nb)
        if len(sel):
            queue.push(nb[sel], pmask[src[sel]])
        out_p.append(pats)
        out_w.append(wit)
        out_r.append(rad)
        out_f.append(facets)
        if final:
            asrc, _, anb = _flips(pats, facets, same, rows_ok, all_h, ctx.d)
            adj.append((asrc + count, pattern_keys(anb)))
        count += len(pats)
        if progress:
            log.info("hyperplanes %d-%d: %d cells, %d queued", stage[0], stage[1], count, queue.size)
    return out_p, out_w, out_r, out_f, adj, stopped


def _cat(parts: list, shape_tail: tuple, dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0,) + shape_tail, dtype)


def _resolve_sharding(devices, batch_size: int):
    """``(NamedSharding over the batch axis or None, batch size rounded to a multiple of the devices)``."""
    if devices is None:
        return None, batch_size
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    if isinstance(devices, Mesh):
        mesh = devices
    else:
        devs = list(devices)
        if not devs:
            raise ValueError("devices must be a non-empty list of jax devices or a jax.sharding.Mesh")
        mesh = Mesh(np.array(devs), ("batch",))
    axes = tuple(mesh.axis_names)
    n = math.prod(mesh.devices.shape)
    batch_size = -(-batch_size // n) * n
    return NamedSharding(mesh, PartitionSpec(axes)), batch_size


def enumerate_regions(
    net: Network,
    bounds: Sequence[Any],
    *,
    level_set: bool = False,
    max_regions: int | None = None,
    batch_size: int = 256,
    rays: int = 64,
    progress: bool = False,
    devices: Any = None,
    tol: float = 1e-9,
    seed: int = 0,
) -> Regions:
    """Every linear region of ``net`` inside the box ``bounds = (lo, hi)`` (see the module docstring).

    Args:
      net: the network (any activations with breakpoints, skip connections allowed).
      bounds: ``(lo, hi)``, scalars or ``(d,)`` arrays with ``lo < hi``.
      level_set: split regions by the sign of the scalar output as well (its zero set is the last
        hyperplane, id ``H``).
      max_regions: stop after this many regions (``complete=False`` and a logged warning).
      batch_size: cells processed per step (the compiled kernels' static batch size).
      rays: ray directions shot from each cell's centre (the first ``2 d`` are the axes).
      progress: log one line per batch (logger ``"jaxpoly"``, level INFO).
      devices: a list of devices or a :class:`jax.sharding.Mesh`: every batch is sharded over them
        along its batch axis (``batch_size`` is rounded up to a multiple of the device count).
      tol: a cell counts when its inradius exceeds ``tol`` times the box half-diagonal; the same
        tolerance decides facets.
      seed: seeds the ray directions and seed-point candidates (results do not depend on it for
        generic networks).

    Returns:
      :class:`jaxpoly.Regions` (patterns, witnesses, inradii, facets, adjacency, stats).

    Raises:
      InvalidNetworkError: non-finite weights, or ``level_set`` with a non-scalar output.
      InvalidBoundsError: a bad or empty box.
      CapacityError: one batch would not fit in memory; the message names a batch size that does.
    """
    validate_network(net, scalar_output=level_set)
    d = net.input_dim
    lo, hi = as_box(bounds, d)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(rays, (int, np.integer)) or rays < 1:
        raise ValueError(f"rays must be a positive integer, got {rays!r}")
    if max_regions is not None and max_regions < 1:
        raise ValueError(f"max_regions must be positive or None, got {max_regions!r}")
    sharding, batch_size = _resolve_sharding(devices, int(batch_size))
    Hp = net.num_hyperplanes + int(level_set)
    need, limit = estimate_batch_bytes(d, Hp, batch_size, rays), _memory_limit()
    if need > limit:
        fit = max(1, batch_size * limit // need)
        raise CapacityError(
            f"batch_size={batch_size} needs about {need / 2**30:.1f} GiB per batch (d={d}, {Hp} hyperplanes, "
            f"{rays} rays) but the limit is {limit / 2**30:.1f} GiB; use batch_size <= {fit}"
        )
    with jax.enable_x64(True):
        return _enumerate(net.astype(np.float64), lo, hi, level_set, max_regions, int(batch_size), int(rays),
                          progress, float(tol), int(seed), sharding)


def _enumerate(net, lo, hi, level_set, max_regions, batch_size, rays, progress, tol, seed, sharding) -> Regions:
    t0 = time.perf_counter()
    ctx = _Ctx(net, lo, hi, level_set, batch_size, rays, tol, seed, sharding)
    d, M, Hp = ctx.d, ctx.M, ctx.Hp
    levels = _levels(net, level_set)
    par_pat = np.zeros((1, Hp), bool)
    par_wit = np.zeros((1, d))
    par_rad = np.array([float(np.min(ctx.half))])
    par_fac = np.zeros((1, M), bool)
    par_fac[:, : 2 * d] = True
    adj: list = []
    stopped = False
    for li, stage in enumerate(levels):
        final = li == len(levels) - 1
        seeds = _seed_level(ctx, par_pat, par_wit, par_rad, stage)
        out_p, out_w, out_r, out_f, adj, stopped = _search_level(
            ctx, seeds, par_fac, stage, final, max_regions, progress)
        par_pat = _cat(out_p, (Hp,), bool)
        par_wit = _cat(out_w, (d,), np.float64)
        par_rad = _cat(out_r, (), np.float64)
        par_fac = _cat(out_f, (M,), bool)
    if not levels:
        ctx.stats["cells"] = 1
    if max_regions is not None and len(par_pat) > max_regions:
        stopped = True
        par_pat, par_wit, par_rad, par_fac = (a[:max_regions] for a in (par_pat, par_wit, par_rad, par_fac))

    keys = {k: i for i, k in enumerate(pattern_keys(par_pat))}
    pairs = set()
    for src, nkeys in adj:
        for i, k in zip(src, nkeys):
            j = keys.get(k)
            if j is not None and j != i:
                pairs.add((min(int(i), j), max(int(i), j)))
    adjacency = np.array(sorted(pairs), np.int64).reshape(-1, 2)

    slot_ids = np.concatenate([-(1 + np.arange(2 * d)), np.arange(Hp)])
    par_fac = par_fac[:, : 2 * d + Hp]
    counts = par_fac.sum(axis=1)
    facet_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    facet_idx = np.broadcast_to(slot_ids, par_fac.shape)[par_fac].astype(np.int64)

    complete = not stopped and ctx.stats["seed_failures"] == 0
    if stopped:
        log.warning("enumerate_regions stopped at max_regions=%d: the result is incomplete (complete=False)",
                    max_regions)
    if ctx.stats["seed_failures"]:
        log.warning("enumerate_regions: %d parent cells could not be seeded (all candidate points within "
                    "tol of a hyperplane); the result is incomplete", ctx.stats["seed_failures"])
    stats = dict(ctx.stats, time_s=time.perf_counter() - t0, regions=int(len(par_pat)))
    return Regions(patterns=par_pat, witnesses=par_wit + ctx.centre, inradius=par_rad, facet_ptr=facet_ptr,
                   facet_idx=facet_idx, adjacency=adjacency, lo=lo, hi=hi, level_set=level_set,
                   complete=complete, stats=stats, net=net)


def sample_regions(net: Network, bounds: Sequence[Any], num_samples: int, *, key: jax.Array,
                   batch_size: int = 65536, level_set: bool = False) -> np.ndarray:
    """Distinct patterns ``(K, H') bool`` (sorted) of ``num_samples`` uniform points in the box: the
    sampling baseline, a lower bound on the region count."""
    validate_network(net, scalar_output=level_set)
    d = net.input_dim
    lo, hi = as_box(bounds, d)
    if num_samples < 1 or batch_size < 1:
        raise ValueError("num_samples and batch_size must be positive")
    seen = []
    with jax.enable_x64(True):
        net64 = net.astype(np.float64)
        for i, s in enumerate(range(0, num_samples, batch_size)):
            n = min(batch_size, num_samples - s)
            u = jax.random.uniform(jax.random.fold_in(key, i), (batch_size, d), dtype=jnp.float64)
            x = jnp.asarray(lo) + u * jnp.asarray(hi - lo)
            bits = np.asarray(_hyper_values_jit(net64, x, level_set) > 0)[:n]
            seen.append(np.unique(np.packbits(bits, axis=1), axis=0))
    packed = np.unique(np.concatenate(seen), axis=0)
    Hp = net.num_hyperplanes + int(level_set)
    return np.unpackbits(packed, axis=1, count=Hp).astype(bool)
