"""BM25 over segments: stemming and stop words, filtering, persistence, merging, and bm25s as the reference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.stores.lexical import Bm25, LexicalSegment, term_overlap, terms

TEXTS = [
    "Belarus signed a memorandum with Roketsan on missile technologies.",
    "The Polonaise rocket launchers were delivered to Azerbaijan.",
    "Chinese corporations visited the Great Stone industrial park.",
    "Missiles and rockets: Belarus develops its own missile programme.",
]
SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "benchmarks" / "scifact" / "corpus.jsonl"


def alive(segment: LexicalSegment) -> tuple[LexicalSegment, np.ndarray]:
    return segment, np.ones(len(segment), dtype=bool)


@pytest.fixture
def store() -> Bm25:
    return Bm25([alive(LexicalSegment.build([10, 20, 30, 40], TEXTS))])


def test_stemming_matches_inflected_forms(store: Bm25) -> None:
    scores, ids = store.search("missiles", 10)
    assert set(ids.tolist()) == {10, 40}
    assert ids[0] == 40  # two occurrences of the stem "missil"
    assert list(scores) == sorted(scores, reverse=True)


def test_only_positive_scores_come_back(store: Bm25) -> None:
    _, ids = store.search("Polonaise", 10)
    assert ids.tolist() == [20]


@pytest.mark.parametrize("query", ["the and of", "zzzz unknownword", "   "])
def test_stop_words_or_unknown_terms_give_nothing(store: Bm25, query: str) -> None:
    scores, ids = store.search(query, 5)
    assert len(scores) == len(ids) == 0


def test_allowed_ids_filter_results_not_statistics(store: Bm25) -> None:
    scores, ids = store.search("Belarus missile", 10, allowed={40, 30})
    assert ids.tolist() == [40]
    assert scores[0] == pytest.approx(dict(zip(*store.search("Belarus missile", 10)[::-1]))[40])
    assert len(store.search("Belarus missile", 10, allowed={999})[1]) == 0
    assert len(store.search("Belarus missile", 10, allowed=set())[1]) == 0


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    segment = LexicalSegment.build([10, 20, 30, 40], TEXTS)
    segment.save(tmp_path / "lexical")
    before, after = Bm25([alive(segment)]), Bm25([alive(LexicalSegment.load(tmp_path / "lexical"))])
    assert len(after) == 4
    for query in ("Roketsan", "Great Stone park", "missiles Belarus"):
        assert after.search(query, 4)[1].tolist() == before.search(query, 4)[1].tolist()
        assert after.search(query, 4)[0] == pytest.approx(before.search(query, 4)[0])


def test_a_damaged_segment_is_refused(tmp_path: Path) -> None:
    LexicalSegment.build([10, 20], TEXTS[:2]).save(tmp_path / "lexical")
    np.save(tmp_path / "lexical" / "lengths.npy", np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match="disagree"):
        LexicalSegment.load(tmp_path / "lexical")


def test_an_empty_store_searches_to_nothing(tmp_path: Path) -> None:
    LexicalSegment.build([], []).save(tmp_path / "empty")
    empty = Bm25([alive(LexicalSegment.load(tmp_path / "empty"))])
    assert len(empty) == 0 and len(empty.search("Belarus", 3)[1]) == 0 and empty.idf("belarus") == 0


def _reference(texts: list[str], query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    import bm25s
    import Stemmer

    model = bm25s.BM25()
    model.index(bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False),
                show_progress=False)
    tokens = [token for token in terms(query) if token in model.vocab_dict]
    positions, scores = model.retrieve([tokens], k=k, show_progress=False)
    return scores[0], positions[0]


def _scifact(count: int) -> list[str]:
    if not SCIFACT.exists():
        pytest.skip(f"{SCIFACT} is not here")
    with SCIFACT.open(encoding="utf-8") as lines:
        return [json.loads(line)["text"] for line, _ in zip(lines, range(count))]


QUERIES = ["protein binding in cancer cells cells", "vitamin D deficiency and bone density", "T cell receptor"]


@pytest.mark.parametrize("query", QUERIES)
def test_scores_equal_bm25s_over_the_live_texts_however_they_are_segmented(query: str) -> None:
    texts = _scifact(1200)
    live = [i for i in range(len(texts)) if i % 7]  # every seventh text is dead (deleted or replaced)
    expected_scores, expected_rows = _reference([texts[i] for i in live], query, 10)
    expected_ids = [live[row] for row in expected_rows]
    split = [(0, 400), (400, 1000), (1000, 1200)]  # three segments, dead rows inside each
    parts = [
        (LexicalSegment.build(list(range(a, b)), texts[a:b]), np.array([i % 7 != 0 for i in range(a, b)]))
        for a, b in split
    ]
    for store in (Bm25(parts), Bm25([alive(LexicalSegment.merge(parts))])):
        scores, ids = store.search(query, 10)
        assert ids.tolist() == expected_ids
        assert scores == pytest.approx(expected_scores, rel=1e-5)


#: Words from very rare to very common, so a few rare terms settle the top k and the common ones are pruned.
WORDS = ["missile", "radar", "chassis", "drone", "treaty", "export", "army", "china", "turkey", "belarus"]
_word = st.sampled_from([word for rank, word in enumerate(WORDS, start=1) for _ in range(rank * rank)])


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.lists(_word, min_size=1, max_size=12).map(" ".join), min_size=1, max_size=60),
    query=st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join),
    k=st.integers(1, 8),
    dead=st.sets(st.integers(0, 59)),
)
def test_pruned_search_returns_the_exhaustive_top_k(texts: list[str], query: str, k: int, dead: set[int]) -> None:
    """Skipping common terms for texts they alone hold (MaxScore) never changes the top k:
    an allow-list of every id turns pruning off, so it gives the exhaustive scores."""
    half = len(texts) // 2
    parts = [
        (LexicalSegment.build(list(range(a, b)), texts[a:b]), np.array([i not in dead for i in range(a, b)], dtype=bool))
        for a, b in ((0, half), (half, len(texts)))
    ]
    store = Bm25(parts)
    scores, ids = store.search(query, k)
    every_scores, every_ids = store.search(query, len(texts), allowed=set(range(len(texts))))
    exhaustive = dict(zip(every_ids.tolist(), every_scores.tolist()))
    assert scores.tolist() == every_scores[:k].tolist()
    assert [exhaustive[i] for i in ids.tolist()] == scores.tolist()


def test_merge_keeps_only_the_masked_rows_and_sorting_restores_id_order() -> None:
    first = LexicalSegment.build([5, 6], TEXTS[:2])
    second = LexicalSegment.build([1, 2], TEXTS[2:])
    merged = LexicalSegment.merge([(first, np.array([True, False])), alive(second)])
    assert merged.ids.tolist() == [5, 1, 2]
    ordered = merged.sorted_by_id()
    assert ordered.ids.tolist() == [1, 2, 5]
    assert Bm25([alive(ordered)]).search("Roketsan", 3)[1].tolist() == [5]
    assert Bm25([alive(ordered)]).search("Polonaise", 3)[1].tolist() == []  # row 6 was dropped


def test_idf_counts_live_texts_only() -> None:
    segment = LexicalSegment.build([1, 2, 3, 4], TEXTS)
    assert Bm25([alive(segment)]).idf("roketsan") == pytest.approx(np.log(1 + 3.5 / 1.5))
    assert Bm25([(segment, np.array([False, True, True, True]))]).idf("roketsan") == 0.0
    assert Bm25([alive(segment)]).idf("absent") == 0.0


def test_term_overlap_is_the_share_of_distinct_question_stems() -> None:
    shares = term_overlap("Belarus buys missiles", ["A missile for Belarus.", "Belarus.", "Nothing."])
    assert shares == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert term_overlap("the of and", ["anything"]) == [0.0]
