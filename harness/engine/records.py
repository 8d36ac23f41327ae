"""Parquet records, the source of truth (DESIGN.md §4).

`results/<sweep>/cells/<cell_id>/attempts.parquet`: one row per generation.
`results/<sweep>/summary.parquet`: one row per cell x checkpoint, of the cells in the sweep's
latest plan (`plan.json`) only; cells left from an earlier plan stay on disk as *stale*.
Every write goes to a temporary file in the same directory and is renamed into place, so a
killed process leaves either the old file or the new one, never half of one; files get the
usual mode (0644 under umask 022), not the temporary file's 0600.
Reading is safe: a finished cell whose files do not read (`cell_damage`) is left out of every
summary and runs again; a plan.json that does not read raises `DamagedRecord` (one line).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() would give a new file; mkstemp's is 0600


class DamagedRecord(ValueError):
    """A record file that exists but does not read (garbage, truncated, wrong shape)."""


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, FILE_MODE)
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


CELL_ID = re.compile(r"^[\w-]+$")  # a plain directory name (real ids are 16 hex digits)


def read_json(path: Path) -> Any:
    """A JSON record; DamagedRecord (naming the file) when it does not read."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DamagedRecord(f"{path} does not read ({type(exc).__name__})") from None


def planned_cell_ids(sweep_dir: Path) -> list[str] | None:
    """Cell ids of the latest plan, or None for a sweep written before plans were recorded;
    DamagedRecord when plan.json does not read or names something other than cell ids."""
    path = sweep_dir / PLAN_FILE
    if not path.exists():
        return None
    plan = read_json(path)
    try:
        ids = [str(c["cell_id"]) for c in plan["cells"]]
    except (KeyError, TypeError) as exc:
        raise DamagedRecord(f"{path} does not read (no cells list: {type(exc).__name__})") from None
    bad = [i for i in ids if not CELL_ID.match(i)]  # an id is a directory name: never a path
    if bad:
        raise DamagedRecord(f"{path} does not read (not a cell id: {bad[0]!r})")
    return ids


# what the reports read of a finished cell: checked in full once, when the cell finishes
REPORTED_SUMMARY = ("cell_id", "task", "method", "model", "budget", "seed", "checkpoint", "rollouts_used",
                    "n_test", "n_samples", "pass@1", "final")
REPORTED_ATTEMPTS = ("phase", "tag", "problem_id", "passed")
CHECKED_FILES = ("config.json", "summary.parquet", "attempts.parquet")


def file_digest(path: Path) -> str:
    """sha256 of a file, computed once per version of it in this process (a plan asks every
    finished cell whether it is damaged several times)."""
    st = os.stat(path)
    return _digest(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4096)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seal_cell(cell_dir: Path) -> dict[str, str]:
    """When a cell finishes: read what the reports read in full (every summary column they use,
    every value of attempts.parquet's reported columns: a corrupt data page raises here, not in
    `make table`) and return the files' sha256 digests for done.json. ValueError if they do not read."""
    summary = pd.read_parquet(cell_dir / "summary.parquet")
    missing = [c for c in REPORTED_SUMMARY if c not in summary.columns]
    if missing:
        raise ValueError(f"summary.parquet lacks {', '.join(missing)}")
    pd.read_parquet(cell_dir / "attempts.parquet", columns=list(REPORTED_ATTEMPTS))
    return {name: file_digest(cell_dir / name) for name in CHECKED_FILES}


def cell_damage(cell_dir: Path) -> str:
    """Why a finished cell's files do not read ('' when they do). A cell sealed at its finish
    (done.json holds the sha256 of config.json, summary.parquet and attempts.parquet, read in
    full then: `seal_cell`) is checked against those digests, so an edit, a truncation or a
    corrupt page behind an intact footer reruns it; an older cell by reading its files' heads."""
    try:
        done = json.loads((cell_dir / "done.json").read_text())
        if not isinstance(done, dict):
            return "done.json lacks what a finished cell writes"
    except Exception as exc:  # garbage raises many kinds: JSONDecodeError, OSError, ...
        return f"done.json: {type(exc).__name__}"
    if isinstance(done.get("sha256"), dict):
        for name in CHECKED_FILES:
            try:
                if file_digest(cell_dir / name) != done["sha256"].get(name):
                    return f"{name} changed since the cell finished (sha256 differs from done.json)"
            except OSError as exc:
                return f"{name}: {type(exc).__name__}"
        return ""
    checks: list[tuple[str, Any]] = [
        ("config.json", lambda p: isinstance(json.loads(p.read_text()).get("config"), dict)),
        ("summary.parquet", lambda p: set(REPORTED_SUMMARY) <= set(pd.read_parquet(p).columns)),
        ("attempts.parquet", lambda p: set(REPORTED_ATTEMPTS) <= set(pq.read_schema(p).names))]
    for name, reads in checks:
        try:
            if not reads(cell_dir / name):
                return f"{name} lacks what a finished cell writes"
        except Exception as exc:  # garbage raises many kinds: JSONDecodeError, ArrowInvalid, OSError, ...
            return f"{name}: {type(exc).__name__}"
    return ""


def damaged_cells(sweep_dir: Path) -> list[tuple[str, str]]:
    """(cell_id, why) of the latest plan's cells that are marked finished but do not read."""
    return [(d.name, why) for d in _planned_dirs(sweep_dir) if (d / "done.json").exists()
            and (why := cell_damage(d))]


def _planned_dirs(sweep_dir: Path) -> list[Path]:
    planned = planned_cell_ids(sweep_dir)
    return ([sweep_dir / "cells" / cid for cid in planned] if planned is not None
            else sorted(p for p in (sweep_dir / "cells").glob("*") if p.is_dir()))


def stale_cells(sweep_dir: Path) -> list[str]:
    """Cell directories on disk that the latest plan does not contain (an earlier config or code)."""
    planned = planned_cell_ids(sweep_dir)
    if planned is None:
        return []
    keep = set(planned)
    return sorted(p.name for p in (sweep_dir / "cells").glob("*") if p.is_dir() and p.name not in keep)


def collect_summaries(sweep_dir: Path) -> pd.DataFrame:
    """Concatenate the per-cell summaries of the finished cells of the sweep's latest plan (a
    cell whose files do not read is left out: see `damaged_cells`)."""
    frames = [pd.read_parquet(d / "summary.parquet") for d in _planned_dirs(sweep_dir)
              if (d / "done.json").exists() and not cell_damage(d)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SUMMARY_COLUMNS)
