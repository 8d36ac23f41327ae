"""Verifier fuzz: hostile completions never raise, never execute, never pass by accident."""

from __future__ import annotations

import random
import string
from pathlib import Path

import pytest

from harness.core.registry import TASKS

ALL_TASKS = ["math", "countdown", "knights_knaves", "hanoi", "zebra", "mathgap", "matchstick", "function_calling"]
SENTINEL = Path("/tmp/sibench_fuzz_pwned")


def hostile_strings(rng: random.Random) -> list[str]:
    payloads = [
        f"__import__('os').system('touch {SENTINEL}')",
        f"exec(\"open('{SENTINEL}','w').write('x')\")",
        "9**9**9", "9**9**9**9", "(9**9)**(9**9)", "10**10**10", "2**(2**(2**(2**32)))",
        "1/0", "0/0", "1 // 0", "(" * 5000 + "1" + ")" * 5000, "(" * 100_000, "-" * 50_000 + "1",
        "lambda: 1", "[x for x in ().__class__.__bases__[0].__subclasses__()]",
        "\x00\x01\x02", "\udcff", "💥" * 1000, "\u202e" + "7", "NaN", "inf", "-inf", "1e999999",
        "Answer:", "Answer: ", "Answer:" * 10_000, "answer: " + "9" * 100_000,
        "Answer: " + "(" * 10_000, "Answer: 1 +", "Answer: Move disk 99 from Peg 9 to Peg 0",
        "Answer: Move disk 1 from Peg 1 to Peg 1\n" * 5000, "Answer: is a is a and and",
        "Answer: {{7}}", "Answer: ${jndi:ldap://x}", "Answer: '; DROP TABLE results; --",
        "A" * 1_000_000, "Answer: " + "x" * 1_000_000, "\n" * 100_000 + "Answer: 5",
    ]
    out = list(payloads) + [f"Answer: {p}" for p in payloads[:20]]
    alphabet = string.printable + "×÷√π∞Ω"
    while len(out) < 1100:
        n = rng.choice([1, 5, 40, 300, 5000])
        junk = "".join(rng.choice(alphabet) for _ in range(n))
        out.append(rng.choice(["", "Answer: ", "answer:", "= "]) + junk)
    return out


@pytest.mark.parametrize("name", ALL_TASKS)
def test_hostile_completions_score_zero_without_side_effects(name):
    SENTINEL.unlink(missing_ok=True)
    task = TASKS.get(name)()
    problems = task.problems("test", 3, 0)
    strings = hostile_strings(random.Random(name))
    assert len(strings) >= 1000
    for i, s in enumerate(strings):
        p = problems[i % len(problems)]
        v = task.verify(p, s, truncated=bool(i % 2))
        assert isinstance(v.reward, float) and 0.0 <= v.reward <= 1.0
        assert v.passed == (v.reward == 1.0)
        if p.answer not in s:  # a string that does not contain the answer cannot be right
            assert not v.passed, (name, s[:80])
        assert v.truncated == bool(i % 2)
        assert v.parsed is None or len(v.parsed) <= 2000
    assert not SENTINEL.exists(), "a completion was executed"
