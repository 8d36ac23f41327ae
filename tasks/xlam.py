"""xlam: the public APIGen function-calling data (`Salesforce/xlam-function-calling-60k`, gated
on the Hub: accept its terms, or pass a local copy), the RRR paper's function-calling task.

Rows have `query`, `tools` (JSON list of {name, description, parameters: {arg: {type,
description, default}}}) and `answers` (JSON list of calls {name, arguments}). The prompt shows the
tools and the query; the answer is the JSON list of calls on the `Answer:` line (one call may be
given bare). Checked by tasks/function_calling.py's `calls_match`: calls as a multiset, argument
order free, values normalised, arguments at their default count as omitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.datasets import DatasetTask, HubSource
from tasks.function_calling import calls_match, tool_defaults


def _json_field(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@register_task("xlam")
@dataclass
class XlamTask(DatasetTask):
    instruction: ClassVar[str] = (
        "You can call the tools listed in the message. Choose the call or calls that fulfil the request. "
        "Finish with a final line of the form 'Answer: [{\"name\": <tool name>, \"arguments\": {...}}, ...]' in JSON.")
    max_tokens: int = knob(256, "completion cap in tokens", ge=1)

    def source(self) -> HubSource:
        return HubSource("Salesforce/xlam-function-calling-60k", "train")

    def to_problem(self, row: dict[str, Any], pool: str) -> Problem | None:
        try:
            tools, answers = _json_field(row["tools"]), _json_field(row["answers"])
        except (KeyError, ValueError):
            return None
        if not isinstance(tools, list) or not isinstance(answers, list) or not answers:
            return None
        question = f"Tools:\n{json.dumps(tools)}\n\nRequest: {row['query']}"
        return Problem.make(question, json.dumps(answers), {"tools": tools, "id": row.get("id")})

    def score(self, parsed: str, problem: Problem) -> float:
        return float(calls_match(parsed, json.loads(problem.answer), tool_defaults(problem.meta["tools"])))

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        return {}
