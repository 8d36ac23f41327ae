"""Fan-out of cells: `local` (sequential, one generating process at a time) and `ray`.

Two generating processes on a 2-core machine run 5-17x slower, so `local` runs cells one after
another in this process and reuses the loaded model between cells. `ray` runs cells on a pool of
Ray actors, one per slot the cluster has for the model's resources (`model.resources`, e.g. one
GPU each), each keeping its engine loaded across its cells, after checking that the cluster can
ever satisfy them (Ray would otherwise wait forever); results come back to the driver through Ray
and lost nodes cost retries (harness/runner/cluster.py). `launcher.address` joins an existing cluster.
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

from harness.core.devices import cell_gpus, narrow_visible
from harness.core.errors import UserError
from harness.core.knobs import knob
from harness.core.registry import register_launcher
from harness.core.timeouts import raise_after
from harness.engine.cell import CellOutcome, CellSpec, run_cell
from harness.engine.records import write_json
from harness.runner.host import BackendCache, cell_resources, make_room_for, release_after
from harness.runner.loggers import make_logger


@dataclass
class LauncherBase:
    """Knobs every launcher has."""

    cell_timeout_s: float | None = knob(None, "a cell running longer fails with this as its reason (null = no "
                                              "limit)", gt=0, le=2_592_000)  # 30 days: setitimer's range is far wider


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


def check_resources(available: dict[str, float], specs: Iterable[CellSpec]) -> None:
    """Refuse cells the cluster cannot hold, and vLLM cells that reserve no GPU on a cluster with
    GPUs: their worker sees no device (CUDA_VISIBLE_DEVICES=""), but vLLM picks its platform by
    counting GPUs through NVML, which ignores that, chooses CUDA and fails on every such cell
    (read in vllm/platforms/__init__.py; the CUDA wheel has no CPU kernels to fall back on)."""
    for spec in specs:
        need = cell_resources(spec.config)
        if available.get("GPU", 0) > 0 and spec.config["model"].get("backend") == "vllm" and not need["num_gpus"]:
            twin = spec.config["model"].get("twin")
            raise UserError(
                f"cell {spec.label} runs vLLM with model.resources.num_gpus=0 on a Ray cluster with GPUs, where "
                f"vLLM's CUDA build cannot run without one; valid: model.resources.num_gpus > 0"
                + (f", or model={twin} (transformers) for CPU cells" if twin else ""))
        for res, amount in (("CPU", need["num_cpus"]), ("GPU", need["num_gpus"])):
            if amount and available.get(res, 0) < amount:
                raise UserError(
                    f"cell {spec.label} needs {amount:g} {res} but the Ray cluster has "
                    f"{available.get(res, 0):g}; lower model.resources or join a larger cluster "
                    f"(launcher.address)")


@register_launcher("ray")
@dataclass
class RayLauncher(LauncherBase):
    """Cells run on a pool of Ray actors (harness/runner/cluster.py), each reserving the resources of its
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
    connect_timeout_s: float = knob(30.0, "a launcher.address host:port that does not answer within this is refused "
                                          "(Ray itself retries for minutes)", gt=0, le=3600)

    def run(self, specs: list[CellSpec], logger_cfg: dict[str, Any], report: Callable[[CellOutcome], None],
            progress: Callable[[int, str], None] | None = None,
            on_start: Callable[[CellSpec], None] | None = None) -> list[CellOutcome]:
        return run_ray(specs, logger_cfg, report, self)


# what never travels to the nodes with the code (Ray's working_dir upload)
UPLOAD_EXCLUDES = [".venv", ".git", "results", "**/__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
                   "wandb", "*.egg-info"]


def reachable(address: str, timeout_s: float) -> None:
    """UserError unless a `host:port` (or `ray://host:port`) address accepts a TCP connection within
    `timeout_s`: with nothing listening, Ray's own connect retried for ~10 minutes. `auto` is left to Ray."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"no Ray cluster at launcher.address={address!r} (nothing answers within {timeout_s:g} s: "
                        f"{exc.strerror or exc}); start one with `ray start --head`, or leave launcher.address=null "
                        f"to start a local Ray") from None


def connect(ray: Any, opts: RayLauncher) -> None:
    """Start a local Ray, or join `opts.address` shipping this checkout to the nodes (unless the
    driver runs as a `ray job submit --working-dir` job, which shipped it already). Ray's driver
    turns SIGTERM into `sys.exit`; the sweep's own handler (preemption = Ctrl-C) is put back."""
    import os

    from harness.core.paths import REPO

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        if opts.address:
            reachable(opts.address, opts.connect_timeout_s)
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

    from harness.runner.cluster import Pool

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
