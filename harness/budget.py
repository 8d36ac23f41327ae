"""The rollout budget meter (DESIGN.md §3 "Budget").

A *rollout* is one policy generation on a training problem whose output the task verifier scores.
Aux calls (reflections, insight writing, proposals) cost tokens, not rollouts. The meter refuses
the request that would push the rollout count past the budget: it raises before generating,
so a cell can never overrun. Every call, rollout or not, is logged as an `AttemptRecord`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


class BudgetExhausted(RuntimeError):
    """Raised when a rollout request would exceed the cell's budget. Methods catch it to stop learning."""


@dataclass
class AttemptRecord:
    """One generation, as it lands in attempts.parquet (cell-level columns are added on write)."""

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
