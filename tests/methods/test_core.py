"""CORE mechanics on the mock backend: reflection parsing, count-weighted utilities, neighbour
retrieval with a learning-only bonus, admission tests as counted rollouts, dedup, failure-biased
sampling, the three ablation switches, and a full cell in which a helpful insight is admitted
and its utility rises."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from harness.backends.mock import MockBackend
from harness.core.types import Generation, Problem, SamplingParams, Verdict
from harness.engine.budget import BudgetMeter
from harness.engine.cell import build_task
from harness.engine.method import Attempt, LearnContext
from methods.common.embedder import HashingEmbedder
from methods.core import (
    CORE,
    GUIDANCE_HEADER,
    Candidate,
    CoreState,
    Insight,
    SolvedAttempt,
    UtilityStat,
    credit,
    parse_insights,
)

QUESTIONS = ["apples and pears in a basket", "apples and pears on a table", "rockets orbit the moon slowly",
             "rockets orbit the sun slowly", "violins play in an orchestra"]


class RecordingMock(MockBackend):
    """The mock, remembering the prompt text of every aux (reflection) request."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.aux_prompts: list[str] = []

    def generate(self, requests):
        self.aux_prompts += ["\n".join(m["content"] for m in r.messages) for r in requests if r.oracle_answer is None]
        return super().generate(requests)


def problems() -> list[Problem]:
    return [Problem.make(q, str(i)) for i, q in enumerate(QUESTIONS)]


def make_state(train: list[Problem], **kw) -> CoreState:
    args = dict(task=None, policy=None, embedder=HashingEmbedder(), train=train, k_insights=2, n_neighbours=2,
                ucb_c=0.0, unseen_utility=0.0, retrieval="utility")
    args.update(kw)
    return CoreState(**args)


def insight(state: CoreState, text: str, **per_problem: tuple[int, float]) -> Insight:
    ins = Insight(len(state.insights), text, "src", 0, state.embedder.embed([text])[0],
                  {pid: UtilityStat(n, m) for pid, (n, m) in per_problem.items()})
    state.insights.append(ins)
    return ins


def context(cell_config, tmp_path: Path, backend: MockBackend, budget: int) -> LearnContext:
    task = build_task(cell_config("task=math"))
    return LearnContext(task=task, backend=backend, meter=BudgetMeter(budget),
                        sampling=SamplingParams(temperature=0.7, top_p=0.95, max_tokens=32), cell_dir=tmp_path, seed=0)


def failed(problem: Problem, text: str = "Answer: 99") -> Attempt:
    return Attempt(problem, Generation(text, 10, 3, "stop", 0.0), Verdict(0.0, False, "99", "Incorrect."), 0)


def test_reflections_parse_to_list_items_only():
    text = ("Here are my insights:\n- Add the ones digits first, then the tens.\n* Check the sign of every term.\n"
            "1. Write the final line as Answer: N.\n- ok\n- Add the ones digits first, then the tens.\n"
            "__import__('os').system('x') is not a list item\n2) A fourth insight that exceeds the limit.")
    assert parse_insights(text, limit=3, max_chars=200) == [
        "Add the ones digits first, then the tens.", "Check the sign of every term.",
        "Write the final line as Answer: N."]
    assert parse_insights("no list here at all", limit=3, max_chars=200) == []
    prose = "Add the ones first. Then carry!\nAlways write Answer: N at the end. Ok."
    assert parse_insights(prose, limit=3, max_chars=200, list_only=False) == [
        "Add the ones first.", "Always write Answer: N at the end."]  # "Then carry!" and "Ok." are fragments
    assert parse_insights("- a list wins over prose here. More prose follows now.", 3, 200, list_only=False) == [
        "a list wins over prose here. More prose follows now."]
    assert parse_insights("- " + "word " * 100, limit=3, max_chars=30) == [("word " * 6).strip()]


