"""MathGAP generator (answers follow from the text, depth and shape as configured) and the
matchstick stick model (moves conserve sticks and are invertible; the checker accepts exactly
the true equations one move away)."""

from __future__ import annotations

import re

import pytest

from tasks.matchstick import MatchstickTask, evaluate, is_true, normalise, one_move_neighbours, solutions, to_roman
from tasks.mathgap import MathGapTask

# ---------------------------------------------------------------- MathGAP: an independent solver

_AXIOM = re.compile(r"^(\w+) has (\d+) \w+\.$")
_MORE = re.compile(r"^(\w+) has (\d+) (more|fewer) \w+ than (\w+)\.$")
_TIMES = re.compile(r"^(\w+) has (twice|three times) as many \w+ as (\w+)\.$")
_WHOLE = re.compile(r"^(\w+) has as many \w+ as (.+) together\.$")


def solve(question: str) -> tuple[int, int, dict[str, list[str]]]:
    """Answer, proof depth and premise lists, read from the problem text alone."""
    body, ask = question.rsplit(". How many", 1)
    target = re.search(r"does (\w+) have", ask).group(1)
    rules: dict[str, tuple] = {}
    for sentence in re.findall(r"[^.]+\.", body + "."):
        s = sentence.strip()
        if m := _AXIOM.match(s):
            rules[m[1]] = ("axiom", int(m[2]), [])
        elif m := _MORE.match(s):
            rules[m[1]] = (m[3], int(m[2]), [m[4]])
        elif m := _TIMES.match(s):
            rules[m[1]] = ("times", 2 if m[2] == "twice" else 3, [m[3]])
        elif m := _WHOLE.match(s):
            rules[m[1]] = ("whole", 0, re.split(r", | and ", m[2]))
        else:
            raise AssertionError(f"unparsed sentence {s!r}")

    def value(p: str) -> tuple[int, int]:
        kind, k, deps = rules[p]
        vals = [value(d) for d in deps]
        depth = 1 + max(d for _, d in vals) if vals else 0
        if kind == "axiom":
            return k, 0
        if kind == "whole":
            return sum(v for v, _ in vals), depth
        v = vals[0][0]
        return {"more": v + k, "fewer": v - k, "times": v * k}[kind], depth

    answer, depth = value(target)
    return answer, depth, {p: r[2] for p, r in rules.items()}


@pytest.mark.parametrize("kw", [dict(), dict(depth=2), dict(depth=4, multiplicative=True),
                                dict(shape="nonlinear", depth=2),
                                dict(shape="nonlinear", depth=3, width=3, shuffle=True)])
def test_mathgap_answers_follow_from_the_text_with_the_configured_depth_and_shape(kw):
    task = MathGapTask(**kw)
    for p in task.problems("test", 60, 0):
        answer, depth, premises = solve(p.question)
        assert str(answer) == p.answer and depth == task.depth == p.meta["depth"]
        derived = {q for q, deps in premises.items() if deps}
        most_derived = max(sum(d in derived for d in deps) for deps in premises.values())
        if task.shape == "linear":  # a chain: one derived premise per step after the first
            assert most_derived == min(1, task.depth - 1)
        else:
            root = re.search(r"does (\w+) have", p.question).group(1)
            assert most_derived == task.width and sum(d in derived for d in premises[root]) == task.width
        assert 1 <= answer <= task.max_value


def test_mathgap_checks_the_answer_strictly():
    task = MathGapTask()
    p = task.problems("test", 1, 0)[0]
    assert task.verify(p, f"Answer: {p.answer}.0").passed
    assert task.verify(p, task.demo_reply(p)).passed
    assert not task.verify(p, f"so {p.answer}").passed  # no fallback number without an Answer line
    assert not task.verify(p, f"Answer: {int(p.answer) + 1}").passed
    with pytest.raises(ValueError, match=r"task\.shape='tree'; valid: one of linear, nonlinear"):
        MathGapTask(shape="tree")


# ---------------------------------------------------------------- matchstick

STICKS = {"I": 1, "V": 2, "X": 2, "+": 2, "-": 1, "=": 2}


def test_roman_numerals_are_canonical_only():
    assert [to_roman(n) for n in (4, 9, 14, 39)] == ["IV", "IX", "XIV", "XXXIX"]
    assert evaluate("IV=IIII") is None and evaluate("VX=V") is None and evaluate("IIV=III") is None
    assert evaluate("IX-IV=V") == (5, 5) and evaluate("I=I=I") is None and evaluate("+I=I") is None


def test_moves_conserve_sticks_and_are_invertible():
    for p in MatchstickTask().problems("test", 40, 0):
        puzzle = p.meta["puzzle"]
        for n in one_move_neighbours(puzzle):
            assert sum(STICKS[g] for g in n) == sum(STICKS[g] for g in puzzle)
            assert puzzle in one_move_neighbours(n)


def test_known_puzzle_has_the_textbook_solution_and_no_two_move_ones():
    # Knoblich et al.'s example: VI = VII + I -> move the I from VII to VI.
    assert "VII=VI+I" in solutions("VI=VII+I")
    assert "VI=VII-I" not in one_move_neighbours("VI=VII+I")  # a stick taken but never put down
    assert "VIII=VII+I" not in one_move_neighbours("VI=VII+I")  # needs an extra stick
    assert "V=IV+I" not in one_move_neighbours("VI=VII+I")  # two moves


def test_generated_puzzles_are_false_and_solvable_and_any_solution_scores():
    task = MatchstickTask()
    problems = task.problems("test", 100, 0)
    assert all(not is_true(p.meta["puzzle"]) and evaluate(p.meta["puzzle"]) for p in problems)
    assert all(normalise(p.answer) in solutions(p.meta["puzzle"]) for p in problems)
    multi = next(p for p in problems if len(p.meta["solutions"]) > 1)
    for sol in multi.meta["solutions"]:
        assert task.verify(multi, f"Answer: {sol.replace('-', '−')}").passed
    p = problems[0]
    assert not task.verify(p, f"Answer: {p.question.split(': ')[1]}").passed  # the puzzle itself
    assert not task.verify(p, "Answer: I = I").passed  # true, but not one move away
    assert not task.verify(p, "Answer: " + "I" * 10_000).passed
