"""The one pipeline from prompt to verdict to record (DESIGN.md §3, "Records").

`sample` sends prompts through a backend and, for prompts that belong to a problem, the task's
verifier; `Sampled.records` turns the result into attempt records. Learning rollouts and aux
calls (`LearnContext.rollouts` / `.aux`) and evaluation (first attempts, reflections and retries)
all go through it, so a request, its generations and their verdicts are paired in one place
(`zip(strict=True)`: a backend that returns the wrong number of results fails loudly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.core.types import Backend, Generation, GenerationRequest, Message, Problem, SamplingParams, Task, Verdict
from harness.engine.budget import AttemptRecord


@dataclass(frozen=True)
class Sampled:
    """One prompt's request, its generations and (for a problem's prompt) their verdicts."""

    problem: Problem | None
    request: GenerationRequest
    generations: list[Generation]
    verdicts: list[Verdict | None]

    def records(self, *, phase: str, checkpoint: int, step: int, tag: str, first_idx: int = 0,
                problem_id: str = "", counted: bool = False,
                context_ids: Sequence[str] = ()) -> list[AttemptRecord]:
        """One record per generation, numbered `first_idx`, `first_idx + 1`, ..."""
        pid = self.problem.id if self.problem is not None else problem_id
        return [AttemptRecord.of(self.request, g, v, phase=phase, checkpoint=checkpoint, step=step, problem_id=pid,
                                 sample_idx=first_idx + i, counted=counted, tag=tag, context_ids=tuple(context_ids))
                for i, (g, v) in enumerate(zip(self.generations, self.verdicts, strict=True))]


def sample(backend: Backend, task: Task, prompts: Sequence[tuple[Problem | None, Sequence[Message]]],
           params: SamplingParams | Sequence[SamplingParams]) -> list[Sampled]:
    """Generate `params.n` samples per prompt in one backend call; verify those whose prompt
    belongs to a problem (policy attempts), leave the others unscored (aux calls). `params` is one
    setting for every prompt or one per prompt (one engine call either way)."""
    per_prompt = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
    if len(per_prompt) != len(prompts):
        raise ValueError(f"{len(per_prompt)} sampling settings for {len(prompts)} prompts")
    requests = [GenerationRequest(tuple(msgs), p_params, oracle_answer=p.answer if p is not None else None)
                for (p, msgs), p_params in zip(prompts, per_prompt, strict=True)]
    out = []
    for (problem, _), request, gens in zip(prompts, requests, backend.generate(requests), strict=True):
        verdicts = [None if problem is None else task.verify(problem, g.text, truncated=g.finish_reason == "length")
                    for g in gens]
        out.append(Sampled(problem, request, gens, verdicts))
    return out
