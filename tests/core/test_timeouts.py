"""harness/core/timeouts.py: a cell's time limit survives the verifier's limits inside it."""

from __future__ import annotations

import time

import pytest

from harness.runner.launchers import CellTimeout
from harness.runner.launchers import time_limit as cell_limit
from tasks.common.base import VerifierTimeout
from tasks.common.base import time_limit as verifier_limit


def test_a_verifier_limit_inside_a_cell_limit_leaves_the_cell_limit_armed():
    """Every verify call (task.verify_timeout_s, 2 s by default) set the one ITIMER_REAL to 0 on
    exit, so launcher.cell_timeout_s never fired after a cell's first verified answer."""
    start = time.monotonic()
    with pytest.raises(CellTimeout), cell_limit(0.5):
        with verifier_limit(2.0):
            pass  # a verified answer, well within its limit
        time.sleep(3)  # the cell runs on past its limit
    assert time.monotonic() - start < 1.5


def test_the_earlier_limit_fires_with_its_own_error():
    with pytest.raises(VerifierTimeout), cell_limit(5), verifier_limit(0.2):
        time.sleep(3)
    with pytest.raises(CellTimeout), cell_limit(0.2), verifier_limit(5):
        time.sleep(3)  # the cell's limit comes first: not reported as a verifier timeout
