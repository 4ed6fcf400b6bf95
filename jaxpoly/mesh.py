"""``Mesh``: the exact level set of a network as vertices, segments and polygons; file export."""

from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np

from jaxpoly.errors import JaxpolyError, SaveError
from jaxpoly.files import as_path, writing

__all__ = ["Mesh", "polygons_to_mesh"]


@dataclasses.dataclass(frozen=True, eq=False)
class Mesh:
    """A level-set mesh.

    Attributes:
      vertices: ``(n, d)`` positions.
      edges: ``(m, 2)`` vertex index pairs (2D: the curve's segments; 3D: the polygons' edges).
      face_ptr, face_idx: CSR lists of convex polygons (3D only), vertices in counter-clockwise order
        seen from where the output is positive; empty otherwise.
      triangles: ``(t, 3)`` fan triangulation of the polygons (3D only), same orientation.
    """

    vertices: np.ndarray
    edges: np.ndarray
    face_ptr: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(1, np.int64))
    face_idx: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    triangles: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 3), np.int64))

    @property
    def num_vertices(self) -> int:
        """Number of mesh vertices."""
        return int(self.vertices.shape[0])

    @property
    def num_edges(self) -> int:
        """Number of mesh edges (segments in 2D, polygon sides in 3D)."""
        return int(self.edges.shape[0])

    @property
    def num_faces(self) -> int:
        """Number of polygons (0 for a curve)."""
        return int(len(self.face_ptr) - 1)

    def faces(self) -> list[np.ndarray]:
        """The polygons as a list of vertex index arrays."""
        return [self.face_idx[a:b] for a, b in zip(self.face_ptr[:-1], self.face_ptr[1:])]

    def save(self, path: str | os.PathLike, *, triangulate: bool = False) -> None:
        """Write ``.obj``, ``.ply``, ``.vtk`` or ``.vtu`` (through meshio). 3D meshes store polygons (or
        triangles with ``triangulate=True``); 2D curves store line segments, which OBJ cannot hold through
        meshio — use ``.ply`` or ``.vtk`` for them. A mesh without edges (an empty level set, or the points
        of a 1D one) stores its vertices only, in any format (as vertex cells in VTK files). An empty mesh
        gives a file without points: for ``.vtk`` a legacy ASCII one that meshio reads back; meshio cannot
        read back an empty ``.vtu`` (VTK's own readers can)."""
        import meshio

        path = as_path(path, "a mesh", SaveError)
        ext = os.path.splitext(path)[1].lower()
        if ext not in (".obj", ".ply", ".vtk", ".vtu"):
            raise JaxpolyError(f"unsupported mesh format {ext!r}: use .obj, .ply, .vtk or .vtu")
        pts = self.vertices
        if pts.shape[1] < 3:
            pts = np.pad(pts, ((0, 0), (0, 3 - pts.shape[1])))
        elif pts.shape[1] > 3:
            raise JaxpolyError(f"cannot write a {pts.shape[1]}-dimensional mesh to {ext}")
        if self.num_faces:
            cells = [("triangle", self.triangles)] if triangulate else _polygon_blocks(self.face_ptr, self.face_idx)
        elif not self.num_edges:
            # VTK readers need cells: the points as VTK_VERTEX cells (OBJ and PLY store bare vertices)
            cells = [("vertex", np.arange(len(pts))[:, None])] if ext in (".vtk", ".vtu") and len(pts) else []
        else:
            if ext == ".obj":
                raise JaxpolyError("OBJ through meshio cannot hold line segments; save 2D curves as .ply or .vtk")
            cells = [("line", self.edges)]
        if ext == ".vtk" and not len(pts):  # (meshio's binary VTK without points is unreadable by meshio)
            with writing(path, "a mesh") as path, open(path, "w") as fh:
                fh.write("# vtk DataFile Version 4.2\nempty mesh (jaxpoly)\nASCII\nDATASET UNSTRUCTURED_GRID\n"
                         "POINTS 0 double\nCELLS 0 0\nCELL_TYPES 0\n")
            return
        with warnings.catch_warnings(), writing(path, "a mesh") as path:
            warnings.simplefilter("ignore")  # meshio warns that PLY stores 32-bit indices
            meshio.Mesh(pts, [(t, np.asarray(c, np.int32)) for t, c in cells]).write(path)


def _polygon_blocks(ptr: np.ndarray, idx: np.ndarray) -> list[tuple[str, np.ndarray]]:
    sizes = np.diff(ptr)
    blocks = []
    for n in np.unique(sizes):
        rows = np.nonzero(sizes == n)[0]
        cells = idx[ptr[rows][:, None] + np.arange(n)]
        blocks.append(({3: "triangle", 4: "quad"}.get(int(n), "polygon"), cells))
    return blocks


def polygons_to_mesh(vertices: np.ndarray, face_of: np.ndarray, vertex_of: np.ndarray, normals: np.ndarray,
                     edges: np.ndarray) -> Mesh:
    """Convex polygons from unordered (face, vertex) incidences, ordered and oriented.

    Args:
      vertices: ``(n, 3)``; face_of, vertex_of: ``(k,)`` incidences sorted by face; normals: ``(F, 3)``
        the direction each face should face; edges: ``(m, 2)``.
    """
    F = len(normals)
    counts = np.bincount(face_of, minlength=F)
    cent = np.zeros((F, 3))
    np.add.at(cent, face_of, vertices[vertex_of])
    cent /= np.maximum(counts, 1)[:, None]
    n = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)
    # An in-plane basis (u, v) with u x v = n, then sort each face's vertices by angle.
    helper = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    u = np.cross(n, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(n, u)
    rel = vertices[vertex_of] - cent[face_of]
    ang = np.arctan2(np.sum(rel * v[face_of], 1), np.sum(rel * u[face_of], 1))
    order = np.lexsort((ang, face_of))
    idx = vertex_of[order]
    ptr = np.concatenate([[0], np.cumsum(counts)])
    # Fan triangulation from each polygon's first vertex.
    tri_face = np.repeat(np.arange(F), np.maximum(counts - 2, 0))
    local = np.arange(len(tri_face)) - np.repeat(np.cumsum(np.maximum(counts - 2, 0)) - np.maximum(counts - 2, 0),
                                                  np.maximum(counts - 2, 0))
    base = ptr[tri_face]
    tris = np.stack([idx[base], idx[base + local + 1], idx[base + local + 2]], axis=1)
    return Mesh(vertices, edges, ptr.astype(np.int64), idx.astype(np.int64), tris.astype(np.int64))
