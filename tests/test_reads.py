"""SearchReads: each record and sentence vector read once per search; reading ahead stops when told."""

from __future__ import annotations

from concurrent.futures import Future

import numpy as np

from rag.reads import READ_AHEAD_STEP, SearchReads
from rag.stores.passages import PassageRecord


def _record(passage_id: int) -> PassageRecord:
    start = 100 * passage_id
    return PassageRecord(passage_id, f"c{passage_id}", "a.txt", start, start + 20, "x" * 20, ((start, start + 10),),
                         "A brief", None, None, None, None, None, "brief")


class CountingPassages:
    """Records for ids below 100; a vector for every sentence key except the stored-without-vector one."""

    def __init__(self, on_read: object = None) -> None:
        self.asked: list[list[int]] = []
        self.asked_keys: list[list[tuple[str, int, int]]] = []
        self.on_read = on_read

    def passages(self, ids):
        self.asked.append(list(ids))
        if callable(self.on_read):
            self.on_read()
        return {i: _record(i) for i in ids if i < 100}

    def sentence_vectors_of(self, keys):
        self.asked_keys.append(list(keys))
        return {key: (None if key[1] == 0 else np.ones(2, dtype=np.float32)) for key in keys if key[1] < 10_000}


def test_records_are_read_once_and_absent_ids_are_not_asked_again() -> None:
    store = CountingPassages()
    reads = SearchReads(store)  # type: ignore[arg-type]
    assert list(reads.records([1, 2, 500])) == [1, 2]
    assert list(reads.records([2, 3, 500, 3])) == [2, 3]
    assert store.asked == [[1, 2, 500], [3]]


def test_sentence_vectors_are_read_once_keeping_sentences_stored_without_a_vector() -> None:
    store = CountingPassages()
    reads = SearchReads(store)  # type: ignore[arg-type]
    first = reads.sentence_vectors([("a.txt", 0, 5), ("a.txt", 10, 15), ("a.txt", 20_000, 20_005)])
    again = reads.sentence_vectors([("a.txt", 0, 5), ("a.txt", 20_000, 20_005), ("a.txt", 30, 35)])
    assert first[("a.txt", 0, 5)] is None and first[("a.txt", 10, 15)] is not None and len(first) == 2
    assert list(again) == [("a.txt", 0, 5), ("a.txt", 30, 35)]
    assert store.asked_keys[1:] == [[("a.txt", 30, 35)]]


def test_reading_ahead_stops_at_the_limit_and_when_the_vector_is_ready() -> None:
    waiting: Future[None] = Future()
    store = CountingPassages()
    reads = SearchReads(store)  # type: ignore[arg-type]
    reads.read_ahead(list(range(50)), until=waiting, limit=READ_AHEAD_STEP + 3)
    assert store.asked == [list(range(READ_AHEAD_STEP)), list(range(READ_AHEAD_STEP, READ_AHEAD_STEP + 3))]
    assert len(store.asked_keys) == 2  # each step's sentence vectors too

    ready: Future[None] = Future()
    store = CountingPassages(on_read=lambda: ready.done() or ready.set_result(None))
    SearchReads(store).read_ahead(list(range(50)), until=ready, limit=50)  # type: ignore[arg-type]
    assert store.asked == [list(range(READ_AHEAD_STEP))]  # the vector came during the first step

    done: Future[None] = Future()
    done.set_result(None)
    store = CountingPassages()
    SearchReads(store).read_ahead(list(range(50)), until=done, limit=50)  # type: ignore[arg-type]
    assert store.asked == []
