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
  iff its inradius exceeds ``tol * |half-diagonal|``; the LP starts from the optimal basis of the cell
  it was found from, or of any neighbour that finds it while it waits in the queue; when the crossed
  hyperplane is in that basis, with it replaced by the LP's cap row), facets (:func:`jaxpoly.oracle.classify_facets`: rays and LP-free
  certificates, then LPs for what they left undecided; from d = 8 a row is redundant without an LP
  when a neighbour processed before the cell certified it with rows the crossing did not flip,
  :class:`_Certificates`, and a facet when the cell across it is already known, :func:`_known_facets`);
* neighbours: crossing a facet on a hyperplane of the current level flips that hyperplane's bit (and
  the bits of every hyperplane that coincides with it); parent facets are never crossed. New patterns
  are deduplicated on the host by their packed bits.

The first level is a plain hyperplane arrangement in the box. When it has few enough ``d``-subsets of
constraints (:data:`_VERTEX_MAX_SUBSETS`, e.g. width 64 in ``d <= 5``) its cells come from the
arrangement's vertices instead, with no LP (:func:`_vertex_level`): every cell is a bounded polytope
with a vertex, the ``2^k`` sign choices of a simple vertex's ``k`` hyperplanes are exactly the cells
around it, and the cell's facets there are the vertex's defining constraints. The witness is the
centroid of the cell's vertices and the inradius its smallest slack (a certified ball, not the
Chebyshev one). Any sign of non-simplicity (coincident or parallel rows, dead neurons, a vertex within
rounding error of another row, an ill-conditioned vertex inside the box) falls back to the search.

Regions are the cells of the last level. Exact up to the tolerance: every cell whose inradius exceeds
``tol`` (relative to the box half-diagonal) and that is connected to the seed through such cells is
found (a neighbour of inradius ``rho`` makes its facet exceed the redundancy test by ``2 rho``).
Adjacency pairs are found by flipping each facet's coincident hyperplanes and looking the pattern up.
Last, each region's certificate is checked in float64 against its own constraints, apart from the LPs
(:func:`_check_certificates`): one that fails (the LPs' tolerances are relative to the box, so in a box
far larger than the cells they can be coarser than a cell) is dropped and the result marked incomplete.
"""

from __future__ import annotations

import collections
import copy
import logging
import math
import os
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxpoly import lp, memory, oracle
from jaxpoly.arguments import check_flag, is_integer, is_real
from jaxpoly.bounds import MAX_MAGNITUDE, MAX_VALUE, MIN_MAGNITUDE, RESCALE_WEIGHTS, TRANSLATE_INPUT, as_box
from jaxpoly.errors import (CapacityError, IncompleteResultWarning, InvalidArgumentError, InvalidNetworkError,
                            PrecisionWarning, warn)
from jaxpoly.interrupts import CtrlC
from jaxpoly.linalg import small_solve
from jaxpoly.memory import device_bytes, release_compiled_kernels
from jaxpoly.network import (CONSTANT_RTOL, Network, box_round_off, compose_input, hyperplane_scales, validate_magnitudes,
                             validate_network)
from jaxpoly.regions import Regions, pattern_keys
from jaxpoly.sizes import pad_rows, power_of_two
from jaxpoly.unique import unique_ints, unique_packed_rows, words

__all__ = ["enumerate_regions", "sample_regions", "estimate_batch_bytes", "default_batch_size"]

log = logging.getLogger("jaxpoly")

_SEED_CANDIDATES = 32
_BBOX_MAX_DIM = 6
_DEFAULT_BATCH_CPU = 256
_DEFAULT_BATCH_ACCELERATOR = 2048
# A CPU batch's LP rows, B M (d + 1) float64, at most (default_batch_size). At d = 4 and width 2,048
# smaller batches are faster still (ms per region: 38 at 256 cells, 28 at 128, this rule's, 19 at 32):
# the (M, M) tests of so many rows outgrow the caches first
_CPU_BATCH_ROW_BYTES = 12 << 20
# The walks on undecided rows' hyperplanes (oracle.walk_certificates) pay off in high dimension only,
# where most rows of a cell are facets that rays miss. Against the warm-started redundancy LPs
# (oracle.warm_redundancy), per region (1,024 regions, width 64), since the walks share a refilled pool
# and stop once every row clears (12-05, A/B runs alternating with the code before): d = 24 about
# 1.24-1.61 -> 0.94-1.24 ms (18.8 -> 11.7 LPs), d = 32 1.81-2.02 -> 1.34-1.46 (9.4 -> 4.5 LPs). At
# d = 16 they are still no faster than the LPs they replace (8, 16 or 24 steps: 0.65-0.70 ms against
# 0.61 without), as most of the rows they fail on are redundant, which no walk can show. From d / 2
# to 3 d / 2 steps were within noise of each other at d = 24, 32 and 64; more steps certify more
# facets (fewer LPs) at little cost, as most walks end within a few moves.
_WALK_MIN_DIM = 20
_CHEBYSHEV_CHUNK_MIN_DIM = 16
# Redundancy certificates inherited from neighbours (_Certificates) save LPs where cells have many
# redundant rows: per region (1,024 regions, width 64) d = 8: 37 -> 24 LPs, 0.39 -> 0.32 ms; d = 16:
# 68 -> 49 LPs, about 1.4 -> 1.15 ms; d = 4: 12 % slower (few LPs to save, the host bookkeeping costs more).
_INHERIT_MIN_DIM = 8
_MORE_FINDERS = 3  # neighbours a queued cell inherits from besides its finder (bounds the host memory)
# ... and only while the cells keep at least this many certificates each: at d = 24 and 32 (width 64,
# [-1, 1]^d) almost every row is a facet (0.5 and 0 inherited rows per region), and the bookkeeping
# for each of a cell's ~100 neighbours cost 5 % of the time
_INHERIT_MIN_RATE = 2.0
# Facets certified by a known neighbour across them (_known_facets) instead of an LP, from d = 8 (as the
# inherited certificates). A d = 16 search of 4,096 regions (width 64): 45.8 -> 32.1 LPs and 181 -> 156
# pivots per region, but no faster on the 2-core CPU (fastest 0.328 against 0.320 ms per region, same
# process, 12-06): the look-ups cost on the host what the LPs save on the device
_NEIGHBOUR_MIN_DIM = 8
# Cells whose inradius is within (_THIN tol, tol] are crossed but not counted (_process_batch); thinner
# ones are taken as empty (round-off around a lower-dimensional cell is far below)
_THIN = 1e-3
# The least distance (relative to the box) at which two unit rows are two hyperplanes, whatever tol:
# about 500 eps, far above the round-off of rows that are one hyperplane computed along two paths
_SAME_FLOOR = 1e-13
# The LPs' relative tolerance (lp.py: relative to the largest distance of a row from the box centre)
# follows tol below the default, down to this (the least tol accepted): about 500 eps, where the
# simplex's round-off begins (with tol 1e-14 and the LPs at 1e-13 a region was lost unreported)
_LP_TOL_FLOOR = 1e-13
# Points of the final probe (_unlisted_probes): half uniform in the box, half at log-uniform distances
# from its centre (down to _THIN tol), where a box drawn far around the data hides the smallest cells
_PROBES = 4096


def _walk_steps(d: int) -> int:
    return 3 * d // 2 if d >= _WALK_MIN_DIM else 0


def estimate_batch_bytes(d: int, num_hyperplanes: int, batch_size: int, rays: int) -> int:
    """Peak bytes of one batch, with a margin: per cell its ``M = 2 d + num_hyperplanes`` rows, the
    rays' hits ``(R, M)``, the ``(M, M)`` tests for repeated rows and the redundancy certificates
    inherited (bool, one per finder in flight), and the LPs' ``(M, d + 1)`` instances in flight.

    Against what runs (12-06): the process's growth over four batches on the CPU (d = 4 to 64, widths
    16 to 1,024, batch sizes 256 and 2,048) was 2.3 to 5.9 times below this, and the largest kernel of
    a d = 32 batch of 2,048 compiled for an H200 (``benchmarks/gpu_compile.py``) 4.3 times below.
    """
    M = 2 * d + num_hyperplanes
    per_cell = 8 * (2 * rays * M + 2 * M * M + 12 * M * (d + 1)) + (_MORE_FINDERS + 2) * M * M
    return int(batch_size) * per_cell


def default_batch_size(d: int, num_hyperplanes: int, rays: int, start: int | None = None) -> int:
    """``enumerate_regions``' batch size: ``start`` (default 2,048 cells on a GPU or TPU, whose lanes run
    in parallel, 256 on a CPU), on a CPU halved while a batch's LP rows would outgrow the caches (d = 64,
    width 64, on the 2-core CPU: 2.0 ms per region at 64 cells, 2.3 at 256; d = 32: the same at 128 and
    256), then halved until a batch fits in half the device's memory."""
    M = 2 * d + num_hyperplanes
    cpu = memory.on_cpu()
    B = start or (_DEFAULT_BATCH_CPU if cpu else _DEFAULT_BATCH_ACCELERATOR)
    while cpu and B > 16 and B * M * (d + 1) * 8 > _CPU_BATCH_ROW_BYTES:
        B //= 2
    while B > 16 and estimate_batch_bytes(d, num_hyperplanes, B, rays) > device_bytes() // 2:
        B //= 2
    return B


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
    """A batch padded with copies of its first cell (real patterns and points: no special lanes)."""
    return pad_rows(a, size, repeat_first=True)


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


def _sample_bits(net: Network, x: jax.Array, thresholds: jax.Array, level_set: bool) -> jax.Array:
    """``(n, H') bool``: every hyperplane's value at ``x (n, d)`` (then the output's) ``> thresholds (H',)``."""
    v = net.hyperplane_values(x)
    if level_set:
        v = jnp.concatenate([v, net(x)[:, :1]], axis=1)
    return v > thresholds


_sample_bits_jit = jax.jit(_sample_bits, static_argnames=("level_set",))


