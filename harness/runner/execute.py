"""Executing a plan: one sweep at a time per directory (`sweep_lock`), the plan file written,
cells handed to the configured launcher with progress lines and an ETA, the sweep's summary
rewritten after every finished cell, and interrupts turned into resumable exits (`run_locked`).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.core.errors import UserError
from harness.core.knobs import params_of
from harness.core.quiet import quiet_libraries
from harness.engine.cell import CellOutcome, CellSpec
from harness.engine.records import (
    PLAN_FILE,
    cell_damage,
    collect_summaries,
    stale_cells,
    write_bytes,
    write_parquet,
    write_plan,
)
from harness.runner.signals import interrupted


class Progress:
    """Live sweep progress: cells done/running/failed, rollouts used, eval generations and tokens/s."""

    def __init__(self, specs: list[CellSpec]):
        from tqdm import tqdm

        self.tqdm = tqdm
        self.total, self.done, self.failed, self.skipped = len(specs), 0, 0, 0
        self.rollouts, self.tokens, self.t0 = 0, 0, time.perf_counter()
        self.bar = None
        self.outcomes: list[CellOutcome] = []

    HEARTBEAT_S = 60.0  # without a terminal, print a progress line this often during a cell

    def start(self, spec: CellSpec) -> None:
        if spec.done:
            return
        self.label, self.cell_t0, self.last_beat = spec.label, time.perf_counter(), time.perf_counter()
        self.cell_gens: dict[str, int] = {}
        self.bar = self.tqdm(desc=f"[{self._n() + 1}/{self.total}] {spec.label}", unit="gen",
                             leave=False, mininterval=5.0, dynamic_ncols=True, file=sys.stderr,
                             disable=not sys.stderr.isatty())

    def _n(self) -> int:
        return self.done + self.failed + self.skipped

    def __call__(self, n_generations: int, phase: str = "eval") -> None:
        if self.bar is None:
            return
        self.bar.update(n_generations)
        self.cell_gens[phase] = self.cell_gens.get(phase, 0) + n_generations
        self.bar.set_postfix(self.cell_gens, refresh=False)
        now = time.perf_counter()
        if self.bar.disable and now - self.last_beat >= self.HEARTBEAT_S:
            self.last_beat = now
            done = ", ".join(f"{n} {p}" for p, n in self.cell_gens.items())
            print(f"    ... {self.label}: {done} generations in {now - self.cell_t0:.0f}s", flush=True)

    def report(self, o: CellOutcome) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.outcomes.append(o)
        if o.status == "skipped":
            self.skipped += 1
            return
        self.done += o.status == "ok"
        self.failed += o.status == "failed"
        self.rollouts += o.rollouts_used
        self.tokens += o.tokens
        rate = o.tokens / o.wall_s if o.wall_s else 0.0
        final = next((r for r in o.summary if r.get("final")), {})
        score = f"pass@1={final['pass@1']:.3f}" if final else o.error[:200]
        print(f"[{self._n()}/{self.total}] {o.status:6s} {o.label} {score} rollouts={o.rollouts_used} "
              f"{o.wall_s:.1f}s {rate:.0f} tok/s (prompt+completion) | done={self.done} failed={self.failed} "
              f"skipped={self.skipped}{self.eta()}", flush=True)

    def eta(self) -> str:
        """Remaining cells x mean wall time of the cells run so far (cells differ: a rough guide)."""
        ran, left = self.done + self.failed, self.total - self._n()
        if not ran or not left:
            return ""
        seconds = (time.perf_counter() - self.t0) / ran * left
        return f" | {left} left, ETA {seconds / 60:.0f} min"


def execute(sweep_dir: Path, specs: list[CellSpec], first: dict[str, Any],
            planned: list[CellSpec] | None = None) -> int:
    """Run `specs` (finished ones are skipped); exit status 0, or 1 if a cell failed. `planned`
    (default: `specs`) is the sweep's plan, written to plan.json: a subset run (`paper run --only`)
    keeps every planned cell in the plan, so earlier results never vanish from the tables. A
    launcher-level user error (no cluster, too few GPUs) raises UserError (see `run_locked`)."""
    from harness.core.registry import LAUNCHERS

    for s in specs:
        why = cell_damage(s.out_dir) if (s.out_dir / "done.json").exists() else ""
        if why:
            print(f"sibench: warning: finished cell {s.label} ({s.cell_id}) does not read ({why}); "
                  f"running it again", file=sys.stderr, flush=True)
    todo = sum(not s.done for s in specs)
    plan_file = sweep_dir / PLAN_FILE
    try:
        previous_plan = plan_file.read_bytes() if plan_file.exists() else None
        write_plan(sweep_dir, [(s.cell_id, s.label) for s in (planned or specs)])
    except OSError as exc:  # e.g. plan.json is a folder: refused before any cell runs
        raise UserError(f"cannot write the sweep's plan {plan_file}: {exc.strerror or exc}") from None
    stale = stale_cells(sweep_dir)
    print(f"sweep {sweep_dir.name}: {len(specs)} cells ({len(specs) - todo} already finished) "
          f"-> {sweep_dir}" + (f"; {len(stale)} stale cells from an earlier plan are kept on disk "
                               f"and left out of every summary" if stale else ""), flush=True)
    progress = Progress(specs)

    def report(o: CellOutcome) -> None:
        if o.status == "ok" and not (sweep_dir / "cells" / o.cell_id / "done.json").exists():
            o = replace(o, status="failed", error=f"its rows did not reach {sweep_dir} (launcher "
                                                  f"{first['launcher']['name']})")
        progress.report(o)
        if o.status == "ok":
            try:
                write_parquet(collect_summaries(sweep_dir), sweep_dir / "summary.parquet")
            except OSError as exc:  # the cells' own files hold the results; the end of the sweep retries
                print(f"sibench: warning: could not write {sweep_dir / 'summary.parquet'}: {exc}", file=sys.stderr)

    launcher = LAUNCHERS.get(first["launcher"]["name"])(**params_of(first["launcher"]))
    try:
        launcher.run(specs, first["logger"], report, progress=progress, on_start=progress.start)
    except UserError:  # refused before any cell (no cluster, too few GPUs): the old plan stands
        if not progress.outcomes:
            restore(plan_file, previous_plan)
        raise
    summary = collect_summaries(sweep_dir)
    try:
        if len(summary):
            write_parquet(summary, sweep_dir / "summary.parquet")
        else:  # no finished cell in this plan: an older summary would describe another plan
            (sweep_dir / "summary.parquet").unlink(missing_ok=True)
    except OSError as exc:  # the cells' own files hold every result; `make table` rebuilds it
        print(f"sibench: warning: could not write {sweep_dir / 'summary.parquet'}: {exc}", file=sys.stderr)
    failed = [o for o in progress.outcomes if o.status == "failed"]  # as reported: ok only with its rows here
    wall = time.perf_counter() - progress.t0
    where = f"summary: {sweep_dir / 'summary.parquet'}" if len(summary) else "no cell finished, so no summary"
    print(f"sweep {sweep_dir.name} finished in {wall:.1f}s: {progress.done} ran, {progress.skipped} "
          f"skipped, {len(failed)} failed; {where}")
    for o in failed:
        print(f"  FAILED {o.label} ({o.cell_id}): {o.error}  [see {sweep_dir / 'cells' / o.cell_id / 'status.json'}]")
    return 1 if failed else 0


def restore(path: Path, content: bytes | None) -> None:
    """Put a file back as it was (None: it did not exist)."""
    if content is None:
        path.unlink(missing_ok=True)
    else:
        write_bytes(content, path)


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep directory for this process; a second sweep on it is refused (UserError), so
    two identical commands cannot both compute every cell or race on a finished cell's files.
    The lock is the kernel's (flock): a killed sweep releases it."""
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. results_dir=/proc: nothing can be written there
        raise UserError(f"cannot create the sweep directory {sweep_dir}: {exc.strerror or exc}; valid: "
                        f"results_dir=<a directory you can write>") from None
    lock = sweep_dir / ".lock"
    try:  # never through a link: opening a symlinked .lock would truncate its target
        handle = os.fdopen(os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644), "r+")
    except OSError as exc:
        raise UserError(f"{lock} cannot be the sweep's lock file ({exc.strerror}; a link or a folder?): "
                        f"remove it and re-run") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"sweep directory {sweep_dir} is in use by another running sweep ({holder}); "
                        f"wait for it to finish or choose another sweep=<name>") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def run_locked(sweep_dir: Path, specs: list[CellSpec], first: dict[str, Any],
               planned: list[CellSpec] | None = None) -> int:
    """`execute` under the sweep lock, with Ctrl-C turned into one line and exit status 130. Every
    entry point that runs cells (sweep, run, paper, calibrate) comes through here, before any cell
    imports torch: the place to quiet the libraries (harness/core/quiet.py)."""
    quiet_libraries()
    created = not sweep_dir.exists()
    try:
        with sweep_lock(sweep_dir):
            return execute(sweep_dir, specs, first, planned)
    except UserError as exc:
        if created and not (sweep_dir / "cells").exists():  # refused before any cell: leave nothing behind
            shutil.rmtree(sweep_dir, ignore_errors=True)
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return interrupted(exc)
