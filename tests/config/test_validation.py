"""Bad input is refused whole and early (issue 23): each case exits 2 with one line on stderr and
changes nothing on disk, an existing sweep's plan.json included. Runs the entry point in-process
(the CLI tests in test_sweep.py cover the subprocess path)."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.core.errors import UserError
from harness.core.paths import REPO
from harness.core.registry import BACKENDS, REGISTRIES, register_launcher

SWEEP = "existing_i23"  # unique: a case that escaped results_dir would show up in the repository root


@register_launcher("_test_refuser")
@dataclass
class Refuser:
    """Test-only launcher refused at start, as `launcher=ray launcher.address=auto` is with no cluster."""

    def run(self, specs, logger_cfg, report, progress=None, on_start=None):
        raise UserError("no cluster here")


@pytest.fixture(scope="module")
def existing(tmp_path_factory) -> Path:
    from harness.sweep import main

    root = tmp_path_factory.mktemp("results")
    assert main(["model=mock", "logger=none", "method=zero_shot", f"results_dir={root}", f"sweep={SWEEP}",
                 "budget=10", "task.test_size=10", "seed=0,1"]) == 0
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (the sweep lock's holder line aside)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock"}


BAD = [  # (overrides, what the one line says)
    # silent wrong results
    (["task.verify_timeout_s=inf"], "task.verify_timeout_s=inf; valid: a finite number >= 0.1 and <= 3600"),
    # issue 34: 1e-6 scored every correct answer 0 and reported "ok"
    (["task.verify_timeout_s=1e-6"], "task.verify_timeout_s=1e-06; valid: a number >= 0.1 and <= 3600"),
    (["task.verify_timeout_s=nan"], "task.verify_timeout_s=nan; valid: a finite number"),
    (["task.verify_timeout_s=1e10"], "task.verify_timeout_s=10000000000.0; valid: a number >= 0.1 and <= 3600"),
    (["task=math_benchmark", "task.math_verify_timeout_s=0"], "task.math_verify_timeout_s=0.0; valid: a number > 0"),
    (["task=math_benchmark", "task.math_verify_timeout_s=nan"], "task.math_verify_timeout_s=nan; valid: a finite"),
    (["task=math_benchmark", "task.math_verify_timeout_s=-5"], "task.math_verify_timeout_s=-5.0; valid: a number > 0"),
    (["eval.temperature=nan"], "eval.temperature=nan; valid: a finite number >= 0"),
    (["eval.top_p=nan"], "eval.top_p=nan; valid: a finite number > 0 and <= 1"),
    (["method=memrl", "method.alpha=nan"], "method.alpha=nan; valid: a finite number > 0 and <= 1"),
    (["checkpoints=[nan]"], "checkpoints=[nan]; valid: a list of finite numbers, each > 0 and < 1"),
    (["checkpoints=[0.5,1.0]"], "checkpoints=[0.5, 1.0]; valid: a list of numbers, each > 0 and < 1"),
    # tracebacks
    *[([f"~{key}"], f"~{key}: deleting a config key is not supported")
      for key in ("budget", "sweep", "eval", "model", "logger", "results_dir")],
    (["budget=${oc.env:SIBENCH_UNSET_I23}"], "budget=${oc.env:SIBENCH_UNSET_I23}: KeyError raised while resolving "
                                             "interpolation: \"Environment variable 'SIBENCH_UNSET_I23' not found\""),
    (["budget=${oc.env:HOME}"], "budget=${oc.env:HOME}: While dereferencing interpolation"),
    (["task=countdown", "task.min_numbers=5", "task.max_numbers=3"],
     "task.min_numbers=5 is above task.max_numbers=3; valid: task.min_numbers <= task.max_numbers"),
    (["results_dir=/dev/null"], "results_dir='/dev/null': /dev/null is not a directory"),
    (["aux_model=mock"], "aux_model='mock': the aux model is a model entry, picked with model@aux_model=<name>"),
    # checked too late
    (["model.latency_s=-1"], "model.latency_s=-1.0; valid: a number >= 0 and <= 60"),
    (["model=openai_compatible", "model.max_retries=-1"], "model.max_retries=-1; valid: an integer >= 0"),
    (["model=openai_compatible", "model.timeout_s=-1"], "model.timeout_s=-1.0; valid: a number > 0"),
    (["budget=100000000000000000000"], "budget=100000000000000000000; valid: an integer >= 1 (integers are at most"),
    (["budget=9223372036854775808"], "budget=9223372036854775808; valid: an integer >= 1 (integers are at most"),
    (["task.test_seed=9223372036854775808"], "task.test_seed=9223372036854775808; valid: an integer >= 0 and <= 998"),
    (["task=knights_knaves", "task.n_people=16"], "task knights_knaves with n_people=16 takes over 1 s to generate"),
    (["task=zebra", "task.num_people=7", "task.num_characteristics=7"],
     "task zebra with num_people=7, num_characteristics=7 takes over 1 s to generate one problem"),
    # issue 34: tracebacks, or errors only once a cell ran
    (["launcher.cell_timeout_s=1e10"], "launcher.cell_timeout_s=10000000000.0; valid: a number > 0 and <= 2592000"),
    ([f"sweep={'x' * 300}"], "has 300 characters; valid: at most 100"),
    (["sweep='a\nb'"], "sweep name 'a\\nb' must be a plain directory name"),
    (["budget=interval(1,5)"], "budget=interval(1,5): Hydra's interval and glob sweeps are not supported"),
    (["task=glob(*)"], "task=glob(*): Hydra's interval and glob sweeps are not supported"),
    (["hydra.run.dir=x"], "hydra.run.dir=...: sibench composes configs with Hydra's compose API, so hydra.* settings"),
    (["results_dir=/proc"], "cannot create the sweep directory /proc/existing_i23"),
    (["model=smollm2_135m_hf", "method=grpo", "+method.trl_args.learning_rate=abc"],
     "method.trl_args.learning_rate='abc'; valid: a number (TRL GRPOConfig)"),
    (["model=smollm2_135m_hf", "method=grpo", "method.trl_args={nope: 1}"],
     "method.trl_args.nope: not a TRL GRPOConfig argument"),
    (["model.boosts={check: abc}"], "could not be converted to Float"),
    (["launcher=ray", "launcher.address=127.0.0.1:1", "seed=5"],  # hung for 576 s; plan.json was written
     "no Ray cluster at launcher.address='127.0.0.1:1' (nothing answers within 30 s"),
    # damaged state
    (["launcher=_test_refuser", "seed=5"], "no cluster here"),
    pytest.param(["launcher=ray", "launcher.address=auto", "seed=5"], "no Ray cluster at launcher.address='auto'",
                 marks=pytest.mark.slow),  # ~10 s: Ray looks for a cluster
    (["results_dir="], "results_dir='' is empty (it would write into the repository root)"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_exits_2_with_one_line_and_changes_nothing(existing, capfd, monkeypatch, args, needle):
    import harness.runner.plan as plan
    import harness.sweep as sweep

    monkeypatch.delenv("SIBENCH_UNSET_I23", raising=False)
    monkeypatch.setattr(plan, "PROBLEM_LIMIT_S", 1.0)  # the generator guard, quickly
    before = snapshot(existing)
    capfd.readouterr()
    code = sweep.main(["model=mock", "logger=none", "method=zero_shot", f"results_dir={existing}", f"sweep={SWEEP}",
                       "budget=10", "task.test_size=10", *args])
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert code == 2
    assert len(err) == 1 and needle in err[0], err
    assert snapshot(existing) == before  # plan.json, summaries and cells untouched
    assert not (REPO / SWEEP).exists()


def _numeric(hint: typing.Any) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return len(args) == 1 and args[0] in (int, float)


def test_every_numeric_knob_declares_a_range():
    from harness.config.schema import CellConfig, Resources, Splits
    from harness.core.knobs import config_fields
    from harness.engine.evaluate import EvalConfig, Sampling

    classes = [CellConfig, Sampling, EvalConfig, Splits, Resources]
    classes += [cls for reg in [*REGISTRIES.values(), BACKENDS] for n in reg.names()
                if (cls := reg.get(n)).__module__.split(".")[0] in ("harness", "methods", "tasks")]  # not test-only
    missing = sorted({f"{cls.__module__}.{cls.__name__}.{f.name}" for cls in classes
                      for f, hint in config_fields(cls)
                      if _numeric(hint) and not set(f.metadata) & {"ge", "gt", "le", "lt"}})
    assert not missing, missing


def test_nan_and_out_of_int_range_are_refused_unless_declared():
    from harness.core.knobs import check_value, knob

    @dataclass
    class K:
        x: float = knob(0.0, "x", ge=0)
        y: float = knob(0.0, "y", ge=0, nonfinite=True)
        n: int = knob(0, "n", ge=0)

    f = {g.name: g for g in dataclasses.fields(K)}
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError, match="valid: a finite number >= 0"):
            check_value("x", bad, f["x"], float)
    check_value("y", math.inf, f["y"], float)
    check_value("y", math.nan, f["y"], float)
    with pytest.raises(ValueError, match="valid: a number >= 0"):
        check_value("y", -math.inf, f["y"], float)  # the range still holds
    with pytest.raises(ValueError, match="integers are at most 2147483647"):
        check_value("n", 2**31, f["n"], int)


# -- issue 34: silent gaps ------------------------------------------------------------------------------------------

def test_a_run_once_reference_is_tabled_under_every_learner_only_value(tmp_path):
    """zero_shot ran once and was filed under the first learn.temperature only (the learner's other
    rows had no Δ, no p, no comparison), and ran once per task.train_size though it never sees the
    training set."""
    from harness.results import load
    from harness.sweep import main

    assert main(["model=mock", "logger=none", "method=zero_shot,episodic_rag", "budget=8", "task.test_size=6",
                 "task.train_size=3,4", "learn.temperature=0.5,0.9", f"results_dir={tmp_path}", "sweep=k"]) == 0
    r = load("k", tmp_path)
    assert (r.final["method"] == "zero_shot").sum() == 1  # one cell for both sizes and both temperatures
    table = r.table()
    rag = table[table["method"] == "episodic_rag"]
    assert len(rag) == 4 and (rag["Δ vs zero_shot"].str.len() > 0).all() and (rag["p (Holm)"] != "").all()
    assert (table["method"] == "zero_shot").sum() == 1  # tabled once, compared everywhere
    assert len(r.comparisons) == 4


def test_verifier_timeouts_are_recorded_and_flagged(run_one, monkeypatch, tmp_path):
    """A verifier that runs out of time scored the answer 0 and the cell said "ok": now each row says
    so (`verify_timed_out`), the summary counts them and the table flags the row."""
    import time

    from tasks.math import MathTask

    monkeypatch.setattr(MathTask, "score", lambda self, parsed, problem: time.sleep(0.3) or 1.0)
    outcome, attempts, summary = run_one("method=zero_shot", "task.verify_timeout_s=0.1", "task.test_size=3",
                                         "eval.n_samples=1")
    assert outcome.status == "ok"
    scored = attempts[attempts["passed"].notna()]
    assert len(scored) and scored["verify_timed_out"].all() and not scored["passed"].any()
    assert summary["verify_timeouts"].iloc[-1] == len(scored[scored["phase"] == "eval"])
    from harness.results import load

    flags = load("sweep", tmp_path).table()["flags"].iloc[0]
    assert f"{len(scored)} answers not verified in time" in flags


def test_minus_zero_and_zero_are_one_cell(cell_config, tmp_path):
    from harness.engine.cell import CellSpec

    ids = {CellSpec(cell_config("method=episodic_rag", f"learn.temperature={v}"), tmp_path).cell_id
           for v in ("0", "0.0", "-0.0")}
    assert len(ids) == 1


@pytest.mark.parametrize("yaml_text, needle", [
    ("garbage: [", "not YAML"),
    ("", "the file must be a mapping with `scales` and `table`"),
    ("[1, 2]", "the file must be a mapping with `scales` and `table`"),
    ("scales: {s: {common: 'model=mock', blocks: {b: {grid: {task: [math]}, cells: [[]]}}}}\ntable: {block: b}",
     "s.common must be a list of overrides"),
    ("scales: {s: {blocks: {b: {grid: {task: math}, cells: [[]]}}}}\ntable: {block: b}",
     "s.b.grid must be a mapping of keys to lists of values"),
    ("scales: {s: {blocks: {b: {grid: {task: [math]}}}}}\ntable: {block: b}", "s.b.cells must be a list"),
    ("scales: {s: {blocks: {b: {grid: {task: [math]}, cells: [[]]}}}}", "`table` must be a mapping with a `block`"),
])
def test_a_malformed_paper_file_exits_2_in_one_line(tmp_path, capfd, yaml_text, needle):
    from harness.paper import main

    (tmp_path / "p.yaml").write_text(yaml_text)
    assert main(["run", str(tmp_path / "p.yaml"), "--scale", "s", "--results-dir", str(tmp_path / "r")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "r").exists()


def test_serve_refuses_a_bad_port_before_starting_an_engine(capfd):
    from harness.serve import main

    assert main(["model=mock", "--port", "-1"]) == 2
    assert capfd.readouterr().err.strip() == "sibench: error: --port -1; valid: 1-65535"


def test_calibrate_answers_help(capfd):
    from harness.calibrate import main

    assert main(["--help"]) == 0
    assert "usage: python -m harness.calibrate" in capfd.readouterr().out


class _Hostile:
    """An OpenAI-compatible endpoint whose replies must not be taken at their word."""

    @staticmethod
    def serve(reply):
        import json as _json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                code, body = reply(self.headers)
                data = _json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def _completion(content: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def _against(run_one, reply, *overrides: str):
    """One zero-shot cell (2 problems, 1 sample) against an endpoint answering with `reply(headers)`."""
    server = _Hostile.serve(reply)
    try:
        return run_one("model=openai_compatible", f"model.base_url=http://127.0.0.1:{server.server_port}/v1",
                       "model.max_retries=0", "method=zero_shot", "task.test_size=2", "eval.n_samples=1", *overrides)
    finally:
        server.shutdown()


def test_endpoint_usage_is_checked_and_max_tokens_enforced_on_our_side(run_one):
    """Negative usage counts were recorded ("-75 tok/s") and a 4 MB completion was stored with
    completion_tokens=3."""
    huge = "Answer: 4\n" + "x" * 4_000_000
    outcome, attempts, _ = _against(run_one, lambda headers: (200, _completion(huge, -75, 3)), "task.max_tokens=32")
    assert outcome.status == "ok", outcome.error
    assert (attempts["prompt_tokens"] > 0).all()  # recounted, not -75
    assert (attempts["completion"].str.len() <= 32 * 32).all() and (attempts["finish_reason"] == "length").all()
    assert (attempts["completion_tokens"] > 3).all() and (attempts["completion_tokens"] <= 32 * 32).all()


def test_an_endpoint_error_echoing_the_key_is_stored_redacted(run_one, monkeypatch, tmp_path):
    """A 401 body that echoed the bearer token was stored verbatim in status.json."""
    import json as _json

    monkeypatch.setenv("SIBENCH_TEST_KEY", "sk-verysecret0123456789")
    outcome, _, _ = _against(run_one, lambda headers: (401, {"error": {
        "message": f"Incorrect API key provided: {headers.get('Authorization')}", "type": "invalid_request_error"}}),
        "model.api_key_env=SIBENCH_TEST_KEY")
    assert outcome.status == "failed" and "[redacted]" in outcome.error
    stored = (next((tmp_path / "sweep" / "cells").iterdir()) / "status.json").read_text()
    assert "verysecret" not in stored and "verysecret" not in outcome.error
    assert "[redacted]" in _json.loads(stored)["traceback"]


def test_a_split_that_is_slow_to_draw_is_refused_at_plan_time(monkeypatch, capfd, tmp_path):
    """A 7x6 zebra gave its first problem in under a second, passing the first-problem guard, then
    planned silently for minutes drawing its split."""
    import time

    import harness.runner.plan as plan
    from harness.sweep import main
    from tasks.math import MathTask

    original = MathTask.problems
    monkeypatch.setattr(MathTask, "problems", lambda self, split, n, seed: time.sleep(0.1 * n) or
                        original(self, split, n, seed))
    monkeypatch.setattr(plan, "SPLIT_LIMIT_S", 1.0)
    monkeypatch.setattr(plan, "_splits_checked", {})
    assert main(["model=mock", "logger=none", "method=zero_shot", "task.test_size=10", "task.train_size=5",
                 f"results_dir={tmp_path}", "--dry-run"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "takes over 1 s to generate its split of 15 problems" in err[0], err
