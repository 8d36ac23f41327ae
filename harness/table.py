"""`python -m harness.table --sweep NAME [--reference METHOD]`: print and write the sweep's table
(harness/report/table.py).
"""

from __future__ import annotations

import argparse
import sys

from harness.core.errors import UserError
from harness.engine.records import (
    DamagedRecord,
)
from harness.report.compare import (
    load_cells,
)
from harness.report.table import report, sweep_dir_of


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="default", help="sweep name (results/<sweep>/)")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--reference", default=None,
                    help="method the Δ column is paired against (default: the one that used 0 rollouts)")
    args = ap.parse_args(argv)
    try:
        sdir = sweep_dir_of(args.sweep, args.results_dir)
        cells = load_cells(sdir)
    except (UserError, DamagedRecord) as exc:
        print(f"sibench: error: {exc}; re-run the sweep command to rewrite it" if isinstance(exc, DamagedRecord)
              else f"sibench: error: {exc}", file=sys.stderr)
        return 2
    if cells.summary.empty:
        valid = sorted(p.parent.name for p in sdir.parent.glob("*/summary.parquet"))
        print(f"sibench: error: no finished cells for sweep {args.sweep!r} in {sdir}; "
              f"sweeps with results: {', '.join(valid) or 'none'}", file=sys.stderr)
        return 2
    methods = sorted(set(cells.summary["method"]))
    if args.reference is not None and args.reference not in methods:
        print(f"sibench: error: --reference {args.reference!r} is not a method of sweep {args.sweep!r}; "
              f"valid: {', '.join(methods)}", file=sys.stderr)
        return 2
    print(report(sdir, args.sweep, args.reference, cells))
    print(f"wrote {sdir / 'table.md'}, {sdir / 'table.csv'} and {sdir / 'comparisons.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
