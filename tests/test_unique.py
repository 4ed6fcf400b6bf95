"""jaxpoly.unique: the sort-based distinct values and rows equal np.unique's."""

import numpy as np
import pytest

from jaxpoly.unique import unique_ints, unique_packed_rows, unique_pairs


@pytest.mark.parametrize("high", [3, 2**40])
def test_unique_ints_and_pairs_equal_numpy(high):
    rng = np.random.default_rng(high % 97)
    a = rng.integers(0, high, 5000)
    assert np.array_equal(unique_ints(a), np.unique(a))
    p = rng.integers(0, high, (5000, 2))
    assert np.array_equal(unique_pairs(p), np.unique(p, axis=0))
    assert unique_pairs(np.zeros((0, 2), np.int64)).shape == (0, 2)


def test_unique_pairs_without_room_for_a_code_sorts_rows():
    big = np.iinfo(np.int64).max // 4
    p = np.array([[big, 5], [1, big], [big, 5], [0, 0]])
    assert np.array_equal(unique_pairs(p), np.unique(p, axis=0))


@pytest.mark.parametrize("nbytes", [1, 3, 8, 9, 17])
def test_unique_packed_rows_equal_numpy(nbytes):
    p = np.random.default_rng(nbytes).integers(0, 4, (3000, nbytes)).astype(np.uint8)
    assert np.array_equal(unique_packed_rows(p), np.unique(p, axis=0))
