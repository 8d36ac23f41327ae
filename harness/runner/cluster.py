"""Cells on a Ray cluster that loses nothing: no shared disk needed, lost nodes cost retries.

Results travel back through Ray. A worker runs its cell in a scratch directory on its own node and
returns every file the cell wrote (rows, summary, status, the method's artefacts such as
memories, insights, `train_log.jsonl` and the LoRA `policy/`, W&B offline files); the driver lands
them under its `results/<sweep>/` and is the only writer there. So the nodes need no disk shared
with the driver, and a cell counts as ok only once its rows are where the driver reads them.

Workers are Ray actors, one per slot the *live* cluster has for a cell's resources, each keeping
its engine loaded across its cells. A cell is handed only to a worker that has started, so a
worker Ray cannot place (its node is gone, the cluster shrank) holds no cell and stalls nothing;
a node that joins gets workers on the next pass. A worker that dies (its node lost, an OOM kill)
puts its cell back on the queue, `max_retries` times at most; Ray's health checks notice a dead
node within health_check_period_ms x health_check_failure_threshold (3 s x 5 by default). A cell
running past `cell_timeout_s` is killed with its worker and fails with a one-line reason. On
Ctrl-C or SIGTERM the driver marks the cells it had handed out `interrupted` and stops their
workers; a re-run resumes them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import redact
from harness.core.paths import no_links
from harness.engine.cell import CellOutcome, CellSpec
from harness.engine.records import write_bytes, write_json

Shape = tuple[float, float]  # (CPUs, GPUs) one cell reserves


def pack(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by path relative to it."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def land(sweep_dir: Path, cell_id: str, files: dict[str, bytes]) -> None:
    """Write the files a worker shipped (relative to its sweep directory) under the driver's.
    The cell's directory is staged beside the sweep and renamed into place whole, so it appears
    with all its rows or not at all, and nothing an earlier attempt left stays mixed in."""
    prefix = f"cells/{cell_id}/"
    out = sweep_dir / "cells" / cell_id
    no_links(out, sweep_dir)
    stage = sweep_dir / ".landing" / cell_id
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for rel, data in files.items():
        if rel.startswith(prefix):
            target = stage / rel[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        else:  # sweep-level files of the cell, e.g. its W&B offline run
            target = sweep_dir / rel
            if not target.resolve().is_relative_to(sweep_dir.resolve()):
                raise ValueError(f"a worker shipped {rel!r}, outside the sweep directory")
            no_links(target, sweep_dir)
            write_bytes(data, target)
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(stage, out)
    with contextlib.suppress(OSError):  # the staging folder, once empty (an empty .landing was left behind)
        stage.parent.rmdir()


def mark(spec: CellSpec, status: str, **extra: Any) -> None:
    """The driver's record of where a cell stands (the worker's own status arrives with its files);
    nothing is written through a link."""
    try:
        no_links(spec.out_dir, spec.sweep_dir)
    except ValueError:
        return
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    if not (spec.out_dir / "config.json").exists():
        write_json({"cell_id": spec.cell_id, "label": spec.label, "config": spec.config}, spec.out_dir / "config.json")
    write_json({"status": status, "time": time.time(), **extra}, spec.out_dir / "status.json")


class CellWorker:
    """A Ray actor that runs cells one after another in one process, with its own BackendCache (one
    engine per worker: a GPU's vLLM engine loads once, not once per cell). Each cell runs in a
    scratch directory on the worker's node; its files go back to the driver in the reply."""

    def __init__(self, logger_cfg: dict[str, Any], num_gpus: float = 0) -> None:
        from harness.core.devices import narrow_visible
        from harness.core.quiet import quiet_libraries
        from harness.runner.host import BackendCache
        from harness.runner.loggers import make_logger

        quiet_libraries()  # a node's worker does not inherit the driver's environment
        # Ray narrows CUDA_VISIBLE_DEVICES to the GPUs it assigned, but leaves every GPU visible to an
        # actor that reserved none (Ray 2.60): such a cell sees none
        if not num_gpus:
            narrow_visible(0)
        self.cache, self.logger = BackendCache(), make_logger(logger_cfg)

    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def run(self, config: dict[str, Any], sweep_name: str, cell_id: str) -> dict[str, Any]:
        from harness.engine.cell import run_cell
        from harness.runner.host import make_room_for, release_after

        scratch = Path(tempfile.mkdtemp(prefix="sibench-cell-"))
        try:
            spec = CellSpec(config, scratch / sweep_name, cell_id)
            make_room_for(self.cache, spec)
            outcome = run_cell(spec, self.cache, self.logger)
            release_after(self.cache, spec, outcome)
            return {"outcome": outcome.__dict__, "files": pack(spec.sweep_dir), "node": self.node(),
                    "host": socket.gethostname()}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class Job:
    ref: Any
    spec: CellSpec
    t0: float


@dataclass
class Worker:
    actor: Any
    shape: Shape
    ready: Any  # the start-up call's ObjectRef; None once the worker runs (and has a node)
    node: str = ""
    job: Job | None = None


@dataclass
class Pool:
    """The driver's loop: keep a worker per slot of the live cluster, hand queued cells to started
    workers, land what they return, requeue the cells of lost workers."""

    ray: Any
    todo: list[CellSpec]
    logger_cfg: dict[str, Any]
    report: Callable[[CellOutcome], None]
    max_retries: int = 3
    workers_cap: int | None = None
    cell_timeout_s: float | None = None
    node_wait_s: float = 300.0
    poll_s: float = 1.0
    say: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def __post_init__(self) -> None:
        from harness.runner.host import cell_resources

        self.queue: dict[Shape, deque[CellSpec]] = {}
        for spec in self.todo:
            need = cell_resources(spec.config)
            self.queue.setdefault((need["num_cpus"], need["num_gpus"]), deque()).append(spec)
        self.workers: list[Worker] = []
        self.tries: dict[str, int] = {}
        self.outcomes: list[CellOutcome] = []
        self.retries = 0
        self.nodes_used: set[str] = set()
        self.nodes_lost: set[str] = set()
        self.starved_since: dict[Shape, float] = {}
        self.live: list[dict[str, Any]] = []  # ray.nodes() entries of the live nodes, as of this pass
        self.first_nodes: set[str] | None = None  # the nodes alive when the sweep began
        self.failed_starts: dict[Shape, int] = {}  # workers of a shape that died starting, in a row

    def run(self) -> list[CellOutcome]:
        try:
            while any(self.queue.values()) or any(w.job for w in self.workers):
                self.watch()
                self.scale()
                self.dispatch()
                self.wait()
                self.expire()
                self.starve()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the cells out on workers are marked, not lost
            for w in self.workers:
                if w.job is not None:
                    mark(w.job.spec, "interrupted", node=w.node, wall_s=time.time() - w.job.t0)
            raise
        finally:
            for w in self.workers:
                self.ray.kill(w.actor)
        self.say(f"ray: {len(self.outcomes)} cells on {len(self.nodes_used)} node(s); {self.retries} retries; "
                 f"{len(self.nodes_lost)} node(s) lost")
        return self.outcomes

    def finish(self, outcome: CellOutcome) -> None:
        self.outcomes.append(outcome)
        self.report(outcome)

    def watch(self) -> None:
        """Note the nodes that went away since the last pass (their workers' cells are requeued as
        Ray reports the workers dead, which may come first)."""
        self.live = [n for n in self.ray.nodes() if n["Alive"]]
        alive = {n["NodeID"] for n in self.live}
        if self.first_nodes is None:
            self.first_nodes = alive
        for node in sorted(self.nodes_used - alive - self.nodes_lost):
            self.nodes_lost.add(node)
            self.say(f"ray: node {node[:8]} lost ({len(alive)} node(s) left)")

    def scale(self) -> None:
        """Per resource shape, as many workers as the live cluster holds at once (at most one per
        remaining cell); none for a shape with nothing left, so its resources go to the others."""
        from harness.runner.host import pool_size

        cluster = self.ray.cluster_resources()
        for shape, cells in self.queue.items():
            mine = [w for w in self.workers if w.shape == shape]
            if not cells:
                for w in mine:
                    if w.job is None:
                        self.drop(w)
                continue
            need = {"num_cpus": shape[0], "num_gpus": shape[1]}
            want = pool_size(need, cluster, len(cells) + sum(w.job is not None for w in mine), self.workers_cap)
            for _ in range(want - len(mine)):
                actor_cls = self.ray.remote(num_cpus=shape[0], num_gpus=shape[1])(CellWorker)
                actor = actor_cls.remote(self.logger_cfg, shape[1])
                self.workers.append(Worker(actor, shape, actor.node.remote()))

    def dispatch(self) -> None:
        for w in self.workers:
            if w.ready is None and w.job is None and self.queue[w.shape]:
                spec = self.queue[w.shape].popleft()
                ref = w.actor.run.remote(spec.config, spec.sweep_dir.name, spec.cell_id)
                w.job = Job(ref, spec, time.time())
                mark(spec, "running", node=w.node, attempt=self.tries.get(spec.cell_id, 0) + 1)

    def wait(self) -> None:
        refs = {w.ready: w for w in self.workers if w.ready is not None}
        refs.update({w.job.ref: w for w in self.workers if w.job is not None})
        if not refs:
            time.sleep(self.poll_s)
            return
        done, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=self.poll_s)
        for ref in done:
            w = refs[ref]
            if ref is w.ready:
                self.started(w)
            else:
                self.returned(w)

    def started(self, w: Worker) -> None:
        try:
            w.node = self.ray.get(w.ready)
        except Exception as exc:  # died before it ran anything: nothing to requeue, but a worker
            self.drop(w)          # that cannot start at all (a broken node setup) must not loop
            n = self.failed_starts[w.shape] = self.failed_starts.get(w.shape, 0) + 1
            if n >= 3 and not any(x.shape == w.shape and x.ready is None for x in self.workers):
                while self.queue[w.shape]:
                    self.fail(self.queue[w.shape].popleft(), f"workers could not start ({n} tries): "
                                                             f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            return
        w.ready = None
        self.failed_starts[w.shape] = 0
        if w.node not in self.nodes_used and w.node not in (self.first_nodes or ()):
            self.say(f"ray: node {w.node[:8]} joined: it gets work")
        self.nodes_used.add(w.node)

    def returned(self, w: Worker) -> None:
        assert w.job is not None
        job, w.job = w.job, None
        try:
            reply = self.ray.get(job.ref)
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.ObjectLostError,
                self.ray.exceptions.WorkerCrashedError) as exc:
            self.lost(w, job, exc)
            return
        except Exception as exc:  # the worker's own code broke: fail the cell, replace the worker
            self.drop(w)
            self.fail(job.spec, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return
        try:
            land(job.spec.sweep_dir, job.spec.cell_id, reply["files"])
        except (ValueError, OSError) as exc:  # a link in the way, a full disk: this cell fails, not the sweep
            self.fail(job.spec, f"its files could not land: {exc}")
            return
        self.finish(CellOutcome(**reply["outcome"]))

    def lost(self, w: Worker, job: Job, exc: Exception) -> None:
        """A worker died with a cell on it (its process or its node): requeue the cell."""
        self.drop(w)
        why = f"its worker on node {w.node[:8]} was lost ({type(exc).__name__})"
        n = self.tries[job.spec.cell_id] = self.tries.get(job.spec.cell_id, 0) + 1
        if n <= self.max_retries:
            self.retries += 1
            self.say(f"ray: retry {n}/{self.max_retries} of {job.spec.label}: {why}; back on the queue")
            mark(job.spec, "queued", retry=n, reason=why)
            self.queue[w.shape].appendleft(job.spec)
        else:
            self.fail(job.spec, f"{why}, {n} time(s); launcher.max_retries={self.max_retries}")

    def expire(self) -> None:
        if self.cell_timeout_s is None:
            return
        now = time.time()
        for w in list(self.workers):
            if w.job is not None and now - w.job.t0 > self.cell_timeout_s:
                spec, w.job = w.job.spec, None
                self.drop(w)  # the cell may be stuck in native code: only killing its process stops it
                self.fail(spec, f"exceeded launcher.cell_timeout_s={self.cell_timeout_s:g} on node {w.node[:8]}")

    def starve(self) -> None:
        """Cells that no live node can ever hold wait `node_wait_s` for one to join, then fail."""
        nodes = [n.get("Resources", {}) for n in self.live]
        now = time.time()
        for shape, cells in self.queue.items():
            fits = any(r.get("CPU", 0) >= shape[0] and r.get("GPU", 0) >= shape[1] for r in nodes)
            if not cells or fits:
                self.starved_since.pop(shape, None)
                continue
            since = self.starved_since.setdefault(shape, now)
            if now - since >= self.node_wait_s:
                while cells:
                    self.fail(cells.popleft(), f"no live node has {shape[0]:g} CPU and {shape[1]:g} GPU for this "
                                               f"cell; waited launcher.node_wait_s={self.node_wait_s:g}")

    def fail(self, spec: CellSpec, error: str) -> None:
        error = redact(error)  # Ray's error lines carry colour codes, an endpoint's may carry a key
        mark(spec, "failed", error=error)
        self.finish(CellOutcome(spec.cell_id, spec.label, "failed", error=error))

    def drop(self, w: Worker) -> None:
        self.ray.kill(w.actor)
        self.workers.remove(w)