def _hyper_signs(ctx: "_Ctx", x: np.ndarray, net: Network | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(signs, clear, exact)``, all ``(n, H') bool``: each hyperplane's ``value > 0`` beyond its
    round-off at the points ``x (n, d)`` (:meth:`Network.pattern`), whether that value is clear of
    round-off (beyond :data:`CONSTANT_RTOL` of the hyperplane's scale; a dead neuron's is not), and
    whether its sign is beyond the point's round-off (else the point is on the hyperplane as far as
    float64 tells). In batches of ``B``, the shape the search compiled; ``net``: another network of the
    same shapes (default the search's; ``clear`` is for the search's)."""
    signs, clear, exact = [], [], []
    for s in range(0, len(x), ctx.B):
        k = min(ctx.B, len(x) - s)
        v, err = (np.asarray(a)[:k] for a in (ctx.net if net is None else net).hyperplane_values_and_round_off(
            ctx.put(_pad_rows(x[s : s + ctx.B], ctx.B)), level_set=ctx.level_set))
        signs.append(v > err)
        clear.append(np.abs(v) > CONSTANT_RTOL * ctx.scales)
        exact.append(np.abs(v) > err)
    H = ctx.Hp
    return tuple(np.concatenate(a) if a else np.zeros((0, H), bool) for a in (signs, clear, exact))


def _check_certificates(ctx: "_Ctx", stage: tuple[int, int], patterns: np.ndarray, witnesses: np.ndarray,
                        radius: np.ndarray) -> np.ndarray:
    """The radius ``(R,)`` of the ball around each region's witness (box-centred, ``(R, d)``) that its
    constraints certify in float64, apart from the LPs that found it: ``min(radius, the witness's
    distance to every non-constant hyperplane of the pattern ``(R, H')`` on its side, to the box)``, and
    ``-1`` where the witness has another pattern (a dead neuron's bit too, where its value is clear of
    round-off). With the last level's compiled kernels (:func:`oracle.cell_rows`, the seeds'
    hyperplane values), so it compiles nothing new."""
    B, M = ctx.B, ctx.M
    out = []
    for s in range(0, len(patterns), B):
        k = min(B, len(patterns) - s)
        p, w = _pad_rows(patterns[s : s + B], B), _pad_rows(witnesses[s : s + B], B)
        rows = oracle.cell_rows(ctx.net, ctx.put(p), ctx.put(np.zeros((B, M), bool)), jnp.asarray(ctx.centre),
                                jnp.asarray(ctx.half), stage=stage, level_set=ctx.level_set, num_slots=M,
                                same=ctx.same)
        A, b, ok = (np.asarray(a)[:k] for a in (rows.A, rows.b, rows.rows_ok))
        slack = b - np.einsum("kmd,kd->km", A, w[:k])
        out.append(np.minimum(radius[s : s + k], np.min(np.where(ok, slack, np.inf), axis=1)))
    rho = np.concatenate(out) if out else np.zeros(0)
    signs, clear, exact = _hyper_signs(ctx, witnesses + ctx.centre)
    # (a bit within the witness's round-off is left to the distances: in a box far from the origin that
    # round-off, not the search's, is large; _rounded_witnesses reports such witnesses)
    return np.where(np.any((signs != patterns) & clear & exact, axis=1), -1.0, rho)


def _unlisted_probes(ctx: "_Ctx", patterns: np.ndarray, seed: int) -> int:
    """How many of :data:`_PROBES` points in the box have an activation pattern that is not one of
    ``patterns (R, H')``: each is a point inside a region the search did not list (one thinner than
    ``tol``, or missed). A cheap check of completeness (milliseconds, on the kernels the search
    compiled), not a proof: the points sample the box uniformly and, at every scale, around its centre."""
    d, n = ctx.d, _PROBES // 2
    rng = np.random.default_rng(seed + 2)
    uniform = rng.uniform(-1.0, 1.0, (n, d))
    g = rng.standard_normal((n, d))
    g /= np.max(np.abs(g), axis=1, keepdims=True)
    rho = 10.0 ** rng.uniform(math.log10(_THIN * ctx.tol / ctx.radius), 0.0, (n, 1))
    y = np.concatenate([uniform, g * rho]) * ctx.half
    x = ctx.centre + y
    inside = np.all((x > ctx.centre - ctx.half) & (x < ctx.centre + ctx.half), axis=1)
    seen, _, exact = _hyper_signs(ctx, x[inside])
    listed = set(pattern_keys(patterns))
    unlisted = {}
    for key, s, e in zip(pattern_keys(seen), seen, exact):
        if key not in listed:
            unlisted.setdefault(key, (s, e))
    # a probe within round-off of hyperplanes is on them as far as float64 tells: it is unlisted only
    # when no listed region has its pattern, whatever the sides it takes of those (up to 8 of them)
    return sum(1 for s, e in unlisted.values() if not _listed_either_side(s, e, listed))


def _listed_either_side(pattern: np.ndarray, exact: np.ndarray, listed: set, most: int = 8) -> bool:
    """Whether some pattern that agrees with ``pattern (H',)`` where ``exact (H',)`` is in ``listed``
    (:func:`pattern_keys`), the other bits taking either value (False with more than ``most`` of them)."""
    free = np.flatnonzero(~exact)
    if len(free) > most:
        return False
    bits = (np.arange(2 ** len(free))[:, None] >> np.arange(len(free))) & 1
    options = np.repeat(pattern[None], len(bits), axis=0)
    options[:, free] = bits.astype(bool)
    return any(k in listed for k in pattern_keys(options))


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
        # with tol, the LPs resolve smaller cells: a box far larger than the cells then works (in
        # +-1e10 around cells of 0.004, tol=1e-13 lists all 39 regions of a 2-4-3-1 net, 14 at 1e-9)
        self.lp_tol = min(lp.DEFAULT_TOL, tol)
        # rows closer than this (relative) are one hyperplane: two rows that are not then part by more
        # than tol, so each is a facet of the cells beside the sliver between them (the redundancy
        # test's exceedance is that distance) and the search crosses it; and above their round-off
        self.same = max(tol, _SAME_FLOOR)
        self.scales = hyperplane_scales(net.astype(np.float64), level_set, np)
        tiny = (self.scales > 0) & (self.scales < MIN_MAGNITUDE)
        if tiny.any():
            raise InvalidNetworkError(
                f"{int(tiny.sum())} hyperplanes have coefficients below {MIN_MAGNITUDE:g} in input space (a bound "
                f"from the absolute values of the weights, {float(self.scales[tiny].min()):.3g} at least; in the "
                "box's coordinates scaled per side to about [-1, 1] where its sides differ): their squares "
                f"underflow float64: {RESCALE_WEIGHTS}")
        self.B = batch_size
        # Chebyshev LPs: on a CPU from d = 16 warm-started, in a pool of a quarter batch's lanes
        # (oracle.chebyshev); below, the starts save nothing (d = 4 and 8 with the pool: within noise;
        # in the quarter-batch calls used before, d = 4 +12 %); an accelerator runs the lanes in parallel
        quarter = memory.on_cpu() and self.d >= _CHEBYSHEV_CHUNK_MIN_DIM
        self.lp_chunk = max(batch_size // 4, 1) if quarter else batch_size
        self.U = _unit_rays(rays, self.d, seed)
        rng = np.random.default_rng(seed + 1)
        g = rng.standard_normal((_SEED_CANDIDATES - 1, self.d))
        g *= (0.9 * rng.random((_SEED_CANDIDATES - 1, 1)) ** (1 / self.d)) / np.linalg.norm(g, axis=1, keepdims=True)
        self.seed_offsets = jnp.asarray(np.concatenate([np.zeros((1, self.d)), g]))
        self.sharding = sharding
        self.ctrl_c = CtrlC()  # (installed around the search: _enumerate)
        self.stats = {"lps": 0, "warm_lps": 0, "warm_pivots": 0, "lp_fallbacks": 0, "rays": 0, "walk_facets": 0,
                      "inherited": 0, "neighbour_facets": 0, "cells": 0, "batches": 0, "empty_cells": 0,
                      "thin_cells": 0, "seed_failures": 0}

    def put(self, a: np.ndarray) -> jax.Array:
        return jnp.asarray(a) if self.sharding is None else jax.device_put(a, self.sharding)

    def slot_mask(self, stage: tuple[int, int]) -> np.ndarray:
        s = np.zeros(self.M, bool)
        s[2 * self.d + stage[0] : 2 * self.d + stage[1]] = True
        return s


def _process_batch(ctx: _Ctx, pats: np.ndarray, pmask: np.ndarray, start: np.ndarray, support: np.ndarray | None,
                   stage: tuple[int, int], is_cell=None):
    """Certify and classify up to ``B`` cells of one level, their Chebyshev LPs started from the bases
    ``start (n, d + 1)`` (see :func:`jaxpoly.oracle.chebyshev`), with the redundancy certificates they
    inherit ``support`` (:class:`jaxpoly.oracle.Certificates`; ``None``: none, and none kept).
    ``is_cell``: ``keys -> (k,) bool``, which patterns (:func:`jaxpoly.regions.pattern_keys`) are
    known cells of the level (with an interior point): a row whose neighbour across is one is a facet
    (:func:`_known_facets`); ``None``: none known. Returns host arrays: ``(good (n,), cross (n,), witness
    (n, d), radius (n,), facets (n, M), unsure (n, M), same (n, M, M), rows_ok (n, M), basis (n, d + 1),
    cert)``: ``good`` the regions (inradius above ``tol``), ``cross`` those and the thin cells the search
    crosses (facets classified), ``unsure`` the facets kept without proof (see :func:`jaxpoly.oracle.classify_facets`),
    ``basis`` the optimal bases of the Chebyshev LPs, ``cert`` the cells' own redundancy certificates
    (cells indexed in the batch)."""
    n = len(pats)
    pats_p, pmask_p = _pad_rows(pats, ctx.B), _pad_rows(pmask, ctx.B)
    rows = oracle.cell_rows(ctx.net, ctx.put(pats_p), ctx.put(pmask_p), jnp.asarray(ctx.centre),
                            jnp.asarray(ctx.half), stage=stage, level_set=ctx.level_set,
                            num_slots=ctx.M, same=ctx.same)
    wit, rad, fb, basis = oracle.chebyshev(rows, 2.0 * ctx.radius, _pad_rows(start, ctx.B), ctx.lp_chunk, n,
                                           sharding=ctx.sharding, lp_tol=ctx.lp_tol)
    valid = np.zeros(ctx.B, bool)
    valid[:n] = True
    good = valid & (rad > ctx.tol)
    # thinner cells are no regions, but the search crosses them (their facets are classified as a
    # region's): a sliver between two close hyperplanes would otherwise cut off every region behind it
    cross = valid & (rad > _THIN * ctx.tol)
    same, rows_ok = np.asarray(rows.same), np.asarray(rows.rows_ok)

    def known(cell, row, certified):
        # the cells across the batch's certified facets are known too (the batch's cells see each
        # other's neighbours: twice as many rows answered at d = 16)
        slots = ctx.slot_mask(stage)
        src, slot = np.nonzero(certified & slots[None, :])
        across = set(pattern_keys(_neighbours(pats_p, same, rows_ok, slots, src, slot, ctx.d)))

        def is_known(keys):
            return is_cell(keys) | np.fromiter((k in across for k in keys), bool, len(keys))

        return _known_facets(pats_p, same, rows_ok, slots, cell, row, ctx.d, is_known)

    # bounding-box LPs pay off in low dimension only (measured: faster up to d = 6, slower from d = 8,
    # where most rows of a cell are facets anyway)
    facets, unsure, cnt, cert = oracle.classify_facets(rows, wit, cross, ctx.U, tol=ctx.tol,
                                                       margin=ctx.lp_tol * ctx.radius, lp_tol=ctx.lp_tol,
                                                       delta=2.0 * ctx.radius, use_bbox=ctx.d <= _BBOX_MAX_DIM,
                                                       walk_steps=_walk_steps(ctx.d), certify=support is not None,
                                                       support=support,
                                                       known=None if is_cell is None else known,
                                                       sharding=ctx.sharding)
    st = ctx.stats
    st["lps"] += n + cnt.lps
    st["lp_fallbacks"] += fb + cnt.fallbacks
    st["rays"] += cnt.rays
    st["walk_facets"] += cnt.walk_facets
    st["warm_lps"] += cnt.warm
    st["warm_pivots"] += cnt.warm_pivots
    st["inherited"] += cnt.inherited
    st["neighbour_facets"] += cnt.neighbour
    st["batches"] += 1
    st["cells"] += int(good.sum())
    st["thin_cells"] += int((cross & ~good).sum())
    st["empty_cells"] += int((valid & ~cross).sum())
    return good[:n], cross[:n], wit[:n], rad[:n], facets[:n], unsure[:n], same[:n], rows_ok[:n], basis[:n], cert


def _neighbours(pats, same, rows_ok, slots: np.ndarray, src, slot, d: int):
    """The patterns ``(k, H')`` across slots ``slot (k,)`` of the level (``slots (M,)``) of cells
    ``src (k,)``: the bits of the level's hyperplanes that are the same as the slot's flipped."""
    h = slice(2 * d, 2 * d + pats.shape[1])
    return pats[src] ^ (same[src, slot, h] & rows_ok[src, h] & slots[None, h])


def _flips(pats, facets, same, rows_ok, slots: np.ndarray, d: int):
    """Neighbour patterns across the facets in ``slots (M,)``: ``(src (k,), slot (k,), patterns (k, H'))``."""
    src, slot = np.nonzero(facets & slots[None, :])
    return src, slot, _neighbours(pats, same, rows_ok, slots, src, slot, d)


def _known_facets(pats, same, rows_ok, slots: np.ndarray, cell, row, d: int, is_cell) -> np.ndarray:
    """``(k,) bool``: which rows ``row (k,)`` of cells ``cell (k,)`` (of ``pats (n, H')``) are hyperplanes
    of the level (``slots (M,)``) with a known cell of the level across them (``is_cell``, see
    :func:`_process_batch`). Those are facets: the cell and that neighbour lie on either side of the
    row's hyperplane within the convex set cut out by every other row, so the hyperplane meets that
    set's interior between them."""
    out = slots[row]
    if out.any():
        at = np.flatnonzero(out)
        out[at] = is_cell(pattern_keys(_neighbours(pats, same, rows_ok, slots, cell[at], row[at], d)))
    return out


def _start_bases(basis: np.ndarray, flipped: np.ndarray, d: int, cap: int) -> np.ndarray:
    """The Chebyshev start of each neighbour: its source cell's optimal basis ``basis (k, d + 1)``
    (indices into the LP's rows, whose first ``M`` are the slots), which stays dual feasible where no
    slot of a hyperplane the crossing flipped (``flipped (k, H')``) is in it. Where one is (the source's
    ball touches the crossed row), that row is replaced by the cap row ``r <= r_cap`` (index ``cap``,
    see :func:`jaxpoly.oracle.chebyshev`): the cap row alone carries the objective (duals ``e_cap``),
    so the basis is dual feasible again, and the dual simplex starts from the source's other tight rows
    (d = 32: a quarter-batch call of such cells about 25-40 ms against 45-60 from the box). ``-1``
    where more than one flipped slot is in the basis."""
    h = basis - 2 * d
    in_h = (h >= 0) & (h < flipped.shape[1])
    hit = np.take_along_axis(flipped, np.where(in_h, h, 0), axis=1) & in_h
    count = hit.sum(axis=1, keepdims=True)
    basis = np.where(hit & (count == 1), cap, basis)
    return np.where(count > 1, -1, basis).astype(np.int32)


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
                                stage=stage, level_set=ctx.level_set, num_slots=ctx.M, same=ctx.same)
        y = _seed_points_jit(rows, ctx.put(_pad_rows(par_wit[s : s + ctx.B], ctx.B)),
                             ctx.put(_pad_rows(par_rad[s : s + ctx.B], ctx.B)), ctx.seed_offsets, smask)
        bits = np.asarray(ctx.net.pattern(y + jnp.asarray(ctx.centre), level_set=ctx.level_set))[:n]
        out[s : s + n] = np.where(keep, p[:n], np.where(new, bits, False))
    return out


class _Queue:
    """FIFO of rows of arrays (pattern, parent mask, start basis, certificates) kept as a deque of chunks;
    ``empty``: one array of each with no rows."""

    def __init__(self, *empty: np.ndarray):
        self.chunks: collections.deque = collections.deque()
        self.size = 0
        self.empty = empty

    def push(self, *rows: np.ndarray) -> None:
        if len(rows[0]):
            self.chunks.append(rows)
            self.size += len(rows[0])

    def pop(self, n: int) -> tuple[np.ndarray, ...]:
        parts, got = [], 0
        while self.chunks and got < n:
            rows = self.chunks.popleft()
            if got + len(rows[0]) > n:
                k = n - got
                self.chunks.appendleft(tuple(r[k:] for r in rows))
                rows = tuple(r[:k] for r in rows)
            parts.append(rows)
            got += len(rows[0])
        self.size -= got
        if not parts:
            return self.empty
        return tuple(np.concatenate(p) for p in zip(*parts))


def _discover(known: dict, pats: np.ndarray, start: np.ndarray | None) -> tuple[np.ndarray, list[bytes]]:
    """Indices of the rows of ``pats (k, H')`` not seen before (first occurrence; adds them) and every
    row's key. A row seen before whose cell still waits in the queue without a start basis
    (``known[key] == (starts, i)``, see :func:`_wait_for_start`) hands it its start ``start (k, n)``
    if it has one (``start=None``: no starts)."""
    keys = pattern_keys(pats)
    sel = []
    for j, k in enumerate(keys):
        w = known.get(k, _NEW)
        if w is _NEW:
            # a later row of pats may have a start for it
            known[k] = (start, j) if start is not None and start[j, 0] < 0 else None
            sel.append(j)
        elif w is not None and start is not None and start[j, 0] >= 0:
            w[0][w[1]] = start[j]
            known[k] = None
    return np.asarray(sel, np.int64), keys


def _wait_for_start(known: dict, keys: list[bytes], starts: np.ndarray) -> None:
    """Register the queued cells without a start basis (rows of ``starts (k, n)``, the array the
    queue holds, with their ``keys``), so that a later discovery can hand them one."""
    for i in np.flatnonzero(starts[:, 0] < 0):
        known[keys[i]] = (starts, i)


_NEW = object()


class _Certificates:
    """The redundancy certificates (:class:`jaxpoly.oracle.Certificates`) of a level's processed cells,
    by their index in the level, for the cells they found: a queued cell inherits those of its
    neighbours processed before it (its finder and up to :data:`_MORE_FINDERS` that find it while it
    waits) that use no row the crossing flipped. Kept bit-packed, ``M / 8`` bytes per certificate, and
    only while a queued cell may still need them (the queue is FIFO, so finders come in order)."""

    def __init__(self, M: int, d: int):
        self.M, self.d = M, d  # slots, and the first hyperplane's slot is 2 d
        # (first index, patterns (n, H'), certified cells (K,) ascending, rows (K,), packed rows (K, M/8))
        self.chunks: collections.deque = collections.deque()
        self.waiting: dict[bytes, list] = {}  # key of a queued cell -> its other finders

    def add(self, first: int, pats: np.ndarray, cert: oracle.Certificates, good: np.ndarray) -> None:
        """The certificates of a batch's cells ``cert`` (cells indexed in the batch), of which ``good``
        were kept, as cells ``first, first + 1, ...`` of the level, with their patterns ``pats``."""
        if len(pats):
            keep = good[cert.cell]
            cell = np.cumsum(good)[cert.cell[keep]] - 1 + first
            order = np.argsort(cell, kind="stable")
            self.chunks.append((first, pats, cell[order], cert.row[keep][order],
                                np.packbits(cert.rows[keep][order], axis=1)))

    def found(self, keys: list[bytes], new: np.ndarray, finder: np.ndarray) -> None:
        """Neighbours with ``keys`` found by ``finder``, of which ``new`` were queued now: the others,
        while queued, also inherit from their finder."""
        for j in new:
            self.waiting[keys[j]] = []
        old = np.ones(len(keys), bool)
        old[new] = False
        for j in np.flatnonzero(old):
            w = self.waiting.get(keys[j])
            if w is not None and len(w) < _MORE_FINDERS:
                w.append(finder[j])

    def drop_before(self, index: int) -> None:
        """Forget the cells before ``index`` (no queued cell was found by them)."""
        while self.chunks and self.chunks[0][0] + len(self.chunks[0][1]) <= index:
            self.chunks.popleft()

    def support(self, finder: np.ndarray, pats: np.ndarray, keys: list[bytes]) -> oracle.Certificates:
        """The certificates that the popped cells ``pats (n, H')`` (with their ``keys``), found first by
        ``finder (n,)`` (``-1``: a seed), inherit (cells indexed in ``pats``): per row the first finder's
        that holds."""
        n, M, d = len(pats), self.M, self.d
        cell, by, rank = [np.arange(n)], [finder], [np.zeros(n, np.int64)]
        for i, k in enumerate(keys):
            more = self.waiting.pop(k, None)
            if more:
                cell.append(np.full(len(more), i))
                by.append(np.asarray(more, np.int64))
                rank.append(np.arange(1, len(more) + 1))
        cell, by, rank = np.concatenate(cell), np.concatenate(by), np.concatenate(rank)
        found = []  # per chunk: (pair (E,), row (E,), rows (E, M) bool) of the certificates that hold
        for first, cp, cc, cr, cb in self.chunks:
            mine = np.flatnonzero((by >= first) & (by < first + len(cp)))
            lo, hi = np.searchsorted(cc, by[mine], "left"), np.searchsorted(cc, by[mine], "right")
            count = hi - lo
            pair = np.repeat(mine, count)
            entry = np.repeat(lo - np.cumsum(count) + count, count) + np.arange(count.sum())
            flipped = np.zeros((len(mine), M), bool)
            flipped[:, 2 * d : 2 * d + pats.shape[1]] = pats[cell[mine]] ^ cp[by[mine] - first]
            fl = np.repeat(flipped, count, axis=0)
            rows = np.unpackbits(cb[entry], axis=1, count=M).astype(bool)
            ok = oracle.certificates_hold(rows, fl)
            found.append((pair[ok], cr[entry][ok], rows[ok]))
        if not found:
            return oracle.Certificates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, M), bool))
        pair, row, rows = (np.concatenate(a) for a in zip(*found))
        # one per (cell, row): the lowest rank's
        order = np.lexsort((rank[pair], cell[pair] * M + row))
        key = (cell[pair] * M + row)[order]
        first_of = order[np.concatenate([[True], key[1:] != key[:-1]])] if len(key) else order
        return oracle.Certificates(cell[pair][first_of], row[first_of], rows[first_of])


# ---------------------------------------------------------------------------------------------------
# First level in low dimension: the arrangement's vertices (no LPs)
# ---------------------------------------------------------------------------------------------------

# The vertex path runs when the first level has at most this many d-subsets (of the hyperplanes that meet
# the box and the box facets): width 64 in d = 5 has 15.8M (1,565,529 regions in 37 s at 4.4 GiB on the
# 2-core CPU, 12x the LP search's rate).
_VERTEX_MAX_SUBSETS = 16_000_000
# The search runs instead when ``max_regions`` is below the subsets / _VERTEX_PER_CELL: it stops after
# that many cells, the vertex path solves every subset first (2 x 128 at d = 4, 13.6M subsets, 4.1M
# first-level cells: max_regions=1,000 took 110 s by the vertices, 1.9 s by the search; a region of
# the search costs about as much as 130 subsets, 1 x 64 at d = 4 and this net).
_VERTEX_PER_CELL = 100
_VERTEX_CHUNK = 1 << 15  # d-subsets solved per call
_VERTEX_GROUP_CHUNK = 1 << 18  # vertices expanded into their cells at a time
_VERTEX_DET = 1e-9  # smallest |det| of a vertex system (unit rows) trusted without falling back
_VERTEX_EPS = 1e-11  # sign-ambiguity threshold at a vertex, times (1 + |v|) / |det|


def _combinations(n: int, k: int) -> np.ndarray:
    """All ``k``-subsets of ``range(n)`` as sorted rows ``(C(n, k), k)`` (vectorised)."""
    if k == 0:
        return np.zeros((1, 0), np.int64)
    if k > n:
        return np.zeros((0, k), np.int64)
    c = np.arange(n, dtype=np.int64)[:, None]
    for _ in range(k - 1):
        last = c[:, -1]
        counts = n - 1 - last
        total = int(counts.sum())
        rep = np.repeat(c, counts, axis=0)
        start = np.repeat(np.cumsum(counts) - counts, counts)
        new = np.repeat(last, counts) + 1 + (np.arange(total) - start)
        c = np.concatenate([rep, new[:, None]], axis=1)
    return c


def _vertex_subsets(d: int, n: int) -> int:
    return sum(math.comb(n, k) * math.comb(d, d - k) * 2 ** (d - k) for k in range(0, min(d, n) + 1))


@jax.jit
def _vertex_chunk(A, b, idx, half, eps_scale):
    """Solve the d-subsets ``idx (C, d)`` of the unit rows ``A (M, d) · y = b (M,)`` (slot layout of
    :mod:`jaxpoly.oracle`): ``(v (C, d), |det| (C,), inside (C,))``, ``inside`` where the point is
    finite and inside the box up to ``eps`` (the test of :func:`_vertex_signs`; the box rows alone,
    so the ``(C, M)`` work is left to the few points inside)."""
    v, det = small_solve(A[idx], b[idx])
    d = A.shape[1]
    slots = jnp.arange(2 * d)
    defining = jnp.any(idx[:, :, None] == slots[None, None, :], axis=1)  # (C, 2 d) box slots
    vals = jnp.concatenate([v - half, -v - half], axis=1)  # box rows: value minus offset
    eps = eps_scale * (1.0 + jnp.max(jnp.abs(v), axis=1)) / jnp.maximum(det, 1e-300)
    inside = (det > 1e-300) & jnp.all(jnp.isfinite(v), axis=1) & jnp.all(defining | (vals < eps[:, None]), axis=1)
    return v, det, inside


def _vertex_signs(A: np.ndarray, b: np.ndarray, idx: np.ndarray, v: np.ndarray, det: np.ndarray, eps_scale: float):
    """The candidates of :func:`_vertex_chunk`, on the host: ``(bits (n, M) value > 0, ok (n,),
    degenerate (n,))``. ``ok``: a simple vertex inside the box (every non-defining box row satisfied
    up to ``eps``); ``degenerate``: inside, but within ``eps`` of a row it is not defined by, or
    ill-conditioned (the caller then falls back). ``eps = eps_scale (1 + |v|) / |det|``."""
    vals = v @ A.T - b  # (n, M): row value minus offset
    M, d = A.shape
    defining = np.zeros(vals.shape, bool)
    np.put_along_axis(defining, idx, True, axis=1)
    eps = eps_scale * (1.0 + np.max(np.abs(v), axis=1)) / np.maximum(det, 1e-300)
    box = np.arange(M) < 2 * d
    inside = np.all(np.where(box & ~defining, vals < eps[:, None], True), axis=1)
    near = (np.abs(vals) <= eps[:, None]) & np.any(A != 0, axis=1)[None, :]  # padding rows are zero
    degenerate = inside & (np.any(near & ~defining, axis=1) | (det < _VERTEX_DET))
    return vals > 0, inside & ~degenerate, degenerate


def _subset_blocks(d: int, hyper: np.ndarray, size: int):
    """Every ``d``-subset of the first level's constraints that can meet in a vertex (``k`` of the
    hyperplane slots ``hyper (n,)`` and ``d - k`` box slots on distinct coordinates), in blocks of
    ``size`` rows ``(size, d) int32`` with their count of real rows (the last block is padded by
    repeating its first row). Generated as they are consumed: hyperplane subsets by their first member,
    so memory stays ``O(size + C(n - 1, k - 1))`` whatever their number."""
    n = len(hyper)
    buf, have = [], 0

    def flush():
        block = np.concatenate(buf)
        return _pad_rows(block, size), len(block)

    for k in range(min(d, n), -1, -1):
        boxes = [np.array([c + d * ((signs >> i) & 1) for i, c in enumerate(coords)], np.int32)
                 for coords in _combinations(d, d - k) for signs in range(2 ** (d - k))]
        firsts = range(n - k + 1) if k else [None]
        for f in firsts:
            if f is None:
                hyp = np.zeros((1, 0), np.int32)
            else:
                rest = _combinations(n - f - 1, k - 1) + f + 1
                hyp = hyper[np.concatenate([np.full((len(rest), 1), f), rest], axis=1)].astype(np.int32)
            for box in boxes:
                piece = np.concatenate([hyp, np.broadcast_to(box, (len(hyp), d - k))], axis=1)
                while len(piece):
                    take = piece[: size - have]
                    buf.append(take)
                    have += len(take)
                    piece = piece[len(take):]
                    if have == size:
                        yield flush()
                        buf, have = [], 0
    if have:
        yield flush()


def _cells_around(V: np.ndarray, vwords: np.ndarray, D: np.ndarray, d: int, n: int, M: int, chunk: int):
    """Group the cells around the simple vertices ``V (nV, d)``: each vertex with its hyperplane bits
    ``vwords (nV, W) uint64`` (hyperplane 0 the top bit of word 0) and defining slots ``D (nV, d)``
    lies on the ``2^k`` cells that set its ``k`` defining hyperplanes' bits each way. Returns
    ``(patterns (R, n) bool, facets (R, M) bool, witnesses (R, d))``: the witness is the centroid of the
    cell's vertices, the facets its vertices' defining slots. Keys are built ``chunk`` vertices at a
    time, by doubling: the vertex's word with those bits cleared, then each bit set both ways."""
    W = vwords.shape[1]
    is_h = D >= 2 * d
    hyp = np.where(is_h, D.astype(np.int64) - 2 * d, 0)
    bit = np.where(is_h, np.left_shift(np.uint64(1), (np.uint64(63) - (hyp % 64).astype(np.uint64))), np.uint64(0))
    masks = np.zeros((len(V), d, W), np.uint64)  # (vertex, slot, word): the slot's bit, if a hyperplane
    np.put_along_axis(masks, (hyp // 64)[..., None], bit[..., None], axis=2)
    base = vwords & ~np.bitwise_or.reduce(masks, axis=1)
    keys, vids = [], []
    for k in range(d + 1):
        sel = np.flatnonzero(is_h.sum(axis=1) == k)
        # move the hyperplane slots first (is_h is True before False after a stable sort of ~is_h)
        slots = np.argsort(~is_h[sel], axis=1, kind="stable")[:, :k]
        for s in range(0, len(sel), chunk):
            v = sel[s : s + chunk]
            kk = base[v][:, None, :]  # (c, 1, W)
            for j in range(k):
                m = masks[v, slots[s : s + chunk, j]]  # (c, W)
                kk = np.concatenate([kk, kk | m[:, None, :]], axis=1)
            keys.append(kk.reshape(-1, W))
            vids.append(np.repeat(v.astype(np.int32), 1 << k))
    keys, vid = np.concatenate(keys), np.concatenate(vids)
    order = np.argsort(keys[:, 0]) if W == 1 else np.lexsort(keys.T[::-1])
    sk = keys[order]
    del keys
    new = np.ones(len(sk), bool)
    new[1:] = np.any(sk[1:] != sk[:-1], axis=1)
    starts = np.flatnonzero(new)
    patterns = np.unpackbits(sk[starts].astype(">u8").view(np.uint8), axis=1, count=n).astype(bool)
    del sk
    # per cell (a run of the sorted pairs): the union of its vertices' slots, as bit words, and the
    # sum of their positions
    sv = vid[order]
    del order
    slot_bits = np.zeros((len(V), -(-M // 64)), np.uint64)
    for j in range(d):
        w, b = D[:, j] // 64, np.uint64(63) - (D[:, j] % 64).astype(np.uint64)
        slot_bits[np.arange(len(V)), w] |= np.left_shift(np.uint64(1), b)
    # (reductions along contiguous rows: reduceat along axis 0 of an (E, k) array is several times slower)
    fac = np.stack([np.bitwise_or.reduceat(slot_bits[:, w][sv], starts) for w in range(slot_bits.shape[1])], axis=1)
    facets = np.unpackbits(fac.astype(">u8").view(np.uint8), axis=1, count=M).astype(bool)
    cnt = np.diff(np.append(starts, len(sv))).astype(np.float64)
    wit = np.stack([np.add.reduceat(V[:, i][sv], starts) for i in range(d)], axis=1) / cnt[:, None]
    return patterns, facets, wit


def _vertex_level(ctx: _Ctx, stage: tuple[int, int], max_cells: int | None = None):
    """Cells of the first level from the vertices of its arrangement inside the box, or ``None`` when
    the arrangement is not simple there (coincident, parallel-through-a-vertex, constant or
    numerically ambiguous hyperplanes), too large for memory, or when only ``max_cells`` of them are
    wanted and the LP search, which stops there, finds them sooner; the LP search then runs instead.

    Every cell of a hyperplane arrangement restricted to the box is a bounded polytope, so it has a
    vertex: ``d`` constraints (hyperplanes or box faces) meeting at a point. At a simple vertex the
    ``2^k`` sign choices of its ``k`` hyperplanes are exactly the cells around it, and the cell's facets
    there are its ``d`` defining constraints. Grouping (vertex, orthant) pairs by pattern therefore gives
    every cell, each facet (every facet of a polytope contains a vertex), and the centroid of the
    cell's vertices, an interior point whose smallest slack certifies the inradius. The ``d``-subsets
    are generated and solved block by block (only the vertices inside the box are kept), so memory
    grows with the vertices and cells, not with the subsets.
    """
    d, M = ctx.d, ctx.M
    h0, h1 = stage
    n = h1 - h0
    if n == 0:
        return None
    G, g = oracle._all_rows_jit(ctx.net, jnp.zeros((1, ctx.Hp), bool), jnp.asarray(ctx.centre), ctx.level_set)
    G, g = np.asarray(G)[0, h0:h1], np.asarray(g)[0, h0:h1]
    # a hyperplane that misses the box has no vertex in it (its bit is the same in every cell)
    meets = np.abs(g) <= (np.abs(G) @ ctx.half) * (1 + 1e-9)
    subsets = _vertex_subsets(d, int(meets.sum()))
    if subsets > _VERTEX_MAX_SUBSETS or (max_cells is not None and max_cells * _VERTEX_PER_CELL < subsets):
        return None
    norms = np.linalg.norm(G, axis=1)
    scale = max(float(norms.max()), 1e-300)
    if np.any(norms <= 1e-6 * scale):
        return None  # constant (dead) or nearly constant neurons
    Gn, gn = G / norms[:, None], g / norms
    # coincident or parallel hyperplanes: fall back (the search handles them)
    cos = np.abs(Gn @ Gn.T) - np.eye(n)
    if np.any(cos >= 1.0 - 1e-9):
        return None
    eye = np.eye(d)
    A = np.concatenate([eye, -eye, Gn, np.zeros((M - 2 * d - n, d))])  # rows: a · y <= / = b
    b = np.concatenate([ctx.half, ctx.half, -gn, np.zeros(M - 2 * d - n)])
    # hyperplane row h: value a · y - b = (G y + g) / |G| (sign = pattern bit)
    A_j, b_j, half = jnp.asarray(A), jnp.asarray(b), jnp.asarray(ctx.half)  # solved on the device
    # round-off at a vertex scales with its own coordinates (the offsets of its defining rows are at
    # most |v|_2 <= sqrt(d) |v|_inf), not with the box: a box far larger than where the hyperplanes
    # meet keeps their vertices apart
    eps_scale = _VERTEX_EPS * math.sqrt(d)

    vs, wparts, defs, systems = [], [], [], 0
    for chunk, k in _subset_blocks(d, 2 * d + np.flatnonzero(meets), _VERTEX_CHUNK):
        v, det, inside = _vertex_chunk(A_j, b_j, jnp.asarray(chunk), half, eps_scale)
        systems += k
        cand = np.flatnonzero(np.asarray(inside)[:k])
        if not len(cand):
            continue
        vc = np.asarray(v)[cand]
        bt, ok, degen = _vertex_signs(A, b, chunk[cand], vc, np.asarray(det)[cand], eps_scale)
        if degen.any():
            log.debug("vertex path: %d degenerate vertices, falling back to the LP search", int(degen.sum()))
            return None
        sel = cand[ok]
        if len(sel):
            vs.append(vc[ok])
            wparts.append(words(np.packbits(bt[ok][:, 2 * d : 2 * d + n], axis=1)))
            defs.append(chunk[sel])
    if not vs:
        return None
    V, Wd, D = np.concatenate(vs), np.concatenate(wparts), np.concatenate(defs)
    pairs = int(np.sum(1 << (D >= 2 * d).sum(axis=1)))
    # keys, their sort and ids per (vertex, cell) pair; facets, patterns, witnesses per cell (a cell has
    # at least d + 1 vertices)
    need = pairs * (24 * Wd.shape[1] + 20) + pairs // (d + 1) * (M + n + 8 * d)
    if need > device_bytes() // 2:
        log.info("vertex path: %d (vertex, cell) pairs need about %.1f GiB, falling back to the LP search",
                 pairs, need / 2**30)
        return None
    cell_pats, facets, wit = _cells_around(V, Wd, D, d, n, M, chunk=_VERTEX_GROUP_CHUNK)
    # certificate: the witness's slacks on every row (unit rows: distances), signs as the pattern says
    def slack_radius(wit, pats):
        slack_h = (wit @ Gn.T + gn) * np.where(pats, 1.0, -1.0)
        slack_b = np.concatenate([ctx.half - wit, ctx.half + wit], axis=1)
        return np.minimum(slack_h.min(axis=1), slack_b.min(axis=1))

    rad = slack_radius(wit, cell_pats)
    bad = ~(rad > ctx.tol)
    if bad.any():
        # rare: a centroid too close to the boundary; certify those cells by their Chebyshev LP
        full = np.zeros((int(bad.sum()), ctx.Hp), bool)
        full[:, h0:h1] = cell_pats[bad]
        pm = np.zeros((len(full), M), bool)
        pm[:, : 2 * d] = True
        w2, r2 = [], []
        for s in range(0, len(full), ctx.B):
            p_ = _pad_rows(full[s : s + ctx.B], ctx.B)
            rows = oracle.cell_rows(ctx.net, ctx.put(p_), ctx.put(_pad_rows(pm[s : s + ctx.B], ctx.B)),
                                    jnp.asarray(ctx.centre), jnp.asarray(ctx.half), stage=stage,
                                    level_set=ctx.level_set, num_slots=M, same=ctx.same)
            w_, r_, fb, _ = oracle.chebyshev(rows, 2.0 * ctx.radius, sharding=ctx.sharding, lp_tol=ctx.lp_tol)
            ctx.stats["lps"] += ctx.B
            ctx.stats["lp_fallbacks"] += fb
            k = min(ctx.B, len(full) - s)
            w2.append(w_[:k])
            r2.append(r_[:k])
        # the LPs' witnesses get the same float64 check as the centroids (their smallest slack), and
        # replace them where they certify more (in a box far larger than the cell, the LP may not)
        w2 = np.concatenate(w2)
        r2 = np.minimum(np.concatenate(r2), slack_radius(w2, cell_pats[bad]))
        better = r2 > rad[bad]
        idx = np.flatnonzero(bad)[better]
        wit[idx], rad[idx] = w2[better], r2[better]
    keep = rad > ctx.tol
    thin = ~keep & (rad > 0)  # the vertices are simple: every cell around one has an interior
    ctx.stats["thin_cells"] += int(thin.sum())
    ctx.stats["empty_cells"] += int((~keep & ~thin).sum())
    out = np.zeros((int(keep.sum()), ctx.Hp), bool)
    out[:, h0:h1] = cell_pats[keep]
    ctx.stats["cells"] += len(out)
    ctx.stats["vertices"] = ctx.stats.get("vertices", 0) + len(V)
    ctx.stats["vertex_systems"] = ctx.stats.get("vertex_systems", 0) + systems
    return out, wit[keep], rad[keep], facets[keep]


def _vertex_output(ctx: _Ctx, fast, final: bool, max_regions: int | None):
    """The vertex path's cells in :func:`_search_level`'s output format."""
    pats, wit, rad, facets = fast
    stopped = max_regions is not None and len(pats) > max_regions
    if stopped:
        pats, wit, rad, facets = pats[:max_regions], wit[:max_regions], rad[:max_regions], facets[:max_regions]
    a = None
    if final:
        src, slot = np.nonzero(facets[:, 2 * ctx.d :])
        nb = pats[src].copy()
        nb[np.arange(len(src)), slot] ^= True
        a = (src, np.packbits(nb, axis=1), slot + 2 * ctx.d)
    return [(pats, wit, rad, facets, a)], ([a] if a is not None else []), stopped


def _search_level(ctx: _Ctx, seeds: np.ndarray, seed_mask: np.ndarray, stage, final: bool,
                  max_regions: int | None, bar):
    """BFS over the cells of one level, from one seed pattern per parent.

    Stops after ``max_regions`` cells on any level (each cell of an intermediate level holds at least
    one region, so the final level still reaches ``max_regions``). A ``KeyboardInterrupt`` stops the
    search after the last finished batch.

    Returns ``(batches, adjacency, stopped, interrupted)``: ``batches`` a list of per-batch tuples
    ``(patterns, witnesses, radii, facets)`` and on the final level the adjacency candidates
    ``(region index (k,), neighbour keys)``.
    """
    slots = ctx.slot_mask(stage)
    all_h = np.arange(ctx.M) >= 2 * ctx.d
    # key -> None (seen), or (starts, i) while the cell waits in the queue without a start basis
    known: dict[bytes, Any] = {}
    # redundancy certificates (oracle.classify_facets) that neighbours inherit, where they pay
    certs = _Certificates(ctx.M, ctx.d) if ctx.d >= _INHERIT_MIN_DIM else None
    n_certs = 0

    def no_start(n: int) -> np.ndarray:
        return np.full((n, ctx.d + 1), -1, np.int32)

    queue = _Queue(np.zeros((0, ctx.Hp), bool), np.zeros((0, ctx.M), bool), no_start(0), np.zeros(0, np.int64))
    # Chebyshev starts (see oracle.chebyshev) only where they pay: in LP calls smaller than a batch
    starts = ctx.lp_chunk < ctx.B
    sel, seed_keys = _discover(known, seeds, None)
    queue.push(seeds[sel], seed_mask[sel], no_start(len(sel)), np.full(len(sel), -1))
    # known patterns that may have no interior point: the seeds (a seed point may lie on a hyperplane)
    # and cells found across unsure facets, until processed (or found across a sure facet)
    doubtful = set(seed_keys)

    def is_cell(keys: list[bytes]) -> np.ndarray:
        return np.fromiter((k in known and k not in doubtful for k in keys), bool, len(keys))

    n_seeds, popped = len(sel), 0
    out: list = []
    count = 0
    stopped = interrupted = False
    try:
        while queue.size:
            ctx.ctrl_c.check()
            take = ctx.B
            if max_regions is not None:
                if count >= max_regions:
                    stopped = True
                    break
                take = min(take, max_regions - count)
            pats, pmask, start, finder = queue.pop(take)
            popped_keys = pattern_keys(pats)
            if starts:
                for k, cold in zip(popped_keys, start[:, 0] < 0):
                    if cold:
                        known[k] = None  # popped: no longer waiting for a start
            is_seed = np.arange(popped, popped + len(pats)) < n_seeds
            popped += len(pats)
            support = None
            if certs is not None:
                certs.drop_before(finder[finder >= 0].min(initial=count))
                support = certs.support(finder, pats, popped_keys)
            good, cross, wit, rad, facets, unsure, same, rows_ok, basis, cert = _process_batch(
                ctx, pats, pmask, start, support, stage, is_cell if ctx.d >= _NEIGHBOUR_MIN_DIM else None)
            ctx.stats["seed_failures"] += int((is_seed & ~cross).sum())
            if doubtful:
                doubtful.difference_update(k for k, c in zip(popped_keys, cross) if c)
            # the crossed cells lead on; the regions among them (keep) are output, index: their index
            # in the level (-1: a thin cell)
            index = np.where(good, count + np.cumsum(good) - 1, -1)[cross]
            keep = good[cross]
            pats, pmask, wit, rad, facets = pats[cross], pmask[cross], wit[cross], rad[cross], facets[cross]
            same, rows_ok, basis, unsure = same[cross], rows_ok[cross], basis[cross], unsure[cross]
            src, slot, nb = _flips(pats, facets, same, rows_ok, slots, ctx.d)
            start = _start_bases(basis[src], nb ^ pats[src], ctx.d, ctx.M) if starts else None
            sel, keys = _discover(known, nb, start)
            unsure_flip = unsure[src, slot]
            if unsure_flip.any():
                doubtful.update(keys[j] for j in sel if unsure_flip[j])
            if doubtful:
                doubtful.difference_update(keys[j] for j in np.flatnonzero(~unsure_flip))
            a = None
            if final:
                asrc, aslot, anb = _flips(pats[keep], facets[keep], same[keep], rows_ok[keep], all_h, ctx.d)
                a = (asrc + count, np.packbits(anb, axis=1), aslot)
            # commit the batch (single statements, so an interrupt leaves the outputs consistent)
            first = count
            out.append((pats[keep], wit[keep], rad[keep], facets[keep], a))
            count += int(keep.sum())
            if certs is not None:
                certs.add(first, pats[keep], cert, good)
                n_certs += len(cert.cell)
                if count >= ctx.B and n_certs < _INHERIT_MIN_RATE * count:
                    certs = None  # too few to pay for their bookkeeping (e.g. d = 32 in [-1, 1]^d)
            if len(sel):
                queued = start[sel] if starts else no_start(len(sel))
                queue.push(nb[sel], pmask[src[sel]], queued, index[src[sel]])
                if starts:
                    _wait_for_start(known, [keys[j] for j in sel], queued)
            if certs is not None:
                certs.found(keys, sel, index[src])
            if bar is not None:
                bar.update(int(keep.sum()), queue.size)
    except KeyboardInterrupt:
        interrupted = True
    adj = [o[4] for o in out if o[4] is not None]
    return out, adj, stopped, interrupted


class _Progress:
    """A tqdm bar (or one log line per batch without tqdm): level, cells found, rate, queue."""

    def __init__(self, enabled: bool, num_levels: int):
        self.enabled, self.L, self.bar, self.level = enabled, num_levels, None, 0

    def start(self, level: int) -> None:
        if not self.enabled:
            return
        self.close()
        self.level = level
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm is in the viz extra
            return
        final = level == self.L - 1
        self.bar = tqdm(desc=f"layer {level + 1}/{self.L}", unit=" regions" if final else " cells",
                        dynamic_ncols=True, leave=True)

    def update(self, n: int, queued: int) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(queued=queued, refresh=False)
        elif self.enabled:
            log.info("layer %d/%d: +%d cells, %d queued", self.level + 1, self.L, n, queued)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _unit_rows(net: Network, patterns: np.ndarray, lo: np.ndarray, hi: np.ndarray, level_set: bool):
    """Each region ``patterns (k, H')`` as ``A y <= b`` in input coordinates: ``(A (k, 2 d + H', d),
    b (k, 2 d + H'), live (k, 2 d + H'))``, the box's rows first, unit rows; ``live`` false for
    hyperplanes constant on the region (as :func:`oracle.cell_rows` decides)."""
    d = net.input_dim
    k = len(patterns)
    padded = _pad_rows(patterns, power_of_two(k, 1))  # (one compilation per bucket)
    G, g = (np.asarray(a)[:k] for a in oracle._all_rows_jit(net, jnp.asarray(padded), jnp.zeros(d), level_set))
    sign = np.where(patterns, -1.0, 1.0)  # bit True means g > 0, i.e. -G x <= g
    A = np.concatenate([np.broadcast_to(np.concatenate([np.eye(d), -np.eye(d)]), (len(patterns), 2 * d, d)),
                        sign[..., None] * G], axis=1)
    b = np.concatenate([np.broadcast_to(np.concatenate([hi, -lo]), (len(patterns), 2 * d)), -sign * g], axis=1)
    norm = np.linalg.norm(A, axis=-1)
    live = norm > CONSTANT_RTOL * np.concatenate([np.zeros(2 * d), hyperplane_scales(net.astype(np.float64), level_set, np)])
    return A / np.where(live, norm, 1.0)[..., None], b / np.where(live, norm, 1.0), live


def _on_hyperplane(A: np.ndarray, b: np.ndarray, a: np.ndarray, c: float, radius: float) -> np.ndarray:
    """Which unit rows ``(A (..., d), b (...))`` are the hyperplane ``a · x = c`` (either orientation)."""
    return (np.abs(np.abs(A @ a) - 1.0) <= oracle._SAME) & (np.abs(np.abs(b) - abs(c)) <= oracle._SAME * radius)


def _patterns_across(net: Network, patterns: np.ndarray, hyper: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                     level_set: bool) -> tuple[np.ndarray, np.ndarray]:
    """The region just across facet ``hyper (k,)`` (a hyperplane id) of each region ``patterns (k, H')``:
    ``(across (k, H'), found (k,))``, the pattern at a point beyond the middle ``m`` of the facet's
    largest inscribed ball (one host LP each), ``found`` false where none is certified.

    Across the relative interior of a facet ``F`` lies a single region: two regions beyond it would
    be parted by the zero set of some neuron whose affine form is the same on both; that zero set
    would cross ``F``, so the neuron's form on this side (equal to it on ``F``) would change sign
    inside the region. The pattern at ``m + s a`` (``a`` the facet's outer normal) names that region
    when ``m`` lies in its closure (the region is convex and ``m + s a`` inside it), which is
    checked: its rows, less those on the facet's hyperplane, hold at ``m``. A step ``s`` that jumps a
    region thinner than ``s`` at ``m`` fails that check (the region beyond is parted from ``m`` by a
    facet that meets ``F``'s hyperplane outside ``F``): shorter steps follow, down to ``1e-12`` of the
    box's half-diagonal."""
    d = net.input_dim
    A, b, live = _unit_rows(net, patterns, lo, hi, level_set)
    radius = float(np.linalg.norm(hi - lo)) / 2
    k = len(patterns)
    mid, normal, reach = np.zeros((k, d)), np.zeros((k, d)), np.zeros(k)
    for i, h in enumerate(hyper):
        a, c = A[i, 2 * d + h], b[i, 2 * d + h]
        rows = live[i] & ~_on_hyperplane(A[i], b[i], a, c, radius)  # the facet's hyperplane is tight there
        # max t: A y + t <= b on the other rows, a . y = c, t <= radius
        Alp = np.concatenate([np.hstack([A[i, rows], np.ones((rows.sum(), 1))]),
                              np.hstack([a, 0.0])[None], np.hstack([-a, 0.0])[None], np.eye(d + 1)[-1:]])
        blp = np.concatenate([b[i, rows], [c, -c, radius]])
        res = lp.solve_lp_host(np.eye(d + 1)[-1], Alp, blp)
        if res.status == lp.OPTIMAL and res.x[-1] > 0:
            mid[i] = res.x[:d] + (c - a @ res.x[:d]) * a  # exactly on the hyperplane
            normal[i], reach[i] = a, res.x[-1]
    across = np.zeros(patterns.shape, bool)
    found = np.zeros(k, bool)
    todo = np.flatnonzero(reach > 0)
    for step in (np.minimum(0.5 * reach[todo], 1e-6 * radius), 1e-9 * radius, 1e-12 * radius):
        if not len(todo):
            break
        x = mid[todo] + np.reshape(step, (-1, 1)) * normal[todo]
        q = np.asarray(net.pattern(jnp.asarray(x), level_set=level_set))
        Aq, bq, liveq = _unit_rows(net, q, lo, hi, level_set)
        slack = bq - np.einsum("kmd,kd->km", Aq, mid[todo])
        on = np.stack([_on_hyperplane(Aq[n], bq[n], normal[i], normal[i] @ mid[i], radius)
                       for n, i in enumerate(todo)])
        ok = np.all(~liveq | on | (slack >= -1e-12 * radius), axis=1)
        across[todo[ok]], found[todo[ok]] = q[ok], True
        todo = todo[~ok]
    return across, found


def _lookup_packed(table: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Row index in ``table (R, bytes)`` (distinct rows) of each row of ``query (N, bytes)``, or ``-1``."""
    if len(table) == 0 or len(query) == 0:
        return np.full(len(query), -1, np.int64)
    t, q = words(table), words(query)
    if t.shape[1] == 1:
        order = np.argsort(t[:, 0], kind="stable")
        ts = t[order, 0]
        pos = np.clip(np.searchsorted(ts, q[:, 0]), 0, len(ts) - 1)
        return np.where(ts[pos] == q[:, 0], order[pos], -1).astype(np.int64)
    allk = np.concatenate([t, q])
    _, inv = np.unique(allk, axis=0, return_inverse=True)
    inv = inv.ravel()
    owner = np.full(inv.max() + 1, -1, np.int64)
    owner[inv[: len(t)]] = np.arange(len(t))
    return owner[inv[len(t):]]


def _cat(parts: list, shape_tail: tuple, dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0,) + shape_tail, dtype)


def _cpu_threads() -> int:
    """The threads of XLA's CPU pool: ``PJRT_NPROC`` if set, else the process's cores."""
    try:
        return max(int(os.environ["PJRT_NPROC"]), 1)
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _check_cpu_threads(devices: list) -> None:
    """Several CPU devices run their programs side by side on XLA's one CPU thread pool, where each
    program holds a thread while it waits for work it queued behind the others: with no more threads
    than devices they can all wait (measured: 4 devices hang on a pool of 2 or 4 threads, not 5)."""
    cpus = [v for v in devices if v.platform == "cpu"]
    threads = _cpu_threads()
    if len(cpus) > 1 and threads <= len(cpus):
        raise InvalidArgumentError(
            f"devices: {len(cpus)} CPU devices on XLA's CPU thread pool of {threads} threads can deadlock (each "
            f"device's program holds a thread while it waits for work queued behind the others'). Start Python "
            f"with PJRT_NPROC={len(cpus) + 1} or more in the environment (it sizes the pool when JAX starts), or "
            "pass fewer CPU devices")


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
    batch_size: int | None = None,
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
      max_regions: stop after this many regions (``complete=False`` and an
        :class:`~jaxpoly.IncompleteResultWarning`); an
        intermediate level also stops after this many cells (each holds at least one region). Far
        below the first level's size, its cells come from the LP search, which stops there, instead
        of the vertex path, which solves every vertex first.
      batch_size: cells processed per step (the compiled kernels' static batch size). Default
        (:func:`default_batch_size`): 256 on a CPU, fewer where a batch's LP rows outgrow the caches
        (d = 64 and width 64: 64), 2048 on a GPU/TPU (measured on an H200: 5x the regions per second
        of 256, whose batches leave it waiting on the host), halved until a batch fits in memory.
      rays: ray directions shot from each cell's centre (the first ``2 d`` are the axes).
      progress: show a tqdm progress bar per level (cells found, rate, queue length); without tqdm,
        one log line per batch (logger ``"jaxpoly"``, level INFO). Off by default.
      devices: a list of distinct devices or a :class:`jax.sharding.Mesh`: every batch is sharded over
        them along its batch axis (``batch_size`` is rounded up to a multiple of the device count);
        each device builds its cells' constraints and runs their rays, walks and LPs. Same results
        as one device. Several CPU devices need ``PJRT_NPROC`` (XLA's CPU pool) above their count
        (see ``InvalidArgumentError`` below).
      tol: a cell counts when its inradius exceeds ``tol`` times the box half-diagonal (of the box
        scaled per side by powers of two to about [-1, 1]^d, where its sides differ); the same
        tolerance decides facets, and rows closer than it (at least 1e-13) are one hyperplane; below
        the default it is also the LPs' relative tolerance (at least 1e-13, float64's limit). Cells
        seen but thinner are counted (``stats["thin_cells"]``, a warning): in a box far larger than where the
        hyperplanes meet, regions are lost that way; a smaller ``tol`` finds them (a 2-4-3-1 net whose
        smallest region has inradius 0.004: all 39 regions in +-1e8 with ``tol=1e-12``, 24 at the
        default).
      seed: seeds the ray directions and seed-point candidates (results do not depend on it for
        generic networks).

    Returns:
      :class:`jaxpoly.Regions` (patterns, witnesses, inradii, facets, adjacency, stats). A
      ``KeyboardInterrupt`` (Ctrl-C) during the search stops it cleanly: the regions certified so far
      come back with ``complete=False`` and an :class:`~jaxpoly.IncompleteResultWarning` (none when it
      arrives before the last level, whose cells are the regions). Results that float64 or ``tol`` did
      not fully resolve come with a :class:`~jaxpoly.PrecisionWarning` saying what and how to fix it.

    Raises:
      InvalidNetworkError: non-finite or non-real weights, weights so large that the geometry would
        overflow float64 (:func:`jaxpoly.network.validate_magnitudes`) or so small that it would
        underflow (hyperplane coefficients below :data:`jaxpoly.bounds.MIN_MAGNITUDE`), or ``level_set``
        with a non-scalar output.
      InvalidBoundsError: a bad or empty box, one beyond :data:`jaxpoly.bounds.MAX_MAGNITUDE`, or one
        narrower than ``2 MIN_MAGNITUDE``.
      InvalidArgumentError: an option outside its domain (``tol`` in ``[1e-13, 1e-2)``, ``seed >= 0``,
        integer ``max_regions``, ``batch_size`` and ``rays``, boolean ``level_set``, distinct devices);
        several CPU devices on an XLA CPU pool of no more threads than devices (their programs can
        deadlock there: set ``PJRT_NPROC`` before JAX starts).
      CapacityError: one batch would not fit in memory; the message names a batch size that does.
    """
    release_compiled_kernels()
    level_set = check_flag(level_set, "level_set")
    validate_network(net, scalar_output=level_set)
    d = net.input_dim
    lo, hi = as_box(bounds, d, max_abs=MAX_MAGNITUDE, min_width=2 * MIN_MAGNITUDE)
    validate_magnitudes(net, lo, hi)
    if batch_size is not None and (not is_integer(batch_size) or batch_size < 1):
        raise InvalidArgumentError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if not is_integer(rays) or rays < 1:
        raise InvalidArgumentError(f"rays must be a positive integer, got {rays!r}")
    if max_regions is not None and (not is_integer(max_regions) or max_regions < 1):
        raise InvalidArgumentError(f"max_regions must be a positive integer or None, got {max_regions!r}")
    if not is_real(tol) or not 0 < tol < 1e-2:
        raise InvalidArgumentError(
            f"tol must be a small positive number (default 1e-9: a cell counts when its inradius exceeds tol "
            f"times the box half-diagonal), got {tol!r}"
        )
    if tol < _LP_TOL_FLOOR:
        raise InvalidArgumentError(
            f"tol={tol!r} is below what the float64 LPs resolve ({_LP_TOL_FLOOR:g} of the box half-diagonal, "
            f"about 500 eps): facets would be decided more finely than the LPs compute them. Pass "
            f"tol >= {_LP_TOL_FLOOR:g}, or enumerate in a smaller box")
    if not is_integer(seed) or seed < 0:
        raise InvalidArgumentError(f"seed must be a non-negative integer, got {seed!r}")
    if devices is not None and not isinstance(devices, jax.sharding.Mesh):
        try:
            devs = list(devices)
        except TypeError:
            devs = []
        if not devs or not all(isinstance(v, jax.Device) for v in devs):
            raise InvalidArgumentError(
                f"devices must be None, a non-empty list of JAX devices (e.g. jax.devices()) or a "
                f"jax.sharding.Mesh, got {devices!r}"
            )
        if len(set(devs)) != len(devs):
            raise InvalidArgumentError(f"devices lists a device more than once: {devs}; list each device once")
        devices = devs
    if isinstance(devices, jax.sharding.Mesh):
        devs = list(devices.devices.flat)
        if len(set(devs)) != len(devs):
            raise InvalidArgumentError(f"the mesh lists a device more than once: {devs}; list each device once")
    if devices is not None:
        _check_cpu_threads(devs)
    Hp = net.num_hyperplanes + int(level_set)
    if batch_size is None:
        batch_size = default_batch_size(d, Hp, rays)
    sharding, batch_size = _resolve_sharding(devices, int(batch_size))
    need, limit = estimate_batch_bytes(d, Hp, batch_size, rays), device_bytes() // 2
    if need > limit:
        fit = max(1, batch_size * limit // need)
        raise CapacityError(
            f"batch_size={batch_size} needs about {need / 2**30:.1f} GiB per batch (d={d}, {Hp} hyperplanes, "
            f"{rays} rays) but the limit is {limit / 2**30:.1f} GiB; use batch_size <= {fit}"
        )
    try:
        with jax.enable_x64(True):
            return _enumerate(net.astype(np.float64), lo, hi, level_set, max_regions, int(batch_size), int(rays),
                              progress, float(tol), int(seed), sharding)
    except Exception as e:  # an allocation the estimate did not foresee (e.g. a smaller device)
        if "RESOURCE_EXHAUSTED" not in str(e) and not isinstance(e, MemoryError):
            raise
        raise CapacityError(
            f"batch_size={batch_size} ran out of memory (d={d}, {Hp} hyperplanes, {rays} rays): "
            f"use batch_size <= {max(1, batch_size // 4)}") from e


def _axis_scales(lo: np.ndarray, hi: np.ndarray) -> np.ndarray | None:
    """``(d,)`` powers of two within a factor ``sqrt(2)`` of the box's half-widths, or ``None`` where they
    are all one power (a box as wide in every direction, up to that factor)."""
    s = np.ldexp(1.0, np.round(np.log2((hi - lo) / 2)).astype(np.int64))
    return None if np.all(s == s[0]) else s


def _input_space_radius(ctx: "_Ctx", net: Network, lo: np.ndarray, hi: np.ndarray, stage: tuple[int, int] | None,
                        patterns: np.ndarray, witnesses: np.ndarray) -> np.ndarray:
    """``(R,)``: the radius of the ball around each witness ``(R, d)`` (input coordinates) inside its
    region of ``net`` in the box ``[lo, hi]``: its least distance to the region's hyperplanes and to the
    box, by :func:`_check_certificates` on the search's kernels (``ctx``: the search's, in scaled
    coordinates; ``stage``: its last level, ``None`` if none)."""
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    box = np.min(half - np.abs(witnesses - centre), axis=1)
    if stage is None:
        return box
    x = copy.copy(ctx)
    x.net, x.centre, x.half = net, centre, half
    x.scales = hyperplane_scales(net, ctx.level_set, np)
    return _check_certificates(x, stage, patterns, witnesses - centre, box)


def _rounded_witnesses(ctx: "_Ctx", net: Network, lo: np.ndarray, hi: np.ndarray, patterns: np.ndarray,
                       witnesses: np.ndarray, radius: np.ndarray) -> int:
    """How many witnesses ``(R, d)`` (input coordinates, rounded to float64) are not strictly inside the box
    ``[lo, hi]`` with their region's pattern ``(R, H')`` (every bit, at ``net``'s float64 values, beyond
    their round-off where the hyperplane is not constant): the
    search certified them in box-centred coordinates, and adding the centre rounds them by up to half
    float64's spacing there. Checked only where that spacing reaches a thousandth of an inradius
    ``(R,)`` (a box far from the origin), else 0."""
    spacing = np.linalg.norm(np.spacing(np.maximum(np.abs(lo), np.abs(hi))))
    near = np.flatnonzero(spacing > 1e-3 * radius)
    if not len(near):
        return 0
    w = witnesses[near]
    inside = np.all((w > lo) & (w < hi), axis=1)
    signs, clear, exact = _hyper_signs(ctx, w, net)
    # every bit on its side, and none within the point's round-off of a hyperplane that is not constant
    same = np.all(signs == patterns[near], axis=1) & ~np.any(clear & ~exact, axis=1)
    return int(np.sum(~(inside & same)))


def _enumerate(net, lo, hi, level_set, max_regions, batch_size, rays, progress, tol, seed, sharding) -> Regions:
    t0 = time.perf_counter()
    # a box whose sides differ runs in coordinates u = x / s where each side is about [-1, 1] (powers
    # of two: exact), so tol is relative to every side, not to the longest alone
    net_x, lo_x, hi_x, s = net, lo, hi, _axis_scales(lo, hi)
    if s is not None:
        net, lo, hi = compose_input(net, np.diag(s), np.zeros_like(s)), lo / s, hi / s
    ctx = _Ctx(net, lo, hi, level_set, batch_size, rays, tol, seed, sharding)
    d, M, Hp = ctx.d, ctx.M, ctx.Hp
    # the hyperplanes' offsets at the box centre, and every value there, carry round-off of about eps
    # |centre|: in a box far from the origin for its size that exceeds tol, and slabs that thin merge
    ctx.stats["centre_round_off"] = drift = float(np.finfo(np.float64).eps * np.linalg.norm(ctx.centre))
    if drift > ctx.tol:
        warn(
            PrecisionWarning,
            "enumerate_regions: the box lies far from the origin for its size (centre at distance %.3g, "
            "half-diagonal %.3g): float64 places the network's hyperplanes there to about %.3g, more than tol x the "
            "half-diagonal (%.3g), so regions thinner than that may merge or be missed unreported. %s",
            float(np.linalg.norm(ctx.centre)), ctx.radius, drift, ctx.tol, TRANSLATE_INPUT)
    levels = _levels(net, level_set)
    par_pat = np.zeros((1, Hp), bool)
    par_wit = np.zeros((1, d))
    par_rad = np.array([float(np.min(ctx.half))])
    par_fac = np.zeros((1, M), bool)
    par_fac[:, : 2 * d] = True
    adj: list = []
    stopped = interrupted = checked = False
    bar = _Progress(progress, len(levels))
    ctx.ctrl_c.install()
    try:
        for li, stage in enumerate(levels):
            final = li == len(levels) - 1
            bar.start(li)
            try:
                fast = _vertex_level(ctx, stage, max_regions) if li == 0 else None
                checked = fast is not None
                if fast is not None:
                    out, adj, st = _vertex_output(ctx, fast, final, max_regions)
                    if progress:
                        bar.update(len(out[0][0]), 0)
                else:
                    seeds = _seed_level(ctx, par_pat, par_wit, par_rad, stage)
                    out, adj, st, interrupted = _search_level(ctx, seeds, par_fac, stage, final, max_regions,
                                                              bar if progress else None)
                stopped |= st
            except KeyboardInterrupt:
                interrupted = True
                out, adj = [], []
            interrupted |= ctx.ctrl_c.seen  # (also where its KeyboardInterrupt was lost: see CtrlC)
            if interrupted and not final:
                out, adj = [], []  # the cells of an intermediate level are not regions
                ctx.stats["interrupted_level"] = li + 1
            par_pat = _cat([o[0] for o in out], (Hp,), bool)
            par_wit = _cat([o[1] for o in out], (d,), np.float64)
            par_rad = _cat([o[2] for o in out], (), np.float64)
            par_fac = _cat([o[3] for o in out], (M,), bool)
            if interrupted:
                break
    finally:
        ctx.ctrl_c.restore()
        bar.close()
    if not levels:
        ctx.stats["cells"] = 1
    if max_regions is not None and len(par_pat) > max_regions:
        stopped = True
        par_pat, par_wit, par_rad, par_fac = (a[:max_regions] for a in (par_pat, par_wit, par_rad, par_fac))

    # every certificate checked in float64 against the region's own constraints, apart from the LPs
    # (the vertex path's radii are such slacks already)
    rho = par_rad if checked or not levels else _check_certificates(ctx, levels[-1], par_pat, par_wit, par_rad)
    failed = ~(rho > _THIN * ctx.tol)
    ctx.stats["failed_certificates"] = int(failed.sum())
    par_rad = np.minimum(par_rad, rho)
    renumber = None
    if failed.any():
        warn(
            PrecisionWarning,
            "enumerate_regions: %d of %d regions failed the final check of their certificates (the witness is "
            "not inside the region by the inradius found): dropped, and the result is marked incomplete. The "
            "LPs lost precision: their tolerances are relative to the box (half-diagonal %.3g), so cells "
            "much smaller than it (here below about %.3g) are not resolved. %s", int(failed.sum()), len(par_pat),
            ctx.radius, 10 * ctx.lp_tol * ctx.radius, _advice(tol))
        renumber = np.where(failed, np.iinfo(np.int64).max // 4, np.cumsum(~failed) - 1)
        par_pat, par_wit, par_rad, par_fac = (a[~failed] for a in (par_pat, par_wit, par_rad, par_fac))

    adjacency = np.zeros((0, 2), np.int64)
    if adj:
        src = np.concatenate([a[0] for a in adj]).astype(np.int64)
        if renumber is not None:
            src = np.where(src < len(renumber), renumber[np.minimum(src, len(renumber) - 1)], src)
        nbk = np.concatenate([a[1] for a in adj])
        table = np.packbits(par_pat, axis=1)
        j = _lookup_packed(table, nbk)
        # where flipping the facet's bits names no region (a deeper neuron that vanishes on the facet
        # may take either sign beyond it), the pattern at a point just across it; not in an incomplete
        # result, whose missing neighbours are simply not there
        miss = np.flatnonzero((j < 0) & (src < len(par_pat)))
        if len(miss) and not (stopped or interrupted or renumber is not None):
            slot = np.concatenate([a[2] for a in adj])[miss]
            across, found = _patterns_across(net, par_pat[src[miss]], slot - 2 * d, lo, hi, level_set)
            j[miss] = np.where(found, _lookup_packed(table, np.packbits(across, axis=1)), -1)
            ctx.stats["adjacency_lps"] = int(len(miss))
        ok = (j >= 0) & (j != src) & (src < len(par_pat))
        lo_, hi_ = np.minimum(src[ok], j[ok]), np.maximum(src[ok], j[ok])
        code = unique_ints(lo_ * max(len(par_pat), 1) + hi_)
        adjacency = np.stack([code // max(len(par_pat), 1), code % max(len(par_pat), 1)], axis=1).astype(np.int64)

    slot_ids = np.concatenate([-(1 + np.arange(2 * d)), np.arange(Hp)])
    par_fac = par_fac[:, : 2 * d + Hp]
    counts = par_fac.sum(axis=1)
    facet_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    facet_idx = np.broadcast_to(slot_ids, par_fac.shape)[par_fac].astype(np.int64)

    complete = not stopped and not interrupted and ctx.stats["seed_failures"] == 0 and renumber is None
    if complete:
        ctx.stats["unlisted_probes"] = unlisted = _unlisted_probes(ctx, par_pat, seed)
        if unlisted:
            warn(
                PrecisionWarning,
                "enumerate_regions: %d activation patterns seen at random points of the box are not among the %d "
                "regions: regions thinner than tol x the box's half-diagonal (%.3g) exist there, or were missed. %s",
                unlisted, len(par_pat), ctx.tol, _advice(tol))
    if interrupted:
        early = ctx.stats.get("interrupted_level")
        warn(IncompleteResultWarning,
             "enumerate_regions interrupted: returning the %d regions certified so far (complete=False)%s",
             len(par_pat), "" if early is None else
             f"; the search was in level {early} of {len(levels)}, and regions are certified in the last level "
             "only, after every cell of the earlier ones (pass max_regions for a partial list sooner)")
    if stopped:
        warn(IncompleteResultWarning,
             "enumerate_regions stopped at max_regions=%d: the result is incomplete (complete=False)", max_regions)
    if ctx.stats["thin_cells"]:
        warn(
            PrecisionWarning,
            "enumerate_regions: %d cells thinner than tol x the box's half-diagonal (inradius at most %.3g) "
            "were seen but not counted as regions, so regions that thin are not enumerated. If they are "
            "genuine: %s", ctx.stats["thin_cells"], ctx.tol, _advice(tol))
    if ctx.stats["seed_failures"]:
        warn(PrecisionWarning, "enumerate_regions: %d parent cells could not be seeded (all candidate points "
             "within tol of a hyperplane); the result is incomplete", ctx.stats["seed_failures"])
    witnesses = par_wit + ctx.centre
    if s is not None:
        witnesses = witnesses * s
        rho = _input_space_radius(ctx, net_x, lo_x, hi_x, levels[-1] if levels else None, par_pat, witnesses)
        # the patterns agree bit for bit (compose_input); the scaled ball is certified in any case
        par_rad = np.where(rho > 0, rho, par_rad * np.min(s))
    ctx.stats["rounded_witnesses"] = rounded = _rounded_witnesses(ctx, net_x, lo_x, hi_x, par_pat, witnesses, par_rad)
    if rounded:
        warn(
            PrecisionWarning,
            "enumerate_regions: %d of %d witnesses, rounded to float64 where the box lies (coordinates up to %.3g, "
            "spaced %.3g apart there), are not strictly inside their regions: those regions are thinner than "
            "float64 resolves at that distance from the origin. The regions are listed, but these witnesses and "
            "inradii are approximate. %s", rounded, len(par_pat), np.max(np.abs([lo_x, hi_x])),
            np.spacing(np.max(np.abs([lo_x, hi_x]))), TRANSLATE_INPUT)
    stats = dict(ctx.stats, time_s=time.perf_counter() - t0, regions=int(len(par_pat)), interrupted=interrupted)
    return Regions(patterns=par_pat, witnesses=witnesses, inradius=par_rad, facet_ptr=facet_ptr,
                   facet_idx=facet_idx, adjacency=adjacency, lo=lo_x, hi=hi_x, level_set=level_set,
                   complete=complete, stats=stats, net=net_x)


def _advice(tol: float) -> str:
    """The fix the warnings of a box far larger than its cells suggest."""
    box = "enumerate in a box closer to where the network's hyperplanes meet"
    if tol > _LP_TOL_FLOOR:
        return f"Pass a smaller tol (now {tol:g}, at least {_LP_TOL_FLOOR:g}; the LPs' tolerances follow it) or {box}."
    return f"tol is at its least ({_LP_TOL_FLOOR:g}): {box}."


def _is_prng_key(key: Any) -> bool:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.shape == ()
    a = np.asarray(key) if isinstance(key, (jax.Array, np.ndarray)) else None
    return a is not None and a.dtype == np.uint32 and a.shape == (2,)


def sample_regions(net: Network, bounds: Sequence[Any], num_samples: int, *, key: jax.Array,
                   batch_size: int = 65536, level_set: bool = False, progress: bool = False) -> np.ndarray:
    """Distinct patterns ``(K, H') bool`` (sorted) of ``num_samples`` uniform points in the box: the
    sampling baseline, a lower bound on the region count. ``progress`` shows a tqdm bar of samples."""
    level_set = check_flag(level_set, "level_set")
    validate_network(net, scalar_output=level_set)
    d = net.input_dim
    lo, hi = as_box(bounds, d, max_abs=MAX_VALUE)
    validate_magnitudes(net, lo, hi, limit=MAX_VALUE)
    if not (is_integer(num_samples) and num_samples >= 1):
        raise InvalidArgumentError(f"num_samples must be a positive integer, got {num_samples!r}")
    if not (is_integer(batch_size) and batch_size >= 1):
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not _is_prng_key(key):
        raise InvalidArgumentError(f"key must be a JAX PRNG key (jax.random.key(0) or jax.random.PRNGKey(0)), "
                                   f"got {type(key).__name__}")
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=num_samples, desc="jaxpoly.sample", unit=" points", unit_scale=True)
        except ImportError:  # pragma: no cover - tqdm is in the viz extra
            bar = None
    seen = []
    batch = min(batch_size, num_samples)  # one shape for every batch (the last is cut)
    with jax.enable_x64(True):
        net64 = net.astype(np.float64)
        # Network.pattern's rule with one round-off threshold per hyperplane over the box (its per-point
        # estimate costs as much again as the forward pass)
        thresholds = jnp.asarray(box_round_off(net64, lo, hi, level_set))
        for i, s in enumerate(range(0, num_samples, batch_size)):
            n = min(batch_size, num_samples - s)
            u = jax.random.uniform(jax.random.fold_in(key, i), (batch, d), dtype=jnp.float64)
            x = jnp.asarray(lo) + u * jnp.asarray(hi - lo)
            bits = np.asarray(_sample_bits_jit(net64, x, thresholds, level_set))[:n]
            seen.append(unique_packed_rows(np.packbits(bits, axis=1)))
            if bar is not None:
                bar.update(n)
    if bar is not None:
        bar.close()
    packed = unique_packed_rows(np.concatenate(seen))
    Hp = net.num_hyperplanes + int(level_set)
    return np.unpackbits(packed, axis=1, count=Hp).astype(bool)
