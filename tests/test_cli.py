"""The command line end to end, through subprocesses."""

import json
import os
import subprocess
import sys

import pytest

from conftest import DATA


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "jaxpoly.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_version_and_info():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("jaxpoly ")
    r = run("info", "bunny-3d-3x16")
    assert r.returncode == 0
    assert "input dim:    3" in r.stdout and "[16, 16, 16]" in r.stdout and "neurons:      48" in r.stdout
    r = run("info", os.path.join(DATA, "2_2x50_relu_bunny.npz"))
    assert r.returncode == 0 and "[50, 50]" in r.stdout


def test_extract_writes_readable_files(tmp_path):
    import meshio

    import jaxpoly

    out = tmp_path / "out"
    r = run("extract", "bunny-2d-2x50", "--bounds", "-0.5", "0.5", "--out", str(out), "--mesh",
            str(tmp_path / "ls.ply"), "--plot")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["f_vector"] == [289, 543, 255] and summary["level_set"]["vertices"] == 10
    assert jaxpoly.Complex.load(out / "complex.npz").f_vector == (289, 543, 255)
    assert (out / "partition.png").stat().st_size > 10_000
    m = meshio.read(tmp_path / "ls.ply")
    assert len(m.points) == 10 and len(m.cells[0].data) == 9


@pytest.mark.parametrize("args,needle", [
    (("info", "no-such-model"), "neither a file nor a bundled model"),
    (("extract", "bunny-2d", "--bounds", "1", "0"), "LO < HI"),
    (("info", "/nonexistent/model.npz"), "neither a file"),
])
def test_bad_input_is_one_line_without_traceback(args, needle):
    r = run(*args)
    assert r.returncode != 0
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_wrong_format_file(tmp_path):
    p = tmp_path / "m.npz"
    p.write_text("garbage")
    r = run("info", str(p))
    assert r.returncode != 0 and "not a readable .npz" in r.stderr and "Traceback" not in r.stderr
