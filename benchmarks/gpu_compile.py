"""Compile every kernel of an enumeration for an NVIDIA H200 on a machine without a GPU.

XLA can compile for a GPU it does not have ("deviceless" ahead-of-time compilation): lowering, the HLO
passes, LLVM and ptxas all run and produce the GPU binary; only what needs the device is skipped, i.e.
the autotuners (GEMM and fusion-emitter choice), which then take their defaults. This script runs an
enumeration on the CPU as it would run on a GPU (the accelerator batch size and pool lanes), records
every computation it compiles, and compiles each one for an H200, timing it. It tells whether a kernel
lowers and compiles for CUDA at all and how long LLVM/ptxas take, without a lent GPU.

Needs JAX's CUDA plugin beside the CPU jaxlib (``pip install "jax[cuda13]==<jax version>"``, in a venv);
no GPU or driver. Uses one JAX internal (``jax._src.pjit._pjit_call_impl_python``, where a jitted call
that misses the cache is compiled) to record computations; checked with JAX 0.10.2.

    python benchmarks/gpu_compile.py --dims 4,8,16,32,64 --out benchmarks/results/gpu_compile.json
"""

from __future__ import annotations

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")  # deviceless even where a GPU is present
os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")  # no driver, so no cuPTI to check

import argparse  # noqa: E402
import hashlib  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from jax._src import core  # noqa: E402
from jax._src import pjit as _pjit  # noqa: E402
from jax.experimental import topologies  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import enumerate as bench  # noqa: E402  (benchmarks/enumerate.py: the benchmark's networks)

import jaxpoly as jp  # noqa: E402
from jaxpoly import enumeration, memory  # noqa: E402

# XLA's GpuTargetConfig for one H200 (SXM, 141 GB): compute capability 9.0, 132 SMs, as the device
# reports them; CUDA 13 runtime, cuDNN 9.
H200 = """
gpu_device_info {
  threads_per_block_limit: 1024 threads_per_warp: 32 shared_memory_per_block: 49152
  shared_memory_per_core: 233472 threads_per_core_limit: 2048 core_count: 132 fpus_per_core: 128
  block_dim_limit_x: 2147483647 block_dim_limit_y: 65535 block_dim_limit_z: 65535
  memory_bandwidth: 4800000000000 l2_cache_size: 52428800 clock_rate_ghz: 1.98
  device_memory_size: 150121545728 shared_memory_per_block_optin: 232448
  cuda_compute_capability { major: 9 minor: 0 }
  registers_per_core_limit: 65536 registers_per_block_limit: 65536
}
platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 }
runtime_version { major: 13 minor: 0 }
device_description_str: "NVIDIA H200"
"""


RAYS = inspect.signature(jp.enumerate_regions).parameters["rays"].default


