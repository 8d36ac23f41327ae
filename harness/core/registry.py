"""One registry for every pluggable kind: tasks, methods, backends, launchers and loggers.

An entry is a name and a factory (a dataclass whose fields are its config knobs, see
harness/core/knobs.py). Every entry registers itself with the registry's decorator and is found by
importing the registry's modules on first lookup (every top-level module of a package), so adding
a method, task or backend is one new file and the engine never names one. Modules keep heavy
imports (torch, vLLM, W&B) inside functions, so a lookup stays cheap. The registered name is the
one name an entry has: the decorator sets it as the class's `name`.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any


class UnknownName(KeyError):
    def __init__(self, kind: str, name: str, valid: list[str]):
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")
        self.kind, self.name, self.valid = kind, name, valid

    def __str__(self) -> str:
        return self.args[0]


class Registry:
    def __init__(self, kind: str, *modules: str):
        self.kind, self.modules = kind, modules  # packages are scanned, plain modules imported
        self._entries: dict[str, Any] = {}
        self._scanned = False

    def register(self, name: str) -> Callable[[Any], Any]:
        def deco(obj: Any) -> Any:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            if isinstance(obj, type):
                obj.name = name  # type: ignore[attr-defined]
            return obj
        return deco

    def _scan(self) -> None:
        if self._scanned:
            return
        for name in self.modules:
            module = importlib.import_module(name)
            for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
                if not info.name.startswith("_") and not info.ispkg:
                    importlib.import_module(f"{name}.{info.name}")
        self._scanned = True

    def names(self) -> list[str]:
        self._scan()
        return sorted(self._entries)

    def get(self, name: str) -> Any:
        if name not in self._entries:
            self._scan()
        if name not in self._entries:
            raise UnknownName(self.kind, name, self.names())
        return self._entries[name]


TASKS = Registry("task", "tasks")


METHODS = Registry("method", "methods")


BACKENDS = Registry("backend", "harness.backends")


LAUNCHERS = Registry("launcher", "harness.runner.launchers")


LOGGERS = Registry("logger", "harness.runner.loggers")


REGISTRIES = {"task": TASKS, "method": METHODS, "backend": BACKENDS, "launcher": LAUNCHERS, "logger": LOGGERS}


register_task = TASKS.register


register_method = METHODS.register


register_backend = BACKENDS.register


register_launcher = LAUNCHERS.register


register_logger = LOGGERS.register
