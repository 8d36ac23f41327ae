"""The notebook entry point: `from harness.results import load; r = load("pilot")` gives a sweep's
summary, attempts (lazily), comparisons and table, with stale, unfinished and damaged cells listed
apart (harness/report/results.py has the whole API).
"""

from harness.report.results import SweepResults, load

__all__ = ["SweepResults", "load"]
