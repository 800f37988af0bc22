"""The SQLite passage store: documents, chunks and sentence vectors; filters; removal; read-only checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from rag.chunking import chunk_document, split_sentences
from rag.documents import Document, parse_text
from rag.stores.passages import Filters, PassageStore


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


@pytest.fixture
def store(tmp_path: Path) -> PassageStore:
    store = PassageStore(tmp_path / "passages.sqlite")
    for doc in [*DOCS, parse_text("notes.md", "My own notes about Minsk.")]:
        assert doc is not None
        chunks = chunk_document(doc, word_count, max_tokens=4, overlap_tokens=0)
        sentences = [span for start, end in doc.body for span in split_sentences(doc.text, start, end)]
        vectors = np.eye(len(sentences), 4, dtype=np.float32)
        store.add_document(doc, f"hash-{doc.source}", chunks, sentences, vectors)
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
    sentences = store.sentence_vectors("b.txt", 0, len(doc.text))
    assert [doc.text[s:e] for s, e, _ in sentences] == ["China visited Minsk.", "A deal followed."]
    assert [vector.tolist() for _, _, vector in sentences] == [[1, 0, 0, 0], [0, 1, 0, 0]]


def test_documents_list_counts_passages_in_week_order(store: PassageStore) -> None:
    listed = store.documents()
    assert [row["source"] for row in listed] == ["a.txt", "b.txt", "c.txt", "notes.md"]
    assert all(row["passages"] >= 1 for row in listed)
    assert listed[-1]["kind"] == "text" and listed[-1]["week_start"] is None


def test_remove_sources_deletes_chunks_and_sentences(store: PassageStore) -> None:
    before = store.count()
    removed = store.remove_sources(["b.txt"])
    assert removed and store.count() == before - len(removed)
    assert store.passages(removed) == {}
    assert store.document("b.txt") is None and store.sentence_vectors("b.txt", 0, 10**6) == []


def test_read_only_store_reads_and_refuses_writes(store: PassageStore) -> None:
    store.close()
    reader = PassageStore(store.path, read_only=True)
    reader.check()
    assert reader.document("a.txt") is not None
    with pytest.raises(sqlite3.OperationalError):
        reader.remove_sources(["a.txt"])


def test_check_rejects_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        PassageStore(path, read_only=True).check()
