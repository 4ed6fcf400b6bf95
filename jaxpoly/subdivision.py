"""Edge subdivision kernels (Berzins, "Polyhedral Complex Extraction from ReLU Networks using Edge
Subdivision", ICML 2023), as pure jit-compiled functions over padded, fixed-capacity arrays.

Data layout (capacities ``Vc, Ec`` are static; the counts ``nv, ne`` say how many rows are valid):

* ``x (Vc, d)``: vertex positions.
* ``vz (Vc, zc) int32``: the hyperplanes each vertex lies on (``-1`` pads). Hyperplane ids are
  *internal*: ``0..2d-1`` are the box facets (``2i``: ``x_i >= lo_i``, ``2i+1``: ``x_i <= hi_i``, both
  positive inside), then the network's hyperplanes, then the level set.
* ``ends (Ec, 2) int32``: edge endpoints; ``ez (Ec, d-1) int32``: the ``d-1`` hyperplanes containing
  each edge; ``eh (Ec, 2) uint64``: two independent linear hashes of the edge's sign vector
  ``sum_h sigma_h * r_h  (mod 2^64)`` over every hyperplane processed so far (zeros contribute 0).
* ``vals (Vc, W)``: the values of the current stage's hyperplane functions at the vertices (one column
  per hyperplane of the stage; interpolated, not re-evaluated, for vertices created inside the stage —
  exact because every edge lies in one linear region of the earlier stages).

Only the sign-vector *hash* of each edge is stored, not the sign vector: a face's sign vector agrees
with its edge's outside the edge's zero set, so the key of any face around an edge is the edge's hash
plus ``±r_k`` for the zeros it leaves — what the reference implementation gets by sorting whole sign
vectors, here with two 64-bit keys (a collision needs two 64-bit coincidences at once).

One hyperplane step (:func:`_hyperplane_step`): signs at vertices with the tolerance rule, split every
edge whose endpoints have strictly opposite signs at the interpolated zero, then connect the new
points pairwise inside every 2-face the hyperplane cuts. Crossing points of a cut 2-face are either new
split points or existing vertices on the hyperplane (exact zeros: degenerate input such as a line
through an existing vertex); each emits the key of the 2-face, and keys are grouped by sorting. Every
cut 2-face must yield exactly two crossing points; anything else is reported, never dropped.

A neuron is active where its pre-activation is ``> 0``, so a hyperplane's cut is the boundary of
``{z > 0}``. That matters when ``z`` vanishes on whole cells (a zero bias with every input off, as in
freshly initialised networks): such a cell counts as negative, and the cut may run along existing
edges. In 2D (:func:`_cut_along_edges`) every edge stores the multiplier ``em`` between its two cells,
so an edge the cut runs along adds the hyperplane to it; in d >= 3 the faces around such an edge
need not be products of flips (three planes through a line), and the step reports it
(:func:`jaxpoly.extract` then builds the complex from its regions, :mod:`jaxpoly.lattice`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["State", "Capacity", "init_box", "run_stage", "FLAG_NAMES"]

# Overflow and degeneracy flags reported by a stage run.
FLAG_VERTICES = 1
FLAG_EDGES = 2
FLAG_SPLITS = 4
FLAG_ZERO_EDGES = 8
FLAG_ZERO_SLOTS = 16
FLAG_EDGE_IN_HYPERPLANE = 32
FLAG_PAIRING = 64
FLAG_NAMES = {
    FLAG_VERTICES: "vertices",
    FLAG_EDGES: "edges",
    FLAG_SPLITS: "splits per hyperplane",
    FLAG_ZERO_EDGES: "edges at exact-zero vertices",
    FLAG_ZERO_SLOTS: "hyperplanes through one vertex",
    FLAG_EDGE_IN_HYPERPLANE: ("in d >= 3 it vanishes on an edge of the complex while cutting elsewhere "
                              "(it vanishes on a whole region, e.g. zero bias with all inputs off, as in "
                              "freshly initialised networks, or meets another hyperplane along a line); "
                              "engine='auto' builds such complexes from their regions"),
    FLAG_PAIRING: "a cut 2-face without exactly two crossing points",
}
CAPACITY_FLAGS = FLAG_VERTICES | FLAG_EDGES | FLAG_SPLITS | FLAG_ZERO_EDGES | FLAG_ZERO_SLOTS

_U64_MAX = np.uint64(np.iinfo(np.uint64).max)


class Capacity(NamedTuple):
    """Static array capacities (each a compile-time constant).

    vertices, edges: rows of the vertex/edge arrays. splits: edges one hyperplane may split.
    zero_edges: edges with one endpoint exactly on the hyperplane that one step may handle.
    zero_slots: hyperplanes a vertex may lie on (``d`` for simple vertices).
    """

    vertices: int
    edges: int
    splits: int
    zero_edges: int
    zero_slots: int


class State(NamedTuple):
    """Padded complex (see the module docstring for the layout)."""

    x: jax.Array  # (Vc, d) float
    vz: jax.Array  # (Vc, zc) int32
    nv: jax.Array  # () int32
    ends: jax.Array  # (Ec, 2) int32
    ez: jax.Array  # (Ec, d-1) int32
    eh: jax.Array  # (Ec, 2) uint64
    ne: jax.Array  # () int32
    # d = 2 only (zero rows otherwise): each edge's two cells are ``eh ± em`` (``em = r[ez]`` unless a
    # later hyperplane's cut runs along the edge: then its multiplier is added, and ``ez2`` names it).
    em: jax.Array  # (Ec or 0, 2) uint64
    ez2: jax.Array  # (Ec or 0,) int32


def hash_table(num_hyperplanes: int, seed: int = 0) -> np.ndarray:
    """Random odd multipliers ``r (num_hyperplanes, 2) uint64`` for the linear sign-vector hashes."""
    rng = np.random.default_rng(0x5EED + seed)
    r = rng.integers(0, np.iinfo(np.uint64).max, size=(num_hyperplanes, 2), dtype=np.uint64, endpoint=True)
    return r | np.uint64(1)


def _signed(r: jax.Array, s: jax.Array) -> jax.Array:
    """``s * r (mod 2^64)`` for ``s`` in {-1, 0, 1}; ``r (..., 2) uint64``, ``s (...)``."""
    s = s[..., None]
    zero = jnp.zeros_like(r)
    return jnp.where(s > 0, r, jnp.where(s < 0, zero - r, zero))


def init_box(lo: np.ndarray, hi: np.ndarray, r: np.ndarray, cap: Capacity, dtype) -> State:
    """The box ``[lo, hi]`` as a complex: ``2^d`` corners, ``d 2^(d-1)`` edges, padded to ``cap``."""
    d = lo.shape[0]
    corners = np.array(np.meshgrid(*[[0, 1]] * d, indexing="ij")).reshape(d, -1).T  # (2^d, d) bits
    x = np.where(corners == 1, hi, lo)
    vz = 2 * np.arange(d) + corners
    ends, ez = [], []
    for c, bits in enumerate(corners):
        for i in range(d):
            if bits[i] == 0:
                other = bits.copy()
                other[i] = 1
                ends.append((c, int(np.ravel_multi_index(other, (2,) * d))))
                ez.append([2 * k + bits[k] for k in range(d) if k != i])
    ends = np.asarray(ends, np.int32).reshape(-1, 2)
    ez = np.asarray(ez, np.int32).reshape(len(ends), d - 1)
    # Facets not containing the edge are on their positive (inside) side.
    on = np.zeros((len(ends), 2 * d), bool)
    for k in range(d - 1):
        on[np.arange(len(ends)), ez[:, k]] = True
    eh = np.zeros((len(ends), 2), np.uint64)
    for f in range(2 * d):
        eh = np.where(on[:, f : f + 1], eh, eh + r[f])
    nv, ne = len(x), len(ends)

    def pad(a, rows, fill):
        out = np.full((rows,) + a.shape[1:], fill, a.dtype)
        out[: len(a)] = a
        return out

    vz_full = np.full((len(x), cap.zero_slots), -1, np.int32)
    vz_full[:, :d] = vz
    rows2 = cap.edges if d == 2 else 0
    em = r[ez[:, 0]] if d == 2 else np.zeros((0, 2), np.uint64)
    return State(
        x=jnp.asarray(pad(x.astype(dtype), cap.vertices, 0)),
        vz=jnp.asarray(pad(vz_full, cap.vertices, -1)),
        nv=jnp.asarray(nv, jnp.int32),
        ends=jnp.asarray(pad(ends, cap.edges, 0)),
        ez=jnp.asarray(pad(ez, cap.edges, -1)),
        eh=jnp.asarray(pad(eh, cap.edges, 0)),
        ne=jnp.asarray(ne, jnp.int32),
        em=jnp.asarray(pad(em, rows2, 0)),
        ez2=jnp.asarray(np.full((rows2,), -1, np.int32)),
    )


@functools.partial(jax.jit, static_argnames=("cap",))
def grow(state: State, vals: jax.Array, cap: Capacity) -> tuple[State, jax.Array]:
    """Copy ``state`` (and the stage's ``vals``) into arrays of the larger capacity ``cap`` (one pass
    per array, compiled: padding eagerly costs a fill and a copy, several times slower on large states)."""

    def pad(a, rows, fill, cols=None):
        widths = [(0, rows - a.shape[0])] + ([(0, cols - a.shape[1])] if cols is not None else
                                             [(0, 0)] * (a.ndim - 1))
        return jnp.pad(a, widths, constant_values=np.array(fill, a.dtype))

    new = State(
        x=pad(state.x, cap.vertices, 0),
        vz=pad(state.vz, cap.vertices, -1, cap.zero_slots),
        nv=state.nv,
        ends=pad(state.ends, cap.edges, 0),
        ez=pad(state.ez, cap.edges, -1),
        eh=pad(state.eh, cap.edges, 0),
        ne=state.ne,
        em=pad(state.em, cap.edges, 0) if state.em.shape[0] else state.em,
        ez2=pad(state.ez2, cap.edges, -1) if state.ez2.shape[0] else state.ez2,
    )
    return new, pad(vals, cap.vertices, 0)


# ----------------------------------------------------------------------------------------------------
# Grouping by sorted keys
# ----------------------------------------------------------------------------------------------------


def _pair_by_hash(keys: tuple[jax.Array, ...], valid: jax.Array, *, max_rounds: int = 8):
    """Match entries with equal keys in pairs, with scatter-add hash tables instead of a sort.

    Entries with equal keys always fall in the same slot, so a slot holding exactly two entries whose
    keys agree is a complete group of two; a slot with one entry, or two that disagree, holds a
    singleton. Crowded slots (three or more entries) retry with other key bits; what is still crowded
    after ``max_rounds`` is a group larger than two.

    Args:
      keys: arrays ``(M,)`` (uint64 or int32) that together form the key; valid: ``(M,)`` bool.
    Returns:
      ``partner (M,) int32`` — the other entry of the pair, ``-1`` if none — and ``bad``: some valid
      entry is not in a group of exactly two.
    """
    m = valid.shape[0]
    table = max(64, 1 << int(np.ceil(np.log2(2 * m))))
    idx = jnp.arange(m, dtype=jnp.int32)
    mixed = [k.astype(jnp.uint64) * np.uint64(0x9E3779B97F4A7C15 + 2 * i) for i, k in enumerate(keys)]

    def slot_of(r):
        h = mixed[0] >> (r.astype(jnp.uint64) * np.uint64(5))
        for k in mixed[1:]:
            h = h ^ (k >> (np.uint64(7) + r.astype(jnp.uint64) * np.uint64(3)))
        h = h ^ (mixed[0] << (r.astype(jnp.uint64) * np.uint64(3) + np.uint64(17)))
        return (h & np.uint64(table - 1)).astype(jnp.int32)

    def body(c):
        r, active, partner, bad = c
        slot = jnp.where(active, slot_of(r), table)
        count = jnp.zeros(table, jnp.int32).at[slot].add(1, mode="drop")
        total = jnp.zeros(table, jnp.int32).at[slot].add(idx, mode="drop")
        cnt = count[jnp.minimum(slot, table - 1)]
        other = total[jnp.minimum(slot, table - 1)] - idx
        same = jnp.ones_like(active)
        for k in keys:
            same = same & (k == k[jnp.clip(other, 0, m - 1)])
        pair = active & (cnt == 2) & same
        single = active & ((cnt == 1) | ((cnt == 2) & ~same))
        return (r + 1, active & (cnt > 2), jnp.where(pair, other, partner), bad | jnp.any(single))

    def cond(c):
        return (c[0] < max_rounds) & jnp.any(c[1])

    init = (jnp.int32(0), valid, jnp.full(m, -1, jnp.int32), jnp.bool_(False))
    _, active, partner, bad = jax.lax.while_loop(cond, body, init)
    return partner, bad | jnp.any(active)


def _compact(mask: jax.Array, size: int) -> tuple[jax.Array, jax.Array]:
    """Indices of the ``True`` entries of ``mask``, in order, padded to ``size``; and their validity.

    A prefix sum and one scatter (faster on CPU than ``jnp.nonzero``); entries past ``size`` are dropped
    (the caller checks the count against the capacity).
    """
    pos = jnp.cumsum(mask, dtype=jnp.int32) - 1
    tgt = jnp.where(mask, pos, size)
    idx = jnp.zeros(size, jnp.int32).at[tgt].set(jnp.arange(mask.shape[0], dtype=jnp.int32), mode="drop")
    count = pos[-1] + 1
    return idx, jnp.arange(size) < count


# ----------------------------------------------------------------------------------------------------
# Packed sign masks (one stage)
# ----------------------------------------------------------------------------------------------------
#
# Inside a stage the step for column ``j`` needs, for every edge, its endpoints' signs for ``j``. Instead
# of gathering the signs of both endpoints over all edges at every step, the signs of every vertex for
# all ``W`` columns are packed into bit words once per stage (``pos``/``neg``: ``(nw, Vc) uint32``,
# ``nw = ceil(W / 32)``), and every edge carries a 3-bit code per column (``(3, nw, Ec) uint32``):
#
#   (P, N, X) = (1, 0, 0) both endpoints +        (0, 1, 0) both -        (0, 0, 0) both zero
#               (1, 0, 1) one zero, the other +   (0, 1, 1) one zero, the other -
#               (1, 1, 0) split, first endpoint + (1, 1, 1) split, first endpoint -
#
# so a step reads one bit of three words per edge. Codes are kept current where edges change (split
# halves, new face edges), from the endpoints' words (new vertices: from their interpolated values).
# The tolerance of column ``k`` is ``rtol * max_valid |vals[:, k]|`` (at least the round-off bound of its
# values: :func:`tolerances`); the maxima are kept exactly (new
# rows are folded in as they are written) and the masks are rebuilt if the maximum of the column about to
# be processed ever differs from the one the masks were built with, so every sign equals the per-step
# rule's.

_BITS = np.uint32(1) << np.arange(32, dtype=np.uint32)


def _pack_signs(vals: jax.Array, valid: jax.Array, tol: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Strict signs of ``vals (n, W)`` against ``tol (W,)`` as bit words ``pos, neg (nw, n) uint32``."""
    n, w = vals.shape
    nw = -(-w // 32)

    def pack(bits):
        bits = jnp.pad(bits, ((0, 0), (0, nw * 32 - w))).reshape(n, nw, 32)
        words = jnp.sum(jnp.where(bits, _BITS, np.uint32(0)), axis=2, dtype=jnp.uint32)
        return words.T

    valid = valid[:, None]
    return pack(valid & (vals > tol)), pack(valid & (vals < -tol))


def _edge_codes(pa, na, pb, nb):
    """The ``(P, N, X)`` code words of edges whose endpoints have sign words ``(pa, na)``, ``(pb, nb)``."""
    cut = (pa & nb) | (na & pb)
    one_zero = ~(pa | na) ^ ~(pb | nb)
    return (pa | pb | cut), (na | nb | cut), ((cut & na) | one_zero)


def _build_masks(state: State, vals: jax.Array, tol: jax.Array, nv):
    """Sign words of the vertices (rows below ``nv``) and codes of all edge rows."""
    vpos, vneg = _pack_signs(vals, jnp.arange(vals.shape[0]) < nv, tol)
    a, b = state.ends[:, 0], state.ends[:, 1]
    codes = _edge_codes(vpos[:, a], vneg[:, a], vpos[:, b], vneg[:, b])
    return vpos, vneg, jnp.stack(codes)


def _pack_bits(mask: jax.Array) -> jax.Array:
    """``mask (n, ...) bool`` as words ``(ceil(n / 32), ...) uint32``: bit ``k`` of word ``w`` is
    ``mask[32 w + k]`` (several masks side by side are packed in one pass)."""
    n = mask.shape[0]
    nw = -(-n // 32)
    pad = [(0, nw * 32 - n)] + [(0, 0)] * (mask.ndim - 1)
    bits = jnp.pad(mask, pad).reshape((nw, 32) + mask.shape[1:])
    weights = _BITS.reshape((1, 32) + (1,) * (mask.ndim - 1))
    return jnp.sum(jnp.where(bits, weights, np.uint32(0)), axis=1, dtype=jnp.uint32)


def _unpack_bits(words: jax.Array, n: int) -> jax.Array:
    """Inverse of :func:`_pack_bits`: ``(n,) bool``."""
    return ((words[:, None] & _BITS[None, :]) != 0).reshape(-1)[:n]


def _compact_bits(words: jax.Array, size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`_compact` of a bit-packed mask (see :func:`_pack_bits`), with its count.

    Prefix sums over words instead of entries, then the words holding set bits (at most ``size`` of them
    matter) hand out their bits in rounds, lowest first: as many rounds as the most bits in one word.
    """
    cnt = jax.lax.population_count(words).astype(jnp.int32)
    incl = jnp.cumsum(cnt, dtype=jnp.int32)
    count = incl[-1]
    base = incl - cnt
    nwsize = min(size, words.shape[0])
    widx, wvalid = _compact(cnt > 0, nwsize)
    rem = jnp.where(wvalid, words[widx], np.uint32(0))
    wbase = base[widx]
    out = jnp.zeros(size, jnp.int32)

    def cond(c):
        return jnp.any(c[1] != 0)

    def body(c):
        r, rem, out = c
        low = rem & (np.uint32(0) - rem)
        bitpos = jax.lax.population_count(low - np.uint32(1)).astype(jnp.int32)
        tgt = jnp.where(rem != 0, wbase + r, size)
        out = out.at[tgt].set(widx * 32 + bitpos, mode="drop")
        return r + 1, rem & (rem - np.uint32(1)), out

    _, _, out = jax.lax.while_loop(cond, body, (jnp.int32(0), rem, out))
    return out, jnp.arange(size) < count, count


# ----------------------------------------------------------------------------------------------------
# One hyperplane
# ----------------------------------------------------------------------------------------------------


def _face_keys(eh: jax.Array, ez: jax.Array, rk: jax.Array, num_facets: int):
    """Keys of the 2-faces around edges: flip each of the ``d-1`` zeros to ``±``.

    Args:
      eh: ``(K, 2) uint64`` edge hashes; ez: ``(K, d-1) int32`` edge zero sets; rk: ``(K, d-1, 2)
      uint64`` the multiplier each flip adds (``r[ez]``; in 2D the edge's own ``em``).
    Returns:
      ``keys (K, d-1, 2, 2) uint64`` (edge, zero slot, sign ±, hash word) and ``ok (K, d-1, 2)``:
      false where the flip would leave the box (a facet flipped to its outside).
    """
    plus = eh[:, None, :] + rk
    minus = eh[:, None, :] - rk
    keys = jnp.stack([plus, minus], axis=2)
    is_facet = ez < num_facets
    ok = jnp.stack([jnp.ones_like(is_facet), ~is_facet], axis=2)
    return keys, ok


def _cut_along_edges(zero_v, pv, far, far_partner, first, n0: int, ok_h, any_zero):
    """Where a 2D hyperplane's cut runs when it vanishes on edges (and possibly on whole cells).

    The cut is the boundary of ``{z > 0}``: a neuron is active where its pre-activation is positive, so
    a cell on which ``z`` vanishes identically (a zero bias with all inputs off) counts as negative.
    Every (cell, vertex on h) pair of the grouping holds the far signs of the cell's two edges at the
    vertex (0 for an edge in h): the cell is positive if one is ``+``, negative if one is ``-`` or both
    are 0, and cut at the vertex if they are ``+`` and ``-``.

    Args:
      zero_v: ``(Vc,) bool`` vertices on h; pv, far, far_partner, first: the grouping's entries (vertex,
        far sign, the partner's far sign, first of its pair); entries ``n0:`` are those of the edges in
        h, ``(Hc, 2 ends, 2 cells)`` with validity ``ok_h``.
    Returns:
      ``on_h (Vc,)``: vertices the cut passes through (the others are strictly inside ``{z > 0}`` or
      ``{z <= 0}``); ``sign (Hc,) int8`` of each edge in h (0: the cut runs along it); ``cut (Hc,)
      int8``: for those, h's sign on the cell ``eh + em`` (else 0).
    """
    pair = first
    pos = pair & ((far > 0) | (far_partner > 0))
    neg = pair & ((far < 0) | (far_partner < 0) | ((far == 0) & (far_partner == 0)))

    def mark(_):
        Vc = zero_v.shape[0]
        tgt = jnp.where(pair, pv, Vc)
        has_pos = jnp.zeros(Vc, bool).at[jnp.where(pos, tgt, Vc)].set(True, mode="drop")
        has_neg = jnp.zeros(Vc, bool).at[jnp.where(neg, tgt, Vc)].set(True, mode="drop")
        return zero_v & has_pos & has_neg

    on_h = jax.lax.cond(any_zero, mark, lambda _: zero_v, None)
    cell = jnp.where(far_partner[n0:] != 0, far_partner[n0:], -1).reshape(ok_h.shape)[:, 0]  # end 0
    ok0 = ok_h[:, 0]
    sp = jnp.where(ok0[:, 0], cell[:, 0], cell[:, 1])
    sm = jnp.where(ok0[:, 1], cell[:, 1], cell[:, 0])
    along = sp != sm
    return on_h, jnp.where(along, 0, sp).astype(jnp.int8), jnp.where(along, sp, 0).astype(jnp.int8)


def tolerances(scales: jax.Array, noise: jax.Array, rtol: float) -> jax.Array:
    """``(W,)`` the tolerance rule of each column: ``rtol`` times its scale (largest ``|value|`` over the
    vertices), and at least ``noise``, the largest bound on its values' round-off (a hyperplane whose
    values at the vertices all lie below it vanishes on the box and cuts nothing)."""
    return jnp.maximum(rtol * scales, noise)


def column_maxima(values: jax.Array, valid: jax.Array) -> jax.Array:
    """``(W,)`` each column's largest ``|value|`` over the rows of ``values (n, W)`` where ``valid (n,)``:
    the scales that set a stage's tolerances (0 for a column with no valid row)."""
    return jnp.max(jnp.where(valid[:, None], jnp.abs(values), jnp.zeros_like(values)), axis=0)


def _split_values(vals, p, q, t, okv, tgt_v, j, tols, count):
    """Write the split points' rows of ``vals (Vc, W)``: interpolated between the endpoints ``p, q``
    ``(S,)`` at ``t (S, 1)``, column ``j`` exactly 0, at rows ``tgt_v`` where ``okv``.

    Only the first ``count`` of the ``S`` split slots are valid, so the rows are done in chunks up to
    ``count``: on a wide stage a pass over all ``S x W`` slots on every step cost more than the rest of
    the step. Returns ``(vals, pos, neg, new_max)``: the split points' sign words ``(nw, S) uint32``
    (see :func:`_pack_signs`; zero past ``count``) and their largest ``|value|`` per column ``(W,)``.
    """
    S = p.shape[0]
    Vc, W = vals.shape
    nw = -(-W // 32)
    C = min(S & -S, 128)

    def chunk(c):
        i, vals, pos, neg, mx = c
        o = i * C
        pr, qr, tr = (jax.lax.dynamic_slice_in_dim(a, o, C) for a in (p, q, t))
        sel = jax.lax.dynamic_slice_in_dim(okv, o, C)
        vm = vals[pr] + tr * (vals[qr] - vals[pr])
        vm = vm.at[:, j].set(0.0)
        vals = vals.at[jnp.where(sel, jax.lax.dynamic_slice_in_dim(tgt_v, o, C), Vc)].set(vm, mode="drop")
        mp, mn = _pack_signs(vm, sel, tols)
        pos = jax.lax.dynamic_update_slice_in_dim(pos, mp, o, axis=1)
        neg = jax.lax.dynamic_update_slice_in_dim(neg, mn, o, axis=1)
        mx = jnp.maximum(mx, column_maxima(vm, sel))
        return i + 1, vals, pos, neg, mx

    words = jnp.zeros((nw, S), jnp.uint32)
    init = (jnp.int32(0), vals, words, words, jnp.zeros((W,), vals.dtype))
    n = (jnp.minimum(count, S) + C - 1) // C
    _, vals, pos, neg, mx = jax.lax.while_loop(lambda c: c[0] < n, chunk, init)
    return vals, pos, neg, mx


def _hyperplane_step(carry, j, *, r, hid0, num_facets, cap: Capacity, rtol, noise):
    """Cut the complex with hyperplane column ``j`` of ``vals``. See the module docstring."""
    state, vals, flags, failed_at, skipped, (vpos, vneg, codes, scales, scales_used, nvs) = carry
    d = state.x.shape[1]
    Vc, Ec = cap.vertices, cap.edges
    hid = hid0 + j
    rh = r[hid]
    vrow = jnp.arange(Vc) < state.nv
    erow = jnp.arange(Ec) < state.ne

    scale = scales[j]  # max over the valid vertices of |v| (kept exactly as rows are added)
    tols = tolerances(scales_used, noise, rtol)  # the masks' (``run_stage`` ensures ``scales_used[j] == scale``)
    wj = j // 32
    sh = (j % 32).astype(jnp.uint32)

    def bit(w):
        return ((w >> sh) & np.uint32(1)).astype(bool)

    cP, cN, cX = bit(codes[0, wj]), bit(codes[1, wj]), bit(codes[2, wj])
    zero_w = _pack_bits(vrow & ~bit(vpos[wj] | vneg[wj]))  # vertices on h
    zero_v = _unpack_bits(zero_w, Vc)
    # One pass over the codes packs this column's masks: split edges, edges with one endpoint on h, the
    # edges' signs (split edges: their first endpoint's), edges in h. Everything after reads these words,
    # so every read of the codes comes before their in-place updates (XLA would copy them otherwise).
    masks_w = _pack_bits(erow[:, None] & jnp.stack(
        [cP & cN, cX & (cP != cN), cP & ~(cN & cX), cN & ~(cP & ~cX), ~cP & ~cN], axis=1))
    split_w, one_zero_w, esp_w, esn_w, in_h_w = (masks_w[:, i] for i in range(5))
    sidx, svalid, K = _compact_bits(split_w, cap.splits)
    zidx, zvalid, Zcount = _compact_bits(one_zero_w, cap.zero_edges)
    all_zero = scale <= noise[j]  # the function vanishes on the whole box (up to round-off): it cuts nothing

    # Zero vertices gain this hyperplane in their zero set; they need a free slot.
    # (Only when some vertex is on h: in general position none is, and these are passes over all vertices.)
    zc = cap.zero_slots
    any_zero = jnp.any(zero_w != 0)

    def first_free(vz):
        """``(Vc, zc) bool``: each row's first free slot (none where the row is full)."""
        free = [vz[:, s] < 0 for s in range(zc)]
        firsts, taken = [], jnp.zeros_like(free[0])
        for f in free:
            firsts.append(f & ~taken)
            taken = taken | f
        return jnp.stack(firsts, axis=1), taken

    full_zero = jax.lax.cond(any_zero, lambda vz: jnp.any(zero_v & ~first_free(vz)[1]),
                             lambda vz: jnp.bool_(False), state.vz)

    new_flags = jnp.int32(0)
    new_flags |= jnp.where(K > cap.splits, FLAG_SPLITS, 0)
    new_flags |= jnp.where(Zcount > cap.zero_edges, FLAG_ZERO_EDGES, 0)
    new_flags |= jnp.where(full_zero & ~all_zero, FLAG_ZERO_SLOTS, 0)

    # -- split points ---------------------------------------------------------------------------
    p, q = state.ends[sidx, 0], state.ends[sidx, 1]
    vp, vq = vals[p, j], vals[q, j]
    t = (vp / (vp - vq))[:, None]
    xm = state.x[p] + t * (state.x[q] - state.x[p])
    new_v = state.nv + jnp.arange(cap.splits, dtype=jnp.int32)  # ids of the split points

    eh_old = state.eh
    two_d = d == 2

    def flips(idx):
        """``(n, d-1, 2)`` multipliers of the flips around edges ``idx``."""
        return state.em[idx][:, None, :] if two_d else r[jnp.maximum(state.ez[idx], 0)]

    on_h = zero_v  # the existing vertices that take h in their zero set
    if d > 1:
        # Crossing entries from split edges: every 2-face around a split edge is cut.
        ez_s = state.ez[sidx]
        keys_s, ok_s = _face_keys(eh_old[sidx], ez_s, flips(sidx), num_facets)
        ok_s = ok_s & svalid[:, None, None]
        zs_s = jnp.broadcast_to(ez_s[:, None, None, :], ok_s.shape + (d - 1,))
        # The new edge lies in the 2-face (the edge's zeros minus the flipped one) and in h.
        flipped = jnp.arange(d - 1)[:, None, None] == jnp.arange(d - 1)[None, None, :]  # (slot, 1, zero)
        zs_s = jnp.where(flipped, hid, zs_s)
        ver_s = jnp.broadcast_to(new_v[:, None, None], ok_s.shape)

        # Crossing entries from existing vertices exactly on h: group the faces around each such vertex
        # by (face key, vertex); a face is cut at the vertex iff its two edges there leave on strictly
        # opposite sides.
        z0 = state.ends[zidx, 0]
        za_zero = ~bit(vpos[wj, z0] | vneg[wj, z0])
        pz = jnp.where(za_zero, z0, state.ends[zidx, 1])
        zw, zsh = zidx >> 5, (zidx & 31).astype(jnp.uint32)
        far = jnp.where((esp_w[zw] >> zsh) & np.uint32(1) != 0, 1, -1).astype(jnp.int8)  # the other end
        ez_z = state.ez[zidx]
        keys_z, ok_z = _face_keys(eh_old[zidx], ez_z, flips(zidx), num_facets)
        ok_z = ok_z & zvalid[:, None, None]
        shape_z = ok_z.shape
        k0 = jnp.where(ok_z, keys_z[..., 0], _U64_MAX).reshape(-1)
        k1 = jnp.where(ok_z, keys_z[..., 1], _U64_MAX).reshape(-1)
        pv = jnp.where(ok_z, jnp.broadcast_to(pz[:, None, None], shape_z), jnp.iinfo(jnp.int32).max).reshape(-1)
        farv = jnp.broadcast_to(far[:, None, None], shape_z).reshape(-1)
        zs_z = jnp.broadcast_to(ez_z[:, None, None, :], shape_z + (d - 1,))
        zs_z = jnp.where(flipped, hid, zs_z).reshape(-1, d - 1)
        ok_zf = ok_z.reshape(-1)
        if two_d:
            # Edges lying in h (both ends on it) join the grouping with far sign 0, from both ends: every
            # cell around a vertex on h then has its two edges there. See _cut_along_edges.
            hidx, hvalid, Hcount = _compact_bits(in_h_w, cap.zero_edges)
            new_flags |= jnp.where(Hcount > cap.zero_edges, FLAG_ZERO_EDGES, 0)
            keys_h, ok_h = _face_keys(eh_old[hidx], state.ez[hidx], flips(hidx), num_facets)
            ok_h = jnp.broadcast_to((ok_h[:, 0] & hvalid[:, None])[:, None, :], (cap.zero_edges, 2, 2))
            kh = jnp.broadcast_to(keys_h[:, 0][:, None], (cap.zero_edges, 2, 2, 2))
            vh = jnp.broadcast_to(state.ends[hidx][:, :, None], ok_h.shape)
            k0 = jnp.concatenate([k0, jnp.where(ok_h, kh[..., 0], _U64_MAX).reshape(-1)])
            k1 = jnp.concatenate([k1, jnp.where(ok_h, kh[..., 1], _U64_MAX).reshape(-1)])
            pv = jnp.concatenate([pv, jnp.where(ok_h, vh, jnp.iinfo(jnp.int32).max).reshape(-1)])
            farv = jnp.concatenate([farv, jnp.zeros((ok_h.size,), farv.dtype)])
            zs_z = jnp.concatenate([zs_z, jnp.full((ok_h.size, 1), hid, zs_z.dtype)])
            ok_zf = jnp.concatenate([ok_zf, ok_h.reshape(-1)])
        partner_z, bad_z = _pair_by_hash((k0, k1, pv), ok_zf)
        nz = k0.shape[0]
        first = (partner_z > jnp.arange(nz))
        far_partner = farv[jnp.maximum(partner_z, 0)]
        cross = first & (farv * far_partner < 0)
        keys_zc = jnp.stack([k0, k1], axis=-1)
        ver_z = pv
        if two_d:
            on_h, h_sign, h_cut = _cut_along_edges(zero_v, pv, farv, far_partner, first, nz - ok_h.size,
                                                   ok_h, any_zero)

        # All crossing entries, grouped by face key: each cut face pairs exactly two crossing points.
        all_keys = jnp.concatenate([keys_s.reshape(-1, 2), keys_zc])
        all_ok = jnp.concatenate([ok_s.reshape(-1), cross])
        all_ver = jnp.concatenate([ver_s.reshape(-1), ver_z])
        all_zs = jnp.concatenate([zs_s.reshape(-1, d - 1), zs_z])
        c0 = jnp.where(all_ok, all_keys[:, 0], _U64_MAX)
        c1 = jnp.where(all_ok, all_keys[:, 1], _U64_MAX)
        partner, bad_pair = _pair_by_hash((c0, c1), all_ok)
        num_entries = all_ok.shape[0]
        first2 = partner > jnp.arange(num_entries)
        L = jnp.sum(first2, dtype=jnp.int32)
        lidx, lvalid = _compact(first2, num_entries // 2 + 1)
        e1 = lidx
        e2 = jnp.maximum(partner[lidx], 0)
        new_ends = jnp.stack([all_ver[e1], all_ver[e2]], axis=1)
        new_ez = all_zs[e1]
        new_eh = all_keys[e1]
        cuts = (K > 0) | jnp.any(cross)
        if two_d:  # a cut that only runs along existing edges (next to cells where z vanishes) still cuts
            cuts = cuts | jnp.any(hvalid & (h_cut != 0))
        new_flags |= jnp.where((bad_z | bad_pair) & cuts, FLAG_PAIRING, 0)
    else:
        L = jnp.int32(0)
        cuts = K > 0
    # A hyperplane that cuts no face leaves the complex as it is; its sign on every face is then a
    # function of the other hyperplanes' signs (a duplicate, a box facet, a plane touching a vertex),
    # so it is left out of the hashes. In d >= 3 one that cuts and also contains an edge is unresolved.
    if not two_d:
        new_flags |= jnp.where(jnp.any(in_h_w != 0) & cuts, FLAG_EDGE_IN_HYPERPLANE, 0)

    new_flags |= jnp.where(state.nv + K > Vc, FLAG_VERTICES, 0)
    new_flags |= jnp.where(state.ne + K + L > Ec, FLAG_EDGES, 0)
    ok = (new_flags == 0) & (flags == 0) & ~all_zero & cuts
    touch_only = (new_flags == 0) & (flags == 0) & ~all_zero & ~cuts

    # Masked writes instead of a conditional over the whole state, so every update stays in place: when
    # the step must not apply, every scatter target is out of range (dropped) and the counts stay.
    okv = svalid & ok
    tgt_v = jnp.where(okv, new_v, Vc)
    # Edges: non-split edges take their sign; a split edge (p, q) becomes (p, m) plus a new (m, q).
    es_pos = ok & _unpack_bits(esp_w, Ec)
    es_neg = ok & _unpack_bits(esn_w, Ec)
    em, ez2 = state.em, state.ez2
    if two_d:
        # Edges in h take the sign of their cells; an edge the cut runs along keeps 0 and adds h to the
        # multiplier between its two cells (which differ in h's sign as well).
        tgt_h = jnp.where(hvalid & ok, hidx, Ec)
        es_pos = es_pos.at[tgt_h].set(h_sign > 0, mode="drop")
        es_neg = es_neg.at[tgt_h].set(h_sign < 0, mode="drop")
        tgt_c = jnp.where(hvalid & ok & (h_cut != 0), hidx, Ec)
        em = em.at[tgt_c].set(em[hidx] + _signed(jnp.broadcast_to(rh, (cap.zero_edges, 2)), h_cut), mode="drop")
        ez2 = ez2.at[tgt_c].set(hid, mode="drop")
    eh = state.eh + jnp.where(es_pos[:, None], rh, jnp.where(es_neg[:, None], jnp.zeros_like(rh) - rh,
                                                             jnp.zeros_like(rh)))
    # The far endpoint of a split edge has the sign opposite to p's.
    sw, ssh = sidx >> 5, (sidx & 31).astype(jnp.uint32)
    b_s = jnp.where((esp_w[sw] >> ssh) & np.uint32(1) != 0, -1,
                    jnp.where((esn_w[sw] >> ssh) & np.uint32(1) != 0, 1, 0))
    # The endpoints' sign words: gathered (read before the words' update below; repacking them from the
    # values cost 6 % of a 2D 4x128 extraction).
    ppos, pneg = vpos[:, p], vneg[:, p]
    qpos, qneg = vpos[:, q], vneg[:, q]
    ez_s = state.ez[sidx]
    x = state.x.at[tgt_v].set(xm, mode="drop")
    vals, mpos, mneg, new_max = _split_values(vals, p, q, t, okv, tgt_v, j, tols, jnp.where(ok, K, 0))
    vz_s = jnp.full((cap.splits, cap.zero_slots), -1, jnp.int32)
    vz_s = vz_s.at[:, : d - 1].set(ez_s).at[:, d - 1].set(hid)
    # Existing vertices on h (if any) take it in their first free slot: elementwise, no scatter over Vc.
    mark = jnp.where(ok, on_h, zero_v) if two_d else zero_v  # 2D cut: only the vertices it passes through

    def put_h(vz):
        return jnp.where(mark[:, None] & first_free(vz)[0], hid, vz)

    vz = jax.lax.cond(any_zero & (ok | touch_only), put_h, lambda vz: vz, state.vz)
    vz = vz.at[tgt_v].set(vz_s, mode="drop")
    # (p, m) written as a whole row, so the update reads p and q (ordering their reads before it).
    ends = state.ends.at[jnp.where(okv, sidx, Ec)].set(jnp.stack([p, jnp.where(q < 0, -1, new_v)], axis=1),
                                                       mode="drop")
    tgt_e = jnp.where(okv, state.ne + jnp.arange(cap.splits, dtype=jnp.int32), Ec)
    ends = ends.at[tgt_e].set(jnp.stack([new_v, q], axis=1), mode="drop")
    ez = state.ez.at[tgt_e].set(ez_s, mode="drop")
    if two_d:
        em = em.at[tgt_e].set(state.em[sidx], mode="drop")
        ez2 = ez2.at[tgt_e].set(state.ez2[sidx], mode="drop")
    eh = eh.at[tgt_e].set(eh_old[sidx] + _signed(jnp.broadcast_to(rh, (cap.splits, 2)), b_s), mode="drop")
    # Masks: the split points' sign words, then the codes of the changed and new edges.
    vpos = vpos.at[:, tgt_v].set(mpos, mode="drop")
    vneg = vneg.at[:, tgt_v].set(mneg, mode="drop")
    codes = codes.at[:, :, jnp.where(okv, sidx, Ec)].set(jnp.stack(_edge_codes(ppos, pneg, mpos, mneg)),
                                                           mode="drop")
    codes = codes.at[:, :, tgt_e].set(jnp.stack(_edge_codes(mpos, mneg, qpos, qneg)), mode="drop")
    scales = jnp.maximum(scales, new_max)
    ne = state.ne + jnp.where(ok, K, 0)
    if d > 1:
        tgt_l = jnp.where(lvalid & ok, ne + jnp.arange(lidx.shape[0], dtype=jnp.int32), Ec)
        ends = ends.at[tgt_l].set(new_ends, mode="drop")
        ez = ez.at[tgt_l].set(new_ez, mode="drop")
        eh = eh.at[tgt_l].set(new_eh, mode="drop")
        if two_d:
            em = em.at[tgt_l].set(jnp.broadcast_to(rh, new_eh.shape), mode="drop")
            ez2 = ez2.at[tgt_l].set(-1, mode="drop")
        u, w = new_ends[:, 0], new_ends[:, 1]
        codes_l = jnp.stack(_edge_codes(vpos[:, u], vneg[:, u], vpos[:, w], vneg[:, w]))
        codes = codes.at[:, :, tgt_l].set(codes_l, mode="drop")
    state = State(x, vz, state.nv + jnp.where(ok, K, 0), ends, ez, eh, ne + jnp.where(ok, L, 0), em, ez2)
    fresh_fail = (flags == 0) & (new_flags != 0) & ~all_zero
    failed_at = jnp.where(fresh_fail, j, failed_at)
    flags = jnp.where(flags == 0, jnp.where(all_zero, 0, new_flags), flags)
    skipped = skipped.at[j].set(all_zero | touch_only)
    nvs = nvs.at[j].set(state.nv)
    return state, vals, flags, failed_at, skipped, (vpos, vneg, codes, scales, scales_used, nvs)


@functools.partial(jax.jit, static_argnames=("cap", "num_facets", "rtol", "rebuild_masks"),
                   donate_argnums=(0, 1))
def run_stage(state: State, vals: jax.Array, scales: jax.Array, noise: jax.Array, r: jax.Array, hid0, start, stop,
              *, cap: Capacity, num_facets: int, rtol: float, rebuild_masks: bool = False):
    """Cut the complex with hyperplanes ``start..stop-1`` of a stage, whose values at the vertices are
    the columns of ``vals (Vc, W)`` (internal ids ``hid0 + column``), with ``scales (W,)`` each column's
    largest magnitude over the valid vertices and ``noise (W,)`` the largest bound on their round-off
    (:func:`tolerances`).

    Stops at the first hyperplane that would overflow a capacity or meets an unresolved degeneracy.
    Returns ``(state, vals, flags, failed_at, skipped, scales, counts)``: ``flags`` is 0 on success, else a bit
    set of ``FLAG_*`` with ``failed_at`` the column to resume from after growing (the state is left as
    it was before that column); ``skipped (W,) bool`` marks hyperplanes that cut no face (left out of
    the hashes: the caller zeroes their multipliers); ``scales`` kept current (a resumed call takes
    them back); ``counts (W,) int32`` the number of vertices after each column run (for the caller's
    growth estimate).
    ``rebuild_masks`` (a check for tests) rebuilds the stage's sign masks before every hyperplane
    instead of keeping them current.
    """
    step = functools.partial(_hyperplane_step, r=r, hid0=hid0, num_facets=num_facets, cap=cap, rtol=rtol,
                             noise=noise)

    def same(a, b):
        return (a == b) | (jnp.isnan(a) & jnp.isnan(b))

    def cond(c):
        j, (_, _, flags, _, _, masks) = c
        scales, scales_used = masks[3], masks[4]
        k = jnp.minimum(j, stop - 1)
        return (j < stop) & (flags == 0) & same(scales[k], scales_used[k])

    def body(c):
        j, carry = c
        return j + 1, step(carry, j)

    # The masks hold the signs under the tolerances ``rtol * scales_used``. The inner loop leaves when the
    # next column's maximum has moved since they were built (an interpolated value rounded past the old
    # maximum: rare); the outer loop then rebuilds them and goes on.
    def outer_cond(c):
        j, (_, _, flags, _, _, _) = c
        return (j < stop) & (flags == 0)

    def outer_body(c):
        j, (state, vals, flags, failed_at, skipped, masks) = c
        scales = masks[3]
        masks = (*_build_masks(state, vals, tolerances(scales, noise, rtol), state.nv), scales, scales, masks[5])
        carry = (state, vals, flags, failed_at, skipped, masks)
        if rebuild_masks:
            return body((j, carry))
        return jax.lax.while_loop(cond, body, (j, carry))

    nw = -(-vals.shape[1] // 32)
    masks = (jnp.zeros((nw, cap.vertices), jnp.uint32), jnp.zeros((nw, cap.vertices), jnp.uint32),
             jnp.zeros((3, nw, cap.edges), jnp.uint32), scales, scales, jnp.zeros((vals.shape[1],), jnp.int32))
    skipped = jnp.zeros((vals.shape[1],), bool)
    init = (jnp.int32(start), (state, vals, jnp.int32(0), jnp.int32(stop), skipped, masks))
    _, (state, vals, flags, failed_at, skipped, masks) = jax.lax.while_loop(outer_cond, outer_body, init)
    return state, vals, flags, failed_at, skipped, masks[3], masks[5]
