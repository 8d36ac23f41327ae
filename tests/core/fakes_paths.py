"""A two-cell sweep whose configurations differ in a hostile config value (a path)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.engine.records import write_plan


def two_cells(results: Path, hostile: str) -> Path:
    sweep = results / "s"
    for cid, difficulty in (("a", "easy"), ("b", hostile)):
        d = sweep / "cells" / cid
        d.mkdir(parents=True)
        config = {"task": {"name": "math", "difficulty": difficulty, "train_size": 4}, "method": {"name": "zero_shot"},
                  "model": {"label": "m", "backend": "mock"}, "budget": 1, "seed": 0, "sweep": "s"}
        (d / "config.json").write_text(json.dumps({"cell_id": cid, "config": config}))
        (d / "done.json").write_text("{}")
        pd.DataFrame([{"phase": "eval", "tag": "sample", "problem_id": f"p{i}", "sample_idx": 0, "passed": i % 2 == 0,
                       "checkpoint": 0, "step": 0} for i in range(6)]).to_parquet(d / "attempts.parquet")
        pd.DataFrame([{"cell_id": cid, "task": "math", "method": "zero_shot", "model": "m", "budget": 1, "seed": 0,
                       "checkpoint": 0, "rollouts_used": 0, "n_test": 6, "n_samples": 1, "pass@1": 0.5,
                       "pass@1_lo": 0.1, "pass@1_hi": 0.9, "report_k": 1, "greedy_pass": 0.5, "learn_policy_tokens": 0,
                       "learn_aux_tokens": 0, "context_tokens_added": 0.0, "eval_prompt_tokens_per_problem": 5.0,
                       "wall_s": 1.0, "status": "ok", "final": True, "train_size": 4}]
                     ).to_parquet(d / "summary.parquet")
    write_plan(sweep, [("a", "a"), ("b", "b")])
    return sweep
