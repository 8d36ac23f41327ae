"""A small in-memory similarity store: rows of (unit vector, item), exact cosine top-k in numpy.

Sizes here are hundreds to a few thousand entries, where a matrix product beats any index.
Ties go to the most recent item: two attempts at the same problem embed identically, and an
oldest-first rule would show the first attempts forever, so spending more budget would change
nothing the model sees (the round-1 episodic RAG and CORE bug). Similarities within
`TIE_TOLERANCE` count as tied (float noise between identical texts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")
TIE_TOLERANCE = 1e-6


def rank_newest_first(scores: np.ndarray, ages: np.ndarray | None = None, newest_first: bool = True) -> np.ndarray:
    """Indices by score, highest first; tied scores (within TIE_TOLERANCE) put the newest first
    (or the oldest, with `newest_first=False`: a stable sort over insertion order). `ages` orders
    items by creation (default: the index, i.e. insertion order)."""
    buckets = np.round(np.asarray(scores, dtype=np.float64) / TIE_TOLERANCE)
    created = np.arange(len(buckets)) if ages is None else np.asarray(ages)
    return np.lexsort((-created if newest_first else created, -buckets))


@dataclass
class SimilarityStore(Generic[T]):
    items: list[T] = field(default_factory=list)
    _vectors: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, vector: np.ndarray, item: T) -> None:
        self._vectors.append(np.asarray(vector, dtype=np.float32))
        self.items.append(item)

    def similarities(self, query: np.ndarray) -> np.ndarray:
        if not self.items:
            return np.zeros(0, dtype=np.float32)
        return np.stack(self._vectors) @ np.asarray(query, dtype=np.float32)

    def top_k(self, query: np.ndarray, k: int, where: Callable[[T], bool] | None = None,
              newest_first: bool = True) -> list[tuple[float, T]]:
        """The k most similar items (optionally only those passing `where`), most similar first;
        ties go to the most recently added (or the earliest, with `newest_first=False`)."""
        if k <= 0 or not self.items:
            return []
        sims = self.similarities(query)
        order = rank_newest_first(sims, newest_first=newest_first)
        out = []
        for i in order:
            if where is None or where(self.items[i]):
                out.append((float(sims[i]), self.items[i]))
                if len(out) == k:
                    break
        return out
