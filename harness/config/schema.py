"""The Hydra structured configs of a cell, built from the knob dataclasses (harness/core/knobs.py).

- Root (`cell_schema`, first in conf/config.yaml's defaults): `CellConfig`: budget, seed,
  checkpoints, `learn` (`Sampling`) and `eval` (`EvalConfig`).
- `task/<name>`, `method/<name>`, `launcher/<name>`, `logger/<name>`: the schema of each
  registered class, plus `name` (and the task's `Splits`). An entry needs no YAML: its defaults
  are the dataclass defaults. Where `conf/<group>/<name>.yaml` exists (a variant, e.g. hanoi's
  test size), it starts from `/schema/<group>/<name>` and keeps only what differs.
- `backend/<name>`: what each `conf/model/*.yaml` starts from (`defaults: [/backend/hf@_here_,
  _self_]`): the backend's knobs plus `backend`, `label` and `resources`.
Hydra then rejects unknown keys and wrong types; `check_cell_config` checks ranges and choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from harness.core.knobs import check_section, config_fields, describe_knobs, knob, schema_of
from harness.core.memory import DEFAULT_GPU_GIB
from harness.core.paths import CONF_DIR
from harness.core.registry import BACKENDS, LAUNCHERS, LOGGERS, METHODS, REGISTRIES, TASKS
from harness.engine.evaluate import EvalConfig, Sampling

GROUPS = ("task", "method", "model", "launcher", "logger")


@dataclass
class Splits:
    """How many problems a cell draws (every task has these)."""

    train_size: int = knob(10, "training problems a method may learn from (rollouts spread over them)", ge=1,
                           le=100_000)
    test_size: int = knob(100, "held-out problems, the same for every method and seed (N=100: about ±5 pts SE "
                               "at p=0.3); the sweep draws the split while planning, so a task too small for it "
                               "is refused before anything runs", ge=1, le=100_000)
    test_seed: int = knob(0, "generator seed (or order) of the test set", ge=0, le=998)


@dataclass
class Resources:
    """What the Ray launcher reserves for a cell that uses this model."""

    num_cpus: float = knob(1, "CPUs per cell", ge=0)
    num_gpus: float = knob(0, "GPUs per cell", ge=0)
    gpu_memory_gib: float = knob(DEFAULT_GPU_GIB, "memory of one GPU in GiB (80: an H100), for the plan-time "
                                                  "trainer memory check (harness/core/memory.py)", gt=0)


@dataclass
class CellConfig:
    """Top-level knobs of a cell (the groups are picked with task=..., method=..., model=...)."""

    task: Any = MISSING
    method: Any = MISSING
    model: Any = MISSING
    aux_model: Any = None
    launcher: Any = MISSING
    logger: Any = MISSING
    sweep: str = knob("default", "results go to <results_dir>/<sweep>/ (make sweep SWEEP=name)")
    results_dir: str = knob("results", "where sweeps are written; relative paths are taken from the repository root")
    budget: int = knob(500, "rollout budget B per cell: scored policy generations on training problems "
                            "(DESIGN §3)", ge=1)
    seed: int = knob(0, "run seed: picks the training problems and seeds learning-phase sampling", ge=0, le=998)
    checkpoints: list[float] = knob([0.5], "budget fractions in (0, 1) evaluated mid-learning (the final state "
                                           "always is); each costs one full evaluation, e.g. [0.25,0.5,0.75]",
                                     gt=0, lt=1)
    code_version_in_id: bool = knob(True, "the cell id includes a hash of the engine and of this cell's task and "
                                          "method code (an edit re-runs the cell)")
    # the schemas of Sampling and EvalConfig (frozen at run time, so not used directly: Hydra
    # writes overrides into the nodes)
    learn: Any = field(default_factory=schema_of(Sampling))
    eval: Any = field(default_factory=schema_of(EvalConfig))


GROUP_SECTIONS = ("task", "method", "model", "aux_model", "launcher", "logger")


ROOT_SCALARS = tuple(k for k in CellConfig.__dataclass_fields__ if k not in GROUP_SECTIONS + ("learn", "eval"))


def _schema(group: str, name: str) -> type:
    cls = REGISTRIES[group].get(name)
    extra: dict[str, tuple[Any, Any]] = {"name": (str, name)}
    if group == "task":
        extra |= {f: (t, getattr(Splits, f)) for f, t in (("train_size", int), ("test_size", int),
                                                             ("test_seed", int))}
    return schema_of(cls, extra)


def knob_names(group: str, name: str) -> set[str] | None:
    """The knobs a task or method entry has, or None for a name that is not registered (a YAML variant)."""
    registry = REGISTRIES[group]
    if name not in registry.names():
        return None
    names = {f.name for f, _ in config_fields(registry.get(name))} | {"name"}
    return names | set(Splits.__dataclass_fields__) if group == "task" else names


def backend_schema(name: str) -> type:
    return schema_of(BACKENDS.get(name), {"backend": (str, name), "label": (str, name),
                                          "twin": (Optional[str], None),  # noqa: UP045 - OmegaConf needs Optional
                                          "resources": (Resources, Resources()),
                                          # params, layers, hidden, intermediate, kv (and q) widths: the
                                          # trainer memory check's input (harness/core/memory.py ModelShape)
                                          "shape": (Optional[dict[str, float]], None)})  # noqa: UP045


_registered = False


def register_schemas() -> None:
    """Store every schema in Hydra's ConfigStore (once per process)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore

    from harness.core.paths import CONF_DIR

    cs = ConfigStore.instance()
    cs.store(name="cell_schema", node=CellConfig)
    for group in ("task", "method", "launcher", "logger"):
        for name in REGISTRIES[group].names():
            node = _schema(group, name)
            cs.store(group=f"schema/{group}", name=name, node=node)
            if not (CONF_DIR / group / f"{name}.yaml").exists():
                cs.store(group=group, name=name, node=node)
    for name in BACKENDS.names():
        cs.store(group="backend", name=name, node=backend_schema(name))
    _registered = True


