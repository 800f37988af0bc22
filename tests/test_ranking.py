"""Pure ranking functions on hand-worked examples: fusion, min-max, overlap de-duplication, MMR."""

from __future__ import annotations

import numpy as np
import pytest

from rag.ranking import (
    convex_fusion,
    drop_overlapping,
    maximal_marginal_relevance,
    min_max,
    overlap_fraction,
    reciprocal_rank_fusion,
)


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]], k=1))
    assert fused == pytest.approx({"a": 1 / 2, "b": 1 / 3 + 1 / 2, "c": 1 / 4 + 1 / 3, "d": 1 / 4})
    assert [key for key, _ in reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "d"]], k=1)] == ["b", "c", "a", "d"]


def test_rrf_with_large_k_favours_agreement_over_one_top_rank() -> None:
    ranked = reciprocal_rank_fusion([["x", "y"], ["z", "y"]], k=60)
    assert ranked[0] == ("y", pytest.approx(2 / 62))


def test_rrf_of_nothing_is_empty() -> None:
    assert reciprocal_rank_fusion([[], []]) == []


def test_convex_fusion_hand_worked() -> None:
    dense = {1: 0.9, 2: 0.5, 3: 0.1}  # min-max: 1.0, 0.5, 0.0
    lexical = {2: 10.0, 4: 4.0, 3: 2.0}  # min-max: 1.0, 0.25, 0.0
    fused = convex_fusion(dense, lexical, dense_weight=0.5)
    assert [key for key, _ in fused] == [2, 1, 4, 3]
    assert dict(fused) == pytest.approx({2: 0.75, 1: 0.5, 4: 0.125, 3: 0.0})


@pytest.mark.parametrize(("weight", "order"), [(1.0, [1, 2]), (0.0, [2, 1])])
def test_convex_fusion_weight_extremes_follow_one_list(weight: float, order: list[int]) -> None:
    fused = convex_fusion({1: 0.9, 2: 0.1}, {1: 1.0, 2: 5.0}, dense_weight=weight)
    assert [key for key, _ in fused] == order


def test_convex_fusion_lexical_floor_scales_from_zero() -> None:
    dense = {1: 0.9, 2: 0.5, 3: 0.1}  # min-max: 1.0, 0.5, 0.0
    lexical = {2: 10.0, 3: 8.0}  # from its own minimum: 1.0, 0.0; from a floor of 0: 1.0, 0.8
    assert dict(convex_fusion(dense, lexical, 0.5)) == pytest.approx({1: 0.5, 2: 0.75, 3: 0.0})
    assert dict(convex_fusion(dense, lexical, 0.5, lexical_floor=0.0)) == pytest.approx({1: 0.5, 2: 0.75, 3: 0.4})


def test_convex_fusion_with_one_empty_list_keeps_the_other_order() -> None:
    assert [key for key, _ in convex_fusion({}, {"a": 1.0, "b": 3.0})] == ["b", "a"]


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ({}, {}),
        ({"only": -3.0}, {"only": 1.0}),
        ({"a": 2.0, "b": 2.0}, {"a": 1.0, "b": 1.0}),
        ({"a": -1.0, "b": 0.0, "c": 3.0}, {"a": 0.0, "b": 0.25, "c": 1.0}),
    ],
    ids=["empty", "single", "all-equal", "negative"],
)
def test_min_max_edge_cases(scores: dict[str, float], expected: dict[str, float]) -> None:
    assert min_max(scores) == pytest.approx(expected)



@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [((0, 10), (5, 15), 0.5), ((0, 10), (10, 20), 0.0), ((0, 10), (2, 4), 1.0), ((0, 0), (0, 5), 0.0)],
)
def test_overlap_fraction_is_relative_to_the_shorter_span(a: tuple[int, int], b: tuple[int, int], expected: float) -> None:
    assert overlap_fraction(a, b) == expected


def test_drop_overlapping_keeps_first_of_each_near_duplicate() -> None:
    items = [
        ("a.txt", 0, 100),  # kept
        ("a.txt", 40, 140),  # 60 % of it overlaps the first: dropped
        ("b.txt", 0, 100),  # other source: kept
        ("a.txt", 50, 150),  # exactly 50 % over the first: kept (the limit is "more than")
        ("a.txt", 60, 110),  # inside both kept a.txt spans: dropped
        ("a.txt", 150, 200),  # touches the last kept span only at its edge: kept
    ]
    assert drop_overlapping(items, lambda item: item) == [items[0], items[2], items[3], items[5]]


def test_drop_overlapping_threshold_is_configurable() -> None:
    items = [("a.txt", 0, 100), ("a.txt", 90, 190)]
    assert drop_overlapping(items, lambda item: item, max_overlap=0.05) == items[:1]
    assert drop_overlapping(items, lambda item: item, max_overlap=0.5) == items


def _unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_mmr_pure_relevance_is_plain_similarity_order() -> None:
    query = _unit(1, 0)
    candidates = np.vstack([_unit(1, 0.3), _unit(1, 0.1), _unit(0.2, 1)])
    assert maximal_marginal_relevance(query, candidates, k=3, trade_off=1.0) == [1, 0, 2]


def test_mmr_skips_a_near_duplicate_of_what_it_already_chose() -> None:
    # Similarity to the query: 0.995, 0.993, 0.894; 0 and 1 are near-duplicates (0.9998).
    # After 0, MMR(0.5) gives 1: 0.5·0.993 − 0.5·0.9998 < 0 and 2: 0.5·0.894 − 0.5·0.846 > 0.
    query = _unit(1, 0)
    candidates = np.vstack([_unit(1, 0.1), _unit(1, 0.12), _unit(1, -0.5)])
    assert maximal_marginal_relevance(query, candidates, k=2, trade_off=1.0) == [0, 1]
    assert maximal_marginal_relevance(query, candidates, k=2, trade_off=0.5) == [0, 2]


def test_mmr_never_returns_more_than_the_candidates() -> None:
    candidates = np.vstack([_unit(1, 0), _unit(0, 1)])
    assert sorted(maximal_marginal_relevance(_unit(1, 1), candidates, k=5)) == [0, 1]
