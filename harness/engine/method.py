"""The method protocol and the learning context methods talk to (DESIGN.md §3 "Method", "Budget").

A method (`MethodBase`) gets its training problems and a `LearnContext`, its one way to the
task, the backend (for methods that touch weights), the budget meter and the records. Policy
rollouts on training problems go through `ctx.rollouts` (metered, verified, recorded); unscored
generations go through `ctx.aux` (recorded as aux, not counted). `ctx.checkpoint(learned)`
evaluates the current state whenever the rollout count has crossed the next configured budget
fraction, which is how one cell yields a learning curve. `ctx.log(name=value, ...)` records
learning metrics as they happen: one row of the cell's `train_log.jsonl` and a point of its W&B
curves on the `rollouts` axis (the engine logs every method's rolling rollout success itself).
"""

from __future__ import annotations

import math
import numbers
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

from harness.core.knobs import check_knobs
from harness.core.memory import TrainingPass
from harness.core.types import Backend, Generation, Message, Problem, SamplingParams, Task, Verdict
from harness.engine.budget import AttemptRecord, BudgetMeter
from harness.engine.sampling import sample

ROLLING_WINDOW = 100  # rollouts behind the logged `rollout_success` (a rolling pass rate)


@runtime_checkable
class Learned(Protocol):
    """What a method hands to evaluation: a prompt renderer and the policy to sample from."""

    policy: Backend

    def render(self, problem: Problem) -> list[Message]: ...


@runtime_checkable
class RendersContext(Protocol):
    """A Learned that injects stored items (memories, episodes, insights) into its prompts and
    names them, so every record carries the ids of what the model saw (`context_ids`)."""

    def render_with_context(self, problem: Problem) -> tuple[list[Message], list[str]]: ...


def render(learned: Learned, problem: Problem) -> tuple[list[Message], list[str]]:
    """The eval-time prompt of `problem` and the ids of the stored items injected into it."""
    if isinstance(learned, RendersContext):
        return learned.render_with_context(problem)
    return learned.render(problem), []


@dataclass
class MethodBase:
    """What every method inherits. Subclasses declare their knobs as dataclass fields with
    `harness.core.knobs.knob` (default, help, range; `Literal` for choices), register with
    `@register_method(name)` and implement `learn`. The engine builds one per cell from the
    config's `method` section; `__post_init__` checks every knob against its declaration."""

    name: ClassVar[str]  # set by @register_method
    # True when learning changes the backend's weights in place: the launcher then never reuses
    # that backend object for another cell.
    mutates_policy: ClassVar[bool] = False
    # False for a method that spends no rollouts (learns nothing): its result cannot depend on the
    # run seed or the budget, so a sweep runs it once per configuration and every seed and budget
    # reuses that cell (harness/engine/cell.py).
    uses_rollouts: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_knobs(self, "method.")

    def check_cell(self, budget: int, train_size: int, model: dict[str, Any] | None = None) -> None:
        """Plan-time check of a cell this method cannot run (a fixed pre-learning cost above the
        budget, a backend that cannot train): raise ValueError naming the value, and the sweep
        reports it before anything is written."""

    def training_pass(self, max_tokens: int) -> TrainingPass | None:
        """What one forward/backward pass of a weight-training method holds (rollouts, tokens each,
        LoRA rank), for the plan-time trainer memory check (harness/core/memory.py); `max_tokens` is
        the cell's completion cap. None: this method trains no weights."""
        return None

    def learn(self, train: list[Problem], ctx: LearnContext) -> Learned:
        """Learn from the training problems within `ctx.meter`'s budget. `ctx` is the way to the
        task, the backend, the meter and the records: rollouts through `ctx.rollouts` (metered,
        verified, recorded), unscored generations through `ctx.aux`."""
        raise NotImplementedError


