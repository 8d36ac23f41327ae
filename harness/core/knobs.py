"""Knobs: each config value is declared once, as a dataclass field of the thing it configures.

`knob(default, help, ge=..., gt=..., le=..., lt=...)` is a `dataclasses.field` whose metadata holds
the help text and the valid range; a `Literal[...]` annotation gives the choices. Numbers are
refused when NaN or infinite (unless the knob says `nonfinite=True`), integers beyond
`INT_LIMIT` always, list elements against the knob's range, and a `min_x` knob above its
sibling `max_x`. From such a
dataclass `schema_of` builds the Hydra structured config (ConfigStore node) that composes and
type-checks a config section, `check_knobs` checks values against the ranges and choices (one
line naming the value and what is valid), and `describe_knobs` prints `--help`. The idea is
TRL's dataclass configs with `metadata={"help": ...}`, applied to Hydra as its docs recommend
(structured configs as schemas).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal, Optional, Union

RANGE_KEYS = ("ge", "gt", "le", "lt")


_SYMBOL = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


INT_LIMIT = 2**31 - 1  # no integer knob goes beyond this (parquet, numpy seeds and timers all take it)


def knob(default: Any, help: str, *, ge: float | None = None, gt: float | None = None,
         le: float | None = None, lt: float | None = None, nonfinite: bool = False) -> Any:
    """A config field: its default, its help text and (for numbers) its valid range; `nonfinite`
    lets NaN and ±inf through (the range still applies to inf)."""
    meta = {"help": help, **{k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}}
    if nonfinite:
        meta["nonfinite"] = True
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def config_fields(cls: type) -> Iterator[tuple[dataclasses.Field, Any]]:
    """The fields of `cls` a config sets (init fields not starting with `_`), with resolved types."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.init and not f.name.startswith("_"):
            yield f, hints[f.name]


def _choices(hint: Any) -> tuple[Any, ...] | None:
    """The Literal values a hint allows (through Optional), else None."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if _is_union(hint):
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is Literal:
                return typing.get_args(arg)
    return None


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType)


def _omegaconf_type(hint: Any) -> Any:
    """The nearest type OmegaConf validates: Literal -> its values' type, X | None -> Optional[X],
    containers of primitives kept, anything else Any (checked by `check_knobs` or not at all)."""
    if hint in (int, float, bool, str):
        return hint
    if typing.get_origin(hint) is Literal:
        kinds = {type(v) for v in typing.get_args(hint)}
        return kinds.pop() if len(kinds) == 1 else Any
    if _is_union(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        inner = _omegaconf_type(args[0]) if len(args) == 1 else Any
        return Optional[inner] if inner is not Any and len(args) < len(typing.get_args(hint)) else Any  # noqa: UP045
    origin = typing.get_origin(hint)
    if origin in (list, tuple) and all(_omegaconf_type(a) is not Any for a in typing.get_args(hint)[:1]):
        return types.GenericAlias(list, (_omegaconf_type(typing.get_args(hint)[0]) if typing.get_args(hint) else Any,))
    if origin is dict:  # a dict knob declares its value type (`boosts: dict[str, float]`), checked per entry
        value = typing.get_args(hint)[1:] or (Any,)
        return types.GenericAlias(dict, (str, value[0] if value[0] in (int, float, bool, str) else Any))
    return Any


def schema_of(cls: type, extra: dict[str, tuple[Any, Any]] | None = None, drop: tuple[str, ...] = ()) -> type:
    """The structured-config dataclass of `cls`'s knobs, plus `extra` {name: (type, default)} first
    (bookkeeping keys such as the registry `name`), minus `drop`."""
    fields: list[tuple[str, Any, Any]] = [
        (k, t, dataclasses.field(default_factory=functools.partial(copy.deepcopy, d)) if isinstance(d, list | dict)
         or dataclasses.is_dataclass(d) else dataclasses.field(default=d)) for k, (t, d) in (extra or {}).items()]
    for f, hint in config_fields(cls):
        if f.name in drop or f.name in (extra or {}):
            continue
        spec: Any = dataclasses.field(metadata=f.metadata)
        if f.default is not dataclasses.MISSING:
            spec = dataclasses.field(default=f.default, metadata=f.metadata)
        elif f.default_factory is not dataclasses.MISSING:
            spec = dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
        else:
            spec = dataclasses.field(default="???", metadata=f.metadata)  # required: Hydra's MISSING
        fields.append((f.name, _omegaconf_type(hint), spec))
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)


def _kind(hint: Any) -> str:
    if _is_union(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _kind(args[0]) if len(args) == 1 else "a value"
    if typing.get_origin(hint) in (list, tuple):
        inner = typing.get_args(hint)
        return f"a list of {_kind(inner[0]).split(' ', 1)[1] if inner else 'value'}s, e.g. [1,2]"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(hint, "a value")


def rule(f: dataclasses.Field, hint: Any) -> str:
    """What values a knob accepts, in words."""
    choices = _choices(hint)
    if choices is not None:
        return "one of " + ", ".join(map(str, choices))
    bounds = [f"{_SYMBOL[k]} {f.metadata[k]}" for k in RANGE_KEYS if k in f.metadata]
    kind = _kind(hint)
    if bounds and ", e.g." in kind:  # a list: its elements are in range
        text = f"{kind.split(', e.g.')[0]}, each {' and '.join(bounds)}"
    else:
        text = f"{kind} {' and '.join(bounds)}" if bounds else kind
    return text + (", or null" if _is_union(hint) and type(None) in typing.get_args(hint) else "")


def _breaks(value: Any, f: dataclasses.Field) -> str:
    """Why a number is outside the field's range ('' when it is not)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    m = f.metadata
    if isinstance(value, float) and not math.isfinite(value) and not m.get("nonfinite"):
        return "finite"
    if isinstance(value, int) and abs(value) > INT_LIMIT and not any(k in m for k in ("le", "lt")):
        return f"integers are at most {INT_LIMIT}"
    out = (("ge" in m and value < m["ge"]) or ("gt" in m and value <= m["gt"])
           or ("le" in m and value > m["le"]) or ("lt" in m and value >= m["lt"]))
    return "range" if out else ""


