"""Cell volumes (``Complex.region_volumes``) against Qhull one cell at a time (``scipy.spatial.ConvexHull``
on each cell's vertices, the simple way), side by side on the same complexes.

    python benchmarks/volumes.py          # → benchmarks/results/volumes_cpu.json

Cases as in ``benchmarks/extract.py`` (``bunny-<d>d-<L>x<W>``, ``random-<d>d-<L>x<W>``). ``cold_s``
is the first call (with ``compile_s``, JAX's tracing and compilation of the cells' affine maps inside
it), ``warm_s`` a second one with the volumes' cache cleared (the cells, computed before either, and the
compiled kernels kept).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import device_info, peak_memory  # noqa: E402
from extract import _net  # noqa: E402

import jaxpoly  # noqa: E402

CASES = ["bunny-2d-2x100", "bunny-3d-3x16", "random-3d-4x32", "random-4d-3x16"]


def run(case: str) -> dict:
    from scipy.spatial import ConvexHull

    net, box, level_set, engine = _net(case)
    c = jaxpoly.extract(net, box, level_set=level_set, engine=engine)
    cells = c.regions
    compile_s = [0.0]

    def on_event(name: str, secs: float, **_) -> None:
        if name.startswith("/jax/core/compile/"):
            compile_s[0] += secs

    jax.monitoring.register_event_duration_secs_listener(on_event)
    t = time.perf_counter()
    vol = c.region_volumes()
    cold = time.perf_counter() - t
    object.__setattr__(c, "_region_volumes", None)  # the same complex (cells cached), no cached volumes
    t = time.perf_counter()
    again = c.region_volumes()
    warm = time.perf_counter() - t
    assert np.array_equal(vol, again)
    t = time.perf_counter()
    hull = np.array([ConvexHull(c.vertices[cells.vertices_of(r)]).volume for r in range(len(cells))])
    qhull = time.perf_counter() - t
    box_volume = float(np.prod(c.hi - c.lo))
    return {"case": case, "dim": c.dim, "regions": len(cells), "vertices": c.num_vertices,
            "cold_s": cold, "compile_s": compile_s[0], "warm_s": warm, "regions_per_s": len(cells) / warm,
            "qhull_s": qhull, "qhull_regions_per_s": len(cells) / qhull, "speedup": qhull / warm,
            "max_abs_diff_vs_qhull": float(np.max(np.abs(vol - hull))),
            "sum_rel_error": float(abs(vol.sum() - box_volume) / box_volume), **peak_memory()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=CASES)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "volumes_cpu.json"))
    args = ap.parse_args()
    jax.config.update("jax_enable_x64", True)
    rows = []
    for case in args.cases:
        rows.append(run(case))
        r = rows[-1]
        print(f"{case}: {r['regions']} cells, {r['warm_s']:.3f} s ({r['regions_per_s']:.0f}/s; cold {r['cold_s']:.2f} s)"
              f", Qhull {r['qhull_s']:.2f} s, x{r['speedup']:.1f}, max diff {r['max_abs_diff_vs_qhull']:.1e}",
              flush=True)
    with open(args.out, "w") as f:
        json.dump({"device": device_info(), "date": time.strftime("%Y-%m-%d"), "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
