"""GRPO seconds per optimizer step on the default model, per rollout engine (`make bench`).

    python bench/grpo_step.py [--steps 5] [--engines trainer,vllm]

Runs one `grpo` cell per engine through the sweep (math, default knobs: 2 prompts x G 4 = 8
rollouts a step, LoRA r16) with a budget of `steps` steps, and reads the per-step seconds the
trainer callback writes to `train_log.jsonl`. `trainer` generates with the model being trained
(transformers + PEFT); `vllm` with a vLLM engine serving the LoRA adapter, hot-swapped after every
step (on CPU, vLLM's LoRA kernels are slow: this bench shows by how much). The first step also
pays for warm-up, so the mean is over the later ones; engine start-up is printed apart.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(engine: str, steps: int, results: Path) -> tuple[list[float], float]:
    cmd = [sys.executable, "-m", "harness.sweep", "task=math", "method=grpo", f"budget={8 * steps}",
           f"method.rollout_engine={engine}", "task.test_size=4", "eval.n_samples=1", "eval.greedy=false",
           "checkpoints=[]", "logger=none", f"results_dir={results}", f"sweep={engine}"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{engine}: {r.stderr[-2000:]}")
    (cell,) = (results / engine / "cells").iterdir()
    log = [json.loads(line) for line in (cell / "train_log.jsonl").read_text().splitlines()]
    wall = json.loads((cell / "done.json").read_text())["wall_s"]
    return [row["step_seconds"] for row in log if "step_seconds" in row], wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--engines", default="trainer,vllm")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            try:
                seconds, wall = run(engine, args.steps, Path(tmp))
            except RuntimeError as exc:
                print(f"{engine}: failed\n{exc}")
                continue
            later = seconds[1:] or seconds
            rows.append((engine, len(seconds), seconds[0], sum(later) / len(later), wall))
            print(rows[-1], flush=True)
    base = next((r[3] for r in rows if r[0] == "trainer"), None)
    print("\n| rollout engine | steps | first step s | mean later step s | vs trainer | cell wall s |")
    print("|---|---|---|---|---|---|")
    for engine, n, first, mean, wall in rows:
        ratio = f"{mean / base:.2f}x" if base else "-"
        print(f"| {engine} | {n} | {first:.1f} | {mean:.1f} | {ratio} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
