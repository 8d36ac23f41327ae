"""Damaged state heals (issue 23): a finished cell whose files do not read is left out of tables
and plots (which list it) and runs again; a disk error fails its cell, not the sweep; files are
0644; reports stay under results_dir and refuse a plan.json that does not read."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.core.paths import REPO

BASE = ["model=mock", "logger=none", "method=zero_shot", "budget=10", "task.test_size=10"]


def sweep_main(root: Path, *args: str) -> int:
    from harness.sweep import main

    return main([*BASE, f"results_dir={root}", *args])


def cell_dirs(sweep_dir: Path) -> dict[int, Path]:
    """seed -> cell directory."""
    return {json.loads((d / "config.json").read_text())["config"]["seed"]: d
            for d in (sweep_dir / "cells").iterdir()}


DAMAGE = {1: "summary.parquet", 2: "attempts.parquet", 3: "config.json", 4: "done.json"}


def test_unreadable_finished_cells_are_listed_by_reports_and_run_again(tmp_path, capfd):
    from harness.plot import main as plot_main
    from harness.table import main as table_main

    assert sweep_main(tmp_path, "sweep=d", "seed=0,1,2,3,4", "method=episodic_rag") == 0
    sdir = tmp_path / "d"
    cells = cell_dirs(sdir)
    for seed, name in DAMAGE.items():
        (cells[seed] / name).write_bytes(b"\x00garbage")
    (cells[0] / "status.json").write_text("{not json")  # a finished cell's status does not decide anything
    (sdir / "summary.parquet").write_bytes(b"garbage")
    capfd.readouterr()

    assert table_main(["--sweep", "d", "--results-dir", str(tmp_path)]) == 0
    out = capfd.readouterr().out
    assert pd.read_csv(sdir / "table.csv").seeds.tolist() == [1]  # only the healthy cell
    assert f"**Partial**: {len(DAMAGE)} cells of the latest plan are not finished or do not read" in out
    listed = out.split("Unreadable cells", 1)[1]
    assert all(cells[seed].name in listed for seed in DAMAGE), out
    assert f"UNREADABLE status of {cells[0].name}" in out
    assert plot_main(["--sweep", "d", "--results-dir", str(tmp_path)]) == 0
    out = capfd.readouterr().out
    assert sum(f"left out, unreadable: {cells[s].name}" in out for s in DAMAGE) == len(DAMAGE), out

    assert sweep_main(tmp_path, "sweep=d", "seed=0,1,2,3,4", "method=episodic_rag") == 0
    captured = capfd.readouterr()
    warnings = [ln for ln in captured.err.splitlines() if "does not read" in ln]
    assert len(warnings) == len(DAMAGE) and all(any(cells[s].name in w for w in warnings) for s in DAMAGE)
    assert f"{len(DAMAGE)} ran, 1 skipped, 0 failed" in captured.out
    summary = pd.read_parquet(sdir / "summary.parquet")
    assert sorted(summary[summary.final].seed) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("plan", ["garbage{", '{"cells": [{"cell_id": "../../etc"}]}', '{"cells": 3}'])
def test_reports_refuse_a_plan_that_does_not_read(tmp_path, capfd, plan):
    from harness.plot import main as plot_main
    from harness.table import main as table_main

    assert sweep_main(tmp_path, "sweep=p") == 0
    (tmp_path / "p" / "plan.json").write_text(plan)
    capfd.readouterr()
    for entry in (table_main, plot_main):
        assert entry(["--sweep", "p", "--results-dir", str(tmp_path)]) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "plan.json does not read" in err[0], err
    assert not (tmp_path / "p" / "table.md").exists()


@pytest.mark.parametrize("name", ["../..", "..", ".hidden", "a/b"])
def test_reports_stay_under_results_dir(tmp_path, capfd, name):
    from harness.plot import main as plot_main
    from harness.table import main as table_main

    inner = tmp_path / "results"
    inner.mkdir()
    for entry in (table_main, plot_main):
        assert entry(["--sweep", name, "--results-dir", str(inner)]) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"sweep name {name!r} must be a plain directory name" in err[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["results"]


def test_a_disk_error_fails_the_cell_not_the_sweep(tmp_path):
    """`ulimit -f`: every cell's config.json write fails (EFBIG); each cell fails, the sweep goes on
    to the next and ends with exit 1 and no traceback."""
    import resource

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    cmd = [sys.executable, "-m", "harness.sweep", *BASE, f"results_dir={tmp_path}", "sweep=disk", "seed=0,1",
           "method=episodic_rag"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.count("FAILED") == 2 and "File too large" in r.stdout
    assert not list((tmp_path / "disk").glob("cells/*/done.json"))


def test_files_are_group_readable(tmp_path):
    old = os.umask(0o022)
    try:
        assert sweep_main(tmp_path, "sweep=m") == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "m").rglob("*")
             if p.is_file() and p.name != ".lock"}
    assert {"plan.json", "summary.parquet", "attempts.parquet", "config.json", "done.json"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


# -- issue 34: damage the reports would have read, sealed at the finish --------------------------------------------

def corrupt_a_data_page(path: Path) -> None:
    """Flip bytes in the middle of a parquet file: the footer (and its schema) still reads."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["summary without final", "corrupt data page", "edited config.json"])
