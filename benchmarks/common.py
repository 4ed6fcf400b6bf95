"""What every benchmark records besides its timings: the device it ran on and its peak memory."""

from __future__ import annotations

import os
import resource

import jax


def device_info() -> dict:
    """The default JAX backend and device, e.g. ``{"backend": "gpu", "device_kind": "NVIDIA H200"}``, and
    ``cores_used``: the CPU cores this process may run on (``taskset``), which also sizes XLA's CPU
    thread pool unless ``PJRT_NPROC`` (recorded when set) does."""
    dev = jax.devices()[0]
    out = {"backend": jax.default_backend(), "device_kind": dev.device_kind, "num_devices": jax.device_count(),
           "cores_used": len(os.sched_getaffinity(0))}
    if "PJRT_NPROC" in os.environ:
        out["PJRT_NPROC"] = os.environ["PJRT_NPROC"]
    return out


def peak_memory() -> dict:
    """Peak host RSS of this process (MiB) and, on an accelerator, the device allocator's peak (MiB)."""
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        out["peak_device_mib"] = stats.get("peak_bytes_in_use", 0) / 2**20
    return out
