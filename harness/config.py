"""Hydra composition of cells, grid expansion, and validation of user input.

Drives Hydra through its compose API (not `@hydra.main`) so that our sweep runner owns resume,
fan-out and error reporting. Bad input raises `UserError`, which the entry points print as one
line and turn into exit code 2 before anything is written.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"
GROUPS = ("task", "method", "model", "launcher", "logger")


class UserError(ValueError):
    """Invalid user input: printed as one line, exit code 2."""


def group_choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    try:
        return parser.parse_overrides(overrides)
    except OverrideParseException as exc:
        bad = overrides[-1] if overrides else ""
        for one in overrides:  # name the override that fails on its own, not a guess
            try:
                parser.parse_overrides([one])
            except OverrideParseException:
                bad = one
                break
        raise UserError(f"malformed override {bad!r}: {str(exc).splitlines()[0]}; "
                        f"expected key=value (comma lists sweep, e.g. method=zero_shot,core)") from None


def expand_grid(overrides: list[str]) -> list[list[str]]:
    """Turn sweep overrides (`task=a,b seed=0,1`) into one override list per cell (cartesian product)."""
    parsed = _parse(overrides)
    axes: list[list[str]] = []
    for ov in parsed:
        key = ov.get_key_element()
        if ov.is_sweep_override():
            axes.append([f"{key}={v}" for v in ov.sweep_string_iterator()])
        else:
            axes.append([f"{key}={ov.get_value_element_as_str()}"])
    return [list(combo) for combo in itertools.product(*axes)] if axes else [[]]


def _check_group_choices(overrides: list[str]) -> None:
    for ov in _parse(overrides):
        key = ov.get_key_element().lstrip("+~").split("@")[0]  # model@aux_model picks from the model group
        if key in GROUPS and not ov.is_delete():
            values = list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [
                ov.get_value_element_as_str()]
            valid = group_choices(key)
            for v in values:
                if v not in valid:
                    raise UserError(f"unknown {key} {v!r}; valid {key}s: {', '.join(valid)}")


def compose(overrides: list[str]) -> DictConfig:
    """Compose one cell's config; raise UserError on unknown groups, keys or malformed input."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    _check_group_choices(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
    except HydraException as exc:
        msg = " ".join(str(exc).split())
        raise UserError(f"invalid override: {msg}") from None
    validate(cfg)
    return cfg


TOP_LEVEL_KEYS = ("task", "method", "model", "aux_model", "launcher", "logger", "sweep", "results_dir", "budget",
                  "seed", "checkpoints", "code_version_in_id", "learn", "eval")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_sampling(section: str, cfg: DictConfig) -> None:
    t, top_p, cap = cfg.temperature, cfg.top_p, cfg.get("max_tokens")
    if not _is_number(t) or t < 0:
        raise UserError(f"{section}.temperature={t!r}; valid: a number >= 0 (0 = greedy)")
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise UserError(f"{section}.top_p={top_p!r}; valid: a number in (0, 1]")
    if cap is not None and (not _is_int(cap) or cap < 1):
        raise UserError(f"{section}.max_tokens={cap!r}; valid: a positive integer, or null for the task's cap")


def validate(cfg: DictConfig) -> None:
    """Checks that need the composed config (values, not names)."""
    unknown = [k for k in cfg if k not in TOP_LEVEL_KEYS]
    if unknown:
        raise UserError(f"unknown config key {unknown[0]!r}; valid top-level keys: {', '.join(TOP_LEVEL_KEYS)}")
    budget = cfg.budget
    if not _is_int(budget) or budget <= 0:
        raise UserError(f"budget must be a positive integer, got {budget!r}")
    if not _is_int(cfg.seed) or cfg.seed < 0:
        raise UserError(f"seed={cfg.seed!r}; valid: an integer >= 0")
    n = cfg.eval.n_samples
    if not _is_int(n) or n < 1:
        raise UserError(f"eval.n_samples must be a positive integer, got {n!r}")
    ks = cfg.eval.k
    if ks is not None and not OmegaConf.is_list(ks):
        raise UserError(f"eval.k={ks!r} must be a list or null; valid: e.g. eval.k=[1,{n}] (each in 1..{n})")
    for k in ks or []:
        if not _is_int(k) or not 1 <= k <= n:
            raise UserError(f"eval.k={k!r} is not in 1..eval.n_samples={n}; valid k: 1..{n}")
    for key in ("n_bootstrap", "batch_problems"):
        v = cfg.eval.get(key)
        if not _is_int(v) or v < 1:
            raise UserError(f"eval.{key}={v!r}; valid: a positive integer")
    _check_sampling("eval", cfg.eval)
    _check_sampling("learn", cfg.learn)
    fractions = cfg.checkpoints
    if fractions is not None and not OmegaConf.is_list(fractions):
        raise UserError(f"checkpoints={fractions!r} must be a list of budget fractions; valid: e.g. "
                        f"checkpoints=[0.5] or checkpoints=[] (the final state is always evaluated)")
    for f in fractions or []:
        if not _is_number(f) or not 0 < f < 1:
            raise UserError(f"checkpoint fraction {f!r} must be in (0, 1); the final state is always evaluated")
    for key in ("train_size", "test_size"):
        v = cfg.task.get(key)
        if not _is_int(v) or v < 1:
            raise UserError(f"task.{key} must be a positive integer, got {v!r}")
    cap = cfg.task.get("max_tokens")
    if cap is not None and (not _is_int(cap) or cap < 1):
        raise UserError(f"task.max_tokens={cap!r}; valid: a positive integer")
    if not str(cfg.sweep) or any(c in str(cfg.sweep) for c in "/\\") or str(cfg.sweep).startswith("."):
        raise UserError(f"sweep name {cfg.sweep!r} must be a plain directory name")


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def params_of(section: dict[str, Any], drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """A config section minus its bookkeeping keys: the keyword arguments of the thing it builds."""
    return {k: v for k, v in section.items() if k not in drop and not k.startswith("_")}
