"""The ``jaxpoly`` command line: ``info``, ``extract``, ``enumerate``, ``sample``, ``demo``.

Every verb that reads a model takes ``MODEL`` (see :func:`jaxpoly.load_network`: a bundled name, a
``.npz``, a TorchScript file, or a Flax msgpack / Orbax / PyTorch state-dict checkpoint with
``--arch``). Long work shows a progress bar on stderr (``--quiet`` turns it off; ``-v``/``-vv`` log at
INFO/DEBUG). Bad input exits with status 2 and one line on stderr; Ctrl-C exits with status 130 (an
interrupted ``enumerate`` still saves the regions certified so far, marked incomplete).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import threading
import time
import warnings

import numpy as np

__all__ = ["main"]

log = logging.getLogger("jaxpoly")

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """Bad command-line input found after parsing (one line on stderr, status 2)."""


_NUM = r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), and comma lists with a leading minus sign
    (``--slice -0.1,0,0 …``) read as values, not as options."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(rf"^-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?:\s*,\s*{_NUM})*$")

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------------------------------
# Logging and progress
# ----------------------------------------------------------------------------------------------------


class _ConsoleHandler(logging.Handler):
    """Log records on stderr, through ``tqdm.write`` when tqdm is there (so bars are not torn)."""

    def emit(self, record):
        try:
            msg = self.format(record)
            try:
                from tqdm.auto import tqdm

                tqdm.write(msg, file=sys.stderr)
            except ImportError:
                print(msg, file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _setup_logging(verbose: int) -> None:
    logger = logging.getLogger("jaxpoly")
    # The logger passes INFO on (progress bars listen to it); the console shows WARNING unless -v.
    logger.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
    for h in list(logger.handlers):
        if isinstance(h, _ConsoleHandler):
            logger.removeHandler(h)
    h = _ConsoleHandler(level=logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING)
    h.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if verbose else "jaxpoly: %(message)s"))
    logger.addHandler(h)
    logger.propagate = False
    warnings.showwarning = _show_warning


_python_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Print jaxpoly's warnings as its log lines (``jaxpoly: ...``), not with Python's source location."""
    from jaxpoly.errors import JaxpolyWarning

    if issubclass(category, JaxpolyWarning):
        log.warning("%s", message)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


# ----------------------------------------------------------------------------------------------------
# Argument helpers
# ----------------------------------------------------------------------------------------------------


def _numbers(s: str, what: str) -> np.ndarray:
    """A comma list of numbers, or a ``.npy``/text file holding them."""
    if os.path.isfile(s):
        try:
            a = np.load(s, allow_pickle=False) if s.endswith(".npy") else np.loadtxt(s, delimiter=None, ndmin=1)
        except Exception as e:  # noqa: BLE001 - numpy raises several types
            raise _UsageError(f"{what}: cannot read {s} ({type(e).__name__}: {e})") from None
        return np.asarray(a, np.float64)
    try:
        a = np.array([float(t) for t in s.replace(" ", "").split(",") if t != ""], np.float64)
    except ValueError:
        raise _UsageError(f"{what}: cannot parse {s!r}: expected a comma list of numbers (1.5,0,-2) "
                          "or a .npy/.txt file") from None
    if not a.size:
        raise _UsageError(f"{what}: empty value {s!r}")
    return a


def _bounds(args, d: int):
    if args.bounds is None:
        return None
    lo, hi = (_numbers(v, "--bounds") for v in args.bounds)
    for a in (lo, hi):
        if a.ndim > 1:
            raise _UsageError(f"--bounds: LO and HI must each be one number or {d} numbers (shape ({d},)), got an "
                              f"array of shape {a.shape}")
        if a.size not in (1, d):
            raise _UsageError(f"--bounds: LO and HI need 1 or {d} numbers each, got {a.size}")
        if not np.all(np.isfinite(a)):
            raise _UsageError("--bounds: LO and HI must be finite")
    lo, hi = (a[0] if a.size == 1 else a for a in (lo, hi))
    if np.any(np.broadcast_to(lo, (d,)) >= np.broadcast_to(hi, (d,))):
        raise _UsageError(f"--bounds needs LO < HI, got {_fmt(lo)} >= {_fmt(hi)}")
    return lo, hi


def _fmt(a) -> str:
    a = np.asarray(a)
    return f"{float(a):g}" if a.ndim == 0 else ",".join(f"{x:g}" for x in a)