def h200_sharding() -> jax.sharding.NamedSharding:
    """A one-device sharding on a (virtual) H200: arguments placed there compile for CUDA."""
    try:
        topology = topologies.get_topology_desc(platform="cuda", target_config=H200, topology="1x1x1")
    except Exception as e:  # noqa: BLE001 - the plugin's absence shows up as several exception types
        raise SystemExit(f"no CUDA compiler: {e}\ninstall JAX's CUDA plugin of this JAX's version, "
                         f'e.g. pip install "jax[cuda13]=={jax.__version__}" (in a venv)') from None
    mesh = topologies.make_mesh(topology, (1,), ("d",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())


class Recorder:
    """Records each distinct computation a jitted call compiles: its name and closed jaxpr."""

    def __init__(self):
        self.seen: dict[str, tuple[str, core.ClosedJaxpr]] = {}
        self._inner = _pjit._pjit_call_impl_python

    def __enter__(self):
        def record(*args, jaxpr, **kw):
            key = hashlib.sha1(str(jaxpr).encode()).hexdigest()
            self.seen.setdefault(key, (kw["name"], jaxpr))
            return self._inner(*args, jaxpr=jaxpr, **kw)

        _pjit._pjit_call_impl_python = record
        return self

    def __exit__(self, *exc):
        _pjit._pjit_call_impl_python = self._inner


def as_on_accelerator(device_bytes: int) -> None:
    """Tune the CPU run as on a GPU of ``device_bytes`` (batch size, pool lanes, unchunked Chebyshev
    LPs): the computations recorded then have a GPU run's shapes."""
    memory.on_cpu = lambda: False
    enumeration.device_bytes = lambda: device_bytes


def compile_for_gpu(name: str, jaxpr: core.ClosedJaxpr, sharding) -> dict:
    args = [jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding) for a in jaxpr.in_avals]
    row = {"kernel": name, "inputs": [f"{a.dtype}{list(a.shape)}" for a in jaxpr.in_avals]}
    print(f"  {name} {' '.join(row['inputs'][:4])}{' ...' if len(args) > 4 else ''}", end="", flush=True)
    t = time.perf_counter()
    try:
        lowered = jax.jit(core.jaxpr_as_fun(jaxpr)).lower(*args)
        row["lower_s"] = time.perf_counter() - t
        t = time.perf_counter()
        compiled = lowered.compile()
        row["compile_s"] = time.perf_counter() - t
        row["ok"] = True
        m = compiled.memory_analysis()
        row["gpu_bytes"] = {"arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
                            "temporaries": m.temp_size_in_bytes, "aliased": m.alias_size_in_bytes}
        row["gpu_bytes_total"] = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes \
            - m.alias_size_in_bytes
        print(f": {row['compile_s']:.2f} s, {row['gpu_bytes_total'] / 2**20:.0f} MiB", flush=True)
    except Exception as e:  # noqa: BLE001 - reported per kernel
        row["ok"], row["error"] = False, f"{type(e).__name__}: {e}"[:2000]
        print(f": FAILED {row['error'][:200]}", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", default="4,8,16,32,64", help="input dimensions of the width-64 single layer")
    ap.add_argument("--deep", action=argparse.BooleanOptionalAction, default=True,
                    help="also the 3x16 net at d = 6 (levels 2 and 3)")
    ap.add_argument("--batch-sizes", default="256,2048",
                    help="256: the d-scaling sweep's (benchmarks/enumerate.py); 2048: enumerate_regions' default "
                         "on a GPU")
    ap.add_argument("--device-gib", type=float, default=104.0,
                    help="the GPU memory the batch sizes are fitted to (an H200's allocator limit under JAX's "
                         "default 75 %% preallocation: about 104 GiB)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "gpu_compile.json"))
    args = ap.parse_args()
    sharding = h200_sharding()
    as_on_accelerator(int(args.device_gib * 2**30))
    nets = [(f"w64_d{d}", bench.random_net(0, d, (64,))) for d in map(int, args.dims.split(","))]
    if args.deep:
        nets.append(("3x16_d6", bench.random_net(0, 6, (16, 16, 16))))
    out = {"jax": jax.__version__, "target": "NVIDIA H200 (sm_90), deviceless: no autotuning",
           "host": bench.device_info(), "cases": []}
    # each net at each batch size (or less where it does not fit; once if two sizes come to one)
    cases = {f"{base}_b{B}": (net, B) for base, net in nets
             for B in (bench._scaling_batch(net.input_dim, int(b)) for b in args.batch_sizes.split(","))}
    for name, (net, B) in cases.items():
        # the benchmarks' cold call: two batches, with the vertex path on the first level where d
        # allows it, then with the LP search
        with Recorder() as rec:
            t = time.perf_counter()
            with bench.warm_up_as(None, 2 * B):
                regions = jp.enumerate_regions(net, bench.BOUNDS, max_regions=2 * B, batch_size=B)
            with bench.lp_search_only():
                jp.enumerate_regions(net, bench.BOUNDS, max_regions=2 * B, batch_size=B)
            cpu_s = time.perf_counter() - t
        print(f"{name}: {len(regions)} regions on the CPU in {cpu_s:.1f} s, {len(rec.seen)} computations "
              "(not compiled in an earlier case); compiling for the H200", flush=True)
        rows = [compile_for_gpu(k, j, sharding) for k, j in rec.seen.values()]
        done = [r for r in rows if r["ok"]]
        case = {"case": name, "d": net.input_dim, "batch_size": B, "computations": len(rows),
                "failed": len(rows) - len(done),
                "compile_s_total": sum(r["compile_s"] for r in done),
                "compile_s_max": max((r["compile_s"] for r in done), default=0.0),
                "slowest": max(done, key=lambda r: r["compile_s"])["kernel"] if done else None,
                # a kernel's arguments, outputs and temporaries on the GPU, against the batch-size rule's
                # estimate of a batch's peak (enumeration.estimate_batch_bytes)
                "largest_kernel_gpu_bytes": max((r["gpu_bytes_total"] for r in done), default=0),
                "largest_kernel": max(done, key=lambda r: r["gpu_bytes_total"])["kernel"] if done else None,
                "estimate_batch_bytes": enumeration.estimate_batch_bytes(
                    net.input_dim, net.num_hyperplanes, B, RAYS),
                "kernels": sorted(rows, key=lambda r: -r.get("compile_s", 1e9))}
        out["cases"].append(case)
        print(f"{name}: {case['computations']} computations, {case['failed']} failed, "
              f"{case['compile_s_total']:.1f} s in all, slowest {case['slowest']} {case['compile_s_max']:.2f} s; "
              f"largest {case['largest_kernel']} {case['largest_kernel_gpu_bytes'] / 2**20:.0f} MiB on the GPU, "
              f"estimate of a batch {case['estimate_batch_bytes'] / 2**20:.0f} MiB")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
