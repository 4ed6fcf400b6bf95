"""jaxpoly.pool.run, the pool that the warm LPs and the pooled dual simplex share, on a toy loop whose
answers are known: item ``i`` counts down from ``length[i]``."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpoly import pool


def _countdowns(length: np.ndarray, count: int, lanes: int):
    """``(steps recorded per item (N,), lane steps counted through the state)``: each item's lane
    steps ``length[i]`` times, ``record`` adds (so an item recorded twice shows double)."""
    length = jnp.asarray(length, jnp.int32)
    N = length.shape[0]

    def load(item, outs):
        left = jnp.where(item >= 0, length[jnp.maximum(item, 0)], 0)
        status = jnp.where(item >= 0, pool.RUNNING, pool.IDLE).astype(jnp.int32)
        return {"left": left, "steps": jnp.zeros_like(left), "status": status}

    def step(item, lane, state):
        run = lane["status"] == pool.RUNNING
        left = lane["left"] - run
        status = jnp.where(run & (left == 0), 0, lane["status"])
        return {"left": left, "steps": lane["steps"] + run, "status": status}, state + jnp.sum(run, dtype=jnp.int32)

    def record(lane, item, outs):
        return outs.at[jnp.where(item >= 0, item, N)].add(lane["steps"], mode="drop")

    @functools.partial(jax.jit, static_argnames=("lanes",))
    def go(count, lanes):
        return pool.run(load, step, record, lambda lane: lane["status"] == pool.RUNNING,
                        jnp.zeros(N, jnp.int32), count, size=N, lanes=lanes, state=jnp.int32(0))

    outs, state = go(jnp.int32(count), lanes)
    return np.asarray(outs), int(state)


@pytest.mark.parametrize("lanes", [1, 3, 8, 64])
@pytest.mark.parametrize("count", [0, 1, 37, 50])
def test_pool_runs_every_item_once(lanes, count):
    rng = np.random.default_rng(lanes + count)
    length = rng.integers(1, 30, size=50)
    length[rng.integers(0, 50, size=5)] = 80  # a few long ones, to leave a tail
    outs, state = _countdowns(length, count, lanes)
    # every item below count recorded once with all its steps, the rest (padding) never
    np.testing.assert_array_equal(outs, np.where(np.arange(50) < count, length, 0))
    assert state == length[:count].sum()
