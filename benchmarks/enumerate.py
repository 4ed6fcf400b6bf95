"""Benchmark ``enumerate_regions`` (not a test): throughput, d-scaling, deep nets, and baselines.

Cases (Balestriero & LeCun 2023's setting: random weights, leaky-ReLU(0.1), box [-1, 1]^d):

* ``w64_d4``: one hidden layer of width 64, d = 4, enumerated completely (the vertex path: the first
  level's arrangement from its vertices, no LPs), and the same net with the LP search forced
  (``jaxpoly.enumeration._VERTEX_MAX_SUBSETS = 0``), capped at ``--search-regions`` regions;
* ``w64_d5``: the same at d = 5 (15.8M vertex systems; 1.6M regions);
* ``w64_d8``: d = 8 (LP search), capped at ``--max-regions``;
* ``3x16_d6``: three hidden layers of width 16, d = 6, enumerated completely;
* d-scaling: width 64, d in ``--dims`` with the LP search, ``--scale-regions`` regions each (time per
  region), plotted to ``results/enumerate_dscaling.png``;
* baselines on ``w64_d4``, each capped at ``--baseline-seconds``: a naive JAX search (one Chebyshev LP
  per region and one LP per (region, hyperplane), same batched solver), a per-region scipy/HiGHS
  search, and ``relucent`` (``pip install jaxpoly[bench]``; ReLU instead of leaky-ReLU, which has the
  same regions for one hidden layer; skipped when not installed);
* ``sample_regions`` (uniform sampling): distinct patterns per second;
* ``output_bounds``: every region's output range (two LPs per region) on ``w64_d4`` and ``3x16_d6``,
  beside scipy/HiGHS on the first ``--highs-regions`` regions and the maximum of uniform samples.

Compile time: the first call of each shape minus a second, warm call (reported separately; the wall
times are warm). Peak memory: the process's peak RSS after each case (``resource.getrusage``). JSON
results are rewritten after every case, so an interrupted run keeps what it measured.

    python benchmarks/enumerate.py                      # everything (about 20 min on 2 CPU cores)
    python benchmarks/enumerate.py --only w64_d4,baselines --out /tmp/e.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import jaxpoly as jp  # noqa: E402
from jaxpoly import enumeration, oracle  # noqa: E402
from jaxpoly.enumeration import enumerate_regions, sample_regions  # noqa: E402

from common import device_info, peak_memory  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BOUNDS = (-1.0, 1.0)


def random_net(seed: int, d: int, widths: tuple[int, ...], slope: float = 0.1) -> jp.Network:
    rng = np.random.default_rng(seed)
    stages, prev = [], d
    for i, w in enumerate(widths):
        act = jp.leaky_relu(slope) if slope else jp.relu()
        stages.append(jp.Stage((rng.standard_normal((prev, w)) / np.sqrt(prev),), rng.standard_normal(w) * 0.5,
                               sources=(i,), activation=act))
        prev = w
    out = jp.Stage((rng.standard_normal((prev, 1)),), np.zeros(1), sources=(len(widths),), activation=jp.identity())
    return jp.Network(tuple(stages), out)


def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "cpu_model": model,
            "jax": jax.__version__, "numpy": np.__version__, "devices": [str(d) for d in jax.devices()],
            "loadavg_start": os.getloadavg(), **device_info()}


@contextlib.contextmanager
def lp_search_only():
    """Force the LP search on the first level too (disable the vertex path)."""
    old = enumeration._VERTEX_MAX_SUBSETS
    enumeration._VERTEX_MAX_SUBSETS = 0
    try:
        yield
    finally:
        enumeration._VERTEX_MAX_SUBSETS = old


@contextlib.contextmanager
def warm_up_as(max_regions: int | None, small: int):
    """Warm-up calls cut at ``small`` regions take the first-level path (vertices or LP search) of the
    measured call cut at ``max_regions``, so that the measured call compiles nothing: the vertex path
    gives way to the search below ``subsets / _VERTEX_PER_CELL`` regions."""
    old = enumeration._VERTEX_PER_CELL
    enumeration._VERTEX_PER_CELL = float("inf") if max_regions is None else old * max_regions / small
    try:
        yield
    finally:
        enumeration._VERTEX_PER_CELL = old


def complete_run(net) -> dict:
    """A complete enumeration with the defaults (the vertex path on the first level): a cold call, then
    the measured warm call."""
    t = time.perf_counter()
    R = enumerate_regions(net, BOUNDS)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    R = enumerate_regions(net, BOUNDS)
    wall = time.perf_counter() - t
    return {"regions": len(R), "complete": R.complete, "wall_s": wall, "compile_s": max(cold - wall, 0.0),
            "regions_per_s": len(R) / wall, "us_per_region": 1e6 * wall / len(R), "lps": R.stats["lps"],
            "vertices": R.stats.get("vertices", 0), "vertex_systems": R.stats.get("vertex_systems", 0),
            "facets_per_region": float(np.diff(R.facet_ptr).mean()), "adjacent_pairs": int(len(R.adjacency)),
            **peak_memory()}


def timed_enumeration(net, *, max_regions=None, batch_size=256, warm_regions=None, repeats=1) -> dict:
    """Cold call on a small problem (compiles), warm call on it, then the measured warm call (the median
    of ``repeats`` calls; all of them in ``walls_s``)."""
    small = warm_regions or 2 * batch_size
    with warm_up_as(max_regions, small):
        t = time.perf_counter()
        enumerate_regions(net, BOUNDS, max_regions=small, batch_size=batch_size)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        enumerate_regions(net, BOUNDS, max_regions=small, batch_size=batch_size)
        warm = time.perf_counter() - t
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        R = enumerate_regions(net, BOUNDS, max_regions=max_regions, batch_size=batch_size)
        walls.append(time.perf_counter() - t)
    wall = float(np.median(walls))
    s = R.stats
    return {"regions": len(R), "complete": R.complete, "wall_s": wall, "compile_s": max(cold - warm, 0.0),
            "regions_per_s": len(R) / wall, "us_per_region": 1e6 * wall / max(len(R), 1),
            "lps": s["lps"], "lps_per_region": s["lps"] / max(len(R), 1), "warm_lps": s.get("warm_lps", 0),
            "warm_pivots": s.get("warm_pivots", 0),
            "walk_facets": s.get("walk_facets", 0), "inherited": s.get("inherited", 0),
            "lp_fallbacks": s["lp_fallbacks"],
            "rays": s["rays"], "vertices": s.get("vertices", 0), "vertex_systems": s.get("vertex_systems", 0),
            "cells_all_levels": s["cells"], "max_regions": max_regions, "batch_size": batch_size,
            "walls_s": walls,
            **peak_memory()}


# ---------------------------------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------------------------------


def naive_jax(net, *, seconds: float, batch_size: int = 256, max_regions: int = 10**9) -> dict:
    """BFS where every region gets its Chebyshev LP and one redundancy LP per hyperplane (no rays, no
    filters, no vertex path): the same batched JAX solver, one LP per (region, hyperplane)."""
    with jax.enable_x64(True):
        net = net.astype(np.float64)
        d, H = net.input_dim, net.num_hyperplanes
        lo, hi = np.full(d, BOUNDS[0]), np.full(d, BOUNDS[1])
        ctx = enumeration._Ctx(net, lo, hi, False, batch_size, 1, 1e-9, 0, None)
        M = ctx.M
        pm = np.zeros((batch_size, M), bool)
        pm[:, : 2 * d] = True
        seed = np.asarray(net.hyperplane_values(jnp.zeros((1, d))) > 0)
        known = {bytes(np.packbits(seed[0]))}
        queue = [seed[0]]
        found = lps = 0
        t0 = time.perf_counter()
        compile_s = None
        while queue and time.perf_counter() - t0 < seconds and found < max_regions:
            tb = time.perf_counter()
            pats = np.array(queue[:batch_size])
            del queue[:batch_size]
            n = len(pats)
            rows = oracle.cell_rows(net, jnp.asarray(enumeration._pad_rows(pats, batch_size)), jnp.asarray(pm),
                                    jnp.asarray(ctx.centre), jnp.asarray(ctx.half), stage=(0, H),
                                    level_set=False, num_slots=M)
            wit, rad, _, _ = oracle.chebyshev(rows, 2.0 * ctx.radius)
            good = np.zeros(batch_size, bool)
            good[:n] = rad[:n] > ctx.tol
            act = np.asarray(rows.active) & good[:, None]
            act[:, : 2 * d] = False
            cell, row = np.nonzero(act)
            excess, solved, _ = oracle.redundancy_lps(rows, cell, row, 2.0 * ctx.radius, batch_size,
                                                        jnp.asarray(wit))
            lps += batch_size + len(cell)
            fac = (~solved) | (excess > ctx.tol)
            for c, r in zip(cell[fac], row[fac]):
                nb = pats[c].copy()
                nb[r - 2 * d] ^= True
                k = bytes(np.packbits(nb))
                if k not in known:
                    known.add(k)
                    queue.append(nb)
            found += int(good.sum())
            if compile_s is None:  # the first batch compiles the kernels: restart the clock after it
                compile_s = time.perf_counter() - tb
                t0 = time.perf_counter()
                found = lps = 0
        wall = time.perf_counter() - t0
    return {"regions": found, "wall_s": wall, "regions_per_s": found / max(wall, 1e-9), "lps": lps,
            "lps_per_region": lps / max(found, 1), "complete": not queue, "first_batch_s": compile_s,
            "time_cap_s": seconds}


def scipy_search(net, *, seconds: float) -> dict:
    """Per-region BFS with scipy's HiGHS: a Chebyshev LP, then one redundancy LP per hyperplane."""
    from scipy.optimize import linprog

    d = net.input_dim
    W = np.asarray(net.stages[0].kernels[0], np.float64).T  # (H, d)
    c0 = np.asarray(net.stages[0].bias, np.float64)
    H = len(c0)
    eye = np.eye(d)
    box_A, box_b = np.concatenate([eye, -eye]), np.full(2 * d, 1.0)
    seed = (c0 > 0)
    known = {seed.tobytes()}
    queue = [seed]
    found = lps = 0
    t0 = time.perf_counter()
    while queue and time.perf_counter() - t0 < seconds:
        p = queue.pop(0)
        s = np.where(p, -1.0, 1.0)
        A = np.concatenate([box_A, s[:, None] * W])
        b = np.concatenate([box_b, -s * c0])
        nrm = np.linalg.norm(A, axis=1)
        A_ub = np.concatenate([A, nrm[:, None]], axis=1)
        r = linprog(-np.eye(d + 1)[d], A_ub=A_ub, b_ub=b, bounds=[(None, None)] * d + [(0, 2.0)], method="highs")
        lps += 1
        if r.status != 0 or -r.fun <= 1e-9:
            continue
        found += 1
        for h in range(H):
            i = 2 * d + h
            bb = b.copy()
            bb[i] += 1.0
            q = linprog(-A[i], A_ub=A, b_ub=bb, bounds=[(None, None)] * d, method="highs")
            lps += 1
            if q.status == 0 and -q.fun > b[i] + 1e-9 * nrm[i]:
                nb = p.copy()
                nb[h] ^= True
                k = nb.tobytes()
                if k not in known:
                    known.add(k)
                    queue.append(nb)
    wall = time.perf_counter() - t0
    return {"regions": found, "wall_s": wall, "regions_per_s": found / max(wall, 1e-9), "lps": lps,
            "complete": not queue, "time_cap_s": seconds}


