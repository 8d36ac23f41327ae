"""What a result was computed with: package versions in config.json and the summary rows, a code
hash that follows every import of the cell's modules, and a cell id free of serving details."""

from __future__ import annotations

import json

import pytest

from harness.engine import provenance
from harness.engine.cell import CellSpec


def test_the_code_hash_follows_relative_imports(tmp_path, monkeypatch):
    """`from .helper import f` in a method was outside the hash: editing helper.py re-ran nothing."""
    for rel, text in (("methods/mine.py", "from .helper import f\nfrom . import other\n"),
                      ("methods/helper.py", "def f(): return 1\n"), ("methods/other.py", "x = 1\n"),
                      ("methods/sub/deep.py", "from ..helper import f\n"), ("methods/unrelated.py", "y = 2\n"),
                      ("tasks/t.py", "")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(provenance, "REPO", tmp_path)
    found = {p.relative_to(tmp_path).as_posix() for p in provenance.project_imports(tmp_path / "methods/mine.py")}
    assert found == {"methods/mine.py", "methods/helper.py", "methods/other.py"}
    deep = {p.relative_to(tmp_path).as_posix() for p in provenance.project_imports(tmp_path / "methods/sub/deep.py")}
    assert deep == {"methods/sub/deep.py", "methods/helper.py"}

    def version() -> str:
        return provenance.files_hash(provenance.cell_code_files(tmp_path / "tasks/t.py", tmp_path / "methods/mine.py"))

    before = version()
    (tmp_path / "methods/unrelated.py").write_text("y = 3\n")
    assert version() == before
    (tmp_path / "methods/helper.py").write_text("def f(): return 2\n")
    assert version() != before


def test_serving_details_leave_the_cell_id_and_what_changes_outputs_stays(cell_config, tmp_path):
    """Moving the endpoint to another port re-ran every cell."""
    base = ["model=openai_compatible", "method=zero_shot"]
    ref = CellSpec(cell_config(*base), tmp_path).cell_id
    for serving in ("model.base_url=http://127.0.0.1:9000/v1", "model.timeout_s=30", "model.max_concurrency=4",
                    "model.max_retries=1", "model.api_key_env=OTHER_KEY", "model.resources.num_cpus=3"):
        assert CellSpec(cell_config(*base, serving), tmp_path).cell_id == ref, serving
    for output in ("model.model=Qwen/Qwen3-4B", "model.reasoning_effort=low", "eval.temperature=0.5"):
        assert CellSpec(cell_config(*base, output), tmp_path).cell_id != ref, output


def test_package_versions_are_in_config_json_and_in_every_summary_row(run_one, tmp_path):
    outcome, _, summary = run_one("method=zero_shot", "budget=1")
    recorded = json.loads((tmp_path / "sweep" / "cells" / outcome.cell_id / "config.json").read_text())["versions"]
    assert recorded == provenance.package_versions() and {"torch", "transformers", "numpy"} <= set(recorded)
    assert (summary["versions"] == provenance.versions_text(recorded)).all()
    assert f"torch={recorded['torch']}" in summary["versions"].iloc[0]


def test_the_training_twins_size_and_reservation_stay_out_of_the_cell_id(tmp_path):
    """A weight-training cell of a vLLM model carries its trainer twin's config (`model.trainer`):
    its `shape` (read by the memory check) and `resources` say nothing about what the cell computes."""
    import copy

    from harness.runner.plan import compose_cell

    cfg = compose_cell(["method=grpo", "model=smollm2_135m", "logger=none"])
    if not cfg["model"].get("trainer"):
        pytest.skip("vLLM is not installed here: the cell runs on the twin itself, with no trainer section")
    ref = CellSpec(cfg, tmp_path).cell_id
    moved = copy.deepcopy(cfg)
    moved["model"]["trainer"]["shape"] = {**moved["model"]["trainer"]["shape"], "layers": 1}
    moved["model"]["trainer"]["resources"] = {**moved["model"]["trainer"]["resources"], "num_gpus": 1}
    assert CellSpec(moved, tmp_path).cell_id == ref
    moved["model"]["trainer"]["dtype"] = "bfloat16"
    assert CellSpec(moved, tmp_path).cell_id != ref