def test_utility_is_a_running_mean_per_problem_and_count_weighted_across_problems():
    stat = UtilityStat()
    for u in (1.0, 0.0, 0.5):
        stat.add(u)
    assert stat.n == 3 and stat.mean == pytest.approx(0.5)
    ins = Insight(0, "t", "p", 0, np.zeros(2), {"a": UtilityStat(3, 0.5), "b": UtilityStat(1, -1.0)})
    assert ins.utility_over(["a", "b"]) == (pytest.approx((3 * 0.5 - 1.0) / 4), 4)
    assert ins.utility_over(["a", "zzz"]) == (pytest.approx(0.5), 3)
    assert ins.utility_over(["zzz"]) == (0.0, 0)


def test_credit_gives_every_retrieved_insight_r_minus_baseline():
    a, b = (Insight(i, "t", "p", 0, np.zeros(2)) for i in range(2))
    credit([a, b], "p1", reward=1.0, baseline=0.3)
    credit([a], "p1", reward=0.0, baseline=0.3)
    credit([a], "p2", reward=1.0, baseline=1.0)
    assert (a.per_problem["p1"].n, a.per_problem["p1"].mean) == (2, pytest.approx((0.7 - 0.3) / 2))
    assert (b.per_problem["p1"].n, b.per_problem["p1"].mean) == (1, pytest.approx(0.7))
    assert a.per_problem["p2"].mean == 0.0 and a.retrievals == 3 and b.retrievals == 1


def test_retrieval_reads_utilities_on_neighbour_problems():
    train = problems()
    s = make_state(train, k_insights=1)
    apples, rockets = train[0].id, train[2].id
    good_on_apples = insight(s, "insight one", **{apples: (2, 0.8), rockets: (5, -0.5)})
    good_on_rockets = insight(s, "insight two", **{apples: (2, -0.2), rockets: (5, 0.9)})
    assert s.neighbours("apples and pears in a bowl") == [train[0].id, train[1].id]
    assert s.retrieve("apples and pears in a bowl") == [good_on_apples]
    assert s.retrieve("rockets orbit the earth slowly") == [good_on_rockets]
    unseen = insight(s, "insight three")  # used on no neighbour: scores unseen_utility
    s.unseen_utility = 5.0
    assert s.retrieve("apples and pears in a bowl") == [unseen]


def test_exploration_bonus_applies_while_learning_and_never_at_evaluation(cell_config):
    train = problems()
    task = build_task(cell_config("task=math"))
    s = make_state(train, task=task, ucb_c=2.0, k_insights=1)
    tried = insight(s, "tried often", **{train[0].id: (20, 0.3)})
    tried.retrievals = 20
    fresh = insight(s, "never retrieved yet")
    q = "apples and pears in a bowl"
    assert s.retrieve(q, explore=True) == [fresh]  # 0 + 2·sqrt(ln 21 / 1) beats 0.3 + 2·sqrt(ln 21 / 21)
    assert s.scores(q, explore=True)[1] == pytest.approx(2.0 * np.sqrt(np.log(21.0)))
    assert s.retrieve(q, explore=False) == [tried]
    assert list(s.scores(q, explore=False)) == [pytest.approx(0.3), 0.0]
    eval_prompt = "\n".join(m["content"] for m in s.render(Problem.make(q, "1")))
    assert "tried often" in eval_prompt and "never retrieved yet" not in eval_prompt and GUIDANCE_HEADER in eval_prompt
    assert tried.retrievals == 20 and fresh.retrievals == 0  # evaluation does not touch the counts


def test_similarity_ablation_ranks_by_question_insight_cosine_without_utilities():
    train = problems()
    s = make_state(train, k_insights=1)
    useful = insight(s, "count every violin in the orchestra", **{train[0].id: (5, 0.9)})
    close = insight(s, "apples and pears should be counted separately", **{train[0].id: (5, -0.9)})
    q = "apples and pears in a bowl"
    assert s.retrieve(q) == [useful]
    s.retrieval = "similarity"
    assert s.retrieve(q) == [close]


