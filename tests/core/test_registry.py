"""Adding a method is one new file under methods/ and one YAML: no edit in harness/."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from harness.core.paths import REPO
from harness.core.registry import METHODS, UnknownName


def test_unknown_name_lists_valid_choices():
    with pytest.raises(UnknownName, match=r"valid: .*zero_shot"):
        METHODS.get("nope")


def test_registry_discovers_modules_of_its_package(tmp_path, monkeypatch):
    pkg = tmp_path / "plugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "alpha.py").write_text(textwrap.dedent("""
        from harness.core.registry import Registry
        import plugins
        REG = plugins.REG
        @REG.register("alpha")
        class Alpha: pass
    """))
    (pkg / "__init__.py").write_text("from harness.core.registry import Registry\n"
                                     "REG = Registry('plugin', 'plugins')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import plugins

    assert plugins.REG.names() == ["alpha"]
    assert plugins.REG.get("alpha").__name__ == "Alpha"


def test_new_method_file_runs_in_a_sweep_without_touching_harness(tmp_path):
    """Copy the repo, drop in methods/echo.py (nothing else), run a sweep with it: its knob is in
    --help, overridable, and range-checked from its one declaration."""
    dst = tmp_path / "repo"
    dst.mkdir()
    for part in ("harness", "methods", "tasks", "conf"):
        subprocess.run(["cp", "-r", str(REPO / part), str(dst / part)], check=True)
    common = [sys.executable, "-m", "harness.sweep", "model=mock", "logger=none",
              "+model.boosts={check each step: 0.6}", "budget=5", "sweep=e", "task.test_size=40"]
    first = subprocess.run(common + ["method=zero_shot"], cwd=dst, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    (dst / "methods" / "echo.py").write_text(textwrap.dedent('''
        """echo: test method that puts a fixed guidance line into the prompt."""
        from dataclasses import dataclass
        from harness.core.knobs import knob
        from harness.engine import MethodBase, PromptOnly
        from harness.core.registry import register_method

        @register_method("echo")
        @dataclass
        class Echo(MethodBase):
            guidance: str = knob("check each step", "the line put into every prompt")
            repeat: int = knob(1, "times the line is repeated", ge=1)

            def learn(self, train, ctx):
                return PromptOnly(ctx.task, ctx.backend, guidance=" ".join([self.guidance] * self.repeat))
    '''))
    shown = subprocess.run([sys.executable, "-m", "harness.sweep", "--help", "method=echo"], cwd=dst,
                           capture_output=True, text=True, timeout=120)
    assert "guidance = check each step  the line put into every prompt  [a string]" in shown.stdout, shown.stdout
    assert "repeat = 1  times the line is repeated  [an integer >= 1]" in shown.stdout
    bad = subprocess.run(common + ["method=echo", "method.repeat=0"], cwd=dst, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "method.repeat=0; valid: an integer >= 1" in bad.stderr, bad.stderr
    harness_before = sorted(p.read_bytes() for p in (dst / "harness").rglob("*.py"))
    r = subprocess.run(common + ["method=zero_shot,echo"], cwd=dst, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "1 ran, 1 skipped" in r.stdout  # the new method file does not invalidate finished cells
    assert sorted(p.read_bytes() for p in (dst / "harness").rglob("*.py")) == harness_before
    import pandas as pd

    s = pd.read_parquet(dst / "results" / "e" / "summary.parquet").set_index("method")
    assert s.loc["echo", "pass@1"] > s.loc["zero_shot", "pass@1"] + 0.3
    assert s.loc["echo", "context_tokens_added"] == 3  # "check each step" in the mock's word count
