"""Generation throughput standalone vs inside a zero_shot cell, and harness overhead.

    python bench/throughput.py [--model smollm2_135m] [--task math] [--n 32] [--samples 4]

Standalone: the backend generates the eval requests of `n` test problems directly, in the same
batches the evaluator uses. In-cell: a zero_shot cell evaluates the same problems with the same
sampling parameters through the whole harness (task, splits, verification, records, parquet).
Prints completion tokens/s for both, their ratio, and the harness overhead as a share of cell
wall time (cell wall time minus time spent inside backend.generate). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.backends import make_backend
from harness.config.compose import compose, to_dict
from harness.core.types import GenerationRequest, SamplingParams
from harness.engine.cell import CellSpec, build_task, run_cell


class TimedBackend:
    """Proxy that accumulates wall time spent inside generate()."""

    def __init__(self, inner):
        self.inner, self.gen_s, self.tokens = inner, 0.0, 0
        self.name = inner.name

    def generate(self, requests):
        t = time.perf_counter()
        out = self.inner.generate(requests)
        self.gen_s += time.perf_counter() - t
        self.tokens += sum(g.completion_tokens for gens in out for g in gens)
        return out

    def count_tokens(self, messages):
        return self.inner.count_tokens(messages)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2_135m")
    ap.add_argument("--task", default="math")
    ap.add_argument("--n", type=int, default=32, help="test problems")
    ap.add_argument("--samples", type=int, default=4, help="samples per problem")
    args = ap.parse_args()
    overrides = [f"model={args.model}", f"task={args.task}", "method=zero_shot", "logger=none",
                 f"task.test_size={args.n}", f"eval.n_samples={args.samples}", "eval.greedy=false",
                 "checkpoints=[]", "budget=1", "code_version_in_id=false"]
    cfg = to_dict(compose(overrides))
    t = time.perf_counter()
    backend = make_backend(cfg["model"])
    print(f"model load: {time.perf_counter() - t:.1f}s")

    task = build_task(cfg)
    test = task.problems("test", args.n, cfg["task"]["test_seed"])
    max_tokens = cfg["eval"]["max_tokens"] or task.describe()["max_tokens"]
    params = SamplingParams(n=args.samples, temperature=cfg["eval"]["temperature"], top_p=cfg["eval"]["top_p"],
                            max_tokens=max_tokens, seed=cfg["eval"]["seed"])
    step = cfg["eval"]["batch_problems"]
    t = time.perf_counter()
    tokens = 0
    for i in range(0, len(test), step):
        reqs = [GenerationRequest(tuple(task.prompt(p)), params, oracle_answer=p.answer) for p in test[i:i + step]]
        tokens += sum(g.completion_tokens for gens in backend.generate(reqs) for g in gens)
    standalone_s = time.perf_counter() - t
    standalone_tps = tokens / standalone_s

    timed = TimedBackend(backend)
    with tempfile.TemporaryDirectory() as tmp:
        spec = CellSpec(cfg, Path(tmp) / "bench")
        t = time.perf_counter()
        outcome = run_cell(spec, lambda _: timed)
        cell_s = time.perf_counter() - t
    assert outcome.status == "ok", outcome.error
    cell_tps = timed.tokens / cell_s
    overhead = (cell_s - timed.gen_s) / cell_s
    print(f"task={args.task} problems={args.n} samples={args.samples} model={args.model}")
    print(f"standalone : {tokens} completion tokens in {standalone_s:.2f}s = {standalone_tps:.1f} tok/s")
    print(f"in-cell    : {timed.tokens} completion tokens in {cell_s:.2f}s = {cell_tps:.1f} tok/s "
          f"(generate {timed.gen_s:.2f}s)")
    print(f"ratio in-cell/standalone tok/s: {cell_tps / standalone_tps:.3f}")
    print(f"harness overhead: {100 * overhead:.1f}% of cell wall time ({cell_s - timed.gen_s:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
