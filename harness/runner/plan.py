"""The plan of a sweep: expand the grid, compose and validate every cell (a model's trainable `twin`,
split sizes, a task's first problem within PROBLEM_LIMIT_S) before anything is written, and print it
(`--dry-run`). Bad input raises UserError.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Any

from harness.backends import TRAINABLE_BACKENDS, importable
from harness.config.compose import compose, expand_grid, to_dict
from harness.core.devices import check_reservation, check_shared_memory
from harness.core.errors import UserError
from harness.core.knobs import config_fields, params_of
from harness.core.memory import check_fractional_share, check_trainer_memory
from harness.core.paths import results_root
from harness.core.registry import METHODS, UnknownName
from harness.core.timeouts import raise_after
from harness.core.types import content_hash
from harness.engine.cell import DEFAULT_MAX_TOKENS, CellSpec, build_task, disjoint_splits

_splits_checked: dict[str, tuple[int, int]] = {}  # task config -> sizes known to fit, in this process


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
                    check_fractional_share(cfg[key], key)
            check_shared_memory(cfg)
            max_tokens = (cfg.get("learn") or {}).get("max_tokens") or t.get("max_tokens", DEFAULT_MAX_TOKENS)
            check_trainer_memory(cfg["model"], method.training_pass(int(max_tokens)))
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
              f"every seed, budget, training size and learn.* value of the grid", flush=True)
    return sweep_dir, specs, first


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
            draw_in_time(build_task(cfg), cfg)
        except (UnknownName, UserError) as exc:
            raise UserError(str(exc)) from None
        except (TypeError, ValueError, AssertionError) as exc:  # reasoning-gym asserts its configs
            raise UserError(f"task {t['name']} (train_size={t['train_size']}, test_size={t['test_size']}): "
                            f"{exc}") from None
        _splits_checked[key] = (t["train_size"], t["test_size"])


SPLIT_LIMIT_S = 120.0  # plan-time limit on drawing a task configuration's whole split
PROBLEM_LIMIT_S = 20.0  # plan-time limit on generating a task's first problem (and its few-shot demos)


class _TooSlow(BaseException):  # not an Exception: a generator's own `except Exception` must not swallow it
    pass


def draw_in_time(task: Any, cfg: dict[str, Any]) -> None:
    """Draw a task configuration's split at plan time, refusing one whose generator is too slow for
    it: the first test problem must come within PROBLEM_LIMIT_S (knights_knaves with 16 people) and
    the whole split within SPLIT_LIMIT_S (a 7x6 zebra gave its first problem in under a second and
    its 22-problem split in 4 minutes, planned silently). Only in the main thread (signals)."""
    t = cfg["task"]
    changed = [f"{f.name}={getattr(task, f.name)}" for f, _ in config_fields(type(task))
               if f.default is not dataclasses.MISSING and getattr(task, f.name) != f.default]
    settings = ", ".join(changed) or "its default settings"
    need = t["train_size"] + t["test_size"]
    with raise_after(PROBLEM_LIMIT_S, _TooSlow):
        try:
            task.problems("test", 1, t["test_seed"])
        except _TooSlow:
            raise UserError(f"task {t['name']} with {settings} takes over {PROBLEM_LIMIT_S:g} s to generate one "
                            f"problem (its split needs {need}); choose smaller settings") from None
    with raise_after(SPLIT_LIMIT_S, _TooSlow):
        try:
            disjoint_splits(task, t["train_size"], t["test_size"], cfg["seed"], t["test_seed"])
        except _TooSlow:
            raise UserError(f"task {t['name']} with {settings} takes over {SPLIT_LIMIT_S:g} s to generate its "
                            f"split of {need} problems (train_size + test_size); choose smaller settings or "
                            f"sizes") from None
