"""Preemption and stuck cells without a cluster: SIGTERM is handled like Ctrl-C (exit 143, the cell
marked `interrupted`, a re-run resumes), Ctrl-C during endpoint calls ends within seconds and sends
nothing more, `launcher.cell_timeout_s` fails a cell with one line; and a cell's files shipped
from a Ray worker land whole on the driver."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from harness.core.paths import REPO


def _popen(cmd: list[str]) -> subprocess.Popen:
    # SIGINT as at a terminal, even where the test runner was started with it ignored (`cmd &`)
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509


def _statuses(sweep_dir: Path) -> list[str]:
    return [json.loads(p.read_text())["status"] for p in sweep_dir.glob("cells/*/status.json")]


def test_sigterm_is_handled_like_ctrl_c_and_a_rerun_resumes(tmp_path):
    args = [sys.executable, "-m", "harness.sweep", "model=mock", "logger=none", f"results_dir={tmp_path}",
            "task=math", "method=zero_shot", "budget=10", "sweep=t", "eval.seed=0,1", "task.test_size=20",
            "model.latency_s=0.05", "eval.batch_problems=1"]
    proc = _popen(args)
    deadline = time.time() + 120
    while time.time() < deadline and "running" not in _statuses(tmp_path / "t"):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["sibench: terminated (SIGTERM); re-run the same command to resume"]
    statuses = _statuses(tmp_path / "t")
    assert "interrupted" in statuses and "running" not in statuses
    r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(pd.read_parquet(tmp_path / "t" / "summary.parquet")) == 2  # both cells, once each


class _Stalled(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that takes requests and never answers (until released)."""

    requests = 0
    lock = threading.Lock()
    release = threading.Event()

    def do_POST(self):
        with type(self).lock:
            type(self).requests += 1
        type(self).release.wait(120)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupt_during_endpoint_calls_ends_within_seconds_and_sends_nothing_more(tmp_path, sig, code):
    _Stalled.requests = 0
    _Stalled.release.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stalled)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = _popen([sys.executable, "-m", "harness.sweep", "model=openai_compatible", "logger=none",
                       f"model.base_url=http://127.0.0.1:{server.server_port}/v1", "model.timeout_s=15",
                       "model.max_retries=1", "model.max_concurrency=4", f"results_dir={tmp_path}", "task=math",
                       "method=zero_shot", "budget=4", "task.test_size=20", "sweep=e"])
        deadline = time.time() + 120
        while time.time() < deadline and _Stalled.requests < 4:
            time.sleep(0.1)
        assert _Stalled.requests == 4  # max_concurrency requests out, all stalled
        t0 = time.time()
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        took = time.time() - t0
        time.sleep(1.0)
        assert proc.returncode == code
        assert took < 5, f"exit took {took:.1f}s after the signal"
        assert _Stalled.requests == 4  # nothing queued was sent, nothing was retried
        assert _statuses(tmp_path / "e") == ["interrupted"]
    finally:
        _Stalled.release.set()
        server.shutdown()


def test_a_cell_past_cell_timeout_fails_with_one_line_and_the_next_runs(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness.sweep", "model=mock", "logger=none", f"results_dir={tmp_path}",
                        "task=math", "method=zero_shot", "budget=4", "task.test_size=20", "sweep=to", "eval.seed=0,1",
                        "model.latency_s=0.5", "launcher.cell_timeout_s=2"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    failed = [line for line in r.stdout.splitlines() if line.startswith("  FAILED")]
    assert len(failed) == 2 and all("exceeded launcher.cell_timeout_s=2" in line for line in failed)
    assert sorted(_statuses(tmp_path / "to")) == ["failed", "failed"]


def test_a_cell_lands_whole_on_the_driver_and_replaces_an_earlier_attempt(tmp_path, run_one):
    from harness.runner.cluster import land, pack

    outcome, attempts, _ = run_one("method=memrl", "method.embedder=hashing", "budget=6")
    worker_sweep = tmp_path / "sweep"
    files = pack(worker_sweep)
    cell = outcome.cell_id
    assert {f"cells/{cell}/attempts.parquet", f"cells/{cell}/done.json", f"cells/{cell}/memories.jsonl"} <= set(files)
    driver = tmp_path / "driver"
    (driver / "cells" / cell).mkdir(parents=True)
    (driver / "cells" / cell / "left-by-an-earlier-attempt.txt").write_text("x")
    land(driver, cell, {**files, "wandb/run/file.txt": b"w"})
    landed = driver / "cells" / cell
    assert sorted(p.name for p in landed.iterdir()) == sorted(p.name for p in (worker_sweep / "cells" / cell).iterdir())
    assert pd.read_parquet(landed / "attempts.parquet").equals(attempts)
    assert (driver / "wandb" / "run" / "file.txt").read_bytes() == b"w"
    assert not (driver / ".landing").exists()  # no staging folder left behind, not even an empty one


TWO_BLOCKS = """
scales:
  s:
    common: [model=mock, logger=none, task.test_size=20, eval.n_samples=2, model.latency_s=0.05,
             eval.batch_problems=1, "checkpoints=[]"]
    blocks:
      first:
        grid: {task: [math], method: [zero_shot], seed: [0]}
        cells: [[eval.seed=0], [eval.seed=1]]
      second:
        grid: {task: [math], method: [zero_shot], seed: [0]}
        cells: [[eval.seed=2]]
table: {block: first}
"""


def test_sigterm_stops_a_paper_run_like_a_sweep_and_the_next_block_does_not_start(tmp_path):
    """`harness.paper run` had no SIGTERM handler: nothing printed, the cell stayed 'running', and
    `run` would have gone on to the next block after a 143."""
    (tmp_path / "two.yaml").write_text(TWO_BLOCKS)
    proc = _popen([sys.executable, "-m", "harness.paper", "run", str(tmp_path / "two.yaml"), "--scale", "s",
                   "--results-dir", str(tmp_path / "r")])
    first = tmp_path / "r" / "paper-two-s-first"
    deadline = time.time() + 120
    while time.time() < deadline and "running" not in _statuses(first):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["sibench: terminated (SIGTERM); re-run the same command to resume"]
    assert "interrupted" in _statuses(first) and "running" not in _statuses(first)
    assert not (tmp_path / "r" / "paper-two-s-second").exists()
