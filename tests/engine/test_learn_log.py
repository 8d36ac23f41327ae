"""`LearnContext.log`, the one path from a method's learning metrics to train_log.jsonl and W&B."""

from __future__ import annotations

import numpy as np
import pytest

from harness.core.types import SamplingParams
from harness.engine import BudgetMeter, LearnContext


def context(tmp_path, sink: list) -> LearnContext:
    return LearnContext(task=None, backend=None, meter=BudgetMeter(10), sampling=SamplingParams(),
                        cell_dir=tmp_path, seed=0, on_log=sink.append)


def test_rows_carry_the_rollout_axis_numbers_of_any_kind_and_only_finite_ones(tmp_path):
    sink: list = []
    ctx = context(tmp_path, sink)
    ctx.meter.reserve(4)
    ctx.log(memories=np.int64(3), mean_q=np.float32(0.5), broken=float("nan"), flag=True, text="x")
    (row,) = sink
    assert row == ctx.log_rows[0] and row["rollouts"] == 4 and row["memories"] == 3.0 and row["mean_q"] == 0.5
    assert not {"broken", "flag", "text"} & set(row) and isinstance(row["memories"], float)


def test_a_method_cannot_overwrite_the_harness_columns(tmp_path):
    ctx = context(tmp_path, [])
    with pytest.raises(ValueError, match="rollouts is set by the harness"):
        ctx.log(rollouts=99)
