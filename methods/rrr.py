"""rrr: Reflect, Retry, Reward (Bensal et al., arXiv 2505.24726): GRPO that rewards only the reflection.

Follows reference/baselines_papers.md (a):
1. Failure set: `failure_samples` first attempts per training problem (counted rollouts; the
   paper samples up to 64 and keeps the failed queries). Every distinct failed attempt becomes
   one training prompt: the task, the failed answer, and a request to reflect.
2. Each step takes `prompts_per_step` of them; for each, `group_size` reflections are sampled
   (aux calls by the trained policy), each followed by a retry with the reflection in context
   (counted rollouts). Reward = 1 if the retry passes.
3. Only the reflection tokens carry the advantage: the first attempt sits in the prompt, and the
   trained completion ends with the reflection's turn. The retry decides the reward and is not
   part of the trained sequence: masked out (TRL's `env_mask`, trl_extension_points.md) it would
   change no loss term (causal attention: no reflection log-prob sees it; every TRL loss type
   normalises over the mask or by a constant), yet it was ~45% of a step's completion tokens
   through forward and backward (issue 31). The model learns how to reflect, not the answer.
The reflection prompt sees only binary feedback by default (the paper's setting: "only binary
feedback is available"); `reflection_feedback: rich` shows the task's feedback text instead.
Evaluation reports the first attempt (Pass@k, the same workload as every method). The paper also
reports accuracy within two attempts: with `second_attempt`, evaluation answers each failed first
attempt with one reflection and one retry (the `SecondAttempt` protocol; `pass@1_attempt2`), and
with `eval_before_training` the untrained policy is evaluated once before training (the paper's
vanilla rows). Both are off by default and on in `conf/paper/rrr.yaml`: a sweep compares first
attempts, its zero_shot cell is already the vanilla first attempt (same engine, prompt and eval
seed), and the second attempt asks the verifier about test problems, which no other method does.
The paper's prompt wording is not available; ours is in REFLECT_PROMPT / RETRY_PROMPT.
Step time (issue 31; default model on this 2-core CPU, 8 rollouts a step): 14.5 s in the B=500
main job against GRPO's 5.8 s (`bench/grpo_step.py --methods grpo,rrr` compares the two; a cProfile
run gave the split below). A step's reflections are one engine
call and its retries another, but the retry needs its reflection, so the two cannot share a call:
~7.9 s of decoding at ~90 ms a step of the batch of 8 (reflections up to 64 tokens, retries up to
48; a GRPO step decodes up to 48 once). Training takes ~9 s: RRR's rows are ~210 tokens (the prompt
carries the failed attempt) against GRPO's ~120. Cutting the masked retry from the trained row took
the step from ~27 s to ~15 s; the rest is what the algorithm computes, so the issue's 2x target is
not reached by batching.
Where the sampler correction is on (policy_training `sampler_correction`), RRR's rows stay
uncorrected: the reflection is re-tokenized from its text inside the multi-turn completion, so the
sampler's per-token log-probs do not line up with the trained tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from harness.core.knobs import knob
from harness.core.registry import register_method
from harness.core.types import Backend, Message, Problem, SamplingParams, Task, TrainableBackend, Verdict
from harness.engine import LearnContext, Learned, PromptOnly
from methods.common.policy_training import (
    PolicyGradientKnobs,
    RolloutBatch,
    as_trainable,
    budget_steps_check,
    chat_ids,
    groups_of,
    prompt_key,
    run_trainer,
    sample_groups,
)

REFLECT_PROMPT = ("{feedback} Reflect on what went wrong in your answer and write short guidance for your next "
                  "attempt. Do not solve the problem yet.")
RETRY_PROMPT = "Now try the problem again, using your reflection. End with the line 'Answer: <answer>'."
BINARY_FEEDBACK = "Your answer was incorrect."


@dataclass
class ReflectRetryPolicy:
    """The Learned of RRR: the task's base prompt on the (trained) weights, plus the second attempt."""

    task: Task
    policy: Backend
    reflection_feedback: str = "binary"
    reflection_max_tokens: int = 64

    def render(self, problem: Problem) -> list[Message]:
        return self.task.prompt(problem)

    def reflection_prompt(self, problem: Problem, prompt: list[Message], completion: str,
                          verdict: Verdict) -> list[Message]:
        feedback = BINARY_FEEDBACK if self.reflection_feedback == "binary" else verdict.feedback
        return list(prompt) + [{"role": "assistant", "content": completion},
                               {"role": "user", "content": REFLECT_PROMPT.format(feedback=feedback)}]

    def retry_prompt(self, reflection_prompt: list[Message], reflection: str) -> list[Message]:
        return retry_conversation(reflection_prompt, reflection)


