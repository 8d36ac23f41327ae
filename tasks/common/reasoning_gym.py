"""Adapter from a reasoning-gym generator to the sibench Task contract (tasks/common/base.py).

Problem i of stream S is reasoning-gym's item i of `create_dataset(name, seed=S, ...)`; scoring
is reasoning-gym's own scorer (`get_score_answer_fn`: no dataset is built to score), so `passed`
requires its score to be exactly 1.0 (its partial credit, 0.01-0.3 for some wrong answers, is
kept only with `partial_credit=true`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.core.types import Problem
from tasks.common.base import PromptedTask


@functools.cache
def rg_scorer(dataset: str) -> Callable[[str, dict[str, Any]], float]:
    """reasoning-gym's `score_answer(answer, entry)` for a dataset (its scorers need no generator
    settings), shared by every task that scores that dataset's answers."""
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(dataset)


@dataclass
class ReasoningGymTask(PromptedTask):
    """Base for tasks backed by one reasoning-gym dataset. Subclasses set `dataset` (and
    `generator_fields`, or override `generator_config()`)."""

    dataset: ClassVar[str]  # reasoning-gym dataset name
    generator_fields: ClassVar[tuple[str, ...]] = ()  # dataclass fields passed to the generator as is

    def __post_init__(self) -> None:
        super().__post_init__()
        self._dataset_cache: dict[tuple[int, int], Any] = {}

    def generator_config(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.generator_fields}

    def _dataset(self, seed: int, size: int) -> Any:
        import reasoning_gym

        key = (seed, size)
        if key not in self._dataset_cache:
            self._dataset_cache[key] = reasoning_gym.create_dataset(
                self.dataset, seed=seed, size=size, **self.generator_config())
        return self._dataset_cache[key]

    def draw(self, seed: int, size: int) -> Iterator[Problem]:
        ds = self._dataset(seed, size)
        for i in range(size):  # lazily: reasoning-gym builds item i on access
            entry = ds[i]
            yield Problem.make(entry["question"], str(entry["answer"]), {"entry": entry, "index": i})

    def score(self, parsed: str, problem: Problem) -> float:
        """reasoning-gym's own scorer on the parsed answer."""
        return float(rg_scorer(self.dataset)(parsed, problem.meta["entry"]))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "dataset": self.dataset, "generator": self.generator_config()}
