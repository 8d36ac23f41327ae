"""What a table row is and how sure we are of it (DESIGN.md §4 "A table row is one configuration").

- `load_cells`: the finished cells of a sweep's latest plan (`plan.json`), one row per cell x
  checkpoint, with a column for every config value that differs between the cells (`varying_keys`:
  the seed aside, and keys that the task, method or model already determine). So a sweep over
  `task.difficulty=easy,hard` gives two rows, never one blended row.
- `per_problem`: each cell's final-evaluation Pass@1 per (seed, test problem), read from
  attempts.parquet, the source of truth.
- `cluster_bootstrap`: the CI of a mean over seeds and problems. Each resample draws seeds with
  replacement and, independently, problems with replacement, and averages the drawn
  seed x problem block (a two-way bootstrap: seed-to-seed and problem-to-problem variation
  both widen the interval). With one seed it is the ordinary bootstrap over problems.
- `paired`: the difference between two methods on the same problems and seeds, bootstrapped the
  same way on the per-(seed, problem) differences. Its p-value is a two-sided paired sign-flip
  permutation test (`sign_flip_p`) over the (seed, problem) differences: under "no difference"
  each difference is as likely negative as positive, so the observed |Σd| is ranked among the
  |Σ±d| of every sign assignment (exact up to `EXACT_MAX` nonzero differences, else `N_PERM`
  random ones with the (b + 1)/(N + 1) estimate).
- `holm`: Holm's step-down adjustment; `Comparer.all_pairs` applies it to the pairs within one
  configuration, and a difference counts as significant when its adjusted p is below `ALPHA`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from harness.records import collect_summaries

BASE_COLUMNS = ("task", "model", "method")  # summary columns every table groups by
NOT_CONFIGURATION = ("seed", "sweep", "results_dir", "code_version_in_id")  # never make rows differ
NOT_CONFIGURATION_PREFIXES = ("launcher.", "logger.", "model.resources", "aux_model.resources")
N_BOOT = 2000
N_PERM = 20000  # random sign assignments when exact enumeration is too large
EXACT_MAX = 16  # enumerate all 2^m sign assignments up to this many nonzero differences
ALPHA = 0.05  # family-wise error rate of the Holm-adjusted `*`


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaf values; lists become JSON text so they compare and group."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = json.dumps(value) if isinstance(value, list) else value
    return out


def varying_keys(flat: pd.DataFrame, base: pd.DataFrame) -> list[str]:
    """Config paths whose value differs between cells, unless the base columns (task, method,
    model) already determine it (e.g. a method's own knobs, a task's default token cap)."""
    keys = []
    for key in flat.columns:
        if key in NOT_CONFIGURATION or key.startswith(NOT_CONFIGURATION_PREFIXES):
            continue
        values = flat[key].astype(str)
        if values.nunique() < 2:
            continue
        if values.groupby([base[c] for c in base.columns]).nunique().max() < 2:
            continue
        keys.append(key)
    return keys


@dataclass
class SweepCells:
    summary: pd.DataFrame  # one row per planned finished cell x checkpoint, plus the varying keys
    varying: list[str]  # the config paths that are columns (beyond task, model, method)


def load_cells(sweep_dir: Path) -> SweepCells:
    summary = collect_summaries(sweep_dir)
    if summary.empty:
        return SweepCells(summary, [])
    configs = {cid: flatten(json.loads((sweep_dir / "cells" / cid / "config.json").read_text())["config"])
               for cid in summary["cell_id"].unique()}
    flat = pd.DataFrame.from_dict(configs, orient="index")
    base = summary.drop_duplicates("cell_id").set_index("cell_id")[list(BASE_COLUMNS)].loc[flat.index]
    varying = [k for k in varying_keys(flat, base) if k not in ("budget", "task.train_size")]
    for key in varying:
        summary[key] = summary["cell_id"].map(flat[key])
    return SweepCells(summary, varying)


def final_rows(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["final"].astype(bool)] if "final" in summary else summary


def no_learning_method(final: pd.DataFrame) -> str | None:
    """The method whose every cell used 0 rollouts (the sweep's reference row), if exactly one did."""
    used = final.groupby("method")["rollouts_used"].max()
    idle = sorted(used[used == 0].index)
    return idle[0] if len(idle) == 1 else None


def per_problem(sweep_dir: Path, cell_id: str) -> pd.Series:
    """Pass@1 per test problem at the cell's final evaluation (sampled rows only). Cells written
    before rows had a `step` (round 1) fall back to the last checkpoint's rows."""
    path = sweep_dir / "cells" / cell_id / "attempts.parquet"
    stage = "step" if "step" in pq.read_schema(path).names else "checkpoint"
    df = pd.read_parquet(path, columns=["phase", "tag", "problem_id", "passed", stage])
    ev = df[(df["phase"] == "eval") & (df["tag"] == "sample")]
    ev = ev[ev[stage] == ev[stage].max()]
    return ev.groupby("problem_id")["passed"].mean().astype(float)


def cluster_bootstrap(matrix: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Bootstrap means of a seeds x problems matrix, resampling seeds and problems together."""
    m = np.atleast_2d(np.asarray(matrix, dtype=float))
    rng = np.random.default_rng(seed)
    s_idx = rng.integers(0, m.shape[0], size=(n_boot, m.shape[0]))
    p_idx = rng.integers(0, m.shape[1], size=(n_boot, m.shape[1]))
    return np.nanmean(m[s_idx[:, :, None], p_idx[:, None, :]], axis=(1, 2))


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float
    hi: float
    p_value: float  # paired differences only (NaN for a single method's Pass@1)
    n_seeds: int
    n_problems: int
    seeds: tuple[int, ...] = field(default=())  # the seeds the values came from (for a Δ: the shared ones)

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


def estimate(values: pd.Series, n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """Mean and 95% CI of per-(seed, problem) values (a Series indexed by seed, problem_id)."""
    matrix = values.unstack("problem_id")
    boots = cluster_bootstrap(matrix.to_numpy(), n_boot, seed)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return Estimate(float(np.nanmean(matrix.to_numpy())), float(lo), float(hi), float("nan"), matrix.shape[0],
                    matrix.shape[1], tuple(int(s) for s in matrix.index))


def sign_flip_p(diffs: Sequence[float] | np.ndarray, n_perm: int = N_PERM, seed: int = 0) -> float:
    """Two-sided paired sign-flip permutation p-value of mean(diffs) = 0. Zero differences do not
    change |Σd| under any flip, so only the m nonzero ones are flipped: exactly (all 2^m
    assignments, the observed one included) when m <= EXACT_MAX, else by `n_perm` random ones."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d) & (d != 0)]
    if d.size == 0:
        return 1.0
    observed = abs(d.sum())
    tol = 1e-9 * max(1.0, observed)  # sums equal in exact arithmetic tie with the observed one
    if d.size <= EXACT_MAX:
        signs = 1.0 - 2.0 * ((np.arange(2 ** d.size)[:, None] >> np.arange(d.size)) & 1)
        return float(np.mean(np.abs(signs @ d) >= observed - tol))
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, n_perm, 2000):  # in blocks: n_perm x m signs at once can be large
        signs = rng.choice((1.0, -1.0), size=(min(2000, n_perm - start), d.size))
        hits += int(np.sum(np.abs(signs @ d) >= observed - tol))
    return (hits + 1) / (n_perm + 1)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest of m p-values becomes
    max over j <= i of min(1, (m - j + 1) p_(j)), returned in the input order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (len(p) - np.arange(len(p))) * p[order])
    out = np.empty_like(p)
    out[order] = np.maximum.accumulate(scaled)
    return out


