"""`python -m harness.run <overrides>`: run exactly one cell (no comma sweeps) and print its summary."""

from __future__ import annotations

import sys

from harness.config.compose import expand_grid
from harness.core.errors import UserError
from harness.runner.signals import exit_process
from harness.sweep import asked_for_help
from harness.sweep import main as sweep_main


def main(argv: list[str] | None = None) -> int:
    overrides = list(sys.argv[1:] if argv is None else argv)
    shown = asked_for_help(overrides)
    if shown is not None:
        return shown
    try:
        grid = expand_grid(overrides)
    except UserError as exc:
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2
    if len(grid) != 1:
        print(f"sibench: error: harness.run runs one cell but the overrides make {len(grid)}; "
              f"use harness.sweep (make sweep) for grids", file=sys.stderr)
        return 2
    return sweep_main(overrides, every_method=False)


if __name__ == "__main__":
    exit_process(main())
