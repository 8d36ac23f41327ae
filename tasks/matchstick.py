"""matchstick: matchstick arithmetic in Roman numerals (the CORE paper's task, after Knoblich et
al. 1999). The paper's generator and checker are not public; this module defines its own.

**Stick model.** An equation is a string of glyphs, each made of matchsticks:
`I` = 1 stick, `V` = 2 (meeting at the bottom), `X` = 2 (crossing), `+` = 2 (one vertical, one
horizontal), `-` = 1 (horizontal), `=` = 2 (horizontal). One move takes one stick and puts it down
elsewhere; the moves that can leave valid glyphs are exactly:
- take: remove an `I`; `+` -> `-` (its vertical stick); `=` -> `-` (one of its sticks);
- put: insert an `I` at any position; `-` -> `+`; `-` -> `=`;
- a take followed by a put (in any two places, the stick may turn), or, within one glyph,
  `X` <-> `V` (re-laying one of its two sticks).
Putting the stick back where it was is not a move. Every move has an inverse move, so the
generator's true equation is always one move away from the puzzle it makes.

**Valid equation.** Exactly one `=`; each side is numerals joined by `+` / `-`, evaluated left to
right; numerals are standard (canonical, subtractive) Roman numerals made of I, V and X, 1-39.

**Generator.** A true equation `a op b = c` (or `c = a op b`) with every numeral in
1..max_value, then one random move that gives a valid but false equation: the puzzle.

**Answer format.** `Answer: <equation>`, e.g. `Answer: VI = III + III`; spaces are ignored and
`−`/`–` read as `-`. The checker accepts any true valid equation exactly one move away from the
puzzle (several can exist), not only the generator's.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.base import PromptedTask

ROMAN = ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))
TAKES = {"I": "", "+": "-", "=": "-"}  # glyph -> what is left after one stick is taken
PUTS = {"-": ("+", "=")}  # glyph -> what it becomes with one more stick
RELAYS = {"X": "V", "V": "X"}  # one stick re-laid within the glyph
DASHES = str.maketrans({"−": "-", "–": "-", "—": "-"})
MAX_EQUATION_CHARS = 60


def to_roman(n: int) -> str:
    if not 1 <= n <= 39:
        raise ValueError(f"{n} is outside 1..39")
    out = ""
    for value, letters in ROMAN:
        while n >= value:
            out, n = out + letters, n - value
    return out


def _numeral_value(text: str) -> int | None:
    total, i = 0, 0
    for value, letters in ROMAN:  # greedy parse, then insist on the canonical spelling
        while text.startswith(letters, i):
            total, i = total + value, i + len(letters)
    if i != len(text) or total == 0 or total > 39 or to_roman(total) != text:
        return None
    return total


def _side_value(tokens: list[str]) -> int | None:
    if not tokens or len(tokens) % 2 == 0:
        return None
    values = [_numeral_value(t) for t in tokens[::2]]
    if any(v is None for v in values) or any(op not in "+-" for op in tokens[1::2]):
        return None
    numbers = [v for v in values if v is not None]
    total = numbers[0]
    for op, v in zip(tokens[1::2], numbers[1:], strict=False):
        total = total + v if op == "+" else total - v
    return total


def tokens_of(equation: str) -> list[str]:
    out: list[str] = []
    for ch in equation:
        if ch in "IVX" and out and out[-1][-1] in "IVX":
            out[-1] += ch
        else:
            out.append(ch)
    return out


def evaluate(equation: str) -> tuple[int, int] | None:
    """(left, right) values of a valid equation, or None if it is not a valid equation."""
    if not equation or set(equation) - set("IVX+-=") or equation.count("=") != 1:
        return None
    left, right = equation.split("=")
    lv, rv = _side_value(tokens_of(left)), _side_value(tokens_of(right))
    return None if lv is None or rv is None else (lv, rv)


def is_true(equation: str) -> bool:
    values = evaluate(equation)
    return values is not None and values[0] == values[1]


def _puts(glyphs: str) -> Iterator[str]:
    for j in range(len(glyphs) + 1):
        yield glyphs[:j] + "I" + glyphs[j:]
    for j, g in enumerate(glyphs):
        for new in PUTS.get(g, ()):
            yield glyphs[:j] + new + glyphs[j + 1:]


def one_move_neighbours(equation: str) -> set[str]:
    """Every glyph string one stick move away (valid or not), without the equation itself."""
    out: set[str] = set()
    for i, g in enumerate(equation):
        if g in TAKES:
            out.update(_puts(equation[:i] + TAKES[g] + equation[i + 1:]))
        if g in RELAYS:
            out.add(equation[:i] + RELAYS[g] + equation[i + 1:])
    out.discard(equation)
    return out


def solutions(equation: str) -> set[str]:
    """True valid equations one move away."""
    return {e for e in one_move_neighbours(equation) if is_true(e)}


def normalise(text: str) -> str:
    return "".join(text.translate(DASHES).upper().split())


def spaced(equation: str) -> str:
    return " ".join(tokens_of(equation))


@register_task("matchstick")
@dataclass
class MatchstickTask(PromptedTask):
    instruction: ClassVar[str] = (
        "Matchstick arithmetic. The equation is written in Roman numerals made of matchsticks and is "
        "false. Move exactly one matchstick to make it true. Sticks: I = 1, V = 2, X = 2, + = 2 (one "
        "vertical, one horizontal), - = 1, = = 2. A stick may be taken from I, + or =, and put down as "
        "a new I or on a - (making + or =); moving one stick of X makes V and vice versa. Numerals must "
        "be standard Roman numerals. Finish with a final line of the form 'Answer: <corrected equation>'.")
    max_value: int = knob(10, "numerals of the hidden true equation lie in 1..max_value", ge=2, le=39)
    operators: str = knob("+-", "operators of the hidden true equation")
    max_tokens: int = knob(64, "completion cap in tokens", ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.operators or set(self.operators) - set("+-"):
            raise ValueError(f"task.operators={self.operators!r}; valid: a non-empty subset of '+-'")

    def true_equation(self, rng: random.Random) -> str:
        while True:
            op = rng.choice(self.operators)
            a, b = rng.randint(1, self.max_value), rng.randint(1, self.max_value)
            c = a + b if op == "+" else a - b
            if 1 <= c <= self.max_value:
                lhs, rhs = f"{to_roman(a)}{op}{to_roman(b)}", to_roman(c)
                return f"{lhs}={rhs}" if rng.random() < 0.5 else f"{rhs}={lhs}"

    def make_problem(self, rng: random.Random) -> Problem:
        while True:
            truth = self.true_equation(rng)
            puzzles = sorted(e for e in one_move_neighbours(truth) if evaluate(e) and not is_true(e))
            if puzzles:
                puzzle = rng.choice(puzzles)
                return Problem.make(f"Equation: {spaced(puzzle)}", spaced(truth),
                                    {"puzzle": puzzle, "solutions": sorted(solutions(puzzle))})

    def draw(self, seed: int, size: int) -> Iterator[Problem]:
        for i in range(size):
            yield self.make_problem(random.Random(f"matchstick:{seed}:{i}"))

    def score(self, parsed: str, problem: Problem) -> float:
        answer = normalise(parsed[:MAX_EQUATION_CHARS])
        return float(is_true(answer) and answer in one_move_neighbours(problem.meta["puzzle"]))

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        return {}  # the answer is an equation: no constant answer fits two puzzles

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "generator": {"max_value": self.max_value, "operators": self.operators}}
