"""knights_knaves: truth-teller / liar puzzles (reasoning-gym `knights_knaves`).

Default 2 people, the generator's smallest setting (reasoning-gym fails to generate with a
depth or width under 2); guessing at random scores 1/2^n_people = 25%, shown beside the result.
reasoning-gym's scorer compares the set of role assignments in any order.

reasoning-gym ends each question with `(Format your answer like: "Owen is a saint/sinner, and
Amelia is a saint/sinner")`; SmolLM2-135M copied that template, slash and all, in 19% of its
answers, so the hint is dropped: the instruction and the demos show the format.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.reasoning_gym import ReasoningGymTask

_FORMAT_HINT = re.compile(r'\s*\(Format your answer like: "[^"]*"\)')


@register_task("knights_knaves")
@dataclass
class KnightsKnavesTask(ReasoningGymTask):
    dataset: ClassVar[str] = "knights_knaves"
    # passed to the generator
    generator_fields: ClassVar[tuple[str, ...]] = ("n_people", "depth_constraint", "width_constraint")
    instruction: ClassVar[str] = (
        "Solve the logic puzzle. Finish with a final line of the form "
        "'Answer: <name> is a <role>, and <name> is a <role>'.")
    n_people: int = knob(2, "inhabitants per puzzle", ge=2)
    depth_constraint: int = knob(2, "statement nesting depth", ge=1)
    width_constraint: int = knob(2, "statement branching", ge=1)
    max_tokens: int = knob(96, "completion cap in tokens", ge=1)

    def draw(self, seed: int, size: int) -> Iterator[Problem]:
        for p in super().draw(seed, size):
            yield Problem.make(_FORMAT_HINT.sub("", p.question), p.answer, p.meta)

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        return {**super().chance_baseline(problems), "random_guess": 0.5 ** self.n_people}
