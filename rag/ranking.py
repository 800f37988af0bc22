"""Pure ranking functions: rank fusion, overlap de-duplication and MMR diversification.

>>> reciprocal_rank_fusion([[1, 2], [2, 3]], k=60)[0][0]
2
>>> convex_fusion({1: 0.9, 2: 0.8, 4: 0.1}, {2: 10.0, 3: 4.0}, dense_weight=0.5)[0][0]
2
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np

Key = TypeVar("Key", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Key]], k: int = 60) -> list[tuple[Key, float]]:
    """Fuse ranked lists by ``sum(1 / (k + rank))`` (ranks start at 1); best first."""
    scores: dict[Key, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])


def min_max(scores: Mapping[Key, float], floor: float | None = None) -> dict[Key, float]:
    """Scale scores to [0, 1]; a list whose scores are all equal maps to 1.

    ``floor`` is the lowest score when known beyond the list (BM25's 0 for every unlisted
    document once a list holds every match); by default it is the list's own minimum.
    """
    if not scores:
        return {}
    low, high = min(scores.values()) if floor is None else floor, max(scores.values())
    if high == low:
        return {key: 1.0 for key in scores}
    return {key: (value - low) / (high - low) for key, value in scores.items()}


def convex_fusion(
    dense: Mapping[Key, float],
    lexical: Mapping[Key, float],
    dense_weight: float = 0.5,
    lexical_floor: float | None = None,
) -> list[tuple[Key, float]]:
    """Fuse by ``w * minmax(dense) + (1 - w) * minmax(lexical, lexical_floor)``; absent keys count 0; best first."""
    dense_n, lexical_n = min_max(dense), min_max(lexical, lexical_floor)
    fused = {
        key: dense_weight * dense_n.get(key, 0.0) + (1.0 - dense_weight) * lexical_n.get(key, 0.0)
        for key in dense_n.keys() | lexical_n.keys()
    }
    return sorted(fused.items(), key=lambda item: -item[1])


def overlap_fraction(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Length of the intersection of two spans over the length of the shorter one."""
    shared = min(a[1], b[1]) - max(a[0], b[0])
    shorter = min(a[1] - a[0], b[1] - b[0])
    return max(shared, 0) / shorter if shorter > 0 else 0.0


def drop_overlapping(
    items: Sequence[Key], span_of: Callable[[Key], tuple[str, int, int]], max_overlap: float = 0.5
) -> list[Key]:
    """Keep items in order, dropping any whose span overlaps a kept span of the same source
    by more than ``max_overlap`` of the shorter span."""
    kept: list[Key] = []
    spans: dict[str, list[tuple[int, int]]] = {}
    for item in items:
        source, start, end = span_of(item)
        if any(overlap_fraction((start, end), other) > max_overlap for other in spans.get(source, [])):
            continue
        kept.append(item)
        spans.setdefault(source, []).append((start, end))
    return kept


def maximal_marginal_relevance(
    query: np.ndarray, candidates: np.ndarray, k: int, trade_off: float = 0.7
) -> list[int]:
    """Indices of ``k`` candidate rows chosen by MMR: ``λ·sim(q, d) − (1−λ)·max sim(d, chosen)``.

    Rows and query must be unit vectors. ``trade_off`` 1.0 is pure relevance.
    """
    relevance = candidates @ query
    chosen: list[int] = []
    redundancy = np.full(len(candidates), -np.inf)
    remaining = np.ones(len(candidates), dtype=bool)
    for _ in range(min(k, len(candidates))):
        penalty = np.where(np.isfinite(redundancy), redundancy, 0.0)
        scores = np.where(remaining, trade_off * relevance - (1 - trade_off) * penalty, -np.inf)
        best = int(np.argmax(scores))
        chosen.append(best)
        remaining[best] = False
        redundancy = np.maximum(redundancy, candidates @ candidates[best])
    return chosen
