"""Exact volumes of convex polytopes given by their vertices and which hyperplanes each vertex lies on.

A k-dimensional polytope ``P`` with centroid ``c`` is the union of the pyramids from ``c`` over its
facets, so ``vol_k(P) = (1/k) sum_F dist(c, aff F) vol_{k-1}(F)``, down to segments (their length).
The facets of ``P`` and of its faces come from the incidences: the vertices of ``P`` on one of its
supporting hyperplanes form a face, and every facet of a face is such a set inside it. A proper face
of lower dimension than a facet is found too, but its recursion reaches single points before
segments and adds nothing, so no rank decision is needed: the face lattice is read off the
incidences, and only the distances and the segments' lengths are floating point.

All of it runs in NumPy on padded blocks (``(C, m, d)`` vertices of ``C`` polytopes with at most ``m``
vertices each), level by level: faces of dimension ``d - k`` are vertex masks ``(n, m)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["polytope_volumes"]

# Bytes of the (faces, hyperplanes, vertices) incidence block expanded at once.
_BLOCK_BYTES = 1 << 26


def _unique_rows(parent: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``(parent, mask)`` pairs: the same face reached through several hyperplanes (a face on
    two coincident hyperplanes, or a vertex where more than ``d`` meet) counts once."""
    packed = np.packbits(masks, axis=1)
    rows = np.concatenate([parent.astype(">i8").view(np.uint8).reshape(-1, 8), packed], axis=1)
    _, first = np.unique(np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))).ravel(),
                         return_index=True)
    first = np.sort(first)
    return parent[first], masks[first]


def _compact(points: np.ndarray, masks: np.ndarray, cell: np.ndarray, least: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """The vertices ``(n, w, d)`` of the sets ``masks (n, m)`` of polytopes ``cell (n,)``, each set's
    first (so that small faces do not carry their polytope's padding), and which are real ``(n, w)``."""
    width = max(int(np.max(np.sum(masks, axis=1), initial=0)), least)
    slots = np.argsort(~masks, axis=1, kind="stable")[:, :width]
    return points[cell[:, None], slots], np.take_along_axis(masks, slots, axis=1)


def _frames(points: np.ndarray, masks: np.ndarray, cell: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    """Centroids ``(n, d)`` and ``j`` principal directions ``(n, j, d)`` (by decreasing spread) of the
    vertex sets ``masks (n, m)`` of polytopes ``cell (n,)``, which span a ``j``-face's directions (an
    SVD of the centred vertices, not an eigen-decomposition of their scatter, whose squared singular
    values would lose thin faces' directions)."""
    x, w = _compact(points, masks, cell, points.shape[2])
    w = w[..., None]
    centre = np.sum(np.where(w, x, 0.0), axis=1) / np.sum(w, axis=1)
    if j == points.shape[2]:  # the polytopes themselves
        return centre, np.broadcast_to(np.eye(j), (len(x), j, j))
    _, _, vt = np.linalg.svd(np.where(w, x - centre[:, None, :], 0.0), full_matrices=False)
    return centre, vt[:, :j]


def _segments(points: np.ndarray, masks: np.ndarray, cell: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A point ``(n, d)``, unit direction ``(n, d)`` and length ``(n,)`` of each set of collinear
    vertices (an endpoint is the vertex farthest from any one, the other the farthest from it; a
    single vertex has length 0)."""
    x, w = _compact(points, masks, cell, 1)
    rows = np.arange(len(x))

    def farthest(p):
        dist = np.where(w, np.linalg.norm(x - p[:, None, :], axis=2), -1.0)
        k = np.argmax(dist, axis=1)
        return x[rows, k], dist[rows, k]

    a, _ = farthest(x[:, 0])
    b, length = farthest(a)
    u = (b - a) / np.where(length > 0, length, 1.0)[:, None]
    return a, u, length


def _children(faces: np.ndarray, cell: np.ndarray, mask: np.ndarray, incidence: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """The proper faces of each face: its vertices on each supporting hyperplane of its polytope,
    non-empty and not all of them. Returns ``(parent (n2,), masks (n2, m))``, in blocks of faces."""
    n, m = mask.shape
    c = incidence.shape[2]
    step = max(1, _BLOCK_BYTES // max(1, c * m))
    parents, masks = [np.zeros((0,), np.int64)], [np.zeros((0, m), bool)]
    for s in range(0, n, step):
        f = faces[s : s + step]
        child = mask[f][:, None, :] & np.swapaxes(incidence[cell[f]], 1, 2)  # (b, c, m)
        count = np.sum(child, axis=2)
        keep = (count > 0) & (count < np.sum(mask[f], axis=1)[:, None])
        fi, hi = np.nonzero(keep)
        parents.append(f[fi])
        masks.append(child[fi, hi])
    return _unique_rows(np.concatenate(parents), np.concatenate(masks))


def polytope_volumes(points: np.ndarray, mask: np.ndarray, incidence: np.ndarray) -> np.ndarray:
    """Volumes of convex polytopes from their vertices and vertex-hyperplane incidences.

    Args:
      points: ``(C, m, d) float`` each polytope's vertices (padding rows ignored).
      mask: ``(C, m) bool`` which rows are vertices.
      incidence: ``(C, m, c) bool``: vertex ``i`` of polytope ``p`` lies on the ``j``-th of ``c``
        hyperplanes that support ``p`` (``p`` on one side of each). Every facet's hyperplane must be
        among them; extra supporting hyperplanes (touching a lower face, or coinciding with a facet's)
        change nothing.

    Returns:
      ``(C,) float64``: the ``d``-dimensional volumes (lengths for ``d = 1``); 0 for a polytope whose
      vertices span less than ``d`` dimensions.
    """
    points = np.asarray(points, np.float64)
    # relative to a vertex of each polytope (exact differences for close floats): round-off is then
    # relative to the polytope's size, not to its distance from the origin
    points = points - points[:, :1]
    C, m, d = points.shape
    if C == 0:
        return np.zeros((0,), np.float64)
    if m <= d:  # (too few vertices for a d-polytope: pad, so that every SVD gives all d directions)
        pad = d + 1 - m
        points = np.pad(points, ((0, 0), (0, pad), (0, 0)))
        mask = np.pad(mask, ((0, 0), (0, pad)))
        incidence = np.pad(incidence, ((0, 0), (0, pad), (0, 0)))
    # levels[k] = (cell, mask, parent): the faces of dimension d - k
    levels = [(np.arange(C), np.asarray(mask, bool), None)]
    for _ in range(1, d):
        cell, fmask, _ = levels[-1]
        parent, cmask = _children(np.arange(len(cell)), cell, fmask, incidence)
        levels.append((cell[parent], cmask, parent))
    cell, fmask, parent = levels[-1]
    anchor, u, vol = _segments(points, fmask, cell)
    # up the levels: vol_j(P) = (1/j) sum over P's faces one level down of dist(c_P, aff F) vol(F),
    # c_P the centroid of P's vertices (inside P, so that the pyramids over its faces tile it)
    basis = u[:, None, :]
    for k in range(d - 1, 0, -1):
        pcell, pmask, pparent = levels[k - 1]
        pcentre, pbasis = _frames(points, pmask, pcell, d - k + 1)
        r = pcentre[parent] - anchor
        dist = np.linalg.norm(r - np.einsum("njd,nj->nd", basis, np.einsum("njd,nd->nj", basis, r)), axis=1)
        vol = np.bincount(parent, weights=dist * vol, minlength=len(pcell)) / (d - k + 1)
        anchor, basis, parent = pcentre, pbasis, pparent
    return vol
