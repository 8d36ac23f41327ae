"""Reflect-Retry-Reward: only reflection tokens carry gradient (first attempt and retry exactly
zero; cutting the masked retry from the row leaves the update unchanged), the meter counts first
attempts and retries, and evaluation adds a second attempt after a reflection."""

from __future__ import annotations

import pytest
import torch

from methods.common.policy_training import chat_ids
from methods.rrr import REFLECT_PROMPT, RETRY_PROMPT, ReflectRetryPolicy, reflection_sample, retry_conversation


def trl_loss_on(backend, prompt_ids, completion_ids, env_mask, advantage=1.0):
    """TRL's own GRPO loss for one (prompt, completion, mask) row, with the per-token log-probs of
    the completion (TRL's fused forward output) kept for autograd."""
    from trl import GRPOConfig, GRPOTrainer

    from methods.common.policy_training import harness_reward

    args = GRPOConfig(output_dir="/tmp/rrr-loss", use_cpu=True, num_generations=2, per_device_train_batch_size=2,
                      report_to="none", gradient_checkpointing=False, max_completion_length=len(completion_ids))
    from datasets import Dataset

    trainer = GRPOTrainer(model=backend.model, reward_funcs=[harness_reward], args=args,
                          train_dataset=Dataset.from_list([{"prompt": "x"}] * 2), processing_class=backend.tokenizer)
    seen = []

    def keep(module, args, output) -> None:  # must return None: a forward hook's return value replaces the output
        output.log_probs.retain_grad()
        seen.append(output.log_probs)
    hook = backend.model.register_forward_hook(keep)
    inputs = {"prompt_ids": torch.tensor([prompt_ids]), "prompt_mask": torch.ones(1, len(prompt_ids), dtype=torch.long),
              "completion_ids": torch.tensor([completion_ids]),
              "completion_mask": torch.ones(1, len(completion_ids), dtype=torch.long),
              "tool_mask": torch.tensor([env_mask]), "advantages": torch.tensor([advantage]),
              "num_items_in_batch": torch.tensor(float(sum(env_mask)))}
    backend.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); we call the loss directly
    loss = trainer._compute_loss(backend.model, inputs)
    hook.remove()
    return loss, seen[-1]


def test_only_reflection_tokens_receive_gradient(tiny_hf):
    backend = tiny_hf()
    tok = backend.tokenizer
    task_prompt = [{"role": "user", "content": "What is 2 + 3?"}]
    policy = ReflectRetryPolicy(task=None, policy=backend)
    conv = policy.reflection_prompt(None, task_prompt, "Answer: 6", None)
    prompt_ids, completion_ids = reflection_sample(tok, conv, "I added wrong.")
    assert "Answer: 6" in tok.decode(prompt_ids)  # the first attempt is context, never a completion token
    assert tok.decode(completion_ids).startswith("I added wrong.")
    assert RETRY_PROMPT not in tok.decode(completion_ids)  # the retry only decides the reward
    assert completion_ids[-1] == tok.eos_token_id  # ends as sampled: TRL does not count it truncated
    retry_context = chat_ids(tok, retry_conversation(conv, "I added wrong."))
    assert retry_context[:len(prompt_ids) + len(completion_ids)] == prompt_ids + completion_ids

    loss, log_probs = trl_loss_on(backend, prompt_ids, completion_ids, [1] * len(completion_ids))
    loss.backward()
    grad = log_probs.grad[0]  # d loss / d log π(token t + 1 | ≤ t) for every next-token position
    assert grad.shape[0] == len(prompt_ids) + len(completion_ids) - 1
    prompt_grad, completion_grad = grad[:-len(completion_ids)], grad[-len(completion_ids):]
    assert torch.equal(prompt_grad, torch.zeros_like(prompt_grad))  # task and first attempt: exactly 0
    assert (completion_grad != 0).all()  # every reflection token is trained


def test_cutting_the_masked_retry_leaves_the_update_unchanged(tiny_hf):
    # Issue 31: the trained row used to run on through the retry request and the retry with
    # env_mask 0. The row that stops after the reflection's turn must give the same parameter
    # gradient (causal attention, TRL's mask-normalised loss), and a different reflection must not.
    backend = tiny_hf()
    tok = backend.tokenizer
    conv = ReflectRetryPolicy(task=None, policy=backend).reflection_prompt(
        None, [{"role": "user", "content": "What is 2 + 3?"}], "Answer: 6", None)

    def update(prompt_ids, completion_ids, mask) -> torch.Tensor:
        backend.model.zero_grad()
        trl_loss_on(backend, prompt_ids, completion_ids, mask)[0].backward()
        return torch.cat([p.grad.flatten() for p in backend.model.parameters() if p.grad is not None])

    prompt_ids, reflection_ids = reflection_sample(tok, conv, "I added wrong.")
    retry_turn = chat_ids(tok, retry_conversation(conv, "I added wrong."))[len(prompt_ids) + len(reflection_ids):]
    retry = tok("Answer: 5 and a long tail of retry tokens", add_special_tokens=False).input_ids
    assert RETRY_PROMPT in tok.decode(retry_turn)
    full = reflection_ids + retry_turn + retry
    masked_full = update(prompt_ids, full, [1] * len(reflection_ids) + [0] * (len(full) - len(reflection_ids)))
    cut = update(prompt_ids, reflection_ids, [1] * len(reflection_ids))
    assert cut.abs().sum() > 0
    torch.testing.assert_close(cut, masked_full, rtol=1e-5, atol=1e-7)
    other_ids = reflection_sample(tok, conv, "I added wrong!")[1]
    assert not torch.allclose(update(prompt_ids, other_ids, [1] * len(other_ids)), cut)


