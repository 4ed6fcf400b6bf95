"""Exact volumes of convex polytopes given by their vertices, their supporting hyperplanes, and which
vertex lies on which.

A k-dimensional polytope ``P`` with centroid ``c`` is the union of the pyramids from ``c`` over its
facets, so ``vol_k(P) = (1/k) sum_F dist(c, aff F) vol_{k-1}(F)``, down to segments (their length).
The faces come from the incidences: a polytope's vertices on one of its supporting hyperplanes form a
face, and every facet of a face is such a set inside it. A proper face of lower dimension than a
facet is found too, but its recursion reaches single points before segments and adds nothing, so no
rank decision is needed: the face lattice is read off the incidences. The distance from ``c`` (in
``aff P``) to ``aff F = aff P ∩ {h = 0}`` is ``|grad h . (c - v)| / |grad h|``, ``v`` a vertex of ``F``
and the gradient projected onto ``aff P``'s directions (orthogonal to the gradients that cut ``P`` out,
kept per face); in coordinates relative to a vertex of each polytope, so that round-off is relative to
the polytope's size.

All of it runs in NumPy on padded blocks (``(C, m, d)`` vertices of ``C`` polytopes with at most ``m``
vertices each), level by level: faces of dimension ``d - k`` are vertex masks ``(n, m)``, each
distinct face of a polytope once, linked to its parents by ``(parent, child, hyperplane)`` triples.
"""

from __future__ import annotations

import numpy as np

__all__ = ["polytope_volumes"]

# Bytes of the (faces, hyperplanes, vertices) incidence block expanded at once.
_BLOCK_BYTES = 1 << 26


def _unique_rows(*columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First occurrences ``(u,)`` of the distinct rows of the stacked ``columns`` (``(n,)`` integers or
    ``(n, m)`` bools), and each row's index among them ``(n,)``."""
    parts = [np.packbits(c, axis=1) if c.dtype == bool else c.astype(">i8").view(np.uint8).reshape(-1, 8)
             for c in columns]
    rows = np.ascontiguousarray(np.concatenate(parts, axis=1))
    _, first, inverse = np.unique(rows.view(np.dtype((np.void, rows.shape[1]))).ravel(), return_index=True,
                                  return_inverse=True)
    return first, inverse.ravel()


def _compact(points: np.ndarray, masks: np.ndarray, cell: np.ndarray, least: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """The vertices ``(n, w, d)`` of the sets ``masks (n, m)`` of polytopes ``cell (n,)``, each set's
    first (so that small faces do not carry their polytope's padding), and which are real ``(n, w)``."""
    count = np.sum(masks, axis=1)
    width = max(int(np.max(count, initial=0)), least)
    row, col = np.nonzero(masks)  # row-major: each row's vertices in order
    pos = np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count)
    slots = np.zeros((len(masks), width), np.int64)
    slots[row, pos] = col
    real = np.arange(width) < count[:, None]
    return points[cell[:, None], slots], real


def _centres(points: np.ndarray, masks: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """The centroids ``(n, d)`` of the vertex sets ``masks (n, m)`` of polytopes ``cell (n,)``."""
    row, col = np.nonzero(masks)
    x = points[cell[row], col]
    count = np.bincount(row, minlength=len(masks))[:, None]
    return np.stack([np.bincount(row, weights=x[:, k], minlength=len(masks)) for k in range(x.shape[1])],
                    axis=1) / np.maximum(count, 1)


def _lengths(points: np.ndarray, masks: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """The length ``(n,)`` of each set of collinear vertices: the distance between the vertex farthest
    from any one of them and the vertex farthest from that (0 for a single vertex)."""
    x, w = _compact(points, masks, cell, 1)
    rows = np.arange(len(x))

    def farthest(p):
        dist = np.where(w, np.linalg.norm(x - p[:, None, :], axis=2), -1.0)
        k = np.argmax(dist, axis=1)
        return x[rows, k], dist[rows, k]

    end, _ = farthest(x[:, 0])
    return farthest(end)[1]


def _children(cell: np.ndarray, mask: np.ndarray, incidence: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The proper faces of faces ``mask (n, m)`` of polytopes ``cell (n,)``: their vertices on each
    supporting hyperplane of the polytope, non-empty and not all of them. A face shared by several
    parents (or reached through several hyperplanes) is listed once.

    Returns:
      ``cell (n2,)`` and ``mask (n2, m)`` of the distinct faces, and ``(parent, child, hyperplane)``
      ``(p,)`` each: which face lies in which, cut from it by which hyperplane (one per pair).
    """
    n, m = mask.shape
    c = incidence.shape[2]
    step = max(1, _BLOCK_BYTES // max(1, c * m))
    parents, planes, masks = [np.zeros((0,), np.int64)], [np.zeros((0,), np.int64)], [np.zeros((0, m), bool)]
    for s in range(0, n, step):  # blocks of faces: (faces, hyperplanes, vertices) stays small
        f = np.arange(s, min(n, s + step))
        child = mask[f][:, None, :] & np.swapaxes(incidence[cell[f]], 1, 2)
        count = np.sum(child, axis=2)
        fi, hi = np.nonzero((count > 0) & (count < np.sum(mask[f], axis=1)[:, None]))
        parents.append(f[fi])
        planes.append(hi)
        masks.append(child[fi, hi])
    parent, plane, masks = np.concatenate(parents), np.concatenate(planes), np.concatenate(masks)
    first, child = _unique_rows(cell[parent], masks)
    keep, _ = _unique_rows(parent, child)
    return cell[parent[first]], masks[first], parent[keep], child[keep], plane[keep]


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
    # levels[k] = (cell, mask, normal-space basis (n, k, d)): the distinct faces of dimension d - k;
    # links[k] = (parent, child, distance from the parent's centroid to the child's hull)
    mask = np.asarray(mask, bool)
    levels, links = [(np.arange(C), mask, np.zeros((C, 0, d)))], [None]
    for k in range(1, d):
        pcell, pmask, pbasis = levels[-1]
        cell, fmask, parent, child, plane = _children(pcell, pmask, incidence)
        grad = normals[pcell[parent], plane]
        vertex = points[cell[child], np.argmax(fmask, axis=1)[child]]
        value = np.einsum("pd,pd->p", grad, _centres(points, pmask, pcell)[parent] - vertex)
        b = pbasis[parent]
        along = grad - np.einsum("pkd,pk->pd", b, np.einsum("pkd,pd->pk", b, grad))  # in aff(parent)
        size = np.linalg.norm(along, axis=1)
        flat = size <= 1e-12 * np.linalg.norm(grad, axis=1)  # (a face of lower dimension: adds nothing)
        dist = np.where(flat, 0.0, np.abs(value) / np.where(flat, 1.0, size))
        first = np.zeros(len(cell), np.int64)
        first[child[::-1]] = np.arange(len(child))[::-1]  # a pair of each child: its normal space
        unit = along[first] / np.where(flat[first], 1.0, size[first])[:, None]
        levels.append((cell, fmask, np.concatenate([b[first], unit[:, None, :]], axis=1)))
        links.append((parent, child, dist))
    cell, fmask, _ = levels[-1]
    vol = _lengths(points, fmask, cell)
    # up the levels: vol_j(P) = (1/j) sum over P's faces one level down of dist(c_P, aff F) vol(F),
    # c_P the centroid of P's vertices (inside P, so that the pyramids over its faces tile it)
    for k in range(d - 1, 0, -1):
        parent, child, dist = links[k]
        vol = np.bincount(parent, weights=dist * vol[child], minlength=len(levels[k - 1][0])) / (d - k + 1)
    return vol
