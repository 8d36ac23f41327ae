"""Paper layouts (`conf/paper/NAME.yaml`): a paper's scales, blocks and table layout, read and
expanded into per-block override lists. Running them is harness/runner/paper.py; tabling them,
harness/report/paper_table.py.
"""

from __future__ import annotations

from itertools import product
from pathlib import Path
from typing import Any

import yaml

from harness.core.errors import UserError
from harness.core.paths import REPO

PAPER_DIR = REPO / "conf" / "paper"


def load_paper(name: str) -> dict[str, Any]:
    """conf/paper/NAME.yaml, or a paper file of your own given by its path."""
    path = Path(name) if name.endswith(".yaml") else PAPER_DIR / f"{name}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in PAPER_DIR.glob("*.yaml"))
        raise UserError(f"unknown paper {name!r}; valid: {', '.join(valid)} (or a path to a paper .yaml)")
    try:
        paper = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    check_layout(paper, path)
    paper["_dir"], paper["_name"] = path.parent, path.stem
    return paper


def check_layout(paper: Any, path: Path) -> None:
    """The shape a paper file must have, refused in one line naming the first part that lacks it:
    scales: {NAME: {common: [overrides], blocks: {BLOCK: {grid: {key: [values]}, cells: [[...]]}}}},
    table: {block: BLOCK, ...}."""
    def need(ok: bool, where: str, what: str) -> None:
        if not ok:
            raise UserError(f"{path}: {where} must be {what}; see conf/paper/core.yaml for the layout")

    need(isinstance(paper, dict), "the file", "a mapping with `scales` and `table`")
    need(isinstance(paper.get("scales"), dict) and bool(paper["scales"]), "`scales`", "a mapping of scale names")
    for name, scale in paper["scales"].items():
        need(isinstance(scale, dict), f"scale {name!r}", "a mapping")
        need(isinstance(scale.get("common", []), list), f"{name}.common", "a list of overrides")
        need(isinstance(scale.get("per_value", {}) or {}, dict), f"{name}.per_value", "a mapping")
        need(isinstance(scale.get("blocks"), dict) and bool(scale["blocks"]), f"{name}.blocks", "a mapping of blocks")
        for block_name, block in scale["blocks"].items():
            need(isinstance(block, dict) and isinstance(block.get("grid"), dict), f"{name}.{block_name}",
                 "a mapping with a `grid` mapping")
            need(all(isinstance(v, list) for v in block["grid"].values()), f"{name}.{block_name}.grid",
                 "a mapping of keys to lists of values")
            cells = block.get("cells")
            need(isinstance(cells, list) and all(isinstance(c, list) for c in cells), f"{name}.{block_name}.cells",
                 "a list of override lists")
    need(isinstance(paper.get("table"), dict) and "block" in paper["table"], "`table`",
         "a mapping with a `block`")


def scale_of(paper: dict[str, Any], scale: str) -> dict[str, Any]:
    if scale not in paper["scales"]:
        raise UserError(f"unknown scale {scale!r}; valid: {', '.join(paper['scales'])}")
    return paper["scales"][scale]


def sweep_name(paper: dict[str, Any], scale: str, block: str) -> str:
    return f"paper-{paper['_name']}-{scale}-{block}"


def merge_overrides(*lists: list[str]) -> list[str]:
    """Concatenate override lists; a later value for the same key replaces an earlier one."""
    merged: dict[str, str] = {}
    for overrides in lists:
        for o in overrides:
            merged[o.split("=", 1)[0].lstrip("+")] = str(o)
    return list(merged.values())


def block_groups(scale: dict[str, Any], block: dict[str, Any], sweep: str) -> list[tuple[int, list[str]]]:
    """(per-cell override set index, override list) for one block: grid keys with per-value
    overrides are split, the rest stay comma lists; each per-cell override set gives one list per
    split combination."""
    per_value = {k: dict(v) for k, v in (scale.get("per_value") or {}).items()}
    for key, values in (block.get("per_value") or {}).items():
        per_value.setdefault(key, {}).update(values)
    grid = block["grid"]
    split = [k for k in grid if k in per_value]
    joined = [f"{k}={','.join(str(v) for v in vals)}" for k, vals in grid.items() if k not in split]
    groups = []
    for combo in product(*(grid[k] for k in split)):
        chosen = [f"{k}={v}" for k, v in zip(split, combo, strict=True)]
        extra = [o for k, v in zip(split, combo, strict=True)
                 for o in per_value[k].get(v, per_value[k].get(str(v))) or []]
        for entry, cell in enumerate(block["cells"]):
            groups.append((entry, merge_overrides(scale.get("common", []), joined, chosen, cell, extra,
                                                  [f"sweep={sweep}"])))
    return groups


def config_value(config: dict[str, Any], key: str) -> Any:
    """The grid value of `key` in a composed cell config (`task` -> its name, `task.x` -> its x)."""
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node.get("name") if isinstance(node, dict) else node


def run_order(config: dict[str, Any], entry: int, grid: dict[str, list[Any]]) -> tuple:
    """Row by row: the per-cell override set, then the grid keys in order with `method` last, so
    an interrupted run leaves whole rows of the table."""
    keys = [k for k in grid if k != "method"] + [k for k in grid if k == "method"]
    return (entry, *(grid[k].index(v) if (v := config_value(config, k)) in grid[k] else len(grid[k]) for k in keys))


def parse_only(only: list[str]) -> dict[str, set[str]]:
    """`--only task=hanoi,mathgap --only task.train_size=5` -> {key: values a cell must have}."""
    wanted: dict[str, set[str]] = {}
    for item in only:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise UserError(f"--only {item!r}; valid: KEY=V1,V2 (a grid key or config path, e.g. task=hanoi)")
        wanted.setdefault(key, set()).update(values.split(","))
    return wanted
