"""The bm25s lexical store: stemming and stop words, filtering by weight mask, persistence, term overlap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.stores.lexical import LexicalStore, term_overlap

TEXTS = [
    "Belarus signed a memorandum with Roketsan on missile technologies.",
    "The Polonaise rocket launchers were delivered to Azerbaijan.",
    "Chinese corporations visited the Great Stone industrial park.",
    "Missiles and rockets: Belarus develops its own missile programme.",
]


@pytest.fixture
def store() -> LexicalStore:
    return LexicalStore.build(np.array([10, 20, 30, 40]), TEXTS)


def test_stemming_matches_inflected_forms(store: LexicalStore) -> None:
    scores, ids = store.search("missiles", 10)
    assert set(ids.tolist()) == {10, 40}
    assert ids[0] == 40  # two occurrences of the stem "missil"
    assert list(scores) == sorted(scores, reverse=True)


def test_only_positive_scores_come_back(store: LexicalStore) -> None:
    _, ids = store.search("Polonaise", 10)
    assert ids.tolist() == [20]


@pytest.mark.parametrize("query", ["the and of", "zzzz unknownword", "   "])
def test_stop_words_or_unknown_terms_give_nothing(store: LexicalStore, query: str) -> None:
    scores, ids = store.search(query, 5)
    assert len(scores) == len(ids) == 0


def test_allowed_ids_filter_inside_bm25(store: LexicalStore) -> None:
    _, ids = store.search("Belarus missile", 10, allowed={40, 30})
    assert ids.tolist() == [40]
    assert len(store.search("Belarus missile", 10, allowed={999})[1]) == 0


def test_save_and_load_round_trip(store: LexicalStore, tmp_path: Path) -> None:
    store.save(tmp_path / "lexical")
    loaded = LexicalStore.load(tmp_path / "lexical")
    assert len(loaded) == 4
    for query in ("Roketsan", "Great Stone park", "missiles Belarus"):
        before, after = store.search(query, 4), loaded.search(query, 4)
        assert after[1].tolist() == before[1].tolist()
        assert after[0] == pytest.approx(before[0])


def test_an_empty_store_searches_to_nothing(tmp_path: Path) -> None:
    empty = LexicalStore.build(np.zeros(0, dtype=np.int64), [])
    empty.save(tmp_path / "empty")
    assert len(LexicalStore.load(tmp_path / "empty").search("Belarus", 3)[1]) == 0


def test_term_overlap_is_the_share_of_distinct_question_stems() -> None:
    shares = term_overlap("Belarus buys missiles", ["A missile for Belarus.", "Belarus.", "Nothing."])
    assert shares == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert term_overlap("the of and", ["anything"]) == [0.0]
