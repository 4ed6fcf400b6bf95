"""The command line end to end, through subprocesses, and :func:`jaxpoly.load_network` on model files."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import DATA

import jaxpoly


_ENV = dict(os.environ)  # (with the suite's compilation cache: conftest.py)


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jaxpoly.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=_ENV)


def test_version_and_info():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("jaxpoly ")
    r = run("info", "bunny-3d-3x16")
    assert r.returncode == 0
    assert "input dim:    3" in r.stdout and "[16, 16, 16]" in r.stdout and "neurons:      48" in r.stdout
    r = run("info", os.path.join(DATA, "2_2x50_relu_bunny.npz"))
    assert r.returncode == 0 and "[50, 50]" in r.stdout


@pytest.mark.parametrize("verb", ["info", "extract", "enumerate", "sample", "demo"])
def test_help(verb):
    r = run(verb, "--help")
    assert r.returncode == 0 and "usage: jaxpoly " + verb in r.stdout


def test_extract_writes_readable_files(tmp_path):
    import meshio

    out = tmp_path / "out"
    r = run("extract", "bunny-2d-2x50", "--bounds", "-0.5", "0.5", "--out", str(out), "--mesh",
            str(tmp_path / "ls.ply"), "--plot", "--volumes", "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    vol, saved = summary["volume"], np.load(out / "volumes.npz")["volumes"]
    assert saved.shape == (255,) and np.all(saved > 0) and vol["box"] == 1.0
    np.testing.assert_allclose([vol["cells"], vol["below_zero"] + vol["above_zero"]], 1.0, rtol=1e-12)
    assert summary["f_vector"] == [289, 543, 255] and summary["level_set"]["vertices"] == 10
    assert (summary["vertices"], summary["edges"], summary["regions"]) == (289, 543, 255)
    assert json.loads(r.stdout)["regions"] == 255
    c = jaxpoly.Complex.load(out / "complex.npz")
    assert c.f_vector == (289, 543, 255) and c.num_regions == 255
    inside = ~c.regions.patterns[:, -1]  # output < 0: against a million samples of the box
    np.testing.assert_allclose(vol["below_zero"], saved[inside].sum(), rtol=1e-12)
    y = np.asarray(c.net(np.random.default_rng(0).uniform(-0.5, 0.5, (10**6, 2))))[:, 0]
    assert abs(vol["below_zero"] - np.mean(y < 0)) < 5 * np.sqrt(0.06 * 0.94 / 10**6)
    assert (out / "partition.png").stat().st_size > 10_000
    m = meshio.read(tmp_path / "ls.ply")
    assert len(m.points) == 10 and len(m.cells[0].data) == 9


def test_demo_writes_plots_meshes_and_summary(tmp_path):
    """The README's main job, end to end: the counts are the reference implementation's (models README),
    the volume below zero the one tested against sampling in test_volumes."""
    import meshio

    out = tmp_path / "demo"
    r = run("demo", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    s3, s2 = summary["bunny-3d-3x16"], summary["bunny-2d-2x100"]
    assert s3["f_vector"] == [27562, 80656, 78682, 25587] and s2["f_vector"] == [3203, 6287, 3085]
    assert (s3["level_set"]["faces"], s2["level_set"]["vertices"]) == (2874, 117)
    assert abs(s3["volume_below_zero"] - 0.20178) < 1e-5 and "0.20178" in r.stdout
    assert len(meshio.read(out / "bunny.obj").points) == 2878 == len(meshio.read(out / "bunny.ply").points)
    assert min((out / "bunny.png").stat().st_size, (out / "partition.png").stat().st_size) > 10_000


def test_enumerate_matches_extract_region_count(tmp_path):
    # Convention: with the level set, the output's zero set splits regions in both engines, so
    # `enumerate --level-set` counts the same 255 cells as extract's f_vector[-1] (246 without it).
    out = tmp_path / "e"
    r = run("enumerate", "bunny-2d-2x50", "--bounds", "-0.5", "0.5", "--level-set", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["regions"] == 255 and summary["complete"] and not summary["interrupted"]
    regions = jaxpoly.Regions.load(out / "regions.npz")
    assert regions.num_regions == 255 and regions.complete and regions.level_set
    assert regions.patterns.shape == (255, 101)
    assert "jaxpoly.enumerate" in r.stderr or "layer" in r.stderr  # the progress bar is on in the CLI
    # the library's warnings print as the CLI's own lines, not with Python's source location
    r = run("enumerate", "bunny-2d-2x50", "--bounds", "-0.5", "0.5", "--max-regions", "7", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "jaxpoly: enumerate_regions stopped at max_regions=7" in r.stderr and "Warning" not in r.stderr, r.stderr


def test_enumerate_output_bounds(tmp_path, capsys, keep_logging):
    """``--output-bounds``: the range over the box equals the one over the extracted complex's vertices
    (the other engine), its points attain it, and every region's range is saved."""
    from jaxpoly import cli

    out = tmp_path / "ob"
    assert cli.main(["enumerate", "bunny-2d-2x50", "--bounds", "-0.5", "0.5", "--out", str(out), "--output-bounds",
                     "--quiet"]) == 0
    rng = json.loads((out / "summary.json").read_text())["output_range"]
    assert json.loads(capsys.readouterr().out)["output_range"] == rng
    net = jaxpoly.load_model("bunny-2d-2x50")
    y = np.asarray(net(jaxpoly.extract(net, (-0.5, 0.5)).vertices))[:, 0]
    np.testing.assert_allclose([rng["min"][0], rng["max"][0]], [y.min(), y.max()], rtol=1e-12)
    np.testing.assert_allclose(np.asarray(net(np.array(rng["argmin"] + rng["argmax"])))[:, 0],
                               [y.min(), y.max()], rtol=1e-12)
    saved = np.load(out / "output_bounds.npz")
    assert saved["lower"].shape == saved["upper"].shape == (246, 1) and saved["argmax"].shape == (246, 1, 2)
    assert rng["lps"] == 2 * 246 and np.all(saved["lower"] <= saved["upper"])


