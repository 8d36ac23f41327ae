"""The Ray launcher on a real multi-node cluster on one machine: `ray start --head` and `ray start
--address=...` processes (the README's commands), worker nodes with fake GPUs so GPU-shaped cells
are placed as on a GPU cluster, and the mock model. Covered: (a) a worker node that cannot write to
the driver's results folder, (b) a node killed mid-sweep (and one joining), (c) SIGTERM to the
driver. Each asserts 0 lost and 0 duplicated rows and the metrics of a local run of the same cells.
Every process a test starts runs in its own session and is killed by session at teardown."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.core.paths import REPO

RAY = str(Path(sys.executable).parent / "ray")
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
ENV.pop("RAY_ADDRESS", None)
# a dead node is noticed within ~3 s here (Ray's default: 3 s x 5)
HEALTH = '{"health_check_period_ms": 1000, "health_check_failure_threshold": 3}'
CELLS = ["model=mock", "logger=none", "task=math", "budget=4", "task.test_size=20", "task.train_size=4",
         "eval.n_samples=2"]
# a sitecustomize that makes every write under $SIBENCH_TEST_NO_WRITE fail, as on a machine that does
# not have the driver's disk (a worker node started with it on PYTHONPATH)
NO_WRITE = '''
import os, sys
_root = os.environ.get("SIBENCH_TEST_NO_WRITE")
def _under(p):
    try:
        return os.path.abspath(os.fsdecode(p)).startswith(_root)
    except TypeError:
        return False
def _hook(event, args):
    if event == "open" and _under(args[0]):
        mode, flags = args[1], args[2] or 0
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(f"{args[0]}: this node cannot write to the driver's disk")
    elif event in ("os.mkdir", "os.rename", "os.remove", "os.rmdir") and any(_under(a) for a in args[:2] if a):
        raise PermissionError(f"{args[0]}: this node cannot write to the driver's disk")
if _root:
    sys.addaudithook(_hook)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _session_pids(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the command: state ppid pgrp session
            pids.append(int(stat.parent.name))
    return pids


class Cluster:
    """A head (no CPUs: cells run on the worker nodes only) plus the nodes a test adds."""

    def __init__(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="sbray", dir="/tmp")  # short: Ray's socket paths have a limit
        self.address = f"127.0.0.1:{_free_port()}"
        self.nodes: list[subprocess.Popen] = []
        self.gpus: dict[int, int] = {}  # live node's pid -> its GPUs
        self._start(["--head", f"--port={self.address.split(':')[1]}", "--num-cpus=0", "--num-gpus=0",
                     "--include-dashboard=false", f"--system-config={HEALTH}"], ENV)

    def _start(self, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(Path(self.temp) / f"node{len(self.nodes)}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen([RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--disable-usage-stats",
                                 f"--temp-dir={self.temp}", *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.nodes.append(proc)
        return proc

    def add_node(self, gpus: int = 1, env: dict[str, str] | None = None) -> subprocess.Popen:
        """`ray start --address=<head>` with fake GPUs; returns once the cluster counts them."""
        proc = self._start([f"--address={self.address}", "--num-cpus=2", f"--num-gpus={gpus}"], env or ENV)
        self.gpus[proc.pid] = gpus
        self.wait_for_gpus(sum(self.gpus.values()))
        return proc

    def wait_for_gpus(self, n: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run([RAY, "status", f"--address={self.address}"], env=ENV, capture_output=True, text=True)
            if f"/{n}.0 GPU" in r.stdout:
                return
            time.sleep(1)
        raise TimeoutError(f"the cluster did not reach {n} GPUs")

    def kill(self, proc: subprocess.Popen) -> None:
        """kill -9 every process of one node (its raylet, agents and workers)."""
        for pid in _session_pids(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(30)
        self.gpus.pop(proc.pid, None)

    def shutdown(self) -> None:
        for proc in reversed(self.nodes):
            self.kill(proc)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture
def cluster():
    c = Cluster()
    try:
        yield c
    finally:
        c.shutdown()


def _sweep(results: Path, *args: str, address: str | None = None, **kw) -> subprocess.Popen:
    launcher = ["launcher=ray", f"launcher.address={address}"] if address else []
    if not any(a.startswith("method=") for a in args):
        args = ("method=zero_shot", *args)
    return subprocess.Popen([sys.executable, "-m", "harness.sweep", *CELLS, f"results_dir={results}", *launcher,
                             *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def _statuses(sweep_dir: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sweep_dir.glob("cells/*/status.json")}


def _assert_same_as_local(ray_sweep: Path, local_sweep: Path, cells: int) -> None:
    """Every cell's rows exactly once, and the metrics a local run of the same cells gives."""
    key = ["task", "method", "budget", "seed", "checkpoint"]
    order = [*key, "eval_seed"]  # cells that differ by eval.seed only share the key

    def summary(sweep: Path) -> pd.DataFrame:
        df = pd.read_parquet(sweep / "summary.parquet")
        df["eval_seed"] = [json.loads((sweep / "cells" / c / "config.json").read_text())["config"]["eval"]["seed"]
                           for c in df.cell_id]
        return df.sort_values(order).reset_index(drop=True)

    got, want = summary(ray_sweep), summary(local_sweep)
    assert len(got) == len(want) and got.cell_id.nunique() == want.cell_id.nunique() == cells
    metrics = [c for c in want.columns if c.startswith("pass@") or c in ("rollouts_used", "n_test", "n_samples",
                                                                          "learn_policy_tokens", "learn_aux_tokens")]
    pd.testing.assert_frame_equal(got[key + metrics], want[key + metrics])
    for (_, g), (_, w) in zip(got.iterrows(), want.iterrows(), strict=True):
        a = pd.read_parquet(ray_sweep / "cells" / g.cell_id / "attempts.parquet")
        b = pd.read_parquet(local_sweep / "cells" / w.cell_id / "attempts.parquet")
        rows = ["phase", "checkpoint", "problem_id", "sample_idx", "tag", "step"]
        assert not a.duplicated(rows).any()
        cols = rows + ["reward", "passed", "completion", "prompt_tokens", "completion_tokens"]
        pd.testing.assert_frame_equal(a[cols].sort_values(rows).reset_index(drop=True),
                                      b[cols].sort_values(rows).reset_index(drop=True))


