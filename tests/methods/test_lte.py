"""LTE: hints list exactly the distinct wrong answers (three truncation cases), hinted rollouts
fire only on all-fail groups and replace failures without changing the group size, and the
off-policy ratio has the hint-free context in the numerator and the hinted one in the
denominator; grpo_extra takes the same extras unhinted and on-policy."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from harness.core.types import Generation, Problem, Verdict
from harness.engine.method import Attempt
from methods.lte import HINT_CONCISE, HINT_SILENT, build_hint, make_trainer_class, mix_group, mixed_policy_loss

P = Problem.make("What is 2 + 3?", "5")


def attempt(parsed: str | None, passed: bool = False, truncated: bool = False) -> Attempt:
    gen = Generation(f"Answer: {parsed}", 5, 3, "length" if truncated else "stop", 0.0, token_ids=(1, 2))
    return Attempt(P, gen, Verdict(float(passed), passed, parsed, ""), 0)


def test_hint_lists_exactly_the_distinct_wrong_answers_in_three_cases():
    case, text = build_hint([attempt("6"), attempt("7"), attempt("6"), attempt(None)])
    assert case == "pass_none" and text == f"Hint: these answers are known to be wrong: 6, 7. {HINT_SILENT}"
    case, text = build_hint([attempt("6", truncated=True), attempt("8"), attempt("9"), attempt("8")])
    assert case == "overlong_some"  # the truncated rollout's "6" was never a finished answer
    assert text == f"Hint: these answers are known to be wrong: 8, 9. {HINT_CONCISE} {HINT_SILENT}"
    case, text = build_hint([attempt("6", truncated=True)] * 3)
    assert case == "overlong_all" and text == f"{HINT_CONCISE} {HINT_SILENT}" and "6" not in text


def test_correct_extras_replace_failures_and_keep_the_group_size():
    group = [attempt(str(i)) for i in range(4)]
    extras = [attempt("5", passed=True), attempt("9"), attempt("5", passed=True), attempt("1")]
    mixed, replaced = mix_group(group, extras, random.Random(0))
    assert len(mixed) == 4 and sum(replaced) == 2
    assert [m.verdict.passed for m in mixed] == replaced
    kept = [g for g, r in zip(group, replaced, strict=True) if not r]
    assert [m for m, r in zip(mixed, replaced, strict=True) if not r] == kept
    none, flags = mix_group(group, [attempt("9")] * 4, random.Random(0))
    assert none == group and not any(flags)


def trainer_for(backend, gamma: float = 0.1):
    from datasets import Dataset
    from trl import GRPOConfig

    from methods.common.policy_training import harness_reward

    args = GRPOConfig(output_dir="/tmp/lte-loss", use_cpu=True, num_generations=2, per_device_train_batch_size=2,
                      report_to="none", gradient_checkpointing=False, temperature=0.7)
    return make_trainer_class(gamma)(model=backend.model, reward_funcs=[harness_reward], args=args,
                                     train_dataset=Dataset.from_list([{"prompt": "x"}] * 2),
                                     processing_class=backend.tokenizer)


def test_off_policy_ratio_puts_the_hint_free_context_over_the_hinted_one(tiny_hf):
    from methods.common.policy_training import chat_ids

    backend = tiny_hf(init_range=0.5)
    tok = backend.tokenizer
    trainer = trainer_for(backend, gamma=0.1)
    plain = chat_ids(tok, [{"role": "user", "content": "What is 2 + 3?"}])
    hinted = chat_ids(tok, [{"role": "user", "content": "What is 2 + 3? Hint: 6 is wrong."}])
    completion = tok("Answer: 5", add_special_tokens=False).input_ids + [tok.eos_token_id]
    free_logps = torch.tensor(trainer.behaviour_logps(plain, completion))
    hint_logps = torch.tensor(trainer.behaviour_logps(hinted, completion))
    assert (free_logps - hint_logps).abs().max() > 0.5  # this policy's log-probs depend on the context

    advantage = torch.tensor([1.5])
    inputs = {"prompt_ids": torch.tensor([plain]), "prompt_mask": torch.ones(1, len(plain), dtype=torch.long),
              "completion_ids": torch.tensor([completion]),
              "completion_mask": torch.ones(1, len(completion), dtype=torch.long), "advantages": advantage,
              "off_policy": torch.tensor([True]), "behaviour_logps": hint_logps.unsqueeze(0)}
    loss = trainer._compute_loss(backend.model, inputs)
    r = torch.exp(free_logps - hint_logps)  # numerator without the hint, denominator with it
    assert loss.item() == pytest.approx((-(r / (r + 0.1)) * 1.5).mean().item(), rel=1e-5)
    wrong_way = torch.exp(hint_logps - free_logps)
    assert loss.item() != pytest.approx((-(wrong_way / (wrong_way + 0.1)) * 1.5).mean().item(), rel=1e-2)


@pytest.mark.parametrize("sampler_ratio", [None, [[0.5], [2.0]]])
def test_without_off_policy_rows_the_loss_is_trls(tiny_hf, sampler_ratio):
    """Also with the sampler correction on (policy_training.sampler_correction): TRL weights its loss
    by the importance-sampling ratio, and so must LTE's."""
    from trl import GRPOTrainer

    from methods.common.policy_training import chat_ids

    backend = tiny_hf()
    tok = backend.tokenizer
    trainer = trainer_for(backend)
    trainer.current_gradient_accumulation_steps = 1
    prompt = chat_ids(tok, [{"role": "user", "content": "What is 2 + 3?"}])
    completions = [tok(text, add_special_tokens=False).input_ids for text in ("Answer: 5", "Answer: 9!")]
    width = max(map(len, completions))
    ids = torch.tensor([c + [tok.pad_token_id] * (width - len(c)) for c in completions])
    cmask = torch.tensor([[1] * len(c) + [0] * (width - len(c)) for c in completions])
    inputs = {"prompt_ids": torch.tensor([prompt, prompt]), "prompt_mask": torch.ones(2, len(prompt), dtype=torch.long),
              "completion_ids": ids, "completion_mask": cmask, "advantages": torch.tensor([0.7, -0.7]),
              "num_items_in_batch": cmask.sum().float(), "off_policy": torch.tensor([False, False]),
              "behaviour_logps": torch.zeros(2, width)}
    if sampler_ratio is not None:
        trainer.use_vllm = trainer.vllm_importance_sampling_correction = True
        inputs["importance_sampling_ratio"] = torch.tensor(sampler_ratio)
    backend.model.train()
    ours = trainer._compute_loss(backend.model, inputs)
    ours.backward()
    ours_grad = [p.grad.clone() for p in backend.model.parameters() if p.grad is not None]
    backend.model.zero_grad()
    theirs = GRPOTrainer._compute_loss(trainer, backend.model, inputs)
    theirs.backward()
    theirs_grad = [p.grad for p in backend.model.parameters() if p.grad is not None]
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-7)
    assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(ours_grad, theirs_grad, strict=True))