def relucent_search(net, *, max_polys: int) -> dict:
    """``relucent``'s BFS restricted to the box with ``cube_mode="intersect"``, in a child process
    (relucent forks worker processes, which does not mix with JAX's threads in this one)."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "net.npz")
        np.savez(path, W0=np.asarray(net.stages[0].kernels[0], np.float64), b0=np.asarray(net.stages[0].bias),
                 W1=np.asarray(net.output.kernels[0], np.float64))
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--relucent-child", path,
                            "--relucent-polys", str(max_polys)], capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"skipped": f"relucent run failed: {r.stderr[-500:]}"}
    return json.loads(lines[-1])


def _relucent_child(path: str, max_polys: int) -> dict:
    try:
        import relucent
        import torch
    except ImportError as e:
        return {"skipped": f"relucent not installed ({e}); pip install 'jaxpoly[bench]'"}
    f = np.load(path)
    W0, b0, W1 = f["W0"], f["b0"], f["W1"]
    d = W0.shape[0]
    model = torch.nn.Sequential(torch.nn.Linear(d, W0.shape[1]), torch.nn.ReLU(), torch.nn.Linear(W0.shape[1], 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(W0.T))
        model[0].bias.copy_(torch.tensor(b0))
        model[2].weight.copy_(torch.tensor(W1.T))
        model[2].bias.zero_()
    model = model.double()
    cx = relucent.Complex(relucent.convert(model))
    t = time.perf_counter()
    res = cx.bfs(cube_mode="intersect", cube_radius=1.0, max_polys=max_polys, nworkers=1, verbose=0)
    wall = time.perf_counter() - t
    return {"regions": len(cx), "wall_s": wall, "regions_per_s": len(cx) / wall, "complete": bool(res.complete),
            "max_polys": max_polys, "version": getattr(relucent, "__version__", "?"), "nworkers": 1}


def output_range(net, *, highs_regions: int, samples: int) -> dict:
    """``Regions.output_bounds`` on a complete enumeration (cold call, then the measured warm call),
    beside a per-region scipy/HiGHS solve of the same LPs on the first ``highs_regions`` regions (their
    answers compared) and the largest output seen at ``samples`` uniform samples."""
    from scipy.optimize import linprog

    R = enumerate_regions(net, BOUNDS)
    t = time.perf_counter()
    R.output_bounds()
    cold = time.perf_counter() - t
    t = time.perf_counter()
    ob = R.output_bounds()
    wall = time.perf_counter() - t
    A, c = R.affine_maps()
    n = min(highs_regions, len(R))
    t = time.perf_counter()
    ref = np.zeros((n, 2))
    for r in range(n):
        G, g = R.halfspaces(r)
        for j, sense in enumerate((1.0, -1.0)):
            ref[r, j] = sense * linprog(sense * A[r, 0], A_ub=G, b_ub=g, bounds=(None, None), method="highs").fun
    highs = time.perf_counter() - t
    ref += c[:n, :1]
    x = np.asarray(jax.random.uniform(jax.random.key(0), (samples, net.input_dim), minval=-1.0, maxval=1.0))
    lps = 2 * len(R) * net.output_dim
    return {"regions": len(R), "lps": lps, "wall_s": wall, "compile_s": max(cold - wall, 0.0),
            "lps_per_s": lps / wall, "regions_per_s": len(R) / wall, "host_fallbacks": ob.host_fallbacks,
            "max_over_box": float(ob.upper.max()), "min_over_box": float(ob.lower.min()),
            "max_of_samples": float(np.asarray(net(x)).max()), "samples": samples,
            "highs": {"regions": n, "wall_s": highs, "lps_per_s": 2 * n / highs,
                      "max_abs_difference": float(np.abs(ref - np.stack([ob.lower[:n, 0], ob.upper[:n, 0]], 1)).max())},
            **peak_memory()}


def sampling(net, samples: int) -> dict:
    sample_regions(net, BOUNDS, 1000, key=jax.random.key(1))  # compile
    t = time.perf_counter()
    seen = sample_regions(net, BOUNDS, samples, key=jax.random.key(0))
    wall = time.perf_counter() - t
    return {"samples": samples, "distinct_patterns": int(len(seen)), "wall_s": wall,
            "patterns_per_s": len(seen) / wall}


def _scaling_batch(d: int, B: int) -> int:
    """The batch size of d's run: ``B``, halved as ``enumerate_regions``' default is (on a CPU from d = 48,
    where a batch's rows outgrow the caches; where it would not fit in memory)."""
    return enumeration.default_batch_size(d, 64, 64, start=B)


def interleaved_dscaling(dims: list[int], regions: int, B: int, rounds: int) -> list[dict]:
    """Time per region against d, every d measured once per round (the order reversed every other
    round), after each d's compilation and a warm run. This machine's speed drifts by up to 2x within
    a process and between processes; runs of one round are seconds apart, so the ratio of each d to
    ``dims[0]`` is taken within each round (``ratio_per_round``) and summarised by its median, next to
    each d's fastest and median run."""
    nets = {d: random_net(0, d, (64,)) for d in dims}
    info: dict[int, dict] = {}
    with lp_search_only():
        for d in dims:
            info[d] = timed_enumeration(nets[d], max_regions=regions, batch_size=_scaling_batch(d, B))
        runs: dict[int, list[float]] = {d: [] for d in dims}
        for r in range(rounds):
            for d in (dims if r % 2 == 0 else dims[::-1]):
                t = time.perf_counter()
                R = enumerate_regions(nets[d], BOUNDS, max_regions=regions, batch_size=_scaling_batch(d, B))
                runs[d].append(1e6 * (time.perf_counter() - t) / len(R))
    first = np.array(runs[dims[0]])
    rows = []
    for d in dims:
        us = np.array(runs[d])
        s = dict(info[d], us_per_region=float(us.min()), median_us_per_region=float(np.median(us)),
                 runs_us_per_region=us.tolist(), ratio_per_round=(us / first).tolist(),
                 median_ratio_per_round=float(np.median(us / first)), fastest_ratio=float(us.min() / first.min()),
                 rounds=rounds, protocol="interleaved")
        s["regions_per_s"] = 1e6 / s["us_per_region"]
        rows.append({"d": d, "search": s})
    return rows


# ---------------------------------------------------------------------------------------------------
# d-scaling plot
# ---------------------------------------------------------------------------------------------------


def plot_dscaling(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    ds = np.array([r["d"] for r in rows], float)
    interleaved = all(r["search"].get("protocol") == "interleaved" for r in rows)
    # rows measured in several processes (or rounds) carry their median: the machine's speed varies
    us = np.array([r["search"].get("median_us_per_region", r["search"]["us_per_region"]) for r in rows], float)
    fig, axes = plt.subplots(1, 2 if interleaved else 1, figsize=(10 if interleaved else 5.5, 4), squeeze=False)
    ax = axes[0, 0]
    several = any("median_us_per_region" in r["search"] for r in rows)
    label = "median of rounds" if interleaved else "median over processes" if several else "measured"
    ax.plot(ds, us / 1e3, "o-", label="LP search (%s)" % label)
    if interleaved:
        fast = np.array([r["search"]["us_per_region"] for r in rows], float)
        ax.plot(ds, fast / 1e3, "^-", color="C1", label="LP search (fastest round)")
    ax.plot(ds, us[0] / 1e3 * ds / ds[0], "k--", lw=1, label="linear in d (from d = %d)" % ds[0])
    vert = [(r["d"], r["vertex"]["us_per_region"]) for r in rows if r.get("vertex")]
    if vert:
        vd, vu = zip(*vert)
        ax.plot(vd, np.array(vu) / 1e3, "s", color="C2", label="vertex path (first level)")
    ax.set_ylabel("wall time per region (ms)")
    ax.set_title("one hidden layer, width 64, leaky-ReLU, [-1, 1]^d")
    if interleaved:
        ax2 = axes[0, 1]
        ratios = [np.array(r["search"]["ratio_per_round"]) for r in rows]
        med = np.array([np.median(x) for x in ratios])
        ax2.errorbar(ds, med, yerr=[med - [x.min() for x in ratios], [x.max() for x in ratios] - med], fmt="o-",
                     capsize=3, label="time per region / d = %d's, same round (median, range)" % ds[0])
        ax2.plot(ds, [r["search"]["fastest_ratio"] for r in rows], "^", color="C1", label="fastest / fastest")
        ax2.plot(ds, ds / ds[0], "k--", lw=1, label="linear in d")
        ax2.set_ylabel("ratio to d = %d" % ds[0])
        ax2.set_title("%d interleaved rounds in one process" % rows[0]["search"]["rounds"])
    for a in axes[0]:
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xticks(ds)
        a.set_xticklabels([str(int(x)) for x in ds])
        a.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        a.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        a.set_xlabel("input dimension d")
        a.legend(fontsize=8)
        a.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="w64_d4,w64_d5,baselines,w64_d8,3x16_d6,output_bounds,dscaling",
                    help="comma-separated subset of w64_d4,w64_d5,baselines,w64_d8,3x16_d6,output_bounds,dscaling")
    ap.add_argument("--highs-regions", type=int, default=2000, help="regions solved by HiGHS beside output_bounds")
    ap.add_argument("--max-regions", type=int, default=10000, help="cap for w64_d8")
    ap.add_argument("--search-regions", type=int, default=20000, help="cap for the LP search on w64_d4 and w64_d5")
    ap.add_argument("--scale-regions", type=int, default=1024, help="regions per d in the d-scaling sweep")
    ap.add_argument("--dims", default="4,8,16,24,32,64")
    ap.add_argument("--scale-repeats", type=int, default=5, help="measured runs per d (the median is reported)")
    ap.add_argument("--interleave", type=int, default=0,
                    help="d-scaling in rounds: every d once per round, this many rounds (0: each d's runs in a row)")
    ap.add_argument("--deep-max-regions", type=int, default=None, help="cap for 3x16_d6 (default: complete)")
    ap.add_argument("--baseline-seconds", type=float, default=30.0)
    ap.add_argument("--relucent-polys", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--walk-min-dim", type=int, default=None,
                    help="first d with the primal walks (default: the library's; a huge value turns them off)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "enumerate.json"))
    ap.add_argument("--plot", default=os.path.join(HERE, "results", "enumerate_dscaling.png"))
    ap.add_argument("--relucent-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.relucent_child:
        print(json.dumps(_relucent_child(args.relucent_child, args.relucent_polys)), flush=True)
        return
    only = set(args.only.split(","))
    if args.walk_min_dim is not None:
        enumeration._WALK_MIN_DIM = args.walk_min_dim
    out = {"machine": machine(), "command": "python benchmarks/enumerate.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None), "results": {}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    # A partial run (--only) updates its keys and keeps the others; "runs" says which run measured what.
    if os.path.exists(args.out):
        with open(args.out) as f:
            old = json.load(f)
        out["results"] = old.get("results", {})
        out["runs"] = old.get("runs", {})
    out.setdefault("runs", {})

    def save(key, value):
        out["results"][key] = value
        out["runs"][key] = {"command": out["command"], "machine": out["machine"],
                            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        out["machine"]["loadavg_end"] = os.getloadavg()
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1, default=float)
        print(key, json.dumps(value, default=float), flush=True)

    B = args.batch_size
    net4 = random_net(0, 4, (64,))
    for d in (4, 5):
        if f"w64_d{d}" not in only:
            continue
        net = net4 if d == 4 else random_net(0, d, (64,))
        full = complete_run(net)
        with lp_search_only():
            search = timed_enumeration(net, max_regions=args.search_regions, batch_size=B)
        save(f"w64_d{d}", {"d": d, "widths": [64], "activation": "leaky_relu(0.1)", "enumerate": full,
                           "lp_search": search, "sample": sampling(net, args.samples)})
    if "baselines" in only:
        base = {"net": "w64_d4", "time_cap_s": args.baseline_seconds}
        base["naive_jax"] = naive_jax(net4, seconds=args.baseline_seconds, batch_size=B)
        save("baselines", base)
        base["scipy_highs"] = scipy_search(net4, seconds=args.baseline_seconds)
        save("baselines", base)
        base["relucent"] = relucent_search(random_net(0, 4, (64,)), max_polys=args.relucent_polys)
        save("baselines", base)
    if "w64_d8" in only:
        net8 = random_net(0, 8, (64,))
        save("w64_d8", {"d": 8, "widths": [64], "activation": "leaky_relu(0.1)",
                        "enumerate": timed_enumeration(net8, max_regions=args.max_regions, batch_size=B),
                        "sample": sampling(net8, args.samples)})
    if "output_bounds" in only:
        save("output_bounds", {
            "w64_d4": output_range(net4, highs_regions=args.highs_regions, samples=args.samples),
            "3x16_d6": output_range(random_net(0, 6, (16, 16, 16)), highs_regions=args.highs_regions,
                                    samples=args.samples)})
    if "3x16_d6" in only:
        netd = random_net(0, 6, (16, 16, 16))
        save("3x16_d6", {"d": 6, "widths": [16, 16, 16], "activation": "leaky_relu(0.1)",
                         "enumerate": timed_enumeration(netd, max_regions=args.deep_max_regions, batch_size=B),
                         "sample": sampling(netd, args.samples)})
    if "dscaling" in only and args.interleave:
        rows = interleaved_dscaling([int(x) for x in args.dims.split(",")], args.scale_regions, B, args.interleave)
        plot_dscaling(rows, args.plot)
        out["dscaling_plot"] = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.out)))
        save("dscaling", rows)
    elif "dscaling" in only:
        rows = []
        for d in (int(x) for x in args.dims.split(",")):
            net = random_net(0, d, (64,))
            Bd = _scaling_batch(d, B)
            with lp_search_only():
                r = {"d": d, "search": timed_enumeration(net, max_regions=args.scale_regions, batch_size=Bd,
                                                         repeats=args.scale_repeats)}
            if enumeration._vertex_subsets(d, 64) <= enumeration._VERTEX_MAX_SUBSETS:
                r["vertex"] = timed_enumeration(net, max_regions=None, batch_size=B, warm_regions=None)
            rows.append(r)
            save("dscaling", rows)
        plot_dscaling(rows, args.plot)
        out["dscaling_plot"] = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.out)))
        save("dscaling", rows)


if __name__ == "__main__":
    main()
