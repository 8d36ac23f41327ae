"""zero_shot: the reference row. No learning and no rollouts; evaluation uses the task's base prompt."""

from __future__ import annotations

from dataclasses import dataclass

from harness.method import LearnContext, MethodBase, PromptOnly
from harness.registry import register_method
from harness.types import Problem


@register_method("zero_shot")
@dataclass
class ZeroShot(MethodBase):
    uses_rollouts = False

    def learn(self, train: list[Problem], ctx: LearnContext) -> PromptOnly:
        task, backend = ctx.task, ctx.backend
        return PromptOnly(task=task, policy=backend)
