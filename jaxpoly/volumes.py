"""Exact volumes of convex polytopes given by their vertices, their supporting hyperplanes, and which
vertex lies on which.

A k-dimensional polytope ``P`` with centroid ``c`` is the union of the pyramids from ``c`` over its
facets, so ``vol_k(P) = (1/k) sum_F dist(c, aff F) vol_{k-1}(F)``, down to polygons (the shoelace formula
on their vertices in angular order; segments' lengths in 1D). The faces come from the incidences: a
polytope's vertices on one of its supporting hyperplanes form a face, and every facet of a face is such
a set inside it. A proper face of lower dimension than a facet is found too, but its distance term or
its area is 0, so no rank decision is needed: the face lattice is read off the incidences. The distance
from ``c`` (in ``aff P``) to ``aff F = aff P ∩ {h = 0}`` is ``|grad h . (c - v)| / |grad h|``, ``v`` a
vertex of ``F`` and the gradient projected onto ``aff P``'s directions (orthogonal to the gradients that
cut ``P`` out, kept per face); in coordinates relative to a vertex of each polytope, so that round-off
is relative to the polytope's size.

All of it runs in NumPy on padded blocks (``(C, m, d)`` vertices of ``C`` polytopes with at most ``m``
vertices each), level by level: faces of dimension ``d - k`` are increasing lists of their vertices'
rows, each distinct face of a polytope once, linked to its parents by ``(parent, child, hyperplane)``
triples.
"""

from __future__ import annotations

import numpy as np

__all__ = ["polytope_volumes"]

# Bytes of the (faces, hyperplanes, vertices) incidence block expanded at once.
_BLOCK_BYTES = 1 << 26


