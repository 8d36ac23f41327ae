"""Shared machinery of the weight-training methods (GRPO, Reflect-Retry-Reward, LTE, grpo_extra).

Training runs in TRL's `GRPOTrainer` (trl 1.16, pinned). Every completion it learns from is
generated *through the harness* by a rollout function that TRL calls once per optimizer step
(`rollout_func`, an experimental TRL API): verifier-scored completions go through `ctx.rollouts`
(counted against the budget, recorded) and unscored ones (RRR's reflections) through `ctx.aux`.
The backend's model *is* the model being trained (LoRA-wrapped in place), so rollouts always
come from the current weights: where the sweep generates on vLLM, the backend is the harness's
`SyncedPolicy` (harness/backends/synced.py), which trains in transformers and copies the current
weights into the sweep's one vLLM engine before each step's generations. TRL receives each
prompt `group_size` times in a row, gets back token ids, the reward (forwarded as
`harness_reward` to the single reward function) and an optional `env_mask` (1 = token carries the
advantage), and computes group-normalised advantages and the loss. Per-step metrics go to
`train_log.jsonl` in the cell directory and the trained adapter (or full weights) to `policy/`;
the adapter is then merged into the backend's weights, so the trained policy evaluates as fast as
the base model.

The model must be trainable (`hf`, or a model with a trainable twin: both expose `model` and
`tokenizer`); the mock cannot train. On a GPU the same code runs on CUDA. TRL's own vLLM modes do
not apply because the harness, not TRL, generates; the weight sync follows TRL's colocate mode.

Engine calls (issue 31): a step's rollouts are one engine call (prompts_per_step x group_size = 8
at the defaults); LTE and grpo_extra add one call holding every all-fail group's extras, RRR a
second for its retries. A step needs the weights the previous one trained, so steps cannot share a
call. On this 2-core CPU the learn phases run at 4-5x the time their tokens take at the engine's
batched throughput because training, not generation, fills a step: LTE at B=500 spent 240 of its
354 s of learning in forward, backward, optimizer step and weight sync (bench/phase_times.py).

Length (~310 lines): the knobs, the TRL config, the rollout-batch builder, the callback and the
trainer loop are the one TRL integration all four methods share.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from harness.core.knobs import knob
from harness.core.memory import PROMPT_TOKENS, TrainingPass
from harness.core.types import Backend, Message, Problem, SamplingParams, SyncedSampler, Task, TrainableBackend
from harness.engine import TRAINABLE_BACKENDS, Attempt, LearnContext, Learned, MethodBase, PromptOnly

LossType = Literal["dapo", "grpo", "bnpo", "dr_grpo"]
RolloutFunc = Callable[[list[list[Message]], Any], dict[str, list]]


@dataclass
class PolicyGradientKnobs(MethodBase):
    """Knobs every GRPO-family method shares (TRL GRPOConfig names where one exists)."""

    mutates_policy: ClassVar[bool] = True
    group_size: int = knob(4, "G: completions per prompt (TRL num_generations; GEPA paper's GRPO: 12, LTE: 8); "
                              "advantages are relative to the group", ge=2)
    prompts_per_step: int = knob(2, "prompts per optimizer step; rollouts per step = prompts_per_step × G (8 "
                                    "rollouts/step ≈ 9 s/step on this CPU, feasibility.md §5)", ge=1)
    learning_rate: float = knob(1e-4, "AdamW lr (LoRA); use ~1e-5 for a full fine-tune", gt=0)
    lora_rank: int = knob(16, "LoRA rank on every linear layer; 0 = full fine-tune (then `policy/` holds all "
                              "weights: ~0.5 GB for the default model)", ge=0)
    lora_alpha: int = knob(32, "LoRA scaling numerator", ge=1)
    beta: float = knob(0.0, "KL coefficient (TRL default 0: no reference model; GEPA paper's GRPO: 0.01)", ge=0)
    epsilon: float = knob(0.2, "PPO clip range", gt=0)
    loss_type: LossType = knob("dapo", "TRL loss (dapo, TRL's default: token-level)")
    scale_rewards: Literal["group", "batch", "none"] = knob("group", "divide advantages by the reward std of "
                                                                     "the group, of the batch, or not at all")
    temperature: float | None = knob(None, "training-rollout temperature; null = the cell's learn.temperature "
                                           "(one rule for every method)", ge=0)
    top_p: float | None = knob(None, "null = the cell's learn.top_p", gt=0, le=1)
    max_completion_length: int | None = knob(None, "null = the cell's learn.max_tokens (itself defaulting to the "
                                                   "task's cap)", ge=1)
    max_steps: int | None = knob(None, "optimizer-step cap (matched steps); null = steps limited by the budget "
                                       "only (matched rollouts, the default)", ge=1)
    max_grad_norm: float = knob(1.0, "gradient clipping", gt=0)
    trl_args: dict[str, Any] = knob({}, "further TRL GRPOConfig arguments, passed through as is, e.g. "
                                        "{weight_decay: 0.01} (not those the knobs above set)")
    micro_batch_size: int | None = knob(None, "rollouts per forward/backward pass: a step's rollouts train in "
                                              "chunks of this many, gradients accumulated (TRL "
                                              "per_device_train_batch_size × gradient_accumulation_steps); must "
                                              "divide prompts_per_step × group_size; null = the whole step at once",
                                        ge=1)
    gradient_checkpointing: bool | None = knob(None, "recompute activations in the backward pass (less memory, "
                                                     "~1.3x slower steps); null = on a GPU only")
    sampler_correction: bool | None = knob(
        None, "TRL's importance-sampling correction (vllm_importance_sampling_correction; mode and cap from TRL's "
              "defaults or trl_args) for rollouts sampled on the engine the weights are synced into: each "
              "rollout's loss is weighted by π_trainer / π_sampler. null = on where the two engines' numerics "
              "differ (a GPU, where the trainer autocasts to bf16/fp16, or either side below float32); off when "
              "both run float32 on the CPU, where the sampled tokens' log-probs agree to float noise (README, "
              "'Engine parity') and the correction would cost a forward pass per step. Where it is on, training "
              "rollouts sample at top_p = 1 (`sampling`: vLLM's sampled-token log-probs are renormalized over the "
              "top-p nucleus, the trainer's are not)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.trl_args:
            check_trl_args(self.trl_args)
        if self.micro_batch_size is not None and self.rollouts_per_step % self.micro_batch_size:
            divisors = [d for d in range(1, self.rollouts_per_step + 1) if self.rollouts_per_step % d == 0]
            raise ValueError(f"method.micro_batch_size={self.micro_batch_size} does not divide prompts_per_step × "
                             f"group_size = {self.rollouts_per_step}; valid: {', '.join(map(str, divisors))}")

    @property
    def rollouts_per_step(self) -> int:
        return self.group_size * self.prompts_per_step

    def check_cell(self, budget: int, train_size: int, model: dict | None = None) -> None:
        """Plan-time: a trainable backend and a budget that pays for one step (methods with a fixed
        cost before training extend this)."""
        self.check_trainable(model)
        budget_steps_check(self, budget)

    def training_pass(self, max_tokens: int) -> TrainingPass:
        per_pass, _ = micro_batches(self.rollouts_per_step, self.micro_batch_size)
        return TrainingPass(per_pass, (self.max_completion_length or max_tokens) + PROMPT_TOKENS, self.lora_rank,
                            checkpointing=self.gradient_checkpointing is not False)

    def check_trainable(self, model: dict | None) -> None:
        """A model trains if its backend is trainable, or if it has a trainer twin (harness/runner/plan.py)."""
        backend = (model or {}).get("backend")
        if model is not None and backend not in TRAINABLE_BACKENDS and not model.get("trainer"):
            raise ValueError(f"model backend {backend!r} cannot train weights; valid: {', '.join(TRAINABLE_BACKENDS)} "
                             f"or a model with a trainable twin (e.g. model=smollm2_135m)")

    def sampling(self, ctx: LearnContext, backend: Backend | None = None) -> SamplingParams:
        """Training-rollout sampling: the method's own value where set, else the cell's learn.*.
        On a `backend` whose sampled tokens are importance-weighted (`sampler_correction` on), at
        top_p = 1: vLLM's sampled-token log-probs are renormalized over the top-p nucleus (0.32's
        `processed_logprobs`; its other modes are before temperature), the trainer's are temperature
        only, so at top_p < 1 every token's ratio is below 1 and a long rollout's weight shrinks
        with its length (trl issue 6789). Sampling the whole distribution makes both sides the same."""
        cell = ctx.sampling
        corrected = bool(getattr(backend, "sampler_logprobs", False))
        return SamplingParams(
            temperature=cell.temperature if self.temperature is None else self.temperature,
            top_p=1.0 if corrected else cell.top_p if self.top_p is None else self.top_p,
            max_tokens=self.max_completion_length or cell.max_tokens, seed=cell.seed)


def _of_kind(value: Any, kind: type) -> bool:
    """`value` as a config value of `kind` (an int is a number, a bool is only a flag)."""
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    return isinstance(value, int | float) if kind is float else isinstance(value, kind)


def check_trl_args(trl_args: dict[str, Any]) -> None:
    """Plan-time check of `method.trl_args` (passed to TRL as is): every key a GRPOConfig field, and
    every value of a number, flag or text field of that type (`learning_rate=abc` failed only when
    the cell ran). ValueError naming the entry and what is valid."""
    import dataclasses
    import enum
    import typing

    from trl import GRPOConfig

    fields = {f.name: f for f in dataclasses.fields(GRPOConfig)}
    for key, value in trl_args.items():
        if key not in fields:
            near = sorted(k for k in fields if key.split("_")[0] in k)[:8]
            raise ValueError(f"method.trl_args.{key}: not a TRL GRPOConfig argument; valid: GRPOConfig's fields"
                             + (f", e.g. {', '.join(near)}" if near else ""))
        kinds = [k for k in (typing.get_args(fields[key].type) or (fields[key].type,)) if k is not type(None)]
        simple = [k for k in kinds if k in (bool, int, float, str)]
        if value is None or len(simple) != len([k for k in kinds if not (isinstance(k, type) and
                                                                             issubclass(k, enum.Enum))]):
            continue  # a field of other types (lists, dicts, objects): TRL checks it
        if not any(_of_kind(value, k) for k in simple):
            words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
            raise ValueError(f"method.trl_args.{key}={value!r}; valid: {' or '.join(words[k] for k in simple)} "
                             f"(TRL GRPOConfig)")


def as_trainable(backend: Backend) -> TrainableBackend:
    """The backend as one whose weights can be trained, or ValueError naming the valid backends."""
    if not isinstance(backend, TrainableBackend):
        raise ValueError(f"backend {getattr(backend, 'name', backend)!r} cannot train weights; "
                         f"valid: {', '.join(TRAINABLE_BACKENDS)}")
    return backend


def attach_policy(backend: TrainableBackend, knobs: PolicyGradientKnobs) -> Any:
    """Make the backend's model trainable in place (LoRA on every linear layer unless rank 0)."""
    model = backend.model
    if knobs.lora_rank > 0 and not hasattr(model, "peft_config"):
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=knobs.lora_rank, lora_alpha=knobs.lora_alpha, lora_dropout=0.0,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
        backend.model = model
    return model


