"""Fan-out of cells: `local` (sequential, one generating process at a time) and `ray`.

Two generating processes on a 2-core machine run 5-17x slower, so `local` runs cells one after
another in this process and reuses the loaded model between cells. `ray` runs cells on a pool of
Ray actors, one per slot the cluster has for the model's resources (`model.resources`, e.g. one
GPU each), each keeping its engine loaded across its cells, after checking that the cluster can
ever satisfy them (Ray would otherwise wait forever); results come back to the driver through Ray
and lost nodes cost retries (harness/cluster.py). `launcher.address` joins an existing cluster.
One failing cell never stops the others; `launcher.cell_timeout_s` bounds each cell.
"""

from __future__ import annotations

import signal
import time
import traceback
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from harness.backends import make_backend
from harness.cell import CellOutcome, CellSpec, run_cell
from harness.config import UserError, params_of
from harness.devices import cell_gpus, cuda_available, free_gpu_memory, model_gpus, narrow_visible
from harness.knobs import knob
from harness.loggers import make_logger
from harness.records import write_json
from harness.registry import METHODS, register_launcher
from harness.timeouts import raise_after
from harness.types import Backend, content_hash


class BackendCache:
    """Keeps the `size` most recently used backends (a cell's policy and its aux model) so
    consecutive cells with the same models skip the load; the least recently used is freed first."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self.backends: dict[str, Backend] = {}

    @staticmethod
    def key(model_cfg: dict[str, Any]) -> str:
        return content_hash(params_of(model_cfg, drop=("resources", "label", "trainer")))

    def __call__(self, model_cfg: dict[str, Any]) -> Backend:
        key = self.key(model_cfg)
        if key in self.backends:
            self.backends[key] = self.backends.pop(key)  # most recently used last
        else:
            while len(self.backends) >= self.size:
                self._free(next(iter(self.backends)))  # free the old model before loading the next
            self.backends[key] = make_backend(model_cfg)
        return self.backends[key]

    def drop(self, model_cfg: dict[str, Any]) -> None:
        """Forget one model (a cell trained its weights in place); the others stay loaded, so a
        vLLM engine survives the training cells that run on its transformers twin."""
        self._free(self.key(model_cfg))

    def keep_only(self, model_cfgs: list[dict[str, Any]]) -> None:
        """Free every cached backend but these (before a training cell on a GPU: a cached vLLM engine
        holds `gpu_memory_utilization` of the GPU the trainer needs)."""
        keep = {self.key(m) for m in model_cfgs}
        for key in [k for k in self.backends if k not in keep]:
            self._free(key)

    def _free(self, key: str) -> None:
        """Drop a backend and give its GPU memory back now (engine process, cached allocator), not
        whenever garbage collection gets to it."""
        backend = self.backends.pop(key, None)
        if backend is None:
            return
        close = getattr(backend, "close", None)
        if callable(close):
            close()
        del backend
        free_gpu_memory()


def make_room_for(cache: BackendCache, spec: CellSpec) -> None:
    """Before a cell that trains weights on a GPU, free the engines it does not use."""
    if METHODS.get(spec.config["method"]["name"]).mutates_policy and cuda_available():
        cache.keep_only([with_gpus_of(spec.config, k) for k in ("model", "aux_model") if spec.config.get(k)])


def with_gpus_of(config: dict[str, Any], key: str) -> dict[str, Any]:
    """A cell's model config as its backend is built (with the GPUs the cell gives it)."""
    from harness.devices import with_gpus

    return with_gpus(config[key], model_gpus(config)[key])


