"""The reranker seam: any object with ``score(question, passages)`` reorders the candidates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.errors import ModelError
from rag.rerank import CrossEncoderReranker
from rag.retrieval import Retriever

TURKEY = "000_3b696b7c0f75676d.txt"


class WordCountReranker:
    """A deterministic reranker: a passage scores how often it uses one chosen word."""

    def __init__(self, word: str) -> None:
        self.pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
        self.calls: list[tuple[str, int]] = []

    def score(self, question: str, passages: list[str]) -> list[float]:
        self.calls.append((question, len(passages)))
        return [float(len(self.pattern.findall(passage))) for passage in passages]


@pytest.fixture
def reranked(seeds_copy: Path, seeds_retriever: Retriever) -> tuple[Retriever, WordCountReranker]:
    """A second ``Retriever`` on the session's seeds index, with a word-count reranker."""
    reranker = WordCountReranker("Kazakhstan")
    return Retriever.open(seeds_copy, seeds_retriever.index_dir, reranker=reranker), reranker


def test_reranker_decides_the_order(seeds_retriever: Retriever, reranked: tuple[Retriever, WordCountReranker]) -> None:
    question = "When did Alexander Lukashenka visit Turkey?"
    plain = seeds_retriever.search(question, k=5)
    assert plain[0].source == TURKEY and "Kazakhstan" not in plain[0].text

    retriever, reranker = reranked
    hits = retriever.search(question, k=5)
    assert reranker.calls and reranker.calls[0][0] == question
    counts = [len(reranker.pattern.findall(f"{hit.title}\n{hit.text}")) for hit in hits]
    assert [hit.score for hit in hits] == [float(count) for count in counts]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0
    assert [hit.rank for hit in hits] == [1, 2, 3, 4, 5]
    assert [hit.chunk_id for hit in hits] != [hit.chunk_id for hit in plain]


def test_cross_encoder_needs_a_local_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a local cross-encoder folder"):
        CrossEncoderReranker(tmp_path)
