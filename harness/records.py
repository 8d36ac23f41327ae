"""Parquet records, the source of truth (DESIGN.md §4).

`results/<sweep>/cells/<cell_id>/attempts.parquet`: one row per generation.
`results/<sweep>/summary.parquet`: one row per cell x checkpoint, of the cells in the sweep's
latest plan (`plan.json`) only; cells left from an earlier plan stay on disk as *stale*.
Every write goes to a temporary file in the same directory and is renamed into place, so a
killed process leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

ATTEMPT_COLUMNS = [
    "cell_id", "task", "method", "model", "budget", "seed", "phase", "checkpoint", "role",
    "counted_rollout", "problem_id", "sample_idx", "prompt_tokens", "completion_tokens", "reward",
    "passed", "finish_reason", "latency_s", "cached", "completion",
]
SUMMARY_COLUMNS = [
    "cell_id", "task", "method", "model", "budget", "seed", "checkpoint", "rollouts_used", "n_test",
    "n_samples", "pass@1", "learn_policy_tokens", "learn_aux_tokens",
    "eval_prompt_tokens_per_problem", "context_tokens_added", "wall_s", "load_s", "eval_s", "status",
]  # plus pass@2..pass@n and the extra columns written by the cell runner;
# load_s: seconds loading backends, eval_s: seconds evaluating so far (the rest of wall_s is learning)


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    _atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_json(obj: Any, path: Path) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=str)
    _atomic(path, w)


def write_bytes(data: bytes, path: Path) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    _atomic(path, w)


def write_text(text: str, path: Path) -> None:
    def w(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
    _atomic(path, w)


def attempts_frame(rows: list[dict[str, Any]], cell_fields: dict[str, Any]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for key, value in cell_fields.items():
        df[key] = value
    missing = [c for c in ATTEMPT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"attempt rows lack required columns {missing}")
    extra = [c for c in df.columns if c not in ATTEMPT_COLUMNS]
    return df[ATTEMPT_COLUMNS + extra]


PLAN_FILE = "plan.json"


def write_plan(sweep_dir: Path, cells: list[tuple[str, str]]) -> None:
    """Record the (cell_id, label) pairs of the sweep's latest plan; reports use only these."""
    write_json({"cells": [{"cell_id": cid, "label": label} for cid, label in cells]}, sweep_dir / PLAN_FILE)


def planned_cell_ids(sweep_dir: Path) -> list[str] | None:
    """Cell ids of the latest plan, or None for a sweep written before plans were recorded."""
    path = sweep_dir / PLAN_FILE
    return [c["cell_id"] for c in json.loads(path.read_text())["cells"]] if path.exists() else None


def stale_cells(sweep_dir: Path) -> list[str]:
    """Cell directories on disk that the latest plan does not contain (an earlier config or code)."""
    planned = planned_cell_ids(sweep_dir)
    if planned is None:
        return []
    keep = set(planned)
    return sorted(p.name for p in (sweep_dir / "cells").glob("*") if p.is_dir() and p.name not in keep)


def collect_summaries(sweep_dir: Path) -> pd.DataFrame:
    """Concatenate the per-cell summaries of the finished cells of the sweep's latest plan."""
    planned = planned_cell_ids(sweep_dir)
    dirs = ([sweep_dir / "cells" / cid for cid in planned] if planned is not None
            else sorted(p for p in (sweep_dir / "cells").glob("*") if p.is_dir()))
    frames = [pd.read_parquet(d / "summary.parquet") for d in dirs
              if (d / "done.json").exists() and (d / "summary.parquet").exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUMMARY_COLUMNS)
