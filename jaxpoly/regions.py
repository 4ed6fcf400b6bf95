"""``Regions``: the result of :func:`jaxpoly.enumerate_regions`, one row per certified linear region.

Facet ids (``facet_idx``): a hyperplane id ``h >= 0`` (``0 <= h < H`` hidden hyperplanes in the order
of :meth:`Network.hyperplane_values`, ``h = H`` the output's zero set when ``level_set=True``), or a
negative id for a face of the box: ``-(1 + i)`` is ``x_i = hi_i`` and ``-(1 + d + i)`` is
``x_i = lo_i``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxpoly.bounds import as_points
from jaxpoly.errors import InvalidArgumentError
from jaxpoly.files import read_npz
from jaxpoly.network import Network

__all__ = ["Regions", "pattern_keys"]


def pattern_keys(patterns: np.ndarray) -> list[bytes]:
    """Hashable keys of bool patterns ``(R, H')``: the packed bits of every row, as bytes."""
    packed = np.packbits(np.asarray(patterns, bool), axis=-1)
    return [row.tobytes() for row in packed]


@dataclasses.dataclass(frozen=True, eq=False)
class Regions:
    """Every linear region of a network inside a box (``R`` regions, input dimension ``d``).

    Attributes:
      patterns: ``(R, H') bool``; ``H' = H`` hidden hyperplanes (+1 for the output's sign ``y > 0``
        with ``level_set=True``). Bit ``h`` is ``hyperplane_value_h(x) > 0`` inside the region.
      witnesses: ``(R, d)`` an interior point of each region (its Chebyshev centre, or the centroid
        of its vertices for cells found by the vertex path of the first level).
      inradius: ``(R,)`` the radius of a ball around the witness inside the region (``> 0``).
      facet_ptr: ``(R + 1,)`` and facet_idx ``(sum of facet counts,)``: CSR lists of each region's
        facets, ``facet_idx[facet_ptr[r]:facet_ptr[r + 1]]`` (ids: see the module docstring).
      adjacency: ``(K, 2)`` pairs ``(r, s)``, ``r < s``, of regions sharing a facet.
      lo, hi: ``(d,)`` the box.
      level_set: whether the last pattern bit is the output's sign.
      complete: False when the search stopped early (``max_regions``) or a sub-arrangement could not
        be seeded; then some regions are missing.
      stats: counters and timings (LPs solved, host fallbacks, rays shot, seconds).
      net: the network enumerated (used by the point queries; not saved, so pass ``net=`` to the
        queries of a loaded result).
    """

    patterns: np.ndarray
    witnesses: np.ndarray
    inradius: np.ndarray
    facet_ptr: np.ndarray
    facet_idx: np.ndarray
    adjacency: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    level_set: bool
    complete: bool
    stats: dict = dataclasses.field(default_factory=dict)
    net: Network | None = dataclasses.field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.patterns.shape[0])

    @property
    def num_regions(self) -> int:
        """``R``: number of regions found."""
        return len(self)

    def facets(self, r: int) -> np.ndarray:
        """Facet ids of region ``r``."""
        return self.facet_idx[self.facet_ptr[r] : self.facet_ptr[r + 1]]

    def __repr__(self) -> str:
        return (f"Regions({len(self)} regions, d={self.witnesses.shape[1]}, "
                f"{'complete' if self.complete else 'INCOMPLETE'}, level_set={self.level_set})")

    # -- per-region maps and queries ----------------------------------------------------------------
    def _net(self, net: Network | None) -> Network:
        net = self.net if net is None else net
        if net is None:
            raise InvalidArgumentError("this Regions was loaded from a file: pass the network, e.g. "
                                       "index_of(x, net=net)")
        return net

    def affine_maps(self, net: Network | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The network output on each region, ``y = A x + c``: ``A (R, out, d)``, ``c (R, out)``."""
        net = self._net(net)
        H = net.num_hyperplanes
        maps = net.affine_maps(jnp.asarray(self.patterns[:, :H]))
        return np.asarray(maps.out_A), np.asarray(maps.out_c)

    def _lookup(self) -> dict[bytes, int]:
        table = self.__dict__.get("_table")
        if table is None:
            table = {k: i for i, k in enumerate(pattern_keys(self.patterns))}
            object.__setattr__(self, "_table", table)
        return table

    def index_of(self, x: Any, net: Network | None = None) -> np.ndarray:
        """Index of the region holding each point ``x (..., d)``; ``-1`` outside the open box or for a
        pattern that was not enumerated.

        A neuron counts as active where its pre-activation is ``> 0`` (as in :meth:`Network.pattern`), so
        a point where one is exactly zero gets the region on its inactive side: that is the region
        itself inside a region where the neuron vanishes identically (zero bias with all inputs off, as
        in freshly initialised networks), and an adjacent region for a point exactly on a boundary.
        """
        net = self._net(net)
        d = np.shape(self.lo)[0]
        x = as_points(x, d)
        flat = x.reshape(-1, d)
        vals = np.asarray(net.hyperplane_values(jnp.asarray(flat)))
        if self.level_set:
            vals = np.concatenate([vals, np.asarray(net(jnp.asarray(flat)))[:, :1]], axis=1)
        table = self._lookup()
        keys = pattern_keys(vals > 0)
        inside = np.all((flat > self.lo) & (flat < self.hi), axis=1)
        out = np.array([table.get(k, -1) if ok else -1 for k, ok in zip(keys, inside)], np.int64)
        return out.reshape(x.shape[:-1])

    def contains(self, x: Any, net: Network | None = None) -> np.ndarray:
        """Whether each point ``x (..., d)`` lies in an enumerated region (bool ``(...)``)."""
        return self.index_of(x, net) >= 0

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write every field to an ``.npz`` file (stats as JSON)."""
        np.savez_compressed(
            path, patterns=self.patterns, witnesses=self.witnesses, inradius=self.inradius,
            facet_ptr=self.facet_ptr, facet_idx=self.facet_idx, adjacency=self.adjacency, lo=self.lo,
            hi=self.hi, level_set=np.bool_(self.level_set), complete=np.bool_(self.complete),
            stats=np.array(json.dumps(self.stats, default=float)),
        )

    @classmethod
    def load(cls, path, net: Network | None = None) -> "Regions":
        """Read a file written by :meth:`save`; ``net`` (optional) is attached for the queries."""
        f = read_npz(path, "jaxpoly.Regions", ("patterns", "witnesses", "inradius", "facet_ptr", "facet_idx",
                                               "adjacency", "lo", "hi", "level_set", "complete", "stats"))
        return cls(
            patterns=f["patterns"], witnesses=f["witnesses"], inradius=f["inradius"],
            facet_ptr=f["facet_ptr"], facet_idx=f["facet_idx"], adjacency=f["adjacency"],
            lo=f["lo"], hi=f["hi"], level_set=bool(f["level_set"]), complete=bool(f["complete"]),
            stats=json.loads(str(f["stats"])), net=net,
        )
