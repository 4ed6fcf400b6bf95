"""Balestriero & LeCun (ICASSP 2023), Figure 1: regions found against wall time, exact enumeration
(``enumerate_regions``) against uniform sampling (``sample_regions``), one hidden leaky-ReLU layer of
width 64 with random weights, box [-1, 1]^d, d = 4 and 8 (not a test).

Each panel also carries an independent estimate of the total: a single layer in general position has
``sum_k N_k`` regions in a box, ``N_k`` the number of k-subsets of its hyperplanes whose flat meets the
open box; ``estimate_regions`` samples k-subsets (HiGHS decides each flat) and scales. In [-1, 1]^8 that
total is about 2.9e8 regions, beyond any method's reach on this machine (about 18 hours at the LP
search's rate), so a third panel takes the same d = 8 network in the smaller box [-0.2, 0.2]^8, where the exact
search finishes.

Exact curves: the vertex path (d = 4: the whole arrangement at once, no LPs) and the LP search (a
curve per batch; stopped by a KeyboardInterrupt after ``--exact-seconds``, which returns the regions
certified so far with ``complete=False``). Sampling: batches of ``--sample-batch`` uniform points,
distinct activation patterns so far, until the sampling budget is spent. Compile time is excluded
(every kernel is warmed up first). Writes ``results/figure1.png`` and ``results/figure1.json``.

    python benchmarks/figure1.py [--panels 4:1,8:1,8:0.2] [--exact-seconds 120] [--sample-seconds 60] [--replot]
"""

from __future__ import annotations

import argparse
import json
import math
from itertools import combinations
import os
import sys
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import peak_memory  # noqa: E402
from enumerate import lp_search_only, machine, random_net, warm_up_as  # noqa: E402

from jaxpoly import enumeration  # noqa: E402
from jaxpoly.enumeration import enumerate_regions, sample_regions  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


class _Recorder:
    """Stands in for ``enumeration._Progress``: records (time, regions of the last level) per batch and
    raises KeyboardInterrupt once the time budget is spent (the documented clean stop)."""

    budget = float("inf")
    curve: list = []
    t0 = 0.0

    def __init__(self, enabled, num_levels):
        self.L, self.level, self.count = num_levels, 0, 0

    def start(self, level):
        self.level, self.count = level, 0

    def update(self, n, queued):
        if self.level == self.L - 1:
            self.count += n
            _Recorder.curve.append((time.perf_counter() - _Recorder.t0, self.count))
        if time.perf_counter() - _Recorder.t0 > _Recorder.budget:
            raise KeyboardInterrupt

    def close(self):
        pass


def exact_curve(net, bounds, budget: float, batch_size: int) -> dict:
    old = enumeration._Progress
    enumeration._Progress = _Recorder
    try:
        _Recorder.budget, _Recorder.curve = float("inf"), []
        with warm_up_as(None, 2 * batch_size):
            enumerate_regions(net, bounds, max_regions=2 * batch_size, batch_size=batch_size, progress=True)
        _Recorder.budget, _Recorder.curve, _Recorder.t0 = budget, [(0.0, 0)], time.perf_counter()
        R = enumerate_regions(net, bounds, batch_size=batch_size, progress=True)
        wall = time.perf_counter() - _Recorder.t0
    finally:
        enumeration._Progress = old
    curve = list(_Recorder.curve)
    if curve[-1][1] != len(R):
        curve.append((wall, len(R)))
    return {"regions": len(R), "complete": R.complete, "wall_s": wall, "regions_per_s": len(R) / wall,
            "time_s": [t for t, _ in curve], "found": [c for _, c in curve]}


def sampling_curve(net, bounds, budget: float, batch: int, max_samples: int) -> dict:
    d = net.input_dim
    sample_regions(net, bounds, batch, key=jax.random.key(123), batch_size=batch)  # warm
    seen: set[bytes] = set()
    ts, found, ns = [0.0], [0], [0]
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < budget and i * batch < max_samples:
        pats = sample_regions(net, bounds, batch, key=jax.random.key(i), batch_size=batch)
        seen.update(bytes(r) for r in np.packbits(pats, axis=1))
        i += 1
        ts.append(time.perf_counter() - t0)
        found.append(len(seen))
        ns.append(i * batch)
    return {"samples": i * batch, "distinct": len(seen), "wall_s": ts[-1], "time_s": ts, "found": found,
            "samples_at": ns, "d": d}


