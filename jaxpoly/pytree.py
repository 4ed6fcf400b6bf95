"""Registering frozen dataclasses as pytrees (equinox-style: arrays are leaves, configuration static).

Construction runs ``__init__``/``__post_init__`` (validation); unflattening inside JAX transformations
does not, so leaves may be tracers or placeholders there. A class that keeps state besides its fields
(set after construction) defines ``_pytree_state() -> pytree`` and ``_set_pytree_state(state)``: that
state is one more child, so a mapped or transferred copy keeps it.
"""

from __future__ import annotations

import jax

__all__ = ["pytree_dataclass"]


def pytree_dataclass(data: tuple[str, ...], meta: tuple[str, ...]):
    """Class decorator: register ``cls`` with ``data`` fields as children and ``meta`` fields static."""

    def register(cls):
        stateful = hasattr(cls, "_pytree_state")

        def flatten_with_keys(obj):
            children = [(jax.tree_util.GetAttrKey(f), getattr(obj, f)) for f in data]
            if stateful:
                children.append((jax.tree_util.GetAttrKey("_pytree_state"), obj._pytree_state()))
            return children, tuple(getattr(obj, m) for m in meta)

        def flatten(obj):
            children = [getattr(obj, f) for f in data] + ([obj._pytree_state()] if stateful else [])
            return children, tuple(getattr(obj, m) for m in meta)

        def unflatten(aux, children):
            obj = object.__new__(cls)
            for f, c in zip(data, children):
                object.__setattr__(obj, f, c)
            for m, a in zip(meta, aux):
                object.__setattr__(obj, m, a)
            if stateful:
                obj._set_pytree_state(children[len(data)])
            return obj

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
        return cls

    return register
