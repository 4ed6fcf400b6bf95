import os

# The suite's time is XLA's compile time (a test's kernels compile in seconds and run in milliseconds):
# LLVM at -O0 takes a fifth off it. Round-off may differ from -O3 in the last bits (as it does between
# CPUs and GPUs), which the tolerances of every test allow for.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
# The xdist workers and the tests' subprocesses (command line, several host devices) compile many of
# the same kernels: JAX's persistent compilation cache, in pytest's cache folder, lets each compile
# once (a cold suite: 890 s -> 727-768 s on 2 cores; later runs reuse it). Kept under 1 GiB (LRU).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "d", "jax-compilation-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(1 << 30))

import jax  # noqa: E402  (after XLA_FLAGS: read when the backend starts)
import pytest

# Exactness tests run in float64.
jax.config.update("jax_enable_x64", True)

DATA = os.path.join(os.path.dirname(__file__), "data")

_MAPS_LIMIT = 50_000  # below Linux's default vm.max_map_count (65,530)


def _num_mappings() -> int:
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux
        return 0


@pytest.fixture(autouse=True)
def _release_compiled_kernels():
    """Drop JAX's compiled executables once the process holds many memory mappings.

    Every executable keeps LLVM code sections mapped; the whole suite compiles several hundred kernels
    (every capacity bucket, dtype and option), which exhausted ``vm.max_map_count`` and aborted XLA with
    "Unable to allocate section memory" in a late test. Clearing only when needed keeps the kernels that
    neighbouring tests share.
    """
    yield
    if _num_mappings() > _MAPS_LIMIT:
        jax.clear_caches()
