"""gepa: reflective prompt evolution with Pareto selection (GEPA, arXiv 2507.19457), via `gepa.optimize`.

Why `gepa.optimize` with our own adapter rather than `dspy.GEPA`: the adapter makes every
task-LM call a harness rollout (metered, verified, recorded) and every reflection call a harness
aux call, with no litellm or dspy output format in between (dspy's default adapters break a
135M model 4 times in 6, reference/feasibility.md §8). The optimisation loop, Pareto candidate
selection, minibatch sampling and the reflection prompt are gepa's own, at its defaults, with
merge on as the CORE paper ran GEPA (through `dspy.GEPA`, whose defaults are `use_merge=True`,
`max_merge_invocations=5`). With one component (ours: the system instruction) merge does not
fire: gepa merges two descendants of a common ancestor only where one of them kept the
ancestor's text of some component and the other changed it (`does_triplet_have_desirable_predictors`
in gepa/proposer/merge.py), and every accepted mutation of a single-component candidate changes its
only component. So `use_merge` costs nothing here and changes nothing; it matters for programs with
several components.

Budget: `max_metric_calls` = the cell budget, valset = trainset when the training set is small
(the CORE paper's setting). gepa checks its budget only before an iteration, and an iteration
(parent minibatch b + child minibatch b + full validation |val| if accepted; a merge: a
subsample of MERGE_SUBSAMPLE val problems + |val|) is indivisible, so gepa alone can overshoot B.
A stopper therefore ends the run when fewer than that worst iteration's rollouts remain: gepa's
own `total_metric_calls` equals the meter's rollout count and never exceeds B, at the price of
leaving a worst iteration's rollouts minus one unused at most (reported as rollouts_used < budget).
The component evolved is the task's system instruction; the best candidate and every
candidate's validation score are written to `gepa_result.json`, gepa's iteration log to `gepa_log.txt`.

Engine calls (issue 31): every `evaluate` (a minibatch, or a candidate on the whole valset) is one
engine call, and so is every reflection. gepa's loop is serial by its algorithm: the reflection
reads the parent's minibatch results, the child's minibatch needs the reflection's instruction, and
the full validation runs only if the child improved. So its calls are small: at B=500 on math
(10 training problems, minibatch 3) 219 calls of 2.5 generations on average, and the learn phase
ran at 2.7x the time its 23k generated tokens take at the engine's batched throughput (867 s of
learning, 324 s at that limit). gepa 0.1.4's multi-proposal `sampling_strategy` would fill larger
batches but proposes several candidates per iteration, a different algorithm; it is not used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.core.knobs import knob
from harness.core.registry import register_method
from harness.core.types import Problem, SamplingParams, Task
from harness.engine import BudgetMeter, LearnContext, MethodBase, PromptOnly

COMPONENT = "instruction"
MERGE_SUBSAMPLE = 5  # val problems a merged candidate is first scored on (gepa MergeProposer default)


@dataclass
class HarnessAdapter:
    """gepa adapter backed by the cell's LearnContext: evaluate = counted rollouts."""

    task: Task
    ctx: LearnContext
    meter: BudgetMeter
    propose_new_texts: Any = None  # gepa reads this attribute; None = use its reflection LM
    best: tuple[float, str] | None = None  # (mean full-val score, instruction) seen so far
    valset_size: int = 0

    def evaluate(self, batch: list[Problem], candidate: dict[str, str], capture_traces: bool = False):
        from gepa.core.adapter import EvaluationBatch

        items = [(p, self.task.prompt(p, instruction=candidate[COMPONENT])) for p in batch]
        attempts = [g[0] for g in self.ctx.rollouts(items, n=1, tag="gepa_eval")]  # the meter refuses overruns
        scores = [a.verdict.reward for a in attempts]
        outputs = [a.generation.text for a in attempts]
        traces = [{"question": a.problem.question, "output": a.generation.text, "feedback": a.verdict.feedback}
                  for a in attempts]
        if len(batch) == self.valset_size:
            mean = sum(scores) / len(scores)
            if self.best is None or mean > self.best[0]:
                self.best = (mean, candidate[COMPONENT])
            self.ctx.log(candidate_val_score=mean, best_val_score=self.best[0])
        if self.best is not None:
            self.ctx.checkpoint(PromptOnly(self.task, self.ctx.backend, instruction=self.best[1]))
        return EvaluationBatch(outputs=outputs, scores=scores, trajectories=traces if capture_traces else None)

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: Any,
                                components_to_update: list[str]) -> Mapping[str, Sequence[Mapping[str, Any]]]:
        records = [{"Inputs": t["question"], "Generated Outputs": t["output"], "Feedback": t["feedback"]}
                   for t in eval_batch.trajectories or []]
        return {c: records for c in components_to_update}


