"""`make paper` / `make paper-table`: block expansion, plan-before-run, and the table's numbers
(ours = mean of the results, paper = the reference CSV, n/s where unstated)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness import paper as paper_mod
from harness.config import paper as layouts
from harness.report import paper_table, plot
from harness.runner import paper as paper_runs

PAPER_YAML = """
title: Tiny paper
reference: tiny_reference.csv
scales:
  small:
    note: mock model
    common: [model=mock, logger=none, task.test_size=8, eval.n_samples=2, "checkpoints=[]"]
    reference_rows: {train_size: {4: 100}}
    per_value:
      method:
        episodic_rag: [method.k_success=1]
    blocks:
      table1:
        grid: {task: [math], method: [zero_shot, episodic_rag], seed: [0, 1]}
        cells:
          - [task.train_size=3, budget=6]
          - [task.train_size=4, budget=8, "checkpoints=[0.5]"]
table:
  block: table1
  rows: [task, train_size]
  row_names: {math: Arithmetic}
  columns:
    - {label: Base, method: zero_shot, metric: pass@1}
    - {label: RAG, method: episodic_rag, metric: pass@1}
  best: true
  improvement: {over: Base, by: train_size}
  context_tokens: true
  curves: {block: curves, where: {train_size: 4}}
"""
REFERENCE = """section,row,column,value,source
table,math/100,RAG,0.777,Tab. 9
table,math/100,best,RAG,Tab. 9
improvement,100,RAG,+12.0%,Sec. 4
context_tokens,,RAG,1234,Fig. 3
"""


@pytest.fixture
def tiny_paper(tmp_path):
    (tmp_path / "tiny.yaml").write_text(PAPER_YAML)
    (tmp_path / "tiny_reference.csv").write_text(REFERENCE)
    return str(tmp_path / "tiny.yaml")


def test_blocks_split_on_per_value_keys_and_later_overrides_win():
    scale = {"common": ["model=mock", "budget=1"], "per_value": {"method": {"b": ["budget=9", "x.y=1"]}}}
    block = {"grid": {"task": ["t1", "t2"], "method": ["a", "b"]}, "cells": [["budget=5"], ["budget=6"]]}
    entries, groups = zip(*layouts.block_groups(scale, block, "S"), strict=True)
    assert entries == (0, 1, 0, 1)
    assert groups[0] == ["model=mock", "budget=5", "task=t1,t2", "method=a", "sweep=S"]
    assert "budget=9" in groups[2] and "budget=5" not in groups[2] and "x.y=1" in groups[2]  # per-value wins


def test_cells_run_row_by_row_with_the_methods_of_a_row_together():
    grid = {"task": ["t1", "t2"], "method": ["a", "b"], "seed": [0]}
    cells = [({"task": {"name": t}, "method": {"name": m}, "seed": 0}, e) for e in (1, 0) for m in "ba"
             for t in ("t2", "t1")]
    order = sorted(cells, key=lambda c: layouts.run_order(c[0], c[1], grid))
    assert [(e, c["task"]["name"], c["method"]["name"]) for c, e in order] == [
        (0, "t1", "a"), (0, "t1", "b"), (0, "t2", "a"), (0, "t2", "b"),
        (1, "t1", "a"), (1, "t1", "b"), (1, "t2", "a"), (1, "t2", "b")]


def test_paper_runs_then_tables_ours_beside_the_reference(tiny_paper, tmp_path, capsys):
    results = str(tmp_path / "results")
    assert paper_mod.main(["run", tiny_paper, "--scale", "small", "--results-dir", results]) == 0
    sdir = tmp_path / "results" / "paper-tiny-small-table1"
    summary = pd.read_parquet(sdir / "summary.parquet")
    # rag: 2 seeds x 2 sizes; zero_shot never sees the training set: one cell for both sizes (issue 34)
    assert summary["cell_id"].nunique() == 5
    capsys.readouterr()
    assert paper_mod.main(["table", tiny_paper, "--results-dir", results]) == 0
    out = capsys.readouterr().out
    final = summary[summary["final"]]
    for size in (3, 4):
        base = final[final.method == "zero_shot"]["pass@1"].mean()  # the same cell at every size
        rag = final[(final.method == "episodic_rag") & (final.train_size == size)]["pass@1"].mean()
        line = next(ln for ln in out.splitlines() if ln.startswith(f"| Arithmetic | {size}"))
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert cells[3:5] == [f"{base:.3f}", f"{rag:.3f}"] and "2 seeds" in cells[2] and f"B={2 * size}," in cells[2]
        assert cells[5] == ("RAG" if rag > base else "Base" if base > rag else "all 2 tie")
    paper_lines = [ln for ln in out.splitlines() if "paper (math/" in ln]
    assert "| n/s " in paper_lines[0] and "paper (math/3)" in paper_lines[0]  # unstated row
    assert "0.777" in paper_lines[1] and "paper (math/100)" in paper_lines[1] and "RAG" in paper_lines[1]
    rows4 = final[final.train_size == 4]
    b, r = final[final.method == "zero_shot"]["pass@1"].mean(), rows4[rows4.method == "episodic_rag"]["pass@1"].mean()
    assert f"{(r - b) / b:+.1%} (paper +12.0%)" in out
    assert "1234" in out and (sdir / "paper_table.md").exists()
    assert (sdir / "plots" / "paper_curve_math.png").stat().st_size > 1000


def test_bad_names_and_invalid_cells_exit_2_before_anything_runs(tiny_paper, tmp_path, capsys):
    results = str(tmp_path / "results")
    assert paper_mod.main(["run", "nope", "--results-dir", results]) == 2
    assert "unknown paper 'nope'; valid: core" in capsys.readouterr().err
    assert paper_mod.main(["run", tiny_paper, "--scale", "huge", "--results-dir", results]) == 2
    assert "unknown scale 'huge'; valid: small" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text(PAPER_YAML.replace("budget=8", "budget=-1"))
    assert paper_mod.main(["run", str(broken), "--scale", "small", "--results-dir", results]) == 2
    assert "budget" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()  # the valid first cells did not run either
    assert paper_mod.main(["table", tiny_paper, "--results-dir", results]) == 2


def test_only_runs_the_matching_cells_into_the_papers_sweep(tiny_paper, tmp_path, capsys):
    results = str(tmp_path / "results")
    args = ["run", tiny_paper, "--scale", "small", "--results-dir", results]
    assert paper_mod.main([*args, "--only", "method=episodic_rag", "--only", "task.train_size=4"]) == 0
    summary = pd.read_parquet(tmp_path / "results" / "paper-tiny-small-table1" / "summary.parquet")
    final = summary[summary["final"]]
    assert sorted(zip(final.method, final.train_size, final.seed, strict=True)) == [
        ("episodic_rag", 4, 0), ("episodic_rag", 4, 1)]
    capsys.readouterr()
    assert paper_mod.main([*args, "--only", "method=core"]) == 2  # core is not in the grid
    assert "matches no cell" in capsys.readouterr().err
    assert paper_mod.main([*args, "--only", "method"]) == 2
    assert "valid: KEY=V1,V2" in capsys.readouterr().err


FAKE_ROWS = {  # Hub columns of each dataset the shipped paper configs use
    "WildEval/ZebraLogic": [{"id": f"z{i}", "size": "2*2", "puzzle": f"P{i}", "solution": {
        "header": ["House", "Name"], "rows": [["1", "A"], ["2", f"B{i}"]]}} for i in range(200)],
    "Salesforce/xlam-function-calling-60k": [{"id": i, "query": f"q{i}", "tools": "[]",
                                              "answers": json.dumps([{"name": "f", "arguments": {"x": i}}])}
                                             for i in range(20000)],
    "Jiayi-Pan/Countdown-Tasks-3to4": [{"target": i, "nums": [i, 1, 1]} for i in range(20000)],
}


@pytest.mark.slow  # composes every cell of every scale (~2 min), no model runs
@pytest.mark.parametrize("name", ["core", "rrr", "lte"])
def test_every_shipped_paper_config_plans_at_every_scale(name, monkeypatch, tmp_path):
    from tasks.common.datasets import HubSource

    def fake_load(self, task):
        if self.hf_id in FAKE_ROWS:
            return FAKE_ROWS[self.hf_id]
        return [{"problem": f"{self.hf_id} {i}", "question": f"{self.hf_id} {i}", "answer": str(i),
                 "solution": f"\\\\boxed{{{i}}}", "final_answer": [str(i)]} for i in range(10000)]

    monkeypatch.setattr(HubSource, "load", fake_load)
    paper = layouts.load_paper(name)
    for scale in paper["scales"]:
        assert paper_runs.run(name, scale, str(tmp_path / "results"), dry_run=True) == 0
    assert not (tmp_path / "results").exists()


def test_a_partial_run_tables_what_exists_and_marks_the_rest(tiny_paper):
    paper = layouts.load_paper(tiny_paper)
    scale = paper["scales"]["small"]
    results = pd.DataFrame([{"cell_id": "c1", "task": "math", "train_size": 4, "method": "zero_shot", "seed": 0,
                             "final": True, "rollouts_used": 0, "budget": 8, "model": "mock", "pass@1": 0.5,
                             "context_tokens_added": 0.0}])
    text, _ = paper_table.build_paper_table(paper, scale, results, paper_table.reference_table(paper), "small")
    ours = next(ln for ln in text.splitlines() if ln.startswith("| Arithmetic | 4"))
    assert [c.strip() for c in ours.split("|")[1:-1]][3:6] == ["0.500", "–", "Base (1 of 2 run)"]
    improvement = text.split("Relative improvement")[1]
    row = next(ln for ln in improvement.splitlines() if ln.startswith("|") and ln.split("|")[1].strip() == "4")
    assert row.split("|")[2].strip() == "–"  # RAG not run yet


def test_best_names_every_tied_column_and_says_when_a_row_is_partial():
    labels = ["Base", "GRPO", "CORE"]
    assert paper_table.best_label({"Base": 0.2, "GRPO": 0.25, "CORE": 0.1}, labels) == "GRPO"
    assert paper_table.best_label({"Base": 0.2, "GRPO": 0.25, "CORE": 0.25}, labels) == "GRPO = CORE"
    assert paper_table.best_label({"Base": 0.2, "GRPO": 0.2, "CORE": 0.2}, labels) == "all 3 tie"
    assert paper_table.best_label({"Base": 0.2, "CORE": 0.3}, labels) == "CORE (2 of 3 run)"
    assert paper_table.best_label({}, labels) == "–"


def test_editing_a_reporting_module_keeps_cell_ids_but_editing_the_engine_does_not(tmp_path, monkeypatch):
    from harness.engine import provenance as cell

    for rel in ("harness/engine/budget.py", "harness/report/table.py", "harness/paper.py", "tasks/common/x.py",
                "methods/common/y.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("# v1\n")
    monkeypatch.setattr(cell, "REPO", tmp_path)
    before = cell.code_version("math", "zero_shot")
    (tmp_path / "harness/paper.py").write_text("# v2: a command's help text\n")
    (tmp_path / "harness/report/table.py").write_text("# v2: a table fix\n")
    assert cell.code_version("math", "zero_shot") == before  # report/ and the commands: a folder rule
    (tmp_path / "harness/engine/budget.py").write_text("# v2: an engine change\n")
    assert cell.code_version("math", "zero_shot") != before


def test_curve_title_names_the_row_model_training_sizes_and_seed_count():
    df = pd.DataFrame({"model": ["smollm2-135m"] * 3, "train_size": [10, 10, 10], "seed": [0, 1, 2]})
    assert plot.curve_title("MathGAP", df) == "MathGAP: smollm2-135m, 10 training problems, 3 seeds"
    df = pd.DataFrame({"model": ["b", "a"], "train_size": [None, None], "seed": [0, 0]})
    assert plot.curve_title("Hanoi", df) == "Hanoi: a/b, 1 seed"


def test_a_method_that_imports_another_methods_module_changes_id_with_that_module(tmp_path, monkeypatch):
    """grpo_extra imports methods/lte.py: editing lte.py must orphan grpo_extra's finished cells
    (round 1 hashed only the method's own file, so resume reused results from old code)."""
    import shutil

    from harness.engine import provenance as cell

    for rel in ("harness", "tasks", "methods"):
        shutil.copytree(cell.REPO / rel, tmp_path / rel, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cell, "REPO", tmp_path)

    def version(task: str, method: str) -> str:
        return cell.files_hash(cell.cell_code_files(tmp_path / f"tasks/{task}.py", tmp_path / f"methods/{method}.py"))

    def edit(rel: str) -> None:
        (tmp_path / rel).write_text((tmp_path / rel).read_text() + "\n# edited\n")

    before = version("math", "grpo_extra")
    edit("methods/grpo.py")  # unrelated method
    assert version("math", "grpo_extra") == before
    edit("methods/lte.py")
    assert version("math", "grpo_extra") != before
    before = version("xlam", "zero_shot")
    edit("tasks/function_calling.py")
    assert version("xlam", "zero_shot") != before
