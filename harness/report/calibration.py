"""`make calibrate`'s table: per task, zero-shot Pass@1 with its CI, greedy pass rate, the chance /
majority baseline, no-answer and token-cap rates, and a verdict (`informative` in the DESIGN §5
band and clear of the baseline; else the table's `at floor` / `at chance` rule, `low` or `ceiling`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.report.compare import FLOOR, at_baseline

BAND = (0.2, 0.6)  # the Pass@1 range a calibrated default aims for (DESIGN §5)


# task knobs every task has: not settings of a task's generator
COMMON_TASK_KEYS = {"name", "train_size", "test_size", "test_seed", "feedback", "partial_credit",
                    "verify_timeout_s"}


def verdict(p: float, lo: float, baselines: dict[str, float]) -> str:
    """The table's flag (`at_baseline`: floor, at chance) first, then the DESIGN §5 band."""
    kind, _ = at_baseline(lo, baselines)
    if kind:
        return kind
    if p < BAND[0]:
        return "low"
    if p > BAND[1]:
        return "ceiling"
    return "informative"


def settings_of(task_cfg: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in task_cfg.items() if k not in COMMON_TASK_KEYS)


def cell_row(cell_dir: Path, summary: pd.Series) -> dict:
    cfg = json.loads((cell_dir / "config.json").read_text())
    att = pd.read_parquet(cell_dir / "attempts.parquet", columns=["phase", "tag", "parsed", "finish_reason"])
    sampled = att[(att["phase"] == "eval") & (att["tag"] == "sample")]
    baselines = {str(k)[len("baseline_"):]: float(v) for k, v in summary.items()
                 if str(k).startswith("baseline_") and pd.notna(v)}
    p, lo, hi = (float(summary[c]) for c in ("pass@1", "pass@1_lo", "pass@1_hi"))
    return {"task": summary["task"], "settings": settings_of(cfg["config"]["task"]), "n_test": int(summary["n_test"]),
            "n_samples": int(summary["n_samples"]), "pass@1": p, "pass@1_lo": lo, "pass@1_hi": hi,
            "greedy": float(summary["greedy_pass"]) if "greedy_pass" in summary and pd.notna(
                summary["greedy_pass"]) else float("nan"),
            "baseline": ", ".join(f"{k} {v:.2f}" for k, v in baselines.items()) or "none",
            "no_answer_line": float(sampled["parsed"].isna().mean()) if len(sampled) else float("nan"),
            "truncated": float((sampled["finish_reason"] == "length").mean()) if len(sampled) else float("nan"),
            "verdict": verdict(p, lo, baselines), "cell_id": summary["cell_id"]}


def calibration_table(sweep_dir: Path) -> pd.DataFrame:
    summary = pd.read_parquet(sweep_dir / "summary.parquet")
    final = summary[summary["final"]] if "final" in summary else summary
    rows = [cell_row(sweep_dir / "cells" / s["cell_id"], s) for _, s in final.iterrows()]
    return pd.DataFrame(rows).sort_values(["task", "settings"], ignore_index=True)


def render(table: pd.DataFrame, model: str) -> str:
    shown = pd.DataFrame({
        "task": table["task"], "settings": table["settings"],
        "zero-shot Pass@1 [95% CI]": [f"{r['pass@1']:.3f} [{r['pass@1_lo']:.3f}, {r['pass@1_hi']:.3f}]"
                                      for _, r in table.iterrows()],
        "greedy": table["greedy"].map(lambda v: f"{v:.3f}"), "baseline": table["baseline"],
        "no Answer: line": table["no_answer_line"].map(lambda v: f"{v:.0%}"),
        "hit token cap": table["truncated"].map(lambda v: f"{v:.0%}"), "verdict": table["verdict"]})
    n = f"{table['n_test'].iloc[0]} test problems x {table['n_samples'].iloc[0]} samples" if len(table) else ""
    return (f"## calibration: {model}, zero-shot, {n}\n\n{shown.to_markdown(index=False)}\n\n"
            f"informative: Pass@1 in {BAND[0]:.0%}-{BAND[1]:.0%} and its CI above the baseline; at floor: Pass@1 "
            f"under {FLOOR:.0%}; at chance: the CI reaches the baseline (methods cannot be told apart there; "
            f"`make table` flags the same rows).\n")
