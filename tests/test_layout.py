"""The house's architecture, read from the code's own imports (every import, including those inside
functions): no import circles in harness/, each part imports only the parts below it
(core < backends < engine < config < runner, report < commands), reports never reach the runner or
Hydra composition, and methods/ and tasks/ import only the method author's API (`harness.engine`'s
`__all__`) and `harness.core`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.core.paths import REPO

RANK = {"core": 0, "backends": 1, "engine": 2, "config": 3, "runner": 4, "report": 4}
COMMAND_RANK = 5  # the thin commands at the top of harness/
LIMIT = 350  # lines a file of harness/ may have unless its docstring says why


def module_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every import in the file that runs (inside functions too; not those
    under `if TYPE_CHECKING:`, which only type checkers read); `from a import b` where a.b is a
    module of the project is an import of a.b."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test).endswith("TYPE_CHECKING") for n in ast.walk(block)}
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = REPO.joinpath(*node.module.split("."))
            subs = [a.name for a in node.names if (base / f"{a.name}.py").is_file() or (base / a.name).is_dir()]
            out += [(f"{node.module}.{s}", [], node.lineno) for s in subs]
            rest = [a.name for a in node.names if a.name not in subs]
            if rest or not subs:
                out.append((node.module, rest, node.lineno))
    return out


def part_of(module: str) -> tuple[str, int]:
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in RANK:
        return parts[1], RANK[parts[1]]
    return "commands", COMMAND_RANK if len(parts) >= 2 else -1


def harness_graph(root: Path = REPO) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted((root / "harness").rglob("*.py")):
        me = module_of(path)
        graph[me] = {m for m, _, _ in imports_of(path) if m.startswith("harness.") and m != me}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def order_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for src, targets in graph.items():
        part, rank = part_of(src)
        for dst in targets:
            other, other_rank = part_of(dst)
            if other == part:
                continue
            if other_rank > rank or (other_rank == rank and other != part):
                bad.append(f"{src} ({part}) imports {dst} ({other})")
            if part == "report" and dst == "harness.config.compose":
                bad.append(f"{src} (report) imports Hydra composition {dst}")
    return sorted(bad)


def author_api_violations(root: Path = REPO) -> list[str]:
    import harness.engine

    api = set(harness.engine.__all__)
    bad = []
    for folder in ("methods", "tasks"):
        for path in sorted((root / folder).rglob("*.py")):
            for module, names, line in imports_of(path):
                if not module.startswith("harness"):
                    continue
                where = f"{path.relative_to(root)}:{line}"
                if module == "harness.engine":
                    bad += [f"{where} imports {n}, not in harness.engine.__all__" for n in names if n not in api]
                elif not (module == "harness.core" or module.startswith("harness.core.")):
                    bad.append(f"{where} imports {module}: methods and tasks import harness.engine and harness.core")
    return bad


def test_harness_has_no_import_circles():
    assert circles(harness_graph()) == []


def test_each_part_imports_only_the_parts_below_it():
    assert order_violations(harness_graph()) == []


def test_methods_and_tasks_import_only_the_method_authors_api():
    assert author_api_violations() == []


def test_the_checks_fail_on_a_circle_an_upward_import_and_a_method_reaching_past_the_api(tmp_path):
    """The rules above catch what they guard against: a planted circle, an engine module importing
    the runner, a report importing Hydra composition, a method importing harness.engine.cell."""
    graph = harness_graph()
    planted = {**graph, "harness.core.types": graph["harness.core.types"] | {"harness.core.knobs"},
               "harness.core.knobs": graph["harness.core.knobs"] | {"harness.core.types"}}
    assert ["harness.core.knobs", "harness.core.types"] in circles(planted)
    upward = {**graph, "harness.engine.cell": graph["harness.engine.cell"] | {"harness.runner.plan"}}
    assert "harness.engine.cell (engine) imports harness.runner.plan (runner)" in order_violations(upward)
    sideways = {**graph, "harness.report.table": graph["harness.report.table"] | {"harness.runner.execute"}}
    assert order_violations(sideways) == ["harness.report.table (report) imports harness.runner.execute (runner)"]
    hydra = {**graph, "harness.report.table": graph["harness.report.table"] | {"harness.config.compose"}}
    assert any("Hydra composition" in b for b in order_violations(hydra))
    (tmp_path / "methods").mkdir()
    (tmp_path / "tasks").mkdir()
    (tmp_path / "methods" / "bad.py").write_text("from harness.engine.cell import run_cell\n"
                                                 "from harness.engine import MethodBase, run_cell\n")
    bad = author_api_violations(tmp_path)
    assert len(bad) == 2 and "harness.engine.cell" in bad[0] and "run_cell, not in" in bad[1]


@pytest.mark.parametrize("path", sorted((REPO / "harness").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_no_file_of_harness_is_over_the_limit_unless_its_docstring_says_why(path):
    lines = len(path.read_text().splitlines())
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert lines <= LIMIT or f"over {LIMIT} lines" in doc, f"{path.relative_to(REPO)}: {lines} lines"


def test_every_folder_of_harness_says_what_it_holds():
    for folder in [REPO / "harness", *(p for p in (REPO / "harness").iterdir() if p.is_dir() and p.name in RANK)]:
        init = folder / "__init__.py"
        assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), folder