def _check_bounds_early(args) -> None:
    """LO < HI for scalar bounds, before any model is loaded (fast failure)."""
    if getattr(args, "bounds", None) is None:
        return
    try:
        lo, hi = (float(v) for v in args.bounds)
    except ValueError:
        return  # comma lists: checked once the dimension is known
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise _UsageError("--bounds: LO and HI must be finite")
    if lo >= hi:
        raise _UsageError(f"--bounds needs LO < HI, got {lo:g} >= {hi:g}")


def _slice_plane(args, d: int):
    """``(plane, default_box, points)`` from ``--slice``/``--plane`` (``None`` when neither is given)."""
    from jaxpoly.errors import JaxpolyError
    from jaxpoly.plot import slice_through_points

    if args.slice is not None and args.plane is not None:
        raise _UsageError("give either --slice (three points) or --plane (origin, u, v), not both")
    if args.slice is not None:
        vals = args.slice
        if len(vals) == 1:
            P = _numbers(vals[0], "--slice")
            if P.ndim != 2 or P.shape[0] != 3:
                raise _UsageError(f"--slice FILE must hold three points (3 rows), got shape {P.shape}")
        elif len(vals) == 3:
            pts = [_numbers(v, f"--slice point {i}").reshape(-1) for i, v in enumerate(vals)]
            if len({p.size for p in pts}) != 1:
                raise _UsageError(f"--slice: the three points have different lengths {[p.size for p in pts]}")
            P = np.stack(pts)
        else:
            raise _UsageError(f"--slice takes three points P0 P1 P2 (comma lists) or one file of 3 rows, "
                              f"got {len(vals)} values")
        if P.shape[1] != d:
            raise _UsageError(f"--slice: the points have {P.shape[1]} coordinates but the model's input has {d}")
        try:
            plane, box, _ = slice_through_points(P)
        except JaxpolyError as e:
            raise _UsageError(f"--slice: {e}") from None
        return plane, box, P
    if args.plane is not None:
        o, u, v = (_numbers(x, "--plane").reshape(-1) for x in args.plane)
        for name, a in (("origin", o), ("u", u), ("v", v)):
            if a.size != d:
                raise _UsageError(f"--plane: {name} has {a.size} coordinates but the model's input has {d}")
        return (o, u, v), None, None
    return None, None, None


def _load(args):
    from jaxpoly.loading import load_network
    from jaxpoly.network import output_difference, select_output

    net = load_network(args.model, arch=getattr(args, "arch", None))
    out = getattr(args, "output", None)
    if out is not None:
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", out)
        if not m:
            raise _UsageError(f"--output: expected an index K or a difference I-J, got {out!r}")
        idx = [int(g) for g in m.groups() if g is not None]
        bad = [i for i in idx if i >= net.output_dim]
        if bad:
            raise _UsageError(f"--output: index {bad[0]} out of range for {net.output_dim} outputs")
        net = select_output(net, idx[0]) if len(idx) == 1 else output_difference(net, *idx)
    return net


def _check_level_set(args, net) -> None:
    """``--level-set`` needs a scalar output: say which option picks one."""
    if args.level_set and net.output_dim != 1:
        raise _UsageError(f"--level-set needs a scalar output, but the model has {net.output_dim} outputs; pick one "
                          "with --output K, or the difference of two (a decision boundary) with --output I-J")


def _prepare(args):
    """``(net restricted to the slice if any, bounds, plane, points)``."""
    net = _load(args)
    d = net.input_dim
    plane, box, points = _slice_plane(args, d) if hasattr(args, "slice") else (None, None, None)
    dim = 2 if plane is not None else d
    bounds = _bounds(args, dim)
    if bounds is None:
        bounds = box if box is not None else (-0.5, 0.5)
    return net, bounds, plane, points


def _box_json(bounds) -> list:
    lo, hi = bounds
    return [np.asarray(lo, np.float64).tolist(), np.asarray(hi, np.float64).tolist()]


