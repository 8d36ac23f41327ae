"""Shared fixtures: in-process cell runs on the mock backend, and the gpu/slow skips."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def cell_config():
    """Compose a resolved cell config on the mock backend with small sizes; extra overrides win."""
    from harness.config import compose, to_dict

    def make(*overrides: str) -> dict:
        base = ["model=mock", "logger=none", "task.test_size=20", "task.train_size=5",
                "eval.n_samples=4", "checkpoints=[]"]
        return to_dict(compose(base + list(overrides)))
    return make


@pytest.fixture
def run_one(tmp_path, cell_config):
    """Run one cell in-process; returns (outcome, attempts DataFrame, summary DataFrame)."""
    import pandas as pd

    from harness.backends import make_backend
    from harness.cell import CellSpec, run_cell

    def run(*overrides: str, backend=None):
        cfg = cell_config(*overrides)
        spec = CellSpec(cfg, tmp_path / "sweep")
        outcome = run_cell(spec, lambda m: backend or make_backend(m))
        attempts = pd.read_parquet(spec.out_dir / "attempts.parquet") if outcome.status == "ok" else None
        summary = pd.read_parquet(spec.out_dir / "summary.parquet") if outcome.status == "ok" else None
        return outcome, attempts, summary
    return run
