"""Records say what the model saw: every attempt row carries the exact prompt, the sampling
settings, a learn step that makes (phase, step, problem_id, sample_idx, tag) unique, and the ids
of the memories/episodes/insights injected, matching the stores the methods write."""

from __future__ import annotations

import json

import pytest

KEY = ["phase", "step", "problem_id", "sample_idx", "tag"]


@pytest.mark.parametrize("method", ["zero_shot", "core", "episodic_rag", "memrl", "gepa"])
def test_rows_carry_prompt_sampling_and_a_unique_key(run_one, method):
    extra = {"core": ["method.embedder=hashing", "method.baseline_samples=2"],
             "episodic_rag": ["method.embedder=hashing"], "memrl": ["method.embedder=hashing"]}.get(method, [])
    outcome, attempts, summary = run_one(f"method={method}", "budget=40", "learn.temperature=0.55", "learn.top_p=0.9",
                                         "eval.temperature=0.35", "checkpoints=[0.5]", *extra)
    assert outcome.status == "ok", outcome.error
    assert not attempts.duplicated(KEY).any()
    for raw in attempts.prompt:
        messages = json.loads(raw)
        assert messages and all(set(m) == {"role", "content"} for m in messages)
    rollouts = attempts[attempts.counted_rollout]
    assert (rollouts.temperature == 0.55).all() and (rollouts.top_p == 0.9).all()
    sampled = attempts[attempts.tag == "sample"]
    assert (sampled.temperature == 0.35).all() and (attempts[attempts.tag == "greedy"].temperature == 0).all()
    # eval rows are stamped with the evaluation index: one per summary row (mid-learning + final)
    assert sorted(attempts[attempts.phase == "eval"].step.unique()) == list(range(len(summary)))
    assert len(summary) == (1 if method == "zero_shot" else 2)


def test_eval_prompt_and_context_ids_are_what_the_learned_state_renders(run_one, tmp_path):
    outcome, attempts, _ = run_one("method=episodic_rag", "method.embedder=hashing", "budget=30")
    final = attempts[(attempts.phase == "eval") & (attempts.step == attempts.step.max())]
    cell = tmp_path / "sweep" / "cells" / outcome.cell_id
    stored = {json.loads(line)["id"]: json.loads(line) for line in (cell / "episodes.jsonl").read_text().splitlines()}
    assert len(stored) == 30
    for prompt, ids in zip(final.prompt, final.context_ids, strict=True):
        assert len(ids) == 4 and set(ids) <= set(stored)
        text = json.loads(prompt)[-1]["content"]
        for i in ids:  # each injected episode's attempt text is in the prompt the model got
            assert stored[i]["completion"][:40] in text
