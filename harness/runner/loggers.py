"""Experiment loggers: W&B mirrors the parquet records (one run per cell, grouped by sweep, plus one
`report` run per `make table`).

The mode follows W&B's own environment: `WANDB_MODE` (online, offline, disabled) wins over
`logger.mode: auto`; with neither, a `WANDB_API_KEY` means online, else offline. An explicit
`logger.mode` wins over both. `disabled` (or `logger=none`) writes nothing and prints nothing. W&B's
console output is silenced; the run id is kept in the cell directory so a resumed cell continues
the same run.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

import pandas as pd

from harness.core.knobs import flatten, knob, params_of
from harness.core.registry import LOGGERS, register_logger

Mode = Literal["auto", "online", "offline", "disabled"]


MODES = get_args(Mode)


@register_logger("none")
@dataclass
class NullLogger:
    """No experiment tracker: parquet records only."""

    def start(self, spec: Any, engine: str) -> None:
        pass

    def log_learning(self, spec: Any, metrics: dict[str, float]) -> None:
        pass

    def log_checkpoint(self, spec: Any, row: dict[str, Any], eval_rows: pd.DataFrame | None = None) -> None:
        pass

    def finish(self, spec: Any, status: str) -> None:
        pass


@register_logger("wandb")
@dataclass
class WandbLogger:
    """One W&B run per cell, as W&B's users lay runs out: group = the sweep, job_type = the method,
    tags = task, method, budget, seed, engine and model, the resolved config flattened as in
    config.json, and `rollouts` as the x-axis of every metric (`define_metric`). Learning metrics
    (`learn/...`, from LearnContext.log: TRL's per-step reward, loss, KL, clip ratio and step
    seconds; memory methods' rolling success and store sizes) arrive as they happen; each
    checkpoint adds `eval/...` (Pass@1 and its CI, Pass@k, greedy, tokens) and a table of eval
    completions, failures first. The parquet files stay the source of truth."""

    project: str = knob("sibench", "W&B project")
    entity: str | None = knob(None, "W&B entity (team or user); null = your default")
    mode: Mode = knob(
        "auto", "auto = WANDB_MODE if set, else online with WANDB_API_KEY, else offline (files under "
                "results/<sweep>/wandb; `wandb sync results/<sweep>/wandb/offline-run-*` uploads them)")
    completions: int = knob(50, "eval completions per checkpoint in the run's table (failures first); 0 = none",
                            ge=0, le=10000)
    timeout_s: float = knob(15.0, "longest wait for W&B: starting a run (W&B's init_timeout, 90 s by default) and "
                                  "uploading at its end or at Ctrl-C (finish_timeout: what is left stays on disk "
                                  "for `wandb sync`)", gt=0, le=3600)

    def __post_init__(self) -> None:
        self._runs: dict[str, Any] = {}
        self._broken = False

    def _guard(self, fn, *args) -> None:
        """W&B mirrors the parquet records: its failure warns once and never fails a cell."""
        if self._broken:
            return
        try:
            fn(*args)
        except Exception as exc:
            self._broken = True
            print(f"sibench: warning: W&B logging disabled after error: {type(exc).__name__}: {exc}",
                  file=sys.stderr)

    def _run(self, spec: Any, engine: str = "") -> Any:
        if spec.cell_id in self._runs:
            return self._runs[spec.cell_id]
        import wandb

        id_file = Path(spec.out_dir) / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else f"{spec.cell_id[:8]}-{secrets.token_hex(4)}"
        id_file.write_text(run_id)
        mode: Any = resolve_mode(self.mode)  # one of wandb's literals, checked by resolve_mode
        c = spec.config
        tags = [c["task"]["name"], c["method"]["name"], f"budget={c['budget']}", f"seed={c['seed']}",
                engine or c["model"].get("backend", ""), str(c["model"].get("label", ""))]
        run = wandb.init(project=self.project, entity=self.entity, mode=mode, id=run_id, resume="allow",
                         group=spec.sweep_dir.name, job_type=c["method"]["name"], name=spec.label,
                         tags=[t[:64] for t in tags if t], dir=str(spec.sweep_dir),
                         config={"cell_id": spec.cell_id, **flatten(c)}, reinit="finish_previous",
                         settings=self.settings())
        run.define_metric("rollouts")
        run.define_metric("*", step_metric="rollouts")
        self._runs[spec.cell_id] = run
        return run

    def settings(self) -> Any:
        import wandb

        return wandb.Settings(silent=True, init_timeout=self.timeout_s, finish_timeout=self.timeout_s)

    def start(self, spec: Any, engine: str) -> None:
        self._guard(self._run, spec, engine)

    def log_learning(self, spec: Any, metrics: dict[str, float]) -> None:
        def log() -> None:
            self._run(spec).log({"rollouts": metrics["rollouts"],
                                 **{f"learn/{k}": v for k, v in metrics.items() if k != "rollouts"}})
        self._guard(log)

    def log_checkpoint(self, spec: Any, row: dict[str, Any], eval_rows: pd.DataFrame | None = None) -> None:
        def log() -> None:
            import wandb

            point: dict[str, Any] = {"rollouts": int(row["rollouts_used"])}
            point.update({f"eval/{k}": v for k, v in row.items()
                          if isinstance(v, int | float) and not isinstance(v, bool) and k != "rollouts_used"})
            sample = completion_sample(eval_rows, self.completions) if eval_rows is not None else None
            if sample is not None and len(sample):
                point["eval/completions"] = wandb.Table(dataframe=sample)
            self._run(spec).log(point)
        self._guard(log)

    def finish(self, spec: Any, status: str) -> None:
        def fin() -> None:
            run = self._runs.pop(spec.cell_id, None)
            if run is not None:
                run.summary["status"] = status
                run.finish(exit_code=0 if status == "ok" else 1)
        self._guard(fin)


COMPLETION_COLUMNS = ["problem_id", "sample_idx", "prompt", "completion", "parsed", "passed", "reward",
                      "finish_reason"]


def completion_sample(eval_rows: pd.DataFrame, n: int) -> pd.DataFrame:
    """At most `n` sampled eval completions, the failures first, with the question the model saw
    (the prompt's last message) instead of the whole JSON prompt."""
    rows = eval_rows[eval_rows["tag"] == "sample"] if "tag" in eval_rows else eval_rows
    rows = rows.sort_values(["passed", "problem_id", "sample_idx"], kind="stable").head(n).copy()
    if "prompt" in rows:
        rows["prompt"] = rows["prompt"].map(_last_message)
    return rows[[c for c in COMPLETION_COLUMNS if c in rows]].reset_index(drop=True)


def _last_message(prompt: Any) -> str:
    try:
        messages = json.loads(prompt) if isinstance(prompt, str) else prompt
        return str(messages[-1]["content"])
    except (ValueError, TypeError, KeyError, IndexError):
        return str(prompt)


def log_report(sweep_dir: Path, name: str, logger_cfg: dict[str, Any], tables: dict[str, pd.DataFrame],
               images: list[Path], text: str) -> str | None:
    """The sweep-level W&B run at the end of `make table` (job_type `report`, in the sweep's group):
    the table and comparisons.csv as W&B tables, the plots as images, the table's text (flags and
    notes included) in its summary. Only where the sweep's cells logged to W&B; a failure warns
    once. Returns the run's name, or None."""
    if logger_cfg.get("name") != "wandb":
        return None
    logger = make_logger(logger_cfg)
    if not isinstance(logger, WandbLogger):
        return None
    run_name = f"{name} report"

    def log() -> None:
        import wandb

        run = wandb.init(project=logger.project, entity=logger.entity, mode=cast(Any, resolve_mode(logger.mode)),
                         group=name, job_type="report", name=run_name, tags=["report"], dir=str(sweep_dir),
                         reinit="finish_previous", settings=logger.settings())
        run.log({**{key: wandb.Table(dataframe=df.astype(str)) for key, df in tables.items()},
                 **{f"plots/{p.stem}": wandb.Image(str(p)) for p in images}})
        run.summary["table_md"] = text
        run.finish()
    logger._guard(log)
    return None if logger._broken else run_name


def resolve_mode(mode: str) -> str:
    """The W&B mode a run gets: explicit config > WANDB_MODE > online with a key > offline."""
    if mode not in MODES:
        raise ValueError(f"logger.mode={mode!r}; valid: {', '.join(MODES)}")
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").strip().lower()
    if env in ("online", "offline", "disabled"):
        return env
    if env == "dryrun":  # W&B's older name for offline
        return "offline"
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def make_logger(cfg: dict[str, Any]) -> NullLogger | WandbLogger:
    logger = LOGGERS.get(cfg.get("name", "none"))(**params_of(cfg))
    if isinstance(logger, WandbLogger) and resolve_mode(logger.mode) == "disabled":
        return NullLogger()
    return logger
