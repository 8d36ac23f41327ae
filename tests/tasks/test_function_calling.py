"""function_calling: the verifier compares calls as JSON (names, normalised values, order free,
defaults), never evaluates text; generated problems are answerable from the shown tools."""

from __future__ import annotations

import json

import pytest

from tasks.function_calling import FunctionCallingTask, calls_match, tool_defaults

SPEC = [{"name": "get_weather", "parameters": {"type": "object", "properties": {
    "city": {"type": "string"}, "unit": {"type": "string", "default": "celsius"}}}},
    {"name": "convert_units", "parameters": {"type": "object", "properties": {
        "value": {"type": "number"}, "from_unit": {"type": "string"}, "to_unit": {"type": "string"}}}}]
DEFAULTS = tool_defaults(SPEC)
WANT = [{"name": "convert_units", "arguments": {"value": 5, "from_unit": "km", "to_unit": "mile"}}]


@pytest.mark.parametrize("answer", [
    '{"name": "convert_units", "arguments": {"to_unit": "mile", "value": 5, "from_unit": "km"}}',
    '{"name": "convert_units", "arguments": {"value": "5.0", "from_unit": "KM ", "to_unit": "Mile"}}',
    '[{"name": "convert_units", "parameters": {"value": 5, "from_unit": "km", "to_unit": "mile"}}]',
    '{"name": "convert_units", "arguments": "{\\"value\\": 5, \\"from_unit\\": \\"km\\", \\"to_unit\\": \\"mile\\"}"}',
])
def test_equivalent_calls_match(answer):
    assert calls_match(answer, WANT, DEFAULTS)


@pytest.mark.parametrize("answer", [
    '{"name": "get_weather", "arguments": {"value": 5, "from_unit": "km", "to_unit": "mile"}}',  # wrong tool
    '{"name": "convert_units", "arguments": {"value": 5, "from_unit": "km"}}',  # missing argument
    '{"name": "convert_units", "arguments": {"value": 5, "from_unit": "km", "to_unit": "mile", "x": 1}}',
    '{"name": "convert_units", "arguments": {"value": 6, "from_unit": "km", "to_unit": "mile"}}',
    json.dumps(WANT * 2),  # the right call twice
    "convert_units(value=5, from_unit='km', to_unit='mile')",  # Python syntax is not JSON and is never run
    "__import__('os').system('echo pwned')", "", "[]", "null", '{"name": 5}',
])
def test_different_calls_do_not_match(answer):
    assert not calls_match(answer, WANT, DEFAULTS)


def test_an_optional_argument_at_its_default_counts_as_omitted():
    want = [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert calls_match('{"name": "get_weather", "arguments": {"city": "oslo", "unit": "celsius"}}', want, DEFAULTS)
    assert not calls_match('{"name": "get_weather", "arguments": {"city": "oslo", "unit": "kelvin"}}', want, DEFAULTS)


def test_generated_problems_show_the_right_tool_and_verify():
    task = FunctionCallingTask(n_tools=4)
    for p in task.problems("test", 50, 0):
        call = json.loads(p.answer)
        names = [t["name"] for t in p.meta["tools"]]
        assert len(names) == 4 == len(set(names)) and call["name"] in names
        spec = next(t for t in p.meta["tools"] if t["name"] == call["name"])
        assert set(spec["parameters"]["required"]) <= set(call["arguments"]) <= set(spec["parameters"]["properties"])
        assert json.dumps(p.meta["tools"]) in p.question
        assert task.verify(p, f"Calling it.\nAnswer: {p.answer}").passed
        assert not task.verify(p, 'Answer: {"name": "none", "arguments": {}}').passed
    with pytest.raises(ValueError, match="n_tools"):
        FunctionCallingTask(n_tools=0)
