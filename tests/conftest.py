import os

import jax

# Exactness tests run in float64.
jax.config.update("jax_enable_x64", True)

DATA = os.path.join(os.path.dirname(__file__), "data")
