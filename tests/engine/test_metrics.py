"""Pass@k estimator against the closed form, its edge cases, and the bootstrap CI."""

from math import comb

import numpy as np
import pytest

from harness.engine.metrics import mean_pass_at_k, pass_at_k


@pytest.mark.parametrize("n", range(1, 13))
def test_pass_at_k_matches_closed_form(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected = 1.0 - comb(n - c, k) / comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_edge_cases():
    assert pass_at_k(5, 0, 1) == 0.0
    assert pass_at_k(5, 0, 5) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(10, 8, 3) == 1.0  # n - c < k: every k-subset holds a pass
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the pass fraction
    assert pass_at_k(200, 1, 200) == 1.0


def test_pass_at_k_is_stable_for_large_n():
    # comb(1000, 500) overflows floats; the product form stays finite and exact enough
    value = pass_at_k(1000, 10, 500)
    assert 0.999 < value <= 1.0
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_invalid(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_pass_at_k_averages_problems():
    counts = [(4, 0), (4, 4), (4, 2)]
    assert mean_pass_at_k(counts, 1) == pytest.approx((0 + 1 + 0.5) / 3)
    assert mean_pass_at_k(counts, 2) == pytest.approx((0 + 1 + (1 - comb(2, 2) / comb(4, 2))) / 3)
    assert np.isnan(mean_pass_at_k([], 1))


