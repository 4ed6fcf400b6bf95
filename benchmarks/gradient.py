"""Differentiable vertex positions vs re-extraction on the 3D bunny (``bunny-3d-3x16`` in [-0.5, 0.5]^3).

Times (best of ``--repeat`` warm calls; the first call of each jitted function, minus the warm time,
is reported as compile time):

* ``system_build_s``: :func:`jaxpoly.geometry.vertex_system`, once per extraction (host work + a
  forward pass; warm: kernels cached);
* ``positions_s``: ``jit(vertex_positions)(net, system)`` for all ``V`` vertices;
* ``value_and_grad_s``: ``jit(value_and_grad(sum |x|^2))`` with respect to the Network;
* ``level_set_value_and_grad_s``: the same for the level-set vertices only (what a surface loss needs);
* ``stale_check_s``: :func:`jaxpoly.geometry.is_stale`;
* ``extract_s``: a full :func:`jaxpoly.extract` (what a finite-difference or re-extraction step costs).

    python benchmarks/gradient.py          # → benchmarks/results/gradient_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


def _timed(fn, repeat: int) -> tuple[float, float]:
    """``(first_call_s, best_warm_s)``; results are blocked on."""
    import jax

    t = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t
    warm = []
    for _ in range(repeat):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        warm.append(time.perf_counter() - t)
    return first, min(warm)


def run(model: str, repeat: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxpoly
    from jaxpoly import geometry as g
    from common import device_info, peak_memory

    jax.config.update("jax_enable_x64", True)
    net = jaxpoly.load_model(model)
    box = (-0.5, 0.5)
    ex_first, ex_warm = _timed(lambda: jaxpoly.extract(net, box).vertices, repeat)
    c = jaxpoly.extract(net, box)
    sys_first, sys_warm = _timed(lambda: g.vertex_system(c).ids, repeat)
    system = g.vertex_system(c)
    pos = jax.jit(g.vertex_positions)
    vg = jax.jit(jax.value_and_grad(lambda n, s: jnp.sum(g.vertex_positions(n, s) ** 2)))
    p_first, p_warm = _timed(lambda: pos(net, system), repeat)
    g_first, g_warm = _timed(lambda: vg(net, system), repeat)
    level = g.level_set_system(c)
    lg_first, lg_warm = _timed(lambda: vg(net, level), repeat)
    s_first, s_warm = _timed(lambda: np.asarray(g.is_stale(net, c)), repeat)
    err = float(np.abs(np.asarray(pos(net, system)) - c.vertices).max())
    return {
        "model": model, "box": list(box), "V": c.num_vertices, "E": c.num_edges,
        "level_set_vertices": c.level_set_mesh().num_vertices,
        "max_abs_error_vs_extract": err,
        "extract_s": ex_warm, "extract_compile_s": ex_first - ex_warm,
        "system_build_s": sys_warm, "system_build_compile_s": sys_first - sys_warm,
        "positions_s": p_warm, "positions_compile_s": p_first - p_warm,
        "value_and_grad_s": g_warm, "value_and_grad_compile_s": g_first - g_warm,
        "level_set_value_and_grad_s": lg_warm, "level_set_value_and_grad_compile_s": lg_first - lg_warm,
        "stale_check_s": s_warm, "stale_check_compile_s": s_first - s_warm,
        "ratio_extract_over_value_and_grad": ex_warm / g_warm,
        "ratio_extract_over_positions": ex_warm / p_warm,
        "ratio_extract_over_level_set_value_and_grad": ex_warm / lg_warm,
        "repeat": repeat, "platform": platform.platform(), "jax": jax.__version__, **device_info(),
        **peak_memory(),
    }


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bunny-3d-3x16")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", default=os.path.join(here, "results", "gradient_cpu.json"))
    a = p.parse_args()
    result = run(a.model, a.repeat)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
