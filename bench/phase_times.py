"""Per-phase seconds of a sweep's cells (load, learn, eval), and a projection to another budget.

    python bench/phase_times.py --sweep default [--budget 500] [--test-size 100]

Reads each finished cell's final summary row: `load_s` (backend start or reuse), `eval_s` (every
evaluation of the cell: the checkpoints' and the final one), `wall_s`; learn = wall − load − eval.
`eval_s / evals` is one evaluation's time, the figure issue 20 compares against the no-learning
reference (a trained policy should evaluate within 1.2x of the base model).

Projection to `--budget` B and `--test-size` T: learning scales with the rollouts spent
(learn x B / rollouts_used), evaluation with the test problems (eval x T / n_test; the number of
evaluations does not depend on the budget: checkpoints are fractions), load stays. It ignores
what does not scale linearly (GEPA's and CORE's growing prompts, MemRL's growing memory), so
treat it as a lower bound for those.

A second table puts each learn phase against its generation limit (issue 31): the tokens it
generated (policy and aux), its engine calls and their mean batch (generations per call), the
engine's batched throughput measured in the same cell (its evaluations' completion tokens over
their seconds), `limit_s` = those tokens at that throughput, `learn/limit` = learn seconds over that
limit, and the learn seconds spent outside generation (learn − the calls' summed latency: training
steps, verification, memory writes).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def finished_cells(sweep_dir: Path) -> list[Path]:
    """Every finished cell of the sweep directory, earlier plans' included (a grid run in parts);
    of cells with one label (e.g. a zero_shot rerun after a code change), the last finished."""
    import json

    sys.path.insert(0, str(REPO))
    from harness.engine.cell import CellSpec

    latest: dict[str, Path] = {}
    done = sorted((c for c in (sweep_dir / "cells").iterdir() if (c / "done.json").exists()),
                  key=lambda c: (c / "done.json").stat().st_mtime)
    for cell in done:
        config = json.loads((cell / "config.json").read_text())
        latest[CellSpec(config["config"], sweep_dir, config["cell_id"]).label] = cell
    return list(latest.values())


def phase_table(sweep_dir: Path, budget: int | None, test_size: int | None) -> pd.DataFrame:
    rows = []
    for cell in finished_cells(sweep_dir):
        summary = pd.read_parquet(cell / "summary.parquet")
        last = summary.iloc[-1]
        learn = float(last.wall_s - last.load_s - last.eval_s)
        evals = len(summary)
        row = {"method": last.method, "engine": last.engine, "budget": int(last.budget),
               "rollouts": int(last.rollouts_used), "n_test": int(last.n_test), "load_s": float(last.load_s),
               "learn_s": learn, "eval_s": float(last.eval_s), "evals": evals,
               "eval_s_each": float(last.eval_s) / evals, "wall_s": float(last.wall_s),
               "pass@1": float(last["pass@1"])}
        if budget:
            scale_learn = budget / last.rollouts_used if last.rollouts_used else 0.0
            scale_eval = (test_size or last.n_test) / last.n_test
            row[f"projected_s_B{budget}"] = row["load_s"] + learn * scale_learn + row["eval_s"] * scale_eval
        rows.append(row)
    return pd.DataFrame(rows).sort_values("method", ignore_index=True)


def learn_limits(sweep_dir: Path) -> pd.DataFrame:
    rows = []
    for cell in finished_cells(sweep_dir):
        summary = pd.read_parquet(cell / "summary.parquet")
        last = summary.iloc[-1]
        att = pd.read_parquet(cell / "attempts.parquet",
                              columns=["phase", "step", "completion_tokens", "latency_s", "role"])
        learn = att[att["phase"] == "learn"]
        learn_s = float(last.wall_s - last.load_s - last.eval_s)
        eval_tokens = float(summary["eval_completion_tokens"].sum()) if "eval_completion_tokens" in summary else 0.0
        throughput = eval_tokens / float(last.eval_s) if float(last.eval_s) > 0 else float("nan")
        tokens = float(learn["completion_tokens"].sum())
        calls = int(learn["step"].nunique())
        limit = tokens / throughput if throughput and throughput == throughput else float("nan")
        rows.append({"method": last.method, "learn_s": learn_s, "gen_tokens": int(tokens), "calls": calls,
                     "mean_batch": len(learn) / calls if calls else 0.0, "engine_tok_s": throughput,
                     "limit_s": limit, "learn/limit": learn_s / limit if limit and limit == limit else float("nan"),
                     "outside_gen_s": learn_s - float(learn["latency_s"].sum())})
    return pd.DataFrame(rows).sort_values("method", ignore_index=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="default")
    ap.add_argument("--results-dir", type=Path, default=REPO / "results")
    ap.add_argument("--budget", type=int, default=None, help="project each cell to this budget")
    ap.add_argument("--test-size", type=int, default=None, help="... and this many test problems")
    args = ap.parse_args()
    table = phase_table(args.results_dir / args.sweep, args.budget, args.test_size)
    if table.empty:
        print(f"no finished cells in {args.results_dir / args.sweep}", file=sys.stderr)
        return 2
    reference = table.loc[table["rollouts"] == 0, "eval_s_each"]
    if len(reference):
        table["eval_vs_reference"] = table["eval_s_each"] / reference.iloc[0]
    print(table.to_markdown(index=False, floatfmt=".2f"))
    limits = learn_limits(args.results_dir / args.sweep)
    learning = limits[limits["gen_tokens"] > 0]
    if len(learning):
        print("\nlearn phase against its generation limit (tokens at the engine's batched eval throughput):\n")
        print(learning.to_markdown(index=False, floatfmt=".2f"))
    if args.budget:
        total = table[f"projected_s_B{args.budget}"].sum()
        print(f"\nprojected sweep at B={args.budget}: {total / 60:.0f} min "
              f"(engine start once: the local launcher keeps the engine across cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