def paired(a: pd.Series, b: pd.Series, n_boot: int = N_BOOT, seed: int = 0) -> Estimate:
    """a − b on the (seed, problem) pairs both have: bootstrap CI, sign-flip permutation p-value."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    diffs = both["a"] - both["b"]
    return replace(estimate(diffs, n_boot, seed), p_value=sign_flip_p(diffs.to_numpy(), seed=seed))


def method_values(sweep_dir: Path, rows: pd.DataFrame) -> pd.Series:
    """Per-(seed, problem) Pass@1 of a group of cells (one per seed)."""
    parts = {int(seed): per_problem(sweep_dir, cid) for cid, seed in zip(rows["cell_id"], rows["seed"], strict=True)}
    return pd.concat(parts, names=["seed", "problem_id"])


def config_columns(cells: SweepCells) -> list[str]:
    """The columns that, with the method, make one configuration. The engine is one of them: a
    Δ never pairs rows sampled on different engines (their random numbers differ)."""
    fixed = ["task", "model"] + [c for c in ("engine", "train_size") if c in cells.summary.columns]
    return fixed + cells.varying + ["budget"]


def comparison_key(columns: Iterable[str]) -> list[str]:
    """Columns two methods must share to be compared: everything but the method and its knobs."""
    return [c for c in columns if c != "method" and not c.startswith("method.")]


FLOOR = 0.05  # a reference Pass@1 under this leaves no room to tell methods apart


def cannot_discriminate(mean: float, lo: float, baselines: dict[str, float]) -> tuple[str, str]:
    """(kind, detail) of why a reference Pass@1 (`mean`, CI lower end `lo`) leaves no room to tell
    methods apart, or ("", ""): `at floor` (under FLOOR), or `at chance` (a CI that reaches a
    chance / majority-answer baseline, or lies below it). The table's flag and `make calibrate`'s
    verdict both use this one rule."""
    if mean < FLOOR:
        return "at floor", f"< {FLOOR}"
    for name, base in baselines.items():
        if lo <= base:
            return "at chance", f"{name} baseline {base:.3f}"
    return "", ""


@dataclass
class Unit:
    """One method (with its varied knobs) in one configuration: the cells of its seeds."""

    key: dict[str, Any]  # the comparison key's values
    label: str  # method, plus its varied knobs
    method: str
    rows: pd.DataFrame

    @property
    def learns(self) -> bool:
        return bool(self.rows["rollouts_used"].max() > 0)

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.rows["seed"].unique())

    @property
    def run_once(self) -> bool:
        """A no-learning method's single cell: its result holds for every run seed (the sweep runs
        such a method once per configuration, harness/cell.py)."""
        return not self.learns and self.rows["cell_id"].nunique() == 1

    @property
    def single_seed_flag(self) -> str:
        return "1 seed: CI has no training variance" if self.learns and len(self.seeds) == 1 else ""


def units(cells: SweepCells) -> list[Unit]:
    """Every (configuration, method) of the final evaluations. A method that used no rollouts (no
    learning) stands in at every budget of the sweep that it has no cell of its own at."""
    final = final_rows(cells.summary)
    key = comparison_key(config_columns(cells))
    knobs = [k for k in cells.varying if k.startswith("method.")]
    budgets = sorted(final["budget"].unique())
    out = []
    for _, rows in final.groupby([final[c].astype(str) for c in key + ["method"] + knobs], sort=True):
        first = rows.iloc[0]
        base = {c: first[c] for c in key}
        label = first["method"] + "".join(f" {k[7:]}={first[k]}" for k in knobs if pd.notna(first[k]))
        out.append(Unit(base, label, first["method"], rows))
        if rows["rollouts_used"].max() == 0:
            own = set(final[final["method"] == first["method"]]["budget"])
            out += [Unit({**base, "budget": b}, label, first["method"], rows) for b in budgets if b not in own]
    return out


def _same_config(a: Unit, b: Unit) -> bool:
    return all(str(a.key[c]) == str(b.key[c]) for c in a.key)


def _config_id(unit: Unit) -> tuple[str, ...]:
    return tuple(f"{c}={unit.key[c]}" for c in sorted(unit.key))


class Comparer:
    """Paired differences between units of one sweep, reading each cell's attempts once.
    `reference` (the no-learning method, or one the user names) decides which configurations
    cannot discriminate (`chance_flag`)."""

    def __init__(self, sweep_dir: Path, cells: SweepCells, reference: str | None = None):
        self.sweep_dir = sweep_dir
        self.units = units(cells)
        self.reference = reference
        self._values: dict[tuple[str, ...], pd.Series] = {}
        self._pairs: pd.DataFrame | None = None
        self._flags: dict[tuple[str, ...], str] = {}

    def values(self, unit: Unit) -> pd.Series:
        ids = tuple(sorted(unit.rows["cell_id"]))
        if ids not in self._values:
            self._values[ids] = method_values(self.sweep_dir, unit.rows)
        return self._values[ids]

    def reference_for(self, unit: Unit, method: str) -> Unit | None:
        return next((u for u in self.units if u.method == method and _same_config(u, unit)), None)

    def _paired_values(self, unit: Unit, seeds: list[int]) -> pd.Series:
        """A unit's values on `seeds`: a run-once unit's one result stands for every seed."""
        values = self.values(unit)
        if not unit.run_once:
            return values
        one = values.droplevel("seed")
        return pd.concat({s: one for s in seeds}, names=["seed", "problem_id"])

    def versus(self, unit: Unit, other: Unit) -> Estimate:
        seeds = sorted(set(unit.seeds) | set(other.seeds))
        return paired(self._paired_values(unit, seeds), self._paired_values(other, seeds))

    def chance_flag(self, unit: Unit) -> str:
        """Why `unit`'s configuration cannot tell methods apart, or "": the reference's Pass@1 CI
        overlaps a chance / majority-answer baseline of the task, or its Pass@1 is under FLOOR."""
        config = _config_id(unit)
        if config not in self._flags:
            self._flags[config] = self._chance_flag(unit)
        return self._flags[config]

    def _chance_flag(self, unit: Unit) -> str:
        ref = self.reference_for(unit, self.reference) if self.reference else None
        if ref is None:
            return ""
        e = estimate(self.values(ref))
        first = ref.rows.iloc[0]
        baselines = {c[len("baseline_"):]: float(first[c]) for c in sorted(ref.rows.columns)
                     if c.startswith("baseline_") and pd.notna(first[c])}
        kind, detail = cannot_discriminate(e.mean, e.lo, baselines)
        if not kind:
            return ""
        where = f"{ref.label} Pass@1 {e.mean:.3f} [{e.lo:.3f}, {e.hi:.3f}]"
        return f"{kind} ({detail}) ({where}): comparisons uninformative"

    def all_pairs(self) -> pd.DataFrame:
        """Every pair of methods within one configuration: Δ Pass@1 (a − b), CI, the sign-flip
        p-value and its Holm adjustment over the pairs of that configuration, and the flags of
        either side (one seed of a learning method; a configuration at chance)."""
        if self._pairs is not None:
            return self._pairs
        out: list[dict[str, Any]] = []
        for a, b in combinations(self.units, 2):
            if a.label == b.label or not _same_config(a, b):
                continue
            e = self.versus(a, b)
            flags = [f for f in (self.chance_flag(a), a.single_seed_flag and f"{a.label}: {a.single_seed_flag}",
                                 b.single_seed_flag and f"{b.label}: {b.single_seed_flag}") if f]
            out.append({**a.key, "method_a": a.label, "method_b": b.label, "delta_pass@1": round(e.mean, 4),
                        "ci_lo": round(e.lo, 4), "ci_hi": round(e.hi, 4), "p_value": e.p_value, "p_holm": 1.0,
                        "significant": False, "seeds": ",".join(map(str, e.seeds)), "n_seeds": e.n_seeds,
                        "n_problems": e.n_problems, "flags": "; ".join(flags), "_config": _config_id(a)})
        for config in {row["_config"] for row in out}:
            family = [row for row in out if row["_config"] == config]
            for row, adjusted in zip(family, holm([row["p_value"] for row in family]), strict=True):
                row.update(p_value=round(row["p_value"], 4), p_holm=round(float(adjusted), 4),
                           significant=bool(adjusted < ALPHA))
        pairs = pd.DataFrame(out)
        self._pairs = pairs
        return pairs

    def adjusted_p(self, unit: Unit, other: Unit) -> float:
        """The Holm-adjusted p-value of the pair (unit, other) within their configuration."""
        pairs = self.all_pairs()
        hit = pairs[(pairs["_config"] == _config_id(unit))
                    & (((pairs["method_a"] == unit.label) & (pairs["method_b"] == other.label))
                       | ((pairs["method_a"] == other.label) & (pairs["method_b"] == unit.label)))]
        return float(hit["p_holm"].iloc[0]) if len(hit) else float("nan")
