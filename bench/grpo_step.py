"""GRPO seconds per optimizer step on the default model, per generating engine and per method (`make bench`).

    python bench/grpo_step.py [--steps 5] [--models smollm2_135m_hf,smollm2_135m] [--methods grpo,rrr]

Runs one `grpo` cell per model entry through the sweep (math, default knobs: 2 prompts x G 4 = 8
rollouts a step, LoRA r16) with a budget of `steps` steps, and reads the per-step seconds the
trainer callback writes to `train_log.jsonl`, and the cell's eval seconds from its summary.
`smollm2_135m_hf` generates with the model being trained (transformers + PEFT, round 2's path);
`smollm2_135m` (the default) trains the same weights in transformers and generates on the vLLM
engine, into which the weights are synced after every step (harness/backends/synced.py). The
first step also pays for warm-up, so the mean is over the later ones.
`--methods grpo,rrr` runs each policy-gradient method with the same counted rollouts per step (8)
and prints each step's time against the first method's (issue 31: an RRR step within 2x a GRPO
step); RRR's budget adds its failure set (`failure_samples` x train_size first attempts).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


FIXED_ROLLOUTS = {"rrr": 4 * 10}  # rollouts spent before training: RRR's failure set (4 per problem x 10)


def run(model: str, method: str, steps: int, test_size: int, results: Path) -> tuple[list[float], float, float, str]:
    """(per-step seconds, cell wall s, eval s, engine) of one policy-gradient cell."""
    import pandas as pd

    budget = FIXED_ROLLOUTS.get(method, 0) + 8 * steps
    sweep = f"{model}-{method}"
    cmd = [sys.executable, "-m", "harness.sweep", "task=math", f"method={method}", f"budget={budget}",
           f"model={model}", f"task.test_size={test_size}", "eval.n_samples=4", "checkpoints=[]", "logger=none",
           f"results_dir={results}", f"sweep={sweep}"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{sweep}: {r.stderr[-2000:]}")
    (cell,) = (results / sweep / "cells").iterdir()
    log = [json.loads(line) for line in (cell / "train_log.jsonl").read_text().splitlines()]
    summary = pd.read_parquet(cell / "summary.parquet").iloc[-1]
    return ([row["step_seconds"] for row in log if "step_seconds" in row], float(summary.wall_s),
            float(summary.eval_s), str(summary.engine))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--models", default="smollm2_135m_hf,smollm2_135m")
    ap.add_argument("--methods", default="grpo", help="policy-gradient methods, each at 8 counted rollouts a step")
    ap.add_argument("--test-size", type=int, default=50, help="test problems of the trained policy's evaluation")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for method in args.methods.split(","):
                try:
                    seconds, wall, eval_s, engine = run(model, method, args.steps, args.test_size, Path(tmp))
                except RuntimeError as exc:
                    print(f"{model} {method}: failed\n{exc}")
                    continue
                later = seconds[1:] or seconds
                rows.append((model, method, engine, len(seconds), seconds[0], sum(later) / len(later), eval_s, wall))
                print(rows[-1], flush=True)
    base = rows[0][5] if rows else None
    first = f"{rows[0][0]} {rows[0][1]}" if rows else "-"
    print(f"\n| model | method | engine | steps | first step s | mean later step s | vs {first} | "
          f"eval s ({args.test_size} problems x 4) | cell wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, method, engine, n, first_s, mean, eval_s, wall in rows:
        ratio = f"{mean / base:.2f}x" if base else "-"
        print(f"| {model} | {method} | {engine} | {n} | {first_s:.1f} | {mean:.1f} | {ratio} | {eval_s:.0f} "
              f"| {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
