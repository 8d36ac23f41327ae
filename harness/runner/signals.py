"""Ctrl-C and SIGTERM (preemption) handled the same way by every entry point: one line, exit 130 or
143, and a process exit that does not wait on libraries' atexit hooks (`exit_process`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, NoReturn

_sigterm: list[bool] = []  # set once SIGTERM arrived: Ray's waits re-raise any interrupt as a plain KeyboardInterrupt


INTERRUPTED = "sibench: interrupted; re-run the same command to resume"


TERMINATED = "sibench: terminated (SIGTERM); re-run the same command to resume"


class Preempted(KeyboardInterrupt):
    """SIGTERM (what SLURM and Kubernetes send on preemption), raised where Ctrl-C would be, so
    it takes the same path: running cells are marked `interrupted` and a re-run resumes them."""


def on_sigterm(signum: int, frame: Any) -> None:
    _sigterm.append(True)
    raise Preempted()


def handle_sigterm() -> None:
    """Every entry point (sweep, run, paper, calibrate, serve) calls this first: SIGTERM then takes
    Ctrl-C's path (`Preempted`), so clean-up runs and the exit is 143 with one line."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_sigterm)


def stopped(code: int) -> bool:
    """An exit status after which a multi-step command stops: refused (2), Ctrl-C (130), SIGTERM (143)."""
    return code in (2, 130, 143)


def interrupted(exc: BaseException | None = None) -> int:
    """Report Ctrl-C (exit 130) or SIGTERM (exit 143) once; further signals during clean-up are ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    term = isinstance(exc, Preempted) or bool(_sigterm)
    print(TERMINATED if term else INTERRUPTED, file=sys.stderr, flush=True)
    return 143 if term else 130


def exit_process(code: int) -> NoReturn:
    """`sys.exit(code)` for the entry points. After a handled Ctrl-C (130) or SIGTERM (143), CPython 3.11 still ends
    the process *by SIGINT* (status -2) when the interrupt landed inside exec'd code (e.g. a
    dataclass being built), because it marks the interrupt unhandled there; so exit explicitly,
    after the atexit clean-up the interpreter would have run (and without waiting for threads still
    blocked on an endpoint that the interrupted cell abandoned)."""
    if code in (130, 143):
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
