"""mathgap: arithmetic word problems generated from a proof tree (after MathGAP, Opedal et al.,
arXiv 2410.13502; our own generator written from the paper's description, not its code).

A problem is a proof tree over quantities "how many <things> does <person> have". Leaves are
axioms (`Ava has 7 marbles.`); every inner node is one inference whose premises are its
children and whose conclusion is a new quantity:

- comparison (one derived premise + the comparison sentence): `Ben has 3 more marbles than Ava.`
  / `... fewer ...` / (with `multiplicative: true`) `... twice / three times as many ... as ...`;
- part-whole (`width` premises): `Cal has as many marbles as Ava and Ben together.`

Shape and size, as in MathGAP:
- `depth` = inference steps on the longest path from the question to an axiom;
- `shape: linear`: every inference has at most one derived premise (a chain; part-whole steps take
  `width - 1` fresh axioms beside the derived quantity);
- `shape: nonlinear`: the question's inference is a part-whole over `width` derived quantities,
  each a linear chain of depth `depth - 1`, so one step combines several derived premises.
The question asks for the root quantity. Sentences come in proof order (premises before
conclusions); `shuffle: true` shuffles them (MathGAP's ordering study). Every intermediate value
is a positive integer no larger than `max_value`.

Answer: `Answer: <integer>`, checked strictly (no fallback number, `12.0` and `12` equal).
The demo replies show one computation per inference before the answer line.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.answer import canonical_number
from tasks.common.base import PromptedTask

SHAPES = ("linear", "nonlinear")
NAMES = ("Ava", "Ben", "Cal", "Dora", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena",
         "Milo", "Nia", "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Vic", "Wen", "Yara")
THINGS = ("apples", "marbles", "stickers", "books", "coins", "pencils", "shells", "cards", "stamps",
          "buttons")
MULTIPLIERS = {2: "twice", 3: "three times"}
PART_WHOLE_SHARE = 0.3  # chance that a linear step is a part-whole (else a comparison)


@dataclass
class _Quantity:
    person: str
    value: int
    sentences: list[str] = field(default_factory=list)  # premises and this quantity's sentence, proof order
    steps: list[str] = field(default_factory=list)  # worked computation, one line per inference
    depth: int = 0


class _TreeBuilder:
    def __init__(self, rng: random.Random, thing: str, multiplicative: bool):
        self.rng, self.thing, self.multiplicative = rng, thing, multiplicative
        self.free_names = list(NAMES)
        rng.shuffle(self.free_names)

    def name(self) -> str:
        if not self.free_names:
            raise ValueError("mathgap: the proof tree needs more people than the name list holds; "
                             "lower depth or width")
        return self.free_names.pop()

    def axiom(self, high: int) -> _Quantity:
        person = self.name()
        value = self.rng.randint(2, max(2, high))
        return _Quantity(person, value, [f"{person} has {value} {self.thing}."])

    def part_whole(self, parts: list[_Quantity]) -> _Quantity:
        person = self.name()
        total = sum(p.value for p in parts)
        names = [p.person for p in parts]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        sentences = [s for p in parts for s in p.sentences]
        steps = [s for p in parts for s in p.steps]
        return _Quantity(person, total,
                         sentences + [f"{person} has as many {self.thing} as {listed} together."],
                         steps + [f"{person}: {' + '.join(str(p.value) for p in parts)} = {total}"],
                         1 + max(p.depth for p in parts))

    def comparison(self, base: _Quantity, cap: int) -> _Quantity | None:
        """One comparison step from `base` with a result in 1..cap, or None if none fits."""
        options = []
        if base.value < cap:
            options.append("more")
        if base.value > 1:
            options.append("fewer")
        if self.multiplicative and base.value * 2 <= cap:
            options.append("times")
        if not options:
            return None
        kind = self.rng.choice(options)
        person = self.name()
        if kind == "more":
            k = self.rng.randint(1, min(9, cap - base.value))
            value, text, step = base.value + k, f"{k} more {self.thing} than", f"{base.value} + {k}"
        elif kind == "fewer":
            k = self.rng.randint(1, min(9, base.value - 1))
            value, text, step = base.value - k, f"{k} fewer {self.thing} than", f"{base.value} - {k}"
        else:
            k = self.rng.choice([m for m in MULTIPLIERS if base.value * m <= cap])
            value, text, step = base.value * k, f"{MULTIPLIERS[k]} as many {self.thing} as", f"{base.value} * {k}"
        return _Quantity(person, value, base.sentences + [f"{person} has {text} {base.person}."],
                         base.steps + [f"{person}: {step} = {value}"], base.depth + 1)

    def linear(self, depth: int, width: int, cap: int) -> _Quantity:
        """A chain of `depth` inferences, each with one derived premise; values stay in 1..cap."""
        q = self.axiom(cap // 2)
        for _ in range(depth):
            nxt = None
            room = cap - q.value
            if self.rng.random() < PART_WHOLE_SHARE and room >= 2 * (width - 1):
                nxt = self.part_whole([q] + [self.axiom(room // (width - 1)) for _ in range(width - 1)])
            nxt = nxt or self.comparison(q, cap)
            if nxt is None:  # only if cap < 2, which __post_init__ rules out
                raise ValueError(f"mathgap: no inference keeps values in 1..{cap}")
            q = nxt
        return q


@register_task("mathgap")
@dataclass
class MathGapTask(PromptedTask):
    instruction: ClassVar[str] = (
        "Solve the word problem. Work out each quantity step by step, then finish with a final line of "
        "the form 'Answer: <number>'.")
    depth: int = knob(1, "inference steps from the question to the deepest axiom (MathGAP 'depth'); 1 is "
                         "calibrated for SmolLM2-135M (0.28 zero-shot Pass@1; depth 2: 0.03)", ge=1)
    width: int = knob(2, "premises of a part-whole step (MathGAP 'width')", ge=2)
    shape: Literal["linear", "nonlinear"] = knob(
        "linear", "linear (a chain) or nonlinear (the question combines `width` derived quantities)")
    multiplicative: bool = knob(False, "also 'twice / three times as many' comparisons")
    max_value: int = knob(60, "every quantity stays in 1..max_value", ge=2)
    shuffle: bool = knob(False, "sentences in random order instead of proof order")
    max_tokens: int = knob(128, "completion cap in tokens", ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shape not in SHAPES:
            raise ValueError(f"unknown mathgap shape {self.shape!r}; valid: {', '.join(SHAPES)}")
        if self.depth < 1 or self.width < 2:
            raise ValueError(f"mathgap needs depth >= 1 and width >= 2, got depth={self.depth} width={self.width}")
        if self.max_value < 5 * self.width:
            raise ValueError(f"mathgap max_value must be >= 5 * width = {5 * self.width}, got {self.max_value}")

    def make_problem(self, rng: random.Random) -> Problem:
        thing = rng.choice(THINGS)
        builder = _TreeBuilder(rng, thing, self.multiplicative)
        if self.shape == "linear":
            root = builder.linear(self.depth, self.width, self.max_value)
        else:  # each part gets an equal share of the range so the total stays in 1..max_value
            share = self.max_value // self.width
            root = builder.part_whole([builder.linear(self.depth - 1, self.width, share)
                                       for _ in range(self.width)])
        sentences = list(root.sentences)
        if self.shuffle:
            rng.shuffle(sentences)
        question = " ".join(sentences) + f" How many {thing} does {root.person} have?"
        return Problem.make(question, str(root.value), {"steps": root.steps, "depth": root.depth,
                                                        "shape": self.shape})

    def draw(self, seed: int, size: int) -> Iterator[Problem]:
        for i in range(size):
            yield self.make_problem(random.Random(f"mathgap:{seed}:{i}"))

    def demo_reply(self, problem: Problem) -> str:
        return "\n".join(problem.meta["steps"]) + f"\nAnswer: {problem.answer}"

    def score(self, parsed: str, problem: Problem) -> float:
        got = canonical_number(parsed)
        return 1.0 if got is not None and got == canonical_number(problem.answer) else 0.0

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "generator": {
            "depth": self.depth, "width": self.width, "shape": self.shape,
            "multiplicative": self.multiplicative, "max_value": self.max_value, "shuffle": self.shuffle}}
