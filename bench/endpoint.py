"""The `openai` backend against a local vLLM server: one request at a time, `max_concurrency` in
flight, and a saturating client (`make bench`).

    python bench/endpoint.py [--n 48] [--samples 4] [--concurrency 1,32]

Starts the default model's vLLM OpenAI server on 127.0.0.1 (`harness.serve`), then runs the eval
workload (the harness's `evaluate()` on `n` math test problems: one request with n=`samples` and
one greedy request per problem) through `OpenAIBackend` at each concurrency, and the same
requests from a saturating client (every request sent at once with `AsyncOpenAI`). Prints
completion tokens/s per client and each as a share of the saturating client's throughput
(target: the backend at its default concurrency >= 90%).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def through_backend(server, task, test, samples: int, concurrency: int) -> tuple[float, int]:
    from harness.backends.openai_api import OpenAIBackend
    from harness.engine.evaluate import EvalConfig, evaluate
    from harness.engine.method import PromptOnly

    backend = OpenAIBackend(model=server.served_name, base_url=server.base_url, max_concurrency=concurrency)
    cfg = EvalConfig(n_samples=samples, max_tokens=task.max_tokens, batch_problems=len(test))
    t = time.perf_counter()
    rows = evaluate(task, PromptOnly(task, backend), test, cfg, checkpoint=0)
    return time.perf_counter() - t, sum(r.completion_tokens for r in rows)


def saturating(server, task, test, samples: int) -> tuple[float, int]:
    """The same requests, all in flight at once (what a tuned async client does)."""
    from openai import AsyncOpenAI

    async def run() -> int:
        client = AsyncOpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0, timeout=600)
        calls = [client.chat.completions.create(model=server.served_name, messages=task.prompt(p), n=n,
                                                temperature=temp, top_p=top_p, max_tokens=task.max_tokens, seed=0)
                 for p in test for n, temp, top_p in ((samples, 0.7, 0.95), (1, 0.0, 1.0))]
        replies = await asyncio.gather(*calls)
        await client.close()
        return sum(r.usage.completion_tokens for r in replies)

    t = time.perf_counter()
    tokens = asyncio.run(run())
    return time.perf_counter() - t, tokens


def main() -> int:
    from harness.config.compose import compose, to_dict
    from harness.engine.cell import build_task
    from harness.serve import local_server

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--concurrency", default="1,32")
    args = ap.parse_args()
    cfg = to_dict(compose(["model=smollm2_135m", "task=math"]))
    task = build_task(cfg)
    test = task.problems("test", args.n, 0)
    t = time.perf_counter()
    with local_server(cfg["model"]) as server:
        print(f"server up in {time.perf_counter() - t:.1f} s", flush=True)
        saturating(server, task, test[:4], args.samples)  # warm-up
        results = [(f"saturating client ({len(test) * 2} requests at once)", *saturating(server, task, test,
                                                                                           args.samples))]
        for c in (int(x) for x in args.concurrency.split(",")):
            results.append((f"OpenAIBackend max_concurrency={c}", *through_backend(server, task, test,
                                                                                   args.samples, c)))
            print(results[-1], flush=True)
    best = results[0][2] / results[0][1]
    print(f"\nendpoint workload: {args.n} math problems x ({args.samples} samples in one request + 1 greedy)")
    print("| client | wall s | completion tok | tok/s | share of saturating |")
    print("|---|---|---|---|---|")
    for name, wall, tokens in results:
        print(f"| {name} | {wall:.1f} | {tokens} | {tokens / wall:.0f} | {tokens / wall / best:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
