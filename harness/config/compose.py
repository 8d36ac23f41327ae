"""Hydra composition of cells, grid expansion, and validation of user input.

Drives Hydra through its compose API (not `@hydra.main`) so that our sweep runner owns resume,
fan-out and error reporting. The configs are structured (harness/config/schema.py): Hydra rejects
unknown keys and wrong types, the knobs' declared ranges and choices are checked after
composition. Bad input raises `UserError`, which the entry points print as one line and turn into
exit code 2 before anything is written.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from omegaconf import DictConfig, OmegaConf

from harness.config.schema import group_choices
from harness.core.errors import UserError
from harness.core.paths import CONF_DIR, check_sweep_name, results_root


def _parse(overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
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
    for text, ov in zip(overrides, parsed, strict=True):
        if ov.is_interval_sweep() or ov.value_type == ValueType.GLOB_CHOICE_SWEEP:
            raise UserError(f"{text}: Hydra's interval and glob sweeps are not supported; valid: a comma list "
                            f"({ov.get_key_element()}=a,b) or range(start,stop[,step])")
    return parsed


def expand_grid(overrides: list[str]) -> list[list[str]]:
    """Turn sweep overrides (`task=a,b seed=0,1`) into one override list per cell (cartesian
    product). In a grid of several methods (or tasks), `method.<knob>=v` goes to the cells whose
    method has that knob (`METHOD=zero_shot,core ARGS=method.k_insights=10` tunes core only);
    a knob that no method of the grid has is left in, so composing refuses it."""
    parsed = _parse(overrides)
    axes: list[list[list[str]]] = []  # per override: its alternatives, each one or more overrides
    for ov in parsed:
        key = ov.get_key_element()
        if key.lstrip("+~").split(".")[0] == "hydra":
            raise UserError(f"{key}=...: sibench composes configs with Hydra's compose API, so hydra.* settings "
                            f"are not used; valid: the keys `python -m harness.sweep --help` lists")
        if ov.is_sweep_override():
            axes.append([[f"{key}={v}"] for v in ov.sweep_string_iterator()])
        elif isinstance(ov.value(), dict) and ov.value() and all(re.fullmatch(r"[A-Za-z_]\w*", str(k))
                                                                 for k in ov.value()):  # a dict knob: each entry
            axes.append([[f"++{key.lstrip('+~')}.{k}={_hydra_value(v)}" for k, v in ov.value().items()]])
        else:
            axes.append([[f"{key}={ov.get_value_element_as_str()}"]])
    cells = [[o for part in combo for o in part] for combo in itertools.product(*axes)] if axes else [[]]
    for group in ("method", "task"):
        cells = _scope_group_knobs(cells, group)
    return cells


def _hydra_value(value: Any) -> str:
    """A parsed override value written back in Hydra's override syntax."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    text = str(value)
    if re.fullmatch(r"[A-Za-z_][\w.\-/]*", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _scope_group_knobs(cells: list[list[str]], group: str) -> list[list[str]]:
    from harness.config.schema import knob_names

    def entry(cell: list[str]) -> str:
        picked = [o.split("=", 1)[1] for o in cell if o.split("=", 1)[0] == group]
        return picked[-1] if picked else default_choice(group)

    entries = {entry(c) for c in cells}
    if len(entries) < 2:
        return cells
    knobs = {e: knob_names(group, e) for e in entries}
    if any(k is None for k in knobs.values()):  # a YAML-only variant: leave every override in
        return cells
    everywhere = set.union(*(k for k in knobs.values() if k is not None))

    def keep(cell: list[str], override: str) -> bool:
        path = override.split("=", 1)[0].lstrip("+~")
        if not path.startswith(group + "."):
            return True
        knob = path[len(group) + 1:].split(".")[0]
        return knob in (knobs[entry(cell)] or ()) or knob not in everywhere
    return [[o for o in cell if keep(cell, o)] for cell in cells]


def default_choice(group: str) -> str:
    """The entry conf/config.yaml picks for a group when the command line does not."""
    import yaml

    for item in yaml.safe_load((CONF_DIR / "config.yaml").read_text())["defaults"]:
        if isinstance(item, dict) and group in item:
            return str(item[group])
    return ""


def _check_group_choices(overrides: list[str]) -> None:
    for ov in _parse(overrides):
        if ov.is_delete():  # a deleted key would surface later as a missing one, far from its cause
            path = ov.get_key_element().lstrip("~")
            hint = "model@aux_model=null for no aux model" if "aux_model" in path else f"{path}=<value>"
            raise UserError(f"~{path}: deleting a config key is not supported; set it instead ({hint}); see --help")
        key = ov.get_key_element().lstrip("+~").split("@")[0]  # model@aux_model picks from the model group
        if key in ("task", "method", "model", "launcher", "logger") and not ov.is_delete():
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
    from omegaconf.errors import OmegaConfBaseException

    from harness.config.schema import register_schemas

    _check_group_choices(overrides)
    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name="config", overrides=overrides)
        OmegaConf.resolve(cfg)  # interpolations (${oc.env:X}) resolve here, type-checked, or are refused
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(_explain(exc, overrides)) from None
    validate(cfg)
    return cfg


