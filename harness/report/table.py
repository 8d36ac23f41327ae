"""The sweep's table: one row per configuration and method, from the cells of the sweep's latest plan.

`report` writes `table.md`, `table.csv` and `comparisons.csv` next to the sweep. A row
is one configuration: every config value that differs between the sweep's cells (the seed aside)
is a column (harness/report/compare.py). Pass@1, `Δ vs <reference>` (the paired difference on the same
problems and seeds, against the sweep's no-learning method, the one whose every cell used 0
rollouts, e.g. zero_shot, unless `--reference` names another), their CIs, p-values, the `*` and
the smallest detectable Δ all come from one procedure (harness/engine/stats.py). Stale and failed cells
are listed below.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.engine.records import (
    PLAN_FILE,
    DamagedRecord,
    damaged_cells,
    planned_cell_ids,
    read_json,
)
from harness.engine.stats import Claim
from harness.report.compare import (
    Comparer,
    SweepCells,
    config_columns,
    final_rows,
    no_learning_method,
)


def build_table(sweep_dir: Path, cells: SweepCells, reference: str | None = None,
                comparer: Comparer | None = None) -> pd.DataFrame:
    """One row per configuration (every varying config value is a column) and method, averaged
    over seeds; Pass@1 with its CI, the paired Δ vs `reference` on the seeds both share (`*`: a
    method claim whose Holm-adjusted p < ALPHA), that p and the claim it supports, and the row's
    flags (its own Pass@1 at chance or at floor; one seed)."""
    df = final_rows(cells.summary)
    reference = reference or no_learning_method(df)
    comparer = comparer or Comparer(sweep_dir, cells, reference)
    k = int(df["report_k"].min()) if "report_k" in df else int(df["n_samples"].min())  # one Pass@k per table
    config = config_columns(cells)
    key_cols = [c for c in config if c != "budget"] + ["method", "budget"]
    has_ref = reference in set(df["method"])
    odd_versions = version_outliers(df)
    rows = []
    for unit in comparer.units:
        if unit.stand_in:
            continue  # a no-learning stand-in at another budget: compared, not tabled twice
        r = unit.rows
        pass1 = comparer.pass1(unit)
        row = {c: unit.key.get(c, r.iloc[0].get(c)) for c in key_cols if c != "method"}
        row["method"] = unit.label
        row["seeds"] = r["seed"].nunique()
        row["Pass@1 [95% CI]"] = f"{pass1.mean:.3f} [{pass1.lo:.3f}, {pass1.hi:.3f}]"
        pair_flag = ""
        if has_ref and reference is not None:
            ref = comparer.reference_for(unit, reference)
            pair = comparer.pair(unit, ref) if ref is not None and unit.method != reference else None
            if ref is None or pair is None:
                row[f"Δ vs {reference}"] = row["p (Holm)"] = ""
            else:
                d = comparer.versus(unit, ref)
                star = " *" if pair["significant"] else ""
                of = f" of {len(unit.seeds)}" if len(d.seeds) < len(unit.seeds) else ""
                row[f"Δ vs {reference}"] = (f"{d.mean:+.3f} [{d.lo:+.3f}, {d.hi:+.3f}]{star} "
                                            f"(seed{'s' * (len(d.seeds) != 1)} {','.join(map(str, d.seeds))}{of})")
                row["p (Holm)"] = (f"{pair['p_holm']:.3f}"
                                   + (" (this model only)" if pair["claim"] == Claim.MODEL.value else ""))
                pair_flag = comparer.uninformative(unit, ref)
        row[f"Pass@{k}"] = round(float(r[f"pass@{k}"].mean()), 3) if f"pass@{k}" in r else float("nan")
        row["greedy"] = round(float(r["greedy_pass"].mean()), 3)
        if "pass@1_attempt2" in df.columns:  # methods with a reflect-and-retry second attempt
            second = r["pass@1_attempt2"].mean() if "pass@1_attempt2" in r else float("nan")
            row["≤2 attempts"] = round(float(second), 3) if pd.notna(second) else ""
        row["rollouts"] = round(r["rollouts_used"].mean())
        row["learn tok (policy/aux)"] = f"{int(r.learn_policy_tokens.mean())}/{int(r.learn_aux_tokens.mean())}"
        row["ctx tok added"] = round(float(r["context_tokens_added"].mean()), 1)
        row["eval prompt tok"] = round(float(r["eval_prompt_tokens_per_problem"].mean()), 1)
        row["wall s"] = round(float(r["wall_s"].mean()), 1)
        if "eval_s" in r:  # cells from before the per-phase split lack it
            row["eval s"] = round(float(r["eval_s"].mean()), 1)
            row["load s"] = round(float(r["load_s"].mean()), 1)
        timeouts = int(r["verify_timeouts"].fillna(0).sum()) if "verify_timeouts" in r else 0
        flags = [comparer.chance_flag(unit), pair_flag and "comparison uninformative", unit.single_seed_flag,
                 f"{timeouts} answers not verified in time (scored 0; raise task.verify_timeout_s)" if timeouts else "",
                 "package versions differ from the sweep's" if set(r["cell_id"]) & odd_versions else ""]
        row["flags"] = "; ".join(f for f in flags if f)
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values([c for c in key_cols if c in out.columns], kind="stable").reset_index(drop=True)


def version_outliers(final: pd.DataFrame) -> set[str]:
    """Cells whose recorded package versions differ from the sweep's most common set."""
    if "versions" not in final or final["versions"].nunique() < 2:
        return set()
    common = final["versions"].mode().iloc[0]
    return set(final.loc[final["versions"] != common, "cell_id"])


