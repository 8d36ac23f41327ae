"""LLM backends, one module each, behind the `Backend` protocol (harness/core/types.py).

Each module registers its class with `@register_backend(name)`; `model.backend` in the config picks
one by that name. Heavy imports (torch, vLLM, openai) happen inside the classes, so a CPU machine
never imports vLLM and a test run never imports transformers.
"""

from __future__ import annotations

from typing import Any

from harness.core.knobs import params_of
from harness.core.registry import BACKENDS
from harness.core.types import Backend

# model-config keys the harness itself reads (`trainer`: a weight-training cell's twin, harness/runner/plan.py)
# `own_process`: the physical GPUs of a model built in a process of its own (harness/core/devices.py `placed`)
NOT_BACKEND_ARGS = ("backend", "resources", "label", "twin", "trainer", "own_process", "shape")
TRAINABLE_BACKENDS = ("hf",)  # backends whose weights a method can train in place


def importable(backend: str) -> bool:
    """Whether a backend's engine is installed here (vLLM is optional: `make setup` installs it
    where it installs)."""
    import importlib.util

    return backend != "vllm" or importlib.util.find_spec("vllm") is not None


def make_backend(model_cfg: dict[str, Any]) -> Backend:
    """Build the backend named by `model_cfg["backend"]`; the rest of the dict is its config."""
    if model_cfg.get("own_process"):
        from harness.backends.own_process import OwnProcessBackend

        return OwnProcessBackend({k: v for k, v in model_cfg.items() if k != "own_process"},
                                 list(model_cfg["own_process"]), build=make_backend)
    return BACKENDS.get(model_cfg["backend"])(**params_of(model_cfg, drop=NOT_BACKEND_ARGS))
