"""Reading and writing the files jaxpoly saves, with clear errors for missing or foreign files."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Sequence

import numpy as np

from jaxpoly.errors import LoadError, SaveError

__all__ = ["read_npz", "as_path", "writing"]


def as_path(path: Any, what: str, error: type = LoadError) -> str:
    """``os.fspath(path)``, or ``error`` when ``path`` is not a path (``what`` names the expected file)."""
    try:
        return os.fspath(path)
    except TypeError:
        raise error(f"expected a path to {what} (str or os.PathLike), got {type(path).__name__}") from None


def saved_npz_name(path: str) -> str:
    """``path``, or ``path + ".npz"`` where only that exists: the name NumPy's ``savez`` gave a file it
    was asked to write as ``path``."""
    if not os.path.exists(path) and os.path.isfile(path + ".npz"):
        return path + ".npz"
    return path


def read_npz(path: Any, what: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file ``path`` (or ``path + ".npz"``, the name NumPy saved it under),
    which must hold ``keys``.

    Raises:
      LoadError: no such file, not a readable ``.npz``, or a missing array (``what`` names the expected
        content in the message, e.g. ``"jaxpoly.Complex"``).
    """
    path = saved_npz_name(as_path(path, f"a {what} file"))
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


@contextlib.contextmanager
def writing(path: Any, what: str) -> Iterator[str]:
    """``with writing(path, what) as p:`` write ``what`` (e.g. ``"a jaxpoly.Complex"``) to ``p``; a path that
    is not one, a missing folder, or the operating system's refusal raise :class:`SaveError`."""
    path = as_path(path, what, SaveError)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SaveError(f"cannot write {what} to {path!r}: the folder {folder!r} does not exist (create it first)")
    try:
        yield path
    except OSError as e:
        raise SaveError(f"cannot write {what} to {path!r}: {e.strerror or e}") from None
