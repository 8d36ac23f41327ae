"""`python -m harness.paper run|table NAME [--scale S]`: a paper's experiments as sweeps, and its
table filled from our results (`make paper PAPER=core SCALE=cpu`, `make paper-table PAPER=core`).

`conf/paper/NAME.yaml` holds, per scale, the blocks of the paper (each a grid of Hydra overrides
times a list of per-cell override sets, plus overrides that apply only to some grid values), and
one table layout. Every cell of every block is composed and validated before the first one runs;
block B of scale S writes to `results/paper-NAME-S-B/`, so runs resume like any sweep.

The table (`table`) is built by harness/report/paper_table.py, its learning curves by
harness/report/plot.py.
"""

from __future__ import annotations

import argparse
import sys

from harness.config.paper import PAPER_DIR
from harness.core.errors import UserError
from harness.core.paths import REPO
from harness.runner.paper import run
from harness.runner.signals import exit_process, handle_sigterm, interrupted


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
    handle_sigterm()
    try:
        if args.action == "run":
            return run(args.paper, args.scale or "full", args.results_dir, args.dry_run, args.only)
        from harness.report.paper_table import table

        return table(args.paper, args.scale, args.results_dir)
    except UserError as exc:
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # between blocks, or while planning: the same one line and status
        return interrupted(exc)


if __name__ == "__main__":
    exit_process(main())
