"""Problems from a fixed public dataset (benchmark loaders): rows come from a local file or from
the Hugging Face Hub through `datasets`, then become a fixed pool that the test and training
splits are drawn from.

Where rows come from: `data_path` (a `.jsonl`, `.json`, `.parquet` or `.csv` file, or a
directory written by `Dataset.save_to_disk`) if set, else `datasets.load_dataset(hf_id, config,
split=...)`, which reads the local HF cache and downloads only with network. Offline and uncached,
the task refuses at plan time with one line that names the dataset and how to point `data_path`
at a local copy.

Splits: the pool is shuffled once per (split, seed); the test set is the first `test_size`
problems of the test order; training problems come from the training order, or from a separate
training dataset where the benchmark has none of its own (the cell runner drops any test id).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.core.knobs import knob
from harness.core.types import Problem
from tasks.common.base import PromptedTask

_ROWS: dict[tuple[str | None, ...], list[dict[str, Any]]] = {}  # loaded once per process


class DatasetUnavailable(ValueError):
    """One-line, user-facing: the dataset is neither local nor downloadable."""


@dataclass(frozen=True)
class HubSource:
    """Where a dataset lives on the Hub and how to save it for offline use."""

    hf_id: str
    split: str
    config: str | None = None

    def load(self, task: str) -> list[dict[str, Any]]:
        key = (self.hf_id, self.config, self.split)
        if key in _ROWS:
            return _ROWS[key]
        try:
            import datasets

            _ROWS[key] = list(datasets.load_dataset(self.hf_id, self.config, split=self.split))
            return _ROWS[key]
        except Exception as exc:  # offline, gated, renamed: one actionable line
            args = f"'{self.hf_id}'" + (f", '{self.config}'" if self.config else "")
            raise DatasetUnavailable(
                f"{task}: dataset {self.hf_id} (split {self.split}) is not in the local HF cache and could "
                f"not be downloaded ({type(exc).__name__}); on a machine with network run "
                f"`python -c \"import datasets; datasets.load_dataset({args}, split='{self.split}')"
                f".to_json('{self.hf_id.split('/')[-1]}.jsonl')\"` and pass task.data_path=<that file>") from None


def read_rows(path: str, task: str) -> list[dict[str, Any]]:
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetUnavailable(f"{task}: data_path {path!r} does not exist")
    key = (str(p.resolve()), str(p.stat().st_mtime_ns))
    if key not in _ROWS:
        _ROWS[key] = _read_file(p, path, task)
    return _ROWS[key]


def _read_file(p: Path, path: str, task: str) -> list[dict[str, Any]]:
    if p.is_dir():
        import datasets

        return list(datasets.load_from_disk(str(p)))
    if p.suffix == ".jsonl":
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    if p.suffix == ".json":
        rows = json.loads(p.read_text())
        return rows if isinstance(rows, list) else rows.get("data", [])
    if p.suffix in (".parquet", ".csv"):
        import pandas as pd

        frame = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
        return [{str(k): v for k, v in row.items()} for row in frame.to_dict("records")]
    raise DatasetUnavailable(f"{task}: data_path {path!r} has an unknown format; valid: .jsonl, .json, "
                             ".parquet, .csv, or a save_to_disk directory")


@dataclass
class DatasetTask(PromptedTask):
    """Base for dataset-backed tasks. Subclasses implement `source()` and `to_problem(row)` and may
    override `train_source()` / `train_data_path` for a separate training set."""

    data_path: str | None = knob(None, "local copy (jsonl/json/parquet/csv with columns target, nums)")
    train_data_path: str | None = knob(None, "local copy of the training data, where it is a separate dataset")
    few_shot: int = knob(0, "must be 0: the rows carry no solutions to show", ge=0, le=0)

    separate_train: ClassVar[bool] = False  # training problems come from `train_source()`
    needs_data: ClassVar[bool] = True  # rows come from a download or a local copy (calibration skips it)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._pools: dict[str, list[Problem]] = {}
        self.pool("eval")  # load now, so a missing dataset stops the sweep at plan time
        self.pool("train")

    def source(self) -> HubSource:
        raise NotImplementedError

    def train_source(self) -> HubSource:
        return self.source()

    def to_problem(self, row: dict[str, Any], pool: str) -> Problem | None:
        """One problem from one row of the `pool` ("eval" or "train") data; None skips the row."""
        raise NotImplementedError

    def pool(self, which: str) -> list[Problem]:
        key = "train" if which == "train" and self.separate_train else "eval"
        if key not in self._pools:
            path = self.train_data_path if key == "train" else self.data_path
            src = self.train_source() if key == "train" else self.source()
            rows = read_rows(path, self.name) if path else src.load(self.name)
            seen, out = set(), []
            for row in rows:
                p = self.to_problem(row, key)
                if p is not None and p.id not in seen:
                    seen.add(p.id)
                    out.append(p)
            if not out:
                raise DatasetUnavailable(f"{self.name}: no usable rows in {path or src.hf_id}")
            self._pools[key] = out
        return self._pools[key]

    def draw(self, seed: int, size: int) -> list[Problem]:  # demos: from the training pool
        return self._ordered("train", seed)[:size]

    def _ordered(self, which: str, seed: int) -> list[Problem]:
        pool = list(self.pool(which))
        random.Random(f"{self.name}:{which}:{seed}").shuffle(pool)
        return pool

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; valid: train, test")
        demo_ids = {d.id for d in self.demos()}
        ordered = [p for p in self._ordered(split, seed) if p.id not in demo_ids]
        if split == "test" and n > len(ordered):
            raise ValueError(f"{self.name} has {len(ordered)} evaluation problems; test_size {n} is larger")
        return ordered[:n]
