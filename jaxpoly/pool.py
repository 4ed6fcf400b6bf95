"""Pools of lanes: many independent loops of varying length stepped together, refilled as they end.

A batched ``while_loop`` (``vmap`` of one) runs until its slowest instance ends, so a batch costs its
longest instance's steps times its size. A pool instead keeps ``P`` lanes busy: it steps every lane
until a quarter of them have ended, records those, and loads the next queued items into their lanes
(only those lanes are touched), so a batch costs about its *mean* steps times ``P``. Once every item
is loaded, the last (longest) walks finish in a pool of a quarter the size. :func:`run` is that loop;
users: the warm-started redundancy LPs (:func:`jaxpoly.primal.exceeds`), the walks of
:func:`jaxpoly.oracle.walk_certificates` and the pooled dual simplex (:func:`jaxpoly.lp._solve_pool`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

__all__ = ["REFILL", "RUNNING", "IDLE", "refill", "refill_level", "sizes", "run"]

REFILL = 0.75  # a pool refills once a quarter of its lanes have ended
RUNNING = -1  # the status of a lane that steps on
IDLE = -2  # the status of a lane without an item


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


def sizes(lanes: int, size: int) -> tuple[int, int]:
    """``(P, K)``: the lanes of a pool of ``lanes`` over ``size`` items, and the lanes it loads and
    records per epoch (at most; :func:`run`)."""
    P = min(lanes, size)
    return P, max(P // 4, 1)


def _lanes_at(tree, at: jax.Array):
    return jax.tree.map(lambda a: a[at], tree)


def run(load: Callable, step: Callable, record: Callable, running: Callable, outs: Any, count: jax.Array, *,
        size: int, lanes: int, state: Any = None, take: Callable | None = None) -> tuple[Any, Any]:
    """Items ``0 .. count - 1`` (of at most ``size``) through a pool of ``P = min(lanes, size)`` lanes,
    inside ``jit``: load up to ``K = P / 4`` idle lanes, step until a quarter have ended (once every
    item is loaded: until at most ``K`` run), record up to ``K`` ended lanes, again; the last ``K``
    running lanes finish in a pool of ``K``.

    Args:
      load: ``(items (k,) int32, outs) -> lanes (k, ...)``, the start of each item (``-1``: an idle lane,
        which must not be running), which may use the results recorded so far.
      step: ``(items (n,), lanes (n, ...), state) -> (lanes, state)``, one step of every lane; a lane
        that is not running must come out unchanged (the pool steps all of them).
      record: ``(lanes (k, ...), items (k,), outs) -> outs``, the ended lanes' results (item ``-1``:
        nothing to record).
      running: ``lanes (n, ...) -> (n,) bool``.
      outs: the results, passed through ``record``; count: ``()`` the number of items.
      state: carried through ``step`` (e.g. what the walks found so far); take: ``(free (P,) bool, q,
        state, outs) -> (slots (K,), items (K,), q, outs)``, the next items for the free lanes from the
        queue position ``q`` (default :func:`refill`; a ``take`` may answer queued items itself).
    Returns:
      ``(outs, state)``.
    """
    P, K = sizes(lanes, size)
    if take is None:
        def take(free, q, state, outs):
            return refill(free, q, count, K) + (outs,)

    def steps(item, stop_at):
        """Step the pool until at most ``stop_at`` lanes run."""
        return lambda c: jax.lax.while_loop(lambda c: jnp.sum(running(c[0])) > stop_at,
                                            lambda c: step(item, *c), c)

    def epoch(c):
        lane, item, q, state, outs = c
        slots, new, q, outs = take(item < 0, q, state, outs)
        lane = jax.tree.map(lambda a, v: a.at[slots].set(v, mode="drop"), lane, load(new, outs))
        item = item.at[slots].set(new, mode="drop")
        lane, state = steps(item, refill_level(q, count, P, drain=K))((lane, state))
        done = jnp.nonzero(~running(lane) & (item >= 0), size=K, fill_value=P)[0]
        at = jnp.minimum(done, P - 1)  # the padding (P) reads lane P - 1; its results are dropped
        outs = record(_lanes_at(lane, at), jnp.where(done < P, item[at], -1), outs)
        return lane, item.at[done].set(-1, mode="drop"), q, state, outs

    def more(c):
        lane, item, q = c[:3]
        return (q < count) | jnp.any(~running(lane) & (item >= 0)) | (jnp.sum(running(lane)) > K)

    idle = jnp.full((P,), -1, jnp.int32)
    lane0 = jax.tree.map(lambda a: jnp.broadcast_to(a, (P,) + a.shape[1:]), load(idle[:1], outs))
    lane, item, _, state, outs = jax.lax.while_loop(more, epoch, (lane0, idle, jnp.int32(0), state, outs))
    # the tail: every running lane (at most K); the padding copies a lane that is not running (there
    # are P - K of them), which the steps leave as it is
    sel = jnp.nonzero(running(lane), size=K, fill_value=jnp.argmin(running(lane)))[0]
    tail_item = jnp.where(running(lane)[sel], item[sel], -1)
    tail, state = steps(tail_item, 0)((_lanes_at(lane, sel), state))
    return record(tail, tail_item, outs), state