def estimate_regions(net, half: float, samples: int, seed: int = 0) -> dict:
    """Estimated number of regions of a one-hidden-layer ``net`` in ``[-half, half]^d``: ``sum_k N_k``
    with ``N_k`` counted exactly when there are at most ``samples`` k-subsets, else ``C(n, k)`` times
    the fraction of ``samples`` random k-subsets whose flat meets the open box (for ``k = d`` the flat
    is a point: ``100 * samples`` of them, solved at once). Returns the estimate, its standard error
    and the per-k terms. Independent of jaxpoly's search (HiGHS on the host)."""
    from scipy.optimize import linprog

    W = np.asarray(net.stages[0].kernels[0], np.float64).T  # (n, d): hyperplane i is W_i x + b_i = 0
    b = np.asarray(net.stages[0].bias, np.float64)
    n, d = W.shape
    rng = np.random.default_rng(seed)
    # meets the open box iff max t s.t. W_S x = -b_S, |x_j| + t <= half, t <= 1 is positive
    c = np.zeros(d + 1)
    c[-1] = -1.0
    box = np.block([[np.eye(d), np.ones((d, 1))], [-np.eye(d), np.ones((d, 1))]])

    def meets(S) -> bool:
        if len(S) == 0:
            return True
        r = linprog(c, A_ub=box, b_ub=np.full(2 * d, half), A_eq=np.hstack([W[S], np.zeros((len(S), 1))]),
                    b_eq=-b[S], bounds=[(None, None)] * d + [(None, 1.0)], method="highs")
        return r.status == 0 and -r.fun > 1e-12 * half

    terms, var = [], 0.0
    for k in range(d + 1):
        total = math.comb(n, k)
        if k == d:
            m = 100 * samples
            S = np.argsort(rng.random((m, n)), axis=1)[:, :d]
            x = np.linalg.solve(W[S], -b[S][..., None])[..., 0]
            p = float(np.mean(np.all(np.abs(x) < half, axis=1)))
            exact = False
        elif total <= samples:
            m, p, exact = total, float(np.mean([meets(list(S)) for S in combinations(range(n), k)])), True
        else:
            m, exact = samples, False
            p = float(np.mean([meets(rng.choice(n, k, replace=False)) for _ in range(samples)]))
        terms.append({"k": k, "subsets": total, "fraction": p, "sampled": m, "exact": exact})
        if not exact:
            var += total**2 * p * (1 - p) / m
    est = sum(t["subsets"] * t["fraction"] for t in terms)
    return {"estimate": est, "stderr": math.sqrt(var), "terms": terms, "samples": samples}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--panels", default="4:1,8:1,8:0.2", help="d:half pairs, box [-half, half]^d")
    ap.add_argument("--estimate-samples", type=int, default=4000, help="k-subsets per k of the estimate")
    ap.add_argument("--exact-seconds", type=float, default=120.0, help="time cap of each LP-search curve")
    ap.add_argument("--sample-seconds", type=float, default=60.0, help="sampling budget per d")
    ap.add_argument("--sample-batch", type=int, default=65536)
    ap.add_argument("--max-samples", type=int, default=10**9)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "figure1.json"))
    ap.add_argument("--png", default=os.path.join(HERE, "results", "figure1.png"))
    ap.add_argument("--replot", action="store_true", help="only redraw the PNG from the JSON")
    args = ap.parse_args()
    if args.replot:
        with open(args.out) as f:
            plot(json.load(f), args.png)
        return
    res = {"machine": machine(), "setting": "one hidden layer, width 64, leaky-ReLU(0.1), random weights "
           "(N(0, 1/d) kernel, N(0, 0.25) bias), box [-half, half]^d", "panels": []}
    for spec in args.panels.split(","):
        d, half = int(spec.split(":")[0]), float(spec.split(":")[1])
        net = random_net(0, d, (64,))
        bounds = (-half, half)
        panel = {"d": d, "half": half}
        if enumeration._vertex_subsets(d, 64) <= enumeration._VERTEX_MAX_SUBSETS:
            panel["exact_vertex"] = exact_curve(net, bounds, float("inf"), args.batch_size)
        with lp_search_only():
            panel["exact_search"] = exact_curve(net, bounds, args.exact_seconds, args.batch_size)
        panel["sampling"] = sampling_curve(net, bounds, args.sample_seconds, args.sample_batch, args.max_samples)
        t = time.perf_counter()
        panel["estimate"] = estimate_regions(net, half, args.estimate_samples)
        panel["estimate"]["wall_s"] = time.perf_counter() - t
        panel.update(peak_memory())
        res["panels"].append(panel)
        print(d, {k: {kk: vv for kk, vv in v.items() if not isinstance(vv, list)} if isinstance(v, dict) else v
                  for k, v in panel.items()}, flush=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1, default=float)
    plot(res, args.png)


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = res["panels"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    for ax, p in zip(axes[0], panels):
        full = None
        if "exact_vertex" in p:
            e = p["exact_vertex"]
            # nothing is returned before the vertex path finishes: a step at its wall time
            ax.plot(e["time_s"], e["found"], "-", color="C2", lw=2, drawstyle="steps-post",
                    label=f"exact, vertex path ({e['regions']}, {e['wall_s']:.1f} s)")
            full = e["regions"] if e["complete"] else None
        e = p["exact_search"]
        lab = "exact, LP search" + ("" if e["complete"] else f" (stopped at {e['wall_s']:.0f} s)")
        ax.plot(e["time_s"], e["found"], "-", color="C0", lw=2, label=lab)
        if e["complete"]:
            full = e["regions"]
        s = p["sampling"]
        ax.plot(s["time_s"], s["found"], "-", color="C3", lw=2, label=f"uniform sampling ({s['samples']:.2g} points)")
        if full is not None:
            ax.axhline(full, color="k", ls="--", lw=1, label=f"all regions ({full})")
        if "estimate" in p:
            est, se = p["estimate"]["estimate"], p["estimate"]["stderr"]
            ax.axhspan(max(est - 2 * se, 0.0), est + 2 * se, color="0.5", alpha=0.25)
            ax.axhline(est, color="0.4", ls=":", lw=1.5, label=f"estimated total {est:.3g} ± {2 * se:.1g} (2σ)")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(left=0.0)
        ax.set_yscale("symlog", linthresh=100.0)
        ax.set_ylim(bottom=0.0)
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("regions found")
        h = p.get("half", 1.0)
        ax.set_title(f"d = {p['d']}: width 64, leaky-ReLU, [-{h:g}, {h:g}]^{p['d']}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    main()