def _write_summary(out: str, summary: dict) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2, default=_json_default)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _interruptible(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on a worker thread while the main thread waits, so that Ctrl-C is seen at
    once even while a long compiled stage runs (the main thread of a blocked XLA call would see it only
    when the call returns). The worker is a daemon: the interrupted process exits without it."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised on the main thread
            out["error"] = e

    t = threading.Thread(target=target, name="jaxpoly-worker", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.1)
    if "error" in out:
        raise out.pop("error")
    return out["value"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------------------------------
# Verbs
# ----------------------------------------------------------------------------------------------------


def _cmd_info(args) -> int:
    net = _load(args)
    acts = sorted({a.name for a in net.activations})
    print(f"model:        {args.model}")
    print(f"input dim:    {net.input_dim}")
    print(f"widths:       {list(net.widths)}")
    print(f"output dim:   {net.output_dim}")
    print(f"activations:  {', '.join(acts) or 'none'}")
    print(f"neurons:      {net.num_neurons}")
    print(f"hyperplanes:  {net.num_hyperplanes}")
    print(f"structure:    {'sequential' if net.is_sequential else 'with skip connections'}")
    return 0


def _summary(c, seconds: float) -> dict:
    f = c.f_vector
    out = {"dim": c.dim, "vertices": c.num_vertices, "edges": c.num_edges, "regions": f[-1],
           "f_vector": list(f), "euler_characteristic": c.euler_characteristic, "seconds": round(seconds, 4),
           "bounds": [c.lo.tolist(), c.hi.tolist()]}
    if c.has_level_set:
        m = c.level_set_mesh()
        out["level_set"] = {"vertices": m.num_vertices, "edges": m.num_edges, "faces": m.num_faces}
    return out


def _slice_json(plane, points) -> dict:
    o, u, v = plane
    out = {"origin": np.asarray(o).tolist(), "u": np.asarray(u).tolist(), "v": np.asarray(v).tolist()}
    if points is not None:
        out["points"] = np.asarray(points).tolist()
    return out


def _cmd_extract(args) -> int:
    from jaxpoly.extraction import extract

    net, bounds, plane, points = _prepare(args)
    level_set = not args.no_level_set and net.output_dim == 1
    if args.mesh and not level_set:
        raise _UsageError("--mesh needs the level set: drop --no-level-set" if args.no_level_set else
                          f"--mesh needs the level set of a scalar output; the model has {net.output_dim} outputs "
                          "(pick one with --output K, or the difference of two with --output I-J)")
    if not args.no_level_set and net.output_dim != 1:
        log.warning("the model has %d outputs: no level set (pick one with --output K or I-J)", net.output_dim)
    t = time.perf_counter()
    c = _interruptible(extract, net, bounds, level_set=level_set, progress=not args.quiet, slice=plane,
                       dtype=np.float32 if args.float32 else np.float64, max_vertices=args.max_vertices,
                       max_memory=None if args.max_memory is None else int(args.max_memory * 2**30))
    summary = {"model": args.model, **_summary(c, time.perf_counter() - t)}
    if plane is not None:
        summary["slice"] = _slice_json(plane, points)
    os.makedirs(args.out, exist_ok=True)
    c.save(os.path.join(args.out, "complex.npz"))
    if args.volumes:
        summary["volume"] = _volumes(c, os.path.join(args.out, "volumes.npz"))
    _write_summary(args.out, summary)
    if args.mesh:
        c.level_set_mesh().save(args.mesh)
    if args.plot:
        plt = _pyplot()
        from jaxpoly.plot import plot_mesh3d, plot_partition, plot_slice

        if points is not None:
            fig, _ = plot_slice(net, points, os.path.join(args.out, "partition.png"), complex=c)
        elif c.dim == 2:
            fig, _ = plot_partition(c, os.path.join(args.out, "partition.png"))
        elif c.dim == 3 and c.has_level_set and c.level_set_mesh().num_faces:
            fig, _ = plot_mesh3d(c.level_set_mesh(), os.path.join(args.out, "mesh.png"))
        else:
            fig = None
            log.warning("--plot draws 2D complexes and 3D level sets; this complex has d=%d (use --slice)", c.dim)
        if fig is not None:
            plt.close(fig)
    print(json.dumps(summary, indent=2, default=_json_default))
    return 0


def _cmd_enumerate(args) -> int:
    from jaxpoly.enumeration import enumerate_regions
    from jaxpoly.network import restrict_to_plane

    if args.max_regions is not None and args.max_regions < 1:
        raise _UsageError(f"--max-regions must be positive, got {args.max_regions}")
    if args.batch_size is not None and args.batch_size < 1:
        raise _UsageError(f"--batch-size must be positive, got {args.batch_size}")
    net, bounds, plane, points = _prepare(args)
    _check_level_set(args, net)
    if plane is not None:
        net = restrict_to_plane(net, *plane)
    t = time.perf_counter()
    # Ctrl-C inside the search returns the regions certified so far (stats["interrupted"]); earlier it
    # raises KeyboardInterrupt (handled in main).
    r = enumerate_regions(net, bounds, level_set=args.level_set, max_regions=args.max_regions,
                          batch_size=args.batch_size, progress=not args.quiet, seed=args.seed, tol=args.tol)
    seconds = time.perf_counter() - t
    stopped = bool(r.stats.get("interrupted", False))
    summary = {"model": args.model, "dim": int(r.witnesses.shape[1]), "regions": r.num_regions,
               "complete": bool(r.complete), "interrupted": stopped, "level_set": bool(r.level_set), "tol": args.tol,
               "adjacent_pairs": int(len(r.adjacency)), "seconds": round(seconds, 4),
               "bounds": [r.lo.tolist(), r.hi.tolist()], "stats": r.stats}
    if plane is not None:
        summary["slice"] = _slice_json(plane, points)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "regions.npz")
    r.save(path)
    if args.output_bounds and not stopped:
        summary["output_range"] = _output_range(r, os.path.join(args.out, "output_bounds.npz"))
    _write_summary(args.out, summary)
    if stopped:
        print(f"jaxpoly: interrupted: saved the {r.num_regions:,} regions certified so far to {path} "
              "(incomplete: complete=False)", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(json.dumps(summary, indent=2, default=_json_default))
    if not r.complete:
        print(f"jaxpoly: the result is incomplete ({r.num_regions:,} regions; see the warning above)",
              file=sys.stderr)
    return 0


def _output_range(r, path: str) -> dict:
    """Every region's output range (``Regions.output_bounds``) saved to ``path``; the range over the
    box (over the regions found, when incomplete) for the summary."""
    t = time.perf_counter()
    ob = r.output_bounds()
    np.savez_compressed(path, lower=ob.lower, upper=ob.upper, argmin=ob.argmin, argmax=ob.argmax)
    lo, hi = ob.lower.argmin(0), ob.upper.argmax(0)  # (out,) the region of each output's extreme
    outs = np.arange(ob.lower.shape[1])
    return {"min": ob.lower[lo, outs].tolist(), "max": ob.upper[hi, outs].tolist(),
            "argmin": ob.argmin[lo, outs].tolist(), "argmax": ob.argmax[hi, outs].tolist(),
            "lps": 2 * ob.lower.size, "host_fallbacks": ob.host_fallbacks,
            "seconds": round(time.perf_counter() - t, 4), "file": os.path.basename(path)}


def _volumes(c, path: str) -> dict:
    """Every cell's exact volume (``Complex.region_volumes``) saved to ``path``; the box's volume, the
    cells' total and, with a level set, the volume where the output is below / above zero for the summary."""
    t = time.perf_counter()
    vol = c.region_volumes()
    np.savez_compressed(path, volumes=vol)
    out = {"box": float(np.prod(c.hi - c.lo)), "cells": float(vol.sum())}
    if c.has_level_set:
        above = np.asarray(c.regions.patterns[:, -1], bool)
        out["below_zero"], out["above_zero"] = float(vol[~above].sum()), float(vol[above].sum())
    return {**out, "seconds": round(time.perf_counter() - t, 4), "file": os.path.basename(path)}


def _cmd_sample(args) -> int:
    import jax

    from jaxpoly.enumeration import sample_regions
    from jaxpoly.network import restrict_to_plane

    if args.samples < 1 or args.batch_size < 1:
        raise _UsageError(f"--samples and --batch-size must be positive, got {args.samples} and {args.batch_size}")
    net, bounds, plane, points = _prepare(args)
    _check_level_set(args, net)
    if plane is not None:
        net = restrict_to_plane(net, *plane)
    t = time.perf_counter()
    pats = sample_regions(net, bounds, args.samples, key=jax.random.PRNGKey(args.seed),
                          batch_size=min(args.batch_size, args.samples), level_set=args.level_set,
                          progress=not args.quiet)
    seconds = time.perf_counter() - t
    summary = {"model": args.model, "dim": net.input_dim, "samples": args.samples, "seed": args.seed,
               "distinct_patterns": int(len(pats)), "level_set": bool(args.level_set),
               "seconds": round(seconds, 4), "bounds": _box_json(bounds)}
    if plane is not None:
        summary["slice"] = _slice_json(plane, points)
    os.makedirs(args.out, exist_ok=True)
    np.savez_compressed(os.path.join(args.out, "patterns.npz"), patterns=pats, samples=args.samples,
                        seed=args.seed, level_set=args.level_set)
    _write_summary(args.out, summary)
    print(json.dumps(summary, indent=2, default=_json_default))
    return 0


def _cmd_demo(args) -> int:
    from jaxpoly.extraction import extract
    from jaxpoly.models import load_model
    from jaxpoly.plot import plot_mesh3d, plot_partition

    plt = _pyplot()
    os.makedirs(args.out, exist_ok=True)
    rows = []
    net3 = load_model("bunny-3d-3x16")
    t = time.perf_counter()
    c3 = _interruptible(extract, net3, (-0.5, 0.5), progress=not args.quiet)
    s3 = _summary(c3, time.perf_counter() - t)
    mesh = c3.level_set_mesh()
    mesh.save(os.path.join(args.out, "bunny.obj"))
    mesh.save(os.path.join(args.out, "bunny.ply"))
    plt.close(plot_mesh3d(mesh, os.path.join(args.out, "bunny.png"))[0])
    rows.append(("bunny-3d-3x16", s3))
    net2 = load_model("bunny-2d-2x100")
    t = time.perf_counter()
    c2 = _interruptible(extract, net2, (-0.5, 0.5), progress=not args.quiet)
    s2 = _summary(c2, time.perf_counter() - t)
    plt.close(plot_partition(c2, os.path.join(args.out, "partition.png"), show_vertices=False)[0])
    rows.append(("bunny-2d-2x100", s2))
    for (_, s), c in zip(rows, (c3, c2)):  # exact volume (area) where the SDF is negative: the 3D bunny's
        vol = c.region_volumes()
        s["volume_below_zero"] = float(vol[~np.asarray(c.regions.patterns[:, -1], bool)].sum())
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump({name: s for name, s in rows}, fh, indent=2)
    print(f"{'model':<16}{'vertices':>10}{'edges':>10}{'regions':>10}{'level-set v':>13}{'vol(y<0)':>10}{'seconds':>9}")
    for name, s in rows:
        print(f"{name:<16}{s['vertices']:>10,}{s['edges']:>10,}{s['regions']:>10,}"
              f"{s['level_set']['vertices']:>13,}{s['volume_below_zero']:>10.5f}{s['seconds']:>9.2f}")
    print(f"wrote {', '.join(sorted(os.listdir(args.out)))} to {args.out}/")
    return 0


# ----------------------------------------------------------------------------------------------------
# Parser and entry point
# ----------------------------------------------------------------------------------------------------

_MODEL_HELP = ("a bundled name (bunny-2d-2x50, bunny-2d-2x100, bunny-2d-4x32, bunny-3d-3x16, bunny-3d-8x32), "
               "a .npz file, a TorchScript file (.pt/.ts), or, with --arch, a Flax msgpack checkpoint, an Orbax "
               "checkpoint folder or a PyTorch state dict")
_ARCH_HELP = ('architecture of a weights-only checkpoint: "mlp:IN,H1,...,OUT:ACT" (e.g. "mlp:2,64,64,1:relu"; '
              "widths optional and checked; ACT relu | leaky_relu[=SLOPE] | relu6 | hard_tanh | identity) or a "
              'JSON file {"kind": "mlp", "widths": [...], "activation": "relu"}')


def _common() -> argparse.ArgumentParser:
    p = _Parser(add_help=False)
    p.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-v: INFO, -vv: DEBUG)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-compile-cache", action="store_true",
                   help="do not keep compiled kernels on disk (default: JAX's persistent compilation cache in "
                        "$XDG_CACHE_HOME/jaxpoly/xla, ~/.cache/jaxpoly/xla without it, unless JAX_COMPILATION_CACHE_DIR "
                        "is set)")
    p.add_argument("--xla-threads", type=_positive_int, default=None, metavar="N",
                   help="threads of XLA's CPU pool (sets PJRT_NPROC; default one per core). On a 2-core CPU, 1 "
                        "made enumerate in d >= 16 4-30%% faster and extract 30-45%% slower (README)")
    return p


