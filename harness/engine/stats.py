"""The one inference procedure behind every Pass@1 CI, Δ, p-value, `*` and detectable effect.

Values come as a seeds x problems matrix (a method's per-problem Pass@1, or two methods' paired
per-problem differences). Two sources of variation make a mean uncertain, and a claim about a
*method* must carry both (Bouthillier et al., "Accounting for variance in machine learning
benchmarks", MLSys 2021): the training seed (run-to-run variance, the unit of replication of a
method) and the test problem (which problems happened to be drawn, plus sampling noise on each).

The model is the crossed two-way random-effects design (seed x problem):
d[s, p] = μ + u[s] + v[p] + e[s, p]. The variance of the grand mean is estimated from the two
mean squares, Var = (MS_seed + MS_problem) / (S P), which over-states the exact method-of-moments
estimate by MS_error / (S P): never negative, and conservative (measured: the SE is 10-13% above the
true SD with a run-once reference, up to 35% when both sides are resampled in every seed, as for
two learners; the simulated `*` rate under the null is then 0.01-0.02), and the mean is tested with a
t whose degrees of freedom come from Satterthwaite's approximation (Satterthwaite, Biometrics
1946) for that sum of mean squares. Satterthwaite's df is liberal when one part has only 1-2
degrees of freedom (2-3 seeds): a seed mean square that is small by chance also buys many degrees
of freedom. So, for the degrees of freedom only, the seed part is taken at its 75% upper confidence
bound (`SEED_DF_QUANTILE`; measured: at 100 problems x 2 seeds and seed SD 0.05 the `*` rate under
the null is 0.081 with plain Satterthwaite and 0.034 with the bound). With 2 seeds and a large seed
effect the test then has about 1 degree of freedom and needs a large effect, as it should. The CI
and the p-value come from the same t, so a p below α never sits beside a CI that covers 0 (Dror
et al., ACL 2018, on choosing one test that fits the data and the claim).

- A run-once reference (a method that does not learn) has one value per problem. It enters the
  differences of every seed as the same number, so its noise is part of the problem effect and is
  counted once, never once per seed.
- With one training seed (of a learning method), the seed variance cannot be estimated: the test
  falls back to the problems-only paired t (MS_problem / P, P − 1 degrees of freedom). That is a
  claim about *this trained model on these problems* (`Claim.MODEL`), never about the method.
- The minimum detectable effect (Card et al., "With little power comes great responsibility",
  EMNLP 2020) at power 1 − β is (t_{1−α/2} + t_{1−β}) · SE at the same degrees of freedom.
- Holm's step-down adjustment controls the family-wise error over the pairs of a configuration.
- Degenerate cases: one problem gives no test (NaN); differences that are all equal leave the t
  undefined, so their p is the exact two-sided sign test over the units (2 x 0.5^seeds for a
  method claim, 2 x 0.5^problems with one seed).

`bench/stats_calibration.py` measures the false-positive rate, CI coverage and power of this
procedure under simulated nulls and effects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import stats as sps

ALPHA = 0.05  # family-wise error rate of the Holm-adjusted `*`; two-sided 95% CIs


POWER = 0.8  # the power the minimum detectable effect is stated at


SEED_DF_QUANTILE = 0.25  # the seed part enters the df at (S-1)/chi2_{S-1}(q) times its estimate


class Claim(str, Enum):
    METHOD = "method"  # seeds replicate training (or neither side trains): a claim about the method
    MODEL = "model"  # one training seed: a claim about this trained model on these problems only


@dataclass(frozen=True)
class Inference:
    mean: float
    se: float
    df: float  # degrees of freedom of the t (Satterthwaite); inf where the SE is exact zero
    lo: float
    hi: float
    p_value: float  # two-sided, of mean = 0
    claim: Claim
    n_seeds: int
    n_problems: int

    def mde(self, alpha: float = ALPHA, power: float = POWER) -> float:
        return detectable_effect(self.se, self.df, alpha, power)


def detectable_effect(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest |Δ| a design with this standard error and df detects with `power` at two-sided
    level `alpha`, assuming the same standard error under the alternative."""
    if not np.isfinite(se) or np.isnan(df) or df <= 0:
        return float("nan")
    return float((sps.t.ppf(1 - alpha / 2, df) + sps.t.ppf(power, df)) * se)


def variance_parts(matrix: np.ndarray, seeds_vary: bool) -> list[tuple[float, float, float]]:
    """(variance contribution to the grand mean, its degrees of freedom, its weight in the df) for
    each mean square used."""
    s, p = matrix.shape
    problem_means = matrix.mean(axis=0)
    if s >= 2 and seeds_vary:
        ms_seed = p * np.var(matrix.mean(axis=1), ddof=1)
        ms_problem = s * np.var(problem_means, ddof=1)
        upper = (s - 1) / float(sps.chi2.ppf(SEED_DF_QUANTILE, s - 1))
        return [(ms_seed / (s * p), s - 1, upper), (ms_problem / (s * p), p - 1, 1.0)]
    return [(np.var(problem_means, ddof=1) / p if p >= 2 else float("nan"), p - 1, 1.0)]


def infer(matrix: np.ndarray | Sequence[Sequence[float]], seeds_vary: bool = True, alpha: float = ALPHA) -> Inference:
    """Mean, SE, t CI and two-sided p of a seeds x problems matrix (rows: seeds; columns: problems;
    problems missing for some seed are dropped). `seeds_vary=False` for values that no training
    produced (both sides run once): then seeds are not a source of variance to estimate."""
    m = np.atleast_2d(np.asarray(matrix, dtype=float))
    m = m[:, np.all(np.isfinite(m), axis=0)]
    s, p = m.shape
    claim = Claim.METHOD if (s >= 2 or not seeds_vary) else Claim.MODEL
    nan = float("nan")
    if p < 2:  # problem-to-problem variation cannot be estimated from one problem: no test
        return Inference(float(m.mean()) if p else nan, nan, nan, nan, nan, nan, claim, s, p)
    mean = float(m.mean())
    parts = variance_parts(m, seeds_vary)
    var = float(sum(v for v, _, _ in parts))
    if var <= 0:  # every value the same: the t is undefined; the exact sign test of its units
        units = s if s >= 2 and seeds_vary else p  # (seeds for a method claim, else problems)
        return Inference(mean, 0.0, nan, mean, mean, 1.0 if mean == 0 else min(1.0, 2 * 0.5 ** units), claim, s, p)
    weighted = [(v * w, d) for v, d, w in parts if d > 0 and v > 0]
    df = sum(v for v, _ in weighted) ** 2 / sum(v ** 2 / d for v, d in weighted)
    se = var ** 0.5
    half = float(sps.t.ppf(1 - alpha / 2, df)) * se
    p_value = float(2 * sps.t.sf(abs(mean) / se, df))
    return Inference(mean, se, float(df), mean - half, mean + half, p_value, claim, s, p)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest of m p-values becomes
    max over j <= i of min(1, (m - j + 1) p_(j)), returned in the input order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.maximum.accumulate(scaled)
    return out
