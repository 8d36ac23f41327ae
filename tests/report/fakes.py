"""Finished cells written by hand, so a table's every expected number is known exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.engine.records import write_plan
from harness.report.results import load, report


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
                   "n_samples": 2, "pass@1": p1, "pass@1_lo": max(0.0, p1 - 0.1),
                   "pass@1_hi": min(1.0, p1 + 0.1), "pass@2": p1, "report_k": 2, "greedy_pass": p1,
                   "learn_policy_tokens": 1, "learn_aux_tokens": 0, "context_tokens_added": 0.0,
                   "eval_prompt_tokens_per_problem": 5.0, "wall_s": 1.0, "status": "ok", "final": True,
                   "train_size": task["train_size"], **(extra or {})}]).to_parquet(d / "summary.parquet")


def plan(sweep, *ids: str) -> None:
    write_plan(sweep, [(i, i) for i in ids])


def write_table(sweep, reference: str | None = None) -> str:
    """`make table` on a hand-written sweep: table.md, table.csv and comparisons.csv; the text."""
    return report(load(sweep.name, sweep.parent, reference))