def chat_ids(tokenizer: Any, messages: list[Message], generation_prompt: bool = True) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)
    return tokenizer(text, add_special_tokens=False).input_ids


def completion_ids(tokenizer: Any, token_ids: tuple[int, ...], finish_reason: str) -> list[int]:
    """A sampled completion as TRL wants it: ended with EOS unless it was cut at the length cap
    (TRL reads a missing EOS as truncation)."""
    ids = list(token_ids)
    return ids + [tokenizer.eos_token_id] if finish_reason != "length" or not ids else ids


def groups_of(prompts: list[list[Message]], size: int) -> list[list[Message]]:
    """TRL hands each prompt `size` times in a row; return each once (checked, not assumed)."""
    if len(prompts) % size:
        raise RuntimeError(f"TRL passed {len(prompts)} prompts, not a multiple of group_size={size}")
    firsts = prompts[::size]
    for i, first in enumerate(firsts):
        if any(p != first for p in prompts[i * size:(i + 1) * size]):
            raise RuntimeError("TRL did not pass each prompt group_size times in a row")
    return firsts


def prompt_key(messages: list[Message]) -> str:
    return json.dumps([(m["role"], m["content"]) for m in messages])


@dataclass
class RolloutBatch:
    """What a TRL `rollout_func` returns, built one completion at a time: token ids, the
    verifier's reward (read back by `harness_reward`), and, where a method masks tokens out of the
    loss (RRR: the retry after the reflection), TRL's `env_mask`."""

    prompt_ids: list[list[int]] = field(default_factory=list)
    completion_ids: list[list[int]] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    env_mask: list[list[int]] = field(default_factory=list)
    logprobs: list[list[float | None]] = field(default_factory=list)

    def add(self, prompt_ids: list[int], completion_ids: list[int], reward: float,
            env_mask: list[int] | None = None, sampled_logprobs: Sequence[float] = ()) -> None:
        """`sampled_logprobs`: the sampler's log-prob of each leading completion token it sampled
        (Generation.token_logprobs); the other tokens (an appended EOS, text the method wrote) get
        None, which TRL's importance-sampling correction leaves uncorrected."""
        if len(sampled_logprobs) > len(completion_ids):
            raise ValueError(f"{len(sampled_logprobs)} sampled log-probs for {len(completion_ids)} completion tokens")
        self.prompt_ids.append(prompt_ids)
        self.completion_ids.append(completion_ids)
        self.rewards.append(reward)
        self.logprobs.append(list(sampled_logprobs) + [None] * (len(completion_ids) - len(sampled_logprobs)))
        if env_mask is not None:
            self.env_mask.append(env_mask)

    def as_trl(self) -> dict[str, list]:
        out: dict[str, list] = {"prompt_ids": self.prompt_ids, "completion_ids": self.completion_ids,
                                # the sampler's log-probs: read only by the importance-sampling correction
                                "logprobs": self.logprobs, "harness_reward": self.rewards}
        if self.env_mask:
            if len(self.env_mask) != len(self.completion_ids):
                raise ValueError("env_mask must be given for every completion of a batch or for none")
            out["env_mask"] = self.env_mask
        return out


