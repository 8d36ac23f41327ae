"""`python -m harness.calibrate [overrides]` (`make calibrate MODEL=...`): zero-shot on every
generated task at a small test size, then one line per task: Pass@1 with its CI, the greedy pass
rate, the task's chance / majority baseline, how often the model wrote no `Answer:` line or hit
the token cap, and whether a method comparison on this task can show anything.

Defaults (each replaced by an override with the same key): every registered task that needs no
dataset download, the registered method that spends no rollouts (`zero_shot`), `budget=1
task.train_size=1 task.test_size=40 eval.n_samples=4 logger=none checkpoints=[]`, sweep
`calibrate-<model>`. The table is also written to `calibration.md` and `calibration.csv` in the
sweep directory.

Verdict: `informative` when Pass@1 lies in 20-60% (DESIGN §5) and its CI's lower end is above
the baseline; otherwise `at floor` (the CI reaches 5%) or `at chance` (the CI reaches the
baseline), the one rule `make table` flags rows by (`harness.compare.at_baseline`), else `low`
(< 20%) or `ceiling` (> 60%).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from harness.compare import FLOOR, at_baseline
from harness.config import UserError
from harness.paper import merge_overrides
from harness.registry import METHODS, TASKS
from harness.sweep import exit_process
from harness.sweep import main as sweep_main

BAND = (0.2, 0.6)  # the Pass@1 range a calibrated default aims for (DESIGN §5)
# task knobs every task has: not settings of a task's generator
COMMON_TASK_KEYS = {"name", "train_size", "test_size", "test_seed", "feedback", "partial_credit",
                    "verify_timeout_s"}


def generated_tasks() -> list[str]:
    """Every registered task that draws its own problems (no dataset to download)."""
    return [n for n in TASKS.names() if not getattr(TASKS.get(n), "needs_data", False)]


def no_learning_method() -> str:
    """The registered method that spends no rollouts (the reference row): what calibration runs."""
    return next(n for n in METHODS.names() if not METHODS.get(n).uses_rollouts)


def default_overrides(overrides: list[str]) -> list[str]:
    model = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == "model"), "smollm2_135m")
    return merge_overrides(
        [f"task={','.join(generated_tasks())}", f"method={no_learning_method()}", "budget=1", "task.train_size=1",
         "task.test_size=40", "eval.n_samples=4", "logger=none", "checkpoints=[]", f"model={model}",
         f"sweep=calibrate-{model.replace(',', '_')}"], overrides)


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


def main(argv: list[str] | None = None) -> int:
    overrides = default_overrides(list(sys.argv[1:] if argv is None else argv))
    code = sweep_main(overrides)
    if code in (2, 130) or "--dry-run" in overrides:  # refused, interrupted, or only the plan asked for
        return code
    from harness.table import sweep_dir_of

    values = dict(o.split("=", 1) for o in overrides)
    try:
        sweep_dir = sweep_dir_of(values["sweep"], values.get("results_dir", "results"))
    except UserError as exc:
        print(f"sibench: error: {exc}", file=sys.stderr)
        return 2
    if not (sweep_dir / "summary.parquet").exists():
        return code or 1
    table = calibration_table(sweep_dir)
    text = render(table, values["model"])
    (sweep_dir / "calibration.md").write_text(text)
    table.to_csv(sweep_dir / "calibration.csv", index=False)
    print(text)
    return code


if __name__ == "__main__":
    exit_process(main())
