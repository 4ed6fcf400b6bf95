"""Pools of lanes: many independent loops of varying length stepped together, refilled as they end.

A batched ``while_loop`` (``vmap`` of one) runs until its slowest instance ends, so a batch costs its
longest instance's steps times its size. A pool instead keeps ``P`` lanes busy: it steps every lane
until a quarter of them have ended, records those, and loads the next queued items into their lanes
(only those lanes are touched), so a batch costs about its *mean* steps times ``P``. Users: the
warm-started redundancy LPs (:func:`jaxpoly.primal.exceeds`), the walks of
:func:`jaxpoly.oracle.walk_certificates` and the pooled dual simplex (:func:`jaxpoly.lp._solve_pool`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["REFILL", "refill", "refill_level"]

REFILL = 0.75  # a pool refills once a quarter of its lanes have ended


def refill(free: jax.Array, q: jax.Array, count: jax.Array, size: int):
    """The next items of a pool: up to ``size`` of its free lanes ``free (P,) bool`` take the items
    ``q, q + 1, ...`` below ``count``. Returns ``(slots (size,), items (size,), q)``: the lanes (``P``
    pads), their items (``-1``: none) and the next item to load."""
    P = free.shape[0]
    slots = jnp.nonzero(free, size=size, fill_value=P)[0]
    rank = jnp.arange(size, dtype=jnp.int32)
    items = jnp.where((slots < P) & (q + rank < count), q + rank, -1).astype(jnp.int32)
    return slots, items, jnp.minimum(q + jnp.sum(slots < P, dtype=jnp.int32), count)


def refill_level(q: jax.Array, count: jax.Array, lanes: int, drain: int = 0) -> jax.Array:
    """Running lanes of a pool of ``lanes`` at which it stops stepping to refill (a quarter have
    ended), or, once every item is loaded, to drain (down to ``drain`` running lanes)."""
    return jnp.where(q < count, int(lanes * REFILL), drain)
