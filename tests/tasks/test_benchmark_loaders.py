"""Dataset-backed tasks on fixture files the tests write: column mapping, splits, math-verify
equivalence under a process-pool timeout, grid and call checkers, and the offline error."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tasks.common.datasets import DatasetUnavailable
from tasks.common.math_check import math_equal
from tasks.countdown_tasks import CountdownTasksTask
from tasks.math_benchmark import MathBenchmarkTask, last_boxed
from tasks.xlam import XlamTask
from tasks.zebralogic import ZebraLogicTask


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return str(path)


@pytest.fixture
def math_files(tmp_path):
    evals = [{"problem": f"What is {i}/{2 * i}?", "answer": "\\frac{1}{2}"} for i in range(1, 13)]
    evals += [{"problem": "Bad row", "answer": ""}]  # skipped: no answer
    train = [{"problem": f"Compute {i}+{i}.", "solution": f"So it is \\boxed{{{2 * i}}}."} for i in range(40)]
    return write_jsonl(tmp_path / "m500.jsonl", evals), write_jsonl(tmp_path / "train.jsonl", train)


def test_math_benchmark_maps_columns_and_splits(math_files):
    evals, train = math_files
    task = MathBenchmarkTask(data_path=evals, train_data_path=train)
    test = task.problems("test", 12, 0)
    assert len(test) == 12 and {p.answer for p in test} == {"\\frac{1}{2}"}
    assert task.problems("test", 12, 0) == test and task.problems("test", 12, 1) != test  # order follows the seed
    tr = task.problems("train", 10, 0)
    assert all(p.question.startswith("Compute") for p in tr)
    assert tr[0].answer == str(2 * int(tr[0].question.split()[1].split("+")[0]))  # from the \\boxed{} solution
    with pytest.raises(ValueError, match="has 12 evaluation problems; test_size 13"):
        task.problems("test", 13, 0)


def test_math_answers_are_compared_by_math_verify(math_files):
    evals, train = math_files
    task = MathBenchmarkTask(data_path=evals, train_data_path=train)
    p = task.problems("test", 1, 0)[0]
    for good in ("Answer: 0.5", "Answer: 1/2", "so the result is \\boxed{\\frac{1}{2}}", "Answer: $\\dfrac{1}{2}$"):
        assert task.verify(p, good).passed, good
    for bad in ("Answer: 2", "Answer: 0.51", "\\boxed{}", "nothing", "Answer: __import__('os').system('x')"):
        assert not task.verify(p, bad).passed, bad
    assert last_boxed("a \\boxed{x^{2}} b \\boxed{\\frac{1}{2}}") == "\\frac{1}{2}"


def slow_check(gold: str, answer: str) -> bool:
    time.sleep(30)
    return True


def test_a_hanging_check_is_killed_and_counts_as_wrong():
    t0 = time.perf_counter()
    assert math_equal("1", "1", timeout_s=1.0, check=slow_check) is False
    assert time.perf_counter() - t0 < 10
    assert math_equal("1", "1.0")  # a fresh worker answers the next call


def test_offline_and_uncached_gives_one_line_naming_the_dataset(monkeypatch, tmp_path):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DatasetUnavailable) as err:
        MathBenchmarkTask(benchmark="aime2025")
    msg = str(err.value)
    assert "\n" not in msg and "yentinglin/aime_2025" in msg and "data_path" in msg
    with pytest.raises(DatasetUnavailable, match="does not exist"):
        MathBenchmarkTask(data_path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="valid: gsm8k"):
        MathBenchmarkTask(benchmark="aime1999")


def test_the_sweep_refuses_a_missing_dataset_with_exit_2_before_writing(tmp_path):
    cmd = [sys.executable, "-m", "harness.sweep", "task=math_benchmark", f"task.data_path={tmp_path}/none.jsonl",
           "model=mock", "method=zero_shot", "budget=1", f"results_dir={tmp_path}/results", "logger=none"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "none.jsonl" in out.stderr and "does not exist" in out.stderr
    assert not (tmp_path / "results").exists()


def test_zebralogic_scores_cells_and_passes_only_full_grids(tmp_path):
    rows = [{"id": f"z{i}", "size": "2*2", "puzzle": f"Puzzle {i}: Arnold is not in house 2.",
             "solution": {"header": ["House", "Name", "Pet"], "rows": [["1", "Arnold", "cat"], ["2", "Eric", "dog"]]}}
            for i in range(6)]
    task = ZebraLogicTask(data_path=write_jsonl(tmp_path / "z.jsonl", rows), partial_credit=True)
    p = task.problems("test", 3, 0)[0]
    full = {"House 1": {"Name": "arnold", "Pet": "Cat"}, "House 2": {"Name": "Eric", "Pet": "dog"}}
    assert task.verify(p, f"Answer: {json.dumps(full)}").passed
    half = {"House 1": {"Name": "Eric", "Pet": "cat"}, "House 2": {"Name": "Arnold", "Pet": "dog"}}
    v = task.verify(p, f"Answer: {json.dumps(half)}")
    assert not v.passed and v.reward == 0.5
    assert task.verify(p, "Answer: {'House 1': 1}").reward == 0.0


def test_countdown_tasks_and_xlam_rows(tmp_path):
    cd = CountdownTasksTask(data_path=write_jsonl(tmp_path / "c.jsonl", [{"target": 24, "nums": [2, 3, 4]}] * 3
                                                   + [{"target": 10, "nums": [5, 5, 1]}]))
    p = next(q for q in cd.problems("test", 2, 0) if q.answer == "24")
    assert cd.verify(p, "Answer: (3 - 2 + 0) * 4 * 6").passed is False  # extra numbers
    assert cd.verify(p, "Answer: 2 * 3 * 4").passed and not cd.verify(p, "Answer: 2 + 3 + 4").passed
    with pytest.raises(ValueError, match=r"task.few_shot=1; valid: an integer >= 0 and <= 0"):
        CountdownTasksTask(data_path=str(tmp_path / "c.jsonl"), few_shot=1)
    tools = [{"name": "area", "description": "", "parameters": {"w": {"type": "int"}, "h": {"type": "int"},
                                                               "unit": {"type": "str", "default": "m"}}}]
    rows = [{"id": i, "query": f"Area of {i} by 2, and of 3 by 3?", "tools": json.dumps(tools),
             "answers": json.dumps([{"name": "area", "arguments": {"w": i, "h": 2}},
                                    {"name": "area", "arguments": {"w": 3, "h": 3}}])} for i in range(5)]
    xl = XlamTask(data_path=write_jsonl(tmp_path / "x.jsonl", rows))
    p = xl.problems("test", 1, 0)[0]
    w = json.loads(p.answer)[0]["arguments"]["w"]
    swapped = [{"name": "area", "arguments": {"h": 3, "w": "3", "unit": "m"}},
               {"name": "area", "arguments": {"h": 2, "w": w}}]
    assert xl.verify(p, f"Answer: {json.dumps(swapped)}").passed
    assert not xl.verify(p, f"Answer: {json.dumps(swapped[:1])}").passed
