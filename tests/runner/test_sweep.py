"""End-to-end sweeps through the CLI on the mock backend: records schema, recomputation of
summary metrics from attempts, resume after a kill, failure isolation and bad-input exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from harness.core.paths import REPO
from harness.core.registry import METHODS, register_method
from harness.engine.evaluate import summarize_attempts
from harness.engine.method import MethodBase
from harness.engine.metrics import mean_pass_at_k
from harness.engine.records import ATTEMPT_COLUMNS, SUMMARY_COLUMNS


def sweep(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness.sweep", "model=mock", "method=zero_shot", "logger=none",
           f"results_dir={tmp_path}", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_grid_sweep_writes_schema_and_recomputable_summary(tmp_path):
    r = sweep(tmp_path, "task=math,countdown,knights_knaves", "method=zero_shot", "budget=10",
              "sweep=x", "task.test_size=30")
    assert r.returncode == 0, r.stderr
    summary = pd.read_parquet(tmp_path / "x" / "summary.parquet")
    assert set(SUMMARY_COLUMNS) <= set(summary.columns)
    assert {"pass@2", "pass@3", "pass@4", "pass@1_lo", "pass@1_hi"} <= set(summary.columns)
    assert sorted(summary.task) == ["countdown", "knights_knaves", "math"]
    for _, row in summary.iterrows():
        attempts = pd.read_parquet(tmp_path / "x" / "cells" / row.cell_id / "attempts.parquet")
        assert list(attempts.columns[:len(ATTEMPT_COLUMNS)]) == ATTEMPT_COLUMNS
        ev = attempts[(attempts.phase == "eval") & (attempts.checkpoint == row.checkpoint)]
        sampled = ev[ev.tag == "sample"]
        counts = [(len(g), int(g.passed.sum())) for _, g in sampled.groupby("problem_id")]
        assert len(counts) == row.n_test == 30
        for k in range(1, 5):
            assert row[f"pass@{k}"] == pytest.approx(mean_pass_at_k(counts, k))
        again = summarize_attempts(ev)
        assert again["pass@1_lo"] == pytest.approx(row["pass@1_lo"])
        assert row["greedy_pass"] == pytest.approx(ev[ev.tag == "greedy"].passed.mean())
        assert row.eval_s > 0 and row.load_s >= 0 and row.load_s + row.eval_s <= row.wall_s  # phases within wall
    assert "3 ran, 0 skipped, 0 failed" in r.stdout
    import json
    recorded = json.loads((tmp_path / "x" / "cells" / summary.cell_id.iloc[0] / "task.json").read_text())
    assert recorded["instruction"] and len(recorded["demo_ids"]) == recorded["few_shot"] == 2
    assert recorded["example_prompt"][0]["role"] == "system" and len(recorded["test_ids"]) == 30


def test_rerun_skips_finished_cells(tmp_path):
    assert sweep(tmp_path, "task=math", "budget=10", "sweep=s", "eval.seed=0,1").returncode == 0
    r = sweep(tmp_path, "task=math", "budget=10", "sweep=s", "eval.seed=0,1,2")
    assert r.returncode == 0
    assert "1 ran, 2 skipped" in r.stdout
    assert len(pd.read_parquet(tmp_path / "s" / "summary.parquet")) == 3


def test_killed_sweep_resumes_without_duplicate_or_missing_rows(tmp_path):
    args = ["task=math", "budget=10", "sweep=k", "eval.seed=0,1,2,3", "task.test_size=20",
            "model.latency_s=0.05", "eval.batch_problems=1"]
    cmd = [sys.executable, "-m", "harness.sweep", "model=mock", "method=zero_shot", "logger=none",
           f"results_dir={tmp_path}", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    # wait until the first cell finished and the second is running, then kill the whole group
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "k").glob("cells/*/done.json"))) < 1:
        time.sleep(0.1)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((tmp_path / "k").glob("cells/*/done.json")))
    assert 1 <= done_before < 4
    r = sweep(tmp_path, *args)
    assert r.returncode == 0, r.stderr
    assert f"{done_before} skipped" in r.stdout
    summary = pd.read_parquet(tmp_path / "k" / "summary.parquet")
    assert summary.cell_id.nunique() == 4
    assert not list((tmp_path / "k").rglob("*.tmp"))
    for cell in summary.cell_id:
        a = pd.read_parquet(tmp_path / "k" / "cells" / cell / "attempts.parquet")
        ev = a[a.phase == "eval"]
        assert len(ev) == 20 * (4 + 1)  # 20 problems x (4 samples + 1 greedy), exactly once
        assert not ev.duplicated(["problem_id", "sample_idx", "tag", "checkpoint"]).any()


def _start_slow_sweep(tmp_path, name: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "harness.sweep", "model=mock", "method=zero_shot", "logger=none",
           f"results_dir={tmp_path}",
           "task=math", "budget=10", f"sweep={name}", "eval.seed=0,1,2", "task.test_size=20", "model.latency_s=0.05",
           "eval.batch_problems=1"]
    # SIGINT as at a terminal, even where the test runner was started with it ignored (`cmd &`);
    # the pre-exec step only resets one signal disposition, which is safe with threads around
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / name).glob("cells/*/status.json")):
        time.sleep(0.1)
    return proc


def test_ctrl_c_prints_one_line_exits_130_and_marks_the_cell_interrupted(tmp_path):
    import json

    proc = _start_slow_sweep(tmp_path, "c")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["sibench: interrupted; re-run the same command to resume"]
    statuses = [json.loads(p.read_text())["status"] for p in (tmp_path / "c").glob("cells/*/status.json")]
    assert "interrupted" in statuses and "running" not in statuses


def test_a_sweep_directory_in_use_is_refused(tmp_path):
    proc = _start_slow_sweep(tmp_path, "busy")
    try:
        r = sweep(tmp_path, "task=math", "budget=10", "sweep=busy", "eval.seed=0,1,2", "task.test_size=20", timeout=60)
        assert r.returncode == 2
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"is in use by another running sweep (pid {proc.pid}" in lines[0]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # the kernel lock died with the process: the same command now runs (and resumes)
    r = sweep(tmp_path, "task=math", "budget=10", "sweep=busy", "eval.seed=0", "task.test_size=20")
    assert r.returncode == 0, r.stderr


@register_method("_test_crasher")
@dataclass
class Crasher(MethodBase):
    """Test-only method whose learning fails at run time (past every plan-time check)."""

    def learn(self, train, ctx):
        raise RuntimeError("the method broke mid-run")


def test_failing_cell_does_not_stop_the_others(tmp_path, capsys):
    from harness.sweep import main

    code = main(["model=mock", "logger=none", f"results_dir={tmp_path}", "sweep=f", "budget=10",
                 "task=math,countdown", "method.name=_test_crasher,zero_shot"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.count("FAILED") == 2 and "RuntimeError: the method broke mid-run" in out
    summary = pd.read_parquet(tmp_path / "f" / "summary.parquet")
    assert sorted(summary.task) == ["countdown", "math"] and set(summary.method) == {"zero_shot"}


@pytest.mark.parametrize("args,needle", [
    (["task=nope"], "'nope'; valid tasks: countdown, countdown_tasks, function_calling, hanoi, knights_knaves, "
                      "matchstick, math, math_benchmark, mathgap, xlam, zebra, zebralogic"),
    (["method=nope"], "unknown method 'nope'; valid methods: "
     + ", ".join(n for n in METHODS.names() if not n.startswith("_"))),  # not this process's test methods
    (["model=nope"], "valid models:"),
    (["budget=0"], "budget=0; valid: an integer >= 1"),
    (["budget=-5"], "budget=-5; valid: an integer >= 1"),
    (["budget=3.5"], "budget=3.5: Value '3.5' of type 'float' could not be converted to Integer; valid: an integer"),
    (["eval.k=[5]"], "eval.k=5 is not in 1..eval.n_samples=4"),
    (["task.difficulty=insane"], "task.difficulty='insane'; valid: one of easy, medium, hard"),
    (["task"], "malformed override 'task'"),
    (["nokey=1"], "unknown config key 'nokey=1'; valid keys: aux_model, budget, checkpoints"),
    (["model.bogus=1"], "unknown config key 'model.bogus=1'; valid keys of model (mock): aux_reply, backend, "
                        "base_accuracy"),
    (["method=memrl", "method.alpah=0.5"], "unknown config key 'method.alpah=0.5'; valid keys of method (memrl): "
                                            "add_similarity_threshold, alpha"),
    (["method=memrl", "method.alpha=2"], "method.alpha=2.0; valid: a number > 0 and <= 1"),
    (["method=memrl", "method.alpha=abc"], "method.alpha=abc: Value 'abc' of type 'str' could not be converted to "
                                           "Float; valid: a number > 0 and <= 1"),
    (["method=grpo", "model=mock", "method.loss_type=ppo"],
     "method.loss_type='ppo'; valid: one of dapo, grpo, bnpo, dr_grpo"),
    (["task.feedback=loud"], "task.feedback='loud'; valid: one of binary, rich"),
    (["model@aux_model=nope"], "unknown model 'nope'; valid models:"),
    (["method=core", "budget=40"], "budget=40 is below CORE's baseline estimate"),
    (["method=gepa", "budget=5"], "budget=5 is below gepa's seed evaluation on |valset| = 10 problems"),
    # measured in round 1: each crashed, ran with nonsense, or failed inside a cell after writing
    (["eval.k=5"], "eval.k=5: Invalid value assigned: int is not a ListConfig, list or tuple.; valid: a list of "
                   "integers, e.g. [1,2], or null"),
    (["checkpoints=0.5"], "checkpoints=0.5: Invalid value assigned: float is not a ListConfig, list or tuple.; "
                          "valid: a list of numbers"),
    (["seed=-1"], "seed=-1; valid: an integer >= 0 and <= 998"),
    (["eval.batch_problems=0"], "eval.batch_problems=0; valid: an integer >= 1"),
    (["task.max_tokens=0"], "task.max_tokens=0; valid: an integer >= 1"),
    (["learn.temperature=abc"], "learn.temperature=abc: Value 'abc' of type 'str' could not be converted to Float; "
                                "valid: a number >= 0"),
    (["eval.temperature=-1"], "eval.temperature=-1.0; valid: a number >= 0"),
    (["learn.top_p=0"], "learn.top_p=0.0; valid: a number > 0 and <= 1"),
    (["task.test_size=100000"], "task math (train_size=10, test_size=100000): math: only 240 distinct problems"),
    (["task.test_size=100001"], "task.test_size=100001; valid: an integer >= 1 and <= 100000"),
    (["task=hanoi", "task.test_size=60"],
     "task hanoi (train_size=10, test_size=60): hanoi: only 50 distinct problems in 290 draws"),
    (["+foo=1"], "unknown config key 'foo'; valid top-level keys: task, method"),
    (["task=math", "budget==3"], "malformed override 'budget==3'"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, needle):
    r = sweep(tmp_path, "sweep=bad", *args, timeout=60)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "bad").exists()


def test_run_entry_point_refuses_grids(tmp_path):
    cmd = [sys.executable, "-m", "harness.run", "model=mock", "task=math,countdown"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "make 2" in r.stderr


def test_table_and_plot(tmp_path):
    assert sweep(tmp_path, "task=math", "budget=10", "sweep=t", "seed=0,1", "eval.k=[1,2]").returncode == 0
    r = subprocess.run([sys.executable, "-m", "harness.table", "--sweep", "t", "--results-dir", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "| math" in r.stdout and "zero_shot" in r.stdout and "majority_answer" in r.stdout
    table = pd.read_csv(tmp_path / "t" / "table.csv")
    assert table.seeds.tolist() == [1]  # zero_shot learns nothing: one cell serves both seeds
    assert "Pass@2" in table.columns and "Pass@4" not in table.columns  # eval.k picks the reported k
    r = subprocess.run([sys.executable, "-m", "harness.plot", "--sweep", "t", "--results-dir", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t" / "plots" / "learning_curve_math_B10.png").stat().st_size > 1000
    r = subprocess.run([sys.executable, "-m", "harness.table", "--sweep", "missing", "--results-dir", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "t" in r.stderr


def test_a_method_knob_in_a_mixed_grid_goes_to_the_methods_that_have_it(tmp_path):
    """`METHOD=zero_shot,core ARGS=method.k_insights=7`: core gets it, zero_shot (no such knob) runs
    as declared; a knob no method of the grid has is still refused."""
    from harness.core.errors import UserError
    from harness.runner.plan import plan

    base = ["model=mock", "logger=none", f"results_dir={tmp_path}", "budget=200", "task=math,countdown"]
    _, specs, _ = plan(base + ["method=zero_shot,core", "method.k_insights=7", "task.difficulty=medium"])
    cells = {(s.config["task"]["name"], s.config["method"]["name"]): s.config for s in specs}
    assert len(cells) == 4
    assert cells["math", "core"]["method"]["k_insights"] == 7
    assert "k_insights" not in cells["math", "zero_shot"]["method"]
    assert cells["math", "zero_shot"]["task"]["difficulty"] == "medium"
    assert "difficulty" not in cells["countdown", "core"]["task"]
    with pytest.raises(UserError, match=r"unknown config key 'method\.k_insghts=7'"):
        plan(base + ["method=zero_shot,core", "method.k_insghts=7"])


def test_a_method_that_spends_no_rollouts_runs_once_per_configuration(tmp_path, capsys):
    """`METHOD=zero_shot SEEDS=0,1,2` computed the same cell three times (evaluation sampling
    follows eval.seed, not the run seed). Now one cell serves every seed and budget; what can
    change its outputs (the task, eval.seed) still makes new cells."""
    from harness.runner.plan import plan

    base = ["model=mock", "logger=none", f"results_dir={tmp_path}", "task=math", "seed=0,1,2", "budget=10,20"]
    _, specs, _ = plan(base + ["method=zero_shot,memrl"])
    by_method = {m: [s for s in specs if s.config["method"]["name"] == m] for m in ("zero_shot", "memrl")}
    assert len(by_method["zero_shot"]) == 1 and len(by_method["memrl"]) == 6
    assert "zero_shot spends no rollouts, so one cell per configuration serves every seed" in capsys.readouterr().out
    _, specs, _ = plan(base + ["method=zero_shot", "eval.seed=0,1", "task.difficulty=easy,medium"])
    assert len(specs) == 4
