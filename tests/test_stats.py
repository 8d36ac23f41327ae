"""The paired p-value and its multiplicity adjustment, against cases small enough to count by hand."""

from __future__ import annotations

from math import comb

import pytest

from harness.compare import N_PERM, holm, sign_flip_p


@pytest.mark.parametrize("diffs, expected", [
    # 3 nonzero: |Σ±d| >= 3 only for +++ and ---: 2 of 8
    ([1, 1, 1], 2 / 8),
    # zeros never change |Σd|: as [1, 1], where ++ and -- of 4 reach 2
    ([1, 1, 0, 0], 2 / 4),
    # Σd = 2; with k plus signs Σ = 2k - 4, and |2k - 4| >= 2 for k in {0, 1, 3, 4}: 1 + 4 + 4 + 1 of 16
    ([1, 1, -1, 1], 10 / 16),
    # Σd = 4: the sums are ±4, ±2, ±2, 0, 0; only ±4 reach it
    ([2, 1, 1], 2 / 8),
    # Σd = 0.5 is the smallest |Σ±d| there is: every assignment reaches it
    ([1, -1, 0.5], 1.0),
    # a pass rate over 4 samples: the same as [1, 1, 1] scaled
    ([0.25, 0.25, 0.25], 2 / 8),
    ([], 1.0),
    ([0, 0, 0], 1.0),
])
def test_sign_flip_p_value_is_exact_for_small_cases(diffs, expected):
    assert sign_flip_p(diffs) == pytest.approx(expected, abs=1e-12)


def test_sign_flip_p_value_by_random_flips_matches_the_binomial_count():
    # 12 wins and 5 losses of size 1 (17 nonzero: sampled, not enumerated). With k plus signs
    # Σ = 2k - 17, and |2k - 17| >= 7 for k >= 12 or k <= 5.
    exact = 2 * sum(comb(17, k) for k in range(12, 18)) / 2 ** 17
    assert exact == pytest.approx(0.14346, abs=1e-5)
    assert sign_flip_p([1] * 12 + [-1] * 5) == pytest.approx(exact, abs=0.01)
    # 20 wins: the exact p is 2 / 2^20; the sampled estimate never reports less than 1 / (N + 1)
    assert sign_flip_p([1] * 20) <= 3 / (N_PERM + 1)


@pytest.mark.parametrize("raw, adjusted", [
    # sorted 0.01, 0.03, 0.04 -> x3 = 0.03, x2 = 0.06, x1 = 0.04 -> running max 0.03, 0.06, 0.06
    ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),
    ([0.2, 0.5], [0.4, 0.5]),
    # sorted 0.01, 0.02, 0.04, 0.5 -> x4, x3, x2, x1 = 0.04, 0.06, 0.08, 0.5
    ([0.5, 0.01, 0.02, 0.04], [0.5, 0.04, 0.06, 0.08]),
    ([0.6, 0.7], [1.0, 1.0]),  # capped at 1
    ([0.03], [0.03]),  # one comparison: nothing to adjust
])
def test_holm_adjustment_by_hand(raw, adjusted):
    assert holm(raw) == pytest.approx(adjusted)
