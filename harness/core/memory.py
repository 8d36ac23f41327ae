"""Plan-time GPU memory check of a weight-training cell's trainer (issue 32: defaults that fit).

A cell that trains weights on a GPU holds the trainer (transformers + PEFT) beside its rollout
engine: a vLLM engine claims `model.gpu_memory_utilization` of the GPU and the trainer gets the
rest; an hf model that trains itself has the GPUs it reserves. Estimate of the trainer, in bytes,
bf16 weights and gradient checkpointing (the GPU default, methods/common/policy_training.py):

    weights      params x 2
    trainable    LoRA: rank x layers x (sum of in + out over q, k, v, o, gate, up, down) params,
                 full fine-tune: params; x 16 (bf16 weight, fp32 grad, AdamW m and v, fp32 copy)
    activations  tokens per pass x layers x hidden x 2 (the hidden state kept at each checkpoint)
                 + tokens per pass x one layer's activations, recomputed in backward: 2 B x (8 hidden
                 + 4 intermediate) a token (attention's input, q, k, v, output and norms; a SwiGLU
                 MLP's input, gate, up and product; Korthikanti et al. 2022's 34 x hidden for a 4 x
                 hidden MLP with flash attention). Without checkpointing, every layer's.
    logits       not counted: TRL 1.16 projects the LM head in tiles (trl.trainer.utils.add_fused_lm_head)
    generation   an hf model that generates its own rollouts keeps their KV cache: batch_size x tokens
                 per rollout x layers x kv x 4 B (K and V in bf16), counted as if held during training
                 (the caching allocator keeps what generation freed)
    overhead     OVERHEAD_GIB for the CUDA context, NCCL and the allocator's fragmentation

tokens per pass = rollouts per pass (`method.micro_batch_size`, or a whole step) x (completion cap
+ PROMPT_TOKENS). The check reads the model's `shape` (params, layers, hidden, intermediate, kv
width: its config.json) and the GPU size `resources.gpu_memory_gib` (default 80, an H100); a model
without `shape` is not checked. It also refuses a fractional GPU reservation whose vLLM engine
claims more than that fraction: Ray packs 1 / num_gpus such cells onto one GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

GIB = 2**30
PROMPT_TOKENS = 2048  # prompt allowance per rollout (some methods put an earlier attempt or a hint in it)
OVERHEAD_GIB = 2.0
DEFAULT_GPU_GIB = 80.0
DEFAULT_ENGINE_SHARE = 0.85  # vllm_offline.VLLMBackend.gpu_memory_utilization's default


@dataclass(frozen=True)
class ModelShape:
    """A model's size, as its config.json gives it (`model.shape` in conf/model/*.yaml)."""

    params: float
    layers: int
    hidden: int
    intermediate: int
    kv: int  # width of the k and v projections (kv heads x head dim)
    q: int = 0  # width of the q projection (0 = hidden)

    def lora_params(self, rank: int) -> float:
        q = self.q or self.hidden
        per_layer = (self.hidden + q) * 2 + (self.hidden + self.kv) * 2 + (self.hidden + self.intermediate) * 3
        return float(rank * self.layers * per_layer)


@dataclass(frozen=True)
class TrainingPass:
    """What one forward/backward pass of a weight-training method holds (MethodBase.training_pass)."""

    rollouts: int
    tokens_per_rollout: int
    lora_rank: int  # 0 = full fine-tune
    checkpointing: bool = True
    generation_batch: int = 0  # sequences an hf model generating its own rollouts holds a KV cache for


def trainer_gib(shape: ModelShape, p: TrainingPass) -> float:
    """The estimate written out in the module docstring, in GiB."""
    weights = shape.params * 2
    trainable = (shape.lora_params(p.lora_rank) if p.lora_rank else shape.params) * 16
    tokens = p.rollouts * p.tokens_per_rollout
    layer = tokens * 2 * (8 * shape.hidden + 4 * shape.intermediate)
    kept = tokens * shape.layers * shape.hidden * 2  # a hidden state at every checkpoint
    activations = kept + layer if p.checkpointing else layer * shape.layers
    generation = p.generation_batch * p.tokens_per_rollout * shape.layers * shape.kv * 4
    return (weights + trainable + activations + generation) / GIB + OVERHEAD_GIB


def trainer_room_gib(model: dict[str, Any]) -> float:
    """GPU memory the trainer of a cell whose model config is `model` may use."""
    resources = model.get("resources") or {}
    gpus = float(resources.get("num_gpus", 0) or 0)
    size = float(resources.get("gpu_memory_gib") or DEFAULT_GPU_GIB)
    if model.get("backend") == "vllm":  # the engine keeps its share of the first GPU
        return size * (min(gpus, 1.0) - float(model.get("gpu_memory_utilization", DEFAULT_ENGINE_SHARE)))
    return size * gpus  # an hf model spreads over every GPU it reserves (device_map)


def check_fractional_share(model: dict[str, Any], key: str = "model") -> None:
    """Ray packs 1 / num_gpus cells of a fractional reservation onto one GPU: each vLLM engine must
    claim at most its fraction, or the second engine on the GPU fails vLLM's start-up memory check."""
    gpus = float((model.get("resources") or {}).get("num_gpus", 0) or 0)
    share = float(model.get("gpu_memory_utilization", DEFAULT_ENGINE_SHARE))
    if model.get("backend") == "vllm" and 0 < gpus < 1 and share > gpus:
        raise ValueError(f"{key}.gpu_memory_utilization={share:g} > {key}.resources.num_gpus={gpus:g}: "
                         f"{math.floor(1 / gpus)} such cells share one GPU; valid: gpu_memory_utilization <= {gpus:g}")


def check_trainer_memory(model: dict[str, Any], need: TrainingPass | None) -> None:
    """Refuse, in one line, a training cell whose trainer does not fit beside its engine on the GPU."""
    if need is None:
        return
    gpus = float((model.get("resources") or {}).get("num_gpus", 0) or 0)
    shape_cfg = model.get("shape") or (model.get("trainer") or {}).get("shape")
    if gpus <= 0 or not shape_cfg:
        return  # trains on the CPU (host memory), or a model whose size is not written down
    engine = model.get("backend") == "vllm"
    if not engine and model.get("backend") == "hf":
        need = replace(need, generation_batch=int(model.get("batch_size") or 0))
    need_gib = trainer_gib(ModelShape(**shape_cfg), need)
    room = trainer_room_gib(model)
    if need_gib > room:
        share = float(model.get("gpu_memory_utilization", DEFAULT_ENGINE_SHARE))
        where, fix = ((f" beside a vLLM engine at model.gpu_memory_utilization={share:g}",
                       "a lower model.gpu_memory_utilization") if engine else
                      ("", "a smaller model.batch_size or more model.resources.num_gpus"))
        raise ValueError(
            f"the trainer needs ~{need_gib:.0f} GiB ({need.rollouts} rollouts x {need.tokens_per_rollout} tokens "
            f"per pass) but has {room:.0f} GiB{where}; valid: a smaller method.micro_batch_size or {fix} "
            f"(harness/core/memory.py)")
