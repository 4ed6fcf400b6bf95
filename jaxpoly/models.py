"""The bundled bunny SDF networks, by name."""

from __future__ import annotations

import os
from importlib import resources

from jaxpoly.convert.arrays import load_npz
from jaxpoly.errors import ModelLoadError, ModelNotFoundError
from jaxpoly.files import as_path
from jaxpoly.network import Network

__all__ = ["BUNDLED_MODELS", "bundled_model_path", "load_model"]

#: name -> file in ``jaxpoly/data``: ReLU MLPs approximating the Stanford bunny's signed distance,
#: trained on the box [-0.5, 0.5]^d (from Berzins' relu_edge_subdivision repository).
BUNDLED_MODELS = {
    "bunny-2d-2x50": "2_2x50_relu_bunny.npz",
    "bunny-2d-2x100": "2_2x100_relu_bunny.npz",
    "bunny-2d-4x32": "2_4x32_relu_bunny.npz",
    "bunny-3d-3x16": "3_3x16_relu_bunny.npz",
    "bunny-3d-8x32": "3_8x32_relu_bunny.npz",
}
_ALIASES = {"bunny-2d": "bunny-2d-2x50", "bunny-3d": "bunny-3d-3x16"}


def bundled_model_path(name: str) -> str:
    """Filesystem path of a bundled model (``bunny-2d-2x50``, …, or the aliases ``bunny-2d``/``bunny-3d``)."""
    key = _ALIASES.get(name, name)
    if key not in BUNDLED_MODELS:
        known = ", ".join(list(BUNDLED_MODELS) + list(_ALIASES))
        raise ModelNotFoundError(f"unknown bundled model {name!r}; known: {known}")
    return str(resources.files("jaxpoly").joinpath("data", BUNDLED_MODELS[key]))


def load_model(name_or_path: str | os.PathLike) -> Network:
    """Load a bundled model by name, or any ``.npz`` file by path (see :func:`jaxpoly.load_npz`)."""
    s = as_path(name_or_path, "a model file or a bundled model's name", ModelLoadError)
    if s in BUNDLED_MODELS or s in _ALIASES:
        return load_npz(bundled_model_path(s))
    if not os.path.exists(s):
        known = ", ".join(list(BUNDLED_MODELS) + list(_ALIASES))
        raise ModelNotFoundError(f"{s!r} is neither a file nor a bundled model ({known})")
    return load_npz(s)