def _unique_rows(cell: np.ndarray, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First occurrences ``(u,)`` of the distinct rows of ``cell (n,)`` beside ``lists (n, w)`` (small
    non-negative integers), and each row's index among them ``(n,)``."""
    small = np.int16 if lists.size == 0 or int(lists.max()) < 2**15 else np.int64
    rows = np.ascontiguousarray(np.concatenate([cell.astype(np.int64)[:, None].view(np.uint8),
                                                lists.astype(small).view(np.uint8)], axis=1))
    _, first, inverse = np.unique(rows.view(np.dtype((np.void, rows.shape[1]))).ravel(), return_index=True,
                                  return_inverse=True)
    return first, inverse.ravel()


def _lengths(x: np.ndarray, real: np.ndarray) -> np.ndarray:
    """The length ``(n,)`` of each set of collinear points ``x (n, w, d)`` (rows ``real (n, w)``): the
    distance between the point farthest from the first one and the point farthest from that (0 for a
    single point)."""
    rows = np.arange(len(x))

    def farthest(p):
        dist = np.where(real, np.linalg.norm(x - p[:, None, :], axis=2), -1.0)
        k = np.argmax(dist, axis=1)
        return x[rows, k], dist[rows, k]

    end, _ = farthest(x[:, 0])
    return farthest(end)[1]


def _children(cell: np.ndarray, verts: np.ndarray, incidence: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The proper faces of faces ``verts (n, w)`` of polytopes ``cell (n,)``: their vertices on each
    supporting hyperplane of the polytope, non-empty and not all of them. A face shared by several
    parents (or reached through several hyperplanes) is listed once.

    A face is the increasing list of its vertices' rows in its polytope, padded with ``m`` (which sorts
    after them); ``incidence (C, m, c)`` as in :func:`polytope_volumes`.

    Returns:
      ``cell (n2,)`` and ``verts (n2, w2)`` of the distinct faces, and ``(parent, child, hyperplane)``
      ``(p,)`` each: which face lies in which, cut from it by which hyperplane (one per pair).
    """
    n, w = verts.shape
    m, c = incidence.shape[1:]
    real = verts < m
    total = np.sum(real, axis=1)
    step = max(1, _BLOCK_BYTES // max(1, c * w))
    parents, planes, lists = [np.zeros((0,), np.int64)], [np.zeros((0,), np.int64)], []
    for s in range(0, n, step):  # blocks of faces: (faces, vertices, hyperplanes) stays small
        f = np.arange(s, min(n, s + step))
        on = incidence[cell[f][:, None], np.minimum(verts[f], m - 1)] & real[f][..., None]
        count = np.sum(on, axis=1)
        fi, hi = np.nonzero((count > 0) & (count < total[f][:, None]))
        parents.append(f[fi])
        planes.append(hi)
        lists.append(np.where(on[fi, :, hi], verts[f][fi], m))
    parent, plane = np.concatenate(parents), np.concatenate(planes)
    lists = np.concatenate(lists) if lists else np.zeros((0, w), verts.dtype)
    lists = np.sort(lists, axis=1)  # each child's vertices first, in order
    lists = lists[:, : max(1, int(np.max(np.sum(lists < m, axis=1), initial=1)))]
    first, child = _unique_rows(cell[parent], lists)
    _, keep = np.unique(parent * len(first) + child, return_index=True)
    return cell[parent[first]], lists[first], parent[keep], child[keep], plane[keep]


def polytope_volumes(points: np.ndarray, mask: np.ndarray, normals: np.ndarray, incidence: np.ndarray
                     ) -> np.ndarray:
    """Volumes of convex polytopes from their vertices, supporting hyperplanes and incidences.

    Args:
      points: ``(C, m, d) float`` each polytope's vertices (padding rows ignored).
      mask: ``(C, m) bool`` which rows are vertices.
      normals: ``(C, c, d)``: the normals of ``c`` hyperplanes per polytope that support it (it lies on one
        side of each; any scale). Every facet's hyperplane must be among them; extra ones (touching a
        lower face, or repeating a facet's) change nothing.
      incidence: ``(C, m, c) bool``: vertex ``i`` of polytope ``p`` lies on its ``j``-th hyperplane.

    Returns:
      ``(C,) float64``: the ``d``-dimensional volumes (lengths for ``d = 1``); 0 for a polytope whose
      vertices span less than ``d`` dimensions.
    """
    points = np.asarray(points, np.float64)
    normals = np.asarray(normals, np.float64)
    C, m, d = points.shape
    if C == 0:
        return np.zeros((0,), np.float64)
    # relative to a vertex of each polytope (exact differences for close floats): round-off is then
    # relative to the polytope's size, not to its distance from the origin
    points = points - points[:, :1]
    # levels[k] = (cell, verts, normal-space basis (n, k, d)): the distinct faces of dimension d - k;
    # links[k] = (parent, child, distance from the parent's centroid to the child's hull)
    mask = np.asarray(mask, bool)
    incidence = np.asarray(incidence, bool) & mask[..., None]
    verts = np.sort(np.where(mask, np.arange(m), m), axis=1)  # (C, m): each polytope's vertex rows first
    if d == 1:
        return _lengths(points, mask)
    levels, links = [(np.arange(C), verts, np.zeros((C, 0, d)))], [None]
    for k in range(1, d - 1):  # down to the 2-faces, which are polygons
        pcell, pverts, pbasis = levels[-1]
        cell, fverts, parent, child, plane = _children(pcell, pverts, incidence)
        grad = normals[pcell[parent], plane]
        vertex = points[cell[child], fverts[child, 0]]
        value = np.einsum("pd,pd->p", grad, _centres(points, pcell, pverts, m)[parent] - vertex)
        b = pbasis[parent]
        along = grad - np.einsum("pkd,pk->pd", b, np.einsum("pkd,pd->pk", b, grad))  # in aff(parent)
        size = np.linalg.norm(along, axis=1)
        flat = size <= 1e-12 * np.linalg.norm(grad, axis=1)  # (a face of lower dimension: adds nothing)
        dist = np.where(flat, 0.0, np.abs(value) / np.where(flat, 1.0, size))
        first = np.zeros(len(cell), np.int64)
        first[child[::-1]] = np.arange(len(child))[::-1]  # a pair of each child: its normal space
        unit = along[first] / np.where(flat[first], 1.0, size[first])[:, None]
        levels.append((cell, fverts, np.concatenate([b[first], unit[:, None, :]], axis=1)))
        links.append((parent, child, dist))
    cell, fverts, _ = levels[-1]
    vol = _areas(points, cell, fverts, m)
    # up the levels: vol_j(P) = (1/j) sum over P's faces one level down of dist(c_P, aff F) vol(F),
    # c_P the centroid of P's vertices (inside P, so that the pyramids over its faces tile it)
    for k in range(d - 2, 0, -1):
        parent, child, dist = links[k]
        vol = np.bincount(parent, weights=dist * vol[child], minlength=len(levels[k - 1][0])) / (d - k + 1)
    return vol


def _areas(points: np.ndarray, cell: np.ndarray, verts: np.ndarray, m: int) -> np.ndarray:
    """The areas ``(n,)`` of the convex polygons ``verts (n, w)`` (rows of their polytopes ``cell (n,)``,
    padded with ``m``; 0 for collinear ones): the shoelace formula on the vertices in order of angle
    around the centroid, in an orthonormal frame of the polygon's plane spanned by two of its vertices.
    Polygons with as many vertices are done together, without padding."""
    count = np.sum(verts < m, axis=1)
    out = np.zeros(len(verts), np.float64)
    for k in np.unique(count[count >= 3]):
        sel = np.nonzero(count == k)[0]
        out[sel] = _polygon_areas(points[cell[sel][:, None], verts[sel, :k]])
    return out


def _polygon_areas(y: np.ndarray) -> np.ndarray:
    """:func:`_areas` of the polygons ``y (n, k, d)``, ``k >= 3`` vertices each."""
    y = y - np.mean(y, axis=1, keepdims=True)
    rows = np.arange(len(y))
    norm = np.linalg.norm(y, axis=2)
    big = np.max(norm, axis=1)
    e1 = y[rows, np.argmax(norm, axis=1)] / np.where(big > 0, big, 1.0)[:, None]
    u = np.einsum("nkd,nd->nk", y, e1)
    rest = y - u[..., None] * e1[:, None, :]
    rnorm = np.linalg.norm(rest, axis=2)
    off = np.max(rnorm, axis=1)
    plane = off > 1e-12 * big  # (else the vertices are collinear: area 0)
    e2 = rest[rows, np.argmax(rnorm, axis=1)] / np.where(plane, off, 1.0)[:, None]
    v = np.einsum("nkd,nd->nk", y, e2)
    order = np.argsort(np.arctan2(v, u), axis=1)
    u, v = np.take_along_axis(u, order, axis=1), np.take_along_axis(v, order, axis=1)
    cross = u * np.roll(v, -1, axis=1) - v * np.roll(u, -1, axis=1)
    return np.where(plane, 0.5 * np.sum(cross, axis=1), 0.0)


def _centres(points: np.ndarray, cell: np.ndarray, verts: np.ndarray, m: int) -> np.ndarray:
    """The centroids ``(n, d)`` of the faces ``verts (n, w)`` (rows of their polytopes ``cell (n,)``,
    padded with ``m``)."""
    real = verts < m
    x = points[cell[:, None], np.minimum(verts, m - 1)]
    return np.sum(np.where(real[..., None], x, 0.0), axis=1) / np.maximum(np.sum(real, axis=1), 1)[:, None]
