"""Matplotlib figures of complexes and meshes (needs the ``viz`` extra). Each function returns the
figure and axes and saves when given ``path``."""

from __future__ import annotations

import os

import numpy as np

from jaxpoly.complex import Complex
from jaxpoly.errors import JaxpolyError
from jaxpoly.mesh import Mesh

__all__ = ["plot_partition", "plot_mesh3d"]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False) if not os.environ.get("DISPLAY") else None
        import matplotlib.pyplot as plt
    except ImportError:
        raise JaxpolyError("plotting needs matplotlib: pip install 'jaxpoly[viz]'") from None
    return plt


def plot_partition(c: Complex, path: str | os.PathLike | None = None, *, ax=None, show_vertices: bool = True,
                   cmap: str = "tab20", title: str | None = None):
    """A 2D complex: cells filled in distinct colours, edges, vertices, and the level set in black.

    Args:
      c: a complex with ``dim == 2``.
      path: where to save (png, pdf, svg…); ``None`` to only return the figure.
    Returns:
      ``(fig, ax)``.
    """
    if c.dim != 2:
        raise JaxpolyError(f"plot_partition draws 2D complexes; this one has d={c.dim} (extract a 2D slice)")
    plt = _pyplot()
    from matplotlib.collections import LineCollection, PolyCollection

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 7))
    cells = c.regions
    polys = []
    for i in range(len(cells)):
        v = c.vertices[cells.vertices_of(i)]
        ang = np.arctan2(*(v - v.mean(0)).T[::-1])
        polys.append(v[np.argsort(ang)])
    colors = plt.get_cmap(cmap)(np.random.default_rng(0).permutation(len(polys)) % 20)
    ax.add_collection(PolyCollection(polys, facecolors=colors, edgecolors="none", alpha=0.55))
    ax.add_collection(LineCollection(c.vertices[c.edges], colors="0.25", linewidths=0.4))
    if show_vertices:
        ax.scatter(*c.vertices.T, s=2, c="0.1", zorder=3)
    if c.level_set:
        m = c.level_set_mesh()
        ax.add_collection(LineCollection(m.vertices[m.edges], colors="k", linewidths=2.0, zorder=4))
    ax.set_xlim(c.lo[0], c.hi[0])
    ax.set_ylim(c.lo[1], c.hi[1])
    ax.set_aspect("equal")
    f = c.f_vector
    ax.set_title(title or f"{f[2]:,} regions, {f[1]:,} edges, {f[0]:,} vertices")
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig, ax


def plot_mesh3d(mesh: Mesh, path: str | os.PathLike | None = None, *, ax=None, elev: float = 20,
                azim: float = -60, title: str | None = None):
    """Render a 3D level-set mesh (its triangles, shaded by normal). Returns ``(fig, ax)``."""
    if mesh.vertices.shape[1] != 3 or not len(mesh.triangles):
        raise JaxpolyError("plot_mesh3d needs a 3D mesh with faces")
    plt = _pyplot()
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    fig = ax.figure if ax is not None else plt.figure(figsize=(7, 7))
    ax = ax or fig.add_subplot(projection="3d")
    tri = mesh.vertices[mesh.triangles]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    light = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
    shade = 0.35 + 0.65 * np.clip(n @ light, 0, 1)
    ax.add_collection3d(Poly3DCollection(tri, facecolors=plt.get_cmap("bone")(shade), edgecolors="none"))
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    mid, half = (lo + hi) / 2, (hi - lo).max() / 2
    for set_lim, m in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), mid):
        set_lim(m - half, m + half)
    ax.view_init(elev=elev, azim=azim)
    ax.set_title(title or f"exact level set: {mesh.num_faces:,} polygons, {mesh.num_vertices:,} vertices")
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig, ax