def versions_note(final: pd.DataFrame) -> list[str]:
    if "versions" not in final or final["versions"].nunique() < 2:
        return []
    counts = final.drop_duplicates("cell_id")["versions"].value_counts()
    return [f"- {n} cell{'s' * (n != 1)}: {v}" for v, n in counts.items()]


def unfinished(sweep_dir: Path) -> list[str]:
    """The latest plan's cells that are not in the table: failed, started but not finished (running
    now, or killed mid-cell), or not started, one line each (and a finished cell whose status.json
    does not read)."""
    if planned_cell_ids(sweep_dir) is None:  # DamagedRecord for a plan.json that does not read
        return []
    lines = []
    for cell in read_json(sweep_dir / PLAN_FILE)["cells"]:
        d = sweep_dir / "cells" / cell["cell_id"]
        if (d / "done.json").exists():
            try:
                if (d / "status.json").exists():
                    read_json(d / "status.json")
            except DamagedRecord:  # finished (done.json decides), but say that its status does not read
                lines.append(f"- UNREADABLE status of {cell['cell_id']}")
            continue
        try:
            s = read_json(d / "status.json") if (d / "status.json").exists() else {"status": "not started"}
            s = s if isinstance(s, dict) else {"status": "unreadable status.json"}
        except DamagedRecord:
            s = {"status": "unreadable status.json"}
        state = str(s.get("status", "unknown"))
        if state == "running":
            state = "started, not finished (running now, or killed mid-cell)"
        error = f": {s['error']}" if s.get("error") else ""
        lines.append(f"- {state.upper() if state == 'failed' else state} {cell.get('label', '')} "
                     f"({cell['cell_id']}){error}")
    return lines


def unreadable(sweep_dir: Path) -> list[str]:
    """Cells of the latest plan marked finished whose files do not read (left out of tables and plots)."""
    return [f"- {cid}: {why}" for cid, why in damaged_cells(sweep_dir)]


STATS_NOTE = (
    "The `*` claims: this method's expected Pass@1 on this task's test distribution differs from the "
    "reference's, over training seeds, with family-wise error {alpha} over the pairs of its configuration "
    "(Holm). The unit of replication is the training seed; the test problem is the unit within a seed. "
    "Pass@1 is the mean over seeds and test problems of each problem's pass rate over its samples. Pass@1, "
    "Δ (paired: the same test problems and the seeds named beside it), their 95% CIs and p-values come "
    "from one t procedure on the seeds x problems matrix: the variance of the mean is (MS_seed + "
    "MS_problem) / (seeds x problems) of the crossed seed x problem design, with Satterthwaite degrees of "
    "freedom (the seed part at its {q:.0%} upper confidence bound), so seed-to-seed and problem-to-problem "
    "variation both count, a run-once reference (a method that does not learn) counts once, and a `*` "
    "never sits beside a CI that covers 0. With one training seed the seed variance cannot be estimated: "
    "the p is the problems-only paired t, a claim about that trained model on these problems, marked "
    "'(this model only)' and never starred. Its false-positive rate, coverage and power under simulation: "
    "bench/stats_calibration.py. Flags: a row whose own Pass@1 CI reaches a chance / majority baseline "
    "or {floor} is `at chance` / `at floor`; a comparison is uninformative only when both of its rows are.")


def detectable_note(comparer: Comparer, reference: str | None) -> list[str]:
    """Per configuration, the smallest Δ vs the reference each method's design (its problems,
    samples and seeds) detects with 80% power (comparisons.csv `mde`)."""
    pairs = comparer.all_pairs()
    if pairs.empty or reference is None:
        return []
    lines = []
    for _, family in pairs.groupby("_config", sort=True):
        vs = family[(family["method_a"] == reference) | (family["method_b"] == reference)]
        parts = []
        for _, r in vs.iterrows():
            other = r["method_b"] if r["method_a"] == reference else r["method_a"]
            what = f"{r['n_seeds']} seed{'s' * (r['n_seeds'] != 1)}" + (", this model only"
                                                                       if r["claim"] == Claim.MODEL.value else "")
            parts.append(f"{other} {r['mde']:.3f} ({what})")
        if parts:
            lines.append(f"- {' '.join(family['_config'].iloc[0])}: {', '.join(parts)}")
    return lines


def baselines_note(summary: pd.DataFrame) -> list[str]:
    cols = [c for c in summary.columns if c.startswith("baseline_")]
    if not cols:
        return []
    per_task = summary.groupby("task")[cols].first()
    lines = []
    for task, row in per_task.iterrows():
        parts = [f"{str(c)[9:]} {v:.3f}" for c, v in row.items() if pd.notna(v)]
        lines.append(f"- {task}: {', '.join(parts) if parts else 'none (answers are not constants)'}")
    return lines
