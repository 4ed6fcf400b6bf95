"""Registering frozen dataclasses as pytrees (equinox-style: arrays are leaves, configuration static).

Construction runs ``__init__``/``__post_init__`` (validation); unflattening inside JAX transformations
does not, so leaves may be tracers or placeholders there.
"""

from __future__ import annotations

import jax

__all__ = ["pytree_dataclass"]


def pytree_dataclass(data: tuple[str, ...], meta: tuple[str, ...]):
    """Class decorator: register ``cls`` with ``data`` fields as children and ``meta`` fields static."""

    def register(cls):
        def flatten_with_keys(obj):
            children = [(jax.tree_util.GetAttrKey(f), getattr(obj, f)) for f in data]
            return children, tuple(getattr(obj, m) for m in meta)

        def flatten(obj):
            return [getattr(obj, f) for f in data], tuple(getattr(obj, m) for m in meta)

        def unflatten(aux, children):
            obj = object.__new__(cls)
            for f, c in zip(data, children):
                object.__setattr__(obj, f, c)
            for m, a in zip(meta, aux):
                object.__setattr__(obj, m, a)
            return obj

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten, flatten)
        return cls

    return register
