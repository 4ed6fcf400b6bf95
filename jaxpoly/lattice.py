"""The complex of a network from its certified regions: the exact engine for degenerate input.

Edge subdivision (:mod:`jaxpoly.subdivision`) names every face around an edge by flipping the edge's
zeros, which presumes that the edge is simple. Where a hyperplane contains an edge of the complex and
cuts elsewhere (three planes through one line in ``d >= 3``; a neuron that vanishes on whole regions,
as zero biases make it), :func:`jaxpoly.extract` builds the complex here instead:

1. every region, certified, from :func:`jaxpoly.enumerate_regions` (pattern, interior witness, facets);
2. each region as a polytope ``G x <= g`` (its facet rows pulled back through its affine maps) and its
   vertices: the feasible solutions of every ``d``-subset of its rows;
3. vertices merged across regions by their sign vectors, zero within ``1e-12`` of each hyperplane's
   largest value in the box or 64 times the value's round-off there, whichever is larger (the round-off
   of the per-region solves; edge subdivision's ``rtol`` does not apply: this engine computes the exact
   complex in float64), and on a box facet within ``1e-10`` of the box's size (at least 64 eps of its
   coordinates, for a small box far from the origin);
4. each region's face lattice from its vertex-facet incidences (the facets of a face are its maximal
   proper intersections with the polytope's facets); faces are identified across regions by their
   vertex sets, which also gives every face the regions around it.

A face lies on hyperplane ``h`` when the regions around it disagree on ``h``: the cut of a neuron is the
boundary of ``{z > 0}``, the rule of the subdivision, so a neuron that vanishes on a region cuts only
where it meets a region with ``z > 0``. The result is checked: the lattices' 0-faces are exactly the
merged vertices, their 1-faces are pairs, every witness reproduces its pattern, and Euler's relation
holds. A failed check raises :class:`~jaxpoly.DegenerateError`: the regions do not fit together at the
engine's tolerances (relative to the box and to each hyperplane's largest value), as when the box is
far larger than where the network's hyperplanes meet.
"""

from __future__ import annotations

import itertools
import time

import jax.numpy as jnp
import numpy as np

from jaxpoly.complex import Cells, Complex, _unique_keys
from jaxpoly.errors import CapacityError, DegenerateError, JaxpolyError
from jaxpoly.network import Network
from jaxpoly.sizes import pad_rows
from jaxpoly.unique import unique_pairs

__all__ = ["complex_from_regions"]

_CHUNK = 512  # regions per batch of pulled-back rows (one compilation)
_MERGE_RTOL = 1e-12  # vertices' zeros, relative to each hyperplane's largest value (solves' roundoff ~1e-15)
_NOISE_FACTOR = 64  # vertices' zeros: at least this many times their values' round-off
_SYSTEMS = 1 << 18  # d x d systems solved per NumPy batch


def _internal_ids(facet_idx: np.ndarray, d: int) -> np.ndarray:
    """:class:`~jaxpoly.Regions` facet ids -> the complex's internal ids (``2i``: ``x_i = lo_i``,
    ``2i + 1``: ``x_i = hi_i``, then ``2d + h``)."""
    f = np.asarray(facet_idx, np.int64)
    box = -(f + 1)  # 0..d-1: x_i = hi_i; d..2d-1: x_i = lo_i
    return np.where(f >= 0, 2 * d + f, np.where(box < d, 2 * box + 1, 2 * (box - d)))


def _region_rows(net: Network, patterns: np.ndarray, lo, hi, level_set: bool):
    """Every constraint of every region as ``A x = b`` rows by internal id: ``(R, 2d + H', d)``, ``(R, 2d + H')``."""
    from jaxpoly.geometry import _rows64  # (geometry imports complex, as this module does)

    H = net.num_hyperplanes
    patterns = np.asarray(patterns, bool)
    R = len(patterns)
    out_a, out_b = [], []
    for s in range(0, R, _CHUNK):
        n = min(_CHUNK, R - s)
        p = pad_rows(patterns[s : s + n, :H], _CHUNK)
        a, b = _rows64(net, jnp.asarray(p), jnp.asarray(lo), jnp.asarray(hi), level_set)
        out_a.append(np.asarray(a)[:n])
        out_b.append(np.asarray(b)[:n])
    return np.concatenate(out_a), np.concatenate(out_b)