def _local(tmp_path: Path, *args: str) -> Path:
    proc = _sweep(tmp_path / "local", "sweep=ref", *args)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return tmp_path / "local" / "ref"


@pytest.mark.slow
def test_a_worker_that_cannot_write_the_drivers_results_still_delivers_every_row(cluster, tmp_path):
    hook = tmp_path / "nowrite"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NO_WRITE)
    results = tmp_path / "driver"
    cluster.add_node(gpus=1, env={**ENV, "PYTHONPATH": str(hook), "SIBENCH_TEST_NO_WRITE": str(results)})
    grid = ["eval.seed=0,1,2", "method=zero_shot,memrl", "method.embedder=hashing"]
    proc = _sweep(results, "sweep=a", "model.resources.num_gpus=1", *grid, address=cluster.address)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    assert "6 ran, 0 skipped, 0 failed" in out
    assert {s["status"] for s in _statuses(results / "a").values()} == {"ok"}
    assert list((results / "a" / "cells").glob("*/memories.jsonl"))  # a method's artefacts came back too
    _assert_same_as_local(results / "a", _local(tmp_path, *grid), cells=6)


@pytest.mark.slow
def test_a_node_killed_mid_sweep_costs_retries_and_a_joining_node_gets_work(cluster, tmp_path):
    first = cluster.add_node(gpus=1)
    cluster.add_node(gpus=1)
    results = tmp_path / "driver"
    proc = _sweep(results, "sweep=b", "model.resources.num_gpus=1", "eval.seed=0,1,2,3,4,5", "model.latency_s=0.1",
                  address=cluster.address)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and sum(s["status"] == "running" for s in _statuses(results / "b").values()) < 2:
            time.sleep(0.2)
        cluster.kill(first)  # one GPU node dies with a cell on it (each node holds one GPU worker)
        cluster.add_node(gpus=1)  # and a fresh one joins
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    assert "6 ran, 0 skipped, 0 failed" in out
    assert "1 node(s) lost" in out and "retry 1/3" in out and "joined: it gets work" in out, out
    _assert_same_as_local(results / "b", _local(tmp_path, "eval.seed=0,1,2,3,4,5"), cells=6)


@pytest.mark.slow
def test_sigterm_to_the_driver_marks_the_cells_on_workers_and_a_rerun_resumes(cluster, tmp_path):
    cluster.add_node(gpus=2)
    results = tmp_path / "driver"
    args = ["sweep=c", "model.resources.num_gpus=1", "eval.seed=0,1,2,3", "model.latency_s=0.1"]
    proc = _sweep(results, *args, address=cluster.address)
    deadline = time.time() + 180
    while time.time() < deadline and "running" not in {s["status"] for s in _statuses(results / "c").values()}:
        time.sleep(0.2)
    handed_out = {c for c, s in _statuses(results / "c").items() if s["status"] == "running"}
    t0 = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert time.time() - t0 < 15
    assert err.strip().splitlines()[-1] == "sibench: terminated (SIGTERM); re-run the same command to resume"
    statuses = {c: s["status"] for c, s in _statuses(results / "c").items()}
    assert "running" not in statuses.values()
    assert all(statuses[c] in ("interrupted", "ok") for c in handed_out) and "interrupted" in statuses.values()
    proc = _sweep(results, *args, address=cluster.address)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    _assert_same_as_local(results / "c", _local(tmp_path, "eval.seed=0,1,2,3"), cells=4)