def harness_reward(prompts: list, completions: list, harness_reward: list[float] | None = None,
                   **_: Any) -> list[float]:
    """TRL reward function: the verifier reward the rollout function already computed."""
    if harness_reward is None:
        raise RuntimeError("the rollout function did not return harness_reward")
    return list(harness_reward)


def micro_batches(rollouts: int, micro: int | None) -> tuple[int, int]:
    """(rollouts per forward/backward pass, passes per optimizer step) for a step of `rollouts` trained
    in chunks of at most `micro` (a divisor of `rollouts`: RRR's short last step may not take `micro`)."""
    size = rollouts if micro is None else math.gcd(rollouts, micro)
    return size, rollouts // size


def device_args(knobs: PolicyGradientKnobs, cuda: bool, bf16: bool) -> dict[str, bool]:
    """Trainer device and precision: bf16 where the GPU supports it, else fp16 mixed precision (V100,
    T4: TRL stops on bf16 there); gradient checkpointing on a GPU unless the knob says otherwise (on
    the CPU it slowed steps and memory is not short)."""
    checkpointing = cuda if knobs.gradient_checkpointing is None else knobs.gradient_checkpointing
    return dict(use_cpu=not cuda, bf16=cuda and bf16, fp16=cuda and not bf16, gradient_checkpointing=checkpointing)


