"""`python -m harness.table --sweep NAME [--reference METHOD]`: print and write the sweep's table
(harness/report/table.py), and mirror it to one W&B `report` run where the sweep's cells logged to
W&B (harness/runner/loggers.py).
"""

from __future__ import annotations

import argparse
import sys

from harness.core.errors import UserError
from harness.engine.records import DamagedRecord
from harness.report.plot import plot_results
from harness.report.results import load, report
from harness.runner.loggers import WandbLogger, log_report, make_logger


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="default", help="sweep name (results/<sweep>/)")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--reference", default=None,
                    help="method the Δ column is paired against (default: the one that used 0 rollouts)")
    args = ap.parse_args(argv)
    try:
        results = load(args.sweep, args.results_dir, args.reference)
    except (UserError, DamagedRecord) as exc:
        print(f"sibench: error: {exc}; re-run the sweep command to rewrite it" if isinstance(exc, DamagedRecord)
              else f"sibench: error: {exc}", file=sys.stderr)
        return 2
    text = report(results)
    print(text)
    sdir = results.dir
    print(f"wrote {sdir / 'table.md'}, {sdir / 'table.csv'} and {sdir / 'comparisons.csv'}")
    logger_cfg = results.config().get("logger") or {}
    if isinstance(make_logger(logger_cfg), WandbLogger):  # where the cells logged to W&B (not disabled): mirror
        images = plot_results(results)
        run = log_report(sdir, results.name, logger_cfg, {"table": results.table(), "comparisons":
                         results.comparisons}, images, text)
        if run:
            print(f"W&B: {run!r} (job_type report, group {results.name}) with the table, comparisons and "
                  f"{len(images)} plots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
