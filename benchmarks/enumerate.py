"""Benchmark ``enumerate_regions`` against the sampling baseline ``sample_regions`` (not a test).

Cases (Balestriero & LeCun 2023's setting): one hidden leaky-ReLU layer of width 64 with random
weights in [-1, 1]^d for d = 4 and 8, and a 3-hidden-layer width-16 net in d = 6. Each enumeration
runs twice with the same shapes: the first run's extra time is reported as compile time. Writes JSON.

    python benchmarks/enumerate.py [--max-regions 20000] [--samples 1000000] [--out results/enumerate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jaxpoly as jp  # noqa: E402
from jaxpoly.enumeration import enumerate_regions, sample_regions  # noqa: E402


def random_net(seed: int, d: int, widths: tuple[int, ...]) -> jp.Network:
    rng = np.random.default_rng(seed)
    stages, prev = [], d
    for i, w in enumerate(widths):
        stages.append(jp.Stage((rng.standard_normal((prev, w)) / np.sqrt(prev),), rng.standard_normal(w) * 0.5,
                               sources=(i,), activation=jp.leaky_relu(0.1)))
        prev = w
    out = jp.Stage((rng.standard_normal((prev, 1)),), np.zeros(1), sources=(len(widths),), activation=jp.identity())
    return jp.Network(tuple(stages), out)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(name: str, d: int, widths, max_regions: int, samples: int, batch_size: int) -> dict:
    net = random_net(0, d, widths)
    bounds = (-1.0, 1.0)
    t = time.perf_counter()
    enumerate_regions(net, bounds, max_regions=min(max_regions, 2 * batch_size), batch_size=batch_size)
    first = time.perf_counter() - t
    t = time.perf_counter()
    enumerate_regions(net, bounds, max_regions=min(max_regions, 2 * batch_size), batch_size=batch_size)
    warm_small = time.perf_counter() - t
    t = time.perf_counter()
    R = enumerate_regions(net, bounds, max_regions=max_regions, batch_size=batch_size)
    wall = time.perf_counter() - t
    t = time.perf_counter()
    seen = sample_regions(net, bounds, samples, key=jax.random.key(0))
    t_sample = time.perf_counter() - t
    return {
        "case": name, "d": d, "widths": list(widths), "activation": "leaky_relu(0.1)",
        "enumerate": {
            "regions": len(R), "complete": R.complete, "wall_s": wall, "compile_s": max(first - warm_small, 0.0),
            "regions_per_s": len(R) / wall, "lps": R.stats["lps"], "lp_fallbacks": R.stats["lp_fallbacks"],
            "lps_per_region": R.stats["lps"] / max(len(R), 1), "rays": R.stats["rays"],
            "cells_all_levels": R.stats["cells"], "batches": R.stats["batches"], "max_regions": max_regions,
        },
        "sample": {"samples": samples, "distinct_patterns": int(len(seen)), "wall_s": t_sample,
                   "patterns_per_s": len(seen) / t_sample},
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-regions", type=int, default=20000)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "enumerate.json"))
    args = ap.parse_args()
    cases = [("w64_d4", 4, (64,)), ("w64_d8", 8, (64,)), ("3x16_d6", 6, (16, 16, 16))]
    results = []
    for name, d, widths in cases:
        r = run_case(name, d, widths, args.max_regions, args.samples, args.batch_size)
        print(json.dumps(r), flush=True)
        results.append(r)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                   "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
