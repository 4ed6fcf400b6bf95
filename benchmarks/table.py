"""Markdown tables for the README from the benchmark JSON files in ``benchmarks/results``.

    python benchmarks/table.py            # prints the extraction (both engines), gradient and output-range tables
"""

from __future__ import annotations

import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _load(name: str) -> dict | None:
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def _fmt_s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _peak(r: dict) -> str:
    host = f"{r['peak_rss_mb'] / 1024:.2f} GiB"
    if "peak_device_mib" not in r:
        return host
    return f"{r['peak_device_mib'] / 1024:.2f} GiB GPU, {host} host"


def extraction_table(*names: str) -> str:
    rows = ["| network | d | vertices | edges | regions | warm [s] | cold [s] | of which compile [s] | "
            "vertices/s | peak memory |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        data = _load(name)
        if data is None:
            continue
        for r in data["results"]:
            if "error" in r:
                rows.append(f"| {r['case']} | failed | | | | | | | | |")
                continue
            case = f"{r['case']} ({r['engine']})" if "engine" in r else r["case"]
            rows.append(
                f"| {case} | {r['input_dim']} | {r['vertices']:,} | {r['edges']:,} | {r['regions']:,} | "
                f"{_fmt_s(r['warm_s'])} | {_fmt_s(r['cold_s'])} | {_fmt_s(r['compile_s'])} | "
                f"{r['vertices_per_s']:,.0f} | {_peak(r)} |")
    return "\n".join(rows)


def gradient_table(name: str = "gradient_cpu.json") -> str:
    r = _load(name)
    if r is None:
        return ""
    return "\n".join([
        "| 3_3x16 bunny (27,562 vertices) | seconds (warm) |",
        "|---|---|",
        f"| `extract` (re-extraction) | {r['extract_s']:.3f} |",
        f"| `vertex_positions` (all vertices) | {r['positions_s']:.3f} |",
        f"| value and gradient of a loss over all vertices | {r['value_and_grad_s']:.3f} |",
        f"| value and gradient over the level-set vertices | {r['level_set_value_and_grad_s']:.4f} |",
        f"| staleness check | {r['stale_check_s']:.3f} |",
        "",
        f"Ratios to re-extraction: positions {r['ratio_extract_over_positions']:.0f}x, value and gradient over "
        f"all vertices {r['ratio_extract_over_value_and_grad']:.1f}x, over the level set "
        f"{r['ratio_extract_over_level_set_value_and_grad']:.0f}x cheaper.",
    ])


def output_bounds_table(name: str = "enumerate.json") -> str:
    data = _load(name)
    r = (data or {}).get("results", {}).get("output_bounds")
    if r is None:
        return ""
    rows = ["| network | d | regions | LPs | wall (s) | LPs/s | compile (s) | HiGHS LPs/s | max over the box | "
            "max of 10^6 samples |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for case, v in r.items():
        net, d = {"w64_d4": ("1×64", 4), "3x16_d6": ("3×16", 6)}.get(case, (case, "?"))
        rows.append(f"| {net} | {d} | {v['regions']:,} | {v['lps']:,} | {v['wall_s']:.1f} | **{v['lps_per_s']:,.0f}** | "
                    f"{v['compile_s']:.1f} | {v['highs']['lps_per_s']:,.0f} | {v['max_over_box']:.4f} | "
                    f"{v['max_of_samples']:.4f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(extraction_table("extract_cpu.json", "extract_8x32_cpu.json"))
    print()
    print(extraction_table("extract_regions_cpu.json"))
    print()
    print(extraction_table("extract_gpu.json", "extract_8x32_gpu.json"))
    print()
    print(gradient_table())
    print()
    print(gradient_table("gradient_gpu.json"))
    print()
    print(output_bounds_table())
