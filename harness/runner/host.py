"""The worker host a launcher runs cells in: the backend cache that keeps an engine loaded across cells
(and never a trained cell's weights), making room on the GPU for the next cell, and the resources
one cell reserves (`cell_resources`, `pool_size`). Used by both launchers, local and Ray.
"""

from __future__ import annotations

from typing import Any

from harness.backends import make_backend
from harness.core.devices import cuda_available, free_gpu_memory, placed
from harness.core.knobs import params_of
from harness.core.registry import METHODS
from harness.core.types import Backend, content_hash
from harness.engine.cell import CellOutcome, CellSpec


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
        cache.keep_only([placed(spec.config, k) for k in ("model", "aux_model") if spec.config.get(k)])


def release_after(cache: BackendCache, spec: CellSpec, outcome: CellOutcome) -> None:
    """Forget the backends a finished cell leaves unfit for the next: the model a method trained in
    place (MethodBase.mutates_policy, on a trainable backend itself: a cell with a `trainer` trains
    a copy and puts the engine's weights back, harness/engine/cell.py), and every model of a failed cell
    (its engine may have died, e.g. vLLM's EngineDeadError, or still hold trained weights)."""
    if outcome.status == "failed":
        for key in ("model", "aux_model"):
            if spec.config.get(key):
                cache.drop(placed(spec.config, key))
    elif METHODS.get(spec.config["method"]["name"]).mutates_policy and not spec.config["model"].get("trainer"):
        cache.drop(placed(spec.config, "model"))


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
