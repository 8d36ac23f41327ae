"""Math answer equivalence with `math-verify`, run in a worker process under a wall-clock limit.

math-verify bounds its own work with signal-based timeouts, which only work in a main thread,
and sympy can hang on hostile input; so every check runs in a single-process pool, and a check
that exceeds `timeout_s` kills that process (a new one starts on the next call) and counts as
wrong.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
from collections.abc import Callable

_POOL: cf.ProcessPoolExecutor | None = None


def _check(gold: str, answer: str) -> bool:
    from math_verify import parse, verify

    def parsed(text: str):
        has_math = any(c in text for c in "$\\")
        return parse(text if has_math else f"${text}$")

    return bool(verify(parsed(gold), parsed(answer)))


def _pool() -> cf.ProcessPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = cf.ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    return _POOL


def _kill_pool() -> None:
    global _POOL
    if _POOL is not None:
        for proc in list(getattr(_POOL, "_processes", {}).values()):
            proc.kill()
        _POOL.shutdown(wait=False, cancel_futures=True)
        _POOL = None


def math_equal(gold: str, answer: str, timeout_s: float = 5.0, check: Callable[[str, str], bool] = _check) -> bool:
    """True if `answer` is mathematically equal to `gold` per math-verify (`check`, a picklable
    module-level function); False on timeout or error."""
    if len(answer) > 1_000:
        return False
    future = _pool().submit(check, gold, answer)
    try:
        return future.result(timeout=timeout_s)
    except cf.TimeoutError:
        _kill_pool()
        return False
    except Exception:  # a crashed worker or a math-verify error: wrong, never a crash
        _kill_pool()
        return False
