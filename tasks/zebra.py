"""zebra: zebra (Einstein) logic puzzles (reasoning-gym `zebra_puzzles`).

The answer is one attribute value (usually a name); guessing among the `num_people` values
scores 1/num_people, shown beside the result. Expect near-chance scores from 135M models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.registry import register_task
from harness.types import Problem
from tasks.common.reasoning_gym import ReasoningGymTask


@register_task("zebra")
@dataclass
class ZebraTask(ReasoningGymTask):
    name: ClassVar[str] = "zebra"
    dataset: ClassVar[str] = "zebra_puzzles"
    generator_fields: ClassVar[tuple[str, ...]] = ("num_people", "num_characteristics")  # passed to the generator
    instruction: ClassVar[str] = (
        "Solve the logic puzzle. Finish with a final line of the form 'Answer: <value>'.")
    num_people: int = 3  # houses / people per puzzle (2-7)
    num_characteristics: int = 3  # attributes per person (2-7)
    few_shot: int = 1  # zebra prompts are long; one demo keeps the context small
    max_tokens: int = 64

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        return {**super().chance_baseline(problems), "random_guess": 1.0 / self.num_people}
