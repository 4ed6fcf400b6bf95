"""Random degenerate networks against a brute-force LP reference (slow set: ``pytest -m slow
tests/test_fuzz.py``; ``JAXPOLY_FUZZ_CASES`` cases per dimension, default 12).

Each case (d = 1-4) draws small integer weights (zeros, repeated and rescaled neurons, zero biases: hyperplanes
through one point, neurons vanishing on whole regions), a ReLU or leaky-ReLU activation and a box
(around the origin, off it, tiny, far away). The reference tries every one of the ``2^H'`` patterns
with one LP each (the Chebyshev ball of its polytope, :func:`reference.region_polytope`): no search, so
no assumption of general position. Checked: ``enumerate_regions`` and ``extract`` list exactly the
reference's patterns, the complex satisfies Euler's relation, its regions' volumes tile the box, and
every sampled pattern is listed. Sizes are fixed per dimension so each compiles once."""

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
WIDTHS = {1: (4, 3), 2: (4, 3), 3: (3, 3), 4: (3, 3)}  # H' = 8, 8, 7, 7: 256 or 128 LPs per case


def _case(d: int, seed: int):
    rng = np.random.default_rng(1000 * d + seed)
    sizes = [d, *WIDTHS[d], 1]
    Ws = [rng.choice([-2, -1, 0, 0, 1, 1, 2], size=(a, b)).astype(float) for a, b in zip(sizes, sizes[1:])]
    bs = []
    for b in sizes[1:]:
        kind = rng.integers(3)
        bs.append(np.zeros(b) if kind == 0 else rng.integers(-1, 2, b).astype(float) if kind == 1
                  else np.round(rng.standard_normal(b), 2))
    for W, b in zip(Ws[:-1], bs[:-1]):  # a repeated (rescaled) neuron
        if W.shape[1] > 1 and rng.random() < 0.5:
            i, j = rng.choice(W.shape[1], 2, replace=False)
            s = rng.choice([1.0, 2.0, 0.5])
            W[:, j], b[j] = s * W[:, i], s * b[i]
    act = "leaky_relu" if rng.random() < 0.25 else "relu"
    net = jaxpoly.from_arrays(Ws, bs, activation=act, negative_slope=0.1)
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
            c = jaxpoly.extract(net, (lo, hi))
        got_r = {p.tobytes() for p in np.asarray(r.patterns)}
        got_c = {p.tobytes() for p in np.asarray(c.regions.patterns)}
        sampled = {p.tobytes() for p in jaxpoly.sample_regions(net, (lo, hi), 20_000, key=jax.random.key(seed),
                                                               level_set=True)}
        vol = c.region_volumes().sum() / np.prod(hi - lo)
        if not (r.complete and got_r == want == got_c and c.euler_characteristic == 1
                and sampled <= want and abs(vol - 1) < 1e-9):
            failures.append((seed, len(want), len(got_r), len(got_c), c.euler_characteristic,
                             len(sampled - want), vol, c.timings["engine"], lo.tolist(), hi.tolist()))
    assert not failures, failures