def _explain(exc: Exception, overrides: list[str]) -> str:
    """Hydra's composition error as one line naming the override and what is valid."""
    chain: list[BaseException] = [exc]
    while chain[-1].__cause__ is not None:
        chain.append(chain[-1].__cause__)
    text = " ".join(" ".join(str(e).split()) for e in reversed(chain))
    key = re.search(r"full_key: ([\w.]+)", text) or re.search(r"override '([\w.]+)'", text)
    if key is None:
        given = next((o for o in reversed(overrides) if "$" in o), "")  # an interpolation that does not resolve
        return f"{_unescape(given)}: {text}" if given else f"invalid override: {text}"
    path = key.group(1)
    given = _unescape(next((o for o in reversed(overrides) if o.lstrip("+~").split("=")[0] == path), path))
    head = path.rpartition(".")[0]
    picked = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == head]
    if "not in struct" in text or "To append to your config" in text:
        where = f" of {head}" + (f" ({picked[-1]})" if picked else "") if head else ""
        return f"unknown config key {given!r}; valid keys{where}: {', '.join(_valid_keys(head, overrides))}"
    reason = text.split(" full_key:")[0]
    entry = picked[-1] if picked else default_choice(head) if head in ("task", "method") else ""
    return f"{given}: {reason}; valid: {_rule(path, entry) or 'see --help'}"


def _unescape(override: str) -> str:
    """An override as the user typed it (`expand_grid` escapes `${...}` for Hydra's parser)."""
    return re.sub(r"\\(.)", r"\1", override)


def _rule(path: str, entry: str = "") -> str:
    """The declared rule of a knob: top-level, learn.*, eval.*, or of the picked task/method."""
    from harness.config.schema import CellConfig
    from harness.core.knobs import config_fields, rule
    from harness.core.registry import REGISTRIES
    from harness.engine.evaluate import EvalConfig, Sampling

    head, _, leaf = path.rpartition(".")
    cls = {"": CellConfig, "learn": Sampling, "eval": EvalConfig}.get(head)
    if cls is None and head in ("task", "method") and entry in REGISTRIES[head].names():
        cls = REGISTRIES[head].get(entry)
    for f, hint in config_fields(cls) if cls is not None else []:
        if f.name == leaf:
            return rule(f, hint)
    return ""


def _valid_keys(section: str, overrides: list[str]) -> list[str]:
    """The keys a section of the composed-without-`overrides` config has (for error messages)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    groups = [o for o in overrides if o.split("=")[0] in ("task", "method", "model", "launcher", "logger")]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            node = hydra_compose(config_name="config", overrides=groups)
        for part in filter(None, section.split(".")):
            node = node[part]
        return sorted(str(k) for k in node)
    except Exception:
        return []


def validate(cfg: DictConfig) -> None:
    """Checks of values: each knob's declared range and choices, then what spans knobs."""
    from harness.config.schema import CellConfig, check_cell_config
    from harness.core.registry import UnknownName

    unknown = [k for k in cfg if k not in CellConfig.__dataclass_fields__]
    if unknown:
        raise UserError(f"unknown config key {unknown[0]!r}; valid top-level keys: "
                        f"{', '.join(CellConfig.__dataclass_fields__)}")
    values = to_dict(cfg)
    if values.get("aux_model") is not None and not isinstance(values["aux_model"], dict):
        raise UserError(f"aux_model={values['aux_model']!r}: the aux model is a model entry, picked with "
                        f"model@aux_model=<name>; valid models: {', '.join(group_choices('model'))}")
    try:
        check_cell_config(values)
    except (ValueError, UnknownName) as exc:
        raise UserError(str(exc)) from None
    n = values["eval"]["n_samples"]
    for k in values["eval"]["k"] or []:
        if not 1 <= k <= n:
            raise UserError(f"eval.k={k!r} is not in 1..eval.n_samples={n}; valid k: 1..{n}")
    check_sweep_name(str(values["sweep"]))
    results_root(str(values["results_dir"]))


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
