"""countdown_tasks: the public Countdown-Tasks-3to4 set (TinyZero; `Jiayi-Pan/Countdown-Tasks-3to4`,
columns `target`, `nums`), the usual source of the RRR paper's equation-writing task (unverified).

Same answer rules as the generated `countdown` task (tasks/countdown.py): a whitelisted plain
arithmetic expression using every given number exactly once that equals the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.datasets import DatasetTask, HubSource
from tasks.countdown import CountdownTask, score_expression


@register_task("countdown_tasks")
@dataclass
class CountdownTasksTask(DatasetTask):
    instruction: ClassVar[str] = CountdownTask.instruction
    max_tokens: int = knob(128, "completion cap in tokens", ge=1)

    def source(self) -> HubSource:
        return HubSource("Jiayi-Pan/Countdown-Tasks-3to4", "train")

    def to_problem(self, row: dict[str, Any], pool: str) -> Problem | None:
        nums, target = [int(n) for n in row["nums"]], int(row["target"])
        question = f"Using the numbers {', '.join(map(str, nums))}, create an expression that equals {target}."
        entry = {"metadata": {"numbers": nums, "target": target}}
        return Problem.make(question, str(target), {"entry": entry})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.few_shot:
            raise ValueError(f"countdown_tasks rows have no reference solution to show as demos; "
                             f"few_shot must be 0, got {self.few_shot}")

    def score(self, parsed: str, problem: Problem) -> float:
        return score_expression(parsed, problem)

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        return {}
