"""The README's opening commands, run as a user types them (issue 19: `make sweep TASK=math BUDGET=500`
planned no method for two rounds because nothing ran it).

Every `make …` line of the README's first two code blocks is read from the README itself, so an edited
README is what gets tested. The commands run in a copy of the repository (their results stay out of
the checkout) with the checkout's `.venv`:
- every `make sweep` line plans (`DRY=1` in the environment: the command line stays as typed) the
  grid its variables describe, on the default model: one cell per task x method x budget x seed (a
  method that spends no rollouts: one per task), with every registered method when the line names none;
- the "Running sweeps" block then runs for real on the mock model (`MODEL=mock` in the environment,
  which Make's `?=` lets through; a `MODEL=` on the line still wins), and its `make table` and
  `make plot` lines must read what it wrote;
- `make test` is the command `.ci/run` calls, and it runs pytest.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.core.paths import REPO

pytestmark = pytest.mark.skipif(not (REPO / ".venv" / ".installed").exists(),
                                reason="needs the .venv that `make setup` installs")


def readme_blocks(count: int = 2) -> list[list[str]]:
    """The lines of the README's first `count` fenced code blocks."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", (REPO / "README.md").read_text(), flags=re.S | re.M)
    return [block.splitlines() for block in blocks[:count]]


def make_lines(block: list[str]) -> list[str]:
    """The `make …` commands of a block, without their trailing `# comment`."""
    return [line.split(" #")[0].strip() for line in block if line.startswith("make ")]


def make_vars(command: str) -> tuple[str, dict[str, str]]:
    """(target, {VAR: value}) of a `make TARGET VAR=value …` command line."""
    words = shlex.split(command)[1:]
    target = next(w for w in words if "=" not in w)
    return target, dict(w.split("=", 1) for w in words if "=" in w)


def registered_methods() -> list[str]:
    """The methods a fresh process registers (not test-only ones other test modules add in this one)."""
    from harness.core.registry import METHODS

    return [m for m in METHODS.names() if not m.startswith("_test")]


def spends_rollouts(method: str) -> bool:
    from harness.core.registry import METHODS

    return METHODS.get(method).uses_rollouts


@pytest.fixture(scope="module")
def user_checkout(tmp_path_factory) -> Path:
    """A copy of the repository's files beside the checkout's installed `.venv` (results written
    here stay out of the checkout). The setup stamp must stay newer than pyproject.toml, or `make`
    would re-install the shared .venv from the copy."""
    root = tmp_path_factory.mktemp("user") / "sibench"
    shutil.copytree(REPO, root, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "results", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "wandb"))
    (root / ".venv").symlink_to(REPO / ".venv")
    for name in ("pyproject.toml", "constraints-cpu.txt"):
        os.utime(root / name, (0, 0))
    return root


def run_make(root: Path, command: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("MODEL", "DRY", "METHOD", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(shlex.split(command), cwd=root, capture_output=True, text=True, timeout=600,
                          env={**base, "WANDB_MODE": "disabled", **env})


def planned_cells(stdout: str) -> list[str]:
    """Cell labels (task/method/Bbudget/sseed) in a `--dry-run` listing."""
    return re.findall(r"^\s+(\S+/\S+/B\d+/s\d+)\s", stdout, flags=re.M)


def test_the_readme_opens_with_the_main_command_and_ci_runs_its_test_command():
    first = make_lines(readme_blocks()[0])
    assert first[0] == "make sweep TASK=math BUDGET=500"
    assert "make test" in first
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert "make test" in [line.strip() for line in ci]


def test_every_readme_sweep_line_plans_its_whole_grid(user_checkout):
    sweeps = [c for block in readme_blocks() for c in make_lines(block) if make_vars(c)[0] == "sweep"]
    assert sweeps, "the README's opening blocks name no `make sweep` line"
    for command in sweeps:
        proc = run_make(user_checkout, command, DRY="1")
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        _, variables = make_vars(command)
        methods = variables["METHOD"].split(",") if variables.get("METHOD") else registered_methods()
        budgets, seeds = variables.get("BUDGET", "500").split(","), variables.get("SEEDS", "0").split(",")
        grid = {(t, m, b, s) for t in variables.get("TASK", "math").split(",") for m in methods
                for b in (budgets if spends_rollouts(m) else budgets[:1])
                for s in (seeds if spends_rollouts(m) else seeds[:1])}  # no rollouts: one cell serves all
        cells = planned_cells(proc.stdout)
        assert sorted(cells) == sorted(f"{t}/{m}/B{b}/s{s}" for t, m, b, s in grid), f"{command}\n{proc.stdout}"
        assert not (user_checkout / "results" / variables.get("SWEEP", "default")).exists(), \
            f"{command}: a plan-only run wrote its sweep folder"


def test_the_main_command_plans_one_cell_per_registered_method(user_checkout):
    proc = run_make(user_checkout, make_lines(readme_blocks()[0])[0], DRY="1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    methods = sorted(c.split("/")[1] for c in planned_cells(proc.stdout))
    assert methods == registered_methods()
    assert f"{len(methods)} cells (0 finished, {len(methods)} to run)" in proc.stdout
    assert "smollm2-135m" in proc.stdout  # the default model, named with its engine on every line


def test_the_running_sweeps_block_runs_as_typed_on_the_mock_model(user_checkout):
    """Sweeps, then the table and the plots of what they wrote, in the README's order; a line of
    another target (calibrate) is planned (`DRY=1`), as it would run every task on a real model."""
    for command in make_lines(readme_blocks()[1]):
        target, _ = make_vars(command)
        real_run = target in ("sweep", "table", "plot")  # others (calibrate: every task on its model) plan only
        proc = run_make(user_checkout, command, MODEL="mock", **({} if real_run else {"DRY": "1"}))
        assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        target, variables = make_vars(command)
        sweep_dir = user_checkout / "results" / variables.get("SWEEP", "default")
        if target == "sweep":
            assert (sweep_dir / "summary.parquet").is_file(), command
        elif target == "table":
            for method in variables.get("METHOD", "zero_shot").split(","):
                assert method in proc.stdout, f"{command}\n{proc.stdout}"
        elif target == "plot":
            assert list((sweep_dir / "plots").glob("*.png")), command


def test_make_test_runs_pytest_on_everything_but_gpu_tests(user_checkout):
    proc = run_make(user_checkout, "make -n test")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"-m pytest -m \"?not gpu\"?", proc.stdout), proc.stdout


def test_the_readmes_trl_args_example_runs_as_written(capfd):
    """Issue 34: `method.trl_args={weight_decay: 0.01}`, as the README writes it, was refused
    ("valid keys: " and an empty list); it plans, and the value reaches the method's config."""
    from harness.config.compose import compose, expand_grid, to_dict
    from harness.sweep import main

    example = re.search(r"`(method\.trl_args=\{[^`]*\})`", (REPO / "README.md").read_text()).group(1)
    assert example == "method.trl_args={weight_decay: 0.01}"
    assert main(["method=grpo", "model=smollm2_135m_hf", "budget=8", example, "--dry-run"]) == 0
    (cell,) = expand_grid(["method=grpo", "model=smollm2_135m_hf", example])
    assert to_dict(compose(cell))["method"]["trl_args"] == {"weight_decay": 0.01}