def test_sample(tmp_path):
    r = run("sample", "bunny-2d-2x50", "--samples", "20000", "--seed", "3", "--out", str(tmp_path), "-q")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    with np.load(tmp_path / "patterns.npz") as f:
        pats = f["patterns"]
    assert pats.shape == (summary["distinct_patterns"], 100) and 150 < len(pats) <= 246
    assert summary["samples"] == 20000 and summary["seed"] == 3


def test_extract_slice_of_a_high_dimensional_input(tmp_path):
    # A 5-D ReLU net (5 -> 50 -> 50 -> 1) sliced by the plane through three data points.
    rng = np.random.default_rng(0)
    Ws = [rng.standard_normal((5, 50)), rng.standard_normal((50, 50)) / 7, rng.standard_normal((50, 1)) / 7]
    bs = [rng.standard_normal(50) * 0.3, rng.standard_normal(50) * 0.3, np.array([0.05])]
    net = jaxpoly.from_arrays(Ws, bs)
    jaxpoly.save_npz(net, tmp_path / "net5.npz")
    P = rng.uniform(-1, 1, (3, 5))
    np.save(tmp_path / "p1.npy", P[1])
    # points as comma lists or files
    pts = [",".join(map(repr, P[0].tolist())), str(tmp_path / "p1.npy"), ", ".join(map(repr, P[2].tolist()))]
    out = tmp_path / "s"
    r = run("extract", str(tmp_path / "net5.npz"), "--slice", *pts, "--out", str(out), "--plot", "--mesh",
            str(tmp_path / "curve.ply"), "-q")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dim"] == 2 and np.allclose(summary["slice"]["points"], P)
    c = jaxpoly.Complex.load(out / "complex.npz")
    assert c.dim == 2 and c.f_vector == tuple(summary["f_vector"]) and c.num_regions > 10 and c.has_level_set
    # The level set's vertices, mapped back to the 5-D input, are zeros of the network, and every
    # region's witness has the region's activation pattern there.
    o, u, v = (np.asarray(summary["slice"][k]) for k in ("origin", "u", "v"))
    ls = c.level_set_mesh().vertices
    assert len(ls) and np.abs(np.asarray(net(o + ls[:, :1] * u + ls[:, 1:] * v))).max() < 1e-9
    w = c.regions.witnesses
    vals = np.asarray(net.hyperplane_values(o + w[:, :1] * u + w[:, 1:] * v))
    assert np.array_equal(vals > 0, c.regions.patterns[:, : net.num_hyperplanes])
    assert (out / "partition.png").stat().st_size > 10_000 and (tmp_path / "curve.ply").stat().st_size > 0