def test_admission_keeps_the_insight_that_solves_its_source_and_counts_each_test(cell_config, tmp_path):
    ctx = context(cell_config, tmp_path, MockBackend(base_accuracy=0.0, boosts={"MAGIC": 1.0}), budget=10)
    p = problems()[0]
    s = make_state([p], task=ctx.task)
    method, stats = CORE(embedder="hashing"), {"admitted": 0, "rejected": 0}
    vec = s.embedder.embed
    method._admit([Candidate("use the MAGIC rule here", vec(["use the MAGIC rule here"])[0], p),
                   Candidate("think about the weather", vec(["think about the weather"])[0], p)],
                  s, {p.id: 0.0}, ctx, stats)
    assert [i.text for i in s.insights] == ["use the MAGIC rule here"]
    assert s.insights[0].utility_over([p.id]) == (1.0, 1)  # init_utility=admission: pass rate 1 − b(p) 0
    assert stats == {"admitted": 1, "rejected": 1}
    assert ctx.meter.rollouts_used == 2
    assert [(r.tag, r.counted_rollout, r.role) for r in ctx.records] == [("admission", True, "policy")] * 2
    # a candidate whose test no longer fits in the budget is dropped untested
    ctx.meter.rollouts_used = 10
    method._admit([Candidate("MAGIC again please", vec(["MAGIC again please"])[0], p)], s, {p.id: 0.0}, ctx, stats)
    assert len(s.insights) == 1 and ctx.meter.rollouts_used == 10


def test_dedup_drops_candidates_close_to_stored_insights_or_each_other(cell_config, tmp_path):
    backend = MockBackend(aux_reply="- Add the ones digits first then tens\n- Add the ones digits first then tens!\n"
                                    "- Check the sign of each term carefully")
    ctx = context(cell_config, tmp_path, backend, budget=10)
    train = problems()
    s = make_state(train, task=ctx.task)
    insight(s, "check the sign of each term carefully")
    s.solved.add(s.vector(train[1].question), SolvedAttempt(train[1].id, train[1].question, "Answer: 1"))
    stats = dict.fromkeys(("reflections", "unparseable_reflections", "candidates", "duplicates"), 0)
    out = CORE(embedder="hashing")._reflect([failed(train[0])], s, ctx, stats)
    assert [c.text for c in out] == ["Add the ones digits first then tens"]
    assert stats == {"reflections": 1, "unparseable_reflections": 0, "candidates": 3, "duplicates": 2}
    assert [(r.tag, r.role, r.counted_rollout) for r in ctx.records] == [("reflection", "aux", False)]


def test_reflection_switch_changes_what_the_reflector_sees_and_when_it_runs(cell_config, tmp_path):
    train = problems()
    for mode, with_success, sees_failure, sees_success in (
            ("contrastive", True, True, True), ("failure_only", True, True, False),
            ("success_only", True, False, True), ("contrastive", False, None, None),
            ("failure_only", False, True, False)):
        backend = RecordingMock(aux_reply="- nothing to learn from this")
        ctx = context(cell_config, tmp_path, backend, budget=10)
        s = make_state(train, task=ctx.task)
        if with_success:
            s.solved.add(s.vector(train[1].question), SolvedAttempt(train[1].id, train[1].question, "STORED-SUCCESS"))
        stats = dict.fromkeys(("reflections", "unparseable_reflections", "candidates", "duplicates"), 0)
        CORE(embedder="hashing", reflection=mode)._reflect([failed(train[0], "FAILED-TEXT")], s, ctx, stats)
        if sees_failure is None:  # contrastive needs a stored success: no reflection without one
            assert backend.aux_prompts == [], mode
            continue
        assert len(backend.aux_prompts) == 1, mode
        prompt = backend.aux_prompts[0]
        assert ("FAILED-TEXT" in prompt) == sees_failure, mode
        assert ("STORED-SUCCESS" in prompt) == sees_success, mode


def test_failure_biased_sampling_follows_the_mix():
    train = problems()[:2]
    solved, unsolved = train
    successes, tries = {solved.id: 10, unsolved.id: 0}, {solved.id: 10, unsolved.id: 10}
    counts = lambda bias: sum(p is unsolved for p in CORE(failure_bias=bias, rollout_batch=2000)._sample(  # noqa: E731
        train, successes, tries, random.Random(0))) / 2000
    assert counts(1.0) == 1.0  # pure failure bias never picks a problem solved every time
    assert counts(0.0) == pytest.approx(0.5, abs=0.04)
    assert counts(0.5) == pytest.approx(0.75, abs=0.04)


