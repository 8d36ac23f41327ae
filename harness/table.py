"""`python -m harness.table --sweep NAME`: task x method x budget table from summary.parquet.

Prints markdown and writes `table.md` and `table.csv` next to the sweep. Each row is the final
checkpoint averaged over seeds; the CI is the bootstrap CI over problems (averaged over seeds).
Failed cells are listed below the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from harness.config import REPO
from harness.records import write_text


def sweep_dir_of(sweep: str, results_dir: str = "results") -> Path:
    base = Path(results_dir)
    return (base if base.is_absolute() else REPO / base) / sweep


def final_rows(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["final"].astype(bool)] if "final" in summary else summary


def build_table(summary: pd.DataFrame) -> pd.DataFrame:
    df = final_rows(summary).copy()
    # Pass@k column: k = max(eval.k) of the cell (default n_samples); one k per table
    k = int(df["report_k"].min()) if "report_k" in df else int(df["n_samples"].min())
    kmax = f"pass@{k}"
    keys = [k for k in ("task", "model", "train_size", "method", "budget") if k in df.columns]
    agg = df.groupby(keys, dropna=False).agg(
        seeds=("seed", "nunique"), pass1=("pass@1", "mean"), lo=("pass@1_lo", "mean"),
        hi=("pass@1_hi", "mean"), passk=(kmax, "mean"),
        greedy=("greedy_pass", "mean"), rollouts=("rollouts_used", "mean"),
        policy_tok=("learn_policy_tokens", "mean"), aux_tok=("learn_aux_tokens", "mean"),
        ctx_added=("context_tokens_added", "mean"),
        eval_prompt_tok=("eval_prompt_tokens_per_problem", "mean"), wall_s=("wall_s", "mean"),
    ).reset_index()
    out = agg[keys].copy()
    out["seeds"] = agg["seeds"]
    out["Pass@1 [95% CI]"] = [f"{p:.3f} [{lo:.3f}, {hi:.3f}]" for p, lo, hi in zip(agg.pass1, agg.lo, agg.hi)]
    out[f"Pass@{k}"] = agg["passk"].round(3)
    out["greedy"] = agg["greedy"].round(3)
    if "pass@1_attempt2" in df.columns:  # methods with a reflect-and-retry second attempt
        second = df.groupby(keys, dropna=False)["pass@1_attempt2"].mean().reset_index(drop=True)
        out["≤2 attempts"] = second.round(3).astype(object).where(second.notna(), "")
    out["rollouts"] = agg["rollouts"].round(0).astype(int)
    out["learn tok (policy/aux)"] = [f"{int(a)}/{int(b)}" for a, b in zip(agg.policy_tok, agg.aux_tok)]
    out["ctx tok added"] = agg["ctx_added"].round(1)
    out["eval prompt tok"] = agg["eval_prompt_tok"].round(1)
    out["wall s"] = agg["wall_s"].round(1)
    return out


def failures(sweep_dir: Path) -> list[str]:
    lines = []
    for status in sorted(sweep_dir.glob("cells/*/status.json")):
        s = json.loads(status.read_text())
        if s.get("status") == "failed":
            label = json.loads((status.parent / "config.json").read_text()).get("label", status.parent.name)
            lines.append(f"- FAILED {label} ({status.parent.name}): {s.get('error', '')}")
    return lines


def baselines_note(summary: pd.DataFrame) -> list[str]:
    cols = [c for c in summary.columns if c.startswith("baseline_")]
    if not cols:
        return []
    per_task = summary.groupby("task")[cols].first()
    lines = []
    for task, row in per_task.iterrows():
        parts = [f"{c[9:]} {v:.3f}" for c, v in row.items() if pd.notna(v)]
        lines.append(f"- {task}: {', '.join(parts) if parts else 'none (answers are not constants)'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", default="default", help="sweep name (results/<sweep>/)")
    ap.add_argument("--results-dir", default="results")
    args = ap.parse_args(argv)
    sdir = sweep_dir_of(args.sweep, args.results_dir)
    path = sdir / "summary.parquet"
    if not path.exists():
        valid = sorted(p.parent.name for p in sdir.parent.glob("*/summary.parquet"))
        print(f"sibench: error: no results for sweep {args.sweep!r} ({path} missing); "
              f"sweeps with results: {', '.join(valid) or 'none'}", file=sys.stderr)
        return 2
    summary = pd.read_parquet(path)
    table = build_table(summary)
    md = table.to_markdown(index=False)
    notes = baselines_note(summary)
    text = f"## sweep {args.sweep}\n\n{md}\n"
    if notes:
        text += "\nChance / majority-answer baselines (test set):\n" + "\n".join(notes) + "\n"
    fails = failures(sdir)
    if fails:
        text += "\nFailed cells:\n" + "\n".join(fails) + "\n"
    print(text)
    write_text(text, sdir / "table.md")
    write_text(table.to_csv(index=False), sdir / "table.csv")
    print(f"wrote {sdir / 'table.md'} and {sdir / 'table.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
