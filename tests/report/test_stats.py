"""The table's one inference procedure (harness/engine/stats.py): what its `*` claims, that the training
seed is its unit of replication, that a run-once reference counts once, that one seed never
supports a method claim, and Holm's adjustment, against cases small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fakes import fake_cell, plan, write_table
from scipy import stats as sps

from harness.engine.stats import Claim, holm, infer

PROBLEMS, SAMPLES = 100, 4


def planted_sweep(sweep, shifts: list[float], seed: int = 0) -> None:
    """The reviewer's planted case: zero_shot run once on 100 problems x 4 samples, and a learner
    whose seed s passes exactly `shifts[s]` x 400 more (or fewer) samples than the reference."""
    rng = np.random.default_rng(seed)
    ref = rng.random((PROBLEMS, SAMPLES)) < rng.uniform(0.1, 0.9, (PROBLEMS, 1))
    problems = [f"p{i}" for i in range(PROBLEMS)]
    fake_cell(sweep, "z", "zero_shot", 0, {p: list(map(bool, ref[i])) for i, p in enumerate(problems)}, rollouts=0)
    for s, shift in enumerate(shifts):
        learner = ref.copy().ravel()
        flip = round(abs(shift) * learner.size)
        pool = np.flatnonzero(~learner if shift > 0 else learner)
        learner[rng.choice(pool, flip, replace=False)] = shift > 0
        learner = learner.reshape(ref.shape)
        fake_cell(sweep, f"c{s}", "core", s, {p: list(map(bool, learner[i])) for i, p in enumerate(problems)})
    plan(sweep, "z", *[f"c{s}" for s in range(len(shifts))])


def delta_cell(sweep) -> str:
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    return table.loc["core", "Δ vs zero_shot"]


def core_pair(sweep) -> pd.Series:
    pairs = pd.read_csv(sweep / "comparisons.csv", keep_default_na=False)
    return pairs[(pairs.method_a == "core") & (pairs.method_b == "zero_shot")].iloc[0]


def test_seeds_of_mixed_sign_get_no_star(tmp_path):
    """+0.12, +0.10, −0.06: the old test (every (seed, problem) difference a unit) printed
    `+0.053 [-0.052, +0.133] *` with p 0.0; a t over the seeds gives p ≈ 0.45."""
    planted_sweep(tmp_path / "s", [0.12, 0.10, -0.06])
    write_table(tmp_path / "s")
    pair = core_pair(tmp_path / "s")
    assert pair["delta_pass@1"] == pytest.approx(0.16 / 3, abs=1e-3)
    assert "*" not in delta_cell(tmp_path / "s") and not pair.significant
    assert pair.p_value > 0.2 and pair.ci_lo < 0 < pair.ci_hi and pair.claim == "method"


def test_a_consistent_effect_over_three_seeds_gets_a_star(tmp_path):
    planted_sweep(tmp_path / "s", [0.10, 0.11, 0.12])
    write_table(tmp_path / "s")
    pair = core_pair(tmp_path / "s")
    assert pair.significant and pair.p_holm < 0.01 and pair.ci_lo > 0
    assert delta_cell(tmp_path / "s").startswith("+0.110") and "*" in delta_cell(tmp_path / "s")


def test_a_run_once_reference_counts_once():
    """Three seeds that are copies of one carry no new information: the p must be the one-seed
    problems-only p, not smaller (the old test flipped each copy of the reference independently)."""
    rng = np.random.default_rng(3)
    ref = rng.binomial(4, 0.5, 60) / 4
    learner = np.clip(ref + rng.choice([0, 0.25], 60), 0, 1)
    one = infer((learner - ref)[None, :])
    copies = infer(np.tile(learner - ref, (3, 1)))
    assert one.claim is Claim.MODEL and copies.claim is Claim.METHOD
    assert copies.p_value == pytest.approx(one.p_value) and copies.se == pytest.approx(one.se)
    # and a reference that differs per seed adds its noise per seed: more data, a smaller SE
    fresh = infer(np.stack([learner - rng.binomial(4, 0.5, 60) / 4 for _ in range(3)]))
    assert fresh.n_seeds == 3


def test_a_star_never_sits_beside_a_ci_that_covers_zero():
    rng = np.random.default_rng(0)
    for _ in range(500):
        seeds, problems = rng.integers(1, 6), rng.integers(5, 80)
        m = rng.binomial(4, rng.uniform(0, 1, problems), (seeds, problems)) / 4
        m = m - rng.binomial(4, rng.uniform(0, 1, problems), (1, problems)) / 4 + rng.normal(0, 0.05, (seeds, 1))
        r = infer(m)
        assert (r.p_value < 0.05) == (r.lo > 0 or r.hi < 0)


def test_one_seed_supports_no_method_star(tmp_path):
    """One training seed at +0.20 on 100 problems: a tiny problems-only p, shown as a claim about
    this trained model, and no `*`."""
    planted_sweep(tmp_path / "s", [0.20])
    text = write_table(tmp_path / "s")
    pair = core_pair(tmp_path / "s")
    assert pair.claim == "model" and pair.p_value < 1e-6 and not pair.significant
    assert "*" not in delta_cell(tmp_path / "s")
    table = pd.read_csv(tmp_path / "s" / "table.csv", keep_default_na=False).set_index("method")
    assert table.loc["core", "p (Holm)"].endswith("(this model only)")
    assert "Smallest Δ vs zero_shot" in text and "core" in text.split("Smallest Δ vs zero_shot")[1]


def test_variance_and_degrees_of_freedom_by_hand():
    """2 seeds x 3 problems: seed means 0.5, 0.7; problem means 0.5, 0.6, 0.7. MS_seed = 3 x 0.02 =
    0.06, MS_problem = 2 x 0.01 = 0.02, Var = 0.08 / 6; the seed part enters the df at its 75%
    upper bound (1 / chi2_1(0.25) times)."""
    m = np.array([[0.4, 0.5, 0.6], [0.6, 0.7, 0.8]])
    r = infer(m)
    var = (0.06 + 0.02) / 6
    up = 1 / sps.chi2.ppf(0.25, 1)
    df = (0.01 * up + 0.02 / 6) ** 2 / ((0.01 * up) ** 2 / 1 + (0.02 / 6) ** 2 / 2)
    assert r.mean == pytest.approx(0.6) and r.se == pytest.approx(var ** 0.5) and r.df == pytest.approx(df)
    assert r.p_value == pytest.approx(2 * sps.t.sf(0.6 / var ** 0.5, df))
    assert r.hi - r.mean == pytest.approx(sps.t.ppf(0.975, df) * var ** 0.5)
    assert r.mde() == pytest.approx((sps.t.ppf(0.975, df) + sps.t.ppf(0.8, df)) * var ** 0.5)
    # one seed: the paired t over problems, P - 1 degrees of freedom
    one = infer(m[:1])
    assert one.df == 2 and one.se == pytest.approx(np.std(m[0], ddof=1) / 3 ** 0.5)


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


def test_degenerate_designs_give_no_false_certainty():
    """Review findings: identical differences made the t infinite (p 0 and a `*` from 2 seeds x 3
    problems), and one problem with several seeds was tested with no problem variance at all."""
    same = infer([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]])
    assert same.p_value == pytest.approx(0.5) and same.lo == same.hi == 1.0  # sign test over 2 seeds
    one_seed = infer([[0.25] * 30])
    assert one_seed.claim is Claim.MODEL and one_seed.p_value == pytest.approx(2 * 0.5 ** 30)
    assert infer([[0.0] * 5, [0.0] * 5]).p_value == 1.0
    lonely = infer([[1.0], [0.9], [0.95], [1.0]])
    assert np.isnan(lonely.p_value) and np.isnan(lonely.lo)


def test_an_empty_estimate_is_not_shown_as_a_zero_to_one_interval():
    from harness.report.compare import estimate

    empty = pd.Series([], dtype=float, index=pd.MultiIndex.from_arrays([[], []], names=["seed", "problem_id"]))
    e = estimate(empty, bounded=True)
    assert np.isnan(e.lo) and np.isnan(e.hi)
