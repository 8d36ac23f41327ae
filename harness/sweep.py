"""`python -m harness.sweep <hydra overrides> [--dry-run]`: expand the grid, skip finished cells, run the rest.

Comma lists sweep (`task=math,countdown method=zero_shot,core seed=0,1`); with no `method=`, the grid
holds every registered method. `--dry-run` composes and validates every cell and prints the plan
(cells, which are finished, the model and engine of each) without running or writing anything.
Every cell is composed
and validated before anything is written; bad input exits 2 with one line. Results go to
`results/<sweep>/`; the sweep's `summary.parquet` is rewritten after every finished cell. The
command exits 1 if any cell failed, after listing each failure with its error.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

from harness.backends import TRAINABLE_BACKENDS, importable
from harness.cell import CellOutcome, CellSpec, build_task, disjoint_splits
from harness.config import UserError, compose, expand_grid, params_of, results_root, to_dict
from harness.devices import check_reservation, check_shared_memory
from harness.knobs import config_fields
from harness.quiet import quiet_libraries
from harness.records import (
    PLAN_FILE,
    cell_damage,
    collect_summaries,
    stale_cells,
    write_bytes,
    write_parquet,
    write_plan,
)
from harness.registry import METHODS, UnknownName
from harness.schema import GROUPS
from harness.types import content_hash

_warned: set[str] = set()


def warn_once(message: str) -> None:
    """A `sibench: warning:` line on stderr, once per process."""
    if message not in _warned:
        _warned.add(message)
        print(f"sibench: warning: {message}", file=sys.stderr)


def compose_cell(overrides: list[str]) -> dict[str, Any]:
    """One cell's resolved config. A model with a `twin` (the same weights on a trainable backend)
    gives a weight-training cell its trainer (`model.trainer`: it trains there and generates on the
    model's own engine, harness/backends/synced.py). Where the model's backend cannot be imported,
    every cell runs on the twin (with a one-line warning, once per model), so a sweep never mixes
    engines. Either way the twin takes every `model.*` override it has a knob for (dtype,
    max_model_len, seed, resources)."""
    cfg = to_dict(compose(overrides))
    for key in ("model", "aux_model"):
        model = cfg.get(key)
        if not model or not model.get("twin"):
            continue
        trains = key == "model" and METHODS.get(cfg["method"]["name"]).mutates_policy
        if importable(model["backend"]):
            if trains and model["backend"] not in TRAINABLE_BACKENDS:
                cfg[key] = {**model, "trainer": twin_config(overrides, key, model["twin"])[key]}
            continue
        warn_once(f"{model['backend']} is not installed here (make setup installs it); "
                  f"{model['label']} runs on its twin {model['twin']}")
        cfg = {**twin_config(overrides, key, model["twin"]), **{k: cfg[k] for k in ("model", "aux_model")
                                                                 if k != key and k in cfg}}
    return cfg


def twin_config(overrides: list[str], key: str, twin: str) -> dict[str, Any]:
    """The cell composed with `key` (model or aux_model) set to its twin, carrying each `key.*`
    override whose knob the twin has (others, e.g. vLLM's kv_cache_gib, stay with the engine)."""
    prefix = "model" if key == "model" else "model@aux_model"

    def path(override: str) -> str:
        return override.split("=")[0].lstrip("+~")

    rest = [o for o in overrides if not path(o).startswith((f"{prefix}=", f"{key}."))] + [f"{prefix}={twin}"]
    plain = to_dict(compose(rest))
    carried = [o for o in overrides if path(o).startswith(f"{key}.")
               and path(o)[len(key) + 1:].split(".")[0] in plain[key]]
    return to_dict(compose(rest + carried)) if carried else plain


def plan(overrides: list[str]) -> tuple[Path, list[CellSpec], dict[str, Any]]:
    """Compose and validate every cell of the grid; nothing is written here."""
    cells = [compose_cell(ov) for ov in expand_grid(overrides)]
    sweeps = {c["sweep"] for c in cells}
    if len(sweeps) != 1:
        raise UserError(f"one sweep name per run, got {sorted(sweeps)}")
    first = cells[0]
    sweep_dir = results_root(first["results_dir"]) / first["sweep"]
    check_splits(cells)
    specs, seen, reused = [], set(), set()
    for cfg in cells:
        try:
            t = cfg["task"]
            method = METHODS.get(cfg["method"]["name"])(**params_of(cfg["method"]))
            with warnings.catch_warnings(record=True) as caught:  # a cell that runs but cannot learn
                warnings.simplefilter("always")
                method.check_cell(budget=int(cfg["budget"]), train_size=int(t["train_size"]), model=cfg["model"])
            for w in caught:
                warn_once(f"{cfg['task']['name']}/{cfg['method']['name']} budget={cfg['budget']}: {w.message}")
            for key in ("model", "aux_model"):
                if cfg.get(key):
                    check_reservation(cfg[key], key)
            check_shared_memory(cfg)
        except UnknownName as exc:
            raise UserError(str(exc)) from None
        except (TypeError, ValueError) as exc:
            cell = f"{cfg['task']['name']}/{cfg['method']['name']}/{cfg['model'].get('label')}"
            raise UserError(f"{cell}: {exc}") from None
        spec = CellSpec(cfg, sweep_dir)
        if spec.cell_id not in seen:  # identical cells from redundant overrides run once
            seen.add(spec.cell_id)
            specs.append(spec)
        elif not METHODS.get(cfg["method"]["name"]).uses_rollouts:
            reused.add(cfg["method"]["name"])
    if reused:
        print(f"sibench: {', '.join(sorted(reused))} spends no rollouts, so one cell per configuration serves "
              f"every seed and budget of the grid", flush=True)
    return sweep_dir, specs, first


_splits_checked: dict[str, tuple[int, int]] = {}  # task config -> sizes known to fit, in this process


def every_method_unless_named(overrides: list[str]) -> list[str]:
    """The sweep's default grid: with no `method=` among the overrides, every registered method."""
    if any(o.split("=", 1)[0].lstrip("+~") in ("method", "method.name") for o in overrides):
        return overrides
    return [f"method={','.join(METHODS.names())}", *overrides]


def engine_of(model: dict[str, Any]) -> str:
    """What generates for a cell, as the plan names it: backend/dtype (`vllm/auto`, `mock/-`)."""
    return f"{model.get('backend', '?')}/{model.get('dtype') or '-'}"


def print_plan(sweep_dir: Path, specs: list[CellSpec], indent: str = "") -> None:
    """The plan-only listing shared by `harness.sweep --dry-run` and `harness.paper run --dry-run`:
    the cell count, then one line per cell with its label, state, model and engine."""
    from tabulate import tabulate

    finished = sum(s.done for s in specs)
    print(f"{indent}sweep {sweep_dir.name}: {len(specs)} cells ({finished} finished, {len(specs) - finished} to run) "
          f"-> {sweep_dir}")
    rows = [(s.label, "finished" if s.done else "to run", s.config["model"].get("label", "?"),
             engine_of(s.config["model"]), s.cell_id) for s in specs]
    table = tabulate(rows, headers=["cell", "state", "model", "engine", "cell id"], tablefmt="plain")
    print("\n".join(indent + "  " + line for line in table.splitlines()), flush=True)


def check_splits(cells: list[dict[str, Any]]) -> None:
    """Refuse a task that cannot give its cells disjoint train and test sets, before anything runs.
    Whether it can depends on how many distinct problems its settings have, not on the seed, so
    each task configuration is drawn once, at the largest sizes its cells ask for (the cell
    itself draws its own split, and asserts it, at run time)."""
    largest: dict[str, dict[str, Any]] = {}
    for cfg in cells:
        t = cfg["task"]
        key = content_hash({k: v for k, v in t.items() if k not in ("train_size", "test_size")})
        big = largest.setdefault(key, cfg)
        if (t["train_size"], t["test_size"]) != (big["task"]["train_size"], big["task"]["test_size"]):
            sizes = {k: max(t[k], big["task"][k]) for k in ("train_size", "test_size")}
            largest[key] = {**big, "task": {**big["task"], **sizes}}
    for key, cfg in largest.items():
        t = cfg["task"]
        done = _splits_checked.get(key)
        if done is not None and done[0] >= t["train_size"] and done[1] >= t["test_size"]:
            continue  # this process drew as large a split of this task already (the paper runner plans per block)
        try:
            task = build_task(cfg)
            first_problem_in_time(task, t)
            disjoint_splits(task, t["train_size"], t["test_size"], cfg["seed"], t["test_seed"])
        except (UnknownName, UserError) as exc:
            raise UserError(str(exc)) from None
        except (TypeError, ValueError, AssertionError) as exc:  # reasoning-gym asserts its configs
            raise UserError(f"task {t['name']} (train_size={t['train_size']}, test_size={t['test_size']}): "
                            f"{exc}") from None
        _splits_checked[key] = (t["train_size"], t["test_size"])


PROBLEM_LIMIT_S = 20.0  # plan-time limit on generating a task's first problem (and its few-shot demos)


class _TooSlow(BaseException):  # not an Exception: a generator's own `except Exception` must not swallow it
    pass


def first_problem_in_time(task: Any, t: dict[str, Any]) -> None:
    """Refuse a task configuration whose generator takes minutes per problem (knights_knaves with
    16 people, a 7x7 zebra), before the split draw spends them: the first test problem must come
    within PROBLEM_LIMIT_S. Signals exist in the main thread only; elsewhere nothing is timed."""
    if threading.current_thread() is not threading.main_thread():
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _TooSlow

    changed = [f"{f.name}={getattr(task, f.name)}" for f, _ in config_fields(type(task))
               if f.default is not dataclasses.MISSING and getattr(task, f.name) != f.default]
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, PROBLEM_LIMIT_S)
    try:
        task.problems("test", 1, t["test_seed"])
    except _TooSlow:
        raise UserError(f"task {t['name']} with {', '.join(changed) or 'its default settings'} takes over "
                        f"{PROBLEM_LIMIT_S:g} s to generate one problem (its split needs "
                        f"{t['train_size'] + t['test_size']}); choose smaller settings") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


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


def execute(sweep_dir: Path, specs: list[CellSpec], first: dict[str, Any]) -> int:
    """Run planned cells (finished ones are skipped); exit status 0, or 1 if a cell failed. A
    launcher-level user error (no cluster, too few GPUs) raises UserError (see `run_locked`)."""
    from harness.registry import LAUNCHERS

    for s in specs:
        why = cell_damage(s.out_dir) if (s.out_dir / "done.json").exists() else ""
        if why:
            print(f"sibench: warning: finished cell {s.label} ({s.cell_id}) does not read ({why}); "
                  f"running it again", file=sys.stderr, flush=True)
    todo = sum(not s.done for s in specs)
    plan_file = sweep_dir / PLAN_FILE
    previous_plan = plan_file.read_bytes() if plan_file.exists() else None
    write_plan(sweep_dir, [(s.cell_id, s.label) for s in specs])
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
    if len(summary):
        write_parquet(summary, sweep_dir / "summary.parquet")
    else:  # no finished cell in this plan: an older summary would describe another plan
        (sweep_dir / "summary.parquet").unlink(missing_ok=True)
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
    sweep_dir.mkdir(parents=True, exist_ok=True)
    handle = open(sweep_dir / ".lock", "a+")  # noqa: SIM115 - held open for the whole sweep
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


INTERRUPTED = "sibench: interrupted; re-run the same command to resume"
TERMINATED = "sibench: terminated (SIGTERM); re-run the same command to resume"


class Preempted(KeyboardInterrupt):
    """SIGTERM (what SLURM and Kubernetes send on preemption), raised where Ctrl-C would be, so
    it takes the same path: running cells are marked `interrupted` and a re-run resumes them."""


_sigterm: list[bool] = []  # set once SIGTERM arrived: Ray's waits re-raise any interrupt as a plain KeyboardInterrupt


def on_sigterm(signum: int, frame: Any) -> None:
    _sigterm.append(True)
    raise Preempted()


def interrupted(exc: BaseException | None = None) -> int:
    """Report Ctrl-C (exit 130) or SIGTERM (exit 143) once; further signals during clean-up are ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    term = isinstance(exc, Preempted) or bool(_sigterm)
    print(TERMINATED if term else INTERRUPTED, file=sys.stderr, flush=True)
    return 143 if term else 130


def exit_process(code: int) -> NoReturn:
    """`sys.exit(code)` for the entry points. After a handled Ctrl-C (130) or SIGTERM (143), CPython 3.11 still ends
    the process *by SIGINT* (status -2) when the interrupt landed inside exec'd code (e.g. a
    dataclass being built), because it marks the interrupt unhandled there; so exit explicitly,
    after the atexit clean-up the interpreter would have run (and without waiting for threads still
    blocked on an endpoint that the interrupted cell abandoned)."""
    if code in (130, 143):
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def run_locked(sweep_dir: Path, specs: list[CellSpec], first: dict[str, Any]) -> int:
    """`execute` under the sweep lock, with Ctrl-C turned into one line and exit status 130. Every
    entry point that runs cells (sweep, run, paper, calibrate) comes through here, before any cell
    imports torch: the place to quiet the libraries (harness/quiet.py)."""
    quiet_libraries()
    created = not sweep_dir.exists()
    try:
        with sweep_lock(sweep_dir):
            return execute(sweep_dir, specs, first)
    except UserError as exc:
        if created and not (sweep_dir / "cells").exists():  # refused before any cell: leave nothing behind
            shutil.rmtree(sweep_dir, ignore_errors=True)
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return interrupted(exc)


def asked_for_help(args: list[str]) -> int | None:
    """`--help [GROUP[=NAME]]` / `-h`: print the generated help and return 0; else None."""
    if not args or args[0] not in ("--help", "-h"):
        return None
    from harness.schema import help_text

    only = args[1] if len(args) > 1 else ""
    group = only.partition("=")[0]
    if group and group not in GROUPS:
        print(f"sibench: error: --help {only}: unknown group {group!r}; valid: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    print(help_text(only))
    return 0


DRY_RUN = "--dry-run"


def main(argv: list[str] | None = None, *, every_method: bool = True) -> int:
    """`every_method`: a grid without `method=` runs every registered method (harness.run passes
    False: its one cell takes conf/config.yaml's default method)."""
    args = list(sys.argv[1:] if argv is None else argv)
    shown = asked_for_help(args)
    if shown is not None:
        return shown
    dry_run = DRY_RUN in args
    overrides = [a for a in args if a != DRY_RUN]
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        if every_method:
            overrides = every_method_unless_named(overrides)
        sweep_dir, specs, first = plan(overrides)
    except UserError as exc:
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        return interrupted(exc)
    if dry_run:
        print_plan(sweep_dir, specs)
        return 0
    return run_locked(sweep_dir, specs, first)


if __name__ == "__main__":
    exit_process(main())
