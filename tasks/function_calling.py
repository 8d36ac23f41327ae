"""function_calling: pick the right tool and fill its arguments from a user request (the RRR
paper's APIGen task, generated procedurally here; `tasks/xlam.py` loads the public xLAM data).

Each problem shows `n_tools` tool specs (OpenAI-style JSON schema: name, description,
parameters with types, enums, required list and defaults), one of which fits the request, and the
request itself. The expected output is one call on the final line:
`Answer: {"name": "get_weather", "arguments": {"city": "Paris", "unit": "fahrenheit"}}`

Verification (`calls_match`, shared with xlam): the answer is parsed with `json.loads` (never
evaluated); a single call or a list of calls is accepted (`"parameters"` is read as `"arguments"`).
The calls must equal the expected ones as a multiset: same names, same argument names and
values, argument order free. Values are normalised before comparison: numbers and numeric
strings compare as numbers (`"5"` = `5` = `5.0`), `"true"`/`"false"` as booleans, other strings
stripped and case-folded, lists element-wise; an optional argument given at its schema default
counts as omitted.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.base import PromptedTask

MAX_CALL_CHARS = 2_000
_NUMERIC = re.compile(r"^[+-]?\d{1,30}(\.\d{1,30})?$")

CITIES = ["Paris", "Tokyo", "Nairobi", "Lima", "Oslo", "Hanoi", "Denver", "Cairo", "Perth", "Quito"]
PEOPLE = ["alice@example.com", "bob@example.org", "chen@example.net", "dara@example.com"]
ARTISTS = ["Miles Davis", "Nina Simone", "Fela Kuti", "Björk", "Radiohead"]
SYMBOLS = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN"]
CURRENCIES = ["USD", "EUR", "JPY", "GBP", "KES"]
CUISINES = ["italian", "thai", "mexican", "indian", "japanese"]
LANGUAGES = ["french", "spanish", "german", "swahili", "japanese"]
PHRASES = ["good morning", "where is the station", "thank you very much", "see you tomorrow"]
UNITS = ["km", "mile", "kg", "pound"]


def _param(type_: str, description: str, enum: list[Any] | None = None, default: Any = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "description": description}
    if enum is not None:
        spec["enum"] = enum
    if default is not None:
        spec["default"] = default
    return spec


@dataclass(frozen=True)
class ToolTemplate:
    """A tool spec plus request templates; `{arg}` placeholders name the arguments a request sets."""

    name: str
    description: str
    parameters: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    requests: tuple[str, ...]
    values: dict[str, Any]  # argument -> list of values, or a callable rng -> value

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "parameters": {"type": "object", "properties": self.parameters, "required": list(self.required)}}

    def sample(self, rng: random.Random) -> tuple[str, dict[str, Any]]:
        template = rng.choice(self.requests)
        args = {}
        for arg in re.findall(r"{(\w+)}", template):
            source = self.values[arg]
            args[arg] = source(rng) if callable(source) else rng.choice(source)
        return template.format(**args), args


TOOLS: tuple[ToolTemplate, ...] = (
    ToolTemplate("get_weather", "Current weather for a city.",
                 {"city": _param("string", "City name"),
                  "unit": _param("string", "Temperature unit", ["celsius", "fahrenheit"], "celsius")},
                 ("city",), ("What's the weather in {city}?", "How warm is it in {city}, in {unit}?"),
                 {"city": CITIES, "unit": ["celsius", "fahrenheit"]}),
    ToolTemplate("convert_currency", "Convert an amount between currencies.",
                 {"amount": _param("number", "Amount to convert"),
                  "from_currency": _param("string", "ISO code of the source currency"),
                  "to_currency": _param("string", "ISO code of the target currency")},
                 ("amount", "from_currency", "to_currency"),
                 ("Convert {amount} {from_currency} to {to_currency}.",
                  "How much is {amount} {from_currency} in {to_currency}?"),
                 {"amount": lambda r: r.choice([5, 12.5, 40, 99.99, 250]), "from_currency": CURRENCIES,
                  "to_currency": CURRENCIES}),
    ToolTemplate("set_alarm", "Set an alarm.",
                 {"time": _param("string", "Time as HH:MM, 24-hour"),
                  "label": _param("string", "Optional label")},
                 ("time",), ("Wake me up at {time}.", "Set an alarm for {time} called {label}."),
                 {"time": lambda r: f"{r.randint(5, 22):02d}:{r.choice([0, 15, 30, 45]):02d}",
                  "label": ["gym", "meds", "standup", "call mom"]}),
    ToolTemplate("send_email", "Send an email.",
                 {"to": _param("string", "Recipient address"), "subject": _param("string", "Subject line"),
                  "urgent": _param("boolean", "Mark as urgent", default=False)},
                 ("to", "subject"),
                 ("Email {to} with the subject '{subject}'.",
                  "Send {to} an email titled '{subject}', urgent: {urgent}."),
                 {"to": PEOPLE, "subject": ["lunch", "invoice", "trip plans", "draft ready"],
                  "urgent": [True, False]}),
    ToolTemplate("search_restaurants", "Find restaurants.",
                 {"city": _param("string", "City name"), "cuisine": _param("string", "Cuisine", CUISINES),
                  "max_price": _param("integer", "Maximum price level 1-4", default=4)},
                 ("city",),
                 ("Find {cuisine} restaurants in {city}.",
                  "Any {cuisine} places in {city} with price level at most {max_price}?"),
                 {"city": CITIES, "cuisine": CUISINES, "max_price": [1, 2, 3]}),
    ToolTemplate("calculate_tip", "Compute a tip.",
                 {"bill_amount": _param("number", "Bill total"), "tip_percent": _param("integer", "Tip in percent")},
                 ("bill_amount", "tip_percent"), ("What is a {tip_percent}% tip on {bill_amount}?",),
                 {"bill_amount": lambda r: r.choice([18, 42.5, 67.2, 120]), "tip_percent": [10, 15, 18, 20]}),
    ToolTemplate("translate_text", "Translate text.",
                 {"text": _param("string", "Text to translate"),
                  "target_language": _param("string", "Target language", LANGUAGES)},
                 ("text", "target_language"), ("Translate '{text}' into {target_language}.",),
                 {"text": PHRASES, "target_language": LANGUAGES}),
    ToolTemplate("get_stock_price", "Latest stock price.",
                 {"symbol": _param("string", "Ticker symbol")}, ("symbol",),
                 ("What is {symbol} trading at?", "Give me the latest price of {symbol}."),
                 {"symbol": SYMBOLS}),
    ToolTemplate("play_music", "Play music by an artist.",
                 {"artist": _param("string", "Artist name"), "shuffle": _param("boolean", "Shuffle", default=False)},
                 ("artist",), ("Play something by {artist}.", "Play {artist} with shuffle set to {shuffle}."),
                 {"artist": ARTISTS, "shuffle": [True, False]}),
    ToolTemplate("convert_units", "Convert a measurement.",
                 {"value": _param("number", "Value"), "from_unit": _param("string", "Unit", UNITS),
                  "to_unit": _param("string", "Unit", UNITS)},
                 ("value", "from_unit", "to_unit"), ("Convert {value} {from_unit} to {to_unit}.",),
                 {"value": lambda r: r.choice([1, 3.5, 10, 42]), "from_unit": UNITS, "to_unit": UNITS}),
)


# ---------------------------------------------------------------- verification (shared with xlam)

def normalise_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMERIC.match(text):
            return float(text)
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        return text.casefold()
    if isinstance(value, list):
        return [normalise_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): normalise_value(v) for k, v in value.items()}
    return value


def _canonical_call(call: Any, defaults: dict[str, dict[str, Any]]) -> str | None:
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    args = call.get("arguments", call.get("parameters", {}))
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    name = call["name"].strip()
    tool_defaults = defaults.get(name, {})
    norm = {k: normalise_value(v) for k, v in args.items()}
    norm = {k: v for k, v in norm.items()
            if not (k in tool_defaults and v == normalise_value(tool_defaults[k]))}
    return json.dumps({"name": name, "arguments": norm}, sort_keys=True)


def parse_calls(text: str) -> list[Any] | None:
    """JSON call(s) from model text; None if it is not JSON. Never evaluates the text."""
    if len(text) > MAX_CALL_CHARS:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else [value]


def calls_match(answer_text: str, expected: list[dict[str, Any]], defaults: dict[str, dict[str, Any]]) -> bool:
    """True if the answer's calls equal `expected` as a multiset (see the module docstring)."""
    calls = parse_calls(answer_text)
    if not calls:
        return False
    got = [_canonical_call(c, defaults) for c in calls]
    want = [_canonical_call(c, defaults) for c in expected]
    return None not in got and Counter(got) == Counter(want)


