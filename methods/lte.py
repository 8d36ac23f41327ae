"""lte: Learning to reason from Trial and Error (Tang et al., arXiv 2510.26109): GRPO whose all-fail
groups get extra rollouts hinted with the model's own wrong answers.

Follows reference/baselines_papers.md (b):
1. Each step: G counted rollouts for each of `prompts_per_step` training problems.
2. Only for a group in which every rollout failed ("none-pass"), build a hint from those
   rollouts (three cases, `build_hint`): all truncated -> ask for concision; some truncated ->
   list the distinct wrong answers of the non-truncated ones and ask for concision; none
   truncated -> list the distinct wrong answers. The hint also says not to mention it.
3. Sample G hinted extra rollouts (counted). The correct ones replace as many failed ones, at
   random (`mix_group`): the group keeps size G, and advantages are computed over it as usual.
4. Loss (`mixed_policy_loss`): on-policy tokens take the usual clipped ratio; a replaced
   (off-policy) rollout o takes f(r) = r / (r + γ) with r = π_θ(o | q) / π_old(o | hint, q). The
   numerator is evaluated on the hint-free prompt (the rollout's `prompt_ids`), so hint tokens
   are never trained; the denominator is the behaviour log-prob under the hinted prompt,
   computed when the rollout is made. Token-level normalisation (TRL's dapo) and no KL term.
The paper's hint wording is not available (ours: HINT_*), nor γ (default 0.1, LUFFY's value).
`grpo_extra` (methods/grpo_extra.py) is the paper's ablation: the same extra rollouts without a
hint, which are on-policy samples and so take the ordinary clipped loss.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from harness.core.knobs import knob
from harness.core.registry import register_method
from harness.core.types import Message, Problem, Task, TrainableBackend
from harness.engine import Attempt, LearnContext, PromptOnly
from methods.common.policy_training import (
    PolicyGradientKnobs,
    RolloutBatch,
    chat_ids,
    completion_ids,
    groups_of,
    prompt_key,
    sample_groups,
    train_on_task_prompts,
)

HINT_WRONG = "Hint: these answers are known to be wrong: {answers}."
HINT_CONCISE = "Hint: earlier attempts were too long and were cut off; reason more concisely."
HINT_UNPARSED = "Hint: earlier attempts gave no final answer in the required format."
HINT_SILENT = "Do not mention this hint in your reasoning."


def build_hint(group: list[Attempt]) -> tuple[str, str]:
    """(case, hint text) from a group of failed rollouts; case is overlong_all | overlong_some | pass_none."""
    truncated = [a.generation.finish_reason == "length" for a in group]
    answers = list(dict.fromkeys(a.verdict.parsed for a, cut in zip(group, truncated, strict=True)
                                 if not cut and a.verdict.parsed))
    wrong = [HINT_WRONG.format(answers=", ".join(answers))] if answers else []
    if all(truncated):
        case, parts = "overlong_all", [HINT_CONCISE]
    elif any(truncated):
        case, parts = "overlong_some", wrong + [HINT_CONCISE]
    else:
        case, parts = "pass_none", wrong or [HINT_UNPARSED]
    return case, " ".join(parts + [HINT_SILENT])


def mix_group(group: list[Attempt], extras: list[Attempt], rng: random.Random) -> tuple[list[Attempt], list[bool]]:
    """Correct extras replace randomly chosen failed rollouts; returns the group (same size) and
    which of its members are replacements."""
    correct = [e for e in extras if e.verdict.passed]
    failed = [i for i, a in enumerate(group) if not a.verdict.passed]
    mixed, replaced = list(group), [False] * len(group)
    for i, extra in zip(rng.sample(failed, min(len(correct), len(failed))), correct, strict=False):
        mixed[i], replaced[i] = extra, True
    return mixed, replaced


def mixed_policy_loss(logps: Any, behaviour_logps: Any, off_policy: Any, advantages: Any, mask: Any,
                      epsilon_low: float, epsilon_high: float, gamma: float, entropies: Any = None,
                      entropy_coef: float = 0.0, sampler_weight: Any = None) -> Any:
    """Token-level mixed-policy GRPO loss (LTE §3, LUFFY-style regularised importance sampling).

    logps: log π_θ(o_t | q, o_<t) on the hint-free prompt, (B, T), with gradient.
    behaviour_logps: log π_old(o_t | hint, q, o_<t) for off-policy rows (ignored elsewhere).
    On-policy rows: PPO clip with π_old = the detached current policy (one update per batch).
    entropies, entropy_coef: LTE† (the paper's "+entropy" rows) subtracts entropy_coef × the
    token-mean policy entropy over the same mask (an entropy bonus); 0 = plain LTE.
    sampler_weight: TRL's importance-sampling ratio π_trainer / π_sampler, (B, 1) or (B, T), where the
    sampler correction is on (policy_training.sampler_correction); it multiplies the per-token loss
    as TRL's own loss does. Off-policy rows carry no sampler log-probs, so their weight is 1.
    """
    import torch

    adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
    on_ratio = torch.exp(logps - logps.detach())
    on_loss = -torch.min(on_ratio * adv, torch.clamp(on_ratio, 1 - epsilon_low, 1 + epsilon_high) * adv)
    ratio = torch.exp(logps - behaviour_logps)
    off_loss = -(ratio / (ratio + gamma)) * adv
    per_token = torch.where(off_policy.unsqueeze(1), off_loss, on_loss)
    if entropy_coef:
        per_token = per_token - entropy_coef * entropies
    if sampler_weight is not None:
        per_token = per_token * sampler_weight
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def with_row_flags(out: dict[str, Any], rows: tuple[tuple[bool, list[float]], ...]) -> dict[str, Any]:
    """TRL's scored batch plus per-row `off_policy` and `behaviour_logps`, on the batch's device (the
    loss mixes them with CUDA tensors on a GPU)."""
    import torch

    device, width = out["completion_ids"].device, out["completion_ids"].shape[1]
    behaviour = torch.zeros(len(rows), width)
    for i, (_, logps) in enumerate(rows):
        behaviour[i, :len(logps)] = torch.tensor(logps[:width])
    out["off_policy"] = torch.tensor([off for off, _ in rows], dtype=torch.bool, device=device)
    out["behaviour_logps"] = behaviour.to(device)
    return out


def make_trainer_class(gamma: float, entropy_coef: float = 0.0) -> Any:
    import torch
    from trl import GRPOTrainer

    class LTETrainer(GRPOTrainer):
        """GRPOTrainer that carries per-row (off-policy flag, behaviour log-probs) from the rollout
        function to `mixed_policy_loss`."""

        pending_rows: tuple[tuple[bool, list[float]], ...] = ()  # set by the rollout function each step

        def _generate_and_score_completions(self, inputs):
            return with_row_flags(super()._generate_and_score_completions(inputs), self.pending_rows)

        def _compute_loss(self, model, inputs):
            prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]
            input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
            attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
            logps, entropies, _ = self._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, completion_ids.size(1), compute_entropy=entropy_coef > 0)
            return mixed_policy_loss(logps, inputs["behaviour_logps"], inputs["off_policy"], inputs["advantages"],
                                     inputs["completion_mask"], self.epsilon_low, self.epsilon_high, gamma,
                                     entropies, entropy_coef, inputs.get("importance_sampling_ratio"))

        def behaviour_logps(self, prompt_ids: list[int], completion: list[int]) -> list[float]:
            """log π_old(o | hinted prompt) per token, computed exactly as the loss computes log π_θ."""
            ids = torch.tensor([prompt_ids + completion], device=self.accelerator.device)
            with torch.no_grad():
                logps, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, torch.ones_like(ids),
                                                                      len(completion))
            return logps[0].tolist()

    return LTETrainer


@register_method("lte")
@dataclass
class LTE(PolicyGradientKnobs):
    gamma: float = knob(0.1, "f(r) = r / (r + γ) on off-policy tokens (not stated; LUFFY's value)", gt=0)
    hint: bool = knob(True, "false = the grpo_extra ablation (same as method=grpo_extra)")
    entropy_coef: float = knob(0.0, "> 0 = LTE† (the paper's '+entropy' rows): entropy bonus in the loss; value "
                                    "not stated", ge=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta != 0.0 or self.loss_type != "dapo":
            raise ValueError(f"method.beta={self.beta}, method.loss_type={self.loss_type!r}; valid for {self.name}: "
                             f"beta 0, loss_type dapo (its mixed-policy loss has no KL term and token-level "
                             f"normalisation)")

    def learn(self, train: list[Problem], ctx: LearnContext) -> PromptOnly:
        task, backend = ctx.task, ctx.backend
        return train_on_task_prompts(self, task, train, backend, ctx,
                                     lambda problems, policy: self._rollout_func(task, problems, policy, ctx),
                                     trainer_cls=make_trainer_class(self.gamma, self.entropy_coef))

    def _rollout_func(self, task: Task, problems: dict[str, Problem], backend: TrainableBackend,
                      ctx: LearnContext):
        rng = random.Random(ctx.seed)
        tok, G = backend.tokenizer, self.group_size

        def rollout(prompts: list[list[Message]], trainer: Any) -> dict[str, list]:
            batch = RolloutBatch()
            rows: list[tuple[bool, list[float]]] = []
            firsts = groups_of(prompts, G)
            items = [(problems[prompt_key(m)], m) for m in firsts]
            sampled = sample_groups(ctx, self, task, items, backend, "rollout")
            # every all-fail group's G extras in one engine call (issue 31), in problem order while the
            # budget pays for whole groups, as the one-problem-at-a-time loop granted them
            extra_items: dict[int, tuple[Problem, list[Message]]] = {}
            left = ctx.meter.remaining
            for i, ((problem, messages), first_group) in enumerate(zip(items, sampled, strict=True)):
                if not any(a.verdict.passed for a in first_group) and left >= G:
                    left -= G
                    hinted = task.prompt(problem, guidance=build_hint(first_group)[1]) if self.hint else messages
                    extra_items[i] = (problem, hinted)
            extra_groups = dict(zip(extra_items, sample_groups(
                ctx, self, task, list(extra_items.values()), backend, "hinted" if self.hint else "extra"),
                strict=True)) if extra_items else {}
            for i, ((_, messages), first_group) in enumerate(zip(items, sampled, strict=True)):
                p_ids = chat_ids(tok, messages)
                group, replaced = first_group, [False] * G
                extra_prompt = messages
                if i in extra_groups:
                    extra_prompt = extra_items[i][1]
                    group, replaced = mix_group(group, extra_groups[i], rng)
                hinted_ids = chat_ids(tok, extra_prompt)
                for a, swapped in zip(group, replaced, strict=True):
                    c_ids = completion_ids(tok, a.generation.token_ids, a.generation.finish_reason)
                    off = swapped and self.hint  # unhinted extras are on-policy samples
                    rows.append((off, trainer.behaviour_logps(hinted_ids, c_ids) if off else []))
                    # always hint-free: the numerator's context; a hinted row's sampler log-probs belong to
                    # another prompt, and its own ratio (mixed_policy_loss) already corrects it
                    batch.add(p_ids, c_ids, a.verdict.reward,
                              sampled_logprobs=() if off else a.generation.token_logprobs)
            trainer.pending_rows = tuple(rows)
            return batch.as_trl()

        return rollout