def _polytope_rows(net, regions, lo, hi, level_set, d, scale):
    """Each region's facet rows as a polytope ``G x <= g`` with unit rows.

    Returns ``G (nnz, d)``, ``g (nnz,)``, ``owner (nnz,)`` region, sorted by region (the CSR order of ``regions.facet_idx``); and ``vanish (R, H') bool``: the hyperplane
    functions that vanish identically on each region."""
    R = len(regions)
    ids = _internal_ids(regions.facet_idx, d)
    owner = np.repeat(np.arange(R), np.diff(regions.facet_ptr))
    A, b = _region_rows(net, regions.patterns, lo, hi, level_set)
    a, c = A[owner, ids], b[owner, ids]  # hyperplane: a . x = c
    # neurons that vanish identically on a region (zero row): at most roundoff of the largest row
    An, bn = np.linalg.norm(A[:, 2 * d :], axis=2), np.abs(b[:, 2 * d :])
    big = np.maximum(An.max(axis=0, initial=0.0), 1e-300) * scale + bn.max(axis=0, initial=0.0)
    vanish = An * scale + bn <= 1e-12 * big
    # the side the region is on: box facets inside; hyperplanes by the region's pattern
    net_h = ids - 2 * d
    positive = np.where(ids < 2 * d, ids % 2 == 0, regions.patterns[owner, np.maximum(net_h, 0)])
    sgn = np.where(positive, -1.0, 1.0)  # positive side (a . x - c > 0) as -a . x <= -c
    G, g = sgn[:, None] * a, sgn * c
    norm = np.linalg.norm(G, axis=1)
    if np.any(norm <= 0):
        raise JaxpolyError("internal consistency check failed: a region's facet has a zero normal. Please "
                           "report this with the network and box.")
    return G / norm[:, None], g / norm, owner, vanish


