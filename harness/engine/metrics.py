"""Pass@k estimators and bootstrap confidence intervals (DESIGN.md §3 "Evaluation").

Pass@k is the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k) / C(n, k), computed in the
numerically stable product form 1 - prod_{i=n-c+1}^{n} (1 - k / i).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) passes."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got c={c}, n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in 1..n (n={n})")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean over problems of pass@k; `counts` holds (n, c) per problem."""
    if not counts:
        return float("nan")
    return float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
