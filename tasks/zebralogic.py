"""zebralogic: ZebraLogic logic-grid puzzles (Lin et al., arXiv 2502.01100), grid mode, loaded
from the Hub (`WildEval/ZebraLogic`, config `grid_mode`) or a local copy with its columns
(`puzzle`, `solution` = {"header": [...], "rows": [[...], ...]}).

Answer: one line of JSON after `Answer:` mapping every house to its attributes,
`{"House 1": {"Name": "Arnold", "Color": "red"}, "House 2": {...}}`, parsed with `json.loads`.
The score is the fraction of cells right (case-insensitive); the puzzle passes only with every
cell right (ZebraLogic's puzzle accuracy); `partial_credit=true` keeps the cell fraction as reward.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.datasets import DatasetTask, HubSource

MAX_GRID_CHARS = 2_000


def grid_of(solution: dict[str, Any]) -> dict[str, dict[str, str]]:
    header, rows = solution["header"], solution["rows"]
    return {f"House {row[0]}": {h: str(v) for h, v in zip(header[1:], row[1:], strict=False)} for row in rows}


def cell_accuracy(answer: str, expected: dict[str, dict[str, str]]) -> float:
    if len(answer) > MAX_GRID_CHARS:
        return 0.0
    try:
        got = json.loads(answer)
    except ValueError:
        return 0.0
    if not isinstance(got, dict):
        return 0.0
    total = right = 0
    for house, cells in expected.items():
        given = got.get(house)
        given = given if isinstance(given, dict) else {}
        given = {str(k).casefold(): str(v).strip().casefold() for k, v in given.items()}
        for attr, value in cells.items():
            total += 1
            right += given.get(attr.casefold()) == value.strip().casefold()
    return right / total if total else 0.0


@register_task("zebralogic")
@dataclass
class ZebraLogicTask(DatasetTask):
    instruction: ClassVar[str] = (
        "Solve the logic-grid puzzle. Finish with a final line of the form 'Answer: <JSON>' where the "
        "JSON maps each house to its attributes, e.g. {\"House 1\": {\"Name\": \"...\", ...}, ...}.")
    sizes: list[str] | None = knob(None, "keep only these grid sizes, e.g. ['2*2', '2*3']; null = all")
    max_tokens: int = knob(512, "completion cap in tokens", ge=1)

    def source(self) -> HubSource:
        return HubSource("WildEval/ZebraLogic", "test", "grid_mode")

    def to_problem(self, row: dict[str, Any], pool: str) -> Problem | None:
        if self.sizes and str(row.get("size")) not in self.sizes:
            return None
        solution = row["solution"]
        solution = json.loads(solution) if isinstance(solution, str) else solution
        grid = grid_of(solution)
        return Problem.make(row["puzzle"], json.dumps(grid), {"size": row.get("size"), "id": row.get("id")})

    def score(self, parsed: str, problem: Problem) -> float:
        return cell_accuracy(parsed, json.loads(problem.answer))

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        return {}
