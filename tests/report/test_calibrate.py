"""`make calibrate` (harness/calibrate.py) on the mock backend: which tasks it runs, the table it
prints and writes, and the verdict that says whether a task can tell methods apart."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.calibrate import default_overrides, generated_tasks, main
from harness.report.calibration import verdict


def test_verdict_bands():
    assert verdict(0.01, 0.0, {}) == "at floor"
    assert verdict(0.30, 0.22, {"random": 0.33}) == "at chance"  # the CI reaches the random-guess rate
    assert verdict(0.18, 0.13, {"random": 0.25}) == "at chance"  # below chance cannot discriminate either
    assert verdict(0.12, 0.07, {"majority": 0.05}) == "low"
    assert verdict(0.80, 0.70, {"majority": 0.10}) == "ceiling"
    assert verdict(0.40, 0.30, {"random": 0.25, "majority": 0.1}) == "informative"


def test_defaults_cover_generated_tasks_and_yield_to_overrides():
    tasks = generated_tasks()
    assert {"math", "hanoi", "zebra", "matchstick", "function_calling"} <= set(tasks)
    assert not {"math_benchmark", "zebralogic", "xlam", "countdown_tasks"} & set(tasks)  # need a download
    ov = default_overrides(["model=mock", "task=math", "task.test_size=12"])
    assert "task=math" in ov and "task.test_size=12" in ov and "task.test_size=40" not in ov
    assert "sweep=calibrate-mock" in ov and "method=zero_shot" in ov


@pytest.mark.parametrize("accuracy,expected", [(0.0, "at floor"), (1.0, "ceiling")])
def test_calibrate_writes_table_with_verdicts(tmp_path, capsys, accuracy, expected):
    code = main(["model=mock", f"model.base_accuracy={accuracy}", "task=math,knights_knaves",
                 "task.test_size=12", f"results_dir={tmp_path}"])
    assert code == 0
    table = pd.read_csv(tmp_path / "calibrate-mock" / "calibration.csv")
    assert sorted(table["task"]) == ["knights_knaves", "math"]
    assert set(table["verdict"]) == {expected}
    assert (table["pass@1"] == accuracy).all() and (table["no_answer_line"] == 0).all()
    kk = table[table["task"] == "knights_knaves"].iloc[0]
    assert "random_guess 0.25" in kk["baseline"] and "n_people=2" in kk["settings"]
    out = capsys.readouterr().out
    assert "## calibration: mock" in out and f"| {expected}" in out
    assert (tmp_path / "calibrate-mock" / "calibration.md").read_text() in out


def test_calibrate_bad_task_exits_2_and_writes_nothing(tmp_path, capsys):
    assert main(["model=mock", "task=nope", f"results_dir={tmp_path}"]) == 2
    assert "nope" in capsys.readouterr().err and not list(tmp_path.iterdir())
