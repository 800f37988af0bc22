"""The passage store of one segment: documents, chunks and sentence vectors in SQLite (stdlib ``sqlite3``).

Chunk row ids are the int64 ids shared with the vector and lexical stores; the index assigns
them. Sentence vectors are kept as int8 (384 bytes at 384 dimensions): each row is scaled so
its largest component is 127, and read back as the unit vector of its direction.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from ..chunking import Chunk
from ..documents import Document, Span
from ..errors import QueryError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    source TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    title TEXT NOT NULL,
    week_start TEXT,
    week_end TEXT,
    category TEXT,
    trend TEXT,
    author TEXT,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    chunk_id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL REFERENCES documents(source) ON DELETE CASCADE,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    text TEXT NOT NULL,
    sentences TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_source ON chunks(source);
CREATE TABLE IF NOT EXISTS sentences (
    source TEXT NOT NULL REFERENCES documents(source) ON DELETE CASCADE,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    vector BLOB,
    PRIMARY KEY (source, start, end)
);
"""


@dataclass(frozen=True)
class PassageRecord:
    """A stored chunk joined with its document's metadata."""

    id: int
    chunk_id: str
    source: str
    start: int
    end: int
    text: str
    sentences: tuple[Span, ...]
    title: str
    week_start: str | None
    week_end: str | None
    category: str | None
    trend: str | None
    author: str | None
    kind: str


@dataclass(frozen=True)
class Filters:
    """Restrict a search to passages whose document matches every given field.

    Dates are ISO strings; a brief matches a date range when its week overlaps it.
    """

    sources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    trends: tuple[str, ...] = ()
    date_from: str | None = None
    date_to: str | None = None

    def is_empty(self) -> bool:
        """True when the filters restrict nothing."""
        return not (self.sources or self.categories or self.trends or self.date_from or self.date_to)


_ISO_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def filter_date(value: str | None, label: str) -> str | None:
    """The ISO date a week filter was given (``YYYY-MM-DD``; spaces around it ignored), ``None`` when blank.

    Raises ``QueryError`` naming ``label`` for anything else, even forms ``date.fromisoformat``
    would take ("20190101", "2019-W01"), so every interface accepts the same dates.

    >>> filter_date(" 2019-04-15 ", "--date-from"), filter_date("", "--date-from")
    ('2019-04-15', None)
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        if not _ISO_DATE_RE.fullmatch(text):
            raise ValueError(text)
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise QueryError(f"{label} must be a date like 2019-04-15 (YYYY-MM-DD), got {value!r}") from None


_RECORD_COLUMNS = (
    "c.id, c.chunk_id, c.source, c.start, c.end, c.text, c.sentences, "
    "d.title, d.week_start, d.week_end, d.category, d.trend, d.author, d.kind"
)


def quantize(vectors: np.ndarray) -> np.ndarray:
    """Rows as int8, each scaled so its largest absolute component is 127 (only the direction is kept).

    >>> quantize(np.array([[0.5, -0.25, 0.0]])).tolist()
    [[127, -64, 0]]
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(vectors).max(axis=1, keepdims=True)
    return np.round(vectors * (127.0 / np.where(peak > 0, peak, 1.0))).astype(np.int8)


