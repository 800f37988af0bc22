"""The FAISS vector store: exact inner-product search, id map, filtering inside FAISS, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.stores.faiss_store import FaissStore


def unit_rows(count: int, dimension: int = 8, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def store() -> FaissStore:
    store = FaissStore.create(8)
    store.add(np.arange(100, 120), unit_rows(20))
    return store


def test_search_matches_brute_force_inner_product(store: FaissStore) -> None:
    query = unit_rows(1, seed=1)
    scores, ids = store.search(query, 5)
    expected = np.argsort(-(unit_rows(20) @ query[0]))[:5] + 100
    assert ids[0].tolist() == expected.tolist()
    assert scores[0] == pytest.approx(np.sort(unit_rows(20) @ query[0])[::-1][:5], abs=1e-5)


def test_allowed_ids_filter_inside_faiss_and_still_fill_k(store: FaissStore) -> None:
    allowed = {103, 111, 117, 119}
    scores, ids = store.search(unit_rows(1, seed=2), 4, allowed)
    assert set(ids[0].tolist()) == allowed
    assert list(scores[0]) == sorted(scores[0], reverse=True)


def test_empty_allowed_set_returns_only_empty_places(store: FaissStore) -> None:
    _, ids = store.search(unit_rows(1, seed=3), 3, set())
    assert ids.tolist() == [[-1, -1, -1]]


def test_k_larger_than_the_store_is_capped(store: FaissStore) -> None:
    _, ids = store.search(unit_rows(1), 1000)
    assert sorted(ids[0].tolist()) == list(range(100, 120))


def test_remove_and_reconstruct_by_id(store: FaissStore) -> None:
    store.remove([100, 101, 999])
    assert len(store) == 18
    _, ids = store.search(unit_rows(1), 20)
    assert {100, 101}.isdisjoint(ids[0].tolist())
    assert store.vectors([105, 102]) == pytest.approx(unit_rows(20)[[5, 2]])
    assert store.vectors([]).shape == (0, 8)


def test_save_and_load_round_trip(store: FaissStore, tmp_path: Path) -> None:
    store.save(tmp_path / "vectors.faiss")
    loaded = FaissStore.load(tmp_path / "vectors.faiss")
    assert (len(loaded), loaded.dimension) == (20, 8)
    query = unit_rows(1, seed=4)
    assert loaded.search(query, 3)[1].tolist() == store.search(query, 3)[1].tolist()
