"""Any OpenAI-compatible chat endpoint (vLLM server, llama.cpp server, hosted APIs).

Requests are in flight `max_concurrency` at a time (a thread pool over the client, which is
thread-safe), so a batch of prompts costs about the slowest request, not their sum; results keep
the request order. Transient errors (connection, 408/409/429/5xx) are retried by the `openai`
client itself (exponential backoff with jitter, honouring Retry-After). Token counts come from
the response's `usage` (the provider's own count); `count_tokens` (prompt size, e.g. the context a
method adds) uses the model's tokenizer when `tokenizer` names one, else a whitespace estimate.
Ctrl-C (or SIGTERM) while requests are out ends the call at once: queued requests are never sent,
the client is closed (no retry reaches the endpoint) and the daemon threads still blocked on a
stalled server are abandoned, so the cell is marked and the process exits within seconds.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_backend
from harness.core.types import Generation, GenerationRequest, Message, chat_token_count, spread_seed

CHARS_PER_TOKEN = 4  # our estimate where no tokenizer is configured
MAX_CHARS_PER_TOKEN = 32  # a reported count implying longer tokens than this is recounted


@register_backend("openai")
@dataclass
class OpenAIBackend:
    model: str  # model name the endpoint serves
    base_url: str | None = knob(None, "OpenAI-compatible endpoint")
    api_key_env: str = knob("OPENAI_API_KEY", "environment variable holding the key ('EMPTY' is sent if unset)")
    max_retries: int = knob(
        6, "the openai client's own retries (backoff with jitter) on 408/409/429/5xx/connection errors", ge=0,
        le=100)
    timeout_s: float = knob(600.0, "per-request HTTP timeout (32k-token replies take minutes)", gt=0,
                             le=86_400)
    reasoning_effort: str | None = knob(None, "passed through for reasoning models (e.g. gpt-oss: high)")
    max_concurrency: int = knob(32, "requests in flight at once (1 = one at a time)", ge=1)
    tokenizer: str | None = knob(None, "HF id or local directory of the served model's tokenizer, for "
                                       "count_tokens; null = a whitespace estimate")
    # where and how the endpoint is reached, not what it computes: not part of the cell id
    serving: ClassVar[tuple[str, ...]] = ("base_url", "api_key_env", "max_retries", "timeout_s", "max_concurrency")

    @property
    def engine(self) -> str:
        return f"openai-endpoint:{self.model}"

    def __post_init__(self) -> None:
        self.client = self._new_client()
        self._tokenizer: Any = None
        if self.tokenizer:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)

    def _new_client(self) -> Any:
        from openai import OpenAI

        return OpenAI(base_url=self.base_url, api_key=os.environ.get(self.api_key_env, "EMPTY"),
                      timeout=self.timeout_s, max_retries=self.max_retries)

    def count_tokens(self, messages: list[Message]) -> int:
        if self._tokenizer is not None:
            return chat_token_count(self._tokenizer, messages)
        return sum(len(m["content"].split()) for m in messages)

    def _call(self, req: GenerationRequest) -> Any:
        p = req.params
        kwargs: dict[str, Any] = dict(model=self.model, messages=list(req.messages), n=p.n,
                                      temperature=p.temperature, top_p=p.top_p,
                                      max_tokens=p.max_tokens, seed=spread_seed(p.seed))
        if p.stop:
            kwargs["stop"] = list(p.stop)
        if self.reasoning_effort:
            kwargs["reasoning_effort"] = self.reasoning_effort
        return self.client.chat.completions.create(**kwargs)

    def _text_tokens(self, text: str) -> list[Any]:
        """The completion's tokens by our own count: the tokenizer's ids, else ~4 characters each."""
        if self._tokenizer is not None:
            return list(self._tokenizer.encode(text, add_special_tokens=False))
        return [text[i:i + CHARS_PER_TOKEN] for i in range(0, len(text), CHARS_PER_TOKEN)]

    def _one(self, req: GenerationRequest) -> list[Generation]:
        """One request's choices, the endpoint's reply checked rather than taken at its word: a
        completion well over `max_tokens` (by the tokenizer, or longer than `max_tokens` tokens of
        MAX_CHARS_PER_TOKEN characters) is cut (finish `length`), and token counts that are negative or
        implausible for the text are recounted here."""
        start = time.perf_counter()
        resp = self._call(req)
        latency = (time.perf_counter() - start) / max(1, req.params.n)
        usage = getattr(resp, "usage", None)
        reported_prompt = getattr(usage, "prompt_tokens", None)
        prompt_tokens = (reported_prompt if isinstance(reported_prompt, int) and reported_prompt > 0
                         else self.count_tokens(list(req.messages)))
        reported = getattr(usage, "completion_tokens", None)
        share = reported // max(1, len(resp.choices)) if isinstance(reported, int) and reported >= 0 else None
        gens = []
        for choice in resp.choices:
            text, finish = choice.message.content or "", choice.finish_reason or "stop"
            tokens, cap = self._text_tokens(text), req.params.max_tokens
            if self._tokenizer is not None and len(tokens) > cap + max(8, cap // 10):  # the cap is ours to
                # enforce; the slack: re-tokenizing decoded text may differ from the server's ids by a token or two
                tokens, finish = tokens[:cap], "length"
                text = self._tokenizer.decode(tokens)
            elif self._tokenizer is None and len(text) > cap * MAX_CHARS_PER_TOKEN:  # longer than cap tokens can be
                text, finish = text[:cap * MAX_CHARS_PER_TOKEN], "length"
                tokens = self._text_tokens(text)
            # usage.completion_tokens covers all n choices: split evenly where it is plausible
            plausible = share is not None and share * MAX_CHARS_PER_TOKEN >= len(text) and share <= len(text) + 1
            ctoks = min(share, req.params.max_tokens) if plausible and share is not None else len(tokens)
            gens.append(Generation(text=text, prompt_tokens=prompt_tokens, completion_tokens=ctoks,
                                   finish_reason=finish, latency_s=latency))
        if len(gens) != req.params.n:
            raise RuntimeError(f"endpoint returned {len(gens)} choices for n={req.params.n}")
        return gens

    def generate(self, requests: list[GenerationRequest]) -> list[list[Generation]]:
        """Up to `max_concurrency` requests in flight on daemon threads, results in request order;
        the first error (or an interrupt here) stops the rest, see `_abandon`."""
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(requests)):
            todo.put(i)
        finished: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        stop = threading.Event()

        def work() -> None:
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    finished.put((i, self._one(requests[i])))
                except BaseException as exc:  # handed to the caller's thread
                    finished.put((i, exc))

        for _ in range(min(self.max_concurrency, len(requests))):
            threading.Thread(target=work, daemon=True, name="openai-request").start()
        results: list[Any] = [None] * len(requests)
        try:
            for _ in requests:
                i, result = finished.get()
                if isinstance(result, BaseException):
                    raise result
                results[i] = result
        except BaseException:
            stop.set()
            self._abandon()
            raise
        return results

    def _abandon(self) -> None:
        """Close the client under the threads still out: what they send or retry next fails at
        once instead of reaching the endpoint; the next call gets a fresh client."""
        client, self.client = self.client, self._new_client()
        client.close()