def check_value(name: str, value: Any, f: dataclasses.Field, hint: Any) -> None:
    """ValueError `name=value; valid: ...` when `value` (or an element of a list value) breaks the
    field's choices or range."""
    if value is None:
        return
    choices = _choices(hint)
    bad = "choice" if choices is not None and value not in choices else ""
    for item in value if isinstance(value, list | tuple) else [value]:
        bad = bad or _breaks(item, f)
    if not bad:
        return
    valid = rule(f, hint)
    if bad == "finite":
        valid = valid.replace("a number", "a finite number", 1).replace("of numbers", "of finite numbers", 1)
    elif bad.startswith("integers"):
        valid = f"{valid} ({bad})"
    raise ValueError(f"{name}={value!r}; valid: {valid}")


def check_pairs(values: dict[str, Any], prefix: str) -> None:
    """The cross-field rule every section shares: `min_x` <= `max_x` where both are set."""
    for key, low in values.items():
        high = values.get("max_" + key[4:]) if key.startswith("min_") else None
        if isinstance(low, int | float) and isinstance(high, int | float) and low > high:
            raise ValueError(f"{prefix}{key}={low!r} is above {prefix}max_{key[4:]}={high!r}; "
                             f"valid: {prefix}{key} <= {prefix}max_{key[4:]}")


def check_knobs(obj: Any, prefix: str = "") -> None:
    """Check every knob of a dataclass instance against its declared choices and range."""
    for f, hint in config_fields(type(obj)):
        check_value(prefix + f.name, getattr(obj, f.name), f, hint)
    check_pairs({f.name: getattr(obj, f.name) for f, _ in config_fields(type(obj))}, prefix)


def check_section(cls: type, values: dict[str, Any], prefix: str) -> None:
    """Check a config section's values against `cls`'s knobs (keys `cls` does not declare are
    left to the schema, which has rejected unknown ones already)."""
    for f, hint in config_fields(cls):
        if f.name in values:
            check_value(prefix + f.name, values[f.name], f, hint)
    check_pairs(values, prefix)


def describe_knobs(cls: type, indent: str = "    ", drop: tuple[str, ...] = ()) -> list[str]:
    """`--help` lines: one per knob, `name = default  help [valid: ...]`."""
    lines = []
    for f, hint in config_fields(cls):
        if f.name in drop:
            continue
        default = (f.default if f.default is not dataclasses.MISSING else
                   f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else default
        valid = rule(f, hint)
        lines.append(f"{indent}{f.name} = {shown}  {f.metadata.get('help', '')}  [{valid}]".rstrip())
    return lines


def params_of(section: dict[str, Any], drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """A config section minus its bookkeeping keys: the keyword arguments of the thing it builds."""
    return {k: v for k, v in section.items() if k not in drop and not k.startswith("_")}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaf values; lists become JSON text so they compare and group."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = json.dumps(value) if isinstance(value, list) else value
    return out
