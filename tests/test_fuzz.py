"""Random degenerate networks against a brute-force LP reference (slow set: ``pytest -m slow
tests/test_fuzz.py``; ``JAXPOLY_FUZZ_CASES`` cases per dimension, default 12).

Each case (d = 1-4) draws a network of two or three hidden stages, plain or residual (a stage reads
the one before it and any earlier ones or the input), with small integer weights (zeros, repeated and
rescaled neurons, zero biases: hyperplanes through one point, neurons vanishing on whole regions), an
activation per stage (ReLU, leaky ReLU, hard tanh: two hyperplanes per neuron) and a box (around the
origin, off it, tiny, far away); boxes holding one region are mostly redrawn. The reference tries every
one of the ``2^H'`` patterns (``H' <= 9``) with one LP each (the Chebyshev ball of its polytope,
:func:`reference.region_polytope`): no search, so no assumption of general position. Checked:
``enumerate_regions`` and ``extract`` (both engines: edge subdivision where it applies, and the regions
engine; and a float32 ``extract`` on the boxes of unit size) list exactly the reference's patterns, the
two engines' complexes have the same vertices and f-vector and satisfy Euler's relation, the regions'
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
WIDTHS = {1: (4, 3, 3), 2: (4, 3, 3), 3: (3, 3, 2), 4: (3, 3, 2)}  # ReLU stages, cut to MAX_HYPERPLANES
HARD_TANH_WIDTH = 2  # two hyperplanes per neuron
MAX_HYPERPLANES = 9  # with the level set: at most 2^9 = 512 LPs for the reference
KEEP_TRIVIAL = 0.25  # a case whose box holds one region is kept this often (else redrawn)


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


def _widths(d: int, acts) -> list[int]:
    """Each stage's width: ``WIDTHS[d]`` (``HARD_TANH_WIDTH`` for two breakpoints), the widest stage
    narrowed until the hyperplanes and the level set number at most ``MAX_HYPERPLANES``."""
    widths = [HARD_TANH_WIDTH if a.num_breakpoints == 2 else w for a, w in zip(acts, WIDTHS[d])]
    while 1 + sum(w * a.num_breakpoints for w, a in zip(widths, acts)) > MAX_HYPERPLANES:
        k = int(np.argmax([w * a.num_breakpoints if w > 1 else 0 for w, a in zip(widths, acts)]))
        widths[k] -= 1
    return widths


def _network(d: int, rng) -> jaxpoly.Network:
    """Two or three hidden stages, each with its own activation; half the time residual (a stage reads
    the one before it and, each with probability 1/2, the input and earlier stages; the output reads
    the last stage and earlier ones likewise)."""
    depth = int(rng.integers(2, 4))
    residual = rng.random() < 0.5
    acts = [_activation(rng) for _ in range(depth)]
    widths = _widths(d, acts)
    sizes = [d, *widths]  # sizes[j]: width of source j
    stages = []
    for k, act in enumerate([*acts, jaxpoly.identity()]):
        width = widths[k] if k < depth else 1
        sources = sorted({k, *(j for j in range(k) if residual and rng.random() < 0.5)})
        kernels = [_weights(rng, sizes[j], width)[0] for j in sources]
        bias = _weights(rng, 1, width)[1]
        if k < depth and width > 1 and rng.random() < 0.5:  # a repeated (rescaled) neuron
            i, j = rng.choice(width, 2, replace=False)
            s = rng.choice([1.0, 2.0, 0.5])
            for K in kernels:
                K[:, j] = s * K[:, i]
            bias[j] = s * bias[i]
        stages.append(jaxpoly.Stage(tuple(kernels), bias, sources=tuple(sources), activation=act))
    return jaxpoly.Network(tuple(stages[:-1]), stages[-1])


def _box(d: int, rng) -> tuple[np.ndarray, np.ndarray, int]:
    kind = int(rng.integers(5))
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
    return lo, hi, kind


def _case(d: int, seed: int):
    """A network, a box, the box's kind (0-2: about unit size near the origin; 3: tiny; 4: far) and
    the reference's patterns; boxes holding one region are mostly redrawn."""
    rng = np.random.default_rng(1000 * d + seed)
    while True:
        net = _network(d, rng)
        lo, hi, kind = _box(d, rng)
        want = _reference(net, lo, hi)
        if len(want) > 1 or rng.random() < KEEP_TRIVIAL:
            return net, lo, hi, kind, want


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
        net, lo, hi, kind, want = _case(d, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", jaxpoly.PrecisionWarning)  # far and tiny boxes say so
            r = jaxpoly.enumerate_regions(net, (lo, hi), level_set=True)
            c = jaxpoly.extract(net, (lo, hi))  # edge subdivision, or the regions engine where it cannot
            c_regions = c if c.timings["engine"] != "subdivision" else jaxpoly.extract(net, (lo, hi), engine="regions")
            # float32 where its tolerance (1e-5 of the box) is far below the features: boxes of unit size
            c32 = jaxpoly.extract(net, (lo, hi), dtype=np.float32) if kind <= 2 else c
        got_r = {p.tobytes() for p in np.asarray(r.patterns)}
        got_c = {p.tobytes() for p in np.asarray(c.regions.patterns)}
        got_l = {p.tobytes() for p in np.asarray(c_regions.regions.patterns)}
        got_32 = {p.tobytes() for p in np.asarray(c32.regions.patterns)}
        sampled = {p.tobytes() for p in jaxpoly.sample_regions(net, (lo, hi), 20_000, key=jax.random.key(seed),
                                                               level_set=True)}
        vol = c.region_volumes().sum() / np.prod(hi - lo)
        # the two engines' complexes: the same vertices (and faces of every dimension)
        engines_agree = (c.f_vector == c_regions.f_vector
                         and _same_points(c.vertices, c_regions.vertices, 1e-9 * float(np.max(hi - lo))))
        if not (r.complete and got_r == want == got_c == got_l == got_32 and c.euler_characteristic == 1
                and c_regions.euler_characteristic == 1 and c32.euler_characteristic == 1 and engines_agree
                and sampled <= want and abs(vol - 1) < 1e-9):
            failures.append((seed, len(want), len(got_r), len(got_c), len(got_l), len(got_32), c.f_vector,
                             c_regions.f_vector, c32.f_vector, len(sampled - want), vol, c.timings["engine"],
                             repr(net.activations), lo.tolist(), hi.tolist()))
    assert not failures, failures
