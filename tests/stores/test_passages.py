"""The SQLite passage store of a segment: documents, chunks, int8 sentence vectors; filters; copies; read-only checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from rag.chunking import chunk_document, split_sentences
from rag.documents import Document, parse_text
from rag.stores.passages import Filters, PassageStore, dequantize, quantize


def word_count(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def brief(source: str, week: tuple[str, str], category: str | None, trend: str, body: str) -> Document:
    title = f"Title of {source}"
    text = f"{title}\n\n{body}"
    start = len(title) + 2
    return Document(source, text, title, ((start, len(text)),), *week, category, trend, None, "brief")


DOCS = [
    brief("a.txt", ("2017-09-11", "2017-09-17"), "Security issues", "unchanged", "Minsk met Astana. Talks went well."),
    brief("b.txt", ("2017-12-11", "2017-12-17"), "Security issues", "better", "China visited Minsk. A deal followed."),
    brief("c.txt", ("2019-04-15", "2019-04-21"), None, "better", "Ankara and Minsk signed a memorandum."),
]


def fill(store: PassageStore, first_id: int = 1) -> None:
    next_id = first_id
    for doc in [*DOCS, parse_text("notes.md", "My own notes about Minsk.")]:
        assert doc is not None
        chunks = chunk_document(doc, word_count, max_tokens=4, overlap_tokens=0)
        sentences = [span for start, end in doc.body for span in split_sentences(doc.text, start, end)]
        vectors = np.eye(len(sentences), 4, dtype=np.float32)
        store.add_document(doc, f"hash-{doc.source}", chunks, list(range(next_id, next_id + len(chunks))), sentences, vectors)
        next_id += len(chunks)


@pytest.fixture
def store(tmp_path: Path) -> PassageStore:
    store = PassageStore(tmp_path / "passages.sqlite")
    fill(store, first_id=100)
    return store


def sources_of(store: PassageStore, ids: list[int]) -> set[str]:
    return {record.source for record in store.passages(ids).values()}


def test_records_cite_their_file_text_exactly(store: PassageStore) -> None:
    records = store.passages(store.filtered_ids(Filters()))
    assert len(records) == store.count() > 4
    for record in records.values():
        doc = store.document(record.source)
        assert doc is not None and doc.text[record.start : record.end] == record.text
        assert all(record.start <= s < e <= record.end for s, e in record.sentences)


@pytest.mark.parametrize(
    ("filters", "sources"),
    [
        (Filters(sources=("a.txt", "notes.md")), {"a.txt", "notes.md"}),
        (Filters(categories=("Security issues",)), {"a.txt", "b.txt"}),
        (Filters(trends=("better",)), {"b.txt", "c.txt"}),
        (Filters(date_from="2017-09-15", date_to="2017-12-11"), {"a.txt", "b.txt"}),  # weeks overlapping the range
        (Filters(date_from="2018-01-01"), {"c.txt"}),
        (Filters(trends=("better",), categories=("Security issues",)), {"b.txt"}),
        (Filters(date_to="2000-01-01"), set()),
    ],
)
def test_filters_select_documents_inside_sqlite(store: PassageStore, filters: Filters, sources: set[str]) -> None:
    assert sources_of(store, store.filtered_ids(filters)) == sources


def test_sentence_vectors_come_back_for_a_span(store: PassageStore) -> None:
    doc = store.document("b.txt")
    assert doc is not None
    first, second = doc.text.index("China"), doc.text.index("A deal")
    keys = [("b.txt", first, first + 20), ("b.txt", second, len(doc.text)), ("b.txt", 0, 1)]
    found = store.sentence_vectors_of(keys)
    assert set(found) == set(keys[:2])  # a span that is no stored sentence is absent
    assert [found[key].tolist() for key in keys[:2]] == [[1, 0, 0, 0], [0, 1, 0, 0]]


def test_documents_list_counts_passages_in_week_order(store: PassageStore) -> None:
    listed = store.documents()
    assert [row["source"] for row in listed] == ["a.txt", "b.txt", "c.txt", "notes.md"]
    assert all(row["passages"] >= 1 for row in listed)
    assert listed[-1]["kind"] == "text" and listed[-1]["week_start"] is None


def test_chunks_keep_the_ids_they_were_given(store: PassageStore) -> None:
    assert store.ids() == list(range(100, 100 + store.count()))


def test_copy_from_takes_only_the_named_sources_with_their_rows(store: PassageStore, tmp_path: Path) -> None:
    store.close()
    copy = PassageStore(tmp_path / "copy.sqlite")
    copy.copy_from(store.path, ["b.txt", "notes.md"])
    assert [row["source"] for row in copy.documents()] == ["b.txt", "notes.md"]
    original = PassageStore(store.path, read_only=True)
    ids = original.filtered_ids(Filters(sources=("b.txt", "notes.md")))
    assert sorted(copy.ids()) == sorted(ids) and copy.passages(ids) == original.passages(ids)
    doc = copy.document("b.txt")
    assert doc is not None and len(copy.sentence_vectors_of([("b.txt", doc.text.index("China"), doc.text.index("China") + 20)])) == 1


def test_sentence_vectors_are_stored_in_one_byte_per_dimension_and_keep_their_direction() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    stored = quantize(vectors)
    assert stored.dtype == np.int8 and stored[0].nbytes == 384
    restored = dequantize([row.tobytes() for row in stored])
    assert np.linalg.norm(restored, axis=1) == pytest.approx(1.0)
    assert np.min(np.sum(restored * vectors, axis=1)) > 0.999


def test_read_only_store_reads_and_refuses_writes(store: PassageStore) -> None:
    store.close()
    reader = PassageStore(store.path, read_only=True)
    reader.check()
    assert reader.document("a.txt") is not None
    with pytest.raises(sqlite3.OperationalError):
        fill(reader, first_id=10_000)


def test_check_rejects_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        PassageStore(path, read_only=True).check()


def test_sentence_lookups_use_the_primary_key_not_a_table_scan(store: PassageStore) -> None:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    doc = store.document("b.txt")
    assert doc is not None
    first = doc.text.index("China")
    store.sentence_vectors_of([("b.txt", first, first + 20), ("b.txt", 0, 5), ("a.txt", 0, 5)])  # several keys
    store._db.set_trace_callback(None)
    (query,) = [sql for sql in statements if "FROM sentences" in sql or "JOIN sentences" in sql]
    plan = " ".join(row[3] for row in store._db.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert "SEARCH s USING INDEX" in plan and "SCAN s" not in plan, plan
