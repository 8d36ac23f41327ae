"""Core data contracts shared by the engine, tasks, methods and backends (DESIGN.md §3).

Everything here is a small dataclass or a Protocol; nothing names a concrete task or method.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


def content_hash(obj: Any, length: int = 16) -> str:
    """Stable short hash of any JSON-serialisable object (sorted keys; -0.0 is 0.0)."""
    blob = json.dumps(_signless_zero(obj), sort_keys=True, default=str, ensure_ascii=True).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def _signless_zero(obj: Any) -> Any:
    if isinstance(obj, float) and obj == 0.0:
        return 0.0
    if isinstance(obj, dict):
        return {k: _signless_zero(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_signless_zero(v) for v in obj]
    return obj


@dataclass(frozen=True)
class Problem:
    """One task instance. `id` is a stable hash of the content, so splits can be checked for overlap."""

    id: str
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def make(question: str, answer: str, meta: dict[str, Any] | None = None) -> Problem:
        return Problem(id=content_hash({"q": question, "a": answer}), question=question,
                       answer=answer, meta=dict(meta or {}))


@dataclass(frozen=True)
class Verdict:
    """Result of scoring one completion. `passed` is strict: only reward == 1.0 passes."""

    reward: float
    passed: bool
    parsed: str | None
    feedback: str
    truncated: bool = False
    timed_out: bool = False  # the verifier ran out of time (task.verify_timeout_s): scored 0, unknown


@dataclass(frozen=True)
class SamplingParams:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int = 0
    logprobs: bool = False  # also return each sampled token's log-prob (after temperature and top_p)


SEED_SPREAD = 0x9E3779B1  # odd, so invertible mod 2**31: distinct seeds stay distinct, neighbours land far apart


def spread_seed(seed: int) -> int:
    """The seed an engine that samples n per request gets for a request seeded `seed`. vLLM (offline
    and served) seeds the i-th of a request's n samples with seed + i (`v1/engine/parallel_sampling.py`),
    so requests seeded s and s + 1 would share n - 1 samples: eval.seed 0 and 1 at 8 samples gave a
    seed-to-seed Δ CI of ±0.01 on vLLM against ±0.03 on transformers (bench/engine_parity.py). Spread
    apart, two requests' n seeds overlap with probability ~ n / 2**31."""
    return (seed * SEED_SPREAD) % 2**31


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt plus sampling parameters; the backend returns `params.n` generations for it.

    `oracle_answer` is read only by the mock backend (so tests can script correctness);
    every real backend ignores it.
    """

    messages: tuple[Message, ...]
    params: SamplingParams = SamplingParams()
    oracle_answer: str | None = None


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length" | "error"
    latency_s: float
    token_ids: tuple[int, ...] = ()
    cached: bool = False
    # log-prob of each of token_ids under the sampling distribution, where `params.logprobs` asked
    # and the backend can tell (vLLM); empty otherwise
    token_logprobs: tuple[float, ...] = ()


@runtime_checkable
class Backend(Protocol):
    """An LLM. `generate` returns, per request, a list of `request.params.n` generations."""

    name: str

    @property
    def engine(self) -> str:
        """What generates, as every record names it: backend, version and dtype (`vllm-0.32.0/float32`)."""
        ...

    def generate(self, requests: list[GenerationRequest]) -> list[list[Generation]]: ...

    def count_tokens(self, messages: list[Message]) -> int: ...


@runtime_checkable
class TrainableBackend(Backend, Protocol):
    """A backend whose weights a method trains in place (hf): the torch model and its tokenizer."""

    model: Any
    tokenizer: Any


@runtime_checkable
class SyncedSampler(TrainableBackend, Protocol):
    """A trainable backend whose samples come from another engine that the trainer's weights are
    copied into (harness/backends/synced.py `SyncedPolicy`): methods may ask it for each sampled
    token's log-prob (`sampler_logprobs`) and whether both sides compute the same numbers."""

    sampler_logprobs: bool

    def numerics_match(self) -> bool: ...


@runtime_checkable
class Task(Protocol):
    """A family of problems with a strict 0/1 verifier (DESIGN §3)."""

    name: str

    def problems(self, split: str, n: int, seed: int) -> list[Problem]: ...

    def prompt(self, problem: Problem, guidance: str = "", instruction: str | None = None) -> list[Message]:
        """The base prompt. `guidance` (insights, memories) is added to it; `instruction` replaces
        the task's system instruction (prompt evolution)."""
        ...

    def verify(self, problem: Problem, completion: str, truncated: bool = False) -> Verdict: ...

    def describe(self) -> dict[str, Any]: ...

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]: ...


def chat_token_count(tokenizer: Any, messages: list[Message]) -> int:
    """Prompt tokens of a chat as the model sees it (template and generation prompt included).
    Renders to text first: transformers 5's `apply_chat_template(tokenize=True)` returns a
    BatchEncoding, whose len() is its number of fields, not of tokens."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False).input_ids)
