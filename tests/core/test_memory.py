"""The plan-time trainer memory check (issue 32): the estimate's arithmetic, the one-line refusal
naming the two knobs that fix it, the fractional-GPU share, and the full paper configs fitting
their named models only with the micro-batches they set."""

from __future__ import annotations

import pytest

from harness.core.memory import (
    GIB,
    OVERHEAD_GIB,
    ModelShape,
    TrainingPass,
    check_fractional_share,
    check_trainer_memory,
    trainer_gib,
    trainer_room_gib,
)
from harness.core.registry import METHODS
from harness.engine.cell import DEFAULT_MAX_TOKENS

SHAPE = {"params": 1e9, "layers": 10, "hidden": 1000, "intermediate": 3000, "kv": 500}


def test_the_estimate_is_weights_trainable_state_and_checkpointed_activations():
    shape = ModelShape(**SHAPE)
    lora = 8 * 10 * ((1000 + 1000) * 2 + (1000 + 500) * 2 + (1000 + 3000) * 3)  # q, o; k, v; gate, up, down
    assert shape.lora_params(8) == lora
    p = TrainingPass(rollouts=4, tokens_per_rollout=1000, lora_rank=8)
    tokens = 4 * 1000
    layer = tokens * 2 * (8 * 1000 + 4 * 3000)  # one layer's activations, recomputed in backward
    expected = (1e9 * 2 + lora * 16 + tokens * 10 * 1000 * 2 + layer) / GIB + OVERHEAD_GIB
    assert trainer_gib(shape, p) == pytest.approx(expected)
    full = TrainingPass(4, 1000, lora_rank=0)  # a full fine-tune keeps optimizer state for every weight
    assert trainer_gib(shape, full) - trainer_gib(shape, p) == pytest.approx((1e9 - lora) * 16 / GIB)
    no_ckpt = TrainingPass(4, 1000, 8, checkpointing=False)
    assert trainer_gib(shape, no_ckpt) - trainer_gib(shape, p) == pytest.approx((9 * layer - tokens * 10 * 2000) / GIB)
    generating = TrainingPass(4, 1000, 8, generation_batch=16)  # an hf model's own KV cache: K and V in bf16
    assert trainer_gib(shape, generating) - trainer_gib(shape, p) == pytest.approx(16 * 1000 * 10 * 500 * 4 / GIB)


def test_the_trainer_gets_what_the_engine_leaves():
    engine = {"backend": "vllm", "gpu_memory_utilization": 0.7, "resources": {"num_gpus": 1, "gpu_memory_gib": 80}}
    assert trainer_room_gib(engine) == pytest.approx(80 * 0.3)
    hf = {"backend": "hf", "resources": {"num_gpus": 2, "gpu_memory_gib": 40}}
    assert trainer_room_gib(hf) == 80  # device_map spreads the model over every reserved GPU


def test_a_trainer_that_does_not_fit_beside_the_engine_is_refused_in_one_line():
    model = {"backend": "vllm", "gpu_memory_utilization": 0.85, "shape": SHAPE,
             "resources": {"num_gpus": 1, "gpu_memory_gib": 80}}
    big = TrainingPass(rollouts=64, tokens_per_rollout=4096, lora_rank=16)
    with pytest.raises(ValueError) as err:
        check_trainer_memory(model, big)
    message = str(err.value)
    assert "\n" not in message
    assert "model.gpu_memory_utilization=0.85" in message and "method.micro_batch_size" in message
    check_trainer_memory(model, TrainingPass(rollouts=1, tokens_per_rollout=4096, lora_rank=16))  # fits
    check_trainer_memory({**model, "resources": {"num_gpus": 0}}, big)  # trains on the CPU: not checked
    check_trainer_memory({k: v for k, v in model.items() if k != "shape"}, big)  # size unknown: not checked
    check_trainer_memory(model, None)  # a method that trains no weights
    hf = {"backend": "hf", "batch_size": 16, "shape": SHAPE, "resources": {"num_gpus": 1, "gpu_memory_gib": 8}}
    with pytest.raises(ValueError) as err:
        check_trainer_memory(hf, big)
    assert "gpu_memory_utilization" not in str(err.value)  # hf has no engine share to lower
    assert "method.micro_batch_size" in str(err.value) and "model.batch_size" in str(err.value)


def test_fractional_gpu_cells_must_claim_at_most_their_share():
    half = {"backend": "vllm", "gpu_memory_utilization": 0.85, "resources": {"num_gpus": 0.5}}
    with pytest.raises(ValueError, match=r"gpu_memory_utilization=0.85 > model.resources.num_gpus=0.5: 2 such"):
        check_fractional_share(half)
    check_fractional_share({**half, "gpu_memory_utilization": 0.45})
    check_fractional_share({**half, "resources": {"num_gpus": 1}})


def test_the_sweep_refuses_an_unfitting_trainer_before_writing_anything(tmp_path):
    from harness.core.errors import UserError
    from harness.runner.plan import plan

    args = ["method=grpo", "budget=16", "model.resources.num_gpus=1", f"results_dir={tmp_path}"]
    with pytest.raises(UserError, match=r"model\.gpu_memory_utilization=0\.99.*method\.micro_batch_size"):
        plan(args + ["model.gpu_memory_utilization=0.99"])
    plan(args)  # the 135M trainer fits beside the default 0.85 engine
    assert not any(tmp_path.iterdir())


def full_scale_training_cells(paper_name: str, **method_changes):
    from harness.config.compose import expand_grid
    from harness.config.paper import block_groups, load_paper, scale_of, sweep_name
    from harness.core.knobs import params_of
    from harness.runner.plan import compose_cell

    paper = load_paper(paper_name)
    scale = scale_of(paper, "full")
    for block_name, block in scale["blocks"].items():
        for _, overrides in block_groups(scale, block, sweep_name(paper, "full", block_name)):
            for cell in expand_grid(overrides):
                cfg = compose_cell(cell)
                knobs = params_of(cfg["method"])
                if not METHODS.get(cfg["method"]["name"]).mutates_policy:
                    continue
                method = METHODS.get(cfg["method"]["name"])(**{**knobs, **method_changes})
                max_tokens = cfg["learn"].get("max_tokens") or cfg["task"].get("max_tokens", DEFAULT_MAX_TOKENS)
                need = method.training_pass(int(max_tokens))
                if need is not None:
                    yield cfg, need


@pytest.mark.parametrize("paper_name", ["lte", "rrr", "core"])
def test_full_paper_configs_fit_their_named_models(paper_name):
    cells = list(full_scale_training_cells(paper_name))
    assert cells, "every seed paper trains weights at full scale"
    for cfg, need in cells:
        assert cfg["model"].get("shape") or cfg["model"]["trainer"].get("shape"), cfg["model"]["label"]
        assert cfg["method"]["micro_batch_size"] is not None
        check_trainer_memory(cfg["model"], need)


def test_lte_full_would_not_fit_with_a_whole_step_per_pass():
    cfg, need = next(full_scale_training_cells("lte", micro_batch_size=None))
    with pytest.raises(ValueError, match="128 rollouts x 10240 tokens"):
        check_trainer_memory(cfg["model"], need)
