"""harness/core/quiet.py: the third-party lines a sweep's progress no longer carries, and what still shows."""

from __future__ import annotations

import logging
import os
import warnings

from harness.core.quiet import quiet_libraries


def test_library_log_levels_are_defaults_a_user_overrides(monkeypatch):
    monkeypatch.delenv("TORCH_CPP_LOG_LEVEL", raising=False)
    monkeypatch.delenv("WANDB_DISABLE_WEAVE", raising=False)
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "INFO")
    quiet_libraries()
    assert os.environ["VLLM_LOGGING_LEVEL"] == "INFO"  # the user's setting stands
    assert os.environ["TORCH_CPP_LOG_LEVEL"] == "ERROR"  # vLLM's NUMA-binding warning on CPU
    assert os.environ["WANDB_DISABLE_WEAVE"] == "true"  # W&B's suggestion to install Weave


def test_only_the_named_warnings_are_dropped(caplog):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_libraries()
        warnings.warn("TRL currently supports vLLM versions from 0.22.0 to 0.31.0. You have version 0.32.0",
                      UserWarning, stacklevel=1)
        warnings.warn("`torch.distributed.reduce_op` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("a warning a user can act on", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["a warning a user can act on"]
    quiet_libraries()  # twice: still one filter
    log = logging.getLogger("transformers.training_args")
    assert len(log.filters) == 1  # twice: one filter
    with caplog.at_level(logging.WARNING, logger="transformers.training_args"):
        log.warning("torch.distributed process group is initialized, but parallel_mode != ParallelMode.DISTRIBUTED.")
        log.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]


def test_transformers_loading_bars_are_off_unless_the_user_turns_them_on():
    import subprocess
    import sys

    probe = ("from harness.core.quiet import quiet_libraries; quiet_libraries(); "
             "from transformers.utils import logging; print(logging.is_progress_bar_enabled())")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    for setting, shown in ((None, "False"), ("0", "True")):
        run_env = env if setting is None else {**env, "HF_HUB_DISABLE_PROGRESS_BARS": setting}
        out = subprocess.run([sys.executable, "-c", probe], env=run_env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == shown
