"""countdown: reach a target with +, -, *, / over given numbers (reasoning-gym `countdown`).

Default: 2 numbers in 1..20, target 10..60, solutions with + and - (calibrated for SmolLM2-135M:
0.375 zero-shot Pass@1; with 3 numbers and all four operators it scores 0.000, 2 numbers 0.056: in
over 80% of its answers it does not use the given numbers).
reasoning-gym's scorer evaluates the answer with sympy's `parse_expr`, which runs Python, so
the answer is first checked against a whitelist grammar: digits, spaces, + - * / and
parentheses only, no `**`, at most 200 characters and 10 levels of nesting. Anything else scores
0 without reaching sympy. Every number must be used exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.reasoning_gym import ReasoningGymTask, rg_scorer

_ALLOWED = re.compile(r"^[0-9+\-*/() ]{1,200}$")
MAX_DEPTH = 10


def safe_expression(text: str) -> bool:
    """True only for plain arithmetic: the whitelist that guards sympy's parse_expr."""
    if not _ALLOWED.match(text) or "**" in text or "//" in text:
        return False
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0 or depth > MAX_DEPTH:
            return False
    return depth == 0


def score_expression(parsed: str, problem: Problem) -> float:
    """The countdown scorer (also countdown_tasks'): a whitelisted plain arithmetic expression,
    scored by reasoning-gym's countdown scorer against `problem.meta["entry"]`."""
    expr = parsed.replace("×", "*").replace("÷", "/").strip()
    return float(rg_scorer("countdown")(expr, problem.meta["entry"])) if safe_expression(expr) else 0.0


@register_task("countdown")
@dataclass
class CountdownTask(ReasoningGymTask):
    dataset: ClassVar[str] = "countdown"
    generator_fields: ClassVar[tuple[str, ...]] = (  # passed to the generator
        "min_numbers", "max_numbers", "min_value", "max_value", "min_target", "max_target")
    instruction: ClassVar[str] = (
        "Combine the given numbers with +, -, * and / to reach the target, using each number exactly "
        "once. Finish with a final line of the form 'Answer: <expression>'.")
    min_numbers: int = knob(2, "fewest numbers given", ge=2)
    max_numbers: int = knob(2, "most numbers given (both ends inclusive)", ge=2)
    min_value: int = knob(1, "smallest number", ge=1)
    max_value: int = knob(20, "largest number", ge=1)
    min_target: int = knob(10, "smallest target", ge=1)
    max_target: int = knob(60, "largest target", ge=1)
    operators: str = knob("+-", "operators the generator's solutions use (the answer may use any of + - * /)")
    max_tokens: int = knob(64, "completion cap in tokens", ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.operators or set(self.operators) - set("+-*/"):
            raise ValueError(f"task.operators={self.operators!r}; valid: a non-empty subset of '+-*/'")

    def generator_config(self) -> dict[str, Any]:
        return {**super().generator_config(), "operators": tuple(self.operators)}

    def score(self, parsed: str, problem: Problem) -> float:
        return score_expression(parsed, problem)

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        return {}  # answers are expressions: no constant answer can be right for two problems
