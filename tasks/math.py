"""math: arithmetic expressions from reasoning-gym `basic_arithmetic`, with a `difficulty` knob.

`easy` (2 terms, 1 digit, + and -) is calibrated for the default SmolLM2-135M (≈32% greedy in
reference/feasibility.md §4). The demos show a one-step working line (`5 - 3 = 2`) before the
`Answer:` line, which is the format that gave this model its best score. Without an `Answer:`
line, the last number after `=` on the first line is taken (the lenient rule of that measurement).
Numbers are compared after canonicalisation (`7.0`, `+7` and `7` are the same answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.answer import canonical_number, last_number_after_equals
from tasks.common.reasoning_gym import ReasoningGymTask

DIFFICULTIES: dict[str, dict[str, Any]] = {
    "easy": dict(min_terms=2, max_terms=2, min_digits=1, max_digits=1, operators=("+", "-")),
    "medium": dict(min_terms=2, max_terms=2, min_digits=1, max_digits=2, operators=("+", "-")),
    "hard": dict(min_terms=3, max_terms=3, min_digits=1, max_digits=2, operators=("+", "-", "*")),
}


@register_task("math")
@dataclass
class MathTask(ReasoningGymTask):
    dataset: ClassVar[str] = "basic_arithmetic"
    instruction: ClassVar[str] = (
        "Solve the arithmetic problem. Write the calculation, then finish with a final line of the "
        "form 'Answer: <number>'.")
    difficulty: Literal["easy", "medium", "hard"] = knob(
        "easy", "easy (2 terms, 1 digit, +-), medium (2 terms, <=2 digits), hard (3 terms, +-*)")
    max_tokens: int = knob(48, "completion cap in tokens", ge=1)

    def generator_config(self) -> dict[str, Any]:
        return dict(DIFFICULTIES[self.difficulty], allow_parentheses=False, allow_negation=False)

    def demo_reply(self, problem: Problem) -> str:
        expr = problem.meta["entry"]["metadata"]["expression"]
        return f"{expr} = {problem.answer}\nAnswer: {problem.answer}"

    def fallback(self, text: str) -> str | None:
        return last_number_after_equals(text)

    def score(self, parsed: str, problem: Problem) -> float:
        got, want = canonical_number(parsed), canonical_number(problem.answer)
        return 1.0 if got is not None and got == want else 0.0
