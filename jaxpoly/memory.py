"""How much memory the arrays of a computation may take (the default device's, or the host's on CPU), and
keeping the memory mappings of compiled kernels under the OS limit."""

from __future__ import annotations

import logging
import os

import jax

_FALLBACK = 8 << 30


def host_bytes() -> int:
    """Bytes of physical memory on this host (8 GiB when the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return _FALLBACK


def on_cpu() -> bool:
    """Whether the default JAX device is a CPU: the host-side tuning (batch size, LP pool lanes) differs
    from a GPU's or TPU's, whose lanes run in parallel."""
    return jax.devices()[0].platform == "cpu"


def device_bytes() -> int:
    """Bytes the default JAX device can hold: its allocator's limit on a GPU/TPU, physical memory on CPU.

    On an accelerator the result is also capped by host memory, since finished results are copied back.
    """
    if on_cpu():
        return host_bytes()
    dev = jax.devices()[0]
    try:
        limit = int((dev.memory_stats() or {}).get("bytes_limit", 0))
    except Exception:  # noqa: BLE001 - backends without memory_stats
        limit = 0
    return min(limit, host_bytes()) if limit > 0 else host_bytes()


def _num_mappings() -> int:
    """Memory mappings this process holds (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _max_mappings() -> int:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 65530  # Linux's default


def release_compiled_kernels(fraction: float = 0.75) -> bool:
    """Drop JAX's compiled executables (``jax.clear_caches()``) when this process holds more than
    ``fraction`` of the memory mappings Linux allows it (``vm.max_map_count``, 65,530 by default).

    Every XLA CPU executable keeps its code sections mapped, and each network shape, capacity bucket and
    option compiles new ones: a sweep over many architectures in one process reached the limit after
    about 55 networks, and XLA then failed to allocate code memory and the process crashed. The public
    entry points call this first; clearing costs recompilation, not results. Returns whether it cleared.
    """
    used = _num_mappings()
    if used <= fraction * _max_mappings():
        return False
    log = logging.getLogger("jaxpoly")
    log.warning("this process holds %d memory mappings, near the OS limit (vm.max_map_count = %d), most of them "
                "compiled XLA kernels: clearing JAX's compilation caches (kernels compile again when next used)",
                used, _max_mappings())
    jax.clear_caches()
    return True
