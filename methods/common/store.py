"""A small in-memory similarity store: rows of (unit vector, item), exact cosine top-k in numpy.

Sizes here are hundreds to a few thousand entries, where a matrix product beats any index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


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

    def top_k(self, query: np.ndarray, k: int,
              where: Callable[[T], bool] | None = None) -> list[tuple[float, T]]:
        """The k most similar items (optionally only those passing `where`), most similar first;
        ties keep insertion order."""
        if k <= 0 or not self.items:
            return []
        sims = self.similarities(query)
        order = np.argsort(-sims, kind="stable")
        out = []
        for i in order:
            if where is None or where(self.items[i]):
                out.append((float(sims[i]), self.items[i]))
                if len(out) == k:
                    break
        return out