def grpo_config(knobs: PolicyGradientKnobs, ctx: LearnContext, steps: int, output_dir: str) -> Any:
    """TRL's config; `knobs` has its sampling resolved (run_trainer), so no value is None here."""
    assert knobs.temperature is not None and knobs.top_p is not None, "resolve sampling first (run_trainer)"
    from trl import GRPOConfig

    from harness.core.devices import bf16_supported, cuda_available

    cuda = cuda_available()
    per_pass, passes = micro_batches(knobs.rollouts_per_step, knobs.micro_batch_size)
    args = dict(
        output_dir=output_dir, **device_args(knobs, cuda, cuda and bf16_supported()), num_generations=knobs.group_size,
        # one generation (the rollout function's call) per optimizer step, trained in `passes` chunks
        per_device_train_batch_size=per_pass, gradient_accumulation_steps=passes, steps_per_generation=passes,
        num_iterations=1, max_steps=steps, learning_rate=knobs.learning_rate, beta=knobs.beta,
        epsilon=knobs.epsilon, loss_type=knobs.loss_type, scale_rewards=knobs.scale_rewards,
        max_completion_length=knobs.max_completion_length, temperature=knobs.temperature,
        top_p=knobs.top_p,
        max_grad_norm=knobs.max_grad_norm,
        report_to="none", save_strategy="no", logging_steps=1,
        seed=ctx.seed, data_seed=ctx.seed, disable_tqdm=True, remove_unused_columns=False)
    clash = sorted(set(knobs.trl_args) & set(args))
    if clash:
        raise ValueError(f"method.trl_args sets {', '.join(clash)}, which the harness sets from its own knobs or "
                         f"needs fixed; set the method knob instead (--help method)")
    config = GRPOConfig(**args, **knobs.trl_args)
    if cuda and config.n_gpu > 1:  # several GPUs visible (an aux model's): train on the policy's, cuda:0,
        config._n_gpu = 1  # not nn.DataParallel over all, which TRL refuses
    return config


