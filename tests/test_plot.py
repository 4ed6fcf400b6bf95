"""Figures without a display (Agg): each plot function returns its matplotlib objects and writes a
non-empty PNG."""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

import jaxpoly  # noqa: E402
from jaxpoly import plot  # noqa: E402


def _check_png(path, min_bytes=5_000):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > min_bytes
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.05  # not a blank canvas


@pytest.fixture(scope="module")
def bunny2d():
    return jaxpoly.extract(jaxpoly.load_model("bunny-2d-2x50"), (-0.5, 0.5))


def test_plot_partition(tmp_path, bunny2d):
    fig, ax = plot.plot_partition(bunny2d, tmp_path / "p.png")
    assert "255 regions" in ax.get_title()
    assert len(ax.collections) == 4  # regions, edges, vertices, level set
    _check_png(tmp_path / "p.png", 20_000)
    fig2, ax2 = plot.plot_partition(bunny2d, tmp_path / "q.png", show_vertices=False, cmap="viridis", title="t")
    assert ax2.get_title() == "t" and len(ax2.collections) == 3
    _check_png(tmp_path / "q.png")
    plt.close(fig)
    plt.close(fig2)


def test_plot_slice_of_a_high_dimensional_input(tmp_path):
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((5, 50)), rng.standard_normal((50, 50)) / 7, rng.standard_normal((50, 1)) / 7]
    bs = [rng.standard_normal(50) * 0.3, rng.standard_normal(50) * 0.3, np.array([0.05])]
    net = jaxpoly.from_arrays(Ws, bs)
    points = rng.uniform(-1, 1, (3, 5))
    fig, ax = plot.plot_slice(net, points, tmp_path / "s.png", labels=["a", "b", "c"])
    c = ax.jaxpoly_complex
    assert c.dim == 2 and c.has_level_set and c.num_regions > 10
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c"]
    # the marked points sit at (0, 0), (1, 0) and above the s axis, inside the drawn box
    (plane, (lo, hi), coords) = plot.slice_through_points(points)
    np.testing.assert_allclose(coords[:2], [[0, 0], [1, 0]], atol=1e-12)
    assert coords[2, 1] > 0 and np.all(coords > lo) and np.all(coords < hi)
    o, u, v = plane
    np.testing.assert_allclose(o + coords[:, :1] * u + coords[:, 1:] * v, points, atol=1e-12)
    # each region's witness, mapped back to the 5-D input, has the region's activation pattern
    cells = c.regions
    x = o + cells.witnesses[:, :1] * u + cells.witnesses[:, 1:] * v
    H = net.num_hyperplanes
    assert np.array_equal(np.asarray(net.hyperplane_values(x)) > 0, cells.patterns[:, :H])
    _check_png(tmp_path / "s.png", 20_000)
    plt.close(fig)
    with pytest.raises(jaxpoly.JaxpolyError, match="collinear"):
        plot.plot_slice(net, np.stack([points[0], points[1], 2 * points[1] - points[0]]))
    with pytest.raises(jaxpoly.JaxpolyError, match="three points"):
        plot.plot_slice(net, points[:2])


def test_plot_mesh3d(tmp_path):
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    tris = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    edges = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
    mesh = jaxpoly.Mesh(v, edges, np.arange(0, 13, 3), tris.reshape(-1), tris)
    fig, ax = plot.plot_mesh3d(mesh, tmp_path / "m.png", elev=30, azim=20)
    assert ax.name == "3d" and "4 polygons" in ax.get_title()
    _check_png(tmp_path / "m.png")
    plt.close(fig)
    with pytest.raises(jaxpoly.JaxpolyError, match="3D mesh"):
        plot.plot_mesh3d(jaxpoly.Mesh(v[:, :2], edges))


def test_plot_regions_vs_time(tmp_path):
    t = np.linspace(0.01, 3, 40)
    series = {"enumerate_regions": (t[:10], np.minimum(np.arange(1, 11) * 30, 255)),
              "sampling 1e4/s": (t, 255 * (1 - np.exp(-t)))}
    fig, ax = plot.plot_regions_vs_time(series, tmp_path / "f.png", exact_count=255, logx=True, title="bunny")
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["enumerate_regions", "sampling 1e4/s", "exact (255)"]
    assert ax.get_xscale() == "log" and ax.get_title() == "bunny"
    _check_png(tmp_path / "f.png")
    plt.close(fig)
    with pytest.raises(jaxpoly.JaxpolyError, match="equal length"):
        plot.plot_regions_vs_time({"x": ([0, 1], [1])})
    with pytest.raises(jaxpoly.JaxpolyError, match="at least one"):
        plot.plot_regions_vs_time({})
    with pytest.raises(jaxpoly.SaveError, match="does not exist"):  # as every other save
        plot.plot_regions_vs_time(series, tmp_path / "missing" / "f.png")
    with pytest.raises(jaxpoly.InvalidArgumentError, match="does not know the format 'xyz'.*png"):
        plot.plot_regions_vs_time(series, tmp_path / "f.xyz")  # was matplotlib's ValueError


def test_plots_draw_into_given_axes(bunny2d):
    fig, axes = plt.subplots(1, 2)
    f, a = plot.plot_partition(bunny2d, ax=axes[0])
    f2, a2 = plot.plot_regions_vs_time({"x": ([0, 1], [0, 5])}, ax=axes[1])
    assert f is fig and f2 is fig and a is axes[0] and a2 is axes[1]
    plt.close(fig)
