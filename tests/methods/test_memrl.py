"""MemRL mechanics: the Q update formula, query keys as in the official add_memories /
retrieve_query, two-phase retrieval ranking, determinism at ε = 0, and a learning run whose memory
writes are aux calls while attempts are counted rollouts and whose injected memories keep changing."""

from __future__ import annotations

import random

import numpy as np
import pytest

from methods.common.embedder import HashingEmbedder
from methods.memrl import Memory, MemRLState, q_update, zscore


def state(**kw) -> MemRLState:
    args = dict(task=None, policy=None, embedder=HashingEmbedder(), k1=5, k2=2, delta=0.0, lam=0.5,
                q_min_threshold=-10.0, sim_norm_mean=0.2, sim_norm_std=0.1, max_memory_chars=500)
    args.update(kw)
    return MemRLState(**args)


def add(s: MemRLState, question: str, q: float, success: bool = True) -> Memory:
    return s.add(question, f"content for {question}", success, q)


def test_q_update_is_the_ema_of_eq8():
    a, b = Memory("m0", "a", "", True, 0.0), Memory("m1", "b", "", False, 0.5)
    q_update([a, b], reward=1.0, alpha=0.3)
    assert a.q == pytest.approx(0.3) and b.q == pytest.approx(0.5 + 0.3 * (1.0 - 0.5))
    q_update([a], reward=-1.0, alpha=0.3)
    assert a.q == pytest.approx(0.3 + 0.3 * (-1.0 - 0.3)) and a.visits == 2 and b.visits == 1


def test_phase_b_blends_z_scored_similarity_and_q():
    s = state(k2=3)
    near_low = add(s, "apples pears bananas grapes", q=-1.0)
    mid_high = add(s, "apples pears plums figs", q=1.0)
    far_mid = add(s, "apples rockets violins moons", q=0.0)
    query = "apples pears bananas grapes"
    sims = s.embedder.embed([query]) @ s.embedder.embed([m.question for m in (near_low, mid_high, far_mid)]).T
    qs = np.array([-1.0, 1.0, 0.0])
    expected = 0.5 * zscore(sims[0]) + 0.5 * np.clip(zscore(qs), -3, 3)
    order = [[near_low, mid_high, far_mid][i] for i in np.argsort(-expected, kind="stable")]
    assert s.retrieve(query) == order
    assert s.retrieve(query)[0] is mid_high  # high Q beats the nearest neighbour at λ = 0.5
    s0 = state(lam=0.0, k2=1)  # λ = 0 is pure similarity
    s0.keys, s0.memories = s.keys, s.memories
    assert s0.retrieve(query) == [near_low]


def test_phase_a_threshold_and_q_floor_filter_candidates():
    s = state(delta=0.5)
    close = add(s, "count the red apples in the basket", q=0.0)
    add(s, "violins and moons", q=5.0)
    assert s.retrieve("count the red apples in a basket") == [close]
    assert s.retrieve("completely unrelated words xyz") == []
    s.q_min_threshold = 0.5
    assert s.retrieve("count the red apples in a basket") == []


def test_epsilon_zero_is_deterministic_and_epsilon_one_explores():
    s = state(k2=1)
    for i in range(5):
        add(s, f"apples pears item{i}", q=float(i))
    picks0 = {id(s.retrieve("apples pears", 0.0, random.Random(i))[0]) for i in range(20)}
    picks1 = {id(s.retrieve("apples pears", 1.0, random.Random(i))[0]) for i in range(20)}
    assert len(picks0) == 1 and len(picks1) > 1


def test_memories_of_one_question_share_a_query_key_and_all_are_candidates():
    s = state(k1=1, k2=3)
    first = [add(s, "count the red apples in the basket", q=0.0) for _ in range(40)]
    other = add(s, "violins and moons in an orchestra", q=0.0)
    assert len(s.keys) == 2 and len(s.keys.items[0].memory_ids) == 40
    assert s.keys.items[1].memory_ids == [other.id]
    # phase A recalls the key, so every one of its 40 memories competes in phase B (round 1 recalled
    # only the k1 oldest memories, so later ones could never be injected)
    assert len(s.candidates("count the red apples in the basket")) == 40
    first[3].q, first[25].q, first[31].q = 1.0, 1.0, 1.0
    assert s.retrieve("count the red apples in the basket") == [first[31], first[25], first[3]]


def test_new_memory_joins_a_key_only_above_the_add_threshold():
    s = state(add_similarity_threshold=0.9)
    add(s, "apples pears bananas grapes", q=0.0)
    add(s, "apples pears bananas grapes", q=0.0)  # identical: cosine 1
    add(s, "apples pears plums figs", q=0.0)  # similar but < 0.9: its own key
    assert [len(k.memory_ids) for k in s.keys.items] == [2, 1]
    loose = state(add_similarity_threshold=0.0)
    for q in ("apples pears bananas grapes", "apples pears plums figs"):
        add(loose, q, q=0.0)
    assert len(loose.keys) == 1


