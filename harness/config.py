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

    try:
        return OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as exc:
        bad = next((o for o in overrides if "=" not in o), overrides[-1] if overrides else "")
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


def validate(cfg: DictConfig) -> None:
    """Checks that need the composed config (values, not names)."""
    budget = cfg.budget
    if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
        raise UserError(f"budget must be a positive integer, got {budget!r}")
    if not isinstance(cfg.seed, int):
        raise UserError(f"seed must be an integer, got {cfg.seed!r}")
    n = cfg.eval.n_samples
    if not isinstance(n, int) or n < 1:
        raise UserError(f"eval.n_samples must be a positive integer, got {n!r}")
    for k in cfg.eval.k or []:
        if not isinstance(k, int) or not 1 <= k <= n:
            raise UserError(f"eval.k={k!r} is not in 1..eval.n_samples={n}; valid k: 1..{n}")
    for f in cfg.checkpoints or []:
        if not 0 < f < 1:
            raise UserError(f"checkpoint fraction {f!r} must be in (0, 1); the final state is always evaluated")
    for key in ("train_size", "test_size"):
        v = cfg.task.get(key)
        if not isinstance(v, int) or v < 1:
            raise UserError(f"task.{key} must be a positive integer, got {v!r}")
    if not str(cfg.sweep) or any(c in str(cfg.sweep) for c in "/\\") or str(cfg.sweep).startswith("."):
        raise UserError(f"sweep name {cfg.sweep!r} must be a plain directory name")


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def params_of(section: dict[str, Any], drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """A config section minus its bookkeeping keys: the keyword arguments of the thing it builds."""
    return {k: v for k, v in section.items() if k not in drop and not k.startswith("_")}
