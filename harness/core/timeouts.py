"""`raise_after`: a wall-clock limit on a block of the main thread (SIGALRM), that nests.

A cell's limit (`launcher.cell_timeout_s`, harness/runner/launchers.py) encloses every verifier call's
limit (`task.verify_timeout_s`, tasks/common/base.py), and both use the one ITIMER_REAL. An inner
limit that set the timer to 0 on exit cancelled the cell's for the rest of the cell; here the
inner block re-arms what is left of the outer limit on exit, and leaves it in place when the
outer one comes first.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def raise_after(seconds: float | None, error: Callable[[], BaseException]) -> Iterator[None]:
    """Raise `error()` in this block if it runs past `seconds` (no limit when `seconds` is falsy
    or <= 0, or off the main thread, where signals cannot be delivered)."""
    if not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise error()

    start = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expired)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    if outer and outer <= seconds:  # an enclosing limit expires first: it stays the one armed
        signal.signal(signal.SIGALRM, previous)
        signal.setitimer(signal.ITIMER_REAL, outer)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # what is left of the enclosing limit (at once if it passed meanwhile)
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-6))