def _candidate_vertices(G, g, owner, R: int, d: int, tol: float):
    """Feasible solutions of every ``d``-subset of each region's rows: ``points (n, d)``, ``region (n,)``."""
    counts = np.bincount(owner, minlength=R)
    ptr = np.concatenate([[0], np.cumsum(counts)])
    pts, own = [], []
    for F in np.unique(counts):
        if F < d:
            continue
        regs = np.nonzero(counts == F)[0]
        combos = np.array(list(itertools.combinations(range(F), d)), np.int64)  # (C, d)
        rows = ptr[regs][:, None] + np.arange(F)[None, :]  # (n, F)
        step = max(1, _SYSTEMS // len(combos))
        for s in range(0, len(regs), step):
            rr = rows[s : s + step]
            Gr, gr = G[rr], g[rr]  # (n, F, d), (n, F)
            M, rhs = Gr[:, combos], gr[:, combos]  # (n, C, d, d), (n, C, d)
            ok = np.abs(np.linalg.det(M)) > 1e-12
            n_idx = np.nonzero(ok)[0]
            if not len(n_idx):
                continue
            X = np.linalg.solve(M[ok], rhs[ok][..., None])[..., 0]  # (k, d)
            slack = np.einsum("kfd,kd->kf", Gr[n_idx], X) - gr[n_idx]
            feasible = np.all(slack <= tol, axis=1)
            pts.append(X[feasible])
            own.append(regs[s : s + step][n_idx[feasible]])
    if not pts:
        return np.zeros((0, d)), np.zeros((0,), np.int64)
    return np.concatenate(pts), np.concatenate(own)


def _hash_of_signs(signs: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``sum_h s_h r_h (mod 2^64)``: ``signs (n, M)`` in {-1, 0, 1} (-1 wraps to ``2^64 - 1``), ``r (M, 2)``."""
    return np.asarray(signs, np.int64).astype(np.uint64) @ r


def _tol_signs(vals: np.ndarray, tol) -> np.ndarray:
    """Signs of ``vals``, 0 within ``tol`` (broadcast over the columns)."""
    return np.where(np.abs(vals) <= tol, 0, np.sign(vals)).astype(np.int8)


def _region_lattice(masks: list[int], full: int, d: int) -> list[set[int]]:
    """The faces of one polytope as vertex bit masks, ``levels[j]`` the ``j``-faces (``j < d``), from the
    vertex sets of its facet rows ``masks`` (``full``: all its vertices)."""
    facets = {m for m in masks if m and m != full}
    levels: list[set[int]] = [set() for _ in range(d)]
    current = {full}
    for j in range(d - 1, -1, -1):
        nxt: set[int] = set()
        for face in current:
            cands = {face & m for m in facets}
            cands.discard(face)
            cands.discard(0)
            # the facets of a face: its maximal proper intersections with the polytope's facets
            nxt.update(c for c in cands if not any(o != c and o & c == c for o in cands))
        levels[j] = nxt
        current = nxt
    return levels


def _faces_of_regions(X, vptr, vidx, G, g, fptr, tol: float, d: int):
    """Every face of dimension ``0..d-1`` as a tuple of global vertex ids, with the regions around it.

    ``X (V, d)``: the vertices; ``vptr, vidx``: CSR vertex lists of the regions; ``G, g`` with ``fptr``:
    the regions' facet rows; a vertex is on a row within ``tol``.
    """
    faces: list[dict[tuple[int, ...], list[int]]] = [dict() for _ in range(d)]
    for reg in range(len(vptr) - 1):
        verts = vidx[vptr[reg] : vptr[reg + 1]]
        rows = slice(fptr[reg], fptr[reg + 1])
        inc = np.abs(X[verts] @ G[rows].T - g[rows]) <= tol  # (k, F) vertex-facet incidence
        k = len(verts)
        weights = [1 << i for i in range(k)]
        masks = [sum(w for w, t in zip(weights, col) if t) for col in inc.T.tolist()]
        full = (1 << k) - 1
        for j, level in enumerate(_region_lattice(masks, full, d)):
            table = faces[j]
            for m in level:
                key = tuple(sorted(int(verts[i]) for i in range(k) if m >> i & 1))
                table.setdefault(key, []).append(reg)
    return faces


def _reduce_bits(face_regions: list[list[int]], packed: np.ndarray, H: int) -> tuple[np.ndarray, np.ndarray]:
    """For faces with the regions around them and per-region bits ``packed (R, ceil(H / 8)) uint8``:
    whether any region has bit ``h``, and whether all do: ``(n, H') bool`` each."""
    lens = np.array([len(x) for x in face_regions], np.int64)
    flat = np.fromiter(itertools.chain.from_iterable(face_regions), np.int64, int(lens.sum()))
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    rows = packed[flat]
    any_ = np.bitwise_or.reduceat(rows, starts, axis=0)
    all_ = np.bitwise_and.reduceat(rows, starts, axis=0)
    return np.unpackbits(any_, axis=1, count=H).astype(bool), np.unpackbits(all_, axis=1, count=H).astype(bool)


def _cut_bits(face_regions: list[list[int]], packed: np.ndarray, H: int) -> tuple[np.ndarray, np.ndarray]:
    """``cut (n, H')``: the regions around each face disagree on ``h`` (the face is on its cut), and
    ``common (n, H')``: the value they share."""
    any_, all_ = _reduce_bits(face_regions, packed, H)
    return any_ & ~all_, all_


def complex_from_regions(net: Network, lo: np.ndarray, hi: np.ndarray, *, level_set: bool,
                         hash_table: np.ndarray, max_vertices: int, reason: str = "", dtype=np.float64) -> Complex:
    """The complete complex of ``net`` in ``[lo, hi]`` from its certified regions (see the module
    docstring), computed in float64 (vertices cast to ``dtype``). ``hash_table (2d + H + 1, 2) uint64``
    sets the sign-vector hashes; more than ``max_vertices`` vertices raise
    :class:`~jaxpoly.CapacityError`; regions that do not fit together at the engine's tolerances raise
    :class:`~jaxpoly.DegenerateError`."""
    from jaxpoly.enumeration import enumerate_regions
    from jaxpoly.geometry import _values_padded

    t0 = time.perf_counter()
    d = lo.shape[0]
    H = net.num_hyperplanes
    Hp = H + int(level_set)
    regions = enumerate_regions(net, (lo, hi), level_set=level_set)
    if not regions.complete:
        raise JaxpolyError("the region enumeration behind this complex stopped early; no complex is returned")
    t_enum = time.perf_counter() - t0
    R = len(regions)
    patterns = np.asarray(regions.patterns, bool)
    net64 = net.astype(np.float64)
    scale = float(max(1.0, np.abs(lo).max(), np.abs(hi).max()))
    tol = _coordinate_tol(lo, hi)

    # -- vertices: per region, merged by sign vector ------------------------------------------------
    G, g, owner, vanish = _polytope_rows(net64, regions, lo, hi, level_set, d, scale)
    pts, reg_of = _candidate_vertices(G, g, owner, R, d, tol)
    vals, noise = _values_padded(net64, pts, level_set, round_off=True)  # (n, H') each
    vscale = np.abs(vals).max(axis=0, initial=0.0)
    # a vertex's zeros: relative to each hyperplane's values in the box, and at least a few times the
    # round-off of its value there (solving for the vertex rounds its coordinates alike)
    vtol = np.maximum(np.maximum(_MERGE_RTOL * vscale, np.finfo(np.float64).tiny), _NOISE_FACTOR * noise)
    box = _box_slacks(pts, lo, hi)
    r = hash_table
    key = _hash_of_signs(np.concatenate([_tol_signs(box, tol), _tol_signs(vals, vtol)], axis=1), r[: 2 * d + Hp])
    ukeys, vid = _unique_keys(key)
    V = len(ukeys)
    if V > max_vertices:
        raise CapacityError(f"the complex has {V:,} vertices, more than max_vertices={max_vertices:,}; raise "
                            "max_vertices if memory allows, shrink the box, or extract a 2D slice")
    first = np.full(V, -1, np.int64)
    first[vid[::-1]] = np.arange(len(vid))[::-1]
    X = pts[first]
    pairs = unique_pairs(np.stack([reg_of, vid], axis=1))  # (region, vertex), sorted by region
    vptr = np.concatenate([[0], np.cumsum(np.bincount(pairs[:, 0], minlength=R))])
    vidx = pairs[:, 1]

    # -- incidences and faces -------------------------------------------------------------------------
    fptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=R))])
    faces = _faces_of_regions(X, vptr, vidx, G, g, fptr, tol, d)
    f = [len(faces[j]) for j in range(d)] + [R]
    bad = sum(1 for key in faces[0] if len(key) != 1)
    if bad or f[0] != V or (d > 1 and any(len(key) != 2 for key in faces[1])):
        _unresolved("the regions' vertex-facet incidences do not form a polyhedral complex", lo, hi, tol)
    if sum((-1) ** k * n for k, n in enumerate(f)) != 1:
        _unresolved(f"the complex from the {R} regions has f-vector {tuple(f)}, whose Euler characteristic is "
                    "not 1 (regions are missing or overlap)", lo, hi, tol)

    packed = np.packbits(patterns, axis=1)
    vfaces = faces[0]
    vkeys = np.array([k[0] for k in vfaces], np.int64)
    vcut, _ = _cut_bits(list(vfaces.values()), packed, Hp)
    # a vertex lies on h where the cut passes through it, or where h is zero without vanishing on a
    # region around it (a hyperplane touching the complex at the vertex)
    vvan, _ = _reduce_bits(list(vfaces.values()), np.packbits(vanish, axis=1), Hp)
    zero_val = np.abs(vals[first[vkeys]]) <= vtol[first[vkeys]]
    cut_v = np.zeros((V, Hp), bool)
    cut_v[vkeys] = vcut | (zero_val & ~vvan)
    cell_of_vertex = np.zeros(V, np.int64)
    cell_of_vertex[vkeys] = [regs[0] for regs in vfaces.values()]
    if d > 1:
        edges = np.array(list(faces[1].keys()), np.int64).reshape(-1, 2)
        ecut, ecommon = _cut_bits(list(faces[1].values()), packed, Hp)
    else:
        edges = np.array([vidx[vptr[i] : vptr[i + 1]] for i in range(R)], np.int64).reshape(-1, 2)
        ecut = np.zeros((R, Hp), bool)
        ecommon = patterns
    on_box_v = np.abs(_box_slacks(X, lo, hi)) <= tol
    vz = _zero_lists(on_box_v, cut_v, d)
    if vz.shape[1] and np.any((vz >= 0).sum(axis=1) < d):
        _unresolved("a vertex of the complex lies on fewer than d hyperplanes", lo, hi, tol)
    on_box_e = on_box_v[edges[:, 0]] & on_box_v[edges[:, 1]]
    ez_all = _zero_lists(on_box_e, ecut, d)
    ez = np.full((len(edges), max(d - 1, 0)), -1, np.int32)
    ez[:, : min(d - 1, ez_all.shape[1])] = ez_all[:, : d - 1]
    signs_e = np.concatenate([~on_box_e, np.where(ecut, 0, np.where(ecommon, 1, -1))], axis=1)
    eh = _hash_of_signs(signs_e, r[: 2 * d + Hp])

    c = Complex(X.astype(dtype), edges.astype(np.int32), vz, ez, eh, lo, hi, net, level_set)
    object.__setattr__(c, "_hash_table", r)

    # -- cells (sorted by key, for region_of) and the level set ------------------------------------------
    wit = np.asarray(regions.witnesses, np.float64)
    wvals = c._internal_values(wit)
    if not np.array_equal(wvals > 0, patterns):
        _unresolved("a region's witness does not have its pattern", lo, hi, tol)
    keys = c._hash_of_values(wvals)
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    if R > 1 and np.any(np.all(keys[order][1:] == keys[order][:-1], axis=1)):
        raise JaxpolyError("two regions share a sign-vector hash (a 128-bit collision); please report this")
    rank = np.empty(R, np.int64)
    rank[order] = np.arange(R)
    cptr = np.concatenate([[0], np.cumsum(np.diff(vptr)[order])])
    cidx = vidx[np.argsort(rank[pairs[:, 0]], kind="stable")].astype(np.int32)  # regions in key order
    cells = Cells(patterns[order], wit[order], cptr, cidx, keys[order])
    level_edges = np.zeros(len(edges), bool)
    lf_ptr, lf_idx, lf_cell = np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64)
    if level_set:
        level_edges = ecut[:, H] if d > 1 else np.zeros(len(edges), bool)
        if d >= 2:
            top = faces[d - 1]
            fcut, _ = _cut_bits(list(top.values()), packed, Hp)
            sel = np.nonzero(fcut[:, H])[0]
            tkeys, tregs = list(top.keys()), list(top.values())
            polys = [tkeys[i] for i in sel]
            lf_ptr = np.concatenate([[0], np.cumsum([len(p) for p in polys])]).astype(np.int64)
            lf_idx = np.array(list(itertools.chain.from_iterable(polys)), np.int32)
            lf_cell = np.array([rank[next(q for q in tregs[i] if patterns[q, H])] for i in sel], np.int64)
    object.__setattr__(c, "_face_data", {
        "f_vector": np.array(f, np.int64), "vertex_cell": rank[cell_of_vertex], "level_edges": level_edges,
        "level_face_ptr": lf_ptr, "level_face_idx": lf_idx, "level_face_cell": lf_cell,
    })
    object.__setattr__(c, "_regions", cells)
    object.__setattr__(c, "_timings", {
        "engine": "regions", "reason": reason, "regions_seconds": t_enum,
        "total_seconds": time.perf_counter() - t0, "stages": [],
    })
    return c


