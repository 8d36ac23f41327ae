"""The rollout budget meter (DESIGN.md §3 "Budget").

A *rollout* is one policy generation on a training problem whose output the task verifier scores.
Aux calls (reflections, insight writing, proposals) cost tokens, not rollouts. The meter refuses
the request that would push the rollout count past the budget: it raises before generating,
so a cell can never overrun. Every call, rollout or not, is logged as an `AttemptRecord`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.core.types import Generation, GenerationRequest, Verdict


class BudgetExhausted(RuntimeError):
    """Raised when a rollout request would exceed the cell's budget. Methods catch it to stop learning."""


@dataclass
class AttemptRecord:
    """One generation, as it lands in attempts.parquet (cell-level columns are added on write).

    Besides the outcome it keeps what the model saw: the exact messages (`prompt`, JSON), the
    sampling settings, the ids of the memories/episodes/insights injected (`context_ids`), and
    `step`: the learn-phase call (iteration) that produced it, or the cell's evaluation index for
    eval rows. (phase, step, problem_id, sample_idx, tag) is unique within a cell.
    """

    phase: str  # "learn" | "eval"
    checkpoint: int  # rollouts used when the evaluated state was frozen (-1 for learn-phase rows)
    role: str  # "policy" | "aux"
    counted_rollout: bool
    problem_id: str
    sample_idx: int
    prompt_tokens: int
    completion_tokens: int
    reward: float | None
    passed: bool | None
    finish_reason: str
    latency_s: float
    cached: bool
    completion: str
    parsed: str | None = None
    tag: str = ""  # free label a method may set (e.g. "baseline", "admission", "attempt2", "greedy")
    step: int = 0
    prompt: str = ""  # JSON list of the messages sent
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    context_ids: list[str] = field(default_factory=list)
    verify_timed_out: bool = False  # the verifier ran out of time: `passed` is False, but unknown

    @classmethod
    def of(cls, request: GenerationRequest, generation: Generation, verdict: Verdict | None, *,
           phase: str, checkpoint: int, step: int, problem_id: str, sample_idx: int, counted: bool = False,
           tag: str = "", context_ids: list[str] | tuple[str, ...] = ()) -> AttemptRecord:
        """The one place a record is built: a request, what it generated and (for a scored policy
        generation) the verifier's verdict; aux generations have no verdict."""
        p = request.params
        return cls(
            phase=phase, checkpoint=checkpoint, role="aux" if verdict is None else "policy",
            counted_rollout=counted, problem_id=problem_id, sample_idx=sample_idx,
            prompt_tokens=generation.prompt_tokens, completion_tokens=generation.completion_tokens,
            reward=None if verdict is None else verdict.reward, passed=None if verdict is None else verdict.passed,
            finish_reason=generation.finish_reason, latency_s=generation.latency_s, cached=generation.cached,
            completion=generation.text, parsed=None if verdict is None else verdict.parsed, tag=tag, step=step,
            prompt=json.dumps(list(request.messages), ensure_ascii=False), temperature=p.temperature,
            top_p=p.top_p, max_tokens=p.max_tokens, context_ids=list(context_ids),
            verify_timed_out=verdict is not None and verdict.timed_out)

    def as_row(self) -> dict:
        return asdict(self)


@dataclass
class BudgetMeter:
    """Counts rollouts against a hard limit and tokens by role."""

    budget: int
    rollouts_used: int = 0
    policy_tokens: int = 0
    aux_tokens: int = 0

    def __post_init__(self) -> None:
        if self.budget < 0:
            raise ValueError(f"budget must be >= 0, got {self.budget}")

    @property
    def remaining(self) -> int:
        return self.budget - self.rollouts_used

    def reserve(self, n: int) -> None:
        """Claim `n` rollouts or raise without claiming any."""
        if n < 0:
            raise ValueError(f"cannot reserve a negative number of rollouts ({n})")
        if self.rollouts_used + n > self.budget:
            raise BudgetExhausted(
                f"request for {n} rollout(s) refused: {self.rollouts_used}/{self.budget} used")
        self.rollouts_used += n

    def refund(self, n: int) -> None:
        """Return a reservation whose generations never happened (the backend raised)."""
        if not 0 <= n <= self.rollouts_used:
            raise ValueError(f"cannot refund {n} of {self.rollouts_used} rollouts")
        self.rollouts_used -= n

    def add_tokens(self, role: str, tokens: int) -> None:
        if role == "policy":
            self.policy_tokens += tokens
        else:
            self.aux_tokens += tokens
