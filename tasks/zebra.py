"""zebra: zebra (Einstein) logic puzzles (reasoning-gym `zebra_puzzles`).

The answer is one attribute value (usually a name); guessing among the `num_people` values
scores 1/num_people, shown beside the result. Expect near-chance scores from 135M models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.reasoning_gym import ReasoningGymTask


@register_task("zebra")
@dataclass
class ZebraTask(ReasoningGymTask):
    dataset: ClassVar[str] = "zebra_puzzles"
    generator_fields: ClassVar[tuple[str, ...]] = ("num_people", "num_characteristics")  # passed to the generator
    instruction: ClassVar[str] = (
        "Solve the logic puzzle. Finish with a final line of the form 'Answer: <value>'.")
    num_people: int = knob(3, "houses per puzzle", ge=2, le=7)
    num_characteristics: int = knob(3, "attributes per person", ge=2, le=7)
    few_shot: int = knob(1, "demos in every prompt (zebra prompts are long)", ge=0)
    max_tokens: int = knob(64, "completion cap in tokens", ge=1)

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        return {**super().chance_baseline(problems), "random_guess": 1.0 / self.num_people}