def check_cell_config(cfg: dict[str, Any]) -> None:
    """Range and choice checks of every section against its knobs; ValueError names the value."""
    check_section(CellConfig, cfg, "")
    check_section(Sampling, cfg["learn"], "learn.")
    check_section(EvalConfig, cfg["eval"], "eval.")
    check_section(TASKS.get(cfg["task"]["name"]), cfg["task"], "task.")
    check_section(Splits, cfg["task"], "task.")
    check_section(METHODS.get(cfg["method"]["name"]), cfg["method"], "method.")
    for key in ("model", "aux_model"):
        if cfg.get(key):
            check_section(BACKENDS.get(cfg[key]["backend"]), cfg[key], f"{key}.")
            check_section(Resources, cfg[key].get("resources") or {}, f"{key}.resources.")
    check_section(LAUNCHERS.get(cfg["launcher"]["name"]), cfg["launcher"], "launcher.")
    check_section(LOGGERS.get(cfg["logger"]["name"]), cfg["logger"], "logger.")


def help_text(only: str = "") -> str:
    """`--help`: usage, the top-level knobs, and every group entry with its knobs, from the
    dataclasses. `only` = a group (`method`) or one entry (`method=memrl`) restricts the listing."""
    import yaml

    from harness.config.schema import group_choices
    from harness.core.paths import CONF_DIR

    group, _, entry = only.partition("=")
    lines = ["usage: python -m harness.sweep [KEY=VALUE ...] [--dry-run] (or harness.run for one cell)",
             "  without method=, the sweep runs every registered method (harness.run: method=zero_shot);",
             "  --dry-run composes and validates every cell and prints the plan (make sweep ... DRY=1)",
             "  e.g. python -m harness.sweep task=math method=zero_shot,core budget=100 seed=0,1 method.k_insights=10",
             "  comma lists sweep; make sweep TASK=math METHOD=core BUDGET=500 ARGS='eval.n_samples=8' is the same",
             "  --help GROUP[=NAME] lists one group or entry, e.g. --help method=memrl", ""]
    if not group:
        lines += ["top-level knobs:", *describe_knobs(CellConfig, drop=GROUP_SECTIONS + ("learn", "eval")),
                  "learn.* (learning-phase rollouts):", *describe_knobs(Sampling),
                  "eval.* (held-out evaluation):", *describe_knobs(EvalConfig), ""]
    for g in GROUPS:
        if group and g != group:
            continue
        choices = group_choices(g)
        lines.append(f"{g}=<name>  ({', '.join(choices)})")
        if g == "model":
            lines.append("  each conf/model/*.yaml picks a backend and sets its knobs (model.<knob>=...):")
            for name in BACKENDS.names():
                if not entry or entry == name:
                    lines += [f"  backend {name}:", *describe_knobs(BACKENDS.get(name))]
            lines += ["  every model also has: label (the name in records and tables), twin (a model entry with",
                      "  the same weights on a trainable backend, used by weight-training methods and where",
                      "  this backend cannot be imported), shape (params, layers, hidden, intermediate, kv: the",
                      "  trainer memory check's input) and", *describe_knobs(Resources, indent="    resources.")]
            continue
        for name in REGISTRIES[g].names():
            if entry and entry != name:
                continue
            cls = REGISTRIES[g].get(name)
            doc = (cls.__doc__ or "").strip().splitlines()
            lines.append(f"  {g}={name}" + (f": {doc[0]}" if doc and not doc[0].startswith(cls.__name__ + "(")
                                             else ""))
            lines += describe_knobs(cls)
            if g == "task":
                lines += describe_knobs(Splits)
            variant = CONF_DIR / g / f"{name}.yaml"
            if variant.exists():
                changed = {k: v for k, v in (yaml.safe_load(variant.read_text()) or {}).items() if k != "defaults"}
                lines.append(f"    conf/{g}/{name}.yaml sets: " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    return "\n".join(lines)


def group_choices(group: str) -> list[str]:
    """A group's entries: the registered names (no YAML needed) and any YAML under conf/<group>."""
    from harness.core.registry import REGISTRIES

    registered = REGISTRIES[group].names() if group in REGISTRIES else []
    return sorted(set(registered) | {p.stem for p in (CONF_DIR / group).glob("*.yaml")})
