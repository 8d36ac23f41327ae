"""Tables that cannot lie: one row per configuration, only the latest plan's cells, a CI over seeds
and problems, and paired differences with their CI. The sweeps here are written by hand, so every
expected number is known exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.compare import cluster_bootstrap, estimate, flatten, load_cells, paired
from harness.records import write_plan
from harness.table import build_table, report


def fake_cell(sweep, cell_id: str, method: str, seed: int, passes: dict[str, list[bool]], *,
              task: dict | None = None, budget: int = 10, rollouts: int = 10, extra: dict | None = None) -> None:
    """A finished cell: config.json, done.json, summary.parquet and eval rows in attempts.parquet."""
    d = sweep / "cells" / cell_id
    d.mkdir(parents=True)
    task = {"name": "math", "difficulty": "easy", "train_size": 10, **(task or {})}
    config = {"task": task, "method": {"name": method}, "model": {"label": "m", "backend": "mock"},
              "budget": budget, "seed": seed, "sweep": "s", "eval": {"n_samples": 2}}
    (d / "config.json").write_text(json.dumps({"cell_id": cell_id, "config": config}))
    (d / "done.json").write_text("{}")
    rows = [{"phase": "eval", "tag": "sample", "problem_id": pid, "sample_idx": i, "passed": ok, "checkpoint": 0,
             "step": 0} for pid, oks in passes.items() for i, ok in enumerate(oks)]
    pd.DataFrame(rows).to_parquet(d / "attempts.parquet")
    p1 = float(np.mean([np.mean(v) for v in passes.values()]))
    pd.DataFrame([{"cell_id": cell_id, "task": "math", "method": method, "model": "m", "budget": budget,
                   "seed": seed, "checkpoint": rollouts, "rollouts_used": rollouts, "n_test": len(passes),
                   "n_samples": 2, "pass@1": p1, "pass@2": p1, "report_k": 2, "greedy_pass": p1,
                   "learn_policy_tokens": 1, "learn_aux_tokens": 0, "context_tokens_added": 0.0,
                   "eval_prompt_tokens_per_problem": 5.0, "wall_s": 1.0, "status": "ok", "final": True,
                   "train_size": task["train_size"], **(extra or {})}]).to_parquet(d / "summary.parquet")


def plan(sweep, *ids: str) -> None:
    write_plan(sweep, [(i, i) for i in ids])


def test_every_config_value_that_differs_is_a_column_so_cells_are_never_blended(tmp_path):
    """Round 1 grouped by a fixed list: task.difficulty=easy,hard x feedback=binary,rich collapsed
    into one row per method labelled '1 seed', blending cells that scored 0.3 and 0.8."""
    sweep = tmp_path / "s"
    ids = []
    for diff in ("easy", "hard"):
        for fb in ("binary", "rich"):
            cid = f"{diff}-{fb}"
            ok = diff == "easy"
            fake_cell(sweep, cid, "zero_shot", 0, {"a": [ok, ok], "b": [ok, False]},
                      task={"difficulty": diff, "feedback": fb, "max_tokens": 48})
            ids.append(cid)
    plan(sweep, *ids)
    cells = load_cells(sweep)
    assert cells.varying == ["task.difficulty", "task.feedback"]  # max_tokens is constant: no column
    table = build_table(sweep, cells)
    assert len(table) == 4 and (table["seeds"] == 1).all()
    easy = table[table["task.difficulty"] == "easy"]["Pass@1 [95% CI]"]
    assert all(v.startswith("0.750") for v in easy)


def test_keys_determined_by_task_or_method_are_not_columns():
    base = pd.DataFrame({"task": ["math", "hanoi"], "method": ["core", "core"], "model": ["m", "m"]})
    flat = pd.DataFrame([flatten({"task": {"max_tokens": 48}, "seed": 0}),
                         flatten({"task": {"max_tokens": 96}, "seed": 1})])
    from harness.compare import varying_keys

    assert varying_keys(flat, base) == []  # the cap differs only because the task does; seeds never count


def test_only_cells_of_the_latest_plan_are_tabled_and_stale_ones_are_listed(tmp_path):
    sweep = tmp_path / "s"
    fake_cell(sweep, "old", "zero_shot", 0, {"a": [False, False], "b": [False, False]}, task={"test_size": 10})
    fake_cell(sweep, "new", "zero_shot", 0, {"a": [True, True], "b": [True, False]}, task={"test_size": 50})
    plan(sweep, "new")
    text = report(sweep, "s")
    table = pd.read_csv(sweep / "table.csv")
    assert len(table) == 1 and table["Pass@1 [95% CI]"][0].startswith("0.750")
    assert "1 stale cells" in text and "old" in text


def test_cluster_bootstrap_resamples_seeds_as_well_as_problems():
    # two seeds that disagree completely: a problem-only bootstrap per seed would give two zero-width
    # intervals; resampling seeds spreads the mean between them
    matrix = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    boots = cluster_bootstrap(matrix, n_boot=4000, seed=1)
    assert set(np.unique(boots)) == {0.0, 0.5, 1.0}
    assert np.mean(boots == 0.5) == pytest.approx(0.5, abs=0.03)
    e = estimate(pd.DataFrame(matrix, index=pd.Index([0, 1], name="seed"),
                              columns=pd.Index(list("abcd"), name="problem_id")).stack())
    assert e.mean == 0.5 and e.lo == 0.0 and e.hi == 1.0 and e.n_seeds == 2 and e.n_problems == 4


def test_paired_difference_uses_the_same_problems_and_its_ci_excludes_zero_only_when_it_should():
    idx = pd.MultiIndex.from_product([[0], [f"p{i}" for i in range(40)]], names=["seed", "problem_id"])
    base = pd.Series(np.tile([0.0, 1.0], 20), index=idx)
    better = base.copy()
    better.iloc[::2] = 1.0  # solves every problem the base fails, keeps the rest
    d = paired(better, base)
    assert d.mean == pytest.approx(0.5) and d.excludes_zero and d.p_value < 0.01
    # shuffling which problems pass keeps the mean but breaks the pairing: no significant difference
    same_mean = pd.Series(np.tile([1.0, 0.0], 20), index=idx)
    d0 = paired(same_mean, base)
    assert d0.mean == 0.0 and not d0.excludes_zero and d0.p_value == 1.0
    # only shared (seed, problem) pairs count
    d1 = paired(better.iloc[:10], base)
    assert d1.n_problems == 10


def test_table_shows_delta_vs_zero_shot_and_comparisons_csv_holds_every_pair(tmp_path):
    sweep = tmp_path / "s"
    problems = [f"p{i}" for i in range(30)]
    ok = {p: [True, True] for p in problems}
    half = {p: [i % 2 == 0] * 2 for i, p in enumerate(problems)}
    none = {p: [False, False] for p in problems}
    fake_cell(sweep, "z", "zero_shot", 0, half, rollouts=0)
    fake_cell(sweep, "c", "core", 0, ok)
    fake_cell(sweep, "r", "episodic_rag", 0, none, extra={"pass@1_attempt2": 0.9})
    plan(sweep, "z", "c", "r")
    report(sweep, "s")
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    core_delta = table.loc["core", "Δ vs zero_shot"]
    assert core_delta.startswith("+0.500") and core_delta.endswith("* (seed 0)")
    assert table.loc["episodic_rag", "Δ vs zero_shot"].startswith("-0.500")
    assert table.loc["zero_shot", "Δ vs zero_shot"] == ""
    assert table.loc["episodic_rag", "≤2 attempts"] == "0.9" and table.loc["core", "≤2 attempts"] == ""
    pairs = pd.read_csv(sweep / "comparisons.csv")
    assert len(pairs) == 3
    core_rag = pairs[(pairs.method_a == "core") & (pairs.method_b == "episodic_rag")].iloc[0]
    assert core_rag["delta_pass@1"] == 1.0 and core_rag.significant and core_rag.n_problems == 30


def test_cells_written_before_rows_had_a_step_still_table(tmp_path):
    sweep = tmp_path / "s"
    fake_cell(sweep, "old", "zero_shot", 0, {"a": [True, False], "b": [True, True]})
    rows = pd.read_parquet(sweep / "cells" / "old" / "attempts.parquet").drop(columns=["step"])
    rows.to_parquet(sweep / "cells" / "old" / "attempts.parquet")  # a round-1 cell: no plan.json, no step
    report(sweep, "s")
    assert pd.read_csv(sweep / "table.csv")["Pass@1 [95% CI]"][0].startswith("0.750")


def test_zero_shot_is_the_reference_at_every_budget(tmp_path):
    """zero_shot learns nothing, so one zero_shot cell is the reference for each learning budget."""
    sweep = tmp_path / "s"
    probs = {f"p{i}": [i % 3 == 0] * 2 for i in range(12)}
    fake_cell(sweep, "z", "zero_shot", 0, probs, budget=50, rollouts=0)
    fake_cell(sweep, "c50", "core", 0, probs, budget=50)
    fake_cell(sweep, "c100", "core", 0, {p: [True, True] for p in probs}, budget=100)
    plan(sweep, "z", "c50", "c100")
    report(sweep, "s")
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False)
    assert len(table) == 3  # zero_shot is tabled once, at its own budget
    core100 = table[(table.method == "core") & (table.budget == 100)].iloc[0]
    assert core100["Δ vs zero_shot"].startswith("+0.667")


def test_the_reference_is_the_method_that_used_no_rollouts_unless_named(tmp_path):
    sweep = tmp_path / "s"
    probs = {f"p{i}": [i % 2 == 0] * 2 for i in range(10)}
    fake_cell(sweep, "n", "no_learning", 0, probs, rollouts=0)  # harness/ names no method: found by its budget use
    fake_cell(sweep, "c", "core", 0, {p: [True, True] for p in probs})
    plan(sweep, "n", "c")
    report(sweep, "s")
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    assert table.loc["core", "Δ vs no_learning"].startswith("+0.500")
    report(sweep, "s", reference="core")
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    assert table.loc["no_learning", "Δ vs core"].startswith("-0.500")
