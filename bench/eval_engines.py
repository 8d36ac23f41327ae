"""The eval workload through each engine, against a physical-limit estimate (`make bench`).

    python bench/eval_engines.py [--n 100] [--samples 4] [--modes hf,vllm,lora,merged] [--set OVERRIDE]

Workload: the harness's own `evaluate()` on `n` math test problems, `samples` samples each plus
one greedy (n x (samples + 1) generations), zero-shot prompts. Modes, each in its own process, one
after another (two generating processes on 2 cores run 5-17x slower):
- hf: transformers fp32 (the `smollm2_135m_hf` entry);
- vllm: vLLM (the default `smollm2_135m` entry), engine start-up timed apart;
- lora / merged: transformers with a rank-16 LoRA adapter on every linear layer (a trained
  policy) left unmerged, and merged into the weights as the training methods now do.
Physical limit: 2 x parameters FLOPs per token over the unique prompt tokens (a prefix is computed
once per problem) plus every generated token, divided by this machine's measured fp32 matmul
rate. Prints one row per mode: wall s, generated tokens/s, wall / limit, speed-up over hf.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def matmul_flops() -> float:
    """Measured fp32 matmul FLOP/s with torch's own thread setting (2 cores here)."""
    import torch

    torch.set_num_threads(2)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    reps, t = 20, time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * 1024**3 * reps / (time.perf_counter() - t)


def weights_numel(model_cfg: dict) -> int:
    """Parameter count read off the safetensors the vLLM engine loaded (it hides its torch model)."""
    from safetensors import safe_open

    from harness.backends.hf import dequantized_copy

    total = 0
    for path in dequantized_copy(model_cfg["gguf_package"], model_cfg["gguf_file"]).glob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                total += math.prod(f.get_slice(name).get_shape())
    return total


def run_mode(mode: str, n: int, samples: int, overrides: list[str]) -> dict:
    from harness.backends import make_backend
    from harness.config.compose import compose, to_dict
    from harness.engine.cell import build_task
    from harness.engine.evaluate import EvalConfig, evaluate
    from harness.engine.method import PromptOnly

    model = "smollm2_135m" if mode == "vllm" else "smollm2_135m_hf"
    cfg = to_dict(compose([f"model={model}", "task=math", *overrides]))
    t = time.perf_counter()
    backend = make_backend(cfg["model"])
    load_s = time.perf_counter() - t
    if mode in ("lora", "merged"):
        from peft import LoraConfig, get_peft_model

        wrapped = get_peft_model(backend.model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                           task_type="CAUSAL_LM"))
        backend.model = wrapped.merge_and_unload() if mode == "merged" else wrapped
        backend.model.eval()
    task = build_task(cfg)
    test = task.problems("test", n, 0)
    ecfg = EvalConfig(n_samples=samples, max_tokens=task.max_tokens, batch_problems=n)
    t = time.perf_counter()
    rows = evaluate(task, PromptOnly(task, backend), test, ecfg, checkpoint=0)
    wall = time.perf_counter() - t
    unique_prompt = sum(r.prompt_tokens for r in rows if r.tag == "greedy")  # one per problem
    generated = sum(r.completion_tokens for r in rows)
    params = (sum(p.numel() for p in backend.model.parameters()) if hasattr(backend, "model")
              else weights_numel(cfg["model"]))
    return {"mode": mode, "load_s": load_s, "wall_s": wall, "generated": generated,
            "unique_prompt_tokens": unique_prompt, "params": params,
            "pass": sum(bool(r.passed) for r in rows if r.tag == "sample") / (n * samples)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--modes", default="hf,vllm,lora,merged")
    ap.add_argument("--set", action="append", default=[], metavar="OVERRIDE",
                    help="config override for every mode, e.g. --set model.dtype=bfloat16 --modes vllm")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_mode(args.one, args.n, args.samples, args.set)), flush=True)
        return 0
    flops = matmul_flops()
    print(f"fp32 matmul rate: {flops / 1e9:.1f} GFLOP/s")
    results = []
    for mode in args.modes.split(","):
        r = subprocess.run([sys.executable, __file__, "--one", mode, "--n", str(args.n), "--samples",
                            str(args.samples), *(f"--set={o}" for o in args.set)], check=False, cwd=REPO,
                           capture_output=True, text=True)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{mode}: failed\n{r.stderr[-1500:]}")
            continue
        results.append(json.loads(line[7:]))
        print(line, flush=True)
    base = next((r["wall_s"] for r in results if r["mode"] == "hf"), None)
    print(f"\neval workload: {args.n} math problems x ({args.samples} samples + 1 greedy)")
    print("| mode | load s | eval wall s | generated tok | tok/s | limit s | wall / limit | speed-up vs hf | Pass@1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        limit = 2 * r["params"] * (r["unique_prompt_tokens"] + r["generated"]) / flops
        speed = f"{base / r['wall_s']:.2f}x" if base else "-"
        print(f"| {r['mode']} | {r['load_s']:.1f} | {r['wall_s']:.1f} | {r['generated']} | "
              f"{r['generated'] / r['wall_s']:.0f} | {limit:.1f} | {r['wall_s'] / limit:.1f}x | {speed} | "
              f"{r['pass']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
