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

from jaxpoly.memory import release_compiled_kernels  # noqa: E402

# Exactness tests run in float64.
jax.config.update("jax_enable_x64", True)

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(autouse=True)
def _release_compiled_kernels():
    """Drop JAX's compiled executables once the process holds many memory mappings
    (:func:`jaxpoly.memory.release_compiled_kernels`, which ``extract`` and ``enumerate_regions`` also
    call): the whole suite compiles several hundred kernels per worker (every capacity bucket, dtype and
    option), which exhausted ``vm.max_map_count`` and aborted XLA with "Unable to allocate section
    memory" in a late test. Clearing only when needed keeps the kernels that neighbouring tests share.
    """
    yield
    release_compiled_kernels()


@pytest.fixture
def lose_a_ctrl_c(monkeypatch):
    """A function that presses Ctrl-C while a finalizer runs: its KeyboardInterrupt is raised there and
    Python drops it (reported to ``sys.unraisablehook``, here a list the fixture returns second)."""
    import signal
    import sys

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("Ctrl-C is handled by the test runner here")
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)

    class Finalized:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)
            for _ in range(100):  # (the handler runs between bytecodes: here)
                pass

    return Finalized, dropped
