"""math_benchmark: the public math benchmarks of the LTE paper (MATH-500, Minerva, OlympiadBench,
AMC 2023, AIME 2024, AIME 2025) and GSM8K, loaded with `datasets` (tasks/common/datasets.py).

`benchmark` picks the evaluation set; training problems come from `train_benchmark` (default:
GSM8K's own train split for gsm8k, the MATH train split for the others, since these benchmarks
have no training data). A `data_path` / `train_data_path` file must have the Hub dataset's
columns (listed in BENCHMARKS).

Answers: the text after the final `Answer:` line, or else the last `\\boxed{...}`; compared with
the reference by `math-verify` in a worker process with a wall-clock limit
(tasks/common/math_check.py), so `1/2`, `0.5` and `\\frac{1}{2}` are the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.knobs import knob
from harness.core.registry import register_task
from harness.core.types import Problem
from tasks.common.datasets import DatasetTask, HubSource
from tasks.common.math_check import math_equal


def last_boxed(text: str) -> str | None:
    """Contents of the last `\\boxed{...}` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, min(len(text), i + 2_000)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j].strip() or None
    return None


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _first(value: Any) -> str:
    value = value[0] if isinstance(value, list) and value else value
    return str(value).strip().strip("$").strip()


@dataclass(frozen=True)
class Benchmark:
    source: HubSource
    question: str  # column holding the problem text
    answer: Callable[[dict[str, Any]], str | None]  # reference answer from a row
    train: str  # benchmark whose rows train when this one is evaluated


BENCHMARKS: dict[str, Benchmark] = {
    "gsm8k": Benchmark(HubSource("openai/gsm8k", "test", "main"), "question",
                       lambda r: r["answer"].split("####")[-1].strip().replace(",", ""), "gsm8k_train"),
    "gsm8k_train": Benchmark(HubSource("openai/gsm8k", "train", "main"), "question",
                             lambda r: r["answer"].split("####")[-1].strip().replace(",", ""), "gsm8k_train"),
    "math_train": Benchmark(HubSource("DigitalLearningGmbH/MATH-lighteval", "train"), "problem",
                            lambda r: last_boxed(r["solution"]), "math_train"),
    "math500": Benchmark(HubSource("HuggingFaceH4/MATH-500", "test"), "problem", lambda r: str(r["answer"]),
                         "math_train"),
    "minerva": Benchmark(HubSource("math-ai/minervamath", "test"), "question", lambda r: str(r["answer"]),
                         "math_train"),
    "olympiadbench": Benchmark(HubSource("Hothan/OlympiadBench", "train", "OE_TO_maths_en_COMP"), "question",
                               lambda r: _first(r["final_answer"]), "math_train"),
    "amc2023": Benchmark(HubSource("zwhe99/amc23", "test"), "question", lambda r: _number(r["answer"]),
                         "math_train"),
    "aime2024": Benchmark(HubSource("HuggingFaceH4/aime_2024", "train"), "problem", lambda r: _number(r["answer"]),
                          "math_train"),
    "aime2025": Benchmark(HubSource("yentinglin/aime_2025", "train"), "problem", lambda r: _number(r["answer"]),
                          "math_train"),
}


@register_task("math_benchmark")
@dataclass
class MathBenchmarkTask(DatasetTask):
    instruction: ClassVar[str] = (
        "Solve the math problem step by step. Finish with a final line of the form 'Answer: <final answer>'.")
    separate_train: ClassVar[bool] = True
    benchmark: str = knob("math500", "gsm8k | math500 | minerva | olympiadbench | amc2023 | aime2024 | aime2025")
    train_benchmark: str | None = knob(
        None, "training problems: null = gsm8k_train for gsm8k, math_train (MATH train split) otherwise")
    math_verify_timeout_s: float = knob(
        5.0, "wall-clock limit on one math-verify comparison (runs in a worker process)", gt=0, le=3600)
    verify_timeout_s: float = knob(10.0, "limit on scoring one completion (must exceed the above)", ge=0.1,
                                   le=3600)
    max_tokens: int = knob(512, "completion cap in tokens", ge=1)

    def __post_init__(self) -> None:
        for key in ("benchmark", "train_benchmark"):
            value = getattr(self, key)
            if value is not None and value not in BENCHMARKS:
                raise ValueError(f"task.{key}={value!r}; valid: {', '.join(BENCHMARKS)}")
        if self.verify_timeout_s <= self.math_verify_timeout_s:
            raise ValueError("math_benchmark verify_timeout_s must exceed math_verify_timeout_s")
        super().__post_init__()  # loads the data

    def _train_name(self) -> str:
        return self.train_benchmark or BENCHMARKS[self.benchmark].train

    def source(self) -> HubSource:
        return BENCHMARKS[self.benchmark].source

    def train_source(self) -> HubSource:
        return BENCHMARKS[self._train_name()].source

    def to_problem(self, row: dict[str, Any], pool: str) -> Problem | None:
        spec = BENCHMARKS[self.benchmark if pool == "eval" else self._train_name()]
        try:
            answer = spec.answer(row)
        except (KeyError, TypeError, IndexError):
            return None
        question = row.get(spec.question)
        if not question or not answer:
            return None
        return Problem.make(str(question), answer)

    def fallback(self, text: str) -> str | None:
        return last_boxed(text)

    def score(self, parsed: str, problem: Problem) -> float:
        return float(math_equal(problem.answer, parsed, self.math_verify_timeout_s))

    def chance_baseline(self, problems: list[Problem]) -> dict[str, float]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "benchmark": self.benchmark, "train_benchmark": self._train_name(),
                "source": vars(self.source()), "data_path": self.data_path}
