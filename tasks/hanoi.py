"""hanoi: Tower of Hanoi move sequences (reasoning-gym `tower_of_hanoi`), a planning task.

Default 1-3 disks on 3-4 pegs. The reference notes measured 1-2 disks on 3 pegs (≈32% greedy
for SmolLM2), but that setting has only 12 distinct problems, too few for disjoint train and test
sets; 1-3 disks on 3-4 pegs has 54. The answer is every non-empty line after
`Answer:`, one `Move disk X from Peg Y to Peg Z` per line; reasoning-gym's scorer replays the
moves and checks legality and the final state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.reasoning_gym import ReasoningGymTask


@register_task("hanoi")
@dataclass
class HanoiTask(ReasoningGymTask):
    dataset: ClassVar[str] = "tower_of_hanoi"
    # passed to the generator
    generator_fields: ClassVar[tuple[str, ...]] = ("min_disks", "max_disks", "min_pegs", "max_pegs")
    instruction: ClassVar[str] = (
        "Solve the Tower of Hanoi problem. Write 'Answer:' on its own line, followed by one move per "
        "line in the form 'Move disk X from Peg Y to Peg Z'.")
    multiline_answer: ClassVar[bool] = True
    min_disks: int = knob(1, "fewest disks; 1-3 disks on 3-4 pegs = 54 distinct problems (1-2 disks on 3 pegs: 12)",
                          ge=1)
    max_disks: int = knob(3, "most disks", ge=1)
    min_pegs: int = knob(3, "fewest pegs per puzzle", ge=3)
    max_pegs: int = knob(4, "most pegs per puzzle", ge=3)
    max_tokens: int = knob(128, "completion cap in tokens", ge=1)

    def demo_reply(self, problem: Problem) -> str:
        return f"Answer:\n{problem.answer}"
