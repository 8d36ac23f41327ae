"""Running a paper layout (harness/config/paper.py): every block's cells composed and validated first,
then each block run as its own sweep `paper-NAME-SCALE-BLOCK` (`--only` runs a subset).
"""

from __future__ import annotations

import time

from harness.config.paper import block_groups, config_value, load_paper, parse_only, run_order, scale_of, sweep_name
from harness.core.errors import UserError
from harness.runner.execute import run_locked
from harness.runner.plan import plan, print_plan
from harness.runner.signals import stopped


def run(name: str, scale_name: str, results_dir: str = "results", dry_run: bool = False,
        only: list[str] | None = None) -> int:
    """`only`: run just the cells whose config has these values. Every block's plan.json still holds
    all of its cells (so finished ones stay in the tables and the others show as not run), and a
    block with no matching cell is not touched."""
    paper = load_paper(name)
    scale = scale_of(paper, scale_name)
    wanted = parse_only(only or [])
    planned = []
    for block_name, block in scale["blocks"].items():
        sweep = sweep_name(paper, scale_name, block_name)
        keyed, seen, first, sdir, every = [], set(), None, None, []
        for entry, group in block_groups(scale, block, sweep):
            sdir, group_specs, group_first = plan(group + [f"results_dir={results_dir}"])
            first = first or group_first
            for spec in group_specs:
                if spec.cell_id in seen:
                    continue
                seen.add(spec.cell_id)
                every.append((run_order(spec.config, entry, block["grid"]), spec))
                if all(str(config_value(spec.config, k)) in v for k, v in wanted.items()):
                    keyed.append(every[-1])
        planned.append((block_name, sdir, [spec for _, spec in sorted(keyed, key=lambda x: x[0])], first,
                        [spec for _, spec in sorted(every, key=lambda x: x[0])]))
    total = sum(len(p[2]) for p in planned)
    if wanted and not total:
        raise UserError(f"--only {' '.join(only or [])} matches no cell of scale {scale_name}")
    print(f"paper {paper['_name']}, scale {scale_name}: {paper.get('title', '')}\n  {scale.get('note', '')}\n  "
          + ", ".join(f"{b}: {len(s)} cells" for b, _, s, _, _ in planned) + f" ({total} in all)", flush=True)
    if dry_run:
        for block_name, sdir, specs, _, _ in planned:
            assert sdir is not None  # every block plans at least one group
            print(f"  block {block_name}:")
            print_plan(sdir, specs, indent="  ")
        return 0
    t0, worst = time.perf_counter(), 0
    for _, sdir, specs, first, every_cell in planned:
        assert sdir is not None and first is not None  # every block plans at least one group
        if not specs:  # --only matches nothing here: its plan, rows and summary stay as they are
            continue
        code = run_locked(sdir, specs, first, planned=every_cell)
        if stopped(code):  # refused (sweep in use), Ctrl-C or SIGTERM: stop here, a rerun resumes
            return code
        worst = max(worst, code)
    print(f"paper {paper['_name']}, scale {scale_name}: finished in {time.perf_counter() - t0:.0f}s; "
          f"`make paper-table PAPER={name} SCALE={scale_name}` prints the table", flush=True)
    return worst
