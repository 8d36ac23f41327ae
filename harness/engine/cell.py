"""One cell: task x method x model x budget x seed -> attempts.parquet + summary rows.

A cell is identified by a content hash of its resolved config plus the code version, so a
finished cell (marked by `done.json`) is skipped on re-run, and a killed cell (no `done.json`) is
run again from the start: its rows are only written, atomically, once it has finished, so a kill
can leave neither duplicate nor half-written rows.
"""

from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from harness.backends import make_backend
from harness.backends.synced import SyncedPolicy
from harness.core.devices import model_gpus, placed, with_gpus
from harness.core.errors import redact
from harness.core.knobs import params_of
from harness.core.paths import no_links
from harness.core.registry import METHODS, TASKS
from harness.core.types import Backend, Problem, SamplingParams, Task, content_hash
from harness.engine.budget import AttemptRecord, BudgetMeter
from harness.engine.evaluate import EvalConfig, evaluate, summarize_attempts
from harness.engine.method import LearnContext, Learned
from harness.engine.provenance import (
    ID_KEYS,
    LEARNING_KEYS,
    code_version,
    package_versions,
    serving_keys,
    versions_text,
)
from harness.engine.records import attempts_frame, cell_damage, seal_cell, write_json, write_parquet, write_text

DEFAULT_MAX_TOKENS = 128  # completion cap of a task that declares none


@dataclass
class CellSpec:
    config: dict[str, Any]  # resolved config of this cell
    sweep_dir: Path
    cell_id: str = ""

    def __post_init__(self) -> None:
        if not self.cell_id:
            ident = {k: self.config.get(k) for k in ID_KEYS}
            if not METHODS.get(self.config["method"]["name"]).uses_rollouts:  # never sees the training set
                ident = {k: v for k, v in ident.items() if k not in LEARNING_KEYS}
                ident["task"] = {k: v for k, v in (ident["task"] or {}).items() if k != "train_size"}
            for key in ("model", "aux_model"):  # where a cell runs does not change what it computes
                section = ident[key]
                if isinstance(section, dict):
                    kept = {k: v for k, v in section.items() if k not in serving_keys(section)}
                    if isinstance(section.get("trainer"), dict):  # the twin a training cell trains in
                        trainer = section["trainer"]
                        kept["trainer"] = {k: v for k, v in trainer.items() if k not in serving_keys(trainer)}
                    ident[key] = kept
            if self.config.get("code_version_in_id", True):
                ident["code"] = code_version(self.config["task"]["name"], self.config["method"]["name"])
            self.cell_id = content_hash(ident, 16)

    @property
    def out_dir(self) -> Path:
        return self.sweep_dir / "cells" / self.cell_id

    @property
    def label(self) -> str:
        c = self.config
        return f"{c['task']['name']}/{c['method']['name']}/B{c['budget']}/s{c['seed']}"

    @property
    def done(self) -> bool:
        """Finished, and its files read (a damaged finished cell runs again)."""
        return (self.out_dir / "done.json").exists() and not cell_damage(self.out_dir)


@dataclass
class CellOutcome:
    cell_id: str
    label: str
    status: str  # "ok" | "skipped" | "failed"
    wall_s: float = 0.0
    rollouts_used: int = 0
    tokens: int = 0
    error: str = ""
    summary: list[dict[str, Any]] = field(default_factory=list)


def disjoint_splits(task: Task, train_size: int, test_size: int, seed: int,
                    test_seed: int) -> tuple[list[Problem], list[Problem]]:
    """Test problems, then training problems with every test id removed (asserted disjoint)."""
    test = task.problems("test", test_size, test_seed)
    test_ids = {p.id for p in test}
    pool = task.problems("train", train_size + test_size, seed)  # enough even if every test problem recurs
    train = [p for p in pool if p.id not in test_ids][:train_size]
    if len(train) < train_size:
        raise ValueError(f"task {task.name} could only produce {len(train)} training problems "
                         f"disjoint from the test set (asked for {train_size}); lower test_size")
    assert not test_ids & {p.id for p in train}, "train/test overlap"
    return train, test


def context_tokens_added(task: Task, learned: Learned, test: list[Problem]) -> float:
    """Mean prompt tokens the method adds to the task's base prompt, per test problem."""
    policy = learned.policy
    diffs = [policy.count_tokens(learned.render(p)) - policy.count_tokens(task.prompt(p)) for p in test]
    return float(sum(diffs) / len(diffs)) if diffs else 0.0


