"""``Regions``: the result of :func:`jaxpoly.enumerate_regions`, one row per certified linear region.

Facet ids (``facet_idx``): a hyperplane id ``h >= 0`` (``0 <= h < H`` hidden hyperplanes in the order
of :meth:`Network.hyperplane_values`, ``h = H`` the output's zero set when ``level_set=True``), or a
negative id for a face of the box: ``-(1 + i)`` is ``x_i = hi_i`` and ``-(1 + d + i)`` is
``x_i = lo_i``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpoly.arguments import is_integer
from jaxpoly.bounds import as_points
from jaxpoly.errors import DegenerateError, InvalidArgumentError, InvalidNetworkError, LoadError
from jaxpoly.files import read_npz, writing
from jaxpoly.lp import OPTIMAL, solve_lp_robust
from jaxpoly.network import AffineMaps, Network, validate_network
from jaxpoly.sizes import bucket, power_of_two

__all__ = ["Regions", "OutputBounds", "pattern_keys"]


def pattern_keys(patterns: np.ndarray) -> list[bytes]:
    """Hashable keys of bool patterns ``(R, H')``: the packed bits of every row, as bytes."""
    packed = np.packbits(np.asarray(patterns, bool), axis=-1)
    return [row.tobytes() for row in packed]


@functools.partial(jax.jit, static_argnames=("level_set",))
def _region_maps(net: Network, pattern: jax.Array, level_set: bool) -> AffineMaps:
    """The maps of the regions of ``pattern (..., H')``: :meth:`Network.affine_maps`, with the output's
    zero set appended to the hyperplanes (``hyper_A (..., H', d)``, ``hyper_c (..., H')``) with
    ``level_set``."""
    maps = net.affine_maps(pattern[..., : net.num_hyperplanes])
    if level_set:
        return maps._replace(hyper_A=jnp.concatenate([maps.hyper_A, maps.out_A[..., :1, :]], axis=-2),
                             hyper_c=jnp.concatenate([maps.hyper_c, maps.out_c[..., :1]], axis=-1))
    return maps


def region_maps(net: Network, patterns: np.ndarray, level_set: bool) -> AffineMaps:
    """:func:`_region_maps` of ``patterns (B, H')`` (``B >= 1``) as float64 NumPy arrays, computed on
    rows padded to a bucket size (few compilations)."""
    B = len(patterns)
    pat = patterns[np.minimum(np.arange(bucket(B)), B - 1)]
    with jax.enable_x64(True):
        return AffineMaps(*(np.asarray(m, np.float64)[:B] for m in _region_maps(net, jnp.asarray(pat), level_set)))


@jax.jit
def _output_maps(net: Network, pattern: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(..., out, d)`` and ``(..., out)``: the output's map on the regions of ``pattern (..., H)``."""
    maps = net.affine_maps(pattern)
    return maps.out_A, maps.out_c


def stage_layout(net: Network) -> tuple[tuple[int, int], ...]:
    """``((width, breakpoints), ...)`` of the hidden stages of ``net``: the order of its hyperplanes."""
    return tuple((int(st.width), int(st.activation.num_breakpoints)) for st in net.stages)


_LP_BATCH_FLOATS = 1 << 23  # output_bounds' batches stay below 64 MiB of constraint rows


class OutputBounds(NamedTuple):
    """The range of each output over each region (:meth:`Regions.output_bounds`).

    Attributes:
      lower, upper: ``(R, out)`` the least and greatest value of output ``o`` over region ``r``.
      argmin, argmax: ``(R, out, d)`` points of the region (vertices) where they are attained.
      host_fallbacks: how many of the ``2 R out`` linear programs SciPy's HiGHS solved.
    """

    lower: np.ndarray
    upper: np.ndarray
    argmin: np.ndarray
    argmax: np.ndarray
    host_fallbacks: int


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
      complete: False when the search stopped early (``max_regions``), a sub-arrangement could not
        be seeded, or a region failed the final float64 check of its certificate (dropped: a box far
        larger than its cells); then some regions are missing.
      stats: counters and timings (LPs solved, host fallbacks, rays shot, facets known from a neighbour
        across, cells seen but thinner than ``tol`` and not counted, failed certificates, patterns at
        random probe points that are not listed, witnesses that float64 cannot place inside their
        region in a box far from the origin and the round-off at the box's centre, the level an
        interrupt stopped in, seconds).
      net: the network enumerated (used by the point queries; not saved, so pass ``net=`` to the
        queries of a loaded result).
      stage_layout: ``((width, breakpoints), ...)`` of the network's hidden stages (which bits of a
        pattern belong to which neuron; saved): a network given to the queries must have the same.
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
    stage_layout: tuple[tuple[int, int], ...] | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        if self.stage_layout is None and self.net is not None:
            object.__setattr__(self, "stage_layout", stage_layout(self.net))

    def __len__(self) -> int:
        return int(self.patterns.shape[0])

    @property
    def num_regions(self) -> int:
        """``R``: number of regions found."""
        return len(self)

    def facets(self, r: int) -> np.ndarray:
        """Facet ids of region ``r`` (``0 <= r < R``; a negative or larger index raises
        :class:`InvalidArgumentError`)."""
        if not is_integer(r):
            raise InvalidArgumentError(f"facets takes a region index (an integer), got {r!r}")
        if not 0 <= r < len(self):
            raise InvalidArgumentError(f"region {r} out of range: there are {len(self)} regions, 0 to {len(self) - 1}")
        return self.facet_idx[self.facet_ptr[r] : self.facet_ptr[r + 1]]

    def __repr__(self) -> str:
        return (f"Regions({len(self)} regions, d={self.witnesses.shape[1]}, "
                f"{'complete' if self.complete else 'INCOMPLETE'}, level_set={self.level_set})")

    # -- per-region maps and queries ----------------------------------------------------------------
    def _net(self, net: Network | None) -> Network:
        """The network of the queries (``net``, else the attached one), checked to fit the patterns, as
        float64 NumPy weights (the queries run in float64, as the enumeration does)."""
        net = self.net if net is None else net
        if net is None:
            raise InvalidArgumentError("this Regions was loaded from a file: pass the network, e.g. "
                                       "index_of(x, net=net)")
        self._check_net(net)
        return net.astype(np.float64)

    def _check_net(self, net: Network) -> None:
        """:class:`InvalidNetworkError` unless ``net`` has this result's input dimension, hyperplane
        count and stage layout (and a scalar output with ``level_set``); a network of the same shapes
        but other weights cannot be told apart."""
        validate_network(net, scalar_output=self.level_set)
        d = int(np.shape(self.lo)[0])
        fix = "pass the network these regions were enumerated from"
        if net.input_dim != d:
            raise InvalidNetworkError(f"the network has input_dim={net.input_dim}, but these regions are in R^{d}; "
                                      f"{fix}")
        H = int(self.patterns.shape[1]) - int(self.level_set)
        if net.num_hyperplanes != H:
            sign = " (plus the output's sign, level_set=True)" if self.level_set else ""
            raise InvalidNetworkError(f"the network has {net.num_hyperplanes} hyperplanes, but these regions' "
                                      f"patterns have {H}{sign}; {fix}")
        if self.stage_layout is not None and stage_layout(net) != self.stage_layout:
            raise InvalidNetworkError(
                f"the network's hidden stages (width, breakpoints) are {list(stage_layout(net))}, but these regions "
                f"were enumerated with {list(self.stage_layout)}: the pattern bits would name other neurons (the same "
                f"function loaded another way, e.g. hard_tanh as one stage or as two ReLU stages, orders its "
                f"hyperplanes differently); {fix}")

    def affine_maps(self, net: Network | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The network output on each region, ``y = A x + c``: ``A (R, out, d)``, ``c (R, out)``, float64
        whether or not JAX's x64 mode is on."""
        net = self._net(net)
        if len(self) == 0:
            return np.zeros((0, net.output_dim, net.input_dim)), np.zeros((0, net.output_dim))
        R = len(self)
        pat = self.patterns[np.minimum(np.arange(bucket(R)), R - 1), : net.num_hyperplanes]  # few compiles
        with jax.enable_x64(True):
            out_A, out_c = _output_maps(net, jnp.asarray(pat))
            return np.asarray(out_A[:R], np.float64), np.asarray(out_c[:R], np.float64)

    def halfspaces(self, r: int, net: Network | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Region ``r`` as a polytope: its interior is ``{x : G x < g}``, one row per facet.

        Rows follow :meth:`facets` (``G[k], g[k]`` bound the facet ``facets(r)[k]``), so the description
        is irredundant: dropping any row enlarges the polytope. A hyperplane row is the neuron's
        pre-activation map on the region (its weights pulled back through the earlier layers, not
        normalised), negated when the neuron is active; a box face is ``x_i <= hi_i`` or ``-x_i <= -lo_i``.

        Returns:
          ``G (k, d)``, ``g (k,)``, float64 whether or not JAX's x64 mode is on.
        """
        k = len(self.facets(r))
        G, g, _ = self._facet_rows(self._maps(self._net(net), np.array([r])), np.array([r]))
        return G[0, :k], g[0, :k]

    def _maps(self, net: Network, rows: np.ndarray) -> AffineMaps:
        """:func:`region_maps` of regions ``rows (B,)``."""
        return region_maps(net, self.patterns[rows], self.level_set)

    def _facet_rows(self, maps: AffineMaps, rows: np.ndarray, F: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The facet inequalities of regions ``rows (B,)`` (their ``maps``, :meth:`_maps`) padded to ``F``
        rows (default: their most facets): ``G (B, F, d)``, ``g (B, F)`` and ``mask (B, F)`` (False on
        padding, whose rows are 0)."""
        d = maps.hyper_A.shape[-1]
        ptr = self.facet_ptr
        count = ptr[rows + 1] - ptr[rows]
        F = max(int(count.max(initial=0)), 1) if F is None else F
        mask = np.arange(F) < count[:, None]
        ids = np.where(mask, self.facet_idx[np.minimum(ptr[rows, None] + np.arange(F), len(self.facet_idx) - 1)]
                       if len(self.facet_idx) else 0, 0)
        on = np.clip(ids, 0, None)
        active = np.take_along_axis(self.patterns[rows], on, axis=1)
        sign = np.where(active, -1.0, 1.0)  # active: -(a x + c) < 0
        G = sign[..., None] * np.take_along_axis(maps.hyper_A, on[..., None], axis=1)
        g = -sign * np.take_along_axis(maps.hyper_c, on, axis=1)
        face = np.clip(-1 - ids, 0, None)  # box faces: 0..d-1 upper, d..2d-1 lower
        upper = face < d
        axis = np.where(upper, face, face - d)
        box = ids < 0
        G = np.where(box[..., None], np.where(upper, 1.0, -1.0)[..., None] * np.eye(d)[axis], G)
        g = np.where(box, np.where(upper, self.hi[axis], -self.lo[axis]), g)
        return np.where(mask[..., None], G, 0.0), np.where(mask, g, 0.0), mask

    def output_bounds(self, net: Network | None = None, *, batch_size: int = 1024) -> OutputBounds:
        """The least and greatest value of every output over every region (its closure), with the
        points that attain them: the exact range of the network on the box is ``lower.min(0)``,
        ``upper.max(0)`` (when ``complete``; otherwise the range over the regions found).

        Two linear programs per region and output (the output's affine map over the region's facet
        inequalities), solved in float64 by :func:`jaxpoly.lp.solve_lp_robust` (batched in JAX; SciPy's
        HiGHS for the few it flags) in coordinates centred at the region's witness, each optimum certified
        by its duals to ``1e-8`` of the region's size (the witness's distance from the farthest facet
        hyperplane), plus the round-off of evaluating the output there. ``batch_size`` regions are solved
        at once (fewer where their constraint rows would exceed 64 MiB; the solver works on a few copies).

        Returns:
          :class:`OutputBounds`: ``lower, upper (R, out)``, ``argmin, argmax (R, out, d)``.
        Raises:
          InvalidArgumentError: a ``batch_size`` that is not a positive integer.
          InvalidNetworkError: a network that does not fit these regions.
        """
        if not (is_integer(batch_size) and batch_size > 0):
            raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}")
        net = self._net(net)
        R, d, out = len(self), net.input_dim, net.output_dim
        lower, upper = np.zeros((R, out)), np.zeros((R, out))
        argmin, argmax = np.zeros((R, out, d)), np.zeros((R, out, d))
        fallbacks = 0
        # Bucketed shapes: one compilation serves every batch, and later calls on other regions
        # of the same network (other boxes) mostly reuse it.
        F = bucket(int(np.diff(self.facet_ptr).max(initial=0)), 16)
        per_region = 2 * out * (F + 2 * d) * d  # float64s of a region's LPs (rows and box rows)
        cap = 1 << max((_LP_BATCH_FLOATS // per_region).bit_length() - 1, 0)
        B = max(min(int(batch_size), power_of_two(R, 64), cap), 1)
        for start in range(0, R, B):
            rows = np.arange(start, min(start + B, R))
            padded = np.concatenate([rows, np.full(B - len(rows), rows[-1])])
            maps = self._maps(net, padded)
            G, g, mask = self._facet_rows(maps, padded, F)
            mask[len(rows):] = False  # the last batch's padding: no rows, unbounded at once, never re-solved
            # In coordinates centred at the witness (y = x - w) the solver's tolerances, relative to the
            # rows' distances from the origin, are relative to the region's size, not to |x|.
            w = self.witnesses[padded]
            g = np.where(mask, g - np.einsum("bfd,bd->bf", G, w), 0.0)
            A, c = maps.out_A[: len(rows)], maps.out_c[: len(rows)]
            obj = np.concatenate([-maps.out_A, maps.out_A], axis=1)  # (B, 2 out, d): min as max of -y
            with jax.enable_x64(True):
                res, n = solve_lp_robust(obj, G[:, None], g[:, None], mask[:, None])
            fallbacks += n
            status, y = res.status[: len(rows)], res.x[: len(rows)]  # y (B, 2 out, d)
            if not np.all(status == OPTIMAL):
                bad = int(rows[np.argwhere(status != OPTIMAL)[0, 0]])
                raise DegenerateError(f"the output's range over region {bad} could not be certified (status "
                                      f"{np.unique(status).tolist()}); its facets may be too thin for float64: "
                                      f"rescale the box or the weights")
            at_w = np.einsum("bod,bd->bo", A, self.witnesses[rows]) + c  # the output at the witness
            lower[rows] = at_w + np.einsum("bod,bod->bo", A, y[:, :out])
            upper[rows] = at_w + np.einsum("bod,bod->bo", A, y[:, out:])
            argmin[rows] = self.witnesses[rows, None] + y[:, :out]
            argmax[rows] = self.witnesses[rows, None] + y[:, out:]
        return OutputBounds(lower, upper, argmin, argmax, fallbacks)

    def _lookup(self) -> dict[bytes, int]:
        table = self.__dict__.get("_table")
        if table is None:
            table = {k: i for i, k in enumerate(pattern_keys(self.patterns))}
            object.__setattr__(self, "_table", table)
        return table

    def index_of(self, x: Any, net: Network | None = None) -> np.ndarray:
        """Index of the region holding each point ``x (..., d)``; ``-1`` outside the open box or for a
        pattern that was not enumerated.

        A neuron counts as active where its pre-activation is ``> 0`` beyond its round-off (as in
        :meth:`Network.pattern`), so a point where one is zero gets the region on its inactive side: that
        is the region itself inside a region where the neuron vanishes identically (zero bias with all
        inputs off, as in freshly initialised networks, or inputs that cancel), and an adjacent region
        for a point on a boundary. Evaluated in float64 whether or not JAX's x64 mode is on.
        """
        net = self._net(net)
        d = np.shape(self.lo)[0]
        x = as_points(x, d)
        flat = x.reshape(-1, d)
        if len(flat) == 0:
            return np.zeros(x.shape[:-1], np.int64)
        with jax.enable_x64(True):
            signs = np.asarray(net.pattern(jnp.asarray(flat), level_set=self.level_set))
        table = self._lookup()
        keys = pattern_keys(signs)
        inside = np.all((flat > self.lo) & (flat < self.hi), axis=1)
        out = np.array([table.get(k, -1) if ok else -1 for k, ok in zip(keys, inside)], np.int64)
        return out.reshape(x.shape[:-1])

    def contains(self, x: Any, net: Network | None = None) -> np.ndarray:
        """Whether each point ``x (..., d)`` lies in an enumerated region (bool ``(...)``)."""
        return self.index_of(x, net) >= 0

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write every field to an ``.npz`` file (stats as JSON)."""
        with writing(path, "a jaxpoly.Regions") as path:
            np.savez_compressed(
                path, patterns=self.patterns, witnesses=self.witnesses, inradius=self.inradius,
                facet_ptr=self.facet_ptr, facet_idx=self.facet_idx, adjacency=self.adjacency, lo=self.lo,
                hi=self.hi, level_set=np.bool_(self.level_set), complete=np.bool_(self.complete),
                stats=np.array(json.dumps(self.stats, default=float)),
                **({} if self.stage_layout is None else {"stage_layout": np.array(self.stage_layout, np.int64).reshape(-1, 2)}),
            )

    @classmethod
    def load(cls, path, net: Network | None = None) -> "Regions":
        """Read a file written by :meth:`save`; ``net`` (optional) is attached for the queries.

        Raises:
          LoadError: no such file, not a saved ``Regions``, or arrays whose shapes disagree.
          InvalidNetworkError: ``net`` does not fit the patterns (input dimension, hyperplane count).
        """
        f = read_npz(path, "jaxpoly.Regions", ("patterns", "witnesses", "inradius", "facet_ptr", "facet_idx",
                                               "adjacency", "lo", "hi", "level_set", "complete", "stats"))
        where = f"{str(path)!r} is not a valid saved jaxpoly.Regions"
        pat, wit = f["patterns"], f["witnesses"]
        if pat.ndim != 2 or wit.ndim != 2 or len(wit) != len(pat):
            raise LoadError(f"{where}: patterns {pat.shape} and witnesses {wit.shape} must be (R, H') and (R, d)")
        R, d = wit.shape
        want = {"inradius": (R,), "facet_ptr": (R + 1,), "lo": (d,), "hi": (d,), "level_set": (), "complete": (),
                "stats": ()}
        for k, shape in want.items():
            if f[k].shape != shape:
                raise LoadError(f"{where}: {k} has shape {f[k].shape}, expected {shape}")
        if f["facet_idx"].ndim != 1 or f["adjacency"].ndim != 2 or f["adjacency"].shape[1] != 2:
            raise LoadError(f"{where}: facet_idx {f['facet_idx'].shape} and adjacency {f['adjacency'].shape} "
                            "must be (F,) and (K, 2)")
        kinds = {"patterns": "b", "level_set": "b", "complete": "b", "witnesses": "f", "inradius": "f", "lo": "f",
                 "hi": "f", "facet_ptr": "iu", "facet_idx": "iu", "adjacency": "iu"}
        for k, kind in kinds.items():
            if f[k].dtype.kind not in kind:
                raise LoadError(f"{where}: {k} has dtype {f[k].dtype}, expected "
                                f"{ {'b': 'bool', 'f': 'float', 'iu': 'integer'}[kind] }")
        ptr, idx, adj = f["facet_ptr"], f["facet_idx"], f["adjacency"]
        if ptr[0] != 0 or np.any(np.diff(ptr) < 0) or ptr[-1] != len(idx):
            raise LoadError(f"{where}: facet_ptr must increase from 0 to len(facet_idx) = {len(idx)}")
        if R and np.diff(ptr).min() < d + 1:
            raise LoadError(f"{where}: region {int(np.argmin(np.diff(ptr)))} has {int(np.diff(ptr).min())} facets; a "
                            f"bounded region of R^{d} has at least {d + 1}")
        if idx.size and (idx.min() < -2 * d or idx.max() >= pat.shape[1]):
            raise LoadError(f"{where}: facet ids must lie in [{-2 * d}, {pat.shape[1]}), got "
                            f"{idx.min()}..{idx.max()}")
        if adj.size and (adj.min() < 0 or adj.max() >= R):
            raise LoadError(f"{where}: adjacency pairs must index its {R} regions, got {adj.min()}..{adj.max()}")
        if adj.size and not np.all(adj[:, 0] < adj[:, 1]):
            raise LoadError(f"{where}: adjacency pairs (r, s) must have r < s")
        if not np.all(f["inradius"] > 0):
            raise LoadError(f"{where}: every inradius must be positive (a certified ball inside the region)")
        if not (np.all(np.isfinite(f["lo"])) and np.all(np.isfinite(f["hi"])) and np.all(f["lo"] < f["hi"])
                and np.all(np.isfinite(wit))):
            raise LoadError(f"{where}: its box or witnesses are not finite, or the box is empty")
        try:
            stats = json.loads(str(f["stats"]))
        except ValueError as e:
            raise LoadError(f"{where}: its stats are not valid JSON ({e}); re-save it or rerun the enumeration") from None
        if not isinstance(stats, dict):
            raise LoadError(f"{where}: its stats are a JSON {type(stats).__name__}, not an object")
        layout = f.get("stage_layout")  # absent from files of before 2026-12-07
        if layout is not None and (layout.ndim != 2 or layout.shape[1] != 2 or layout.dtype.kind not in "iu"
                                   or int(np.sum(layout[:, 0] * layout[:, 1])) != pat.shape[1] - int(f["level_set"])):
            raise LoadError(f"{where}: stage_layout {layout.shape} must be (S, 2) integers, (width, breakpoints) per "
                            f"stage, adding up to the patterns' hyperplanes")
        out = cls(
            patterns=pat.astype(bool), witnesses=wit, inradius=f["inradius"],
            facet_ptr=f["facet_ptr"], facet_idx=f["facet_idx"], adjacency=f["adjacency"],
            lo=f["lo"], hi=f["hi"], level_set=bool(f["level_set"]), complete=bool(f["complete"]),
            stats=stats, net=None,
            stage_layout=None if layout is None else tuple((int(w), int(k)) for w, k in layout),
        )
        if net is not None:
            out._check_net(net)
            object.__setattr__(out, "net", net)
        return out
