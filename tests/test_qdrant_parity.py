"""The seeds indexed with embedded Qdrant answer exactly as with the default FAISS store, filters included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.cli import main
from rag.config import StoreSettings
from rag.embedding import passage_embedder
from rag.retrieval import Retriever
from rag.stores.passages import Filters
from rag.stores.qdrant_store import QdrantStore

from .conftest import DATA
from .stores.test_vector_contract import needs_qdrant

pytestmark = [pytest.mark.slow, needs_qdrant]

QUESTIONS = [json.loads(line)["question"] for line in (DATA / "seeds_qa.jsonl").read_text(encoding="utf-8").splitlines()]


class OnceEmbedder:
    """The real passage embedder, embedding each distinct text once for both indexes."""

    def __init__(self) -> None:
        self._inner = passage_embedder()
        self._vectors: dict[str, np.ndarray] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [text for text in dict.fromkeys(texts) if text not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._inner.encode(missing)))
        return np.asarray([self._vectors[text] for text in texts], dtype=np.float32).reshape(len(texts), -1)


@pytest.fixture(scope="module")
def indexes(seeds_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Retriever]:
    """The seeds indexed with FAISS ("faiss") and with embedded Qdrant ("qdrant"), embedded once."""
    embedder = OnceEmbedder()
    return {
        name: Retriever.open(seeds_copy, tmp_path_factory.mktemp(name), embed=lambda: embedder, store=store)
        for name, store in (("faiss", None), ("qdrant", StoreSettings("qdrant")))
    }


def same(found: Any, expected: Any) -> bool:
    """Equal, but for floats within 1e-5: embedded Qdrant sums a query's products in float64, FAISS in float32,
    so a dense score may differ in its seventh digit (the sixth once rounded for display)."""
    if isinstance(expected, float):
        return isinstance(found, float) and abs(found - expected) <= 1e-5
    if isinstance(expected, dict):
        return isinstance(found, dict) and found.keys() == expected.keys() and all(same(found[k], expected[k]) for k in expected)
    if isinstance(expected, list):
        return isinstance(found, list) and len(found) == len(expected) and all(map(same, found, expected))
    return bool(found == expected)


def stores(retriever: Retriever) -> set[str]:
    with retriever._lease() as index:
        return {type(segment.vectors).__name__ for segment in index.live.segments.values()}


def dense(retriever: Retriever, queries: np.ndarray, **restrict: Any) -> tuple[np.ndarray, np.ndarray]:
    with retriever._lease() as index:
        return index.live.vectors.search(queries, 10, **restrict)


def test_the_qdrant_index_keeps_its_store_and_reopens_without_being_told(indexes: dict[str, Retriever], seeds_copy: Path) -> None:
    assert stores(indexes["faiss"]) == {"FaissStore"} and stores(indexes["qdrant"]) == {QdrantStore.__name__}
    reopened = Retriever.open(seeds_copy, indexes["qdrant"].index_dir)
    assert reopened.report.action == "opened" and stores(reopened) == {QdrantStore.__name__}


def test_dense_search_returns_the_same_top_10_for_every_question(indexes: dict[str, Retriever]) -> None:
    queries = indexes["faiss"].encode_questions(QUESTIONS)
    expected_scores, expected = dense(indexes["faiss"], queries)
    scores, found = dense(indexes["qdrant"], queries)
    assert (expected != -1).all() and found.tolist() == expected.tolist()
    assert np.allclose(scores, expected_scores, atol=1e-5)


FILTERS = [
    Filters(sources=("003_d66b08127121952b.txt",)),
    Filters(date_from="2017-12-17", date_to="2018-06-11"),  # two briefs, each meeting one bound on its last day
    Filters(categories=("Security issues",), date_to="2019-04-15"),
    Filters(trends=("unchanged",)),
]


@pytest.mark.parametrize("filters", FILTERS, ids=["source", "dates", "category-and-date", "trend"])
def test_filters_pushed_into_qdrant_select_what_faiss_selects_with_the_allowed_ids(
    indexes: dict[str, Retriever], filters: Filters
) -> None:
    resolved = indexes["faiss"].resolve_filters(filters)
    assert resolved is not None
    with indexes["faiss"]._lease() as index:
        allowed = set(index.live.passages.filtered_ids(resolved))
    assert allowed
    queries = indexes["faiss"].encode_questions(QUESTIONS[::4])
    expected = dense(indexes["faiss"], queries, allowed=allowed)[1]
    assert dense(indexes["qdrant"], queries, filters=resolved)[1].tolist() == expected.tolist()  # payloads alone
    for question in QUESTIONS[::4]:
        for mode in ("dense", "hybrid"):
            found = [hit.to_dict() for hit in indexes["qdrant"].search(question, 5, mode=mode, filters=filters)]
            assert same(found, [hit.to_dict() for hit in indexes["faiss"].search(question, 5, mode=mode, filters=filters)])


def test_rag_ask_answers_every_question_identically(
    indexes: dict[str, Retriever], seeds_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = tmp_path / "questions.txt"
    batch.write_text("\n".join(QUESTIONS) + "\n", encoding="utf-8")
    answers = {}
    for name, retriever in indexes.items():
        code = main(["ask", "--store", name, "--batch", str(batch), "--corpus", str(seeds_copy), "--index-dir", str(retriever.index_dir)])
        out, err = capsys.readouterr()
        assert code == 0 and "rebuilt" not in err  # each index already keeps its vectors in the store named
        answers[name] = [json.loads(line) for line in out.splitlines()]
    assert len(answers["faiss"]) == len(QUESTIONS) and same(answers["qdrant"], answers["faiss"])