def make_callback(ctx: LearnContext, learned: Learned, stop_below: int) -> Any:
    """Per-step log lines (train_log.jsonl), learning-curve checkpoints, and an early stop when the
    remaining budget cannot pay for another step's base rollouts."""
    from transformers import TrainerCallback

    class HarnessCallback(TrainerCallback):
        def __init__(self) -> None:
            self.t_step = time.perf_counter()
            self.step_seconds: dict[int, float] = {}

        def on_log(self, args, state, control, logs=None, **kwargs):
            """TRL's per-step metrics (reward mean/std, loss, KL, clip ratio, the importance-sampling
            ratio where on) with the step's seconds: one ctx.log row (train_log.jsonl, W&B). The
            trainer logs a step after its on_step_end."""
            if logs and "loss" in logs:
                ctx.log(step=state.global_step, step_seconds=self.step_seconds.pop(state.global_step, float("nan")),
                        **{k: v for k, v in logs.items() if isinstance(v, int | float)})

        def on_step_begin(self, args, state, control, **kwargs):
            self.t_step = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.step_seconds[state.global_step] = time.perf_counter() - self.t_step
            ctx.checkpoint(learned)
            if ctx.meter.remaining < stop_below:
                control.should_training_stop = True

    return HarnessCallback()


@contextmanager
def score_completion_tokens_only() -> Iterator[None]:
    """TRL 1.16's fused LM head (`trl/trainer/utils.py`, `add_fused_lm_head`) projects only the
    completion tokens through the LM head on Triton devices, but every position, prompt included,
    elsewhere (fixed tile shapes for Neuron's compiler). On the CPU that is the LM head (49k
    vocabulary) over ~10x the tokens that carry a loss, forward and backward. This scores the
    completion tokens only on the CPU as well; their log-probs are the same either way
    (tests/test_grpo.py checks it). A TRL without the hook is left as it is."""
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: device.type == "cpu" or original(device)
    try:
        yield
    finally:
        trl_utils._use_triton = original


class _SyncedOnGenerate:
    """Stands in for TRL's vLLM client: TRL syncs weights before each rollout function when it
    believes vLLM generates; ours are synced by SyncedPolicy.generate, only when they changed."""

    def sync_weights(self) -> None:
        pass


@contextmanager
def sampler_correction(trainer: Any, backend: TrainableBackend, setting: bool | None) -> Iterator[bool]:
    """Turn on TRL's importance-sampling correction for rollouts sampled on another engine (see the
    `sampler_correction` knob). TRL applies it only in its own vLLM modes (`use_vllm`), which would
    also start its own engine, so it is switched on here, after construction: the engine asks for
    each sampled token's log-prob (SyncedPolicy.sampler_logprobs), the rollout functions pass them
    on (RolloutBatch), and TRL weights each rollout's loss by exp(Σ log π_trainer − log π_sampler),
    masked beyond its cap (TRL 1.16 grpo_trainer.py: `_generate_and_score_completions`,
    `_compute_loss`). Yields whether it is on; undone on exit."""
    from harness.core.devices import cuda_available

    on = isinstance(backend, SyncedSampler) and (
        setting if setting is not None else cuda_available() or not backend.numerics_match())
    if not on:
        yield False
        return
    assert isinstance(backend, SyncedSampler)
    trainer.use_vllm, trainer.vllm_importance_sampling_correction = True, True
    trainer.vllm_generation, trainer._last_loaded_step = _SyncedOnGenerate(), -1
    backend.sampler_logprobs = True
    try:
        yield True
    finally:
        backend.sampler_logprobs = False
        trainer.use_vllm = trainer.vllm_importance_sampling_correction = False


