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
from harness.devices import cell_gpus, cuda_available, free_gpu_memory, model_gpus, narrow_visible
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
        return content_hash(params_of(model_cfg, drop=("resources", "label")))

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
    place (MethodBase.mutates_policy), and every model of a failed cell (its engine may have died,
    e.g. vLLM's EngineDeadError, which would otherwise fail every later cell)."""
    if outcome.status == "failed":
        for key in ("model", "aux_model"):
            if spec.config.get(key):
                cache.drop(with_gpus_of(spec.config, key))
    elif METHODS.get(spec.config["method"]["name"]).mutates_policy:
        cache.drop(with_gpus_of(spec.config, "model"))


@register_launcher("local")
@dataclass
class LocalLauncher:
    """Sequential, in-process: one generating process at a time; reuses the loaded model between
    consecutive cells with the same model config."""

    def run(self, specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
            progress: Callable[[int, str], None] | None = None,
            on_start: Callable[[CellSpec], None] | None = None) -> list[CellOutcome]:
        return run_local(specs, logger_cfg, report, progress, on_start)


def local_gpus(specs: list[CellSpec]) -> int:
    """GPUs the local launcher's one process sees: the largest reservation among its cells, and at
    least one (CPU-sized entries reserve none, and still run on a GPU when there is one)."""
    return max([1, *(cell_gpus(s.config) for s in specs)])


def run_local(specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
              progress: Callable[[int, str], None] | None = None,
              on_start: Callable[[CellSpec], None] | None = None) -> list[CellOutcome]:
    narrow_visible(local_gpus([s for s in specs if not s.done]))  # before any model touches CUDA
    cache, logger, outcomes = BackendCache(), make_logger(logger_cfg), []
    for spec in specs:
        if on_start is not None:
            on_start(spec)
        make_room_for(cache, spec)
        outcome = run_cell(spec, cache, logger, progress)
        release_after(cache, spec, outcome)
        outcomes.append(outcome)
        report(outcome)
    return outcomes


class CellWorker:
    """A Ray actor that runs cells one after another in one process, with its own BackendCache: one
    engine per worker (a GPU's vLLM engine loads once, not once per cell)."""

    def __init__(self, logger_cfg: dict[str, Any], num_gpus: float = 0) -> None:
        # Ray narrows CUDA_VISIBLE_DEVICES to the GPUs it assigned, but leaves every GPU visible to an
        # actor that reserved none (Ray 2.60): such a cell sees none
        if not num_gpus:
            narrow_visible(0)
        self.cache, self.logger = BackendCache(), make_logger(logger_cfg)

    def run(self, config: dict[str, Any], sweep_dir: str, cell_id: str) -> dict[str, Any]:
        from pathlib import Path

        spec = CellSpec(config, Path(sweep_dir), cell_id)
        make_room_for(self.cache, spec)
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
                                                 "of RAM)", ge=78_643_200)
    max_retries: int = knob(0, "a cell whose worker died is run again (on a new worker) this many times", ge=0)
    workers: int | None = knob(None, "workers per resource shape (null = as many as the cluster holds at once)",
                               ge=1)

    def run(self, specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
            progress: Callable[[int, str], None] | None = None,
            on_start: Callable[[CellSpec], None] | None = None) -> list[CellOutcome]:
        return run_ray(specs, logger_cfg, report, self.address, self.num_cpus, self.object_store_memory,
                       self.max_retries, self.workers)


def _new_worker(ray: Any, need: dict[str, float], logger_cfg: dict[str, Any]) -> Any:
    return ray.remote(num_cpus=need["num_cpus"], num_gpus=need["num_gpus"])(CellWorker).remote(logger_cfg,
                                                                                             need["num_gpus"])


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

