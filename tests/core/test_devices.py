"""GPU readiness, checked on any machine: CUDA availability, device counts and capabilities are
patched, so these run (and guard) where no GPU is (the `gpu` tests run the real thing)."""

from __future__ import annotations

import re
import sys
import types

import pytest

from harness.core import devices
from harness.core.paths import REPO


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this process sees `n` GPUs (CUDA not yet initialised); returns a setter."""
    import torch

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "nvidia_driver", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)

    def see(n: int) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
    return see


# -- the environment is set before any CUDA probe ----------------------------------------------------------------

def test_the_cuda_probe_sets_the_nvml_check_before_it_runs(monkeypatch):
    """torch's default probe initialises CUDA, and a vLLM engine forked after it dies; with
    PYTORCH_NVML_BASED_CUDA_CHECK=1 set first, it does not."""
    import torch

    seen = []
    monkeypatch.delenv("PYTORCH_NVML_BASED_CUDA_CHECK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: seen.append(__import__("os").environ.get(
        "PYTORCH_NVML_BASED_CUDA_CHECK")) or False)
    from harness.backends import vllm_offline

    assert devices.cuda_available() is False and vllm_offline.cuda_available() is False
    assert seen == ["1", "1"]


def test_no_project_code_probes_cuda_around_the_nvml_check():
    """Every CUDA probe (the engine, methods, tasks, benchmarks, the test suite's own skip) goes
    through harness.devices.cuda_available."""
    probe = re.compile(r"torch\.cuda\.(is_available|device_count)\(")
    offenders = [str(p.relative_to(REPO)) for d in ("harness", "methods", "tasks", "bench", "tests")
                 for p in (REPO / d).rglob("*.py")
                 if p.name not in ("devices.py", "test_devices.py", "test_gpu.py") and probe.search(p.read_text())]
    assert offenders == []


# -- each cell process sees the GPUs its models reserve -------------------------------------------------------------

def test_local_sweep_process_sees_its_largest_reservation_and_at_least_one_gpu(gpus, cell_config, tmp_path,
                                                                                 monkeypatch):
    import os

    from harness.engine.cell import CellSpec
    from harness.runner import launchers
    from harness.runner.launchers import local_gpus

    gpus(8)
    cpu_sized = CellSpec(cell_config(), tmp_path)
    two = CellSpec(cell_config("model.resources.num_gpus=1", "model@aux_model=mock", "aux_model.resources.num_gpus=1"),
                   tmp_path)
    assert local_gpus([cpu_sized]) == 1 and local_gpus([cpu_sized, two]) == 2
    launchers.run_local([cpu_sized], {"name": "none"}, report=lambda o: None)  # narrows before its first cell
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")  # a narrower set chosen by the user (or Ray) is narrowed within
    assert devices.narrow_visible(2) == "3,5"
    assert devices.narrow_visible(4) == "3,5"  # never widened


def test_narrowing_after_cuda_started_changes_nothing(gpus, monkeypatch):
    import os

    import torch

    gpus(8)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert devices.narrow_visible(1) is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_a_cpu_machine_is_left_alone(monkeypatch):
    import os

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "nvidia_driver", lambda: False)
    assert devices.narrow_visible(1) is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_a_ray_worker_that_reserves_no_gpu_sees_none(gpus, monkeypatch):
    """Ray 2.60 leaves every GPU visible to an actor with num_gpus=0: the worker hides them itself."""
    import os

    from harness.runner.cluster import CellWorker

    gpus(8)
    CellWorker({"name": "none"}, num_gpus=0)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "6")  # what Ray sets for num_gpus=1: kept
    CellWorker({"name": "none"}, num_gpus=1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "6"


def test_policy_and_aux_model_get_gpus_of_their_own(cell_config):
    both = cell_config("model.resources.num_gpus=2", "model@aux_model=mock", "aux_model.resources.num_gpus=1")
    assert devices.model_gpus(both) == {"model": [0, 1], "aux_model": [2]}
    assert devices.model_gpus(cell_config()) == {"model": None, "aux_model": None}
    frac = cell_config("model.resources.num_gpus=0.5")  # a Ray share of one GPU
    assert devices.model_gpus(frac)["model"] == [0]
    assert devices.with_gpus({"backend": "hf"}, [2]) == {"backend": "hf", "gpus": [2]}
    assert devices.with_gpus({"backend": "mock"}, [2]) == {"backend": "mock"}  # no GPU knob
    assert devices.with_gpus({"backend": "hf", "gpus": [5]}, [2])["gpus"] == [5]  # the user's choice wins


def test_hf_model_goes_to_its_own_gpu_or_is_split_across_its_gpus(gpus, monkeypatch):
    """One reserved GPU: the whole model moves there (not to cuda:0); several: device_map over exactly
    those; dtype from the device: fp16 where bf16 is not supported (V100, T4)."""
    import torch
    import transformers

    from harness.backends import hf

    gpus(4)
    loads = []

    class Fake:
        def __init__(self, **kwargs):
            self.kwargs, self.moved = kwargs, None

        def to(self, device):
            self.moved = device

        def eval(self):
            pass

    class FakeAuto:
        @staticmethod
        def from_pretrained(source, **kwargs):
            loads.append(Fake(**kwargs))
            return loads[-1]

    tok = types.SimpleNamespace(pad_token="<pad>", padding_side="right")
    monkeypatch.setattr(transformers, "AutoModelForCausalLM", FakeAuto)
    monkeypatch.setattr(transformers, "AutoTokenizer", types.SimpleNamespace(from_pretrained=lambda s: tok))
    monkeypatch.setattr(devices, "bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=80 << 30))
    hf.load_model_and_tokenizer(path="/w", gpus=[1])
    assert loads[-1].moved == "cuda:1" and loads[-1].kwargs["dtype"] == torch.float16
    hf.load_model_and_tokenizer(path="/w", gpus=[1, 2])
    assert loads[-1].kwargs["device_map"] == "auto" and set(loads[-1].kwargs["max_memory"]) == {1, 2}
    assert loads[-1].moved is None
    monkeypatch.setattr(devices, "bf16_supported", lambda: True)
    hf.load_model_and_tokenizer(path="/w")
    assert loads[-1].moved == "cuda:0" and loads[-1].kwargs["dtype"] == torch.bfloat16
    assert devices.auto_dtype(cuda=False, bf16=False) == "float32"


def test_vllm_engine_starts_on_the_gpus_the_cell_gives_it(monkeypatch):
    """The engine process inherits CUDA_VISIBLE_DEVICES at start: narrowed to the model's GPUs then,
    restored after; CUDA graphs on a GPU (enforce_eager null), eager on the CPU."""
    import os

    from harness.backends import vllm_offline

    started = []

    class FakeLLM:
        def __init__(self, **kwargs):
            started.append((os.environ.get("CUDA_VISIBLE_DEVICES"), kwargs))

        def get_tokenizer(self):
            return None

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    monkeypatch.setattr(vllm_offline, "cuda_available", lambda: True)
    vllm_offline.VLLMBackend(path="/w", tensor_parallel_size=2, gpus=[1, 2])
    env, kwargs = started[-1]
    assert env == "5,6" and os.environ["CUDA_VISIBLE_DEVICES"] == "4,5,6,7"
    assert kwargs["enforce_eager"] is False and kwargs["tensor_parallel_size"] == 2
    monkeypatch.setattr(vllm_offline, "cuda_available", lambda: False)
    vllm_offline.VLLMBackend(path="/w")
    assert started[-1][1]["enforce_eager"] is True


# -- plan-time reservation checks -------------------------------------------------------------------------------------

def test_plan_refuses_tensor_parallelism_that_does_not_match_the_reservation():
    from harness.core.errors import UserError
    from harness.runner.plan import plan

    base = ["model=qwen3_8b_vllm", "method=zero_shot", "budget=1", "task.test_size=5", "task.train_size=2"]
    with pytest.raises(UserError, match=r"model.tensor_parallel_size=2 but model.resources.num_gpus=1; valid: equal"):
        plan(base + ["model.tensor_parallel_size=2"])
    plan(base + ["model.tensor_parallel_size=2", "model.resources.num_gpus=2"])


def test_plan_refuses_vllm_engines_that_overfill_a_shared_gpu():
    from harness.core.errors import UserError
    from harness.runner.plan import plan

    base = ["model=qwen3_8b_vllm", "model@aux_model=qwen3_8b_vllm", "method=zero_shot", "budget=1",
            "task.test_size=5", "task.train_size=2"]
    with pytest.raises(UserError, match=r"model.gpu_memory_utilization=0.85 \+ aux_model.gpu_memory_utilization="
                                        r"0.85 = 1.7 > 1 on the same GPU"):
        plan(base + ["aux_model.resources.num_gpus=0"])
    plan(base)  # the aux model reserves a GPU of its own
    plan(base + ["aux_model.resources.num_gpus=0", "model.gpu_memory_utilization=0.5",
                 "aux_model.gpu_memory_utilization=0.4"])


# -- GPU memory: engines are freed, not left for garbage collection ---------------------------------------------

class Engine:
    def __init__(self, **cfg):
        self.cfg, self.closed = cfg, False

    def close(self):
        self.closed = True


def test_evicted_and_dropped_engines_are_closed(monkeypatch):
    from harness.runner import host as launchers

    monkeypatch.setattr(launchers, "make_backend", lambda cfg: Engine(**cfg))
    cache = launchers.BackendCache(size=1)
    first = cache({"backend": "x", "seed": 1})
    second = cache({"backend": "x", "seed": 2})
    assert first.closed and not second.closed
    cache.drop({"backend": "x", "seed": 2})
    assert second.closed


def test_a_training_cell_on_a_gpu_frees_the_cached_engines_it_does_not_use(cell_config, tmp_path, monkeypatch):
    from harness.engine.cell import CellSpec
    from harness.runner import host as launchers

    monkeypatch.setattr(launchers, "make_backend", lambda cfg: Engine(**cfg))
    spec = CellSpec(cell_config("method=grpo"), tmp_path)
    for on_gpu, freed in ((False, False), (True, True)):
        cache = launchers.BackendCache()
        engine = cache({"backend": "vllm", "path": "/prompt-level-engine"})
        policy = cache(launchers.placed(spec.config, "model"))
        monkeypatch.setattr(launchers, "cuda_available", lambda on_gpu=on_gpu: on_gpu)
        launchers.make_room_for(cache, spec)
        assert engine.closed == freed and not policy.closed  # on the CPU the engine stays loaded


# -- training on a GPU: LTE's mask, micro-batches, precision, the rollout engine's share ------------------------------

def test_lte_row_flags_live_on_the_batch_device():
    """Device-generic: TRL's batch on the `meta` device stands in for CUDA; the off-policy mask and
    behaviour log-probs must follow it, or torch.where in the loss mixes devices."""
    import torch

    from methods.lte import mixed_policy_loss, with_row_flags

    out = {"completion_ids": torch.zeros(2, 3, dtype=torch.long, device="meta")}
    out = with_row_flags(out, ((True, [-0.5, -0.25]), (False, [])))
    assert out["off_policy"].device.type == "meta" and out["behaviour_logps"].device.type == "meta"
    logps = torch.zeros(2, 3, device="meta")
    loss = mixed_policy_loss(logps, out["behaviour_logps"], out["off_policy"], torch.ones(2, device="meta"),
                             torch.ones(2, 3, device="meta"), 0.2, 0.2, 0.1)
    assert loss.device.type == "meta"


def test_micro_batches_split_a_step_into_passes_that_add_up():
    from methods.common.policy_training import micro_batches

    assert micro_batches(8, None) == (8, 1)  # the whole step at once (the CPU default)
    assert micro_batches(8, 2) == (2, 4)
    assert micro_batches(128, 8) == (8, 16)  # LTE's full scale: 128 sequences, 8 per pass
    assert micro_batches(6, 4) == (2, 3)  # RRR's short step: the largest chunk that divides it


def test_trl_trains_one_generation_per_step_in_micro_batches():
    """The TRL arguments the knob becomes: one rollout-function call per optimizer step, trained in
    `passes` chunks (steps_per_generation = gradient_accumulation_steps)."""
    from methods.common.policy_training import PolicyGradientKnobs, grpo_config

    knobs = PolicyGradientKnobs(group_size=4, prompts_per_step=2, micro_batch_size=2, temperature=1.0, top_p=1.0,
                                max_completion_length=8)
    args = grpo_config(knobs, types.SimpleNamespace(seed=0), steps=3, output_dir="/tmp/sibench-micro")
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.steps_per_generation,
            args.generation_batch_size) == (2, 4, 4, 8)


def test_a_micro_batch_that_does_not_divide_a_step_is_refused_at_plan_time():
    from harness.core.errors import UserError
    from harness.runner.plan import plan

    with pytest.raises(UserError, match=r"method.micro_batch_size=3 does not divide prompts_per_step × group_size = "
                                        r"8; valid: 1, 2, 4, 8"):
        plan(["method=grpo", "method.micro_batch_size=3", "budget=8"])


def test_trainer_precision_and_checkpointing_follow_the_device():
    from methods.common.policy_training import PolicyGradientKnobs, device_args

    knobs = PolicyGradientKnobs()
    assert device_args(knobs, cuda=True, bf16=True) == dict(use_cpu=False, bf16=True, fp16=False,
                                                            gradient_checkpointing=True)
    assert device_args(knobs, cuda=True, bf16=False)["fp16"] and not device_args(knobs, True, False)["bf16"]  # V100
    assert device_args(knobs, cuda=False, bf16=False) == dict(use_cpu=True, bf16=False, fp16=False,
                                                              gradient_checkpointing=False)
    off = PolicyGradientKnobs(gradient_checkpointing=False)
    assert device_args(off, cuda=True, bf16=True)["gradient_checkpointing"] is False


def test_a_cell_builds_its_policy_and_aux_backends_on_their_own_gpus(cell_config, tmp_path, monkeypatch):
    from harness.backends import make_backend
    from harness.engine.cell import CellSpec, run_cell

    monkeypatch.setattr(devices, "GPU_BACKENDS", ("mock",))  # let the mock stand in for a GPU backend
    built = []

    def build(model_cfg):
        built.append(model_cfg.get("gpus"))
        return make_backend({k: v for k, v in model_cfg.items() if k != "gpus"})

    spec = CellSpec(cell_config("model.resources.num_gpus=1", "model@aux_model=mock", "aux_model.resources.num_gpus=1",
                                "method=zero_shot", "budget=1"), tmp_path)
    assert run_cell(spec, build).status == "ok"
    assert built == [[0], [1]]


def test_lte_trains_in_micro_batches_with_its_row_flags_split_along(run_one, tiny_hf, tmp_path):
    """A step's rollouts (hinted extras included) train in chunks of 4: TRL splits the off-policy mask
    and behaviour log-probs with the batch, and the rollout function runs once per optimizer step."""
    import json

    outcome, attempts, _ = run_one("method=lte", "budget=16", "method.micro_batch_size=4", "task.max_tokens=6",
                                   "task.test_size=2", "eval.n_samples=1", backend=tiny_hf())
    assert outcome.status == "ok", outcome.error
    log = [json.loads(x) for x in (tmp_path / "sweep" / "cells" / outcome.cell_id / "train_log.jsonl").read_text()
           .splitlines()]
    steps = [r["step"] for r in log if "step_seconds" in r]
    learn = attempts[attempts.phase == "learn"]
    assert steps == list(range(1, len(steps) + 1)) and learn.step.nunique() >= len(steps)


def test_a_gpu_reservation_carries_over_to_the_training_twin():
    """`model.resources.num_gpus=1` on the default (vLLM) model also reserves a GPU for the GRPO cells'
    transformers trainer (their twin, beside the engine); the twin-less knobs stay with the engine."""
    from harness.runner.plan import plan

    _, specs, _ = plan(["method=zero_shot,grpo", "model.resources.num_gpus=1", "model.gpu_memory_utilization=0.5",
                        "budget=8"])
    by_method = {s.config["method"]["name"]: s.config["model"] for s in specs}
    trainer = by_method["grpo"].get("trainer") or by_method["grpo"]  # the twin itself where vLLM is missing
    assert trainer["backend"] == "hf" and trainer["resources"]["num_gpus"] == 1
    assert by_method["zero_shot"]["resources"]["num_gpus"] == 1


def test_an_aux_model_on_gpus_of_its_own_runs_in_a_process_that_sees_only_them(cell_config, monkeypatch):
    """Will-break 2 of issue 32: inside the cell's process CUDA_VISIBLE_DEVICES no longer counts once
    the policy's engine started, so an aux model that reserves a GPU of its own is built in a
    spawned child whose CUDA_VISIBLE_DEVICES lists that GPU's physical id (renumbered 0 there)."""
    import os

    from harness.backends import make_backend
    from harness.backends.own_process import OwnProcessBackend
    from harness.core.types import GenerationRequest, SamplingParams

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # what the launcher left this cell: two GPUs
    config = cell_config("model.resources.num_gpus=1", "model@aux_model=mock", "aux_model.resources.num_gpus=1")
    assert "own_process" not in devices.placed(config, "model")  # the policy stays in the cell's process
    aux_cfg = devices.placed(config, "aux_model")
    assert aux_cfg["own_process"] == ["5"]
    aux = make_backend(aux_cfg)
    try:
        assert isinstance(aux, OwnProcessBackend)
        assert aux.visible_devices == "5" and os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
        requests = [GenerationRequest(messages=({"role": "user", "content": f"reflect {i}"},),
                                      params=SamplingParams(n=2, max_tokens=8, seed=i)) for i in range(3)]
        in_process = make_backend({k: v for k, v in aux_cfg.items() if k != "own_process"})
        def texts(generations):
            return [[(g.text, g.completion_tokens, g.finish_reason) for g in gens] for gens in generations]
        assert texts(aux.generate(requests)) == texts(in_process.generate(requests))
        assert aux.name == in_process.name and aux.engine == in_process.engine
    finally:
        aux.close()
    assert not aux._process.is_alive()
