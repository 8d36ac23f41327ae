"""Answer extraction shared by every task: the prompt asks for a final line `Answer: <answer>`.

Rules, applied the same way for every method:
1. Only the last `MAX_SCAN_CHARS` characters of a completion are scanned (the answer line is at
   the end; this bounds the cost of megabyte-long hostile completions).
2. The answer is the text after the *last* `Answer:` marker (case-insensitive) up to the end of
   its line, with surrounding whitespace, quotes, backticks, `**` bold markers and one trailing
   period removed. Tasks whose answer spans lines (Tower of Hanoi moves) take every non-empty
   line after the marker instead.
3. Without a marker, a task may supply a fallback (e.g. math takes the last number after `=` on
   the first line, the lenient rule behind the ≈32% SmolLM2 figure in the reference notes);
   otherwise the parse fails (parsed = None, reward 0).
The parsed answer is cut to `MAX_ANSWER_CHARS`. Model text is never executed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

MAX_SCAN_CHARS = 20_000
MAX_ANSWER_CHARS = 2_000
_MARKER = re.compile(r"answer\s*[:：]", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_PLAIN_NUMBER = re.compile(r"^[+-]?\d{1,30}(\.\d{1,30})?$")


def clean(answer: str) -> str:
    a = answer.strip().strip("`").strip()
    a = a.replace("**", "").strip()
    if len(a) >= 2 and a[0] == a[-1] and a[0] in "\"'":
        a = a[1:-1].strip()
    if a.endswith(".") and not a.endswith(".."):
        a = a[:-1].rstrip()
    return a[:MAX_ANSWER_CHARS]


def extract_answer(completion: str, fallback: Callable[[str], str | None] | None = None,
                   multiline: bool = False) -> str | None:
    """Parse the final answer; with `multiline`, every non-empty line after the marker belongs to it."""
    text = completion[-MAX_SCAN_CHARS:]
    matches = list(_MARKER.finditer(text))
    last = matches[-1] if matches else None
    if last is not None and multiline:
        lines = [clean(ln) for ln in text[last.end():].split("\n")]
        parsed = "\n".join(ln for ln in lines if ln)[:MAX_ANSWER_CHARS]
        return parsed or None
    if last is not None:
        line = text[last.end():].split("\n", 1)[0]
        if not line.strip():  # "Answer:\n7": take the next non-empty line
            rest = [ln for ln in text[last.end():].split("\n") if ln.strip()]
            line = rest[0] if rest else ""
        parsed = clean(line)
        return parsed or None
    return fallback(text) if fallback else None


def last_number_after_equals(text: str) -> str | None:
    """Math fallback: on the first non-empty line, the last number after '=' (else the last number)."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")[:MAX_ANSWER_CHARS]
    tail = first.rsplit("=", 1)[-1] if "=" in first else first
    nums = _NUMBER.findall(tail)
    return nums[-1] if nums else None


def canonical_number(text: str) -> str | None:
    """`7`, `7.0`, `+7` and `7,000`/`7000` style numbers in one canonical spelling; None if `text`
    is not a plain decimal number."""
    t = text.replace(",", "").replace(" ", "")
    if not _PLAIN_NUMBER.match(t):
        return None
    try:
        d = Decimal(t)
    except InvalidOperation:
        return None
    return str(int(d)) if d == d.to_integral_value() else format(d.normalize(), "f")
