"""One cell: budget meter, sampling, the method protocol and its learn context, evaluation,
metrics and statistics, records, and `run_cell`. Imports core and backends only.

This module is the method and task author's API: `methods/` and `tasks/` import the names in
`__all__` from here (and anything from `harness.core`), nothing else of `harness`
(tests/test_layout.py checks it). A new method is one file that subclasses `MethodBase`, declares
its knobs with `knob`, and registers with `register_method`; its `learn` spends rollouts through
`LearnContext` and returns a `Learned`.
"""

from harness.backends import TRAINABLE_BACKENDS
from harness.core.devices import bf16_supported, cuda_available
from harness.core.knobs import check_knobs, knob
from harness.core.registry import register_method, register_task
from harness.core.timeouts import raise_after
from harness.core.types import (
    Backend,
    Message,
    Problem,
    SamplingParams,
    SyncedSampler,
    Task,
    TrainableBackend,
    Verdict,
)
from harness.engine.budget import BudgetExhausted, BudgetMeter
from harness.engine.method import Attempt, LearnContext, Learned, MethodBase, PromptOnly
from harness.engine.records import write_json, write_text

__all__ = [
    "TRAINABLE_BACKENDS",
    "Attempt",
    "Backend",
    "BudgetExhausted",
    "BudgetMeter",
    "LearnContext",
    "Learned",
    "Message",
    "MethodBase",
    "Problem",
    "PromptOnly",
    "SamplingParams",
    "SyncedSampler",
    "Task",
    "TrainableBackend",
    "Verdict",
    "bf16_supported",
    "check_knobs",
    "cuda_available",
    "knob",
    "raise_after",
    "register_method",
    "register_task",
    "write_json",
    "write_text",
]
