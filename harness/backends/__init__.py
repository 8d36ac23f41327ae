"""LLM backends, one module each, behind the `Backend` protocol (harness/types.py).

`model.backend` in the config picks one by name; modules are imported lazily so a CPU machine
never imports vLLM and a test run never imports transformers.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from harness.types import Backend

BACKENDS: dict[str, str] = {
    "mock": "harness.backends.mock:MockBackend",
    "hf": "harness.backends.hf:HFBackend",
    "llamacpp": "harness.backends.llamacpp:LlamaCppBackend",
    "openai": "harness.backends.openai_api:OpenAIBackend",
    "vllm": "harness.backends.vllm_offline:VLLMBackend",
}


NOT_BACKEND_ARGS = ("backend", "resources", "label")  # model-config keys the harness itself reads


def backend_class(model_cfg: dict[str, Any]) -> type:
    name = model_cfg.get("backend")
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid: {', '.join(sorted(BACKENDS))}")
    module_name, cls_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def check_backend_config(model_cfg: dict[str, Any]) -> None:
    """Reject unknown model options before anything is loaded or written."""
    cls = backend_class(model_cfg)
    valid = set(inspect.signature(cls).parameters)
    for key in model_cfg:
        if key not in NOT_BACKEND_ARGS and key not in valid:
            raise ValueError(f"unknown option {key!r} for backend {model_cfg['backend']!r}; "
                             f"valid: {', '.join(sorted(valid | set(NOT_BACKEND_ARGS)))}")


def make_backend(model_cfg: dict[str, Any]) -> Backend:
    """Build the backend named by `model_cfg["backend"]`; the rest of the dict is its config."""
    cls = backend_class(model_cfg)
    return cls(**{k: v for k, v in model_cfg.items() if k not in NOT_BACKEND_ARGS})
