"""Reading the ``.npz`` files jaxpoly writes, with clear errors for missing or foreign files."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from jaxpoly.errors import LoadError

__all__ = ["read_npz", "as_path"]


def as_path(path: Any, what: str, error: type = LoadError) -> str:
    """``os.fspath(path)``, or ``error`` when ``path`` is not a path (``what`` names the expected file)."""
    try:
        return os.fspath(path)
    except TypeError:
        raise error(f"expected a path to {what} (str or os.PathLike), got {type(path).__name__}") from None


def read_npz(path: Any, what: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path``, which must hold ``keys``.

    Raises:
      LoadError: no such file, not a readable ``.npz``, or a missing array (``what`` names the expected
        content in the message, e.g. ``"jaxpoly.Complex"``).
    """
    path = as_path(path, f"a {what} file")
    if not os.path.isfile(path):
        raise LoadError(f"no such file: {path!r} (expected a {what} written by its save())")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in f.files}
    except Exception as e:  # noqa: BLE001 - numpy raises several types for non-npz input
        raise LoadError(f"{path!r} is not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [k for k in keys if k not in data]
    if missing:
        raise LoadError(f"{path!r} is not a saved {what}: it lacks {', '.join(missing)}")
    return data