def tool_defaults(specs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """tool name -> {argument: default} from OpenAI-style or xLAM-style parameter specs."""
    out = {}
    for spec in specs:
        params = spec.get("parameters", {})
        props = params.get("properties", params) if isinstance(params, dict) else {}
        out[spec.get("name", "")] = {k: v["default"] for k, v in props.items()
                                     if isinstance(v, dict) and v.get("default") not in (None, "")}
    return out


@register_task("function_calling")
@dataclass
class FunctionCallingTask(PromptedTask):
    instruction: ClassVar[str] = (
        "You can call the tools listed in the message. Choose the one tool that fulfils the request and "
        "fill in its arguments. Finish with a final line of the form "
        "'Answer: {\"name\": <tool name>, \"arguments\": {<argument>: <value>, ...}}' in JSON.")
    # calibrated for SmolLM2-135M: 1 tool, 3 demos 0.300 zero-shot Pass@1; 2 tools 0.056; 3 tools, 1 demo 0.000
    # (it copies the JSON schema into the arguments)
    n_tools: int = knob(1, "tools shown per problem (the right one + distractors)", ge=1, le=len(TOOLS))
    few_shot: int = knob(3, "demos in every prompt", ge=0)
    max_tokens: int = knob(96, "completion cap in tokens", ge=1)

    def make_problem(self, rng: random.Random) -> Problem:
        tools = rng.sample(TOOLS, self.n_tools)
        target = tools[0]
        rng.shuffle(tools)
        request, args = target.sample(rng)
        specs = [t.spec() for t in tools]
        question = f"Tools:\n{json.dumps(specs)}\n\nRequest: {request}"
        answer = json.dumps({"name": target.name, "arguments": args}, ensure_ascii=False)
        return Problem.make(question, answer, {"tools": specs})

    def draw(self, seed: int, size: int) -> Iterator[Problem]:
        for i in range(size):
            yield self.make_problem(random.Random(f"function_calling:{seed}:{i}"))

    def score(self, parsed: str, problem: Problem) -> float:
        return float(calls_match(parsed, [json.loads(problem.answer)], tool_defaults(problem.meta["tools"])))

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        return {}  # a pass needs every argument right: no guess scores (1/n_tools only bounds picking the tool)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "generator": {"n_tools": self.n_tools, "tools": [t.name for t in TOOLS]}}
