"""Fan-out of cells: `local` (sequential, one generating process at a time) and `ray`.

Two generating processes on a 2-core machine run 5-17x slower, so `local` runs cells one after
another in this process and reuses the loaded model between cells. `ray` runs cells on a pool of
Ray actors, one per slot the cluster has for the model's resources (`model.resources`, e.g. one
GPU each), each keeping its engine loaded across its cells, after checking that the cluster can
ever satisfy them (Ray would otherwise wait forever). `launcher.address` joins an existing
cluster. One failing cell never stops the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from harness.backends import make_backend
from harness.cell import CellOutcome, CellSpec, run_cell
from harness.config import UserError, params_of
from harness.knobs import knob
from harness.loggers import make_logger
from harness.registry import METHODS, register_launcher
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
                self.backends.pop(next(iter(self.backends)))  # free the old model before loading the next
            self.backends[key] = make_backend(model_cfg)
        return self.backends[key]

    def drop(self, model_cfg: dict[str, Any]) -> None:
        """Forget one model (a cell trained its weights in place); the others stay loaded, so a
        vLLM engine survives the training cells that run on its transformers twin."""
        self.backends.pop(self.key(model_cfg), None)


def release_after(cache: BackendCache, spec: CellSpec, outcome: CellOutcome) -> None:
    """Forget the backends a finished cell leaves unfit for the next: the model a method trained in
    place (MethodBase.mutates_policy, on a trainable backend itself: a cell with a `trainer` trains
    a copy and puts the engine's weights back, harness/cell.py), and every model of a failed cell
    (its engine may have died, e.g. vLLM's EngineDeadError, or still hold trained weights)."""
    if outcome.status == "failed":
        for key in ("model", "aux_model"):
            if spec.config.get(key):
                cache.drop(spec.config[key])
    elif METHODS.get(spec.config["method"]["name"]).mutates_policy and not spec.config["model"].get("trainer"):
        cache.drop(spec.config["model"])


@register_launcher("local")
@dataclass
class LocalLauncher:
    """Sequential, in-process: one generating process at a time; reuses the loaded model between
    consecutive cells with the same model config."""

    def run(self, specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
            progress: Callable[[int, str], None] | None = None,
            on_start: Callable[[CellSpec], None] | None = None) -> list[CellOutcome]:
        return run_local(specs, logger_cfg, report, progress, on_start)


def run_local(specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
              progress: Callable[[int, str], None] | None = None,
              on_start: Callable[[CellSpec], None] | None = None) -> list[CellOutcome]:
    cache, logger, outcomes = BackendCache(), make_logger(logger_cfg), []
    for spec in specs:
        if on_start is not None:
            on_start(spec)
        outcome = run_cell(spec, cache, logger, progress)
        release_after(cache, spec, outcome)
        outcomes.append(outcome)
        report(outcome)
    return outcomes


class CellWorker:
    """A Ray actor that runs cells one after another in one process, with its own BackendCache: one
    engine per worker (a GPU's vLLM engine loads once, not once per cell)."""

    def __init__(self, logger_cfg: dict[str, Any]) -> None:
        self.cache, self.logger = BackendCache(), make_logger(logger_cfg)

    def run(self, config: dict[str, Any], sweep_dir: str, cell_id: str) -> dict[str, Any]:
        from pathlib import Path

        spec = CellSpec(config, Path(sweep_dir), cell_id)
        outcome = run_cell(spec, self.cache, self.logger)
        release_after(self.cache, spec, outcome)
        return outcome.__dict__


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
class RayLauncher:
    """Cells run on a pool of Ray actors (`CellWorker`), each reserving the resources of its cells'
    model (model.resources, e.g. one GPU) and keeping its loaded engine across the cells it runs;
    the cluster is checked to be able to satisfy every cell before anything starts."""

    address: str | None = knob(None, "null = start a local Ray; 'auto' or 'ray://host:10001' joins an existing "
                                     "cluster")
    num_cpus: int | None = knob(None, "CPUs of a locally started Ray (null = all)", ge=1)
    object_store_memory: int = knob(200_000_000, "bytes for a locally started Ray (Ray's default would claim 30% "
                                                 "of RAM)", ge=78_643_200, le=2**50)
    max_retries: int = knob(0, "a cell whose worker died is run again (on a new worker) this many times", ge=0)
    workers: int | None = knob(None, "workers per resource shape (null = as many as the cluster holds at once)",
                               ge=1)

    def run(self, specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
            progress: Callable[[int, str], None] | None = None,
            on_start: Callable[[CellSpec], None] | None = None) -> list[CellOutcome]:
        return run_ray(specs, logger_cfg, report, self.address, self.num_cpus, self.object_store_memory,
                       self.max_retries, self.workers)


def _new_worker(ray: Any, need: dict[str, float], logger_cfg: dict[str, Any]) -> Any:
    return ray.remote(num_cpus=need["num_cpus"], num_gpus=need["num_gpus"])(CellWorker).remote(logger_cfg)


def run_ray(specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
            address: str | None = None, num_cpus: int | None = None,
            object_store_memory: int = 200_000_000, max_retries: int = 0,
            workers: int | None = None) -> list[CellOutcome]:
    import os

    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address:
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        except ConnectionError as exc:
            raise UserError(f"no Ray cluster at launcher.address={address!r} ({str(exc).split('.')[0]}); start one "
                            f"with `ray start --head`, or leave launcher.address=null to start a local Ray") from None
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False,
                 ignore_reinit_error=True, log_to_driver=False)
    try:
        todo = [s for s in specs if not s.done]
        check_resources(ray.cluster_resources(), todo)
        outcomes = [CellOutcome(s.cell_id, s.label, "skipped") for s in specs if s.done]
        for o in outcomes:
            report(o)
        shapes: dict[tuple[float, float], list[CellSpec]] = {}
        for spec in todo:
            need = cell_resources(spec.config)
            shapes.setdefault((need["num_cpus"], need["num_gpus"]), []).append(spec)
        cluster = ray.cluster_resources()
        idle: list[tuple[Any, tuple[float, float]]] = []
        for shape, cells in shapes.items():
            need = {"num_cpus": shape[0], "num_gpus": shape[1]}
            idle += [(_new_worker(ray, need, logger_cfg), shape)
                     for _ in range(pool_size(need, cluster, len(cells), workers))]
        tries: dict[str, int] = {}
        pending: dict[Any, tuple[Any, tuple[float, float], CellSpec]] = {}
        while pending or any(shapes.values()):
            for actor, shape in list(idle):  # give every idle worker the next cell of its shape
                if shapes[shape]:
                    spec = shapes[shape].pop(0)
                    pending[actor.run.remote(spec.config, str(spec.sweep_dir), spec.cell_id)] = (actor, shape, spec)
                    idle.remove((actor, shape))
                else:  # nothing left of its shape: free its resources for the other shapes' workers
                    ray.kill(actor)
                    idle.remove((actor, shape))
            if not pending:
                continue
            ready, _waiting = ray.wait(list(pending), num_returns=1, timeout=5.0)
            for ref in ready:
                actor, shape, spec = pending.pop(ref)
                try:
                    outcome = CellOutcome(**ray.get(ref))
                    idle.append((actor, shape))
                except Exception as exc:  # the worker died (crash, OOM kill): replace it, maybe retry the cell
                    ray.kill(actor)
                    idle.append((_new_worker(ray, {"num_cpus": shape[0], "num_gpus": shape[1]}, logger_cfg), shape))
                    tries[spec.cell_id] = tries.get(spec.cell_id, 0) + 1
                    if tries[spec.cell_id] <= max_retries:
                        shapes[shape].append(spec)
                        continue
                    outcome = CellOutcome(spec.cell_id, spec.label, "failed", error=f"{type(exc).__name__}: {exc}")
                outcomes.append(outcome)
                report(outcome)
        return outcomes
    finally:
        ray.shutdown()