def retry_conversation(reflection_prompt: list[Message], reflection: str) -> list[Message]:
    return list(reflection_prompt) + [{"role": "assistant", "content": reflection},
                                      {"role": "user", "content": RETRY_PROMPT}]


def reflection_sample(tokenizer: Any, conversation: list[Message], reflection: str) -> tuple[list[int], list[int]]:
    """(prompt_ids, completion_ids) of one trained reflection. The prompt is everything up to the
    reflection (task, first attempt, reflection request); the completion is the reflection up to its
    end-of-turn token, as the policy sampled it (the template's newline after it is not sampled, and
    a row that does not end in EOS would count as truncated for TRL), and the retry conversation
    continues from exactly these tokens."""
    prompt = chat_ids(tokenizer, conversation)
    with_reflection = chat_ids(tokenizer, conversation + [{"role": "assistant", "content": reflection}],
                               generation_prompt=False)
    retry_context = chat_ids(tokenizer, retry_conversation(conversation, reflection))
    if with_reflection[:len(prompt)] != prompt or retry_context[:len(with_reflection)] != with_reflection:
        raise RuntimeError("the chat template does not tokenize turns as prefixes; RRR cannot build its sample")
    completion = with_reflection[len(prompt):]
    eos = tokenizer.eos_token_id
    if eos in completion:
        completion = completion[:len(completion) - completion[::-1].index(eos)]
    return prompt, completion


@register_method("rrr")
@dataclass
class RRR(PolicyGradientKnobs):
    failure_samples: int = knob(4, "first attempts per training problem for the failure set (paper: up to 64)",
                                ge=1)
    reflection_feedback: Literal["binary", "rich"] = knob(
        "binary", "what the reflection prompt shows: binary (paper: 'only binary feedback is available') or rich "
                  "(the task's feedback text)")
    reflection_max_tokens: int = knob(64, "cap on one reflection (not stated)", ge=1)
    second_attempt: bool = knob(
        False, "evaluation also answers each failed first attempt with a reflection and a retry (pass@1_attempt2, "
               "the paper's 'within two attempts'; 1.8x the eval generations on math). Off in a sweep: the verifier "
               "is consulted on test problems, which no other method gets")
    eval_before_training: bool = knob(
        False, "also evaluate the untrained policy (the paper's vanilla rows). Off in a sweep: zero_shot is the "
               "vanilla first attempt on the same engine and eval seed")

    def check_cell(self, budget: int, train_size: int, model: dict | None = None) -> None:
        self.check_trainable(model)
        budget_steps_check(self, budget, fixed=self.failure_samples * train_size,
                           what="failure_samples × train_size =")

    def learn(self, train: list[Problem], ctx: LearnContext) -> Learned:
        task, backend = ctx.task, ctx.backend
        trainable = as_trainable(backend)
        reflector = ReflectRetryPolicy(task, backend, self.reflection_feedback, self.reflection_max_tokens)
        groups = sample_groups(ctx, self, task, [(p, task.prompt(p)) for p in train], backend, "first_attempt",
                               n=self.failure_samples)
        conversations: dict[str, tuple[Problem, list[Message]]] = {}
        for p, group in zip(train, groups, strict=True):
            for a in group:
                if not a.verdict.passed:
                    conv = reflector.reflection_prompt(p, task.prompt(p), a.generation.text, a.verdict)
                    conversations.setdefault(prompt_key(conv), (p, conv))
        learned: Learned = reflector if self.second_attempt else PromptOnly(task, backend)
        if self.eval_before_training:
            ctx.evaluate_now(learned)
        run_trainer(self, learned, [conv for _, conv in conversations.values()], trainable, ctx,
                    lambda policy: self._rollout_func(task, conversations, policy, ctx))
        return learned

    def _rollout_func(self, task: Task, conversations: dict[str, tuple[Problem, list[Message]]],
                      backend: TrainableBackend, ctx: LearnContext):
        def rollout(prompts: list[list[Message]], trainer: Any) -> dict[str, list]:
            batch = RolloutBatch()
            firsts = groups_of(prompts, self.group_size)
            rows = [conversations[prompt_key(conv)] for conv in firsts for _ in range(self.group_size)]
            used = self.sampling(ctx)
            reflections = ctx.aux([conv for _, conv in rows], SamplingParams(
                temperature=used.temperature, top_p=used.top_p, max_tokens=self.reflection_max_tokens),
                tag="reflection", backend=backend)
            retries = [g[0] for g in ctx.rollouts(
                [(p, retry_conversation(conv, r)) for (p, conv), r in zip(rows, reflections, strict=True)],
                n=1, params=used, tag="retry", backend=backend)]
            for (_, conv), reflection, retry in zip(rows, reflections, retries, strict=True):
                p_ids, c_ids = reflection_sample(backend.tokenizer, conv, reflection)
                batch.add(p_ids, c_ids, retry.verdict.reward)
            return batch.as_trl()

        return rollout
