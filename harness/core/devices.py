"""GPUs: which ones a cell's process sees, which of them each of its models uses, and the dtype.

Every CUDA probe of the harness goes through `cuda_available`, which first sets
`PYTORCH_NVML_BASED_CUDA_CHECK=1`: the default probe (`cudaGetDeviceCount`) initialises the CUDA
driver, and a vLLM engine forked after it dies with "Cannot re-initialize CUDA in forked
subprocess". A cell sees the GPUs its models reserve (`model.resources.num_gpus` plus the aux
model's): the launcher narrows `CUDA_VISIBLE_DEVICES` before CUDA starts (`narrow_visible`), the
policy model takes the first `ceil(num_gpus)` of them and the aux model the next (`model_gpus`),
in a process of its own that sees only those (`placed`), so two models never land on the same
`cuda:0`. A plan-time check (`check_reservation`) refuses a
vLLM model whose tensor parallelism does not match its reservation and co-resident vLLM engines
that claim more than the whole GPU; the launchers free a cached engine before a training cell.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


VISIBLE = "CUDA_VISIBLE_DEVICES"


GPU_BACKENDS = ("hf", "vllm")  # backends that place weights on GPUs (they take a `gpus` knob)


def probe_without_cuda_init() -> None:
    """Make torch's CUDA probes use NVML, which leaves the driver uninitialised (fork stays safe)."""
    os.environ.setdefault(NVML_CHECK, "1")


def cuda_available() -> bool:
    probe_without_cuda_init()
    import torch

    return bool(torch.cuda.is_available())


def visible_count() -> int:
    """GPUs this process can use (0 without CUDA), without initialising CUDA."""
    if not cuda_available():
        return 0
    import torch

    return int(torch.cuda.device_count())


def reserved(model_cfg: dict[str, Any] | None) -> int:
    """Whole GPUs a model's reservation spans (a fractional Ray share still sits on one GPU)."""
    if not model_cfg:
        return 0
    return math.ceil(float((model_cfg.get("resources") or {}).get("num_gpus", 0) or 0))


def cell_gpus(config: dict[str, Any]) -> int:
    """GPUs one cell reserves: its model's plus its aux model's (each on GPUs of its own)."""
    return reserved(config.get("model")) + reserved(config.get("aux_model"))


def model_gpus(config: dict[str, Any]) -> dict[str, list[int] | None]:
    """Which visible GPU indices each model of a cell uses: the policy the first ones, the aux model
    the next; None = the model reserves no GPU (the backend takes GPU 0 if it sees one, else the CPU)."""
    out: dict[str, list[int] | None] = {}
    first = 0
    for key in ("model", "aux_model"):
        n = reserved(config.get(key))
        out[key] = list(range(first, first + n)) if n else None
        first += n
    return out


def with_gpus(model_cfg: dict[str, Any], gpus: list[int] | None) -> dict[str, Any]:
    """The model config a backend is built from, with the GPUs the harness gives it (unless set)."""
    if model_cfg.get("backend") not in GPU_BACKENDS or model_cfg.get("gpus") is not None or gpus is None:
        return model_cfg
    return {**model_cfg, "gpus": list(gpus)}


def placed(config: dict[str, Any], key: str) -> dict[str, Any]:
    """A cell's model config (`key`: model or aux_model) as its backend is built: with the GPUs the
    cell gives it; an aux model on GPUs of its own also in a process of its own, whose
    CUDA_VISIBLE_DEVICES lists them (`own_process`, harness/backends/own_process.py): inside the
    cell's process the policy's engine already fixed which GPUs CUDA and vLLM see."""
    gpus = model_gpus(config)[key]
    cfg = with_gpus(config[key], gpus)
    chosen = config[key].get("gpus") is not None  # the user placed it: left as they wrote it
    ids = _visible_ids() if key == "aux_model" and gpus and not chosen else []
    if gpus and len(ids) > max(gpus):
        cfg = {**cfg, "own_process": [ids[i] for i in gpus]}
    return cfg


def nvidia_driver() -> bool:
    import shutil

    return os.path.exists("/proc/driver/nvidia") or shutil.which("nvidia-smi") is not None