def test_mixed_loss_weights_off_policy_tokens_by_r_over_r_plus_gamma():
    logps = torch.log(torch.tensor([[0.5, 0.25]])).requires_grad_()
    behaviour = torch.log(torch.tensor([[0.25, 0.25]]))
    loss = mixed_policy_loss(logps, behaviour, torch.tensor([True]), torch.tensor([2.0]), torch.ones(1, 2),
                             0.2, 0.2, 1.0)
    # r = (2, 1): f = (2/3, 1/2); loss = −mean(f · A)
    assert loss.item() == pytest.approx(-((2 / 3 + 1 / 2) / 2) * 2.0)


@pytest.mark.parametrize("method,tag", [("lte", "hinted"), ("grpo_extra", "extra")])
def test_extras_fire_only_on_all_fail_groups_and_are_counted(run_one, tiny_hf, method, tag):
    outcome, attempts, _ = run_one(f"method={method}", "budget=24", "method.group_size=2", "method.prompts_per_step=2",
                                   "task.max_tokens=6", "task.test_size=3", "eval.n_samples=2", backend=tiny_hf())
    assert outcome.status == "ok", outcome.error
    learn = attempts[attempts.phase == "learn"].reset_index(drop=True)
    assert outcome.rollouts_used == len(learn) <= 24 and learn.counted_rollout.all()
    assert set(learn.tag) <= {"rollout", tag} and (learn.tag == tag).sum() > 0
    is_extra = (learn.tag == tag).tolist()
    starts = [i for i, e in enumerate(is_extra) if e and (i == 0 or not is_extra[i - 1])]
    for start in starts:
        end = next((j for j in range(start, len(is_extra)) if not is_extra[j]), len(is_extra))
        assert (end - start) % 2 == 0  # whole groups of G = 2
        for block_start in range(start, end, 2):
            block = learn.iloc[block_start:block_start + 2]
            assert block.problem_id.nunique() == 1  # G extras for one problem
            own = learn.iloc[:start]
            own = own[(own.problem_id == block.problem_id.iloc[0]) & (own.tag == "rollout")].tail(2)
            assert len(own) == 2 and not own.passed.astype(bool).any()  # its group had failed entirely


