import os

import jax
import pytest

# Exactness tests run in float64.
jax.config.update("jax_enable_x64", True)

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_kernels():
    """Drop JAX's compiled executables after each test module.

    Every executable keeps LLVM code sections mapped; the whole suite compiles several hundred kernels
    (every capacity bucket, dtype and option), which exhausted ``vm.max_map_count`` (65,530 mappings)
    and aborted XLA with "Unable to allocate section memory" in a late test.
    """
    yield
    jax.clear_caches()
