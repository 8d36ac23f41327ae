"""Tables that cannot lie: one row per configuration, only the latest plan's cells, a CI over seeds
and problems, and paired differences with their CI. The sweeps here are written by hand, so every
expected number is known exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fakes import fake_cell, plan, write_table

from harness.core.knobs import flatten
from harness.engine.records import write_plan
from harness.report.compare import estimate, load_cells, paired
from harness.report.table import build_table


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
    from harness.report.compare import varying_keys

    assert varying_keys(flat, base) == []  # the cap differs only because the task does; seeds never count


def test_only_cells_of_the_latest_plan_are_tabled_and_stale_ones_are_listed(tmp_path):
    sweep = tmp_path / "s"
    fake_cell(sweep, "old", "zero_shot", 0, {"a": [False, False], "b": [False, False]}, task={"test_size": 10})
    fake_cell(sweep, "new", "zero_shot", 0, {"a": [True, True], "b": [True, False]}, task={"test_size": 50})
    plan(sweep, "new")
    text = write_table(sweep)
    table = pd.read_csv(sweep / "table.csv")
    assert len(table) == 1 and table["Pass@1 [95% CI]"][0].startswith("0.750")
    assert "1 stale cells" in text and "old" in text


def test_pass1_ci_counts_seed_to_seed_variation():
    # two seeds that disagree completely: within each seed every problem agrees (no problem
    # variance), so only the seed spread can widen the interval, and with 2 seeds it must be wide
    matrix = np.array([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    e = estimate(pd.DataFrame(matrix, index=pd.Index([0, 1], name="seed"),
                              columns=pd.Index(list("abcd"), name="problem_id")).stack(), bounded=True)
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
    write_table(sweep)
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    core_delta = table.loc["core", "Δ vs zero_shot"]
    # one training seed: a claim about this trained model (p shown as such), never a `*`
    assert core_delta.startswith("+0.500") and core_delta.endswith("] (seed 0)")
    assert table.loc["core", "p (Holm)"].endswith("(this model only)")
    assert table.loc["episodic_rag", "Δ vs zero_shot"].startswith("-0.500")
    assert table.loc["zero_shot", "Δ vs zero_shot"] == ""
    assert table.loc["episodic_rag", "≤2 attempts"] == "0.9" and table.loc["core", "≤2 attempts"] == ""
    pairs = pd.read_csv(sweep / "comparisons.csv")
    assert len(pairs) == 3
    core_rag = pairs[(pairs.method_a == "core") & (pairs.method_b == "episodic_rag")].iloc[0]
    assert core_rag["delta_pass@1"] == 1.0 and core_rag.n_problems == 30
    assert core_rag.claim == "model" and core_rag.p_value < 1e-6 and not core_rag.significant


def test_cells_written_before_rows_had_a_step_still_table(tmp_path):
    sweep = tmp_path / "s"
    fake_cell(sweep, "old", "zero_shot", 0, {"a": [True, False], "b": [True, True]})
    rows = pd.read_parquet(sweep / "cells" / "old" / "attempts.parquet").drop(columns=["step"])
    rows.to_parquet(sweep / "cells" / "old" / "attempts.parquet")  # a round-1 cell: no plan.json, no step
    write_table(sweep)
    assert pd.read_csv(sweep / "table.csv")["Pass@1 [95% CI]"][0].startswith("0.750")


def test_zero_shot_is_the_reference_at_every_budget(tmp_path):
    """zero_shot learns nothing, so one zero_shot cell is the reference for each learning budget."""
    sweep = tmp_path / "s"
    probs = {f"p{i}": [i % 3 == 0] * 2 for i in range(12)}
    fake_cell(sweep, "z", "zero_shot", 0, probs, budget=50, rollouts=0)
    fake_cell(sweep, "c50", "core", 0, probs, budget=50)
    fake_cell(sweep, "c100", "core", 0, {p: [True, True] for p in probs}, budget=100)
    plan(sweep, "z", "c50", "c100")
    write_table(sweep)
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
    write_table(sweep)
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    assert table.loc["core", "Δ vs no_learning"].startswith("+0.500")
    write_table(sweep, "core")
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    assert table.loc["no_learning", "Δ vs core"].startswith("-0.500")


def test_star_follows_the_holm_adjusted_p_and_comparisons_csv_holds_both(tmp_path):
    """core (3 seeds) beats zero_shot by +0.125, +0.15 and +0.10 on 40 problems: a method-level t
    that is significant alone (p 0.025) but not after Holm over the configuration's 3 pairs (rag
    does as zero_shot: core vs rag is the same 0.025, so Holm gives 3 x 0.025 = 0.074)."""
    sweep = tmp_path / "s"
    problems = [f"p{i}" for i in range(40)]
    fake_cell(sweep, "z", "zero_shot", 0, {p: [False, False] for p in problems}, rollouts=0)
    for s, wins in ((0, 5), (1, 6), (2, 4)):
        fake_cell(sweep, f"c{s}", "core", s, {p: [i < wins] * 2 for i, p in enumerate(problems)})
        fake_cell(sweep, f"r{s}", "episodic_rag", s, {p: [False, False] for p in problems})
    plan(sweep, "z", "c0", "c1", "c2", "r0", "r1", "r2")
    write_table(sweep)
    pairs = pd.read_csv(sweep / "comparisons.csv", keep_default_na=False)
    core_z = pairs[(pairs.method_a == "core") & (pairs.method_b == "zero_shot")].iloc[0]
    assert core_z["delta_pass@1"] == pytest.approx(0.125) and core_z.claim == "method" and core_z.n_seeds == 3
    assert core_z.p_value == pytest.approx(0.0246, abs=1e-4) and core_z.ci_lo > 0
    assert core_z.p_holm == pytest.approx(3 * 0.0246, abs=3e-4) and not core_z.significant
    rag_z = pairs[(pairs.method_a == "episodic_rag") & (pairs.method_b == "zero_shot")].iloc[0]
    assert rag_z.p_value == 1.0 and rag_z.p_holm == 1.0
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    assert "*" not in table.loc["core", "Δ vs zero_shot"]
    assert table.loc["core", "p (Holm)"] == f"{core_z.p_holm:.3f}"


def test_each_delta_names_its_seeds_and_a_no_learning_reference_stands_for_every_seed(tmp_path):
    sweep = tmp_path / "s"
    probs = {f"p{i}": [i % 2 == 0] * 2 for i in range(10)}
    win = {p: [True, True] for p in probs}
    fake_cell(sweep, "z", "zero_shot", 0, probs, rollouts=0)  # run once: seeds 1 and 2 reuse it
    for s in (0, 1, 2):
        fake_cell(sweep, f"c{s}", "core", s, win)
    fake_cell(sweep, "g0", "gepa", 0, probs)  # a learning reference with fewer seeds
    plan(sweep, "z", "c0", "c1", "c2", "g0")
    write_table(sweep)
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    assert table.loc["core", "Δ vs zero_shot"].endswith("(seeds 0,1,2)")
    pairs = pd.read_csv(sweep / "comparisons.csv", keep_default_na=False)
    core_z = pairs[(pairs.method_a == "core") & (pairs.method_b == "zero_shot")].iloc[0]
    assert core_z.n_seeds == 3 and core_z.n_problems == 10 and core_z.seeds == "0,1,2"
    write_table(sweep, "gepa")
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    assert table.loc["core", "Δ vs gepa"].endswith("(seed 0 of 3)")  # only the seed both ran


def test_single_seed_rows_of_learning_methods_are_flagged(tmp_path):
    sweep = tmp_path / "s"
    probs = {f"p{i}": [i % 2 == 0] * 2 for i in range(10)}
    fake_cell(sweep, "z", "zero_shot", 0, probs, rollouts=0)
    fake_cell(sweep, "c", "core", 0, probs)
    fake_cell(sweep, "g0", "gepa", 0, probs)
    fake_cell(sweep, "g1", "gepa", 1, probs)
    plan(sweep, "z", "c", "g0", "g1")
    text = write_table(sweep)
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    assert table.loc["core", "flags"] == "1 seed: a claim about this trained model, not the method"
    assert table.loc["gepa", "flags"] == "" and table.loc["zero_shot", "flags"] == ""
    pairs = pd.read_csv(sweep / "comparisons.csv", keep_default_na=False)
    assert "core: 1 seed" in pairs[(pairs.method_a == "core") & (pairs.method_b == "gepa")].iloc[0]["flags"]
    assert "this trained model" in text


@pytest.mark.parametrize("ref_passes, baseline, ref_flag", [
    ([True, False, False], 0.35, "at floor"),  # Pass@1 1/3 on 3 problems: the CI reaches 0 (floor first)
    ([False] * 59 + [True], None, "at floor"),  # 1 problem in 60: its CI reaches 5%
    ([True] * 12 + [False] * 48, 0.5, "at chance"),  # 0.2 [0.10, 0.30]: below a 0.5 coin flip
    ([True] * 30 + [False] * 30, 0.05, ""),  # 0.5 [0.37, 0.63]: clear of a 0.05 baseline
])
def test_rows_at_chance_are_flagged_each_on_its_own_ci(tmp_path, ref_passes, baseline, ref_flag):
    """The flag is the row's own: core (every problem solved, far above any baseline) is never
    stamped 'at chance' because the reference is, and its comparison is not called uninformative."""
    sweep = tmp_path / "s"
    ref = {f"p{i}": [ok, ok] for i, ok in enumerate(ref_passes)}
    extra = {} if baseline is None else {"baseline_majority_answer": baseline}
    fake_cell(sweep, "z", "zero_shot", 0, ref, rollouts=0, extra=extra)
    for s in (0, 1):
        fake_cell(sweep, f"c{s}", "core", s, {p: [True, True] for p in ref}, extra=extra)
        fake_cell(sweep, f"g{s}", "gepa", s, ref, extra=extra)  # the reference's twin: as close to the baseline
    plan(sweep, "z", "c0", "c1", "g0", "g1")
    write_table(sweep)
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    pairs = pd.read_csv(sweep / "comparisons.csv", keep_default_na=False)
    assert table.loc["zero_shot", "flags"].startswith(ref_flag) if ref_flag else table.loc["zero_shot", "flags"] == ""
    assert table.loc["core", "flags"] == ""
    core_z = pairs[(pairs.method_a == "core") & (pairs.method_b == "zero_shot")].iloc[0]
    assert core_z["flags"] == ""
    gepa_z = pairs[(pairs.method_a == "gepa") & (pairs.method_b == "zero_shot")].iloc[0]
    assert ("comparison uninformative" in gepa_z["flags"]) == bool(ref_flag)
    assert ("comparison uninformative" in table.loc["gepa", "flags"]) == bool(ref_flag)


def test_rows_sampled_on_different_engines_are_never_paired(tmp_path):
    """Two engines draw different random numbers for the same seed (issue 20: 0.575 on vLLM,
    0.6075 on transformers for identical weights), so each engine is its own configuration."""
    sweep = tmp_path / "s"
    probs = {f"p{i}": [i % 2 == 0, True] for i in range(8)}
    for engine in ("vllm-0.32.0/float32", "transformers-5.0/float32"):
        tag = engine.split("-")[0]
        fake_cell(sweep, f"z-{tag}", "zero_shot", 0, probs, rollouts=0, extra={"engine": engine})
        fake_cell(sweep, f"c-{tag}", "core", 0, probs, extra={"engine": engine})
    plan(sweep, "z-vllm", "c-vllm", "z-transformers", "c-transformers")
    write_table(sweep)
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False)
    assert sorted(zip(table["engine"], table["method"], strict=True)) == [
        ("transformers-5.0/float32", "core"), ("transformers-5.0/float32", "zero_shot"),
        ("vllm-0.32.0/float32", "core"), ("vllm-0.32.0/float32", "zero_shot")]
    pairs = pd.read_csv(sweep / "comparisons.csv", keep_default_na=False)
    assert len(pairs) == 2 and (pairs["engine"].nunique() == 2)


def test_unfinished_cells_of_the_plan_are_listed_under_a_partial_table(tmp_path):
    sweep = tmp_path / "s"
    probs = {f"p{i}": [True, False] for i in range(4)}
    fake_cell(sweep, "z", "zero_shot", 0, probs, rollouts=0)
    for cid, status in (("f", {"status": "failed", "error": "ValueError: boom"}), ("r", {"status": "running"})):
        (sweep / "cells" / cid).mkdir(parents=True)
        (sweep / "cells" / cid / "status.json").write_text(json.dumps(status))
    write_plan(sweep, [("z", "math/zero_shot/B10/s0"), ("f", "math/core/B10/s0"), ("r", "math/core/B10/s1"),
                       ("n", "math/core/B10/s2")])
    text = write_table(sweep)
    assert "**Partial**: 3 cells" in text
    assert "- FAILED math/core/B10/s0 (f): ValueError: boom" in text
    assert "- started, not finished (running now, or killed mid-cell) math/core/B10/s1 (r)" in text
    assert "- not started math/core/B10/s2 (n)" in text


def test_rows_whose_package_versions_differ_are_flagged(tmp_path):
    sweep = tmp_path / "s"
    probs = {f"p{i}": [True, False] for i in range(4)}
    fake_cell(sweep, "z", "zero_shot", 0, probs, rollouts=0, extra={"versions": "torch=2.13.0"})
    fake_cell(sweep, "c0", "core", 0, probs, extra={"versions": "torch=2.13.0"})
    fake_cell(sweep, "g0", "gepa", 0, probs, extra={"versions": "torch=2.12.0"})
    plan(sweep, "z", "c0", "g0")
    text = write_table(sweep)
    table = pd.read_csv(sweep / "table.csv", keep_default_na=False).set_index("method")
    assert "versions differ" in table.loc["gepa", "flags"] and "versions" not in table.loc["core", "flags"]
    assert "- 1 cell: torch=2.12.0" in text


def test_an_unknown_reference_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    from harness.table import main

    sweep = tmp_path / "s"
    fake_cell(sweep, "z", "zero_shot", 0, {"a": [True, False]}, rollouts=0)
    plan(sweep, "z")
    assert main(["--sweep", "s", "--results-dir", str(tmp_path), "--reference", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nosuch'" in err[0] and "valid: zero_shot" in err[0]
    assert not (sweep / "table.md").exists() and not (sweep / "comparisons.csv").exists()


def test_plot_axes_span_the_budget_and_a_no_learning_reference_is_a_line_across(tmp_path):
    """A zero_shot-only sweep drew one point on an x-axis from -0.04 to 0.04; a learner's plot at a
    budget the reference did not run at left the reference out."""
    from harness.report.plot import curve_axes, plot_sweep

    sweep = tmp_path / "s"
    probs = {f"p{i}": [i % 2 == 0] * 2 for i in range(4)}
    fake_cell(sweep, "z", "zero_shot", 0, probs, rollouts=0, budget=50,
              extra={"pass@1_lo": 0.2, "pass@1_hi": 0.8})
    fake_cell(sweep, "c", "core", 0, probs, budget=100, rollouts=100, extra={"pass@1_lo": 0.2, "pass@1_hi": 0.8})
    plan(sweep, "z", "c")
    summary = load_cells(sweep).summary
    learners, refs = summary[summary.method == "core"], summary[summary.method == "zero_shot"]
    _, ax = curve_axes(learners, refs, 100)
    assert ax.get_xlim() == (0.0, 100.0)
    across = [ln for ln in ax.get_lines() if ln.get_label() == "zero_shot (no learning)"]
    assert len(across) == 1 and list(across[0].get_xdata()) == [0, 1]  # axes coordinates: the full width
    _, ax = curve_axes(learners.iloc[0:0], refs, 50)
    assert ax.get_xlim() == (0.0, 50.0)
    names = sorted(p.name for p in plot_sweep(summary, tmp_path / "plots"))
    assert names == ["learning_curve_math_B100.png"]  # the reference is drawn in the learner's plot
