"""The ``jaxpoly`` command line: ``info``, ``extract``, ``demo``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

import numpy as np

__all__ = ["main"]


def _load(model: str):
    from jaxpoly.models import load_model

    return load_model(model)


def _cmd_info(args) -> int:
    net = _load(args.model)
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
    if c.level_set:
        m = c.level_set_mesh()
        out["level_set"] = {"vertices": m.num_vertices, "edges": m.num_edges, "faces": m.num_faces}
    return out


def _cmd_extract(args) -> int:
    from jaxpoly.extraction import extract

    net = _load(args.model)
    t = time.perf_counter()
    c = extract(net, (args.bounds[0], args.bounds[1]), level_set=not args.no_level_set, progress=True,
                dtype=np.float32 if args.float32 else np.float64)
    summary = _summary(c, time.perf_counter() - t)
    os.makedirs(args.out, exist_ok=True)
    c.save(os.path.join(args.out, "complex.npz"))
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    if args.mesh:
        c.level_set_mesh().save(args.mesh)
    if args.plot:
        from jaxpoly.plot import plot_mesh3d, plot_partition

        if c.dim == 2:
            plot_partition(c, os.path.join(args.out, "partition.png"))
        elif c.dim == 3 and c.level_set:
            plot_mesh3d(c.level_set_mesh(), os.path.join(args.out, "mesh.png"))
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_demo(args) -> int:
    from jaxpoly.extraction import extract
    from jaxpoly.models import load_model
    from jaxpoly.plot import plot_mesh3d, plot_partition

    os.makedirs(args.out, exist_ok=True)
    rows = []
    net3 = load_model("bunny-3d-3x16")
    t = time.perf_counter()
    c3 = extract(net3, (-0.5, 0.5))
    s3 = _summary(c3, time.perf_counter() - t)
    mesh = c3.level_set_mesh()
    mesh.save(os.path.join(args.out, "bunny.obj"))
    mesh.save(os.path.join(args.out, "bunny.ply"))
    plot_mesh3d(mesh, os.path.join(args.out, "bunny.png"))
    rows.append(("bunny-3d-3x16", s3))
    net2 = load_model("bunny-2d-2x100")
    t = time.perf_counter()
    c2 = extract(net2, (-0.5, 0.5))
    s2 = _summary(c2, time.perf_counter() - t)
    plot_partition(c2, os.path.join(args.out, "partition.png"), show_vertices=False)
    rows.append(("bunny-2d-2x100", s2))
    with open(os.path.join(args.out, "summary.json"), "w") as fh:
        json.dump({name: s for name, s in rows}, fh, indent=2)
    print(f"{'model':<16}{'vertices':>10}{'edges':>10}{'regions':>10}{'level-set v':>13}{'seconds':>9}")
    for name, s in rows:
        print(f"{name:<16}{s['vertices']:>10,}{s['edges']:>10,}{s['regions']:>10,}"
              f"{s['level_set']['vertices']:>13,}{s['seconds']:>9.2f}")
    print(f"wrote {', '.join(sorted(os.listdir(args.out)))} to {args.out}/")
    return 0


def _parser() -> argparse.ArgumentParser:
    from jaxpoly import __version__

    p = argparse.ArgumentParser(prog="jaxpoly", description="Exact geometry of piecewise-affine networks.")
    p.add_argument("--version", action="version", version=f"jaxpoly {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("info", help="describe a model (input dim, widths, activations, neurons)")
    q.add_argument("model", help="a .npz file or a bundled name (bunny-2d-2x50, …, bunny-3d-3x16)")
    q.set_defaults(func=_cmd_info)
    q = sub.add_parser("extract", help="the complete polyhedral complex in a box (edge subdivision)")
    q.add_argument("model")
    q.add_argument("--bounds", nargs=2, type=float, metavar=("LO", "HI"), default=(-0.5, 0.5))
    q.add_argument("--out", default="jaxpoly-out", help="output folder (complex.npz, summary.json)")
    q.add_argument("--mesh", help="write the level-set mesh to this .obj/.ply file")
    q.add_argument("--plot", action="store_true", help="write partition.png (2D) or mesh.png (3D)")
    q.add_argument("--no-level-set", action="store_true", help="leave out the output's zero set")
    q.add_argument("--float32", action="store_true", help="compute in float32 (see README: limits)")
    q.set_defaults(func=_cmd_extract)
    q = sub.add_parser("demo", help="bundled bunny networks: exact mesh, partition plot, summary")
    q.add_argument("--out", default="jaxpoly-demo", help="output folder (default ./jaxpoly-demo)")
    q.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    from jaxpoly.errors import JaxpolyError

    if getattr(args, "bounds", None) is not None and args.bounds[0] >= args.bounds[1]:
        print(f"jaxpoly: error: --bounds needs LO < HI, got {args.bounds[0]} >= {args.bounds[1]}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (JaxpolyError, FileNotFoundError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"jaxpoly: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
