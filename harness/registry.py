"""Name -> factory registries for tasks and methods.

A module under `tasks/` or `methods/` registers itself with a decorator; the registry imports
every top-level module of its package on first lookup, so adding a method is one new file and
the engine never names one.
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
    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._entries: dict[str, Callable[..., Any]] = {}
        self._scanned = False

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            return obj
        return deco

    def _scan(self) -> None:
        if self._scanned:
            return
        pkg = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_") and not info.ispkg:
                importlib.import_module(f"{self.package}.{info.name}")
        self._scanned = True

    def names(self) -> list[str]:
        self._scan()
        return sorted(self._entries)

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._entries:
            self._scan()
        if name not in self._entries:
            raise UnknownName(self.kind, name, self.names())
        return self._entries[name]


TASKS = Registry("task", "tasks")
METHODS = Registry("method", "methods")
register_task = TASKS.register
register_method = METHODS.register