def _visible_ids() -> list[str]:
    current = os.environ.get(VISIBLE)
    if current is not None:
        return [d for d in current.split(",") if d.strip()]
    return [str(i) for i in range(visible_count())]


def narrow_visible(n: int) -> str | None:
    """Let this process see only the first `n` of the GPUs it sees now (before CUDA starts: after,
    the change would have no effect, and None is returned). Returns the new CUDA_VISIBLE_DEVICES."""
    if os.environ.get(VISIBLE) is None and not nvidia_driver():
        return None  # no GPU here (and no torch import for a CPU-only sweep)
    probe_without_cuda_init()
    import torch

    if torch.cuda.is_initialized():
        return None
    ids = _visible_ids()
    if os.environ.get(VISIBLE) is None and not ids:  # no GPU here: nothing to narrow
        return None
    if len(ids) <= n and os.environ.get(VISIBLE) is not None:
        return os.environ[VISIBLE]
    os.environ[VISIBLE] = ",".join(ids[:n])
    return os.environ[VISIBLE]


@contextmanager
def visible_slice(gpus: list[int] | None) -> Iterator[None]:
    """CUDA_VISIBLE_DEVICES narrowed to `gpus` (indices into what this process sees) for the
    duration: a vLLM engine started inside runs its workers on exactly those GPUs."""
    if not gpus:
        yield
        return
    ids = _visible_ids()
    with visible_set(",".join(ids[i] for i in gpus)):
        yield


@contextmanager
def visible_set(value: str) -> Iterator[None]:
    """CUDA_VISIBLE_DEVICES = `value` for the duration, the previous value (or its absence) after."""
    before = os.environ.get(VISIBLE)
    os.environ[VISIBLE] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(VISIBLE, None)
        else:
            os.environ[VISIBLE] = before


def auto_dtype(cuda: bool, bf16: bool) -> str:
    """`dtype: auto`: float32 on the CPU, bfloat16 on a GPU that supports it (Ampere and later),
    float16 on one that does not (V100, T4)."""
    return "float32" if not cuda else "bfloat16" if bf16 else "float16"


def bf16_supported() -> bool:
    import torch

    return bool(cuda_available() and torch.cuda.is_bf16_supported())


def check_reservation(model_cfg: dict[str, Any], key: str = "model") -> None:
    """Plan-time: a vLLM model's tensor parallelism spans exactly the GPUs it reserves (more GPUs than
    reserved would run on GPUs another cell holds; fewer leaves reserved GPUs idle)."""
    if model_cfg.get("backend") != "vllm":
        return
    tp, n = int(model_cfg.get("tensor_parallel_size", 1) or 1), reserved(model_cfg)
    if (tp > 1 or n > 1) and tp != n:
        asked = float((model_cfg.get("resources") or {}).get("num_gpus", 0))
        raise ValueError(f"{key}.tensor_parallel_size={tp} but {key}.resources.num_gpus={asked:g}; valid: equal "
                         f"values (the engine splits the model across the GPUs the cell reserves)")


def check_shared_memory(config: dict[str, Any]) -> None:
    """Plan-time: the vLLM engines of one cell that land on the same GPU must claim at most all of
    it between them. The policy model starts at the cell's first GPU; an aux model that reserves no
    GPU of its own lands there too."""
    shared = [k for k in ("model", "aux_model") if config.get(k) and (k == "model" or not reserved(config[k]))]
    engines = [(k, config[k]) for k in shared if config[k].get("backend") == "vllm"]
    total = sum(float(m.get("gpu_memory_utilization", 0.85)) for _, m in engines)
    if len(engines) > 1 and total > 1.0:
        parts = " + ".join(f"{k}.gpu_memory_utilization={m.get('gpu_memory_utilization', 0.85)}" for k, m in engines)
        raise ValueError(f"{parts} = {total:g} > 1 on the same GPU; valid: a sum <= 1, or "
                         f"aux_model.resources.num_gpus=1 (a GPU of its own)")


def free_gpu_memory() -> None:
    """Return freed tensors' GPU memory to the driver (after an engine or model is dropped), so the
    next cell's engine or trainer can claim it; nothing to do where CUDA never started."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
