"""The part of the Task contract every sibench task shares (DESIGN.md §3 "Task"): splits, prompt,
answer extraction and strict verification. Subclasses say where problems come from (`draw`) and
how a parsed answer is scored (`score`).

Splits: split `s` with run seed `r` is the stream `draw(SEED_BASE[s] + r * SEED_STRIDE, size)`
(bases 1e9 / 2e9 / 3e9, stride 1_000_003, all below 2**32), with duplicates and demo problems
dropped; the cell runner removes any test id from the training set and asserts no overlap.
reasoning-gym derives item i of seed S from `Random(S + i)`, so seeds S and S + 1 would give the
same problems shifted by one; the bases and stride keep pools of up to a million draws apart.

Prompt (fixed per task and recorded by `describe()`): a system message with the task's
instruction (plus the method's guidance, if any), `few_shot` demos as user/assistant turns, then
the question. Every instruction asks for a final `Answer: <answer>` line (tasks/common/answer.py).

Verification is strict: `passed` only when the score is exactly 1.0; partial credit is kept in
`reward` only with `partial_credit=true`. Scoring runs under a wall-clock limit and any exception
becomes reward 0 with feedback, never a crash.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from harness.core.knobs import check_knobs, knob
from harness.core.timeouts import raise_after
from harness.core.types import Message, Problem, Verdict
from tasks.common.answer import extract_answer

SEED_BASE = {"train": 1_000_000_000, "test": 2_000_000_000, "demo": 3_000_000_000}
SEED_STRIDE = 1_000_003
STALE_DRAWS = 2_000  # draws in a row with no new problem after which a stream counts as exhausted


class VerifierTimeout(Exception):
    pass


def time_limit(seconds: float) -> AbstractContextManager[None]:
    """SIGALRM-based limit in the main thread (nested inside a cell's limit: harness/core/timeouts.py);
    elsewhere (signals unavailable) the input caps in answer.py bound the work instead."""
    return raise_after(seconds, VerifierTimeout)


@dataclass
class PromptedTask:
    """Base of every task. Subclasses set `name` and `instruction`, implement `draw` and `score`,
    and may override `demo_reply`, `fallback`, `chance_baseline` and `describe`."""

    name: ClassVar[str]
    instruction: ClassVar[str]  # system instruction; must ask for a final "Answer: ..." line
    multiline_answer: ClassVar[bool] = False  # the answer spans the lines after "Answer:"

    feedback: Literal["binary", "rich"] = knob(
        "binary", "what a method may show: binary (Correct./Incorrect.) or rich (also the expected answer)")
    few_shot: int = knob(2, "demos in every prompt (fixed seed, never in train or test)", ge=0)
    max_tokens: int = knob(128, "completion cap in tokens", ge=1)
    partial_credit: bool = knob(False, "keep partial credit in `reward` (`passed` is always strict)")
    verify_timeout_s: float = knob(2.0, "wall-clock limit on scoring one completion (a timeout scores 0 and is "
                                        "recorded: attempts `verify_timed_out`, summary `verify_timeouts`); below "
                                        "0.1 s a correct answer may not verify", ge=0.1, le=3600)

    def __post_init__(self) -> None:
        check_knobs(self, "task.")
        self._demos: list[Problem] | None = None

    # ---- problems ----
    def draw(self, seed: int, size: int) -> Iterable[Problem]:
        """The first `size` problems of the deterministic stream `seed` (duplicates allowed; read
        only as far as needed)."""
        raise NotImplementedError

    def _generate(self, seed: int, n: int, exclude: set[str]) -> list[Problem]:
        """The first `n` distinct problems of stream `seed`, or ValueError when the stream runs dry:
        4n + 50 draws, or STALE_DRAWS draws in a row that bring nothing new (so asking a small
        generator for 100,000 problems fails in seconds, not after 400,000 draws)."""
        size = max(4 * n + 50, 100)
        out, seen, drawn, stale = [], set(exclude), 0, 0
        for p in self.draw(seed, size):
            drawn += 1
            stale = stale + 1 if p.id in seen else 0
            if stale >= STALE_DRAWS:
                break
            if p.id not in seen:
                seen.add(p.id)
                out.append(p)
                if len(out) == n:
                    return out
        raise ValueError(f"{self.name}: only {len(out)} distinct problems in {drawn} draws "
                         f"(asked for {n}); the generator settings have too few distinct problems")

    def demos(self) -> list[Problem]:
        if self._demos is None:
            self._demos = self._generate(SEED_BASE["demo"], self.few_shot, set()) if self.few_shot else []
        return self._demos

    def problems(self, split: str, n: int, seed: int) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; valid: train, test")
        if not 0 <= seed < 999:
            raise ValueError(f"seed {seed} out of range; valid: 0..998")
        return self._generate(SEED_BASE[split] + seed * SEED_STRIDE, n, {d.id for d in self.demos()})

    # ---- prompting ----
    def demo_reply(self, problem: Problem) -> str:
        return f"Answer: {problem.answer}"

    def prompt(self, problem: Problem, guidance: str = "", instruction: str | None = None) -> list[Message]:
        system = instruction if instruction is not None else self.instruction
        if guidance:
            system = f"{system}\n\n{guidance}"
        msgs: list[Message] = [{"role": "system", "content": system}]
        for d in self.demos():
            msgs += [{"role": "user", "content": d.question},
                     {"role": "assistant", "content": self.demo_reply(d)}]
        msgs.append({"role": "user", "content": problem.question})
        return msgs

    # ---- verification ----
    def fallback(self, text: str) -> str | None:
        """Answer to use when the completion has no `Answer:` line (None = unparsed)."""
        return None

    def extract(self, completion: str) -> str | None:
        return extract_answer(completion, self.fallback, multiline=self.multiline_answer)

    def score(self, parsed: str, problem: Problem) -> float:
        """Score in [0, 1] of a parsed answer; 1.0 means correct."""
        raise NotImplementedError

    def verify(self, problem: Problem, completion: str, truncated: bool = False) -> Verdict:
        parsed: str | None = None
        timed_out = False
        try:
            with time_limit(self.verify_timeout_s):
                parsed = self.extract(completion)
                score = self.score(parsed, problem) if parsed is not None else 0.0
            note = "" if parsed is not None else " No final 'Answer: ...' line was found."
        except VerifierTimeout:
            score, note, timed_out = 0.0, " The answer could not be checked in time.", True
        except Exception:  # hostile or malformed text: never propagate
            score, note = 0.0, " The answer could not be parsed."
        passed = score == 1.0
        reward = score if self.partial_credit else float(passed)
        if passed:
            text = "Correct."
        elif self.feedback == "rich":
            text = f"Incorrect. Your answer: {parsed!r}. Expected: {problem.answer!r}.{note}"
        else:
            text = f"Incorrect.{note}"
        return Verdict(reward=reward, passed=passed, parsed=parsed, feedback=text, truncated=truncated,
                       timed_out=timed_out)

    # ---- reporting ----
    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        """Accuracy of always giving the most common test answer (report it beside Pass@1)."""
        if not problems:
            return {}
        top = Counter(p.answer for p in problems).most_common(1)[0][1]
        return {"majority_answer": top / len(problems)}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "instruction": self.instruction, "few_shot": self.few_shot,
                "demo_ids": [d.id for d in self.demos()], "feedback": self.feedback,
                "max_tokens": self.max_tokens, "partial_credit": self.partial_credit}
