"""zero_shot: the reference row. No learning and no rollouts; evaluation uses the task's base prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.budget import BudgetMeter
from harness.method import LearnContext, PromptOnly
from harness.registry import register_method
from harness.types import Backend, Problem, Task


@register_method("zero_shot")
@dataclass
class ZeroShot:
    mutates_policy: ClassVar[bool] = False

    def learn(self, task: Task, train: list[Problem], backend: Backend, budget: BudgetMeter,
              ctx: LearnContext) -> PromptOnly:
        return PromptOnly(task=task, policy=backend)
