"""One contract for every vector store the factory builds (FAISS flat, HNSW, IVF; embedded Qdrant), exact flat FAISS the reference."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.config import StoreSettings
from rag.stores.ann_bench import Mixture
from rag.stores.base import VectorStore
from rag.stores.qdrant_store import QdrantStore
from rag.stores.vectors import (
    FLAT_MAX_ROWS,
    configure,
    create_vector_store,
    load_vector_store,
    store_files,
)

#: Skips the Qdrant cases where the optional client library is missing.
needs_qdrant = pytest.mark.skipif(
    importlib.util.find_spec("qdrant_client") is None, reason="qdrant-client is not installed (pip install '.[scale]')"
)
#: The FAISS kinds by index type, and "qdrant": Qdrant's embedded (local) mode.
KINDS = ["flat", "hnsw", "ivf", pytest.param("qdrant", marks=needs_qdrant)]
DIMENSION = 16
ROWS = 2000


def unit_rows(count: int, seed: int = 0, dimension: int = DIMENSION) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dimension)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


#: Ids far apart, negative and huge ones among them (never -1, the "missing" id).
IDS = np.unique(np.random.default_rng(7).integers(-(2**62), 2**62, ROWS + 10))[:ROWS]
VECTORS = unit_rows(ROWS)


def make(kind: str, rows: int, dimension: int = DIMENSION, training: np.ndarray | None = None) -> VectorStore:
    """An empty store of ``kind`` (a FAISS index type, or "qdrant") sized for ``rows`` by the factory."""
    if kind == "qdrant":
        return create_vector_store(dimension, rows, store=StoreSettings("qdrant"))
    return create_vector_store(dimension, rows, kind, training=training)


def build(kind: str, ids: np.ndarray = IDS, vectors: np.ndarray = VECTORS) -> VectorStore:
    """A store of ``kind`` sized for ``len(ids)`` rows by the factory, IVF trained on the rows."""
    store = make(kind, len(ids), vectors.shape[1], training=vectors if kind == "ivf" else None)
    store.add(ids, vectors)
    return store


def reference(queries: np.ndarray, k: int, ids: np.ndarray = IDS, vectors: np.ndarray = VECTORS) -> np.ndarray:
    """The exact top ``k`` ids per query, by brute force."""
    return ids[np.argsort(-(queries @ vectors.T), axis=1, kind="stable")[:, :k]]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module", params=KINDS)
def built(request: pytest.FixtureRequest) -> VectorStore:
    """One store of each kind over ``IDS``/``VECTORS``, shared: tests must not change it."""
    return build(request.param)


@pytest.fixture
def store(kind: str) -> VectorStore:
    """A fresh store of each kind over ``IDS``/``VECTORS``, free to change."""
    return build(kind)


def test_implements_the_protocol_with_json_ready_params(built: VectorStore) -> None:
    assert isinstance(built, VectorStore)
    assert (built.dimension, len(built)) == (DIMENSION, ROWS)
    params = built.params()
    assert json.loads(json.dumps(params)) == params
    backend = "qdrant" if isinstance(built, QdrantStore) else "faiss"
    assert params["backend"] == backend and params["dimension"] == DIMENSION


def test_results_are_best_first_and_agree_with_the_exact_reference(built: VectorStore) -> None:
    queries = unit_rows(20, seed=1)
    scores, ids = built.search(queries, 10)
    assert ids.shape == scores.shape == (20, 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    expected = reference(queries, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), expected.tolist())])
    assert overlap == 1.0 if built.params()["kind"] == "flat" else overlap >= 0.9
    _, own = built.search(VECTORS[:50], 1)
    assert own[:, 0].tolist() == IDS[:50].tolist()


def test_exact_scores_are_inner_products(built: VectorStore) -> None:
    query = unit_rows(1, seed=2)
    scores, ids = built.search(query, 5)
    rows = np.searchsorted(IDS, ids[0])
    tolerance = 0.02 if built.params()["kind"] == "ivf" else 1e-5
    assert scores[0] == pytest.approx(VECTORS[rows] @ query[0], abs=tolerance)


def test_k_larger_than_the_store_returns_each_vector_once(built: VectorStore) -> None:
    scores, ids = built.search(unit_rows(2, seed=3), ROWS + 500)
    assert ids.shape == (2, ROWS)
    for row in ids.tolist():
        assert sorted(row) == sorted(IDS.tolist())
    assert np.isfinite(scores).all()


def test_k_is_clipped_to_at_least_one(built: VectorStore) -> None:
    _, ids = built.search(unit_rows(2, seed=4), 0)
    assert ids.shape == (2, 1) and (ids != -1).all()


def test_an_empty_store_returns_only_empty_places(kind: str) -> None:
    empty = make(kind, 0)
    scores, ids = empty.search(unit_rows(2), 5)
    assert ids.tolist() == [[-1], [-1]] and (scores == -np.inf).all()


def test_empty_allowed_set_returns_only_empty_places(built: VectorStore) -> None:
    scores, ids = built.search(unit_rows(2, seed=5), 4, allowed=set())
    assert ids.tolist() == [[-1] * 4] * 2 and (scores == -np.inf).all()


def test_allowed_with_fewer_than_k_ids_returns_them_then_empty_places(built: VectorStore) -> None:
    allowed = set(IDS[[3, 777, 1500]].tolist()) | {12345}  # 12345 is no id of the store
    scores, ids = built.search(unit_rows(2, seed=6), 10, allowed=allowed)
    for row, row_scores in zip(ids.tolist(), scores):
        assert set(row[:3]) == allowed - {12345} and row[3:] == [-1] * 7
        assert np.isfinite(row_scores[:3]).all() and (row_scores[3:] == -np.inf).all()


@pytest.mark.parametrize("share", [0.01, 0.3])
def test_allowed_fills_k_from_the_allowed_ids_only(built: VectorStore, share: float) -> None:
    allowed = set(np.random.default_rng(8).choice(IDS, int(share * ROWS), replace=False).tolist())
    queries = unit_rows(10, seed=9)
    _, ids = built.search(queries, 10, allowed=allowed)
    assert (ids != -1).all() and set(ids.ravel().tolist()) <= allowed
    allowed_rows = np.isin(IDS, list(allowed))
    expected = reference(queries, 10, IDS[allowed_rows], VECTORS[allowed_rows])
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids.tolist(), expected.tolist())])
    assert overlap >= 0.9


def test_excluded_covering_nearly_all_leaves_the_rest(built: VectorStore) -> None:
    kept = IDS[[10, 1000, 1999]].tolist()
    excluded = set(IDS.tolist()) - set(kept)
    _, ids = built.search(unit_rows(3, seed=10), 10, excluded=excluded)
    for row in ids.tolist():
        assert sorted(row[:3]) == sorted(kept) and row[3:] == [-1] * 7


def test_allowed_and_excluded_together(built: VectorStore) -> None:
    allowed = set(IDS[:40].tolist())
    excluded = set(IDS[:30].tolist()) | set(IDS[500:600].tolist())
    _, ids = built.search(unit_rows(2, seed=11), 10, allowed=allowed, excluded=excluded)
    for row in ids.tolist():
        assert sorted(row) == sorted(IDS[30:40].tolist())


@settings(max_examples=25, deadline=None)
@given(
    allowed_rows=st.none() | st.sets(st.integers(0, ROWS - 1), max_size=400),
    excluded_rows=st.sets(st.integers(0, ROWS - 1), max_size=1900),
    k=st.integers(0, 40),
    seed=st.integers(0, 2**16),
)
def test_results_never_break_the_filters(
    built: VectorStore, allowed_rows: set[int] | None, excluded_rows: set[int], k: int, seed: int
) -> None:
    allowed = None if allowed_rows is None else set(IDS[sorted(allowed_rows)].tolist())
    excluded = set(IDS[sorted(excluded_rows)].tolist())
    eligible = (set(IDS.tolist()) if allowed is None else allowed) - excluded
    scores, ids = built.search(unit_rows(2, seed=seed), k, allowed=allowed, excluded=excluded)
    for row, row_scores in zip(ids.tolist(), scores):
        found = [i for i in row if i != -1]
        assert set(found) <= eligible and len(set(found)) == len(found)
        assert len(found) == min(max(1, k), len(eligible))
        assert (np.diff(row_scores[: len(found)]) <= 1e-6).all() and (row_scores[len(found) :] == -np.inf).all()


def test_removed_ids_are_gone_and_not_counted(store: VectorStore) -> None:
    removed = IDS[:100].tolist()
    store.remove([*removed, 424242])  # unknown ids are ignored
    store.remove(removed[:10])  # and so are ids removed before
    assert len(store) == ROWS - 100
    _, ids = store.search(VECTORS[:100], 5)
    assert set(ids.ravel().tolist()).isdisjoint(removed)
    _, ids = store.search(VECTORS[:1], ROWS)
    assert sorted(ids[0].tolist()) == sorted(IDS[100:].tolist())
    _, ids = store.search(VECTORS[:1], 10, allowed=set(IDS[:105].tolist()))
    assert sorted(i for i in ids[0].tolist() if i != -1) == sorted(IDS[100:105].tolist())


def test_a_removed_id_comes_back_with_its_new_vector(store: VectorStore) -> None:
    target, other = int(IDS[5]), VECTORS[1234]
    store.remove([target])
    store.add(np.array([target]), other[None, :])
    assert len(store) == ROWS
    _, ids = store.search(VECTORS[5:6], ROWS)
    assert ids[0].tolist().count(target) == 1 and ids[0, 0] != target  # the old vector is gone
    _, ids = store.search(other[None, :], 2)
    assert set(ids[0].tolist()) == {target, int(IDS[1234])}
    assert store.vectors([target])[0] == pytest.approx(other, abs=0.02)


def test_vectors_round_trip_in_order(built: VectorStore) -> None:
    rows = [1999, 0, 17, 17, 640]
    stored = built.vectors(IDS[rows].tolist())
    assert stored.dtype == np.float32 and stored.shape == (5, DIMENSION)
    tolerance = 0.02 if built.params()["kind"] == "ivf" else 0.0
    assert np.abs(stored - VECTORS[rows]).max() <= tolerance
    assert built.vectors([]).shape == (0, DIMENSION)
    with pytest.raises(KeyError):
        built.vectors([int(IDS[0]), 31337])


def test_save_and_reopen_through_the_factory(store: VectorStore, tmp_path: Path) -> None:
    store.remove(IDS[:10].tolist())
    path = tmp_path / "vectors.faiss"
    store.save(path)
    params = json.loads(json.dumps(store.params()))
    assert sorted(file for file in tmp_path.rglob("*") if file.is_file()) == sorted(store_files(path, params))
    opened = load_vector_store(path, params)
    assert (opened.params(), len(opened), opened.dimension) == (params, ROWS - 10, DIMENSION)
    queries = unit_rows(5, seed=12)
    for result, expected in zip(opened.search(queries, 10), store.search(queries, 10)):
        assert result.tolist() == expected.tolist()
    assert opened.vectors(IDS[10:20].tolist()).tolist() == store.vectors(IDS[10:20].tolist()).tolist()
    opened.add(IDS[:10], VECTORS[:10])  # the saved files are copied into memory, not written
    opened.remove(IDS[10:20].tolist())
    assert len(opened) == ROWS - 10 and len(load_vector_store(path, params)) == ROWS - 10


def test_saving_replaces_the_file_so_open_readers_keep_theirs(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "vectors.faiss"
    first = build(kind)
    first.save(path)
    reader = load_vector_store(path, first.params())
    files = store_files(path, first.params())
    before = [file.stat().st_ino for file in files]
    build(kind, IDS[:100], VECTORS[:100]).save(path)
    assert all(file.stat().st_ino != inode for file, inode in zip(files, before, strict=True))
    assert len(reader) == ROWS and reader.search(VECTORS[:1], 1)[1][0, 0] == IDS[0]


def test_open_rejects_params_that_do_not_describe_the_file(tmp_path: Path) -> None:
    path = tmp_path / "vectors.faiss"
    saved = build("hnsw", IDS[:100], VECTORS[:100])
    saved.save(path)
    params = saved.params()
    for wrong in ({**params, "kind": "flat"}, {**params, "kind": "ivf"}, {**params, "dimension": 8}, {**params, "m": 8}):
        with pytest.raises(ValueError):
            load_vector_store(path, wrong)
    with pytest.raises(ValueError):
        load_vector_store(path, {**params, "backend": "nowhere"})


def test_add_rejects_the_missing_id_and_a_wrong_dimension(kind: str) -> None:
    store = make(kind, 10)
    with pytest.raises(ValueError):
        store.add(np.array([4, -1]), unit_rows(2))
    with pytest.raises(ValueError):
        store.add(np.array([4]), unit_rows(1, dimension=DIMENSION + 1))


def test_ivf_without_training_vectors_trains_on_its_first_adds() -> None:
    store = create_vector_store(DIMENSION, ROWS, "ivf")
    for first in range(0, 500, 50):  # fewer rows than the training wants: trains when searched
        store.add(IDS[first : first + 50], VECTORS[first : first + 50])
    assert len(store) == 500
    assert store.search(VECTORS[:5], 1)[1][:, 0].tolist() == IDS[:5].tolist()
    assert store.params()["nlist"] == 500 // 39
    store.add(IDS[500:], VECTORS[500:])
    assert len(store) == ROWS and store.search(VECTORS[1990:], 1)[1][:, 0].tolist() == IDS[1990:].tolist()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_recall_at_10_against_flat_on_clustered_vectors(kind: str) -> None:
    rows, dimension = 4000, 64
    mixture = Mixture(dimension, seed=3, centres=200, topics=8)
    vectors, queries = mixture.sample(rows, 0), mixture.queries(100)
    ids = np.arange(rows, dtype=np.int64) * 11 + 5
    exact = build("flat", ids, vectors).search(queries, 10)[1]
    approximate = build(kind, ids, vectors).search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approximate.tolist(), exact.tolist())])
    assert recall >= 0.95


def test_configure_picks_the_kind_by_size() -> None:
    assert configure(0) == {"backend": "faiss", "kind": "flat"}
    assert configure(FLAT_MAX_ROWS)["kind"] == "flat"
    assert configure(FLAT_MAX_ROWS + 1)["kind"] == "ivf"
    assert configure(1_000_000) == {"backend": "faiss", "kind": "ivf", "nlist": 2000, "nprobe": 31, "encoding": "SQ8"}
    assert configure(200_000)["nprobe"] == 16  # at least 16 of the 894 cells
    assert configure(5_000_000, "flat") == {"backend": "faiss", "kind": "flat"}
    assert configure(100_000, "hnsw") == {
        "backend": "faiss", "kind": "hnsw", "m": 32, "ef_construction": 64, "ef_search": 64,
    }
    assert configure(100_001, "hnsw")["ef_search"] == 256
    small = configure(100, "ivf")
    assert small["nlist"] == 2 and small["nprobe"] == 2  # 39 rows a cell; never more probes than cells
    assert configure(5, "ivf")["nlist"] == 1
    with pytest.raises(ValueError):
        configure(10, "annoy")
