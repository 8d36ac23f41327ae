"""`python -m harness.plot --sweep NAME`: the sweep's learning curves as PNGs
(harness/report/plot.py).
"""

from __future__ import annotations

import argparse
import sys

from harness.core.errors import UserError
from harness.engine.records import DamagedRecord
from harness.report.compare import load_cells
from harness.report.plot import plot_sweep
from harness.report.table import sweep_dir_of, unreadable


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="default")
    ap.add_argument("--results-dir", default="results")
    args = ap.parse_args(argv)
    try:
        sdir = sweep_dir_of(args.sweep, args.results_dir)
        cells = load_cells(sdir)
    except (UserError, DamagedRecord) as exc:
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2
    if cells.summary.empty:
        print(f"sibench: error: no finished cells for sweep {args.sweep!r} in {sdir}", file=sys.stderr)
        return 2
    for path in plot_sweep(cells.summary, sdir / "plots", cells.varying):
        print(f"wrote {path}")
    for line in unreadable(sdir):
        print(f"left out, unreadable: {line[2:]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
