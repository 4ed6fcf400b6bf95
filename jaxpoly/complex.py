"""``Complex``: the polyhedral complex of a network in a box, and its queries.

Faces are identified by their sign vectors' hashes (see :mod:`jaxpoly.subdivision`): every k-face
around an edge is the edge with ``k - 1`` of its zeros flipped to ``±``, so all counts (the f-vector),
the cells with their vertices, and the level-set polygons come from the edges alone. Each cell is
certified: its witness (the centroid of its vertices) is evaluated through the network and the hash of
the resulting sign vector must equal the cell's key.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpoly.arguments import is_integer
from jaxpoly.bounds import TRANSLATE_INPUT, as_points
from jaxpoly.errors import InvalidArgumentError, InvalidBoundsError, InvalidNetworkError, JaxpolyError, LoadError
from jaxpoly.mesh import Mesh, polygons_to_mesh
from jaxpoly.network import CONSTANT_RTOL, Network, hyperplane_scales
from jaxpoly.pytree import pytree_dataclass
from jaxpoly.regions import region_maps
from jaxpoly.unique import unique_ints, unique_pairs
from jaxpoly.volumes import polytope_volumes

__all__ = ["Complex", "Cells"]


class Cells(NamedTuple):
    """The d-cells (linear regions) of a complex.

    Attributes:
      patterns: ``(R, H') bool`` activation pattern of each cell (``H' = H`` hidden hyperplanes, plus
        the output's sign ``y > 0`` as the last column when the complex has a level set).
      witnesses: ``(R, d)`` a point strictly inside each cell (the centroid of its vertices).
      vertex_ptr: ``(R + 1,)`` and vertex_idx ``(nnz,)``: CSR lists of each cell's vertex indices.
      keys: ``(R, 2) uint64`` sign-vector hashes (sorted), used by :meth:`Complex.region_of`.
    """

    patterns: np.ndarray
    witnesses: np.ndarray
    vertex_ptr: np.ndarray
    vertex_idx: np.ndarray
    keys: np.ndarray

    def __len__(self) -> int:
        return int(self.patterns.shape[0])

    def vertices_of(self, i: int) -> np.ndarray:
        """Indices of cell ``i``'s vertices (``0 <= i < len(cells)``)."""
        n = len(self.vertex_ptr) - 1
        if not is_integer(i) or not 0 <= i < n:
            raise InvalidArgumentError(f"cell index must be an integer in [0, {n}), got {i!r}")
        return self.vertex_idx[self.vertex_ptr[i] : self.vertex_ptr[i + 1]]


def _unique_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of ``keys (n, 2) uint64`` (sorted lexicographically) and the inverse index ``(n,)``.

    Sorts by the first word only and checks that equal first words carry equal second words; only a
    64-bit collision between different faces (rare) pays for the two-word sort.
    """
    order = np.argsort(keys[:, 0], kind="stable")
    sk = keys[order]
    if len(sk) and np.any((sk[1:, 0] == sk[:-1, 0]) & (sk[1:, 1] != sk[:-1, 1])):
        order = np.lexsort((keys[:, 1], keys[:, 0]))
        sk = keys[order]
    new = np.ones(len(sk), bool)
    if len(sk):
        new[1:] = (sk[1:, 0] != sk[:-1, 0]) | (sk[1:, 1] != sk[:-1, 1])
    group = np.cumsum(new) - 1
    inv = np.empty(len(keys), np.int64)
    inv[order] = group
    return sk[new], inv


def _count_faces(eh: np.ndarray, ez: np.ndarray, r: np.ndarray, num_facets: int, nflip: int,
                 flips: np.ndarray | None = None) -> int:
    """Number of distinct faces around the edges with ``nflip`` zeros flipped (see :func:`_flip_keys`).

    Counts the distinct values of each hash word separately with a plain sort of one word (an order of
    magnitude faster, and half the memory, of the row-wise ``argsort`` a unique over both words needs).
    Equal counts mean no 64-bit collision in either word, or collisions in both at once (the odds of a
    wrong pairing in the subdivision); unequal counts reveal a collision and fall back to the exact
    row-wise count.
    """
    counts = []
    for w in range(eh.shape[1]):
        fw = None if flips is None else flips[:, w : w + 1]
        keys, _ = _flip_keys(eh[:, w : w + 1], ez, r[:, w : w + 1], num_facets, nflip, with_edges=False, flips=fw)
        keys = np.sort(keys[:, 0])
        counts.append(int(np.count_nonzero(keys[1:] != keys[:-1])) + int(len(keys) > 0))
        del keys
    if len(set(counts)) == 1:
        return counts[0]
    return len(_unique_keys(_flip_keys(eh, ez, r, num_facets, nflip, flips=flips)[0])[0])


def _flip_keys(eh: np.ndarray, ez: np.ndarray, r: np.ndarray, num_facets: int, nflip: int, *,
               with_edges: bool = True, flips: np.ndarray | None = None):
    """Keys of the faces around each edge with ``nflip`` of its zeros flipped to ``±``.

    Args:
      eh: ``(E, w) uint64`` edge hashes (``w`` words); ez: ``(E, d-1)`` edge zero sets; r: ``(M, w)``
        hash multipliers; flips: in 2D, ``(E, w)`` the multiplier between each edge's two cells (``r[ez]``
        unless a cut runs along the edge; see :attr:`Complex.edge_flip`).
    Returns ``keys (n, w) uint64`` and ``edge (n,)`` the edge each key came from (``None`` without
    ``with_edges``); flips that would leave the box (a facet to its outside) are omitted.
    """
    E, z = ez.shape
    out_k, out_e = [], []
    for slots in itertools.combinations(range(z), nflip):
        for signs in itertools.product((1, -1), repeat=nflip):
            k = eh.copy()
            ok = np.ones(E, bool)
            for s, sign in zip(slots, signs):
                rk = r[ez[:, s]] if flips is None else flips
                k = k + rk if sign > 0 else k - rk
                if sign < 0:
                    ok &= ez[:, s] >= num_facets
            out_k.append(k[ok])
            if with_edges:
                out_e.append(np.nonzero(ok)[0])
    if not out_k:
        return np.zeros((0, eh.shape[1]), np.uint64), np.zeros((0,), np.int64)
    return np.concatenate(out_k), (np.concatenate(out_e) if with_edges else None)


@pytree_dataclass(
    data=("vertices", "edges", "vertex_zeros", "edge_zeros", "edge_hash", "lo", "hi", "net"),
    meta=("has_level_set",),
)
@dataclasses.dataclass(frozen=True, eq=False)
class Complex:
    """The complete polyhedral complex of a network inside a box (result of :func:`jaxpoly.extract`).

    Attributes:
      vertices: ``(V, d)`` positions.
      edges: ``(E, 2) int32`` vertex index pairs.
      vertex_zeros: ``(V, z) int32`` internal ids of the hyperplanes each vertex lies on (``-1`` pads):
        ``0..2d-1`` box facets (``2i``: ``x_i = lo_i``, ``2i+1``: ``x_i = hi_i``), then the ``H``
        network hyperplanes, then the level set (id ``2d + H``). See :attr:`vertex_hyperplanes` and
        :attr:`vertex_facets` for the public views.
      edge_zeros: ``(E, d-1) int32`` the hyperplanes containing each edge (same ids).
      edge_hash: ``(E, 2) uint64`` sign-vector hashes of the edges.
      lo, hi: ``(d,)`` the box.
      net: the network.
      has_level_set: whether the output's zero set was added as the last hyperplane (then
        :meth:`level_set` is its mesh).
    """

    vertices: np.ndarray
    edges: np.ndarray
    vertex_zeros: np.ndarray
    edge_zeros: np.ndarray
    edge_hash: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    net: Network
    has_level_set: bool

    @classmethod
    def from_state(cls, *, net, lo, hi, level_set, x, vz, ends, ez, eh, hash_table, timings, em=None,
                   ez2=None) -> "Complex":
        c = cls(x, ends.astype(np.int32), vz.astype(np.int32), ez.astype(np.int32), eh, lo, hi, net, level_set)
        object.__setattr__(c, "_hash_table", hash_table)
        object.__setattr__(c, "_timings", timings)
        if em is not None and len(em) == len(ends):
            object.__setattr__(c, "_edge_flip", np.asarray(em, np.uint64))
            object.__setattr__(c, "_edge_zeros2", np.asarray(ez2, np.int32))
        return c

    def _pytree_state(self) -> dict:
        """What a copy needs besides the fields (:mod:`jaxpoly.pytree`): the hash multipliers (extraction
        zeroes the rows of hyperplanes that cut no cell), the 2D edge flips, and a complex built from its
        regions (:mod:`jaxpoly.lattice`) its explicit faces and cells. Caches are left out."""
        faces = self._faces
        return {"hash_table": self.hash_table, "edge_flip": getattr(self, "_edge_flip", None),
                "edge_zeros2": getattr(self, "_edge_zeros2", None), "faces": faces,
                "cells": self.regions if faces is not None else None}

    def _set_pytree_state(self, state: dict) -> None:
        for name, key in (("_hash_table", "hash_table"), ("_edge_flip", "edge_flip"), ("_edge_zeros2", "edge_zeros2"),
                          ("_face_data", "faces"), ("_regions", "cells")):
            if state[key] is not None:
                object.__setattr__(self, name, state[key])

    @property
    def edge_flip(self) -> np.ndarray | None:
        """2D only: ``(E, 2) uint64``, the hash multiplier between each edge's two cells (cell keys are
        ``edge_hash ± edge_flip``). It is ``hash_table[edge_zeros[:, 0]]`` except on edges a later
        hyperplane's cut runs along (a neuron that vanishes on a whole cell, e.g. a zero bias with all
        inputs off): both cells then differ in that hyperplane's sign too. ``None`` for ``d != 2``."""
        if self.dim != 2:
            return None
        em = getattr(self, "_edge_flip", None)
        return self.hash_table[self.edge_zeros[:, 0]] if em is None else em

    @property
    def edge_zeros2(self) -> np.ndarray | None:
        """2D only: ``(E,) int32`` the last hyperplane whose cut runs along each edge besides
        ``edge_zeros`` (``-1``: none). ``None`` for ``d != 2``."""
        if self.dim != 2:
            return None
        ez2 = getattr(self, "_edge_zeros2", None)
        return np.full(self.num_edges, -1, np.int32) if ez2 is None else ez2

    @property
    def timings(self) -> dict:
        """Wall times of the extraction, per stage (empty for a loaded complex)."""
        return getattr(self, "_timings", {})

    # -- sizes ---------------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """``d``: the input dimension."""
        return int(self.vertices.shape[1])

    @property
    def num_vertices(self) -> int:
        """``V``: number of vertices (0-faces)."""
        return int(self.vertices.shape[0])

    @property
    def num_edges(self) -> int:
        """``E``: number of edges (1-faces)."""
        return int(self.edges.shape[0])

    @property
    def num_hyperplanes(self) -> int:
        """``H'``: the network's hyperplanes plus the level set if present."""
        return self.net.num_hyperplanes + int(self.has_level_set)

    @property
    def hash_table(self) -> np.ndarray:
        """``(2d + H + 1, 2) uint64`` the random multipliers of the sign-vector hashes."""
        r = getattr(self, "_hash_table", None)
        if r is None:
            from jaxpoly.subdivision import hash_table

            r = hash_table(2 * self.dim + self.net.num_hyperplanes + 1)
            object.__setattr__(self, "_hash_table", r)
        return r

    def _cached(self, name, fn):
        val = self.__dict__.get(name)
        if val is None:
            val = fn()
            object.__setattr__(self, name, val)
        return val

    @property
    def num_regions(self) -> int:
        """Number of d-cells (linear regions) inside the box."""
        return self.f_vector[-1]

    @property
    def f_vector(self) -> tuple[int, ...]:
        """``(f_0, …, f_d)``: the number of faces of each dimension, f_d the d-cells."""
        return self._cached("_f_vector", self._compute_f_vector)

    @property
    def _faces(self) -> dict | None:
        """Explicit face data of a complex built from its regions (:mod:`jaxpoly.lattice`, the engine for
        degenerate input), whose edges need not be simple; ``None`` for edge subdivision's complexes."""
        return self.__dict__.get("_face_data")

    def _compute_f_vector(self) -> tuple[int, ...]:
        if self._faces is not None:
            return tuple(int(n) for n in self._faces["f_vector"])
        d = self.dim
        if d == 1:
            return (self.num_vertices, self.num_edges)
        f = [self.num_vertices, self.num_edges]
        for k in range(2, d + 1):
            f.append(_count_faces(self.edge_hash, self.edge_zeros, self.hash_table, 2 * d, k - 1, self.edge_flip))
        return tuple(f)

    @property
    def euler_characteristic(self) -> int:
        """``sum_k (-1)^k f_k``; 1 for a complex that subdivides a box."""
        return int(sum((-1) ** k * n for k, n in enumerate(self.f_vector)))

    # -- cells ---------------------------------------------------------------------------------------
    @property
    def regions(self) -> Cells:
        """Every d-cell with its activation pattern, witness and vertex list (computed once)."""
        return self._cached("_regions", self._compute_cells)

    def _internal_values(self, x: np.ndarray) -> np.ndarray:
        """Values of the network hyperplanes (and the output, if level set) at points ``(n, d)``, zero
        within their round-off (``> 0`` is :meth:`Network.pattern`)."""
        if not len(x):  # (a forward pass over no rows fails inside JAX's reshapes)
            return np.zeros((0, self.num_hyperplanes))
        with jax.enable_x64(True):
            vals = np.asarray(_hyper_and_output(self.net.astype(np.float64), jnp.asarray(x, jnp.float64)))
        return vals if self.has_level_set else vals[:, :-1]

    def _hash_of_points(self, x: np.ndarray) -> np.ndarray:
        """Sign-vector hashes ``(n, 2)`` of points strictly inside the box (facets count +; a neuron is
        active where its value is ``> 0``, so an exact zero counts as ``-``, as inside a cell where the
        neuron vanishes identically)."""
        return self._hash_of_values(self._internal_values(x))

    def _hash_of_values(self, vals: np.ndarray, block: int = 1 << 14) -> np.ndarray:
        """:meth:`_hash_of_points` from the points' hyperplane values ``(n, H')``."""
        r = self.hash_table
        d = self.dim
        rn = r[2 * d : 2 * d + vals.shape[1]]
        base = np.zeros(2, np.uint64)
        for f in range(2 * d):
            base = base + r[f]
        out = np.empty((len(vals), 2), np.uint64)
        # sum of sign * r_h mod 2^64: -1 as uint64 is 2^64 - 1, so one wrapping uint64 product per
        # block of points (blocks keep the (block, H') sign copy small)
        for i in range(0, len(vals), block):
            s = np.where(vals[i : i + block] > 0, np.uint64(1), np.uint64(np.iinfo(np.uint64).max))
            out[i : i + block] = base + s @ rn
        return out

    def _compute_cells(self) -> Cells:
        if self._faces is not None:  # saved with the complex (see save / load)
            f = self._faces
            return Cells(f["cell_patterns"], f["cell_witnesses"], f["cell_vertex_ptr"], f["cell_vertex_idx"],
                         f["cell_keys"])
        d = self.dim
        if d == 1:
            cell_keys = self.edge_hash.copy()
            edge_of = np.arange(self.num_edges)
        else:
            cell_keys, edge_of = _flip_keys(self.edge_hash, self.edge_zeros, self.hash_table, 2 * d, d - 1,
                                            flips=self.edge_flip)
        keys, inv = _unique_keys(cell_keys)
        R = len(keys)
        pairs = np.concatenate([
            np.stack([inv, self.edges[edge_of, 0]], 1),
            np.stack([inv, self.edges[edge_of, 1]], 1),
        ])
        pairs = unique_pairs(pairs)
        counts = np.bincount(pairs[:, 0], minlength=R)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        idx = pairs[:, 1].astype(np.int32)
        sums = np.stack([np.bincount(pairs[:, 0], weights=self.vertices[idx, i], minlength=R) for i in range(d)],
                        axis=1)
        witnesses = sums / counts[:, None]
        vals = self._internal_values(witnesses)
        got = self._hash_of_values(vals)
        if not np.array_equal(got, keys):
            bad = int(np.sum(np.any(got != keys, axis=1)))
            far = float(np.max(np.abs([self.lo, self.hi])))
            spacing, half = float(np.spacing(far)), float(np.linalg.norm(self.hi - self.lo) / 2)
            if spacing > 1e-12 * half:  # a cell thinner than float64 resolves there has no float64 point inside
                raise InvalidBoundsError(
                    f"{bad} of {R} cells have no float64 point inside them: the box lies far from the origin for "
                    f"its size (coordinates up to {far:.3g}, where float64's spacing is {spacing:.3g}, "
                    f"{spacing / half:.2g} of the box's half-diagonal), and those cells are thinner than that. "
                    f"{TRANSLATE_INPUT}")
            raise JaxpolyError(
                f"internal consistency check failed: {bad} of {R} cells' witnesses do not reproduce the "
                "cell's sign vector. Please report this with the network and box."
            )
        return Cells(vals > 0, witnesses, ptr, idx, keys)

    def region_of(self, x: Any) -> np.ndarray:
        """Index into :attr:`regions` of the cell containing each point ``(n, d) -> (n,)``; ``-1`` for
        points outside the open box. A neuron counts as active where its value is ``> 0``, so a point
        exactly on a boundary gets a cell on the boundary's inactive side (and a point inside a cell
        where a neuron vanishes identically gets that cell). A single point ``(d,)`` gives ``(1,)``; an
        empty batch ``(0, d)`` gives an empty array."""
        x = as_points(x, self.dim, rows=True)
        if not len(x):
            return np.zeros((0,), np.int64)
        keys = self.regions.keys
        h = self._hash_of_points(x)
        inside = np.all((x > self.lo) & (x < self.hi), axis=1)
        pos = np.searchsorted(_as_void(keys), _as_void(h))
        pos = np.minimum(pos, len(keys) - 1)
        found = inside & np.all(keys[pos] == h, axis=1)
        return np.where(found, pos, -1)

    def region_volumes(self) -> np.ndarray:
        """``(R,) float64``: the ``d``-dimensional volume of each cell of :attr:`regions` (areas in 2D,
        lengths in 1D); they sum to the box's volume.

        Exact up to float64 round-off of the vertices (computed once; see :mod:`jaxpoly.volumes`): each
        cell is split into pyramids over its faces, read off which hyperplanes its vertices lie on. A
        vertex counts as on a hyperplane where it was cut by it, or where it lies within ``1e-9`` of the
        cell's diameter from the hyperplane (its map on the cell; ``100 eps`` for a float32 complex); a
        neuron constant on the cell (all its inputs off) bounds nothing there.
        """
        return self._cached("_region_volumes", self._compute_region_volumes)

    def _compute_region_volumes(self) -> np.ndarray:
        counts = np.diff(self.regions.vertex_ptr)
        ids = 2 * self.dim + self.num_hyperplanes  # at most this many candidate hyperplanes per cell
        order = np.argsort(counts, kind="stable")  # blocks of cells with alike vertex counts pad little
        out = np.zeros(len(order), np.float64)
        net = self.net.astype(np.float64)
        scale = np.concatenate([np.ones(2 * self.dim), hyperplane_scales(net, self.has_level_set, xp=np)])
        points, zeros = np.asarray(self.vertices, np.float64), np.asarray(self.vertex_zeros)
        start = 0
        while start < len(order):
            stop = len(order)
            while True:  # as many cells as keep the (cells, vertices, candidates) arrays near 64 MiB
                m = int(counts[order[stop - 1]])
                rows = max(1, (1 << 23) // (m * min(ids, m * self.vertex_zeros.shape[1])))
                if stop - start <= rows:
                    break
                stop = start + rows
            out[order[start:stop]] = self._block_volumes(order[start:stop], m, net, scale, points, zeros)
            start = stop
        return out

    def _block_volumes(self, block: np.ndarray, m: int, net: Network, scale: np.ndarray, points: np.ndarray,
                       zeros: np.ndarray) -> np.ndarray:
        """:meth:`region_volumes` of the cells ``block (B,)``, which have at most ``m`` vertices (``net``
        in float64; ``scale (2d + H',)``: the box facets' 1, then :func:`hyperplane_scales`; ``points``,
        ``zeros``: the vertices in float64 and :attr:`vertex_zeros`, as NumPy arrays)."""
        cells, d = self.regions, self.dim
        ptr, idx = cells.vertex_ptr, cells.vertex_idx
        B = len(block)
        mask = np.arange(m)[None, :] < np.diff(ptr)[block][:, None]
        verts = np.where(mask, idx[np.minimum(ptr[block][:, None] + np.arange(m), len(idx) - 1)], 0)
        x = points[verts]
        # candidate hyperplanes: every id the cell's vertices were cut by, once per cell, padded
        zeros = zeros[verts]
        big = np.iinfo(np.int32).max
        ids = np.sort(np.where(mask[..., None] & (zeros >= 0), zeros, big).reshape(B, -1), axis=1)
        ids[:, 1:][ids[:, 1:] == ids[:, :-1]] = big
        ids = np.sort(ids, axis=1)
        cand = ids[:, : max(1, int(np.max(np.sum(ids < big, axis=1))))]
        valid = cand < big
        cand = np.where(valid, cand, 0)
        # each candidate's affine function on the cell: box facets (2i: x_i - lo_i, 2i+1: hi_i - x_i), then
        # the network's hyperplanes pulled back through the cell's pattern
        maps = region_maps(net, cells.patterns[block], self.has_level_set)
        A, c = maps.hyper_A, maps.hyper_c
        eye = np.repeat(np.eye(d), 2, axis=0) * np.tile([1.0, -1.0], d)[:, None]
        box_c = np.stack([-np.asarray(self.lo, np.float64), np.asarray(self.hi, np.float64)], axis=1).reshape(-1)
        A = np.concatenate([np.broadcast_to(eye, (B, 2 * d, d)), A], axis=1)
        c = np.concatenate([np.broadcast_to(box_c, (B, 2 * d)), c], axis=1)
        rows, offs = np.take_along_axis(A, cand[..., None], axis=1), np.take_along_axis(c, cand, axis=1)
        # a neuron constant on the cell (dead: all its inputs off) bounds nothing, wherever it was cut
        live = np.sum(np.abs(rows), axis=2) > CONSTANT_RTOL * scale[cand]
        norm = np.linalg.norm(rows, axis=2)
        dist = np.abs(np.einsum("bmd,bcd->bmc", x, rows) + offs[:, None, :]) / np.where(live, norm, 1.0)[:, None, :]
        span = np.where(mask[..., None], x, np.nan)
        diam = np.linalg.norm(np.nanmax(span, axis=1) - np.nanmin(span, axis=1), axis=1)
        tol = max(1e-9, 100 * float(np.finfo(self.vertices.dtype).eps)) * diam
        cut = np.zeros(dist.shape, bool)  # (B, m, c): cut there
        for k in range(zeros.shape[2]):
            cut |= zeros[:, :, k, None] == cand[:, None, :]
        incidence = (cut | (dist <= tol[:, None, None])) & mask[..., None] & (valid & live)[:, None, :]
        return polytope_volumes(x, mask, rows, incidence)

    # -- vertex views --------------------------------------------------------------------------------
    @property
    def vertex_facets(self) -> np.ndarray:
        """``(V, 2d) bool``: which box facets each vertex lies on (``2i``: ``lo_i``, ``2i+1``: ``hi_i``)."""
        d = self.dim
        out = np.zeros((self.num_vertices, 2 * d), bool)
        for k in range(self.vertex_zeros.shape[1]):
            z = self.vertex_zeros[:, k]
            sel = (z >= 0) & (z < 2 * d)
            out[np.nonzero(sel)[0], z[sel]] = True
        return out

    @property
    def vertex_hyperplanes(self) -> np.ndarray:
        """``(V, z) int32``: network hyperplanes (``0..H-1``, the level set ``H``) through each vertex,
        ``-1`` padded."""
        d = self.dim
        z = self.vertex_zeros
        out = np.where(z >= 2 * d, z - 2 * d, -1)
        return -np.sort(-out, axis=1)  # valid ids first

    @property
    def vertex_signs(self) -> np.ndarray:
        """``(V, H') int8`` in {-1, 0, +1}: each vertex's sign for every hyperplane (0 on it; a vertex
        where a neuron vanishes without its cut passing through counts as ``-``).

        Computed on demand (``V x H'`` bytes) from positions and the stored zero sets.
        """
        vals = self._internal_values(self.vertices)
        s = np.where(vals > 0, 1, -1).astype(np.int8)
        vh = self.vertex_hyperplanes
        rows = np.nonzero(vh >= 0)
        s[rows[0], vh[rows]] = 0
        return s

    @property
    def level_set_hyperplane(self) -> int:
        """Internal id of the level set."""
        if not self.has_level_set:
            raise JaxpolyError("this complex was extracted with level_set=False")
        return 2 * self.dim + self.net.num_hyperplanes

    # -- level set -----------------------------------------------------------------------------------
    def level_set(self) -> Mesh:
        """The exact zero set of the output as a :class:`~jaxpoly.Mesh` (see :meth:`level_set_mesh`)."""
        return self.level_set_mesh()

    def level_set_mesh(self) -> Mesh:
        """The exact zero set of the output as a :class:`~jaxpoly.Mesh`.

        1D: points; 2D: vertices and segments; 3D: vertices, convex polygons (oriented so the normal
        points where the output increases) and their fan triangulation; d > 3: vertices and edges.

        The level set is the output's cut, by the rule of every hyperplane (a neuron is active where its
        pre-activation is ``> 0``): the boundary between the cells where ``y > 0`` and those where
        ``y <= 0`` (the last column of :attr:`regions`' patterns), i.e. the ``(d-1)``-faces of the complex
        with such a cell on either side, their edges and their vertices. For a generic network that is
        the zero set ``y = 0``. Where ``y`` vanishes on whole regions it is the boundary of ``{y > 0}``
        there: for ``y = relu(z)`` the plane ``z = 0``, for ``y = -relu(z)`` nothing. Zeros that separate
        no such cells are not part of it: a box facet on which ``y`` vanishes (a face with one cell;
        extract in a slightly larger box to get it), a vertex or edge that ``y``'s zero set only touches,
        or the inside of a region where ``y = 0``. Both engines and every dimension follow this rule;
        :meth:`vertex_zeros` still records every hyperplane a vertex lies on.
        """
        d = self.dim
        vid = self._level_set_vertex_ids()
        verts = self.vertices[vid]
        if d == 1:
            return Mesh(verts, np.zeros((0, 2), np.int64))
        emask, polygons = self._level_set_pieces()
        remap = np.full(self.num_vertices, -1, np.int64)
        remap[vid] = np.arange(len(vid))
        segs = remap[self.edges[emask]].reshape(-1, 2)
        if d != 3:
            return Mesh(verts, segs)
        face_of, vertex_of, normals = polygons
        return polygons_to_mesh(verts, face_of, remap[vertex_of], normals, segs)

    def _level_set_vertex_ids(self) -> np.ndarray:
        """Indices (sorted) of the level-set mesh's vertices among the complex's (see :meth:`level_set_mesh`):
        the endpoints of its edges (d >= 2), or the vertices between a cell with ``y > 0`` and one with
        ``y <= 0`` (d = 1)."""
        self.level_set_hyperplane  # (raises for a complex without a level set)
        if self.dim == 1:
            edges = self.edges.astype(np.int64)
            positive = self._internal_values(self.vertices[edges].mean(axis=1))[:, -1] > 0  # each cell's y > 0
            pos, nonpos = np.zeros(self.num_vertices, bool), np.zeros(self.num_vertices, bool)
            pos[edges[positive].ravel()] = True
            nonpos[edges[~positive].ravel()] = True
            return np.nonzero(pos & nonpos)[0]
        emask, _ = self._level_set_pieces()
        return unique_ints(self.edges[emask].astype(np.int64).ravel())

    def _level_set_pieces(self):
        """(cached) ``emask (E,) bool``: the complex's edges in the level set (d >= 2); and in 3D its
        polygons as ``(face_of (k,), vertex_of (k,), normals (F, 3))``: (polygon, vertex index) incidences
        and the direction each polygon faces (``None`` otherwise)."""
        return self._cached("_level_set_cache", self._compute_level_set_pieces)

    def _compute_level_set_pieces(self):
        lid = self.level_set_hyperplane
        d = self.dim
        if self._faces is not None:  # a complex built from its regions lists its level-set faces
            f = self._faces
            emask = np.asarray(f["level_edges"], bool)
            if d != 3:
                return emask, None
            ptr = f["level_face_ptr"]
            face_of = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
            # normals: the output's gradient inside the cell on the face's positive side
            normals = self._output_grads(self.regions.witnesses[f["level_face_cell"]])
            return emask, (face_of, np.asarray(f["level_face_idx"], np.int64), normals)
        if not np.any(self.hash_table[lid]):
            # Edge subdivision left the level set out of the hashes: it cut no cell (y > 0 or y <= 0
            # on each whole cell), so it runs, if anywhere, along existing faces.
            return self._separating_faces()
        emask = np.any(self.edge_zeros == lid, axis=1)
        if d == 2:
            emask |= self.edge_zeros2 == lid
        if d != 3:
            return emask, None
        # 2-faces of the level set: level-set edges with their other zero flipped.
        eid = np.nonzero(emask)[0]
        eh, ez = self.edge_hash[eid], self.edge_zeros[eid]
        other = np.where(ez[:, 0] == lid, ez[:, 1], ez[:, 0])
        r = self.hash_table
        keys = np.concatenate([eh + r[other], eh - r[other]])
        ok = np.concatenate([np.ones(len(other), bool), other >= 2 * d])
        e_of = np.concatenate([eid] * 2)[ok]
        fkeys, inv = _unique_keys(keys[ok])
        pairs = unique_pairs(np.concatenate([np.stack([inv, self.edges[e_of, 0]], 1),
                                             np.stack([inv, self.edges[e_of, 1]], 1)]))
        normals = self._face_normals(self.vertices, pairs, len(fkeys))
        return emask, (pairs[:, 0], pairs[:, 1].astype(np.int64), normals)

    def _separating_faces(self):
        """:meth:`_level_set_pieces` of an edge-subdivision complex whose level set cut no cell: the
        ``(d-1)``-faces between a cell with ``y > 0`` and one with ``y <= 0``, found by flipping the edges'
        zeros (every such face is a face around its edges) and looking both cells up."""
        d = self.dim
        cells = self.regions
        positive = np.asarray(cells.patterns[:, -1], bool)
        sorted_keys = _as_void(cells.keys)
        r = self.hash_table

        def cell_of(k):
            pos = np.minimum(np.searchsorted(sorted_keys, _as_void(k)), len(cells.keys) - 1)
            return np.where(np.all(cells.keys[pos] == k, axis=1), pos, -1)

        keys, edge_of, cell = [], [], []
        for k in range(d - 1):  # the zero the face keeps (its own hyperplane); the others flip
            others = [s for s in range(d - 1) if s != k]
            fk, fe = _flip_keys(self.edge_hash, self.edge_zeros[:, others], r, 2 * d, d - 2)
            h = self.edge_zeros[fe, k]
            inside = h >= 2 * d  # a face on a box facet has a single cell
            fk, fe, h = fk[inside], fe[inside], h[inside]
            flip = self.edge_flip[fe] if d == 2 else r[h]
            a, b = cell_of(fk + flip), cell_of(fk - flip)
            if np.any((a < 0) | (b < 0)):
                raise JaxpolyError("internal consistency check failed: a face of the complex lacks one of its "
                                   "two cells. Please report this with the network and box.")
            sep = positive[a] != positive[b]
            keys.append(fk[sep])
            edge_of.append(fe[sep])
            cell.append(np.where(positive[a], a, b)[sep])
        keys, edge_of, cell = np.concatenate(keys), np.concatenate(edge_of), np.concatenate(cell)
        emask = np.zeros(self.num_edges, bool)
        emask[edge_of] = True
        if d != 3:
            return emask, None
        fkeys, inv = _unique_keys(keys)
        pairs = unique_pairs(np.concatenate([np.stack([inv, self.edges[edge_of, 0]], 1),
                                             np.stack([inv, self.edges[edge_of, 1]], 1)]))
        face_cell = np.zeros(len(fkeys), np.int64)
        face_cell[inv] = cell
        # (the output's gradient in the positive cell: at the face itself y may have a kink)
        normals = self._output_grads(cells.witnesses[face_cell])
        return emask, (pairs[:, 0], pairs[:, 1].astype(np.int64), normals)

    def _face_normals(self, verts: np.ndarray, pairs: np.ndarray, F: int) -> np.ndarray:
        counts = np.bincount(pairs[:, 0], minlength=F)
        cent = np.zeros((F, 3))
        np.add.at(cent, pairs[:, 0], verts[pairs[:, 1]])
        cent /= np.maximum(counts, 1)[:, None]
        return self._output_grads(cent)

    def _output_grads(self, x: np.ndarray) -> np.ndarray:
        with jax.enable_x64(True):
            return np.asarray(_output_grad(self.net.astype(np.float64), jnp.asarray(x, jnp.float64)))

    # -- persistence ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the complex (arrays, box, network) to ``.npz``; read back with :meth:`load`."""
        from jaxpoly.convert.arrays import network_arrays
        from jaxpoly.files import writing

        with writing(path, "a jaxpoly.Complex") as path:
            np.savez_compressed(
                path, vertices=self.vertices, edges=self.edges, vertex_zeros=self.vertex_zeros,
                edge_zeros=self.edge_zeros, edge_hash=self.edge_hash, lo=self.lo, hi=self.hi,
                level_set=np.array(self.has_level_set), hash_table=self.hash_table,
                **{f"net_{k}": v for k, v in network_arrays(self.net).items()},
                **({"edge_flip": self.edge_flip, "edge_zeros2": self.edge_zeros2} if self.dim == 2 else {}),
                **({f"faces_{k}": v for k, v in self._explicit_faces().items()} if self._faces is not None else {}),
            )

    def _explicit_faces(self) -> dict:
        cells = self.regions
        return {**self._faces, "cell_patterns": cells.patterns, "cell_witnesses": cells.witnesses,
                "cell_vertex_ptr": cells.vertex_ptr, "cell_vertex_idx": cells.vertex_idx, "cell_keys": cells.keys}

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Complex":
        """Read a complex written by :meth:`save`."""
        from jaxpoly.convert.arrays import network_from_arrays
        from jaxpoly.files import read_npz

        data = read_npz(path, "jaxpoly.Complex", ("vertices", "edges", "vertex_zeros", "edge_zeros", "edge_hash",
                                                  "lo", "hi", "level_set", "hash_table"))
        where = f"{str(path)!r} is not a valid saved jaxpoly.Complex"
        try:
            net = network_from_arrays({k[4:]: v for k, v in data.items() if k.startswith("net_")}, str(path))
        except InvalidNetworkError as e:
            raise LoadError(f"{where}: its network arrays do not form a network ({e})") from None
        _check_saved(data, net, where)
        c = cls(data["vertices"], data["edges"], data["vertex_zeros"], data["edge_zeros"], data["edge_hash"],
                data["lo"], data["hi"], net, bool(data["level_set"]))
        object.__setattr__(c, "_hash_table", data["hash_table"])
        if "edge_flip" in data:
            object.__setattr__(c, "_edge_flip", data["edge_flip"])
            object.__setattr__(c, "_edge_zeros2", data["edge_zeros2"])
        faces = {k[6:]: v for k, v in data.items() if k.startswith("faces_")}
        if faces:
            object.__setattr__(c, "_face_data", faces)
        return c

    def __repr__(self) -> str:
        return (f"Complex(d={self.dim}, vertices={self.num_vertices}, edges={self.num_edges}, "
                f"has_level_set={self.has_level_set})")


def _check_saved(data: dict, net: Network, where: str) -> None:
    """Raise :class:`LoadError` (``where`` opens the message) unless the arrays of a saved complex fit
    together and its network: shapes, dtypes, indices in range, a finite non-empty box."""
    x, lo, hi = data["vertices"], data["lo"], data["hi"]
    d = net.input_dim
    if x.dtype.kind != "f" or x.ndim != 2 or x.shape[1] != d:
        raise LoadError(f"{where}: vertices {x.shape} ({x.dtype}) must be float (V, d) with d = {d}, its network's "
                        "input dimension")
    V, E = len(x), len(data["edges"])
    M = 2 * d + net.num_hyperplanes + 1  # box facets, hyperplanes, level set
    want = {"edges": ((E, 2), "i"), "vertex_zeros": ((V, None), "i"), "edge_zeros": ((E, max(d - 1, 0)), "i"),
            "edge_hash": ((E, 2), "u"), "hash_table": ((M, 2), "u"), "level_set": ((), "b"),
            "lo": ((d,), "f"), "hi": ((d,), "f")}
    if "edge_flip" in data:
        want.update(edge_flip=((E, 2), "u"), edge_zeros2=((E,), "i"))
    for k, (shape, kind) in want.items():
        a = data.get(k)
        if a is None or a.dtype.kind != kind or a.ndim != len(shape) or any(
                w is not None and n != w for n, w in zip(a.shape, shape)):
            got = "missing" if a is None else f"{a.shape} {a.dtype}"
            raise LoadError(f"{where}: {k} is {got}, expected shape {shape} (None: any) of kind {kind!r}")
    if data["level_set"] and net.output_dim != 1:
        raise LoadError(f"{where}: it has a level set but its network has {net.output_dim} outputs")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
        raise LoadError(f"{where}: its vertices or box are not finite, or the box is empty")
    e = data["edges"]
    ids = [data["vertex_zeros"], data["edge_zeros"]] + ([data["edge_zeros2"]] if "edge_flip" in data else [])
    if (e.size and (e.min() < 0 or e.max() >= V)) or any(z.size and (z.min() < -1 or z.max() >= M) for z in ids):
        raise LoadError(f"{where}: edges must index its {V} vertices and hyperplane ids lie in [-1, {M})")
    from jaxpoly.subdivision import hash_table

    r = data["hash_table"]
    if not np.all(np.all(r == hash_table(M), axis=1) | np.all(r == 0, axis=1)):
        raise LoadError(f"{where}: its hash_table is not the one extract writes (each row jaxpoly's multiplier "
                        "or zero, for a hyperplane that cuts no cell)")


def _as_void(keys: np.ndarray) -> np.ndarray:
    """Rows of ``(n, 2) uint64`` as sortable scalars consistent with lexicographic order."""
    k = np.ascontiguousarray(np.asarray(keys).astype(">u8"))
    return k.view(np.dtype((np.void, 16))).ravel()


@jax.jit
def _hyper_and_output(net: Network, x: jax.Array) -> jax.Array:
    """The hyperplanes' and the first output's values at ``x (n, d)``, zero where within their round-off
    (:meth:`Network.hyperplane_values_and_round_off`), so that ``> 0`` is :meth:`Network.pattern`."""
    v, err = net.hyperplane_values_and_round_off(x, level_set=True)
    return jnp.where(jnp.abs(v) > err, v, 0.0)


@jax.jit
def _output_grad(net: Network, x: jax.Array) -> jax.Array:
    return jax.vmap(jax.grad(lambda p: net(p)[0]))(x)