@dataclass
class CellLog:
    """gepa's logger (`LoggerProtocol`): its per-iteration lines (scores, every proposed instruction
    in full) go to `gepa_log.txt` in the cell directory, not into the sweep's progress."""

    path: Path

    def log(self, message: str) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(f"{message}\n")


@register_method("gepa")
@dataclass
class GEPA(MethodBase):
    reflection_minibatch_size: int = knob(3, "training problems per reflection minibatch (gepa default b)", ge=1)
    candidate_selection_strategy: Literal["pareto", "current_best", "epsilon_greedy", "top_k_pareto"] = knob(
        "pareto", "which candidate gepa mutates next (gepa default: pareto)")
    use_merge: bool = knob(True, "as the CORE paper ran GEPA (dspy.GEPA default; gepa.optimize's is false); with "
                                 "one component (the system instruction) merge never fires, see the module doc")
    max_merge_invocations: int = knob(5, "merge attempts at most (dspy.GEPA / gepa default)", ge=0)
    valset_size: int | None = knob(None, "null = valset is the trainset (CORE paper); N = first N train problems",
                                   ge=1)
    reflection_temperature: float = knob(0.7, "reflection-LM sampling (not stated by the papers)", ge=0)
    reflection_max_tokens: int = knob(256, "cap on a proposed instruction", ge=1)

    def check_cell(self, budget: int, train_size: int, model: dict | None = None) -> None:
        """Plan-time: the budget must pay for gepa's seed evaluation on the whole valset."""
        need = min(self.valset_size or train_size, train_size)
        if budget < need:
            raise ValueError(f"budget={budget} is below gepa's seed evaluation on |valset| = {need} problems; "
                             f"raise budget or set method.valset_size")

    def learn(self, train: list[Problem], ctx: LearnContext) -> PromptOnly:
        task, backend = ctx.task, ctx.backend
        import gepa

        if self.valset_size is None or self.valset_size >= len(train):
            trainset, valset = train, train
        else:
            trainset, valset = train[self.valset_size:], train[:self.valset_size]
        adapter = HarnessAdapter(task, ctx, ctx.meter, valset_size=len(valset))
        params = SamplingParams(temperature=self.reflection_temperature, top_p=0.95,
                                max_tokens=self.reflection_max_tokens)

        def reflection_lm(prompt: str | list[dict[str, str]]) -> str:
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            return ctx.aux([messages], params, tag="gepa_reflection")[0]

        seed_text = task.prompt(train[0])[0]["content"]  # the task's own system instruction
        worst_iteration = len(valset) + max(2 * self.reflection_minibatch_size,
                                            MERGE_SUBSAMPLE if self.use_merge else 0)
        self.check_cell(ctx.meter.remaining, len(train))

        def out_of_budget(_state: Any) -> bool:
            return ctx.meter.remaining < worst_iteration

        strategy: Any = self.candidate_selection_strategy
        stoppers: list[Any] = [out_of_budget]
        result: Any = gepa.optimize(
            seed_candidate={COMPONENT: seed_text}, trainset=trainset, valset=valset, adapter=adapter,
            reflection_lm=reflection_lm, candidate_selection_strategy=strategy,
            reflection_minibatch_size=self.reflection_minibatch_size, use_merge=self.use_merge,
            max_merge_invocations=self.max_merge_invocations,
            max_metric_calls=ctx.meter.budget, stop_callbacks=stoppers, seed=ctx.seed, raise_on_exception=True,
            display_progress_bar=False, logger=CellLog(ctx.cell_dir / "gepa_log.txt"))
        if result.total_metric_calls != ctx.meter.rollouts_used:
            raise AssertionError(f"gepa counted {result.total_metric_calls} metric calls, "
                                 f"the meter {ctx.meter.rollouts_used}")
        best = result.best_candidate[COMPONENT]
        (ctx.cell_dir / "gepa_result.json").write_text(json.dumps({
            "best_instruction": best, "seed_instruction": seed_text,
            "total_metric_calls": result.total_metric_calls,
            "candidates": [{"instruction": c[COMPONENT], "val_score": s, "parents": p}
                           for c, s, p in zip(result.candidates, result.val_aggregate_scores, result.parents,
                                              strict=True)],
        }, indent=2))
        return PromptOnly(task, backend, instruction=best)
