"""vLLM offline generation (`LLM.generate`) for GPU machines; install with the `gpu` extra.

Token counts come from the returned token ids. For reproducibility vLLM needs a fixed per-request
seed (set from SamplingParams.seed) and the same GPU and version; the cell records both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from harness.knobs import knob
from harness.registry import register_backend
from harness.types import Generation, GenerationRequest, Message


@register_backend("vllm")
@dataclass
class VLLMBackend:
    path: str  # HF id or local directory of the model
    dtype: str = knob("auto", "weights dtype on the GPU")
    gpu_memory_utilization: float = knob(0.85, "leave headroom if a trainer shares the GPU")
    max_model_len: int | None = knob(None, "context length cap in tokens")
    tensor_parallel_size: int = knob(1, "GPUs one model is split across")
    enforce_eager: bool = knob(False, "skip CUDA graphs (faster start, slower decode)")

    def __post_init__(self) -> None:
        from vllm import LLM

        self.llm = LLM(model=self.path, dtype=self.dtype, tensor_parallel_size=self.tensor_parallel_size,
                       gpu_memory_utilization=self.gpu_memory_utilization,
                       max_model_len=self.max_model_len, enforce_eager=self.enforce_eager)
        self.tokenizer = self.llm.get_tokenizer()

    def count_tokens(self, messages: list[Message]) -> int:
        return len(self.tokenizer.apply_chat_template(list(messages), add_generation_prompt=True))

    def generate(self, requests: list[GenerationRequest]) -> list[list[Generation]]:
        from vllm import SamplingParams as VSP

        if not requests:
            return []
        params = [VSP(n=r.params.n, temperature=r.params.temperature, top_p=r.params.top_p,
                      max_tokens=r.params.max_tokens, stop=list(r.params.stop) or None,
                      seed=r.params.seed) for r in requests]
        start = time.perf_counter()
        outs = self.llm.chat([list(r.messages) for r in requests], params, use_tqdm=False)
        latency = (time.perf_counter() - start) / sum(r.params.n for r in requests)
        return [[Generation(text=c.text, prompt_tokens=len(o.prompt_token_ids),
                            completion_tokens=len(c.token_ids),
                            finish_reason=c.finish_reason or "stop", latency_s=latency,
                            token_ids=tuple(c.token_ids)) for c in o.outputs] for o in outs]
