"""GRPO seconds per optimizer step on the default model, per generating engine (`make bench`).

    python bench/grpo_step.py [--steps 5] [--models smollm2_135m_hf,smollm2_135m]

Runs one `grpo` cell per model entry through the sweep (math, default knobs: 2 prompts x G 4 = 8
rollouts a step, LoRA r16) with a budget of `steps` steps, and reads the per-step seconds the
trainer callback writes to `train_log.jsonl`, and the cell's eval seconds from its summary.
`smollm2_135m_hf` generates with the model being trained (transformers + PEFT, round 2's path);
`smollm2_135m` (the default) trains the same weights in transformers and generates on the vLLM
engine, into which the weights are synced after every step (harness/backends/synced.py). The
first step also pays for warm-up, so the mean is over the later ones.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(model: str, steps: int, test_size: int, results: Path) -> tuple[list[float], float, float, str]:
    """(per-step seconds, cell wall s, eval s, engine) of one grpo cell."""
    import pandas as pd

    cmd = [sys.executable, "-m", "harness.sweep", "task=math", "method=grpo", f"budget={8 * steps}",
           f"model={model}", f"task.test_size={test_size}", "eval.n_samples=4", "checkpoints=[]", "logger=none",
           f"results_dir={results}", f"sweep={model}"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{model}: {r.stderr[-2000:]}")
    (cell,) = (results / model / "cells").iterdir()
    log = [json.loads(line) for line in (cell / "train_log.jsonl").read_text().splitlines()]
    summary = pd.read_parquet(cell / "summary.parquet").iloc[-1]
    return ([row["step_seconds"] for row in log if "step_seconds" in row], float(summary.wall_s),
            float(summary.eval_s), str(summary.engine))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--models", default="smollm2_135m_hf,smollm2_135m")
    ap.add_argument("--test-size", type=int, default=50, help="test problems of the trained policy's evaluation")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            try:
                seconds, wall, eval_s, engine = run(model, args.steps, args.test_size, Path(tmp))
            except RuntimeError as exc:
                print(f"{model}: failed\n{exc}")
                continue
            later = seconds[1:] or seconds
            rows.append((model, engine, len(seconds), seconds[0], sum(later) / len(later), eval_s, wall))
            print(rows[-1], flush=True)
    base = rows[0][4] if rows else None
    print(f"\n| model | engine | steps | first step s | mean later step s | vs {rows[0][0] if rows else '-'} | "
          f"eval s ({args.test_size} problems x 5) | cell wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for model, engine, n, first, mean, eval_s, wall in rows:
        ratio = f"{mean / base:.2f}x" if base else "-"
        print(f"| {model} | {engine} | {n} | {first:.1f} | {mean:.1f} | {ratio} | {eval_s:.0f} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
