"""Budget meter semantics (DESIGN §3): counted rollouts vs aux calls, refusal before overrun,
phase/role on every record, and learning-curve checkpoints."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harness.core.registry import METHODS, register_method
from harness.engine.budget import BudgetExhausted, BudgetMeter
from harness.engine.method import LearnContext, MethodBase, PromptOnly


def test_meter_refuses_the_request_that_would_overrun():
    m = BudgetMeter(10)
    m.reserve(6)
    with pytest.raises(BudgetExhausted):
        m.reserve(5)  # 11 > 10: refused whole, nothing claimed
    assert m.rollouts_used == 6
    m.reserve(4)
    assert m.remaining == 0
    with pytest.raises(BudgetExhausted):
        m.reserve(1)
    assert m.rollouts_used == 10


def test_meter_rejects_negative():
    with pytest.raises(ValueError):
        BudgetMeter(-1)
    with pytest.raises(ValueError):
        BudgetMeter(3).reserve(-1)


@register_method("_test_spender")
@dataclass
class Spender(MethodBase):
    """Test-only method: spends the budget in batches of `batch` x `n`, makes one aux call per
    batch, and checkpoints after each batch."""

    batch: int = 2
    n: int = 3
    def learn(self, train, ctx: LearnContext):
        task, backend = ctx.task, ctx.backend
        i = 0
        while True:
            batch = [train[(i + j) % len(train)] for j in range(self.batch)]
            items = [(p, task.prompt(p)) for p in batch]
            try:
                ctx.rollouts(items, n=self.n, tag="spend")
            except BudgetExhausted:
                break
            ctx.aux([[{"role": "user", "content": "reflect"}]], tag="reflect")
            ctx.checkpoint(PromptOnly(task, backend))
            i = (i + self.batch) % len(train)
        return PromptOnly(task, backend)


def test_cell_never_exceeds_budget_and_counts_every_rollout(run_one):
    outcome, attempts, summary = run_one("method.name=_test_spender", "budget=20")
    assert outcome.status == "ok"
    learn = attempts[attempts.phase == "learn"]
    counted = learn[learn.counted_rollout]
    # batches of 2 problems x 3 samples = 6 rollouts; 3 batches fit in 20, the 4th (24) is refused
    assert len(counted) == 18 == outcome.rollouts_used
    assert (counted.role == "policy").all() and counted.reward.notna().all()
    aux = learn[learn.role == "aux"]
    assert len(aux) == 3 and not aux.counted_rollout.any() and aux.reward.isna().all()
    ev = attempts[attempts.phase == "eval"]
    assert not ev.counted_rollout.any() and (ev.role == "policy").all()
    assert summary.rollouts_used.max() <= 20
    final = summary[summary.final]
    assert final.learn_policy_tokens.iloc[0] == counted.prompt_tokens.sum() + counted.completion_tokens.sum()
    assert final.learn_aux_tokens.iloc[0] == aux.prompt_tokens.sum() + aux.completion_tokens.sum()


def test_checkpoints_fire_at_budget_fractions(run_one):
    _, attempts, summary = run_one("method.name=_test_spender", "budget=24", "checkpoints=[0.25,0.5,0.75]")
    # rollouts after each batch: 6, 12, 18, 24 -> fractions 0.25, 0.5, 0.75 crossed at 6, 12, 18
    mid = summary[~summary.final]
    assert list(mid.checkpoint) == [6, 12, 18]
    assert list(summary[summary.final].checkpoint) == [24]
    assert sorted(attempts[attempts.phase == "eval"].checkpoint.unique()) == [6, 12, 18, 24]


def test_one_evaluation_covers_several_crossed_fractions(run_one):
    _, _, summary = run_one("method.name=_test_spender", "+method.batch=5", "+method.n=4", "budget=24",
                            "checkpoints=[0.25,0.5,0.75]")
    # one batch = 5 problems x 4 = 20 rollouts: crosses 0.25, 0.5 and 0.75 at once -> one eval
    assert list(summary[~summary.final].checkpoint) == [20]


def test_registered_test_method_is_known():
    assert "_test_spender" in METHODS.names()


def test_failed_generation_is_refunded(cell_config, tmp_path):
    from harness.backends.mock import MockBackend
    from harness.core.types import SamplingParams
    from harness.engine.cell import build_task

    class Broken(MockBackend):
        def generate(self, requests):
            raise ConnectionError("endpoint down")

    task = build_task(cell_config())
    meter = BudgetMeter(10)
    ctx = LearnContext(task=task, backend=Broken(), meter=meter, sampling=SamplingParams(), cell_dir=tmp_path, seed=0)
    p = task.problems("train", 1, 0)[0]
    with pytest.raises(ConnectionError):
        ctx.rollout(p, task.prompt(p), n=4)
    assert meter.rollouts_used == 0 and ctx.records == []
    ctx.rollout(p, task.prompt(p), n=4, backend=MockBackend())
    assert meter.rollouts_used == 4 == len(ctx.records)
