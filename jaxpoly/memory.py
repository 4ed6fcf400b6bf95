"""How much memory the arrays of a computation may take: the default device's, or the host's on CPU."""

from __future__ import annotations

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