def dequantize(blobs: Sequence[bytes]) -> np.ndarray:
    """The unit vectors in the directions of int8 rows written by :func:`quantize` (one row each).

    >>> dequantize([bytes([3, 0, 252]), bytes([0, 0, 0])]).astype(float).round(3).tolist()  # (3, 0, -4) / 5
    [[0.6, 0.0, -0.8], [0.0, 0.0, 0.0]]
    """
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    vectors = np.frombuffer(b"".join(blobs), dtype=np.int8).reshape(len(blobs), -1).astype(np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


class PassageStore:
    """SQLite-backed documents, chunks and sentence vectors; safe to share between threads."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        # A published segment never changes: read-only opens skip SQLite's locking entirely,
        # so a read-only index folder can be searched.
        uri = f"file:{path}?mode=ro&immutable=1" if read_only else f"file:{path}"
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA foreign_keys = ON")
        if not read_only:
            # A store is written once, inside a temporary folder that a crash discards and that
            # is fsynced before it is published: no rollback journal, no fsync per commit.
            self._db.execute("PRAGMA journal_mode = OFF")
            self._db.execute("PRAGMA synchronous = OFF")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database connection (waits for a query in progress)."""
        with self._lock:
            self._db.close()

    def check(self) -> None:
        """Raise ``sqlite3.DatabaseError`` unless SQLite's full ``integrity_check`` finds the file sound."""
        with self._lock:
            (result,) = self._db.execute("PRAGMA integrity_check").fetchone()
        if result != "ok":
            raise sqlite3.DatabaseError(result)

    def _query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    # -- writing ---------------------------------------------------------------

    def add_document(
        self,
        doc: Document,
        fingerprint: str,
        chunks: Sequence[Chunk],
        ids: Sequence[int],
        sentences: Sequence[Span],
        sentence_vectors: np.ndarray | None,
    ) -> None:
        """Store a document with its chunks (under ``ids``, one each) and sentence vectors."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    doc.source, fingerprint, doc.title, doc.week_start, doc.week_end, doc.category,
                    doc.trend, doc.author, doc.kind, doc.text, json.dumps(doc.body),
                ),
            )
            self._db.executemany(
                "INSERT INTO chunks (id, chunk_id, source, start, end, text, sentences) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(int(i), chunk.id, chunk.source, chunk.start, chunk.end, chunk.text, json.dumps(chunk.sentences))
                 for i, chunk in zip(ids, chunks, strict=True)],
            )
            vectors: Iterable[bytes | None] = (
                (row.tobytes() for row in quantize(sentence_vectors)) if sentence_vectors is not None
                else (None for _ in sentences)
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO sentences VALUES (?, ?, ?, ?)",
                [(doc.source, start, end, vector) for (start, end), vector in zip(sentences, vectors)],
            )

    def copy_from(self, other: Path, sources: Iterable[str]) -> None:
        """Copy the documents of ``sources`` with their chunks and sentences from the store file ``other``."""
        with self._lock, self._db:
            self._db.execute("ATTACH DATABASE ? AS other", (f"file:{other}?mode=ro&immutable=1",))
            try:
                self._db.execute("CREATE TEMP TABLE wanted (source TEXT PRIMARY KEY)")
                self._db.executemany("INSERT OR IGNORE INTO wanted VALUES (?)", ((source,) for source in sources))
                for table in ("documents", "chunks", "sentences"):
                    self._db.execute(f"INSERT INTO main.{table} SELECT * FROM other.{table} WHERE source IN wanted")
                self._db.execute("DROP TABLE wanted")
            finally:
                self._db.commit()
                self._db.execute("DETACH DATABASE other")

    # -- reading ---------------------------------------------------------------

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRecord]:
        """Records of the given chunk ids (unknown ids are absent)."""
        if not ids:
            return {}
        placeholders = ",".join("?" * len(ids))
        rows = self._query(
            f"SELECT {_RECORD_COLUMNS} FROM chunks c JOIN documents d ON d.source = c.source "
            f"WHERE c.id IN ({placeholders})",
            [int(i) for i in ids],
        )
        return {
            row[0]: PassageRecord(*row[:6], tuple(tuple(s) for s in json.loads(row[6])), *row[7:])  # type: ignore[arg-type]
            for row in rows
        }

    def ids(self) -> list[int]:
        """Every chunk id, in order."""
        return [row[0] for row in self._query("SELECT id FROM chunks ORDER BY id")]

    def sentence_vectors_of(self, keys: Sequence[tuple[str, int, int]]) -> dict[tuple[str, int, int], np.ndarray | None]:
        """Stored sentences among ``(source, start, end)`` keys with their vectors, in one query per 1,000 keys."""
        found: dict[tuple[str, int, int], np.ndarray | None] = {}
        for first in range(0, len(keys), 1000):
            batch = keys[first : first + 1000]
            # A join on the keys, not "(source, start, end) IN (VALUES ...)": SQLite scans the whole
            # table for the IN form (2.5M rows at a million passages) and uses the primary key for this.
            rows = self._query(
                "SELECT s.source, s.start, s.end, s.vector FROM "
                f"(VALUES {','.join(['(?, ?, ?)'] * len(batch))}) AS k "
                "JOIN sentences s ON s.source = k.column1 AND s.start = k.column2 AND s.end = k.column3",
                [value for key in batch for value in key],
            )
            stored = [row for row in rows if row[3] is not None]
            found.update(((source, start, end), None) for source, start, end, v in rows if v is None)
            found.update(zip(((source, start, end) for source, start, end, _ in stored), dequantize([row[3] for row in stored])))
        return found

    def filtered_ids(self, filters: Filters) -> list[int]:
        """Chunk ids of documents that match the filters."""
        clauses, parameters = [], []
        for column, values in (("d.source", filters.sources), ("d.category", filters.categories), ("d.trend", filters.trends)):
            if values:
                clauses.append(f"{column} IN ({','.join('?' * len(values))})")
                parameters.extend(values)
        if filters.date_from:
            clauses.append("d.week_end >= ?")
            parameters.append(filters.date_from)
        if filters.date_to:
            clauses.append("d.week_start <= ?")
            parameters.append(filters.date_to)
        where = " AND ".join(clauses) or "1"
        rows = self._query(f"SELECT c.id FROM chunks c JOIN documents d ON d.source = c.source WHERE {where}", parameters)
        return [row[0] for row in rows]

    def documents(self) -> list[dict[str, Any]]:
        """Every document's metadata and passage count, ordered by week then source."""
        rows = self._query(
            "SELECT d.source, d.title, d.week_start, d.week_end, d.category, d.trend, d.author, d.kind, "
            "COUNT(c.id) FROM documents d LEFT JOIN chunks c ON c.source = d.source "
            "GROUP BY d.source ORDER BY d.week_start IS NULL, d.week_start, d.source"
        )
        keys = ("source", "title", "week_start", "week_end", "category", "trend", "author", "kind", "passages")
        return [dict(zip(keys, row)) for row in rows]

    def document(self, source: str) -> Document | None:
        """The stored document of a source, with its full text and body spans."""
        rows = self._query(
            "SELECT source, text, title, body, week_start, week_end, category, trend, author, kind "
            "FROM documents WHERE source = ?",
            (source,),
        )
        if not rows:
            return None
        source, text, title, body, *metadata = rows[0]
        return Document(source, text, title, tuple(tuple(span) for span in json.loads(body)), *metadata)  # type: ignore[arg-type]

    def count(self) -> int:
        """Number of stored chunks."""
        return int(self._query("SELECT COUNT(*) FROM chunks")[0][0])
