"""W&B runs as W&B's users read them, checked by reading the offline run files back with W&B's own
record schema (tests/runner/wandb_records.py): one run per cell (group = sweep, job_type = method,
tags, the flattened config), learning metrics as they happen and checkpoint metrics on the
`rollouts` axis, a table of eval completions, and the sweep's `report` run from `make table`."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
from wandb_records import offline_runs

from harness.core.paths import REPO

SWEEP = ["model=mock", "task=math", "method=zero_shot,memrl", "budget=16", "seed=0", "task.test_size=6",
         "task.train_size=4", "eval.n_samples=2", "checkpoints=[0.5]", "method.rollout_batch=4", "logger=wandb",
         "logger.mode=offline", "logger.completions=5", "sweep=w"]


def test_cell_runs_hold_live_learning_metrics_checkpoints_on_the_rollouts_axis_and_completions(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.sweep", *SWEEP, f"results_dir={tmp_path}"], cwd=REPO,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    sweep = tmp_path / "w"
    runs = {run.job_type: run for run in offline_runs(sweep / "wandb")}
    assert set(runs) == {"zero_shot", "memrl"}
    memrl = runs["memrl"]
    assert memrl.group == "w" and memrl.name == "math/memrl/B16/s0"
    assert {"math", "memrl", "budget=16", "seed=0", "mock"} <= set(memrl.tags)
    assert memrl.config["method.name"] == "memrl" and memrl.config["budget"] == 16  # flattened as config.json
    assert memrl.step_metrics["*"] == "rollouts"  # every metric's x-axis

    (cell,) = [d for d in (sweep / "cells").iterdir()
               if json.loads((d / "config.json").read_text())["config"]["method"]["name"] == "memrl"]
    train_log = [json.loads(line) for line in (cell / "train_log.jsonl").read_text().splitlines()]
    learn = [h for h in memrl.history if any(k.startswith("learn/") for k in h)]
    assert [h["rollouts"] for h in learn] == [row["rollouts"] for row in train_log] and len(learn) >= 4
    assert all("learn/rollout_success" in h or "learn/memories" in h for h in learn)
    memories = [h["learn/memories"] for h in learn if "learn/memories" in h]
    assert memories == sorted(memories) and memories[-1] > 0  # the store grows batch by batch

    summary = pd.read_parquet(cell / "summary.parquet")
    evals = [h for h in memrl.history if "eval/pass@1" in h]
    assert [(h["rollouts"], h["eval/pass@1"]) for h in evals] == list(zip(summary["rollouts_used"],
                                                                          summary["pass@1"], strict=True))
    assert all("eval/pass@1_lo" in h and "eval/pass@2" in h and "eval/greedy_pass" in h for h in evals)
    table = json.loads((memrl.files / evals[-1]["eval/completions/path"]).read_text())
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert 0 < len(rows) <= 5 and {"prompt", "completion", "parsed", "passed"} <= set(table["columns"])
    passed = [row["passed"] for row in rows]
    assert passed == sorted(passed)  # the failures first

    r = subprocess.run([sys.executable, "-m", "harness.table", "--sweep", "w", "--results-dir", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    (report,) = [run for run in offline_runs(sweep / "wandb") if run.job_type == "report"]
    logged = {k for h in report.history for k in h}
    assert report.group == "w" and "table/_type" in logged and "comparisons/_type" in logged
    assert any(k.startswith("plots/delta_") for k in logged) and any(k.startswith("plots/pass1_") for k in logged)
    assert "| memrl" in report.summary["table_md"]


def test_a_w_and_b_endpoint_that_never_answers_costs_at_most_its_timeout(tmp_path):
    """A failing W&B endpoint stalled the first cell 91 s and Ctrl-C 82 s (W&B's own waits);
    `logger.timeout_s` bounds both, warns once, and the cell still runs."""
    import os
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    release = threading.Event()

    class Stalled(BaseHTTPRequestHandler):
        def do_POST(self):
            release.wait(120)

        do_GET = do_POST

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stalled)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": f"http://127.0.0.1:{server.server_port}"}
    env.pop("WANDB_MODE", None)
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "harness.sweep", "model=mock", "task=math", "method=zero_shot",
                            "budget=1", "task.test_size=4", "logger=wandb", "logger.mode=online",
                            "logger.timeout_s=3", f"results_dir={tmp_path}", "sweep=stall"], cwd=REPO, env=env,
                           capture_output=True, text=True, check=False, timeout=300)
    finally:
        release.set()
        server.shutdown()
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.count("W&B logging disabled") <= 1 and "1 ran, 0 skipped, 0 failed" in r.stdout
    assert elapsed < 60, elapsed
