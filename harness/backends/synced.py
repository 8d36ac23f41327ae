"""One engine for every generation of a weight-training cell: the trainer's weights, synced in place.

A weight-training cell (GRPO, RRR, LTE) trains in transformers + PEFT (the `trainer`: log-probs
and the backward pass) while every generation, its training rollouts, aux calls and evaluation,
runs on the sweep's generating engine (vLLM), the same engine and dtype as every other method of
the sweep. Before each generation the trainer's current weights go into the engine if they changed
since the last sync (so once per optimizer step), as TRL's vLLM colocate mode does
(`trl/generation/vllm_generation.py`, `VLLMGeneration._iter_named_params` and `sync_weights`):
a LoRA adapter is merged into the copy, PEFT's names are mapped back to the checkpoint's, and the
engine's prefix cache is reset. No engine restart, no adapter files and no vLLM LoRA kernels (8x
slower on CPU). `restore` puts the base weights back (the engine reloads them from disk) before the
next cell, so no cell sees another cell's training.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol

from harness.core.types import Generation, GenerationRequest, Message, TrainableBackend


class WeightLoadingEngine(Protocol):
    """A generating backend whose weights can be replaced in place (harness/backends/vllm_offline.py)."""

    engine: str

    def generate(self, requests: list[GenerationRequest]) -> list[list[Generation]]: ...
    def count_tokens(self, messages: list[Message]) -> int: ...
    def load_weights(self, named_tensors: Any = None) -> None: ...


def checkpoint_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """The model's weights under the checkpoint's (HF) names, a LoRA adapter merged in (TRL's
    `_iter_named_params`, without the distributed gathers). The merged weight is computed as a new
    tensor, W + ΔW from PEFT's `get_delta_weight`, rather than by PEFT's in-place merge, copy and
    unmerge: one pass over each adapted weight instead of three, and the trainer's weights are never
    touched (so the engine may keep a yielded tensor: vLLM's layer-wise reload buffers a layer's)."""
    peft_prefix = getattr(model, "prefix", None) if hasattr(model, "peft_config") else None
    if peft_prefix is None:
        for name, param in model.named_parameters():
            yield name, param.data
        return
    import torch

    adapters = list(model.active_adapters)
    adapted = {f"{name}.base_layer.weight": module for name, module in model.named_modules()
               if hasattr(module, "get_delta_weight") and any(a in getattr(module, "lora_A", {}) for a in adapters)}
    with torch.no_grad():
        for peft_name, param in model.named_parameters():
            name = peft_name.removeprefix("base_model.model.").replace(".base_layer", "")
            if peft_prefix in name or "original_module" in name:
                continue  # the adapter itself: merged into the base weights below
            weight = param.data
            if peft_name in adapted:
                module = adapted[peft_name]
                weight = weight + sum(module.get_delta_weight(a) for a in adapters if a in module.lora_A)
            yield name.replace("modules_to_save.default.", ""), weight


def weights_fingerprint(model: Any) -> tuple[int, tuple[float, ...]]:
    """Changes whenever an optimizer step changes the weights: the model object (merging LoRA
    builds a new one) and a sum over the trainable tensors (the adapter; every weight in a full
    fine-tune)."""
    trained = [p for p in model.parameters() if p.requires_grad]
    return id(model), tuple(float(p.detach().double().sum()) for p in trained)


@dataclass
class SyncedPolicy:
    """A trainable backend whose generations come from `generator` carrying `trainer`'s weights."""

    name: ClassVar[str] = "synced"
    generator: WeightLoadingEngine
    trainer: TrainableBackend
    syncs: int = 0  # weight copies into the engine so far (tests and logs)
    sampler_logprobs: bool = False  # ask the engine for each sampled token's log-prob (the IS correction)
    _synced: tuple[int, tuple[float, ...]] | None = field(default=None, repr=False)

    @property
    def engine(self) -> str:
        return self.generator.engine

    @property
    def model(self) -> Any:
        return self.trainer.model

    @model.setter
    def model(self, value: Any) -> None:
        self.trainer.model = value

    @property
    def tokenizer(self) -> Any:
        return self.trainer.tokenizer

    def count_tokens(self, messages: list[Message]) -> int:
        return self.generator.count_tokens(messages)

    def generate(self, requests: list[GenerationRequest]) -> list[list[Generation]]:
        self.sync()
        if self.sampler_logprobs:
            requests = [replace(r, params=replace(r.params, logprobs=True)) for r in requests]
        return self.generator.generate(requests)

    def numerics_match(self) -> bool:
        """Whether the engine samples from the distribution the trainer scores, up to float noise:
        both in float32 (vLLM and transformers then give the same greedy text, README 'Engine parity')."""
        import torch

        return self.engine.endswith("/float32") and next(self.trainer.model.parameters()).dtype == torch.float32

    def sync(self) -> None:
        """Copy the trainer's weights into the engine if they changed since the last copy. Before
        the first optimizer step they are the base weights the engine already holds."""
        state = weights_fingerprint(self.trainer.model)
        if self._synced is None:
            self._synced = state
        if state != self._synced:
            self.generator.load_weights(checkpoint_weights(self.trainer.model))
            self._synced, self.syncs = state, self.syncs + 1

    def restore(self) -> None:
        """The engine back on its own (base) weights, if any sync changed them."""
        if self.syncs:
            self.generator.load_weights(None)
