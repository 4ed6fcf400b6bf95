"""Edge-subdivision benchmark: bunny networks and random MLPs.

Each case runs in a fresh Python process, so ``cold_s`` includes tracing and XLA compilation and
``peak_rss_mb`` is that case's peak resident memory. ``warm_s`` is the best of ``--repeat`` further
calls in the same process (compiled kernels cached); ``compile_s`` is the tracing + XLA compilation time
inside the cold call (from ``jax.monitoring`` events), so it is separate even with ``--repeat 0``.

    python benchmarks/extract.py                       # default cases → benchmarks/results/extract_cpu.json
    python benchmarks/extract.py --cases bunny-3d-8x32 --out benchmarks/results/extract_8x32.json

Case names: ``bunny-<d>d-<L>x<W>`` (``../shared/models``, box [-0.5, 0.5]^d), ``random-<d>d-<L>x<W>``
(He-initialised weights, small random biases, box [-1, 1]^d) and ``zerobias-<d>d-<L>x<W>`` (the same
weights with zero biases, as freshly initialised networks: in d >= 3 a neuron vanishes on whole regions,
so ``engine="auto"`` builds the complex from its regions, :mod:`jaxpoly.lattice`). A suffix
``@regions`` or ``@subdivision`` forces that engine. The regions engine's cases are left out of the
scaling plot (it measures the edge-subdivision kernel):

    python benchmarks/extract.py --cases zerobias-3d-2x16 random-3d-2x16 random-3d-2x16@regions \
        --out benchmarks/results/extract_regions_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

DEFAULT_CASES = ["bunny-2d-2x50", "bunny-2d-2x100", "bunny-2d-4x32", "bunny-3d-3x16",
                 "random-2d-3x64", "random-2d-4x128", "random-3d-3x32", "random-3d-4x32", "random-3d-4x48",
                 "random-4d-3x16", "random-5d-2x16", "random-2d-2x512"]


def _net(case: str):
    """``(network, box, level_set, engine)`` of a case name (module docstring)."""
    import numpy as np

    import jaxpoly

    case, _, engine = case.partition("@")
    engine = engine or "auto"
    if case.startswith("bunny"):
        return jaxpoly.load_model(case), (-0.5, 0.5), True, engine
    kind, dim, shape = case.split("-")
    d, (L, W) = int(dim[:-1]), map(int, shape.split("x"))
    rng = np.random.default_rng(0)
    sizes = [d] + [W] * L + [1]
    Ws = [rng.normal(size=(a, b)) * np.sqrt(2.0 / a) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(size=b) * 0.1 * (kind != "zerobias") for b in sizes[1:]]
    return jaxpoly.from_arrays(Ws, bs), (-1.0, 1.0), True, engine


def _peak() -> dict:
    """:func:`common.peak_memory` under this benchmark's key for the host peak (``peak_rss_mb``, MiB)."""
    from common import peak_memory

    mem = peak_memory()
    return {"peak_rss_mb": mem.pop("peak_rss_mib"), **mem}