def release_after(cache: BackendCache, spec: CellSpec, outcome: CellOutcome) -> None:
    """Forget the backends a finished cell leaves unfit for the next: the model a method trained in
    place (MethodBase.mutates_policy, on a trainable backend itself: a cell with a `trainer` trains
    a copy and puts the engine's weights back, harness/cell.py), and every model of a failed cell
    (its engine may have died, e.g. vLLM's EngineDeadError, or still hold trained weights)."""
    if outcome.status == "failed":
        for key in ("model", "aux_model"):
            if spec.config.get(key):
                cache.drop(with_gpus_of(spec.config, key))
    elif METHODS.get(spec.config["method"]["name"]).mutates_policy and not spec.config["model"].get("trainer"):
        cache.drop(with_gpus_of(spec.config, "model"))


@dataclass
class LauncherBase:
    """Knobs every launcher has."""

    cell_timeout_s: float | None = knob(None, "a cell running longer fails with this as its reason (null = no "
                                              "limit)", gt=0)


class CellTimeout(BaseException):
    """Raised in a local cell that ran past launcher.cell_timeout_s (a BaseException, so that no
    `except Exception` inside a method swallows it)."""


def time_limit(seconds: float | None) -> AbstractContextManager[None]:
    """Raise CellTimeout in this (main) thread after `seconds`."""
    return raise_after(seconds, lambda: CellTimeout(f"exceeded launcher.cell_timeout_s={seconds:g}"))


@register_launcher("local")
@dataclass
class LocalLauncher(LauncherBase):
    """Sequential, in-process: one generating process at a time; reuses the loaded model between
    consecutive cells with the same model config."""

    def run(self, specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
            progress: Callable[[int, str], None] | None = None,
            on_start: Callable[[CellSpec], None] | None = None) -> list[CellOutcome]:
        return run_local(specs, logger_cfg, report, progress, on_start, self.cell_timeout_s)


def local_gpus(specs: list[CellSpec]) -> int:
    """GPUs the local launcher's one process sees: the largest reservation among its cells, and at
    least one (CPU-sized entries reserve none, and still run on a GPU when there is one)."""
    return max([1, *(cell_gpus(s.config) for s in specs)])


def run_local(specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
              progress: Callable[[int, str], None] | None = None,
              on_start: Callable[[CellSpec], None] | None = None,
              cell_timeout_s: float | None = None) -> list[CellOutcome]:
    narrow_visible(local_gpus([s for s in specs if not s.done]))  # before any model touches CUDA
    cache, logger, outcomes = BackendCache(), make_logger(logger_cfg), []
    for spec in specs:
        if on_start is not None:
            on_start(spec)
        start = time.perf_counter()
        make_room_for(cache, spec)
        try:
            with time_limit(None if spec.done else cell_timeout_s):
                outcome = run_cell(spec, cache, logger, progress)
        except CellTimeout as exc:
            write_json({"status": "failed", "error": str(exc), "traceback": traceback.format_exc()},
                       spec.out_dir / "status.json")
            logger.finish(spec, "failed")
            outcome = CellOutcome(spec.cell_id, spec.label, "failed", time.perf_counter() - start, error=str(exc))
        release_after(cache, spec, outcome)
        outcomes.append(outcome)
        report(outcome)
    return outcomes


def pool_size(need: dict[str, float], cluster: dict[str, float], cells: int, cap: int | None) -> int:
    """Workers for cells of one resource shape: as many as the cluster holds at once, at most one
    per cell (and at most `cap`)."""
    fits = [cluster.get(res, 0) // amount for res, amount in (("CPU", need["num_cpus"]), ("GPU", need["num_gpus"]))
            if amount]
    return int(max(1, min([cells, *(fits or [cells]), *([cap] if cap else [])])))


def cell_resources(config: dict[str, Any]) -> dict[str, float]:
    """What one cell reserves: its model's resources plus its aux model's, if it has one."""
    models = [config["model"]] + ([config["aux_model"]] if config.get("aux_model") else [])
    needs = [m.get("resources") or {} for m in models]
    return {"num_cpus": max(n.get("num_cpus", 1) for n in needs),  # one process runs both
            "num_gpus": sum(n.get("num_gpus", 0) for n in needs)}