def build_task(cfg: dict[str, Any]) -> Task:
    return TASKS.get(cfg["task"]["name"])(**params_of(
        cfg["task"], drop=("name", "train_size", "test_size", "test_seed")))


def run_cell(spec: CellSpec, get_backend: Callable[[dict[str, Any]], Backend],
             logger: Any = None, on_progress: Callable[[int, str], None] | None = None) -> CellOutcome:
    """Run one cell to completion (or failure). Never raises for errors inside the cell."""
    if spec.done:
        return CellOutcome(spec.cell_id, spec.label, "skipped")
    out = spec.out_dir
    try:
        no_links(out, spec.sweep_dir)
    except ValueError as exc:  # nothing is written (a status.json would land in the link's target)
        return CellOutcome(spec.cell_id, spec.label, "failed", error=str(exc))
    cfg = spec.config
    start = time.perf_counter()
    meter = BudgetMeter(cfg["budget"])
    try:  # every write of the cell is in here: a disk error fails this cell, not the sweep
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("done.json", "attempts.parquet", "summary.parquet", "status.json"):
            (out / stale).unlink(missing_ok=True)
        write_json({"cell_id": spec.cell_id, "label": spec.label, "config": cfg, "versions": package_versions()},
                   out / "config.json")
        write_json({"status": "running", "started": time.time()}, out / "status.json")
        summary, tokens = _run(spec, cfg, meter, get_backend, logger, on_progress, start)
        wall = time.perf_counter() - start
        write_json({"status": "ok", "wall_s": wall, "rollouts_used": meter.rollouts_used}, out / "status.json")
        write_json({"cell_id": spec.cell_id, "wall_s": wall, "sha256": seal_cell(out)}, out / "done.json")
    except KeyboardInterrupt:
        _try_write({"status": "interrupted", "rollouts_used": meter.rollouts_used,
                    "wall_s": time.perf_counter() - start}, out / "status.json")
        raise
    except Exception as exc:
        err = redact(f"{type(exc).__name__}: {exc}")
        _try_write({"status": "failed", "error": err, "traceback": redact(traceback.format_exc()),
                    "rollouts_used": meter.rollouts_used}, out / "status.json")
        if logger is not None:
            logger.finish(spec, "failed")
        return CellOutcome(spec.cell_id, spec.label, "failed", time.perf_counter() - start,
                           meter.rollouts_used, error=err)
    if logger is not None:
        logger.finish(spec, "ok")
    return CellOutcome(spec.cell_id, spec.label, "ok", wall, meter.rollouts_used, tokens, summary=summary)


def _try_write(obj: dict[str, Any], path: Path) -> None:
    """The status of a cell that already failed: best effort (the disk may be what failed)."""
    with contextlib.suppress(OSError):
        write_json(obj, path)


def _run(spec: CellSpec, cfg: dict[str, Any], meter: BudgetMeter, get_backend, logger, on_progress,
         start: float) -> tuple[list[dict[str, Any]], int]:
    task = build_task(cfg)
    tcfg = cfg["task"]
    train, test = disjoint_splits(task, tcfg["train_size"], tcfg["test_size"], cfg["seed"],
                                  tcfg.get("test_seed", 0))
    described = task.describe()
    write_json({**described, "example_prompt": task.prompt(test[0]), "train_ids": [p.id for p in train],
                "test_ids": [p.id for p in test]}, spec.out_dir / "task.json")
    t_load = time.perf_counter()
    gpus = model_gpus(cfg)  # the policy on the cell's first GPUs, an aux model on the next (in its own process)
    backend = get_backend(placed(cfg, "model"))
    aux_backend = get_backend(placed(cfg, "aux_model")) if cfg.get("aux_model") else None
    for loaded in (backend, aux_backend):  # a cached backend keeps weights, never an earlier cell's state
        reset = getattr(loaded, "reset", None)
        if reset is not None:
            reset()
    synced = None
    if cfg["model"].get("trainer"):  # a weight-training cell: trained in transformers, generated on the sweep's engine
        trainer = make_backend(with_gpus(cfg["model"]["trainer"], gpus["model"]))  # beside the engine
        synced = backend = SyncedPolicy(backend, trainer)  # type: ignore[arg-type]
    seconds = {"load_s": time.perf_counter() - t_load, "eval_s": 0.0}  # where the wall time goes
    result = _learn_and_evaluate(spec, cfg, meter, task, train, test, described, backend, aux_backend,
                                 seconds, logger, on_progress, start)
    if synced is not None:  # the engine's own weights back before the next cell (a failed cell's engine is
        synced.restore()    # dropped by the launcher instead: harness/runner/launchers.py release_after)
    return result


