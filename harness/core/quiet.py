"""Third-party output a sweep's progress should not carry (issue 20: a GRPO cell printed vLLM's
NUMA-binding, thread and weight-loading warnings and TRL's version warning between the cells'
progress lines). `quiet_libraries()` runs before any cell imports torch
(harness.runner.execute.run_locked, which every entry point goes through) and in each Ray worker;
each setting is a default a user overrides by setting the variable (e.g. `VLLM_LOGGING_LEVEL=WARNING`).

Silenced, and why nothing is lost:
- vLLM below ERROR: start-up notes (eager mode, Triton absent, chunked prefill off, which we turn
  off on purpose: harness/backends/vllm_offline.py), "cannot set_num_threads after thread
  binding" once per request batch, and the layer-wise reload's "Failed to load weights" for the
  rotary embedding (no weights) and the LM head (tied to the embedding it reloads); the
  LD_PRELOAD tcmalloc / iomp hint is the one actionable line, and the README's CPU section says it.
- torch's C++ warnings (`TORCH_CPP_LOG_LEVEL`): vLLM's NUMA memory binding on a one-node CPU.
- TRL's "supports vLLM 0.22-0.31" warning: we own the weight sync and do not call TRL's vLLM code
  (harness/backends/synced.py); the pair we run is pinned and tested.
- transformers' "process group initialized but parallel_mode != DISTRIBUTED": the group is the
  in-process vLLM engine's own one-rank group, not a distributed trainer.
- "Triton is installed, but doesn't include CPU backend": vLLM's CPU build runs without Triton.
- vLLM's FutureWarning about `torch.distributed.reduce_op` (its code, not ours).
- Hugging Face progress bars (`HF_HUB_DISABLE_PROGRESS_BARS`): transformers' per-tensor "Loading
  weights" bar for the embedder and the trainer, which load from local files in under a second;
  nothing is downloaded at run time.
- W&B's three-line suggestion to install Weave (`WANDB_DISABLE_WEAVE`), printed because dspy/gepa
  import `openai`: Weave traces LLM API calls; the harness logs its own rows and summaries.
Errors, our own warnings and every other library warning still print.
"""

from __future__ import annotations

import logging
import os
import warnings

QUIET_ENV = {"VLLM_LOGGING_LEVEL": "ERROR", "TORCH_CPP_LOG_LEVEL": "ERROR", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "WANDB_DISABLE_WEAVE": "true"}


QUIET_LOG_MESSAGES = {  # logger -> the start of the message dropped
    "transformers.training_args": "torch.distributed process group is initialized",
    # logged at vLLM's import, before its own logging (and VLLM_LOGGING_LEVEL) is set up
    "vllm.triton_utils.importing": "Triton is installed, but doesn't include CPU backend",
}


class _DropMessage(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def quiet_libraries() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore", message=r"TRL currently supports vLLM versions", category=UserWarning)
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.reduce_op` is deprecated", category=FutureWarning)
    for name, start in QUIET_LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.start == start for f in logger.filters):
            logger.addFilter(_DropMessage(start))