BAD_INPUT = [
    (("info", "no-such-model"), "neither a file nor a bundled model"),
    (("info", "bunny-9d"), "bunny-2d-2x50, bunny-2d-2x100"),
    (("extract", "bunny-2d", "--bounds", "1", "0"), "LO < HI"),
    (("enumerate", "bunny-2d", "--bounds", "0.5", "0.5"), "LO < HI"),
    (("extract", "bunny-2d", "--bounds", "a", "1"), "cannot parse 'a'"),
    (("info", "/nonexistent/model.npz"), "neither a file"),
    (("extract", "bunny-3d", "--slice", "0,0,0", "1,0,0"), "three points"),
    (("extract", "bunny-3d", "--slice", "0,0,0", "1,0,x", "0,1,0"), "cannot parse '1,0,x'"),
    (("extract", "bunny-3d", "--slice", "0,0", "1,0", "0,1"), "2 coordinates but the model's input has 3"),
    (("extract", "bunny-3d", "--slice", "0,0,0", "1,1,1", "2,2,2"), "collinear"),
    (("extract", "bunny-3d", "--slice", "-1,0,0", "-2,-1e-1,0", "-3,-.2,0"), "collinear"),  # minus signs are values
    (("extract", "bunny-2d", "--bounds", "-1,-2", "-1.5,3"), "LO < HI"),
    (("extract", "bunny-2d", "--slice", "0,0", "1,0", "0,1", "--plane", "0,0", "1,0", "0,1"), "not both"),
    (("enumerate", "bunny-2d", "--max-regions", "0"), "--max-regions must be positive"),
    (("enumerate", "bunny-2d", "--tol", "1e-15"), "tol=1e-15 is below what the float64 LPs resolve"),
    (("sample", "bunny-2d"), "--samples"),
    (("extract", "bunny-2d", "--output", "3"), "out of range"),
    (("extract", "bunny-2d", "--bogus"), "unrecognized arguments"),
    (("frobnicate",), "invalid choice"),
    (("extract", "bunny-2d", "--max-memory", "0"), "expected a positive number"),
    (("extract", "bunny-3d", "--max-memory", "1e-5"), "raise max_memory"),
    (("enumerate", "bunny-2d", "--xla-threads", "0"), "expected a positive integer"),
]