def run_case(case: str, repeat: int, dtype: str) -> dict:
    import jax
    import numpy as np

    import jaxpoly

    jax.config.update("jax_enable_x64", True)
    compile_events: dict[str, float] = {}

    def on_event(name: str, secs: float, **_) -> None:
        if name.startswith("/jax/core/compile/"):
            compile_events[name] = compile_events.get(name, 0.0) + secs

    jax.monitoring.register_event_duration_secs_listener(on_event)
    net, box, level_set, engine = _net(case)
    t = time.perf_counter()
    c = jaxpoly.extract(net, box, level_set=level_set, dtype=np.dtype(dtype), engine=engine)
    cold = time.perf_counter() - t
    cold_compile = sum(compile_events.values())
    warm = []
    for _ in range(repeat):
        t = time.perf_counter()
        c = jaxpoly.extract(net, box, level_set=level_set, dtype=np.dtype(dtype), engine=engine)
        warm.append(time.perf_counter() - t)
    t = time.perf_counter()
    f = c.f_vector
    fvec_s = time.perf_counter() - t
    out = {
        "case": case, "engine": c.timings.get("engine", "subdivision"), "dtype": dtype,
        "input_dim": net.input_dim, "widths": list(net.widths),
        "vertices": c.num_vertices, "edges": c.num_edges, "regions": f[-1], "f_vector": list(f),
        "euler_characteristic": c.euler_characteristic,
        "cold_s": cold, "warm_s": min(warm) if warm else None,
        "compile_s": cold_compile,  # tracing + lowering + XLA compilation inside the cold call
        "cold_minus_warm_s": cold - min(warm) if warm else None,
        "vertices_per_s": c.num_vertices / (min(warm) if warm else cold - cold_compile),
        "f_vector_s": fvec_s,
        **_peak(),
        "stages": c.timings.get("stages", []),
    }
    if level_set:
        m = c.level_set_mesh()
        out["level_set"] = {"vertices": m.num_vertices, "edges": m.num_edges, "faces": m.num_faces}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="*", default=DEFAULT_CASES)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--dtype", default="float64")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "extract_cpu.json"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--plot-only", action="store_true", help="redraw the plot from --out's JSON")
    p.add_argument("--plot-extra", nargs="*", default=[], help="more result JSON files to draw in the plot")
    args = p.parse_args()
    if args.plot_only:
        plot(args.out, args.plot_extra)
        return
    if args.child:
        print(json.dumps(run_case(args.child, args.repeat, args.dtype)))
        return
    import jax
    from common import device_info

    results = []
    for case in args.cases:
        r = subprocess.run([sys.executable, __file__, "--child", case, "--repeat", str(args.repeat),
                            "--dtype", args.dtype], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{case}: FAILED\n{r.stderr[-2000:]}", file=sys.stderr)
            results.append({"case": case, "error": r.stderr[-2000:]})
            continue
        res = json.loads(r.stdout.strip().splitlines()[-1])
        results.append(res)
        print(f"{case:<18} V={res['vertices']:>10,} E={res['edges']:>11,} R={res['regions']:>10,} "
              f"warm={res['warm_s'] if res['warm_s'] is not None else float('nan'):8.3f}s cold={res['cold_s']:7.2f}s "
              f"{res['vertices_per_s']:>12,.0f} V/s peak={res['peak_rss_mb']:8.0f} MB", flush=True)
    meta = {"machine": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "jax": jax.__version__, **device_info(),
            "date": time.strftime("%Y-%m-%d"),
            "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"meta": meta, "results": results}, fh, indent=2)
    print(f"wrote {args.out}")
    plot(args.out)


def fit_slope(results: list[dict], key: str = "vertices", min_vertices: float = 1e4):
    """Least-squares slope and intercept of log(warm time) against log(``key``) over the cases with at
    least ``min_vertices`` vertices (smaller ones measure fixed overheads): ``(None, None)`` with fewer
    than three such cases."""
    import numpy as np

    sel = [r for r in results if r["vertices"] >= min_vertices]
    if len(sel) < 3:
        return None, None
    slope, icpt = np.polyfit(np.log([r[key] for r in sel]), np.log([r["_t"] for r in sel]), 1)
    return float(slope), float(icpt)


def plot(path: str, extra: list[str] | None = None) -> None:
    """Two log-log panels: warm wall time against the vertices produced (one point per case, grey lines:
    cumulative per-layer times), and against the work the kernel actually does, hyperplane steps times
    the edges each step scans (``sum over stages of width x edges``), with lines of slope 1 and the
    least-squares fit over the cases with at least 10^4 vertices (:func:`fit_slope`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    results = []
    for p in [path] + list(extra or []):
        if os.path.exists(p):
            with open(p) as fh:
                results += [r for r in json.load(fh)["results"]
                            if "error" not in r and r.get("engine", "subdivision") == "subdivision"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for r in results:
        t = r["warm_s"] or (r["cold_s"] - (r["compile_s"] or 0))
        st = r.get("stages") or []
        widths = [w for w in r["widths"]][: len(st)] + [1] * max(len(st) - len(r["widths"]), 0)
        work = sum(w * s["edges"] for w, s in zip(widths, st)) or r["edges"]
        r["_t"], r["_work"] = t, work
        axes[0].loglog(r["vertices"], t, "o", label=r["case"])
        axes[1].loglog(work, t, "o", label=r["case"])
        if len(st) > 2:
            v = np.array([s["vertices"] for s in st], float)
            axes[0].loglog(v, np.cumsum([s["seconds"] for s in st]), "-", color="0.75", lw=0.8, zorder=0)
    for ax, key, unit in ((axes[0], "vertices", "vertices/s"), (axes[1], "_work", "edge-steps/s")):
        xs = np.array([r[key] for r in results], float)
        rate = np.median([r[key] / r["_t"] for r in results if r["vertices"] > 1e5] or [1.0])
        x = np.array([xs.min(), xs.max()])
        ax.loglog(x, x / rate, "k--", lw=1, label=f"slope 1 ({rate:,.0f} {unit})")
        slope, icpt = fit_slope(results, key)
        if slope is not None:
            ax.loglog(x, np.exp(icpt) * x ** slope, "r:", lw=1, label=f"least-squares fit: slope {slope:.2f}")
        ax.set_ylabel("wall time [s] (warm)")
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_xlabel("vertices of the complex (grey: cumulative per layer)")
    axes[1].set_xlabel("hyperplane steps x edges scanned (sum over stages of width x edges)")
    fig.suptitle("jaxpoly.extract on a 2-core CPU, float64: cost vs size")
    fig.tight_layout()
    out = os.path.splitext(path)[0] + "_scaling.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