def test_a_finished_cell_changed_after_its_finish_runs_again(tmp_path, capfd, damage):
    """The damage check compares done.json's sha256 of what the reports read: a summary without
    `final` (its checkpoint rows were averaged in as final), a corrupt page behind an intact footer
    (the cell stayed 'finished' and `make table` died in thrift) and an edited config.json (a valid
    edit relabelled the table row) all re-run the cell."""
    from harness.table import main as table_main

    assert sweep_main(tmp_path, "sweep=c", "method=episodic_rag", "checkpoints=[0.5]") == 0
    (cell,) = cell_dirs(tmp_path / "c").values()
    assert set(json.loads((cell / "done.json").read_text())["sha256"]) == {"config.json", "summary.parquet",
                                                                            "attempts.parquet"}
    if damage == "summary without final":
        pd.read_parquet(cell / "summary.parquet").drop(columns="final").to_parquet(cell / "summary.parquet")
    elif damage == "corrupt data page":
        corrupt_a_data_page(cell / "attempts.parquet")
    else:
        cfg = json.loads((cell / "config.json").read_text())
        cfg["config"]["task"]["difficulty"] = "relabelled"
        (cell / "config.json").write_text(json.dumps(cfg))
    capfd.readouterr()
    assert table_main(["--sweep", "c", "--results-dir", str(tmp_path)]) == 2  # left out: nothing finished
    assert "no finished cells" in capfd.readouterr().err
    assert sweep_main(tmp_path, "sweep=c", "method=episodic_rag", "checkpoints=[0.5]") == 0
    captured = capfd.readouterr()
    assert "changed since the cell finished" in captured.err and "1 ran, 0 skipped" in captured.out
    assert table_main(["--sweep", "c", "--results-dir", str(tmp_path)]) == 0


@pytest.mark.parametrize("name", ["plan.json", ".lock"])
def test_a_folder_where_a_sweep_file_belongs_exits_2_in_one_line(tmp_path, capfd, name):
    (tmp_path / "f" / name).mkdir(parents=True)
    assert sweep_main(tmp_path, "sweep=f") == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and name in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "f" / "cells").exists()


def test_a_summary_that_cannot_be_written_warns_and_the_failed_list_still_prints(tmp_path, capfd):
    """Disk trouble at the final summary write (here: a folder in its place) hid the FAILED list
    behind a traceback; the cells' own files hold every result."""
    (tmp_path / "w" / "summary.parquet").mkdir(parents=True)
    (tmp_path / "w" / "summary.parquet" / "x").write_text("")
    assert sweep_main(tmp_path, "sweep=w", "seed=0,1") == 0
    captured = capfd.readouterr()
    assert "could not write" in captured.err and "finished in" in captured.out and "Traceback" not in captured.err
    assert len(list((tmp_path / "w").glob("cells/*/done.json"))) == 1  # zero_shot: one cell serves both seeds


def test_paper_only_keeps_every_planned_cell_in_the_plan(tmp_path, capsys):
    """`--only` cut every block's plan.json down to the subset: finished cells vanished from the
    paper table with no 'not run' line."""
    import sys as _sys

    sys_path = str(REPO / "tests" / "config")
    _sys.path.insert(0, sys_path)
    try:
        from test_paper import PAPER_YAML
    finally:
        _sys.path.remove(sys_path)
    from harness import paper as paper_cmd

    (tmp_path / "tiny.yaml").write_text(PAPER_YAML.replace("reference: tiny_reference.csv\n", ""))
    args = ["run", str(tmp_path / "tiny.yaml"), "--scale", "small", "--results-dir", str(tmp_path / "results")]
    assert paper_cmd.main(args) == 0
    sdir = tmp_path / "results" / "paper-tiny-small-table1"
    before = json.loads((sdir / "plan.json").read_text())["cells"]
    assert paper_cmd.main([*args, "--only", "method=episodic_rag", "--only", "task.train_size=4"]) == 0
    assert json.loads((sdir / "plan.json").read_text())["cells"] == before
    assert pd.read_parquet(sdir / "summary.parquet")["cell_id"].nunique() == len(before) == 5
