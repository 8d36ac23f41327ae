"""A sweep's results in one line, for notebooks and for every report command (`make table`,
`make plot`, `make paper-table` read them the same way):

    from harness.results import load
    r = load("pilot")                     # results/pilot: the latest plan's finished cells only
    r.summary                             # one row per cell x checkpoint, with the table's config columns
    r.attempts(["problem_id", "passed"])  # rows of every cell, read lazily, only the columns asked for
    r.comparisons                         # every pair of methods per configuration: Δ, CI, p, Holm, claim, MDE
    r.table()                             # the table `make table` prints, as a DataFrame
    r.stale, r.unfinished, r.damaged      # cells left out, and why

Like inspect_ai's `evals_df` / `samples_df`: the plan and stale-cell rules live here once, so a
notebook never re-implements them by globbing `cells/*/attempts.parquet`. `report` writes what
`make table` writes (table.md, table.csv, comparisons.csv) for a loaded sweep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from harness.core.errors import UserError
from harness.core.paths import check_sweep_name, results_root
from harness.engine.records import damaged_cells, planned_cell_ids, stale_cells, write_text
from harness.engine.stats import ALPHA, POWER, SEED_DF_QUANTILE
from harness.report.compare import (
    FLOOR,
    Comparer,
    SweepCells,
    config_columns,
    final_rows,
    load_cells,
    no_learning_method,
)
from harness.report.table import (
    STATS_NOTE,
    baselines_note,
    build_table,
    detectable_note,
    unfinished,
    unreadable,
    versions_note,
)


@dataclass
class SweepResults:
    name: str
    dir: Path
    cells: SweepCells
    reference: str | None  # the method Δ is paired against (the no-learning one unless named)
    _attempts: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def summary(self) -> pd.DataFrame:
        """Every checkpoint row of the latest plan's finished cells, with the configuration columns."""
        return self.cells.summary

    @property
    def final(self) -> pd.DataFrame:
        """The final evaluation of each cell."""
        return final_rows(self.cells.summary)

    @property
    def config_columns(self) -> list[str]:
        """The columns that, with the method, make a table row (task, model, engine, every config
        value that differs between cells, budget)."""
        return config_columns(self.cells)

    @cached_property
    def comparer(self) -> Comparer:
        return Comparer(self.dir, self.cells, self.reference)

    @property
    def comparisons(self) -> pd.DataFrame:
        """comparisons.csv: every pair of methods within a configuration."""
        return self.comparer.all_pairs().drop(columns="_config", errors="ignore")

    def table(self) -> pd.DataFrame:
        """The table `make table` prints: one row per configuration and method."""
        return build_table(self.dir, self.cells, self.reference, self.comparer)

    def attempts(self, columns: list[str] | None = None, cell_ids: list[str] | None = None) -> pd.DataFrame:
        """The attempts (one row per generation) of the latest plan's finished cells, read only now
        and only the `columns` asked for, with each cell's configuration columns beside them."""
        ids = cell_ids or sorted(self.summary["cell_id"].unique())
        keys = ["cell_id", "method", "seed", *[c for c in self.config_columns if c in self.summary.columns]]
        config = self.summary.drop_duplicates("cell_id").set_index("cell_id")[list(dict.fromkeys(keys[1:]))]
        parts = []
        for cid in ids:
            df = pd.read_parquet(self.dir / "cells" / cid / "attempts.parquet", columns=columns)
            df = df.drop(columns=[c for c in config.columns if c in df.columns])
            parts.append(df.assign(cell_id=cid).join(config, on="cell_id"))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    def config(self, cell_id: str | None = None) -> dict:
        """A cell's resolved config as config.json holds it (default: the sweep's first cell)."""
        cid = cell_id or str(self.summary["cell_id"].iloc[0])
        return json.loads((self.dir / "cells" / cid / "config.json").read_text())["config"]

    @property
    def stale(self) -> list[str]:
        """Cells on disk from an earlier plan (another config or code version): never averaged in."""
        return stale_cells(self.dir)

    @property
    def unfinished(self) -> list[str]:
        """The latest plan's cells not in the results (failed, running or killed, not started)."""
        return unfinished(self.dir)

    @property
    def damaged(self) -> list[tuple[str, str]]:
        """(cell id, why) of finished cells whose files do not read."""
        return damaged_cells(self.dir)