def test_lte_refuses_a_kl_term():
    from harness.core.errors import UserError
    from harness.runner.plan import plan

    with pytest.raises(UserError, match=r"method.beta=0\.01, method.loss_type='dapo'; valid for lte: beta 0, "
                                              r"loss_type dapo"):
        plan(["method=lte", "method.beta=0.01"])


def test_entropy_bonus_lowers_the_loss_by_coef_times_mean_entropy():
    """LTE† (the paper's +entropy rows): loss − c · token-mean entropy over the completion mask."""
    import torch

    from methods.lte import mixed_policy_loss

    logps = torch.log(torch.tensor([[0.5, 0.2, 0.3], [0.4, 0.4, 0.9]]))
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    entropies = torch.tensor([[1.0, 2.0, 9.0], [0.5, 0.5, 0.5]])
    args = (logps, logps, torch.tensor([False, True]), torch.tensor([1.0, -1.0]), mask, 0.2, 0.2, 0.1)
    plain = mixed_policy_loss(*args)
    assert torch.equal(plain, mixed_policy_loss(*args, entropies, 0.0))
    bonus = mixed_policy_loss(*args, entropies, 0.05)
    masked_mean = (1.0 + 2.0 + 0.5 * 3) / 5  # the masked-out 9.0 does not count
    assert bonus.item() == pytest.approx(plain.item() - 0.05 * masked_mean)


def test_a_steps_extra_rollouts_share_one_engine_call(run_one, tiny_hf):
    """Issue 31: the G extras of every all-fail group of a training step are generated in one call
    after the step's first groups (the old loop made one call per failed problem). A record's `step`
    is the learn phase's engine-call index."""
    outcome, attempts, _ = run_one("method=grpo_extra", "budget=24", "method.group_size=2", "method.prompts_per_step=2",
                                   "task.max_tokens=4", "task.test_size=1", "eval.n_samples=1", "checkpoints=[]",
                                   backend=tiny_hf())
    assert outcome.status == "ok", outcome.error
    learn = attempts[attempts.phase == "learn"]
    calls = [(c.tag.iloc[0], c) for _, c in learn.groupby("step", sort=True)]
    assert all(not (a == b == "extra") for (a, _), (b, _) in itertools.pairwise(calls))  # never two in a row
    for (tag, first), (next_tag, extras) in itertools.pairwise(calls):
        if tag == "rollout" and next_tag == "extra":
            all_fail = [p for p, g in first.groupby("problem_id") if not g.passed.astype(bool).any()]
            assert sorted(extras.problem_id.unique()) == sorted(all_fail)
    assert any(tag == "extra" and c.problem_id.nunique() == 2 for tag, c in calls)  # a step with two failed groups
