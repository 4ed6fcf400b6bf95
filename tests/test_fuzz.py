"""Random degenerate networks against a brute-force LP reference (slow set: ``pytest -m slow
tests/test_fuzz.py``; ``JAXPOLY_FUZZ_CASES`` cases per dimension, default 12).

Each case (d = 1-4) draws a two-stage network, plain or residual (the second stage and the output read
the input and both stages), with small integer weights (zeros, repeated and rescaled neurons, zero
biases: hyperplanes through one point, neurons vanishing on whole regions), an activation per stage
(ReLU, leaky ReLU, hard tanh: two hyperplanes per neuron) and a box (around the origin, off it, tiny,
far away). The reference tries every one of the ``2^H'`` patterns
with one LP each (the Chebyshev ball of its polytope, :func:`reference.region_polytope`): no search, so
no assumption of general position. Checked: ``enumerate_regions`` and ``extract`` (both engines: edge
subdivision where it applies, and the regions engine) list exactly the reference's patterns, the two
engines' complexes have the same vertices and f-vector and satisfy Euler's relation, the regions'
volumes tile the box, and every sampled pattern is listed. Sizes are few per dimension so that they
compile a few times only."""

import itertools
import os
import warnings

import jax
import numpy as np
import pytest

import jaxpoly
from reference import chebyshev_ball, region_polytope

jax.config.update("jax_enable_x64", True)

CASES = int(os.environ.get("JAXPOLY_FUZZ_CASES", "12"))
WIDTHS = {1: (4, 3), 2: (4, 3), 3: (3, 3), 4: (3, 3)}  # ReLU stages: H' = 8, 8, 7, 7 (256 or 128 LPs)
HARD_TANH_WIDTH = 2  # two hyperplanes per neuron: H' = 9 at most (512 LPs)


def _weights(rng, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    W = rng.choice([-2, -1, 0, 0, 1, 1, 2], size=(a, b)).astype(float)
    kind = rng.integers(3)
    bias = (np.zeros(b) if kind == 0 else rng.integers(-1, 2, b).astype(float) if kind == 1
            else np.round(rng.standard_normal(b), 2))
    return W, bias


def _activation(rng) -> jaxpoly.Activation:
    u = rng.random()
    return (jaxpoly.leaky_relu(0.1) if u < 0.2 else jaxpoly.hard_tanh() if u < 0.4
            else jaxpoly.hard_tanh(-0.5, 2.0) if u < 0.45 else jaxpoly.relu())


def _network(d: int, rng) -> jaxpoly.Network:
    """Two hidden stages; half the time residual (the second stage reads the input too, the output
    both stages), each with its own activation."""
    residual = rng.random() < 0.5
    acts = [_activation(rng), _activation(rng)]
    widths = [HARD_TANH_WIDTH if a.num_breakpoints == 2 else w for a, w in zip(acts, WIDTHS[d])]
    W1, b1 = _weights(rng, d, widths[0])
    W2, b2 = _weights(rng, widths[0], widths[1])
    for W, b in ((W1, b1), (W2, b2)):  # a repeated (rescaled) neuron
        if W.shape[1] > 1 and rng.random() < 0.5:
            i, j = rng.choice(W.shape[1], 2, replace=False)
            s = rng.choice([1.0, 2.0, 0.5])
            W[:, j], b[j] = s * W[:, i], s * b[i]
    Wo, bo = _weights(rng, widths[1], 1)
    first = jaxpoly.Stage((W1,), b1, activation=acts[0])
    if not residual:
        second = jaxpoly.Stage((W2,), b2, sources=(1,), activation=acts[1])
        out = jaxpoly.Stage((Wo,), bo, sources=(2,), activation=jaxpoly.identity())
    else:
        second = jaxpoly.Stage((_weights(rng, d, widths[1])[0], W2), b2, sources=(0, 1), activation=acts[1])
        out = jaxpoly.Stage((_weights(rng, widths[0], 1)[0], Wo), bo, sources=(1, 2), activation=jaxpoly.identity())
    return jaxpoly.Network((first, second), out)


def _case(d: int, seed: int):
    rng = np.random.default_rng(1000 * d + seed)
    net = _network(d, rng)
    kind = rng.integers(5)
    if kind <= 1:
        lo, hi = -np.ones(d), np.ones(d)
    elif kind == 2:
        lo = rng.choice([-0.5, 0.25, 1.0], d)
        hi = lo + rng.choice([0.5, 1.0, 2.0], d)
    elif kind == 3:
        w = rng.choice([1e-3, 1e-6])
        lo, hi = -w * np.ones(d), w * np.ones(d)
    else:
        c = rng.choice([3.0, 50.0])
        lo, hi = c * np.ones(d), (c + rng.choice([1e-3, 1.0])) * np.ones(d)
    return net, lo, hi


def _reference(net, lo, hi) -> set[bytes]:
    Hp = net.num_hyperplanes + 1
    size = float(np.max(hi - lo))
    found = set()
    for bits in itertools.product([False, True], repeat=Hp):
        p = np.array(bits)
        poly = region_polytope(net, p, lo, hi, level_set=True)
        ball = None if poly is None else chebyshev_ball(poly[0], poly[1])
        if ball is not None and ball[1] > 1e-9 * size:
            found.add(p.tobytes())
    return found


def _same_points(a: np.ndarray, b: np.ndarray, tol: float) -> bool:
    from scipy.spatial import cKDTree

    return len(a) == len(b) and (len(a) == 0 or bool(np.all(cKDTree(b).query(a)[0] <= tol)))


@pytest.mark.slow
@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_random_degenerate_networks_match_the_brute_force_reference(d):
    failures = []
    for seed in range(CASES):
        net, lo, hi = _case(d, seed)
        want = _reference(net, lo, hi)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jaxpoly.PrecisionWarning)  # far and tiny boxes say so
            r = jaxpoly.enumerate_regions(net, (lo, hi), level_set=True)
            c = jaxpoly.extract(net, (lo, hi))  # edge subdivision, or the regions engine where it cannot
            c_regions = c if c.timings["engine"] != "subdivision" else jaxpoly.extract(net, (lo, hi), engine="regions")
        got_r = {p.tobytes() for p in np.asarray(r.patterns)}
        got_c = {p.tobytes() for p in np.asarray(c.regions.patterns)}
        got_l = {p.tobytes() for p in np.asarray(c_regions.regions.patterns)}
        sampled = {p.tobytes() for p in jaxpoly.sample_regions(net, (lo, hi), 20_000, key=jax.random.key(seed),
                                                               level_set=True)}
        vol = c.region_volumes().sum() / np.prod(hi - lo)
        # the two engines' complexes: the same vertices (and faces of every dimension)
        engines_agree = (c.f_vector == c_regions.f_vector
                         and _same_points(c.vertices, c_regions.vertices, 1e-9 * float(np.max(hi - lo))))
        if not (r.complete and got_r == want == got_c == got_l and c.euler_characteristic == 1
                and c_regions.euler_characteristic == 1 and engines_agree and sampled <= want and abs(vol - 1) < 1e-9):
            failures.append((seed, len(want), len(got_r), len(got_c), len(got_l), c.f_vector, c_regions.f_vector,
                             len(sampled - want), vol, c.timings["engine"], repr(net.activations), lo.tolist(),
                             hi.tolist()))
    assert not failures, failures
