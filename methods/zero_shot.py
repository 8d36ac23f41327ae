"""zero_shot: the reference row. No learning and no rollouts; evaluation uses the task's base prompt."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.registry import register_method
from harness.core.types import Problem
from harness.engine import LearnContext, MethodBase, PromptOnly


@register_method("zero_shot")
@dataclass
class ZeroShot(MethodBase):
    uses_rollouts = False

    def learn(self, train: list[Problem], ctx: LearnContext) -> PromptOnly:
        task, backend = ctx.task, ctx.backend
        return PromptOnly(task=task, policy=backend)