def sweep_dir_of(sweep: str, results_dir: str | Path = "results") -> Path:
    """results_dir/sweep; UserError for a sweep name that would leave results_dir (`../..`)."""
    check_sweep_name(sweep)
    return results_root(str(results_dir)) / sweep


def load(sweep: str, results_dir: str | Path = "results", reference: str | None = None) -> SweepResults:
    """The sweep's results (see the module docstring). UserError for an unknown sweep, a sweep with
    no finished cell, or a reference that is not one of its methods; DamagedRecord for a plan that
    does not read."""
    sdir = sweep_dir_of(sweep, results_dir)
    cells = load_cells(sdir)
    if cells.summary.empty:
        valid = sorted(p.parent.name for p in sdir.parent.glob("*/summary.parquet"))
        raise UserError(f"no finished cells for sweep {sweep!r} in {sdir}; sweeps with results: "
                        f"{', '.join(valid) or 'none'}")
    methods = sorted(set(cells.summary["method"]))
    if reference is not None and reference not in methods:
        raise UserError(f"--reference {reference!r} is not a method of sweep {sweep!r}; valid: {', '.join(methods)}")
    results = SweepResults(sweep, sdir, cells, reference or no_learning_method(final_rows(cells.summary)))
    variants = sorted({u.label for u in results.comparer.units if u.method == results.reference})
    if len(variants) > 1:  # Δ needs one reference per configuration, not one per knob value
        valid = [m for m in methods if len({u.label for u in results.comparer.units if u.method == m}) == 1]
        raise UserError(f"--reference {results.reference!r} has varied knobs ({'; '.join(variants)}); valid "
                        f"references: {', '.join(valid) or 'none'}")
    return results


def report(results: SweepResults) -> str:
    """Write table.md, table.csv and comparisons.csv for the sweep's latest plan; return the text."""
    sweep_dir, name, cells, reference = results.dir, results.name, results.cells, results.reference
    comparer = results.comparer
    table = results.table()
    pairs = results.comparisons
    left = results.unfinished
    damaged = unreadable(sweep_dir)
    text = f"## sweep {name}\n\n"
    n = len(planned_cell_ids(sweep_dir) or ()) - cells.summary["cell_id"].nunique()  # planned, not tabled
    if n > 0:
        text += (f"**Partial**: {n} cell{'s' * (n != 1)} of the latest plan {'are' if n != 1 else 'is'} not "
                 f"finished or do{'es' * (n == 1)} not read, and not in this table (listed below).\n\n")
    text += (f"{table.to_markdown(index=False)}\n\n"
             f"{STATS_NOTE.format(alpha=ALPHA, floor=FLOOR, q=1 - SEED_DF_QUANTILE)}\n")
    detectable = detectable_note(comparer, reference)
    if detectable:
        text += (f"\nSmallest Δ vs {reference} each design detects ({POWER:.0%} power, two-sided, at α/m of its "
                 f"configuration's m pairs):\n" + "\n".join(detectable) + "\n")
    if cells.varying:
        text += f"\nConfiguration columns (values that differ between this sweep's cells): {', '.join(cells.varying)}\n"
    notes = baselines_note(cells.summary)
    if notes:
        text += "\nChance / majority-answer baselines (test set):\n" + "\n".join(notes) + "\n"
    stale = results.stale
    if stale:
        text += (f"\n{len(stale)} stale cells (from an earlier plan: another config or code version) are on disk "
                 f"and left out: {', '.join(stale[:8])}{' ...' if len(stale) > 8 else ''}\n")
    if left:
        text += "\nCells of the latest plan not in the table:\n" + "\n".join(left) + "\n"
    if damaged:
        text += ("\nUnreadable cells (left out; re-running the sweep runs them again):\n"
                 + "\n".join(damaged) + "\n")
    versions = versions_note(final_rows(cells.summary))
    if versions:
        text += "\nPackage versions differ between this sweep's cells (flagged rows):\n" + "\n".join(versions) + "\n"
    write_text(text, sweep_dir / "table.md")
    write_text(table.to_csv(index=False), sweep_dir / "table.csv")
    write_text(pairs.to_csv(index=False), sweep_dir / "comparisons.csv")
    return text
