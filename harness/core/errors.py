"""Errors every part raises: `UserError` is bad user input, printed as one line with exit code 2;
`redact` takes secrets and terminal codes out of an error text before it is stored or printed.
"""

from __future__ import annotations

import re


class UserError(ValueError):
    """Invalid user input: printed as one line, exit code 2."""


# a bearer token, an `sk-` key or an `api_key=` value echoed in an endpoint's error body; terminal colours
SECRETS = re.compile(r"(?i)(bearer\s+|api[_-]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=-]{6,}|\bsk-[A-Za-z0-9_-]{6,}")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def redact(text: str) -> str:
    """An error text fit to store (status.json) and print: secrets replaced by [redacted] (an
    endpoint's 401 body echoed the bearer token), terminal colour codes removed (Ray's errors)."""
    text = ANSI.sub("", text)
    return SECRETS.sub(lambda m: (m.group(1) or "") + "[redacted]", text)