def test_budget_below_the_baseline_estimate_is_refused_at_plan_time():
    from harness.core.errors import UserError
    from harness.runner.plan import plan

    with pytest.raises(UserError, match=r"baseline_samples × train_size = 10 × 10 = 100"):
        plan(["method=core", "model=mock", "budget=99", "task.train_size=10"])
    with pytest.raises(UserError, match=r"method.reflection='both'; valid: one of contrastive, failure_only, "
                                              r"success_only"):
        plan(["method=core", "model=mock", "method.reflection=both"])


def test_a_budget_the_baseline_fills_exactly_is_planned_with_a_warning(capsys, monkeypatch):
    from harness.runner import plan as sweep

    monkeypatch.setattr(sweep, "_warned", set())
    sweep.plan(["method=core", "model=mock", "budget=100", "task.train_size=10"])
    assert "math/core budget=100: CORE's baseline estimate (baseline_samples × train_size = 10 × 10) uses the " \
           "whole budget" in capsys.readouterr().err
    sweep.plan(["method=core", "model=mock", "budget=101", "task.train_size=10"])
    assert "warning" not in capsys.readouterr().err


def test_learning_admits_a_helpful_insight_whose_utility_rises(run_one, tmp_path):
    backend = MockBackend(base_accuracy=0.3, boosts={"MAGIC": 0.7},
                          aux_reply="- Apply the MAGIC rule to every step\n- Think about the weather outside {i}")
    budget = 160
    outcome, attempts, summary = run_one("method=core", "method.embedder=hashing", "method.init_utility=zero",
                                         f"budget={budget}", backend=backend)
    assert outcome.status == "ok" and outcome.rollouts_used == budget
    learn = attempts[attempts.phase == "learn"]
    policy, aux = learn[learn.role == "policy"], learn[learn.role == "aux"]
    assert policy.counted_rollout.all() and len(policy) == budget
    assert (policy.tag == "baseline").sum() == 5 * 10  # train_size 5 × baseline_samples 10, all counted
    assert (policy.tag == "admission").sum() > 0 and (policy.tag == "attempt").sum() > 0
    assert set(aux.tag) == {"reflection"} and not aux.counted_rollout.any()
    assert (attempts[attempts.phase == "eval"].role == "policy").all()

    insights = tmp_path / "sweep" / "cells" / outcome.cell_id / "insights.jsonl"
    rows = [json.loads(line) for line in insights.read_text().splitlines()]
    magic = [r for r in rows if "MAGIC" in r["text"]]
    assert len(magic) == 1  # admitted once; later proposals of it are duplicates
    assert magic[0]["uses"] > 5 and magic[0]["utility"] > 0.4  # starts unscored (init zero), rises with use
    final = summary[summary.final].iloc[0]
    assert final.context_tokens_added > 5
    _, _, zero = run_one("method=zero_shot", f"budget={budget}", backend=backend)
    assert final["pass@1"] > zero[zero.final].iloc[0]["pass@1"] + 0.4



def test_contrast_uses_the_most_recent_success_on_a_tie():
    """Round 1 contrasted every failure with the *first* stored success of the most similar problem."""
    train = problems()
    state = make_state(train)
    for i in range(3):
        state.solved.add(state.vector(train[0].question), SolvedAttempt(train[0].id, train[0].question, f"win {i}"))
    assert state.most_similar_success(train[0].question).completion == "win 2"


def test_eval_prompt_names_the_insights_it_injects():
    class EchoTask:
        def prompt(self, problem, guidance="", instruction=None):
            return [{"role": "user", "content": f"{guidance}\n{problem.question}"}]

    train = problems()
    state = make_state(train, k_insights=2, task=EchoTask())
    a = insight(state, "first insight", **{train[0].id: (3, 0.5)})
    b = insight(state, "second insight", **{train[0].id: (3, 0.2)})
    messages, ids = state.render_with_context(train[0])
    assert ids == [a.ref, b.ref] == ["i0", "i1"]
    assert "- first insight" in messages[0]["content"] and "- second insight" in messages[0]["content"]
