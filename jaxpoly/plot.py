"""Matplotlib figures of complexes, slices, meshes and enumeration runs (needs the ``viz`` extra).

Each function returns the figure and axes and saves when given ``path``. No backend is forced: without a
display matplotlib falls back to Agg on its own (the CLI selects Agg explicitly), and inside notebooks
the figures show inline.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from jaxpoly.arguments import is_real
from jaxpoly.complex import Complex
from jaxpoly.errors import InvalidArgumentError, InvalidNetworkError, JaxpolyError
from jaxpoly.files import writing
from jaxpoly.mesh import Mesh
from jaxpoly.network import Network, plane_through_points

__all__ = ["plot_partition", "plot_slice", "plot_mesh3d", "plot_regions_vs_time", "slice_through_points"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise JaxpolyError("plotting needs matplotlib: pip install 'jaxpoly[viz]'") from None
    return plt


def _save(fig, path) -> None:
    if path is not None:
        with writing(path, "a plot") as path:
            ext = os.path.splitext(path)[1].lower().lstrip(".")
            known = fig.canvas.get_supported_filetypes()
            if ext and ext not in known:  # (not an OSError: writing() would wrap it)
                raise InvalidArgumentError(f"cannot write a plot to {path!r}: matplotlib does not know the format "
                                           f"{ext!r}; use one of {', '.join('.' + k for k in sorted(known))}")
            fig.savefig(path, dpi=150, bbox_inches="tight")


def _region_colors(plt, cmap: str, n: int) -> np.ndarray:
    """``n`` colours in shuffled order: the entries of a qualitative map (cycled), or evenly spaced
    samples of a continuous one."""
    cm = plt.get_cmap(cmap)
    perm = np.random.default_rng(0).permutation(n)
    if cm.N <= 64:  # qualitative (tab10, tab20, Set3…): integer lookups
        return cm(perm % cm.N)
    return cm(perm / max(n - 1, 1))


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
    colors = _region_colors(plt, cmap, len(polys))
    ax.add_collection(PolyCollection(polys, facecolors=colors, edgecolors="none", alpha=0.55))
    ax.add_collection(LineCollection(c.vertices[c.edges], colors="0.25", linewidths=0.4))
    if show_vertices:
        ax.scatter(*c.vertices.T, s=2, c="0.1", zorder=3)
    if c.has_level_set:
        m = c.level_set_mesh()
        ax.add_collection(LineCollection(m.vertices[m.edges], colors="k", linewidths=2.0, zorder=4))
    ax.set_xlim(c.lo[0], c.hi[0])
    ax.set_ylim(c.lo[1], c.hi[1])
    ax.set_aspect("equal")
    f = c.f_vector
    ax.set_title(title or f"{f[2]:,} regions, {f[1]:,} edges, {f[0]:,} vertices")
    _save(fig, path)
    return fig, ax


def slice_through_points(points, *, margin: float = 0.25):
    """The plane through three points and a box around them in plane coordinates.

    Args:
      points: ``(3, d)`` (``d >= 2``); ``points[0]`` maps to ``(0, 0)``, ``points[1]`` to ``(1, 0)``
        (see :func:`jaxpoly.plane_through_points`).
      margin: the box extends the points' bounding box by this fraction of its larger side.
    Returns:
      ``((origin, u, v), (lo, hi), coords)``: the plane for ``extract(..., slice=...)``, the box
      ``lo, hi (2,)`` and the points' plane coordinates ``(3, 2)``.
    """
    try:
        P = np.asarray(points, np.float64)
    except (TypeError, ValueError):
        raise InvalidNetworkError(f"a slice needs three points of real coordinates, (3, d), got {str(points)[:60]!r}") \
            from None
    if not (is_real(margin) and 0 <= margin < np.inf):
        raise InvalidArgumentError(f"margin must be a non-negative number, got {margin!r}")
    if P.ndim != 2 or P.shape[0] != 3 or P.shape[1] < 2:
        raise InvalidNetworkError(f"a slice needs three points of the same dimension >= 2, got shape {P.shape}")
    if not np.all(np.isfinite(P)):
        raise InvalidNetworkError("the slice points contain NaN or inf")
    origin, u, v = plane_through_points(*P)
    coords = np.linalg.lstsq(np.stack([u, v], 1), (P - origin).T, rcond=None)[0].T
    lo, hi = coords.min(0), coords.max(0)
    pad = margin * float((hi - lo).max())
    return (origin, u, v), (lo - pad, hi + pad), coords


def plot_slice(net: Network, points, path: str | os.PathLike | None = None, *, complex: Complex | None = None,
               bounds=None, margin: float = 0.25, level_set: bool | None = None, labels=None, ax=None,
               show_vertices: bool = True, cmap: str = "tab20", title: str | None = None, **extract_kwargs):
    """The partition of a high-dimensional input on the plane through three data points (SplineCam view).

    Extracts the complex of ``net`` restricted to the plane (``jaxpoly.extract(net, bounds,
    slice=plane)``), draws it like :func:`plot_partition` in plane coordinates (``points[0]`` at
    ``(0, 0)``, ``points[1]`` at ``(1, 0)``) and marks the three points.

    Args:
      net: a network with ``input_dim >= 2``.
      points: ``(3, d)`` data points defining the plane.
      path: where to save; ``None`` to only return the figure.
      complex: an already extracted complex on this plane (skips the extraction).
      bounds: ``(lo, hi)`` in plane coordinates; default: the points' bounding box grown by ``margin``.
      level_set: draw the output's zero set (default: when the output is scalar).
      labels: three labels for the points (default ``p0, p1, p2``).
      extract_kwargs: passed to :func:`jaxpoly.extract` (``dtype``, ``progress``…).
    Returns:
      ``(fig, ax)``; the complex is ``ax.jaxpoly_complex``.
    """
    from jaxpoly.extraction import extract

    plane, box, coords = slice_through_points(points, margin=margin)
    if complex is None:
        if level_set is None:
            level_set = net.output_dim == 1
        complex = extract(net, box if bounds is None else bounds, level_set=level_set, slice=plane,
                          **extract_kwargs)
    fig, ax = plot_partition(complex, None, ax=ax, show_vertices=show_vertices, cmap=cmap, title=title)
    ax.scatter(*coords.T, s=60, c="crimson", edgecolors="white", linewidths=1.0, zorder=6, marker="o")
    for (x, y), name in zip(coords, labels or ("p0", "p1", "p2")):
        ax.annotate(str(name), (x, y), xytext=(5, 5), textcoords="offset points", color="crimson",
                    fontsize=11, fontweight="bold", zorder=7)
    ax.set_xlabel("s  (x = origin + s u + t v)")
    ax.set_ylabel("t")
    ax.jaxpoly_complex = complex
    _save(fig, path)
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
    colors = plt.get_cmap("bone")(shade)
    # edges in the face colour hide the anti-aliasing seams between the fan triangles of one polygon
    ax.add_collection3d(Poly3DCollection(tri, facecolors=colors, edgecolors=colors, linewidths=0.3))
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    mid, half = (lo + hi) / 2, (hi - lo).max() / 2
    for set_lim, m in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), mid):
        set_lim(m - half, m + half)
    ax.view_init(elev=elev, azim=azim)
    ax.set_title(title or f"exact level set: {mesh.num_faces:,} polygons, {mesh.num_vertices:,} vertices")
    _save(fig, path)
    return fig, ax


def plot_regions_vs_time(series: dict, path: str | os.PathLike | None = None, *, exact_count: int | None = None,
                         ax=None, logx: bool = False, logy: bool = False, title: str | None = None):
    """Regions found against wall time for several methods (the "Figure 1" comparison: exact
    enumeration / extraction versus sampling baselines), with the exact count as a dashed line.

    Args:
      series: ``{label: (times, counts)}``, each a 1-D sequence of equal length (seconds, regions found
        by then); drawn as steps.
      exact_count: the true number of regions, if known.
      logx, logy: logarithmic axes.
    Returns:
      ``(fig, ax)``.
    """
    if not isinstance(series, Mapping) or not series:
        raise InvalidArgumentError(f"plot_regions_vs_time needs a dict {{label: (times, counts)}} of at least one "
                                   f"series, got {str(series)[:60]!r}")
    plt = _pyplot()
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(7, 4.5))
    for label, pair in series.items():
        try:
            t, n = pair
            t, n = np.asarray(t, np.float64).reshape(-1), np.asarray(n, np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"series {label!r} must be a pair (times, counts) of numbers, got "
                                       f"{str(pair)[:60]!r}") from None
        if t.shape != n.shape or not len(t):
            raise InvalidArgumentError(f"series {label!r}: times and counts must be non-empty and of equal length, "
                                       f"got {t.shape} and {n.shape}")
        order = np.argsort(t, kind="stable")
        line, = ax.step(t[order], n[order], where="post", label=str(label), linewidth=1.8)
        ax.plot(t[order][-1:], n[order][-1:], "o", color=line.get_color())
    if exact_count is not None:
        ax.axhline(exact_count, color="k", linestyle="--", linewidth=1.0, label=f"exact ({exact_count:,})")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("regions found")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    _save(fig, path)
    return fig, ax