@runtime_checkable
class SecondAttempt(Protocol):
    """A Learned that answers a failed first attempt with a reflection and a retry (Reflect, Retry,
    Reward). Evaluation then also reports the pass rate after one reflection (`pass@1_attempt2`):
    per failed sample, one reflection (an aux call) and one retry (tagged `attempt2`)."""

    reflection_max_tokens: int

    def reflection_prompt(self, problem: Problem, prompt: list[Message], completion: str,
                          verdict: Verdict) -> list[Message]: ...

    def retry_prompt(self, reflection_prompt: list[Message], reflection: str) -> list[Message]: ...


@dataclass
class PromptOnly:
    """The simplest Learned: the task's base prompt with optional guidance or instruction."""

    task: Task
    policy: Backend
    guidance: str = ""
    instruction: str | None = None

    def render(self, problem: Problem) -> list[Message]:
        return self.task.prompt(problem, guidance=self.guidance, instruction=self.instruction)


@dataclass(frozen=True)
class Attempt:
    problem: Problem
    generation: Generation
    verdict: Verdict
    sample_idx: int


@dataclass
class LearnContext:
    task: Task
    backend: Backend
    meter: BudgetMeter
    sampling: SamplingParams  # default sampling for learning-phase policy rollouts
    cell_dir: Any  # pathlib.Path of the cell's output directory (methods write artefacts here)
    seed: int
    checkpoint_fractions: tuple[float, ...] = ()
    evaluate_fn: Callable[[Learned, int], None] | None = None  # set by the cell runner
    aux_backend: Backend | None = None  # the config's aux_model; None = aux calls go to the policy backend
    progress: Callable[[int, str], None] | None = None  # told (generations, "learn") after every call
    records: list[AttemptRecord] = field(default_factory=list)
    on_log: Callable[[dict[str, float]], None] | None = None  # set by the cell runner: the experiment logger
    log_rows: list[dict[str, float]] = field(default_factory=list)  # train_log.jsonl, written by the cell
    _recent: deque = field(default_factory=lambda: deque(maxlen=ROLLING_WINDOW))
    _started: float = field(default_factory=time.perf_counter)
    _next_checkpoint: int = 0
    _call_counter: int = 0
    _step: int = 0

    # ---- policy rollouts (counted) ----
    def rollouts(self, items: list[tuple[Problem, list[Message]]], n: int = 1,
                 params: SamplingParams | None = None, tag: str = "",
                 backend: Backend | None = None,
                 context_ids: list[list[str]] | None = None) -> list[list[Attempt]]:
        """Generate `n` samples for each (problem, prompt), verify them, count n*len(items) rollouts.

        `context_ids[i]` names the stored items a method injected into prompt i (recorded per row).
        Raises BudgetExhausted (claiming nothing) if the whole request does not fit.
        """
        if not items:
            return []
        if context_ids is not None and len(context_ids) != len(items):
            raise ValueError(f"{len(context_ids)} context_ids lists for {len(items)} prompts")
        self.meter.reserve(n * len(items))
        p = params or self.sampling
        self._call_counter += 1
        p = replace(p, n=n, seed=p.seed * 1_000_003 + self.seed * 7919 + self._call_counter)
        try:
            sampled = sample(backend or self.backend, self.task, items, p)
        except BaseException:
            self.meter.refund(n * len(items))  # nothing was generated: the count must not include it
            raise
        if self.progress is not None:
            self.progress(n * len(items), "learn")
        step = self._next_step()
        seen: dict[str, int] = {}  # a problem drawn twice in one call continues its sample_idx
        out: list[list[Attempt]] = []
        for j, s in enumerate(sampled):
            prob = items[j][0]
            offset = seen.get(prob.id, 0)
            seen[prob.id] = offset + len(s.generations)
            self.records += s.records(phase="learn", checkpoint=-1, step=step, tag=tag, first_idx=offset,
                                      counted=True, context_ids=context_ids[j] if context_ids is not None else ())
            for g in s.generations:
                self.meter.add_tokens("policy", g.prompt_tokens + g.completion_tokens)
            out.append([Attempt(prob, g, v, i) for i, (g, v) in enumerate(zip(s.generations, s.verdicts,
                                                                                strict=True)) if v is not None])
        passed = [a.verdict.passed for group in out for a in group]
        self._recent.extend(passed)
        if passed:
            self.log(rollout_success=sum(self._recent) / len(self._recent),
                     call_success=sum(passed) / len(passed), call_rollouts=len(passed))
        return out

    def rollout(self, problem: Problem, messages: list[Message], n: int = 1,
                params: SamplingParams | None = None, tag: str = "",
                backend: Backend | None = None, context_ids: list[str] | None = None) -> list[Attempt]:
        return self.rollouts([(problem, messages)], n=n, params=params, tag=tag, backend=backend,
                             context_ids=None if context_ids is None else [context_ids])[0]

    # ---- aux calls (tokens only) ----
    def aux(self, prompts: list[list[Message]], params: SamplingParams | Sequence[SamplingParams] | None = None,
            tag: str | Sequence[str] = "", problem_id: str = "", backend: Backend | None = None) -> list[str]:
        """Unscored generations (reflections, proposals, summaries): recorded, never counted.
        They go to `backend`, else the configured aux model, else the policy backend. `params` and
        `tag` are one value for every prompt or one per prompt: prompts of different kinds can
        share one engine call."""
        p = params or SamplingParams(temperature=0.7, top_p=0.95, max_tokens=256)
        tags = [tag] * len(prompts) if isinstance(tag, str) else list(tag)
        if len(tags) != len(prompts):
            raise ValueError(f"{len(tags)} tags for {len(prompts)} prompts")
        if self.progress is not None:
            self.progress(len(prompts), "learn")
        step, idx, texts = self._next_step(), 0, []
        sampled = sample(backend or self.aux_backend or self.backend, self.task, [(None, m) for m in prompts], p)
        for s, s_tag in zip(sampled, tags, strict=True):
            self.records += s.records(phase="learn", checkpoint=-1, step=step, tag=s_tag, first_idx=idx,
                                      problem_id=problem_id)
            for g in s.generations:
                self.meter.add_tokens("aux", g.prompt_tokens + g.completion_tokens)
            idx += len(s.generations)
            texts.append(s.generations[0].text if s.generations else "")
        return texts

    # ---- learning metrics ----
    def log(self, **metrics: float) -> None:
        """Learning metrics at this point of the run (`ctx.log(memories=len(store))`): one row of the
        cell's train_log.jsonl, and a point on the `rollouts` axis of its W&B run where a logger is
        configured. Values that are not finite numbers are left out."""
        reserved = {"rollouts", "learn_s"} & set(metrics)
        if reserved:  # the harness's own columns (W&B's x-axis among them)
            raise ValueError(f"ctx.log: {', '.join(sorted(reserved))} is set by the harness; name the metric otherwise")
        row: dict[str, float] = {"rollouts": self.meter.rollouts_used,
                                 "learn_s": round(time.perf_counter() - self._started, 3)}
        row.update({k: float(v) for k, v in metrics.items()  # numpy numbers too
                    if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)})
        self.log_rows.append(row)
        if self.on_log is not None:
            self.on_log(row)

    def _next_step(self) -> int:
        """Learn-phase rows are stamped with the index of the call that produced them."""
        self._step += 1
        return self._step - 1

    # ---- learning-curve checkpoints ----
    def checkpoint_due(self) -> bool:
        fr = self.checkpoint_fractions
        return (self._next_checkpoint < len(fr)
                and self.meter.rollouts_used >= fr[self._next_checkpoint] * self.meter.budget)

    def evaluate_now(self, learned: Learned) -> None:
        """Evaluate `learned` at the current rollout count, outside the configured fractions (e.g.
        the untrained policy before a training phase)."""
        if self.evaluate_fn is not None:
            self.evaluate_fn(learned, self.meter.rollouts_used)

    def checkpoint(self, learned: Learned) -> bool:
        """Evaluate `learned` if a budget fraction was crossed since the last checkpoint."""
        if not self.checkpoint_due():
            return False
        while self.checkpoint_due():  # one evaluation covers every fraction crossed at once
            self._next_checkpoint += 1
        if self.evaluate_fn is not None:
            self.evaluate_fn(learned, self.meter.rollouts_used)
        return True
