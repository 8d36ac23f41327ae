"""What a table row is and how sure we are of it (DESIGN.md §4 "A table row is one configuration").

- `load_cells`: the finished cells of a sweep's latest plan (`plan.json`), one row per cell x
  checkpoint, with a column for every config value that differs between the cells (`varying_keys`:
  the seed aside, and keys that the task, method or model already determine). So a sweep over
  `task.difficulty=easy,hard` gives two rows, never one blended row.
- `per_problem`: each cell's final-evaluation Pass@1 per (seed, test problem), read from
  attempts.parquet, the source of truth.
- `estimate` / `Comparer.versus`: a method's Pass@1, or the paired difference of two methods on the
  same problems (and the seeds they share; a run-once reference enters every seed as the same
  numbers, so it counts once), through the one procedure of `harness/engine/stats.py`: mean, t CI, p and
  the claim it supports (`method` with 2+ training seeds, or where neither side trains; `model`
  with one training seed) and the minimum detectable effect.
- `Comparer.all_pairs`: every pair within one configuration, Holm-adjusted over that family; a
  pair is significant (`*`) when its adjusted p < ALPHA and it supports a method claim.
- `at_baseline`: the one rule for "at chance" and "at floor", applied to each row's own CI.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from harness.core.knobs import flatten
from harness.engine.records import collect_summaries
from harness.engine.stats import ALPHA, POWER, Claim, detectable_effect, holm, infer

BASE_COLUMNS = ("task", "model", "method")  # summary columns every table groups by


NOT_CONFIGURATION = ("seed", "sweep", "results_dir", "code_version_in_id")  # never make rows differ


NOT_CONFIGURATION_PREFIXES = ("launcher.", "logger.", "model.resources", "aux_model.resources", "model.shape",
                              "aux_model.shape")


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


@dataclass(frozen=True)
class Estimate:
    mean: float
    lo: float
    hi: float
    p_value: float  # of mean = 0 (meaningful for paired differences)
    n_seeds: int
    n_problems: int
    seeds: tuple[int, ...] = field(default=())  # the seeds the values came from (for a Δ: the shared ones)
    claim: Claim = Claim.METHOD  # what a small p supports: the method, or this trained model only
    se: float = float("nan")
    df: float = float("nan")

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0

    def mde(self, alpha: float = ALPHA, power: float = POWER) -> float:
        return detectable_effect(self.se, self.df, alpha, power)


def estimate(values: pd.Series, seeds_vary: bool = True, bounded: bool = False) -> Estimate:
    """Mean, 95% t CI and p (harness/engine/stats.py) of per-(seed, problem) values (a Series indexed by
    seed, problem_id). `seeds_vary`: the values come from training runs, so seeds are replicates
    whose spread is estimated; `bounded`: a pass rate, its CI clipped to [0, 1]."""
    matrix = values.unstack("problem_id")
    inf = infer(matrix.to_numpy(), seeds_vary=seeds_vary)
    lo, hi = (float(np.clip(inf.lo, 0, 1)), float(np.clip(inf.hi, 0, 1))) if bounded else (inf.lo, inf.hi)
    return Estimate(inf.mean, lo, hi, inf.p_value, inf.n_seeds, inf.n_problems,
                    tuple(int(s) for s in matrix.index), inf.claim, inf.se, inf.df)


def paired(a: pd.Series, b: pd.Series, seeds_vary: bool = True) -> Estimate:
    """a − b on the (seed, problem) pairs both have."""
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    return estimate(both["a"] - both["b"], seeds_vary)


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


FLOOR = 0.05  # a Pass@1 that cannot be told apart from this leaves no room to tell methods apart


def at_baseline(lo: float, baselines: dict[str, float]) -> tuple[str, str]:
    """(kind, detail) where a Pass@1 whose 95% CI starts at `lo` cannot be told apart from a
    baseline (its CI reaches it, or lies below it), or ("", ""). One rule for both baselines:
    `at floor` (FLOOR, a model that almost never passes) and `at chance` (a task's chance /
    majority-answer baseline). The table's row flags and `make calibrate`'s verdict use it."""
    if lo <= FLOOR:
        return "at floor", f"CI reaches {FLOOR}"
    for name, base in baselines.items():
        if lo <= base:
            return "at chance", f"CI reaches the {name} baseline {base:.3f}"
    return "", ""


@dataclass
class Unit:
    """One method (with its varied knobs) in one configuration: the cells of its seeds."""

    key: dict[str, Any]  # the comparison key's values
    label: str  # method, plus its varied knobs
    method: str
    rows: pd.DataFrame
    stand_in: bool = False  # a no-learning method's cells standing in at another learner-only value

    @property
    def learns(self) -> bool:
        return bool(self.rows["rollouts_used"].max() > 0)

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.rows["seed"].unique())

    @property
    def run_once(self) -> bool:
        """A no-learning method's single cell: its result holds for every run seed (the sweep runs
        such a method once per configuration, harness/engine/cell.py)."""
        return not self.learns and self.rows["cell_id"].nunique() == 1

    @property
    def single_seed_flag(self) -> str:
        return "1 seed: a claim about this trained model, not the method" if self.learns and len(self.seeds) == 1 \
            else ""

    @property
    def baselines(self) -> dict[str, float]:
        first = self.rows.iloc[0]
        return {c[len("baseline_"):]: float(first[c]) for c in sorted(self.rows.columns)
                if c.startswith("baseline_") and pd.notna(first[c])}


def learner_only(column: str) -> bool:
    """Config columns only learning reads (harness/engine/provenance.py LEARNING_KEYS, and the
    training set): a method that spends no rollouts computes the same whatever their value."""
    return column in ("budget", "train_size", "checkpoints") or column.startswith("learn.")


def units(cells: SweepCells) -> list[Unit]:
    """Every (configuration, method) of the final evaluations. A method that used no rollouts (no
    learning) runs once per configuration of the values it reads, and stands in at every value of
    the learner-only columns (budget, training size, learn.*, checkpoints) that the sweep's other
    cells have and it has no cell of its own at."""
    final = final_rows(cells.summary)
    key = comparison_key(config_columns(cells))
    knobs = [k for k in cells.varying if k.startswith("method.")]
    learning = [c for c in key if learner_only(c)]
    rest = [c for c in key if c not in learning]
    out = []
    # dropna=False: a method without a varied knob has NaN in its column (pandas 3 keeps NaN through
    # astype(str)), and the default would drop its cells, the no-learning reference's among them
    for _, rows in final.groupby([final[c].astype(str) for c in key + ["method"] + knobs], sort=True, dropna=False):
        first = rows.iloc[0]
        base = {c: first[c] for c in key}
        label = first["method"] + "".join(f" {k[7:]}={first[k]}" for k in knobs if pd.notna(first[k]))
        out.append(Unit(base, label, first["method"], rows))
        if rows["rollouts_used"].max() == 0 and learning:
            same = final[(final[rest].astype(str).fillna("nan") == pd.Series({c: str(base[c]) for c in rest}))
                         .all(axis=1)]
            mine = same[same["method"] == first["method"]][learning]
            own = {tuple(map(str, v)) for v in mine.itertuples(index=False)}
            for values in same[learning].drop_duplicates().itertuples(index=False):
                if tuple(map(str, values)) not in own:
                    out.append(Unit({**base, **dict(zip(learning, values, strict=True))}, label, first["method"],
                                    rows, stand_in=True))
    return out


def _same_config(a: Unit, b: Unit) -> bool:
    return all(str(a.key[c]) == str(b.key[c]) for c in a.key)


def _config_id(unit: Unit) -> tuple[str, ...]:
    return tuple(f"{c}={unit.key[c]}" for c in sorted(unit.key))


class Comparer:
    """Paired differences between units of one sweep, reading each cell's attempts once.
    `reference` is the method the table's Δ column pairs against (the no-learning method, or one
    the user names)."""

    def __init__(self, sweep_dir: Path, cells: SweepCells, reference: str | None = None):
        self.sweep_dir = sweep_dir
        self.units = units(cells)
        self.reference = reference
        self._values: dict[tuple[str, ...], pd.Series] = {}
        self._pairs: pd.DataFrame | None = None

    def values(self, unit: Unit) -> pd.Series:
        ids = tuple(sorted(unit.rows["cell_id"]))
        if ids not in self._values:
            self._values[ids] = method_values(self.sweep_dir, unit.rows)
        return self._values[ids]

    def pass1(self, unit: Unit) -> Estimate:
        return estimate(self.values(unit), seeds_vary=unit.learns, bounded=True)

    def reference_for(self, unit: Unit, method: str) -> Unit | None:
        return next((u for u in self.units if u.method == method and _same_config(u, unit)), None)

    def _paired_values(self, unit: Unit, seeds: list[int]) -> pd.Series:
        """A unit's values on `seeds`: a run-once unit's one result stands for every seed (the
        same numbers in each, so the procedure counts it once: harness/engine/stats.py)."""
        values = self.values(unit)
        if not unit.run_once:
            return values
        one = values.droplevel("seed")
        return pd.concat({s: one for s in seeds}, names=["seed", "problem_id"])

    def versus(self, unit: Unit, other: Unit) -> Estimate:
        seeds = sorted(set(unit.seeds) | set(other.seeds))
        return paired(self._paired_values(unit, seeds), self._paired_values(other, seeds),
                      seeds_vary=unit.learns or other.learns)

    def chance_flag(self, unit: Unit) -> str:
        """`at chance` / `at floor` where this row's own Pass@1 cannot be told apart from the
        task's chance / majority baseline or from FLOOR, with the rule (`at_baseline`), or ""."""
        e = self.pass1(unit)
        kind, detail = at_baseline(e.lo, unit.baselines)
        return f"{kind} ({detail})" if kind else ""

    def uninformative(self, a: Unit, b: Unit) -> str:
        """A pair is uninformative only where both rows sit at a baseline: a method whose own CI is
        clearly above it can still show that it beats a reference that is at chance."""
        fa, fb = self.chance_flag(a), self.chance_flag(b)
        return f"both at a baseline ({a.label}: {fa}; {b.label}: {fb}): comparison uninformative" if fa and fb else ""

    def all_pairs(self) -> pd.DataFrame:
        """Every pair of methods within one configuration: Δ Pass@1 (a − b), its CI and p from the
        one procedure, the claim it supports, the minimum detectable effect (80% power at the
        Bonferroni level α/m, the level of Holm's first step), Holm's adjustment over the pairs of
        that configuration, and the flags (one seed of a learning method; both rows at a baseline)."""
        if self._pairs is not None:
            return self._pairs
        out: list[dict[str, Any]] = []
        for a, b in combinations(self.units, 2):
            if a.label == b.label or not _same_config(a, b):
                continue
            e = self.versus(a, b)
            flags = [f for f in (self.uninformative(a, b), a.single_seed_flag and f"{a.label}: {a.single_seed_flag}",
                                 b.single_seed_flag and f"{b.label}: {b.single_seed_flag}") if f]
            out.append({**a.key, "method_a": a.label, "method_b": b.label, "delta_pass@1": round(e.mean, 4),
                        "ci_lo": round(e.lo, 4), "ci_hi": round(e.hi, 4), "se": e.se, "df": e.df,
                        "p_value": e.p_value, "p_holm": 1.0, "claim": e.claim.value, "significant": False,
                        "mde": float("nan"), "seeds": ",".join(map(str, e.seeds)), "n_seeds": e.n_seeds,
                        "n_problems": e.n_problems, "flags": "; ".join(flags), "_config": _config_id(a)})
        for config in {row["_config"] for row in out}:
            family = [row for row in out if row["_config"] == config]
            raw = [1.0 if pd.isna(row["p_value"]) else row["p_value"] for row in family]
            for row, adjusted in zip(family, holm(raw), strict=True):
                mde = detectable_effect(row["se"], row["df"], ALPHA / len(family))
                row.update(p_value=round(row["p_value"], 4), p_holm=round(float(adjusted), 4),
                           significant=bool(adjusted < ALPHA and row["claim"] == Claim.METHOD.value),
                           mde=round(mde, 4), se=round(row["se"], 5), df=round(row["df"], 1))
        pairs = pd.DataFrame(out)
        self._pairs = pairs
        return pairs

    def pair(self, unit: Unit, other: Unit) -> pd.Series | None:
        """The all_pairs row of (unit, other) within their configuration, either way round."""
        pairs = self.all_pairs()
        if pairs.empty:
            return None
        hit = pairs[(pairs["_config"] == _config_id(unit))
                    & (((pairs["method_a"] == unit.label) & (pairs["method_b"] == other.label))
                       | ((pairs["method_a"] == other.label) & (pairs["method_b"] == unit.label)))]
        return hit.iloc[0] if len(hit) else None
