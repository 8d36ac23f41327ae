"""`python -m harness.paper run|table NAME [--scale S]`: a paper's experiments as sweeps, and its
table filled from our results (`make paper PAPER=core SCALE=cpu`, `make paper-table PAPER=core`).

`conf/paper/NAME.yaml` holds, per scale, the blocks of the paper (each a grid of Hydra overrides
times a list of per-cell override sets, plus overrides that apply only to some grid values), and
one table layout. Every cell of every block is composed and validated before the first one runs;
block B of scale S writes to `results/paper-NAME-S-B/`, so runs resume like any sweep.

The table (`table`) is built by harness/paper_table.py, its learning curves by harness/plot.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from harness.config import REPO, UserError
from harness.sweep import exit_process, plan, print_plan, run_locked

PAPER_DIR = REPO / "conf" / "paper"


# ---------------------------------------------------------------- configuration

def load_paper(name: str) -> dict[str, Any]:
    """conf/paper/NAME.yaml, or a paper file of your own given by its path."""
    path = Path(name) if name.endswith(".yaml") else PAPER_DIR / f"{name}.yaml"
    if not path.is_file():
        valid = sorted(p.stem for p in PAPER_DIR.glob("*.yaml"))
        raise UserError(f"unknown paper {name!r}; valid: {', '.join(valid)} (or a path to a paper .yaml)")
    paper = yaml.safe_load(path.read_text())
    paper["_dir"], paper["_name"] = path.parent, path.stem
    return paper


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


# ---------------------------------------------------------------- run

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


def run(name: str, scale_name: str, results_dir: str = "results", dry_run: bool = False,
        only: list[str] | None = None) -> int:
    """`only`: run just the cells whose config has these values (the paper's layout, results and
    table stay the same; the other cells show as not run)."""
    paper = load_paper(name)
    scale = scale_of(paper, scale_name)
    wanted = parse_only(only or [])
    planned = []
    for block_name, block in scale["blocks"].items():
        sweep = sweep_name(paper, scale_name, block_name)
        keyed, seen, first, sdir = [], set(), None, None
        for entry, group in block_groups(scale, block, sweep):
            sdir, group_specs, group_first = plan(group + [f"results_dir={results_dir}"])
            first = first or group_first
            for spec in group_specs:
                if any(str(config_value(spec.config, k)) not in v for k, v in wanted.items()):
                    continue
                if spec.cell_id not in seen:
                    seen.add(spec.cell_id)
                    keyed.append((run_order(spec.config, entry, block["grid"]), spec))
        planned.append((block_name, sdir, [spec for _, spec in sorted(keyed, key=lambda x: x[0])], first))
    total = sum(len(p[2]) for p in planned)
    if wanted and not total:
        raise UserError(f"--only {' '.join(only or [])} matches no cell of scale {scale_name}")
    print(f"paper {paper['_name']}, scale {scale_name}: {paper.get('title', '')}\n  {scale.get('note', '')}\n  "
          + ", ".join(f"{b}: {len(s)} cells" for b, _, s, _ in planned) + f" ({total} in all)", flush=True)
    if dry_run:
        for block_name, sdir, specs, _ in planned:
            assert sdir is not None  # every block plans at least one group
            print(f"  block {block_name}:")
            print_plan(sdir, specs, indent="  ")
        return 0
    t0, worst = time.perf_counter(), 0
    for _, sdir, specs, first in planned:
        assert sdir is not None and first is not None  # every block plans at least one group
        code = run_locked(sdir, specs, first)
        if code in (2, 130):  # refused (sweep in use) or interrupted: stop here, a rerun resumes
            return code
        worst = max(worst, code)
    print(f"paper {paper['_name']}, scale {scale_name}: finished in {time.perf_counter() - t0:.0f}s; "
          f"`make paper-table PAPER={name} SCALE={scale_name}` prints the table", flush=True)
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=["run", "table"])
    ap.add_argument("paper", help=f"a file of {PAPER_DIR.relative_to(REPO)}/ without .yaml")
    ap.add_argument("--scale", default=None, help="run: default full; table: default the scale with results")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--dry-run", action="store_true", help="run: compose and validate every cell, run none")
    ap.add_argument("--only", action="append", default=[], metavar="KEY=V1,V2",
                    help="run: only cells with these values, e.g. --only task=hanoi,mathgap --only task.train_size=5")
    args = ap.parse_args(argv)
    try:
        if args.action == "run":
            return run(args.paper, args.scale or "full", args.results_dir, args.dry_run, args.only)
        from harness.paper_table import table

        return table(args.paper, args.scale, args.results_dir)
    except UserError as exc:
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    exit_process(main())