def _set_xla_threads(args) -> None:
    """``--xla-threads``: JAX sizes its CPU thread pool from ``PJRT_NPROC`` when it creates the CPU client,
    so the variable is set before anything runs; too late once JAX has run (a call from Python)."""
    n = getattr(args, "xla_threads", None)
    if n is None:
        return
    try:  # JAX's own test of whether a backend exists yet (private; without it, set the variable anyway)
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:
        def backends_are_initialized():
            return False

    if backends_are_initialized():
        raise _UsageError("--xla-threads must be given before JAX starts; this process has already run JAX "
                          "(set PJRT_NPROC in the environment instead)")
    os.environ["PJRT_NPROC"] = str(n)


def compile_cache_dir() -> str:
    """Where the command line keeps compiled kernels between runs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxpoly", "xla")


def _enable_compile_cache(args) -> None:
    """JAX's persistent compilation cache, so a second run of a verb skips XLA compilation (most of a
    small extraction's cold time). A cache the user configured (``JAX_COMPILATION_CACHE_DIR``) wins."""
    if getattr(args, "no_compile_cache", False) or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    path = compile_cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        log.debug("no compilation cache (%s)", e)
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


def _model_args(with_slice: bool = True) -> argparse.ArgumentParser:
    p = _Parser(add_help=False)
    p.add_argument("model", metavar="MODEL", help=_MODEL_HELP)
    p.add_argument("--arch", help=_ARCH_HELP)
    p.add_argument("--output", metavar="K|I-J",
                   help="use output K only, or the difference of outputs I and J (a decision boundary)")
    if with_slice:
        p.add_argument("--bounds", nargs=2, metavar=("LO", "HI"),
                       help="the box: numbers, or comma lists per coordinate (default -0.5 0.5; with --slice "
                            "a box around the three points, in plane coordinates)")
        p.add_argument("--slice", nargs="+", metavar="P",
                       help="work on the plane through three data points P0 P1 P2 (each a comma list or a "
                            ".npy/.txt file), or one file with the 3 points as rows; P0 -> (0,0), P1 -> (1,0)")
        p.add_argument("--plane", nargs=3, metavar=("ORIGIN", "U", "V"),
                       help="work on the plane x = ORIGIN + s U + t V (comma lists or files); --bounds bound (s, t)")
    return p


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _int_between(lo: int, hi: int, what: str):
    """An argparse type: an integer in ``[lo, hi]``, else an error that names the option."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    from jaxpoly import __version__

    common, model = _common(), _model_args()
    p = _Parser(prog="jaxpoly", description="Exact geometry of piecewise-affine networks.",
                epilog="Run 'jaxpoly VERB --help' for each verb's options.")
    p.add_argument("--version", action="version", version=f"jaxpoly {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="VERB")

    q = sub.add_parser("info", parents=[common, _model_args(with_slice=False)],
                       help="describe a model (input dim, widths, activations, neurons)")
    q.set_defaults(func=_cmd_info)

    q = sub.add_parser("extract", parents=[common, model],
                       help="the complete polyhedral complex in a box (edge subdivision)",
                       description="Extract the complete polyhedral complex (vertices, edges, every face, every "
                                   "region) and the exact level set; writes complex.npz (jaxpoly.Complex.load) and "
                                   "summary.json to --out.")
    q.add_argument("--out", default="jaxpoly-out", help="output folder (complex.npz, summary.json; default "
                                                          "./jaxpoly-out)")
    q.add_argument("--mesh", metavar="FILE", help="write the level-set mesh to this .obj/.ply/.vtk file")
    q.add_argument("--plot", action="store_true", help="write partition.png (2D or --slice) or mesh.png (3D)")
    q.add_argument("--no-level-set", action="store_true", help="leave out the output's zero set")
    q.add_argument("--volumes", action="store_true",
                   help="also each cell's exact volume (area in 2D; with --slice / --plane in the (s, t) coordinates): volumes.npz (volumes, in the order of the "
                        "complex's regions) and in summary.json the box's volume, the cells' total and the volume "
                        "below / above the level set (e.g. inside / outside an SDF's shape)")
    q.add_argument("--float32", action="store_true", help="compute in float32 (see README: limits)")
    q.add_argument("--max-vertices", type=int, default=None, help="refuse complexes larger than this")
    q.add_argument("--max-memory", type=_positive_float, default=None, metavar="GIB",
                   help="memory the padded arrays may take, in GiB (default: 90%% of physical memory)")
    q.set_defaults(func=_cmd_extract)

    q = sub.add_parser("enumerate", parents=[common, model],
                       help="every linear region in a box (certified graph search), any input dimension",
                       description="Enumerate every linear region (pattern, interior witness, inradius, facets, "
                                   "adjacency); writes regions.npz (jaxpoly.Regions.load) and summary.json to "
                                   "--out. Ctrl-C saves the regions certified so far (complete=False), exit 130.")
    q.add_argument("--out", default="jaxpoly-out", help="output folder (regions.npz, summary.json)")
    q.add_argument("--level-set", action="store_true", help="split regions by the sign of the scalar output too")
    q.add_argument("--max-regions", type=int, default=None, metavar="N", help="stop after N regions (incomplete)")
    q.add_argument("--batch-size", type=int, default=None,
                   help="cells per compiled batch (default: 256 on a CPU, fewer in high d; 2048 on a GPU/TPU)")
    q.add_argument("--seed", type=_int_between(0, 2**63 - 1, "a non-negative integer"), default=0,
                   help="ray and seed-point directions (default 0)")
    q.add_argument("--tol", type=_positive_float, default=1e-9,
                   help="a cell counts when its inradius exceeds TOL x the box half-diagonal; below the default "
                        "also the LPs' tolerance, so a smaller one resolves a box far larger than its cells "
                        "(default 1e-9, at least 1e-13)")
    q.add_argument("--output-bounds", action="store_true",
                   help="also each region's exact output range (two LPs per region): output_bounds.npz (lower, "
                        "upper, argmin, argmax) and the range over the box with the points attaining it in "
                        "summary.json (with --output I-J: the least margin of class I over J)")
    q.set_defaults(func=_cmd_enumerate)

    q = sub.add_parser("sample", parents=[common, model],
                       help="the sampling baseline: distinct activation patterns of N uniform points",
                       description="Count the distinct activation patterns of N uniform random points in the "
                                   "box (a lower bound on the region count); writes patterns.npz and summary.json.")
    q.add_argument("--samples", type=int, required=True, metavar="N", help="number of points")
    q.add_argument("--seed", type=_int_between(-2**63, 2**63 - 1, "a 64-bit integer"), default=0,
                   help="PRNG seed (default 0)")
    q.add_argument("--level-set", action="store_true", help="include the sign of the scalar output")
    q.add_argument("--batch-size", type=int, default=65536, help="points per batch (default 65536)")
    q.add_argument("--out", default="jaxpoly-out", help="output folder (patterns.npz, summary.json)")
    q.set_defaults(func=_cmd_sample)

    q = sub.add_parser("demo", parents=[common], help="bundled bunny networks: exact mesh, partition plot, summary")
    q.add_argument("--out", default="jaxpoly-demo", help="output folder (default ./jaxpoly-demo)")
    q.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted).

    Called without ``argv`` (as the ``jaxpoly`` program) an interrupted run ends the process at once
    with status 130 after flushing its output, because JAX may still be compiling or running on
    background threads, and a normal interpreter shutdown can crash on them.
    """
    try:
        args = _parser().parse_args(argv)
    except KeyboardInterrupt:  # during start-up (importing JAX)
        print("jaxpoly: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    _setup_logging(args.verbose)
    from jaxpoly.errors import JaxpolyError

    try:
        _check_bounds_early(args)
        out = getattr(args, "out", None)
        if out is not None and os.path.exists(out) and not os.path.isdir(out):
            raise _UsageError(f"--out {out} is a file; give a folder to write the results into")
        _set_xla_threads(args)
        if argv is None:  # the program, not a call from Python: leave the caller's JAX config alone
            _enable_compile_cache(args)
        code = args.func(args)
    except KeyboardInterrupt:
        code = None  # reported below, once the traceback (and any progress bar it holds) is released
    except BrokenPipeError:  # e.g. `jaxpoly extract … | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except (_UsageError, JaxpolyError, OSError, KeyError, ValueError, MemoryError) as e:
        if args.verbose >= 2:
            log.debug("traceback", exc_info=True)
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        msg = str(msg).strip().splitlines()[0] if str(msg).strip() else type(e).__name__
        print(f"jaxpoly: error: {msg}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if code is None:
        print(("" if args.quiet else "\n") + "jaxpoly: interrupted", file=sys.stderr)  # after a progress bar
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED and argv is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return code


if __name__ == "__main__":
    sys.exit(main())
