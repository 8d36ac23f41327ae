"""The notebook API (`harness.results.load`) is the one the table and plot commands use: the same
numbers as the table, the latest plan's cells only (stale and unfinished ones listed apart), rows
read lazily, and every plot kind written inside the sweep's plots folder."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fakes import fake_cell, plan

from harness.core.errors import UserError
from harness.plot import main as plot_main
from harness.report.results import report
from harness.results import load


def sweep_of(tmp_path):
    sweep = tmp_path / "s"
    probs = {f"p{i}": [i % 3 == 0, i % 2 == 0] for i in range(12)}
    fake_cell(sweep, "z", "zero_shot", 0, probs, rollouts=0)
    for s in (0, 1, 2):
        fake_cell(sweep, f"c{s}", "core", s, {p: [True, i % 4 != s] for i, p in enumerate(probs)})
    fake_cell(sweep, "old", "core", 9, probs)  # from an earlier plan: stale
    plan(sweep, "z", "c0", "c1", "c2", "missing")
    return sweep


def test_load_gives_the_tables_numbers_and_only_the_latest_plan(tmp_path):
    sweep = sweep_of(tmp_path)
    r = load("s", tmp_path)
    report(r)
    assert sorted(r.summary["cell_id"]) == ["c0", "c1", "c2", "z"]
    assert r.stale == ["old"] and len(r.unfinished) == 1 and "missing" in r.unfinished[0]
    written = pd.read_csv(sweep / "table.csv", keep_default_na=False)
    ours = r.table().astype(str).reset_index(drop=True)
    assert ours.to_dict("records") == written.astype(str).to_dict("records")
    pairs = pd.read_csv(sweep / "comparisons.csv")
    assert pairs["delta_pass@1"].tolist() == r.comparisons["delta_pass@1"].tolist()
    core = r.final[r.final["method"] == "core"]
    assert f"{core['pass@1'].mean():.3f}" == written.set_index("method").loc["core", "Pass@1 [95% CI]"][:5]
    assert "task" in r.config_columns and "budget" in r.config_columns


def test_attempts_are_read_lazily_with_only_the_columns_asked_for(tmp_path):
    sweep_of(tmp_path)
    r = load("s", tmp_path)
    rows = r.attempts(["problem_id", "passed"])
    assert set(rows.columns) >= {"problem_id", "passed", "cell_id", "method", "seed"}
    assert "sample_idx" not in rows.columns and set(rows["cell_id"]) == {"c0", "c1", "c2", "z"}
    assert len(rows) == 4 * 12 * 2


def test_load_refuses_unknown_sweeps_and_references_in_one_line(tmp_path):
    sweep_of(tmp_path)
    with pytest.raises(UserError, match=r"no finished cells for sweep 'nope'.*sweeps with results"):
        load("nope", tmp_path)
    with pytest.raises(UserError, match="valid: core, zero_shot"):
        load("s", tmp_path, reference="gepa")


def test_plot_writes_bars_forest_and_cost_plots_for_each_configuration(tmp_path):
    sweep = sweep_of(tmp_path)
    assert plot_main(["--sweep", "s", "--results-dir", str(tmp_path)]) == 0
    pngs = {p.name.split("_")[0]: p for p in (sweep / "plots").glob("*.png")}
    assert {"learning", "pass1", "delta", "cost"} <= set(pngs)
    assert all(p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG" for p in pngs.values())



def test_a_reference_whose_knobs_vary_is_refused_in_one_line(tmp_path):
    """`--reference grpo` with method.lr varied paired every row with whichever variant came first."""
    from fakes import fake_cell, plan

    sweep = tmp_path / "v"
    probs = {f"p{i}": [i % 2 == 0] * 2 for i in range(6)}
    fake_cell(sweep, "z", "zero_shot", 0, probs, rollouts=0)
    for lr in ("1e-5", "1e-4"):
        d = f"g{lr}"
        fake_cell(sweep, d, "grpo", 0, probs)
        cfg = json.loads((sweep / "cells" / d / "config.json").read_text())
        cfg["config"]["method"]["learning_rate"] = float(lr)
        (sweep / "cells" / d / "config.json").write_text(json.dumps(cfg))
    plan(sweep, "z", "g1e-5", "g1e-4")
    with pytest.raises(UserError, match=r"--reference 'grpo' has varied knobs .*valid references: zero_shot"):
        load("v", tmp_path, reference="grpo")
    # and the no-learning reference is compared with every variant: pandas 3 keeps NaN through
    # astype(str), so grouping by the varied knob's column dropped zero_shot's cells (no Δ at all)
    table = load("v", tmp_path).table().set_index("method")
    assert table.loc["zero_shot", "seeds"] == 1
    deltas = [table.loc[f"grpo learning_rate={lr}", "Δ vs zero_shot"] for lr in ("1e-05", "0.0001")]
    assert all(d.startswith("+0.000") for d in deltas), deltas