def test_binary_feedback_hides_the_answer_and_rich_shows_the_task_feedback():
    from harness.core.types import Verdict

    v = Verdict(0.0, False, "6", "Incorrect: expected 5.")
    binary = ReflectRetryPolicy(None, None).reflection_prompt(None, [], "Answer: 6", v)[-1]["content"]
    rich_policy = ReflectRetryPolicy(None, None, reflection_feedback="rich")
    rich = rich_policy.reflection_prompt(None, [], "Answer: 6", v)[-1]["content"]
    assert "5" not in binary and binary == REFLECT_PROMPT.format(feedback="Your answer was incorrect.")
    assert "expected 5" in rich


def test_rrr_cell_counts_first_attempts_and_retries_and_reports_a_second_attempt(run_one, tiny_hf):
    outcome, attempts, summary = run_one(
        "method=rrr", "budget=28", "method.failure_samples=2", "method.group_size=2", "method.prompts_per_step=2",
        "method.reflection_max_tokens=6", "task.max_tokens=6", "task.test_size=3", "eval.n_samples=2",
        "method.second_attempt=true", "method.eval_before_training=true", backend=tiny_hf())
    assert outcome.status == "ok", outcome.error
    learn = attempts[attempts.phase == "learn"]
    policy, aux = learn[learn.role == "policy"], learn[learn.role == "aux"]
    first, retries = policy[policy.tag == "first_attempt"], policy[policy.tag == "retry"]
    assert len(first) == 5 * 2  # train_size 5 × failure_samples 2
    # (28 − 10) // (2 × 2) = 4 steps of 4 retries; each retry follows its own reflection (aux, not counted)
    assert len(retries) == 16 and outcome.rollouts_used == 26
    assert policy.counted_rollout.all() and not aux.counted_rollout.any() and len(aux) == 16
    ev = attempts[attempts.phase == "eval"]
    failed_first = ((ev.tag == "sample") & ~ev.passed.astype(bool))
    assert (ev.tag == "attempt2").sum() == failed_first[ev.checkpoint == ev.checkpoint.max()].sum() + \
        failed_first[ev.checkpoint == ev.checkpoint.min()].sum()
    assert summary.checkpoint.tolist() == [10, 26]  # untrained (vanilla) after the failure set, then trained
    assert (summary["pass@1_attempt2"] >= summary["pass@1"]).all()


def test_rrr_by_default_evaluates_first_attempts_only_like_every_method(run_one, tiny_hf):
    """A sweep's rrr cell evaluates the workload zero_shot does: the same problems and sample count,
    first attempts only, once after training (no reflection, no retry, no vanilla evaluation)."""
    common = ("budget=28", "task.max_tokens=6", "task.test_size=3", "eval.n_samples=2")
    outcome, attempts, summary = run_one("method=rrr", "method.failure_samples=2", "method.group_size=2",
                                         "method.prompts_per_step=2", "method.reflection_max_tokens=6", *common,
                                         backend=tiny_hf())
    assert outcome.status == "ok", outcome.error
    _, reference, _ = run_one("method=zero_shot", *common, backend=tiny_hf())
    ev, ref = attempts[attempts.phase == "eval"], reference[reference.phase == "eval"]
    assert sorted(ev.tag.unique()) == sorted(ref.tag.unique())
    assert sorted(zip(ev.problem_id, ev.sample_idx, strict=True)) == sorted(
        zip(ref.problem_id, ref.sample_idx, strict=True))
    assert summary.checkpoint.tolist() == [26] and "pass@1_attempt2" not in summary


def test_rrr_budget_must_cover_the_failure_set_and_one_step():
    from harness.core.errors import UserError
    from harness.runner.plan import plan

    with pytest.raises(UserError, match=r"budget=40 is below one training step: failure_samples × train_size = 40 \+"):
        plan(["method=rrr", "budget=40"])


def test_two_attempt_pass_rate_counts_a_sample_solved_by_either_attempt():
    import pandas as pd

    from harness.engine.evaluate import summarize_attempts

    rows = [  # problem a: samples 0 pass, 1 fail → retry passes; problem b: both fail, one retry passes
        ("a", 0, "sample", True), ("a", 1, "sample", False), ("a", 1, "attempt2", True),
        ("b", 0, "sample", False), ("b", 1, "sample", False), ("b", 0, "attempt2", False), ("b", 1, "attempt2", True)]
    frame = pd.DataFrame([{"problem_id": p, "sample_idx": i, "tag": t, "passed": ok, "prompt_tokens": 5,
                           "completion_tokens": 3, "finish_reason": "stop"} for p, i, t, ok in rows])
    out = summarize_attempts(frame)
    assert out["pass@1"] == 0.25 and out["pass@1_attempt2"] == 0.75
    # the table's "≤2 attempts" column: tests/report/test_table.py