def _learn_and_evaluate(spec: CellSpec, cfg: dict[str, Any], meter: BudgetMeter, task: Task,
                        train: list[Problem], test: list[Problem], described: dict[str, Any], backend: Backend,
                        aux_backend: Backend | None, seconds: dict[str, float], logger, on_progress,
                        start: float) -> tuple[list[dict[str, Any]], int]:
    tcfg = cfg["task"]
    method = METHODS.get(cfg["method"]["name"])(**params_of(cfg["method"]))
    max_tokens = described.get("max_tokens", DEFAULT_MAX_TOKENS)
    eval_cfg = EvalConfig(**cfg["eval"])
    eval_cfg = replace(eval_cfg, max_tokens=eval_cfg.max_tokens or max_tokens)
    report_k = max(eval_cfg.k or [eval_cfg.n_samples])
    lcfg = cfg["learn"]
    sampling = SamplingParams(temperature=lcfg["temperature"], top_p=lcfg["top_p"],
                              max_tokens=lcfg.get("max_tokens") or max_tokens, seed=cfg["seed"])
    baselines = task.chance_baseline(test)
    cell_fields = {"cell_id": spec.cell_id, "task": tcfg["name"], "method": cfg["method"]["name"],
                   "model": cfg["model"].get("label", cfg["model"]["backend"]),
                   "budget": cfg["budget"], "seed": cfg["seed"], "engine": backend.engine}
    eval_rows: list[AttemptRecord] = []
    summary: list[dict[str, Any]] = []
    if logger is not None:
        logger.start(spec, backend.engine)

    def evaluate_fn(learned: Learned, checkpoint: int, final: bool = False) -> None:
        t_eval = time.perf_counter()
        rows = evaluate(task, learned, test, eval_cfg, checkpoint, progress=on_progress, step=len(summary))
        seconds["eval_s"] += time.perf_counter() - t_eval
        eval_rows.extend(rows)
        frame = pd.DataFrame([r.as_row() for r in rows])
        metrics = summarize_attempts(frame)
        row = {**cell_fields, "checkpoint": checkpoint, "rollouts_used": meter.rollouts_used,
               **metrics, "learn_policy_tokens": meter.policy_tokens,
               "learn_aux_tokens": meter.aux_tokens,
               "context_tokens_added": context_tokens_added(task, learned, test),
               "wall_s": time.perf_counter() - start, **seconds, "status": "ok", "final": final,
               "report_k": report_k, "versions": versions_text(package_versions()),
               "train_size": len(train), "feedback": tcfg.get("feedback", "binary"),
               **{f"baseline_{k}": v for k, v in baselines.items()}}
        summary.append(row)
        if logger is not None:
            logger.log_checkpoint(spec, row, frame)

    ctx = LearnContext(task=task, backend=backend, aux_backend=aux_backend, meter=meter, sampling=sampling,
                       cell_dir=spec.out_dir, progress=on_progress,
                       seed=cfg["seed"], checkpoint_fractions=tuple(sorted(cfg.get("checkpoints") or ())),
                       evaluate_fn=evaluate_fn,
                       on_log=None if logger is None else lambda metrics: logger.log_learning(spec, metrics))
    learned = method.learn(train, ctx)
    evaluate_fn(learned, meter.rollouts_used, final=True)
    if meter.rollouts_used > meter.budget:  # the meter makes this impossible; guard the invariant
        raise AssertionError(f"budget overrun: {meter.rollouts_used} > {meter.budget}")
    rows = [r.as_row() for r in ctx.records + eval_rows]
    write_parquet(attempts_frame(rows, cell_fields), spec.out_dir / "attempts.parquet")
    write_parquet(pd.DataFrame(summary), spec.out_dir / "summary.parquet")
    if ctx.log_rows:  # the learning curves behind the checkpoints (LearnContext.log)
        write_text("".join(json.dumps(r) + "\n" for r in ctx.log_rows), spec.out_dir / "train_log.jsonl")
    tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows)
    return summary, tokens
