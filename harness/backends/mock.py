"""Deterministic mock LLM for offline tests (in the spirit of inspect_ai's `mockllm`).

For a request that carries `oracle_answer` (a policy call on a task problem) the mock answers
correctly with probability

    p = clip(base_accuracy + sum(boost for phrase, boost in boosts.items() if phrase in prompt), 0, 1)

so a test can prove that a method which puts a rewarded phrase into the prompt learns. The draw is
a pure function of (seed, prompt text, request seed, sample index): the same call gives the same
text, and a correct answer is written as the task's final `Answer: ...` line.
Requests without an oracle (aux calls: reflections, proposals) get `aux_reply`, with `{i}` replaced
by a per-call counter so successive proposals differ.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from harness.core.knobs import knob
from harness.core.registry import register_backend
from harness.core.types import Generation, GenerationRequest, Message


def _prompt_text(messages: tuple[Message, ...] | list[Message]) -> str:
    return "\n".join(m["content"] for m in messages)


def _uniform(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@register_backend("mock")
@dataclass
class MockBackend:
    base_accuracy: float = knob(0.3, "P(correct answer) with no boost phrase in the prompt", ge=0, le=1)
    boosts: dict[str, float] = field(default_factory=dict)  # phrase -> added P(correct)
    wrong_answer: str = knob("I am not sure.", "what a wrong policy reply says instead of the answer")
    aux_reply: str = knob("Check each step carefully. (proposal {i})", "reply to calls without an oracle")
    latency_s: float = knob(0.0, "simulated seconds per request", ge=0, le=60)
    seed: int = knob(0, "mock randomness seed", ge=0)
    _aux_calls: int = 0

    engine = "mock"

    def reset(self) -> None:
        """At a cell's start: the aux-call counter starts again, so a cell's replies do not depend on
        the cells this backend served before it."""
        self._aux_calls = 0

    def p_correct(self, messages: tuple[Message, ...] | list[Message]) -> float:
        text = _prompt_text(messages)
        p = self.base_accuracy + sum(b for phrase, b in self.boosts.items() if phrase in text)
        return min(1.0, max(0.0, p))

    def count_tokens(self, messages: list[Message]) -> int:
        return len(_prompt_text(messages).split())

    def generate(self, requests: list[GenerationRequest]) -> list[list[Generation]]:
        out: list[list[Generation]] = []
        for req in requests:
            start = time.perf_counter()
            if self.latency_s:
                time.sleep(self.latency_s)
            text_in = _prompt_text(req.messages)
            gens = []
            for i in range(req.params.n):
                if req.oracle_answer is None:
                    self._aux_calls += 1
                    text = self.aux_reply.replace("{i}", str(self._aux_calls))
                else:
                    # greedy decoding is one fixed answer per prompt; sampling varies with seed and index
                    draw = (req.params.seed, i) if req.params.temperature > 0 else ("greedy",)
                    u = _uniform(self.seed, text_in, *draw)
                    ok = u < self.p_correct(req.messages)
                    text = f"Answer: {req.oracle_answer}" if ok else f"Answer: {self.wrong_answer}"
                words = text.split()
                truncated = len(words) > req.params.max_tokens
                if truncated:
                    text = " ".join(words[: req.params.max_tokens])
                gens.append(Generation(
                    text=text, prompt_tokens=len(text_in.split()),
                    completion_tokens=min(len(words), req.params.max_tokens),
                    finish_reason="length" if truncated else "stop",
                    latency_s=(time.perf_counter() - start) / req.params.n))
            out.append(gens)
        return out
