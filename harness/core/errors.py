"""Errors every part raises: `UserError` is bad user input, printed as one line with exit code 2.
"""

from __future__ import annotations


class UserError(ValueError):
    """Invalid user input: printed as one line, exit code 2."""