def check_resources(available: dict[str, float], specs: Iterable[CellSpec]) -> None:
    for spec in specs:
        need = cell_resources(spec.config)
        for res, amount in (("CPU", need["num_cpus"]), ("GPU", need["num_gpus"])):
            if amount and available.get(res, 0) < amount:
                raise UserError(
                    f"cell {spec.label} needs {amount:g} {res} but the Ray cluster has "
                    f"{available.get(res, 0):g}; lower model.resources or join a larger cluster "
                    f"(launcher.address)")


@register_launcher("ray")
@dataclass
class RayLauncher(LauncherBase):
    """Cells run on a pool of Ray actors (harness/cluster.py), each reserving the resources of its
    cells' model (model.resources, e.g. one GPU) and keeping its loaded engine across the cells it
    runs; the cluster is checked to be able to satisfy every cell before anything starts. Each
    cell's files travel back to the driver through Ray: the nodes need no shared disk."""

    address: str | None = knob(None, "null = start a local Ray; 'auto' or 'ray://host:10001' joins an existing "
                                     "cluster")
    num_cpus: int | None = knob(None, "CPUs of a locally started Ray (null = all)", ge=1)
    object_store_memory: int = knob(200_000_000, "bytes for a locally started Ray (Ray's default would claim 30% "
                                                 "of RAM)", ge=78_643_200, le=2**50)
    max_retries: int = knob(3, "a cell whose worker or node was lost goes back on the queue this many times", ge=0)
    workers: int | None = knob(None, "workers per resource shape (null = as many as the cluster holds at once)",
                               ge=1)
    node_wait_s: float = knob(300.0, "cells that no live node can hold (their nodes were lost) wait this long for "
                                     "one to join, then fail", ge=0)

    def run(self, specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
            progress: Callable[[int, str], None] | None = None,
            on_start: Callable[[CellSpec], None] | None = None) -> list[CellOutcome]:
        return run_ray(specs, logger_cfg, report, self)


# what never travels to the nodes with the code (Ray's working_dir upload)
UPLOAD_EXCLUDES = [".venv", ".git", "results", "**/__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                   "wandb", "*.egg-info"]


def connect(ray: Any, opts: RayLauncher) -> None:
    """Start a local Ray, or join `opts.address` shipping this checkout to the nodes (unless the
    driver runs as a `ray job submit --working-dir` job, which shipped it already). Ray's driver
    turns SIGTERM into `sys.exit`; the sweep's own handler (preemption = Ctrl-C) is put back."""
    import os

    from harness.cell import REPO

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        if opts.address:
            env = None if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") else {
                "working_dir": str(REPO), "excludes": UPLOAD_EXCLUDES}
            try:
                ray.init(address=opts.address, ignore_reinit_error=True, log_to_driver=False, runtime_env=env)
            except ConnectionError as exc:
                raise UserError(f"no Ray cluster at launcher.address={opts.address!r} ({str(exc).split('.')[0]}); "
                                f"start one with `ray start --head`, or leave launcher.address=null to start a "
                                f"local Ray") from None
        else:
            ray.init(num_cpus=opts.num_cpus, object_store_memory=opts.object_store_memory, include_dashboard=False,
                     ignore_reinit_error=True, log_to_driver=False)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_ray(specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
            opts: RayLauncher) -> list[CellOutcome]:
    import ray

    from harness.cluster import Pool

    connect(ray, opts)
    try:
        todo = [s for s in specs if not s.done]
        check_resources(ray.cluster_resources(), todo)
        outcomes = [CellOutcome(s.cell_id, s.label, "skipped") for s in specs if s.done]
        for o in outcomes:
            report(o)
        return outcomes + Pool(ray, todo, logger_cfg, report, max_retries=opts.max_retries,
                               workers_cap=opts.workers, cell_timeout_s=opts.cell_timeout_s,
                               node_wait_s=opts.node_wait_s).run()
    finally:
        ray.shutdown()