def run_trainer(knobs: PolicyGradientKnobs, learned: Learned, prompts: list[list[Message]], backend: TrainableBackend,
                ctx: LearnContext, make_rollout: Callable[[TrainableBackend], RolloutFunc],
                trainer_cls: Any = None) -> None:
    """Train on `prompts` until the budget cannot pay for another step, then save the policy to
    the cell directory. `make_rollout(backend)` builds the rollout function on the backend that
    generates with the current weights. `learned` (which renders with `backend`, i.e. the trained
    weights) is what the learning-curve checkpoints evaluate."""
    from datasets import Dataset
    from trl import GRPOTrainer

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    model = attach_policy(backend, knobs)
    if not prompts:  # e.g. RRR when no first attempt failed: nothing to train on
        return
    used = knobs.sampling(ctx)  # TRL must score log-probs at the temperature the rollouts used
    knobs_step = _with(knobs, prompts_per_step=min(knobs.prompts_per_step, len(prompts)),  # few prompts (RRR)
                       temperature=used.temperature, top_p=used.top_p, max_completion_length=used.max_tokens)
    steps = ctx.meter.remaining // knobs_step.rollouts_per_step
    if knobs.max_steps is not None:
        steps = min(steps, knobs.max_steps)
    if steps < 1:
        return
    with tempfile.TemporaryDirectory() as tmp, score_completion_tokens_only():
        callback = make_callback(ctx, learned, knobs_step.rollouts_per_step)
        trainer = (trainer_cls or GRPOTrainer)(
            model=model, reward_funcs=[harness_reward],
            args=grpo_config(knobs_step, ctx, steps, tmp),
            train_dataset=Dataset.from_list([{"prompt": list(p)} for p in prompts]),
            processing_class=backend.tokenizer, rollout_func=make_rollout(backend),
            callbacks=[callback])
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)  # its per-step dicts buried the sweep's progress; train_log has them
        with sampler_correction(trainer, backend, knobs.sampler_correction):
            trainer.train()
    model.save_pretrained(ctx.cell_dir / "policy")
    if hasattr(model, "merge_and_unload"):  # evaluate at base-model speed: unmerged LoRA is 1.4x slower on CPU
        backend.model = model.merge_and_unload()
    backend.model.eval()


def train_on_task_prompts(knobs: PolicyGradientKnobs, task: Task, train: list[Problem], backend: Backend,
                          ctx: LearnContext,
                          make_rollout: Callable[[dict[str, Problem], TrainableBackend], RolloutFunc],
                          trainer_cls: Any = None) -> PromptOnly:
    """Train on the training problems' base prompts; the Learned is that prompt on the trained weights.
    `make_rollout(problems_by_prompt, policy)` builds the rollout function."""
    prompts = [task.prompt(p) for p in train]
    learned = PromptOnly(task, backend)
    by_prompt = {prompt_key(m): p for m, p in zip(prompts, train, strict=True)}
    run_trainer(knobs, learned, prompts, as_trainable(backend), ctx,
                lambda policy: make_rollout(by_prompt, policy), trainer_cls)
    return learned


def _with(knobs: PolicyGradientKnobs, **changes: Any) -> PolicyGradientKnobs:
    from dataclasses import replace

    return replace(knobs, **changes)


def sample_groups(ctx: LearnContext, knobs: PolicyGradientKnobs, task: Task, items: list[tuple[Problem, list[Message]]],
                  backend: Backend, tag: str, n: int | None = None) -> list[list[Attempt]]:
    """`n` (default G) counted rollouts for each (problem, messages) with the training sampling."""
    return ctx.rollouts(items, n=n or knobs.group_size, params=knobs.sampling(ctx, backend), tag=tag,
                        backend=backend)


def plain_rollout_func(knobs: PolicyGradientKnobs, task: Task, problems: dict[str, Problem],
                       backend: TrainableBackend, ctx: LearnContext) -> RolloutFunc:
    """GRPO's rollout function: G counted samples per prompt, reward = the verifier's."""

    def rollout(prompts: list[list[Message]], trainer: Any) -> dict[str, list]:
        tok, batch = backend.tokenizer, RolloutBatch()
        firsts = groups_of(prompts, knobs.group_size)
        groups = sample_groups(ctx, knobs, task, [(problems[prompt_key(p)], p) for p in firsts], backend, "rollout")
        for messages, group in zip(firsts, groups, strict=True):
            p_ids = chat_ids(tok, messages)
            for a in group:
                batch.add(p_ids, completion_ids(tok, a.generation.token_ids, a.generation.finish_reason),
                          a.verdict.reward, sampled_logprobs=a.generation.token_logprobs)
        return batch.as_trl()

    return rollout


def budget_steps_check(knobs: PolicyGradientKnobs, budget: int, fixed: int = 0, what: str = "") -> None:
    """Plan-time: the budget must pay for `fixed` rollouts plus at least one training step."""
    need = fixed + knobs.rollouts_per_step
    if budget < need:
        detail = f"{what} {fixed} + " if fixed else ""
        raise ValueError(f"budget={budget} is below one training step: {detail}prompts_per_step × group_size = "
                         f"{knobs.prompts_per_step} × {knobs.group_size} (need >= {need})")
