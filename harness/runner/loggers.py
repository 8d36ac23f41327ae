"""Experiment loggers: W&B mirrors the parquet records (one run per cell, grouped by sweep).

The mode follows W&B's own environment: `WANDB_MODE` (online, offline, disabled) wins over
`logger.mode: auto`; with neither, a `WANDB_API_KEY` means online, else offline. An explicit
`logger.mode` wins over both. `disabled` (or `logger=none`) writes nothing and prints nothing. W&B's
console output is silenced; the run id is kept in the cell directory so a resumed cell continues
the same run.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from harness.core.knobs import knob, params_of
from harness.core.registry import LOGGERS, register_logger

Mode = Literal["auto", "online", "offline", "disabled"]


MODES = get_args(Mode)


@register_logger("none")
@dataclass
class NullLogger:
    """No experiment tracker: parquet records only."""

    def log_checkpoint(self, spec: Any, row: dict[str, Any]) -> None:
        pass

    def finish(self, spec: Any, status: str) -> None:
        pass


@register_logger("wandb")
@dataclass
class WandbLogger:
    """One W&B run per cell, grouped by sweep; the parquet files stay the source of truth."""

    project: str = knob("sibench", "W&B project")
    entity: str | None = knob(None, "W&B entity (team or user); null = your default")
    mode: Mode = knob(
        "auto", "auto = WANDB_MODE if set, else online with WANDB_API_KEY, else offline (files under "
                "results/<sweep>/wandb)")

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

    def _mode(self) -> str:
        return resolve_mode(self.mode)

    def _run(self, spec: Any) -> Any:
        if spec.cell_id in self._runs:
            return self._runs[spec.cell_id]
        import wandb

        id_file = Path(spec.out_dir) / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.exists() else f"{spec.cell_id[:8]}-{secrets.token_hex(4)}"
        id_file.write_text(run_id)
        mode: Any = self._mode()  # one of wandb's literals, checked by resolve_mode
        run = wandb.init(project=self.project, entity=self.entity, mode=mode, id=run_id,
                         resume="allow", group=spec.sweep_dir.name, name=spec.label,
                         dir=str(spec.sweep_dir), config=spec.config, reinit="finish_previous",
                         settings=wandb.Settings(silent=True))
        self._runs[spec.cell_id] = run
        return run

    def log_checkpoint(self, spec: Any, row: dict[str, Any]) -> None:
        def log() -> None:
            self._run(spec).log({k: v for k, v in row.items() if isinstance(v, (int, float))},
                                step=int(row["rollouts_used"]))
        self._guard(log)

    def finish(self, spec: Any, status: str) -> None:
        def fin() -> None:
            run = self._runs.pop(spec.cell_id, None)
            if run is not None:
                run.summary["status"] = status
                run.finish(exit_code=0 if status == "ok" else 1)
        self._guard(fin)


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
