"""`python -m harness.plot --sweep NAME`: the sweep's plots as PNGs under results/NAME/plots/
(harness/report/plot.py): learning curves, Pass@1 bars, a Δ forest plot and a cost plot per
configuration.
"""

from __future__ import annotations

import argparse
import sys

from harness.core.errors import UserError
from harness.engine.records import DamagedRecord
from harness.report.plot import plot_results
from harness.report.results import load


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="default")
    ap.add_argument("--results-dir", default="results")
    args = ap.parse_args(argv)
    try:
        results = load(args.sweep, args.results_dir)
    except (UserError, DamagedRecord) as exc:
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2
    for path in plot_results(results):
        print(f"wrote {path}")
    for cid, why in results.damaged:
        print(f"left out, unreadable: {cid}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
