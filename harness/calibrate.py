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
baseline), the one rule `make table` flags rows by (`harness.report.compare.at_baseline`), else `low`
(< 20%) or `ceiling` (> 60%).
"""

from __future__ import annotations

import sys

from harness.config.paper import merge_overrides
from harness.core.errors import UserError
from harness.core.registry import METHODS, TASKS
from harness.report.calibration import calibration_table, render
from harness.runner.signals import exit_process, stopped
from harness.sweep import main as sweep_main


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


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):  # the sweep's own --help lists every knob these overrides may set
        print(f"usage: python -m harness.calibrate [--dry-run] [hydra overrides]\n\n{__doc__}\n"
              "Every knob an override may set: python -m harness.sweep --help")
        return 0
    overrides = default_overrides(args)
    code = sweep_main(overrides)
    if stopped(code) or "--dry-run" in overrides:  # refused, interrupted, or only the plan asked for
        return code
    from harness.report.results import sweep_dir_of

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