def _coordinate_tol(lo: np.ndarray, hi: np.ndarray) -> float:
    """Distances below which a vertex lies on a facet: ``1e-10`` of the box's size (of its largest
    coordinate where that is smaller, at least 1), but not below the round-off of coordinates as large as
    the box's (``64 eps`` of them): a small box far from the origin is resolved to its own size."""
    far = float(max(np.abs(lo).max(), np.abs(hi).max()))
    size = float(np.max(hi - lo))
    return max(1e-10 * min(max(1.0, far), size), 64 * np.finfo(np.float64).eps * far)


def _unresolved(what: str, lo: np.ndarray, hi: np.ndarray, tol: float) -> None:
    """Raise :class:`~jaxpoly.DegenerateError`: the certified regions do not fit together into a complex."""
    raise DegenerateError(
        f"the regions engine could not assemble a complex from the certified regions: {what}. Its "
        f"tolerances are relative to the box ({tol:.3g} in coordinates here: 1e-10 of its size, at least "
        f"the round-off of its coordinates, up to {max(np.abs(lo).max(), np.abs(hi).max()):g}) and to each "
        "hyperplane's largest value in it, so regions or vertex separations smaller than that are not "
        "resolved, as when the box is far "
        "larger than where the network's hyperplanes meet: extract in a box around them. (If the box is "
        "not large relative to the network's features, please report this with the network and box.)")


def _box_slacks(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(n, 2d)`` distances of points to the box facets by internal id (``2i``: ``x_i - lo_i``, ``2i + 1``:
    ``hi_i - x_i``)."""
    return np.stack([x - lo, hi - x], axis=2).reshape(len(x), -1)


def _zero_lists(on_box: np.ndarray, cut: np.ndarray, d: int) -> np.ndarray:
    """Internal ids of the box facets ``(n, 2d)`` and hyperplanes ``(n, H')`` each face lies on, ``-1`` padded."""
    on = np.concatenate([on_box, cut], axis=1)
    width = int(on.sum(axis=1).max(initial=0))
    out = np.full((len(on), max(width, d)), -1, np.int32)
    rows, cols = np.nonzero(on)
    slot = np.arange(len(rows)) - np.concatenate([[0], np.cumsum(on.sum(axis=1))[:-1]])[rows]
    out[rows, slot] = cols
    return out