@pytest.mark.parametrize("args,needle", [BAD_INPUT[i] for i in (0, 2, 7, 16)])
def test_bad_input_is_one_line_without_traceback(args, needle):
    r = run(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.fixture
def keep_logging():
    """``cli.main`` configures the "jaxpoly" logger for a process; restore it for the other tests."""
    import logging

    logger = logging.getLogger("jaxpoly")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.mark.parametrize("args,needle", BAD_INPUT)
def test_bad_input_in_process(args, needle, capsys, keep_logging):
    from jaxpoly import cli

    try:
        code = cli.main(list(args))
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def _damaged_inputs(tmp_path) -> dict:
    """Files that used to end in a traceback: a state dict whose bias is not a tensor, a general-layout npz
    with no stage, bounds of shape (1, 2), and a model with three outputs."""
    torch = pytest.importorskip("torch")
    torch.save({"0.weight": torch.ones(3, 2), "0.bias": 5}, tmp_path / "sd_intbias.pt")
    net = jaxpoly.from_arrays([np.ones((2, 3)), np.ones((3, 3))], [np.array([0.1, -0.2, 0.3]), np.zeros(3)],
                              activation="relu6")
    jaxpoly.save_npz(net, tmp_path / "three.npz")
    d = dict(np.load(tmp_path / "three.npz"))
    d["num_stages"] = np.array(0)
    np.savez(tmp_path / "zero_stages.npz", **d)
    np.save(tmp_path / "lo.npy", np.full((1, 2), -0.5))
    np.save(tmp_path / "hi.npy", np.full((1, 2), 0.5))
    return {k: str(tmp_path / k) for k in ("sd_intbias.pt", "three.npz", "zero_stages.npz", "lo.npy", "hi.npy")}


@pytest.mark.parametrize("args,needle", [
    (("info", "{sd_intbias.pt}", "--arch", "mlp"), "0.bias is of type int, not a tensor"),
    (("info", "bunny-2d", "--arch", '{"widths": [2, 50, 50, 1e400]}'), "widths must be positive integers"),
    (("info", "{zero_stages.npz}"), "num_stages must be a positive integer"),
    (("extract", "bunny-2d", "--slice", "0,0", "0,0", "1,1"), "must span a plane"),
    (("extract", "bunny-2d", "--bounds", "{lo.npy}", "{hi.npy}"), "shape (2,)"),
    (("enumerate", "{three.npz}", "--level-set"), "--output K"),
    (("extract", "{three.npz}", "--mesh", "m.obj"), "the model has 3 outputs (pick one with --output K"),
    (("extract", "bunny-2d", "--mesh", "m.obj", "--no-level-set"), "drop --no-level-set"),
    (("enumerate", "bunny-2d", "--seed", "-1"), "argument --seed: expected a non-negative integer"),
])
def test_bad_files_and_values_are_one_line(args, needle, tmp_path, capsys, keep_logging):
    from jaxpoly import cli

    files = _damaged_inputs(tmp_path)
    args = [files.get(a[1:-1], a) if a.startswith("{") else a for a in args]
    try:
        code = cli.main(args + ["-q", "--out", str(tmp_path / "out")] if args[0] != "info" else args)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


_POOL_THREADS = """
import json, os, sys
from jaxpoly.cli import main
code = main(sys.argv[1:])
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(json.dumps({"code": code, "pool": sum(n.startswith("tf_XLAEigen") for n in names)}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="counts threads through /proc")
def test_out_that_is_a_file_is_one_line(tmp_path, capsys, keep_logging):
    from jaxpoly import cli

    (tmp_path / "f").write_text("")
    assert cli.main(["enumerate", "bunny-2d", "-q", "--out", str(tmp_path / "f")]) == 2  # was "[Errno 17] File exists"
    err = capsys.readouterr().err
    assert "is a file; give a folder" in err and len(err.strip().splitlines()) == 1, err


def test_xla_threads_sizes_the_cpu_pool(tmp_path):
    """--xla-threads N sets PJRT_NPROC before JAX starts: XLA's CPU pool (threads tf_XLAEigen) has N
    threads; without it, one per usable core."""
    env = {k: v for k, v in _ENV.items() if k not in ("PJRT_NPROC", "NPROC")}
    counts = {}
    for flag in ([], ["--xla-threads", "1"], ["--xla-threads", "3"]):
        cmd = ["sample", "bunny-2d-2x50", "--samples", "1000", "--quiet", "--out", str(tmp_path), *flag]
        r = subprocess.run([sys.executable, "-c", _POOL_THREADS, *cmd], capture_output=True, text=True, timeout=600,
                           env=env)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert out["code"] == 0
        counts[" ".join(flag)] = out["pool"]
    assert counts == {"": len(os.sched_getaffinity(0)), "--xla-threads 1": 1, "--xla-threads 3": 3}, counts


def test_xla_threads_after_jax_started_is_refused(tmp_path, capsys, keep_logging):
    """Called from Python once JAX has run, --xla-threads would be silently ignored: refused instead."""
    import jax.numpy as jnp

    from jaxpoly import cli

    jnp.zeros(1).block_until_ready()
    code = cli.main(["enumerate", "bunny-2d-2x50", "--quiet", "--out", str(tmp_path), "--xla-threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "before JAX starts" in err, err
    assert "PJRT_NPROC" not in os.environ or os.environ["PJRT_NPROC"] == _ENV.get("PJRT_NPROC")


def test_wrong_format_file(tmp_path):
    p = tmp_path / "m.npz"
    p.write_text("garbage")
    r = run("info", str(p))
    assert r.returncode != 0 and "not a readable .npz" in r.stderr and "Traceback" not in r.stderr
    p = tmp_path / "m.bin"
    p.write_text("garbage")
    r = run("extract", str(p))
    assert r.returncode == 2 and "unknown model format" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("info", str(tmp_path))  # a folder that is not an Orbax checkpoint
    assert r.returncode == 2 and "not an Orbax checkpoint" in r.stderr
    np.savetxt(tmp_path / "two.txt", [[0, 0, 0], [1, 0, 0]])
    r = run("extract", "bunny-3d", "--slice", str(tmp_path / "two.txt"))
    assert r.returncode == 2 and "must hold three points" in r.stderr


def _interrupt(args, cwd, trigger, delay):
    """Start the CLI, wait for ``trigger`` on stderr (the progress bar), then Ctrl-C it."""
    # Ctrl-C's default action in the child even where this test runs with SIGINT ignored (a shell's
    # background job: `bash .ci/run &`), which a child would inherit and Python would then leave alone
    p = subprocess.Popen([sys.executable, "-m", "jaxpoly.cli", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=cwd, env=_ENV,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    buf: list[str] = []
    th = threading.Thread(target=lambda: buf.extend(iter(lambda: p.stderr.read(1), "")), daemon=True)
    th.start()
    t = time.time()
    while trigger not in "".join(buf) and time.time() - t < 120 and p.poll() is None:
        time.sleep(0.05)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    p.wait(120)
    th.join(10)
    return p.returncode, "".join(buf)


def test_ctrl_c_saves_incomplete_regions_and_exits_130(tmp_path):
    pytest.importorskip("tqdm")  # the trigger is the progress bar
    rc, err = _interrupt(["enumerate", "bunny-3d-8x32", "--out", "o"], tmp_path, "cells", 0.5)
    assert rc == 130, err
    assert "Traceback" not in err and "interrupted" in err
    regions = jaxpoly.Regions.load(tmp_path / "o" / "regions.npz")
    assert not regions.complete
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["interrupted"]


def test_ctrl_c_during_extract_is_one_line(tmp_path):
    pytest.importorskip("tqdm")
    rc, err = _interrupt(["extract", "bunny-3d-8x32", "--out", "o"], tmp_path, "stage", 0.3)
    assert rc == 130, err
    assert "Traceback" not in err and "jaxpoly: interrupted" in err


# ----------------------------------------------------------------------------------------------------
# load_network on model files
# ----------------------------------------------------------------------------------------------------


def _flax_mlp(n_hidden=11, width=5, d=3):
    import jax
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(n_hidden):
                x = nn.leaky_relu(nn.Dense(width)(x), 0.2)
            return nn.Dense(1)(x)

    m = MLP()
    return m, m.init(jax.random.PRNGKey(0), np.zeros((1, d)))


def test_load_network_flax_msgpack(tmp_path):
    import jax
    from flax import serialization

    m, v = _flax_mlp()
    x = np.random.default_rng(0).uniform(-1, 1, (16, 3))
    ref = np.asarray(m.apply(v, x))
    # ``tree_map`` sorts dict keys (Dense_10 before Dense_2): layers are read in natural order
    sorted_v = jax.tree_util.tree_map(lambda a: a, {"params": dict(v["params"])})
    (tmp_path / "m.msgpack").write_bytes(serialization.to_bytes(sorted_v))
    net = jaxpoly.load_network(tmp_path / "m.msgpack", arch="mlp:3,5,5,5,5,5,5,5,5,5,5,5,1:leaky_relu=0.2")
    assert net.input_dim == 3 and len(net.stages) == 11
    np.testing.assert_allclose(np.asarray(net(x)), ref, atol=1e-6)
    json_arch = tmp_path / "arch.json"
    json_arch.write_text(json.dumps({"kind": "mlp", "activation": "leaky_relu", "negative_slope": 0.2}))
    np.testing.assert_allclose(np.asarray(jaxpoly.load_network(tmp_path / "m.msgpack", arch=str(json_arch))(x)),
                               ref, atol=1e-6)
    with pytest.raises(jaxpoly.ModelLoadError, match="needs an architecture"):
        jaxpoly.load_network(tmp_path / "m.msgpack")
    with pytest.raises(jaxpoly.ModelLoadError, match="widths"):
        jaxpoly.load_network(tmp_path / "m.msgpack", arch="mlp:2,5,1:relu")
    with pytest.raises(jaxpoly.ModelLoadError, match="input dimension"):
        jaxpoly.load_network(tmp_path / "m.msgpack", arch="mlp:leaky_relu=0.2", input_dim=4)


def test_load_network_orbax(tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    m, v = _flax_mlp(n_hidden=2)
    ck = ocp.StandardCheckpointer()
    ck.save(tmp_path / "ckpt", v)
    ck.wait_until_finished()
    x = np.random.default_rng(1).uniform(-1, 1, (8, 3))
    net = jaxpoly.load_network(tmp_path / "ckpt", arch="mlp:leaky_relu=0.2")
    np.testing.assert_allclose(np.asarray(net(x)), np.asarray(m.apply(v, x)), atol=1e-6)


def test_load_network_torchscript_and_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(0.1), nn.Sequential(nn.Linear(8, 8), nn.Hardtanh(-2.0, 3.0)),
                          nn.Linear(8, 2)).double().eval()
    x = np.random.default_rng(2).uniform(-1, 1, (16, 4))
    ref = model(torch.tensor(x)).detach().numpy()
    torch.jit.script(model).save(str(tmp_path / "scripted.pt"))
    torch.jit.trace(model, torch.zeros(1, 4, dtype=torch.float64)).save(str(tmp_path / "traced.ts"))
    for name in ("scripted.pt", "traced.ts"):
        net = jaxpoly.load_network(tmp_path / name)
        assert [st.activation.name for st in net.stages] == ["leaky_relu(0.1)", "hard_tanh(-2,3)"]
        np.testing.assert_allclose(np.asarray(net(x)), ref, atol=1e-12)
    # traced at torch's default parameters, which tracing leaves out of the code (was refused)
    model = nn.Sequential(nn.Linear(4, 8), nn.LeakyReLU(), nn.Linear(8, 8), nn.Hardtanh(), nn.Linear(8, 1)).double()
    torch.jit.trace(model, torch.zeros(1, 4, dtype=torch.float64)).save(str(tmp_path / "defaults.ts"))
    net = jaxpoly.load_network(tmp_path / "defaults.ts")
    assert [st.activation.name for st in net.stages] == ["leaky_relu(0.01)", "hard_tanh(-1,1)"]
    np.testing.assert_allclose(np.asarray(net(x)), model(torch.tensor(x)).detach().numpy(), atol=1e-12)
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)).double()
    torch.save(plain.state_dict(), tmp_path / "sd.pt")
    net = jaxpoly.load_network(tmp_path / "sd.pt", arch="mlp:4,8,1:relu")
    np.testing.assert_allclose(np.asarray(net(x)), plain(torch.tensor(x)).detach().numpy(), atol=1e-12)
    with pytest.raises(jaxpoly.ModelLoadError, match="needs an architecture"):
        jaxpoly.load_network(tmp_path / "sd.pt")
    # and through the CLI
    with pytest.raises(jaxpoly.ModelLoadError, match=r"holds \[4, 8, 1\]"):
        jaxpoly.load_network(tmp_path / "sd.pt", arch="mlp:4,9,1:relu")
    r = run("info", str(tmp_path / "sd.pt"), "--arch", "mlp:4,8,1:relu")
    assert r.returncode == 0 and "input dim:    4" in r.stdout and "widths:       [8]" in r.stdout, r.stderr


def test_mlp_architecture_refuses_layers_it_does_not_read(tmp_path):
    """arch='mlp' reads dense layers only: a checkpoint that holds anything else (BatchNorm, LayerNorm,
    convolutions) is refused with the parameters named, not read as a different network."""
    import jax
    import flax.linen as fnn
    from flax import serialization

    torch = pytest.importorskip("torch")
    nn = torch.nn

    class DenseBN(fnn.Module):
        @fnn.compact
        def __call__(self, x):
            return fnn.Dense(1)(fnn.relu(fnn.BatchNorm(use_running_average=True)(fnn.Dense(8)(x))))

    v = DenseBN().init(jax.random.PRNGKey(0), np.zeros((1, 2)))
    (tmp_path / "bn.msgpack").write_bytes(serialization.to_bytes(v))
    (tmp_path / "bn_params.msgpack").write_bytes(serialization.to_bytes({"params": v["params"]}))
    torch.save(nn.Sequential(nn.Linear(2, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 1)).state_dict(),
               tmp_path / "ln.pt")
    torch.save(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 1)).state_dict(),
               tmp_path / "cnn.pt")
    for name, needle in (("bn.msgpack", "batch_stats: BatchNorm_0"), ("bn_params.msgpack", "BatchNorm_0/bias"),
                         ("ln.pt", "not Linear layers (1.weight, 1.bias)"), ("cnn.pt", "(0.weight, 0.bias)")):
        with pytest.raises(jaxpoly.ModelLoadError, match=re.escape(needle)):
            jaxpoly.load_network(tmp_path / name, arch="mlp")
    bn = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))
    torch.save(bn.state_dict(), tmp_path / "bn.pt")
    with pytest.raises(jaxpoly.ModelLoadError, match=r"jaxpoly\.from_torch\(model\.eval\(\)\)"):
        jaxpoly.load_network(tmp_path / "bn.pt", arch="mlp")


def test_parse_arch_refuses_what_it_would_ignore_or_truncate():
    for spec, needle in (("mlp:relu=0.5", "takes no parameter"), ("mlp:hard_tanh=2", "takes no parameter"),
                         ({"widths": [2.7, 1]}, "2.7"), ('{"widths": [2, 1e400]}', "inf")):
        with pytest.raises(jaxpoly.ModelLoadError, match=needle):
            jaxpoly.parse_arch(spec)
    assert jaxpoly.parse_arch({"widths": [2.0, "3", 1]}).widths == (2, 3, 1)


def test_load_network_names_and_errors(tmp_path):
    assert jaxpoly.load_network("bunny-2d").widths == (50, 50)
    with pytest.raises(jaxpoly.ModelNotFoundError, match="bunny-3d-8x32"):
        jaxpoly.load_network("bunny-7d")
    with pytest.raises(FileNotFoundError):
        jaxpoly.load_network(tmp_path / "missing.pt")
    with pytest.raises(jaxpoly.ModelLoadError, match="cannot parse"):
        jaxpoly.parse_arch("cnn:3,3")
    assert jaxpoly.parse_arch("mlp:2,64,64,1:relu") == jaxpoly.Arch("mlp", (2, 64, 64, 1), "relu")
    assert jaxpoly.parse_arch("mlp:leaky_relu=0.3").negative_slope == 0.3
    assert jaxpoly.parse_arch("mlp:2,64,64,1").activation is None  # ReLU, unless the file stores its own


def test_arch_activation_for_a_file_that_stores_its_own(tmp_path):
    """A file in the general layout keeps its activations: an explicit one in ``arch`` is refused rather
    than ignored; the widths alone are still checked; the plain layout takes it."""
    rng = np.random.default_rng(0)
    W, b = [rng.standard_normal((2, 3)), rng.standard_normal((3, 1))], [rng.standard_normal(3), rng.standard_normal(1)]
    jaxpoly.save_npz(jaxpoly.from_arrays(W, b, activation="hard_tanh"), tmp_path / "general.npz")
    for arch in ("mlp:relu", "mlp:2,3,1:hard_tanh", {"activation": "relu"}):
        with pytest.raises(jaxpoly.ModelLoadError, match="stores every stage's activation"):
            jaxpoly.load_network(tmp_path / "general.npz", arch=arch)
    net = jaxpoly.load_network(tmp_path / "general.npz", arch="mlp:2,3,1")
    assert net.stages[0].activation == jaxpoly.hard_tanh()
    np.savez(tmp_path / "plain.npz", W0=W[0].T, b0=b[0], W1=W[1].T, b1=b[1])
    assert jaxpoly.load_network(tmp_path / "plain.npz").stages[0].activation == jaxpoly.relu()
    assert jaxpoly.load_network(tmp_path / "plain.npz", arch="mlp:hard_tanh").stages[0].activation == jaxpoly.hard_tanh()


def test_program_keeps_compiled_kernels_on_disk(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    for flag, cache in (("--no-compile-cache", tmp_path / "off"), (None, tmp_path / "on")):
        env["XDG_CACHE_HOME"] = str(cache)
        args = ["extract", "bunny-2d-2x50", "-q", "--out", str(tmp_path / "out")] + ([flag] if flag else [])
        r = subprocess.run([sys.executable, "-m", "jaxpoly.cli", *args], capture_output=True, text=True,
                           timeout=600, env=env)
        assert r.returncode == 0, r.stderr
        kept = list((cache / "jaxpoly" / "xla").glob("*")) if (cache / "jaxpoly" / "xla").exists() else []
        assert bool(kept) == (flag is None), (flag, kept)