def test_phase_b_ties_prefer_the_newest_memory():
    s = state(k2=2)
    mems = [add(s, "apples pears", q=0.0) for _ in range(6)]
    assert s.retrieve("apples pears") == [mems[5], mems[4]]


def test_official_tie_order_keeps_the_oldest_memory_and_the_oldest_key():
    """The official retrieve_query sorts keys and candidates with Python's stable sort: ties keep
    insertion order."""
    s = state(k2=2, tie_order="oldest")
    mems = [add(s, "apples pears", q=0.0) for _ in range(6)]
    assert s.retrieve("apples pears") == [mems[0], mems[1]]
    keys = state(k1=1, k2=1, add_similarity_threshold=1.1, tie_order="oldest")  # every memory its own key
    first = [add(keys, "apples pears", q=0.0) for _ in range(3)]
    assert keys.retrieve("apples pears") == [first[0]]
    keys.tie_order = "newest"
    assert keys.retrieve("apples pears") == [first[2]]


def test_fixed_similarity_normalisation_uses_the_constants_not_the_candidates():
    """With similarity alone deciding (λ = 0) both give the same order; with λ = 0.5 the fixed
    constants make the similarity term larger than the candidates' z-score does, so the nearest
    memory beats a higher Q."""
    query = "apples pears bananas grapes"
    for norm, winner in (("candidates", "mid_high"), ("fixed", "near_low")):
        s = state(k2=1, sim_norm=norm, sim_norm_mean=0.0, sim_norm_std=0.01)
        mems = {"near_low": add(s, query, q=-1.0), "mid_high": add(s, "apples pears plums figs", q=1.0),
                "far_mid": add(s, "apples rockets violins moons", q=0.0)}
        sims = s.embedder.embed([query]) @ s.embedder.embed([m.question for m in mems.values()]).T
        sim_z = sims[0] / 0.01 if norm == "fixed" else zscore(sims[0])
        score = 0.5 * sim_z + 0.5 * np.clip(zscore(np.array([-1.0, 1.0, 0.0])), -3, 3)
        assert list(mems)[int(np.argmax(score))] == winner
        assert s.retrieve(query) == [mems[winner]]


def test_delta_comparison_is_inclusive_as_the_official_code_or_strict():
    s = state(delta=1.0, add_similarity_threshold=2.0)
    same = add(s, "count the red apples", q=0.0)
    sim = float(s.embedder.embed(["count the red apples"])[0] @ s.embedder.embed(["count the red apples"])[0])
    s.delta = sim  # the key's cosine is exactly δ
    assert s.retrieve("count the red apples") == [same]
    s.delta_inclusive = False
    assert s.retrieve("count the red apples") == []


def test_learning_counts_attempts_and_writes_memories_with_aux_calls(run_one):
    outcome, attempts, summary = run_one("method=memrl", "method.embedder=hashing", "budget=17")
    assert outcome.status == "ok" and outcome.rollouts_used == 17
    learn = attempts[attempts.phase == "learn"]
    policy, aux = learn[learn.role == "policy"], learn[learn.role == "aux"]
    assert len(policy) == 17 and policy.counted_rollout.all()
    assert len(aux) == 17 and not aux.counted_rollout.any()  # one script or reflection per attempt
    assert set(aux.tag) <= {"script", "reflection"}
    assert (aux.tag == "script").sum() == policy.passed.sum()
    assert summary[summary.final].iloc[0].context_tokens_added > 0
    # train_size 5 < rollout_batch 25: a batch is one epoch (5, 5, 5, then the budget's last 2);
    # each batch's scripts and reflections share one aux call, sampled at their own temperatures
    assert policy.groupby("step").size().tolist() == [5, 5, 5, 2]
    assert aux.groupby("step").size().tolist() == [5, 5, 5, 2]
    assert set(aux[aux.tag == "script"].temperature) <= {0.0} and set(aux[aux.tag == "reflection"].temperature) <= {0.3}


def test_q_init_follows_the_outcome_and_injected_memories_keep_changing(run_one, tmp_path):
    import json

    outcome, attempts, _ = run_one("method=memrl", "method.embedder=hashing", "budget=80", "task.train_size=2")
    assert outcome.status == "ok"
    cell_dir = next((tmp_path / "sweep" / "cells").iterdir())
    memories = [json.loads(line) for line in (cell_dir / "memories.jsonl").read_text().splitlines()]
    assert len(memories) == 80 and [m["id"] for m in memories] == [f"m{i}" for i in range(80)]
    never_used = [m for m in memories if m["visits"] == 0]
    assert never_used and all(m["q"] == (1.0 if m["success"] else 0.0) for m in never_used)
    assert len({m["query_key"] for m in memories}) == 2  # one key per training question
    learn = attempts[(attempts.phase == "learn") & (attempts.role == "policy")]
    injected = {i for ids in learn.context_ids for i in ids}
    assert injected <= {m["id"] for m in memories}
    # 2 problems x 40 memories each: far more than k1 = 5 distinct memories reach the prompt
    assert len(injected) > 10
    late = {i for ids in learn.context_ids.iloc[-8:] for i in ids}
    assert any(int(i[1:]) >= 40 for i in late)  # memories written late in learning are injected
