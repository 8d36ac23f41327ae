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

import sys

from harness.config.schema import GROUPS
from harness.core.errors import UserError
from harness.runner.execute import run_locked
from harness.runner.plan import every_method_unless_named, plan, print_plan
from harness.runner.signals import exit_process, handle_sigterm, interrupted


def asked_for_help(args: list[str]) -> int | None:
    """`--help [GROUP[=NAME]]` / `-h`: print the generated help and return 0; else None."""
    if not args or args[0] not in ("--help", "-h"):
        return None
    from harness.config.schema import help_text

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
    handle_sigterm()
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
