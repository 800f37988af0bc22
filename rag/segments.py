"""Immutable index segments, and the live view a generation gives over its segments.

A segment is a folder written once and never changed: the chunk vectors (a vector store
chosen by size), the passage store (SQLite), and term counts for BM25 over passages and over
whole documents. A generation lists its segments and, per source, the segment and the
contiguous range of passage ids that hold the source's live version. Rows outside those
ranges are dead: a changed or removed brief leaves its old rows behind in an old segment,
tombstoned by the manifest, until a merge drops them (Lucene's shape: immutable segments,
deletes recorded beside them, merges in the writer). Readers open a fixed set of segments,
so a writer never changes what they see.

>>> live_mask(np.array([10, 11, 12, 20, 21]), [(11, 2), (20, 1)]).tolist()
[False, True, True, True, False]
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chunking import Chunk
from .config import StoreSettings
from .documents import Document, Span
from .sources import SourceTable
from .stores.base import PAYLOAD_FIELDS, VectorStore
from .stores.lexical import Bm25, LexicalSegment
from .stores.passages import Filters, PassageRecord, PassageStore
from .stores.vectors import create_vector_store, load_vector_store, store_files, store_settings

#: The vector store's path in a segment folder; a backend may keep its data under names derived
#: from it (Qdrant: ``vectors.qdrant/`` or ``vectors.qdrant.json``; see ``store_files``).
VECTORS_FILE = "vectors.faiss"
PASSAGES_FILE = "passages.sqlite"
LEXICAL_DIR = "lexical"
DOCUMENT_LEXICAL_DIR = "lexical-documents"


def search_text(kind: str, title: str, text: str) -> str:
    """The text embedded and BM25-indexed for a passage: the title leads unless it is a file name."""
    return text if kind == "text" else f"{title}\n{text}"


def document_text(doc: Document) -> str:
    """The text BM25-indexed for a whole document: title and body."""
    return search_text(doc.kind, doc.title, doc.text[doc.body[0][0] : doc.body[-1][1]])


def payload(doc: Mapping[str, Any] | Document) -> dict[str, Any]:
    """The metadata a passage's vector carries for filtering: its document's source, weeks,
    category and trend (those it has), as ``Filters`` name them.

    >>> payload({"source": "a.txt", "week_start": "2019-04-15", "category": None, "trend": "better"})
    {'source': 'a.txt', 'week_start': '2019-04-15', 'trend': 'better'}
    """
    values = doc if isinstance(doc, Mapping) else vars(doc)
    return {key: values[key] for key in PAYLOAD_FIELDS if values.get(key) is not None}


def live_mask(ids: np.ndarray, ranges: Iterable[tuple[int, int]] | np.ndarray) -> np.ndarray:
    """Which of the sorted ``ids`` fall inside one of the (first id, count) ranges (pairs or an (n, 2) array)."""
    ids = np.asarray(ids)
    bounds = np.asarray(ranges if isinstance(ranges, np.ndarray) else list(ranges), dtype=np.int64).reshape(-1, 2)
    starts = np.searchsorted(ids, bounds[:, 0])
    ends = np.searchsorted(ids, bounds[:, 0] + bounds[:, 1])
    edges = np.zeros(len(ids) + 1, dtype=np.int64)  # +1 where a range opens, -1 where it closes
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    return np.cumsum(edges[:-1]) > 0


@dataclass(frozen=True)
class SegmentEntry:
    """What a manifest records of one segment."""

    passages: int
    documents: int
    vectors: dict[str, Any]  # the vector store's params, as its factory reopens it

    @classmethod
    def from_dict(cls, values: Any) -> SegmentEntry:
        """Parse a manifest entry; raises ``TypeError``/``ValueError``/``KeyError`` when malformed."""
        if not isinstance(values, dict) or set(values) != {"passages", "documents", "vectors"}:
            raise ValueError("a segment entry has unexpected or missing fields")
        entry = cls(values["passages"], values["documents"], values["vectors"])
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (entry.passages, entry.documents)):
            raise ValueError("a segment entry has a bad count")
        if not isinstance(entry.vectors, dict):
            raise TypeError("a segment entry's vector params are not an object")
        return entry


def segments_store(entries: Iterable[SegmentEntry]) -> StoreSettings:
    """Where an index's segments keep their vectors, read from their params (the default when there is none)."""
    return next((store_settings(entry.vectors) for entry in entries), StoreSettings())


def segment_files(folder: Path, entry: SegmentEntry) -> list[Path]:
    """Every file of a segment."""
    return [
        *store_files(folder / VECTORS_FILE, entry.vectors),
        folder / PASSAGES_FILE,
        *sorted((folder / LEXICAL_DIR).iterdir()),
        *sorted((folder / DOCUMENT_LEXICAL_DIR).iterdir()),
    ]


class Segment:
    """One published segment, opened read-only."""

    def __init__(self, folder: Path, entry: SegmentEntry) -> None:
        self.folder = folder
        self.entry = entry
        self.vectors: VectorStore = load_vector_store(folder / VECTORS_FILE, entry.vectors)
        self.lexical = LexicalSegment.load(folder / LEXICAL_DIR)
        self.document_lexical = LexicalSegment.load(folder / DOCUMENT_LEXICAL_DIR)
        self.passages = PassageStore(folder / PASSAGES_FILE, read_only=True)
        try:
            if not len(self.vectors) == len(self.lexical) == entry.passages:
                raise ValueError(f"the stores of segment {folder.name} disagree on the number of passages")
            if len(self.document_lexical) != entry.documents:
                raise ValueError(f"segment {folder.name} holds another number of documents than its manifest says")
        except BaseException:
            self.passages.close()
            raise

    def close(self) -> None:
        """Close the passage store (the other stores hold no handle)."""
        self.passages.close()


@dataclass
class SegmentWriter:
    """Writes one new segment into an empty ``folder``: new documents, and live rows copied from old segments.

    ``index_type`` and ``store`` choose the vector store (see ``rag.stores.vectors.configure``);
    each vector is added with its document's metadata as payload (see :func:`payload`).
    """

    folder: Path
    dimension: int
    index_type: str = "auto"
    store: StoreSettings = StoreSettings()
    _ids: list[np.ndarray] = field(default_factory=list)
    _vectors: list[np.ndarray] = field(default_factory=list)
    _payloads: list[dict[str, Any]] = field(default_factory=list)
    _new_ids: list[int] = field(default_factory=list)
    _new_texts: list[str] = field(default_factory=list)
    _new_document_ids: list[int] = field(default_factory=list)
    _new_document_texts: list[str] = field(default_factory=list)
    _copied: list[tuple[Segment, np.ndarray, np.ndarray]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._passages = PassageStore(self.folder / PASSAGES_FILE)

    def add(
        self,
        doc: Document,
        fingerprint: str,
        chunks: Sequence[Chunk],
        ids: np.ndarray,
        chunk_vectors: np.ndarray,
        sentences: Sequence[Span],
        sentence_vectors: np.ndarray | None,
    ) -> None:
        """Add a document with its chunks under ``ids`` (one each, ascending) and their vectors."""
        self._passages.add_document(doc, fingerprint, chunks, ids.tolist(), sentences, sentence_vectors)
        self._ids.append(np.asarray(ids, dtype=np.int64))
        self._vectors.append(np.asarray(chunk_vectors, dtype=np.float32))
        self._payloads.extend([payload(doc)] * len(ids))
        self._new_ids.extend(ids.tolist())
        self._new_texts.extend(search_text(doc.kind, doc.title, chunk.text) for chunk in chunks)
        if len(ids):
            self._new_document_ids.append(int(ids[0]))
            self._new_document_texts.append(document_text(doc))

    def copy(self, segment: Segment, sources: Mapping[str, tuple[int, int]]) -> None:
        """Copy the live rows of ``sources`` (each with its (first id, count) range) from ``segment``."""
        self._passages.copy_from(segment.folder / PASSAGES_FILE, sources)
        keep = live_mask(segment.lexical.ids, sources.values())
        documents = live_mask(segment.document_lexical.ids, [(first, 1) for first, _ in sources.values()])
        ids = np.asarray(segment.lexical.ids)[keep]
        self._ids.append(ids)
        self._vectors.append(segment.vectors.vectors(ids.tolist()) if len(ids) else np.zeros((0, self.dimension), np.float32))
        documents_of = {row["source"]: payload(row) for row in segment.passages.documents()}
        for source, (_, count) in sorted(sources.items(), key=lambda item: item[1][0]):  # the ids' order
            self._payloads.extend([documents_of[source]] * count)
        self._copied.append((segment, keep, documents))

    def finish(self) -> SegmentEntry:
        """Write the vector and lexical stores; returns the segment's manifest entry."""
        self._passages.close()
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, dtype=np.int64)
        vectors = np.vstack(self._vectors) if self._vectors else np.zeros((0, self.dimension), dtype=np.float32)
        if len(self._payloads) != len(ids):
            raise ValueError(f"segment {self.folder.name}: {len(self._payloads)} payloads for {len(ids)} vectors")
        order = np.argsort(ids, kind="stable")
        ids, vectors, payloads = ids[order], vectors[order], [self._payloads[i] for i in order.tolist()]
        store = create_vector_store(self.dimension, len(ids), self.index_type, training=vectors, store=self.store)
        if len(ids):
            store.add(ids, vectors, payloads)
        store.save(self.folder / VECTORS_FILE)
        lexical = _joined(
            LexicalSegment.build(self._new_ids, self._new_texts),
            [(segment.lexical, keep) for segment, keep, _ in self._copied],
        )
        documents = _joined(
            LexicalSegment.build(self._new_document_ids, self._new_document_texts),
            [(segment.document_lexical, keep) for segment, _, keep in self._copied],
        )
        lexical.save(self.folder / LEXICAL_DIR)
        documents.save(self.folder / DOCUMENT_LEXICAL_DIR)
        return SegmentEntry(len(ids), len(documents), store.params())


def _joined(new: LexicalSegment, copied: list[tuple[LexicalSegment, np.ndarray]]) -> LexicalSegment:
    """One lexical segment of the copied live rows and the new ones, sorted by id."""
    if copied:
        new = LexicalSegment.merge([*copied, (new, np.ones(len(new), dtype=bool))])
    return new.sorted_by_id()


class LiveSegments:
    """The live rows of a generation's segments, behind the same methods as single stores.

    ``sources`` is the generation's source table: each source with passages names its
    segment, first id and count; every other row of a segment is dead. ``vectors``,
    ``lexical``, ``document_lexical`` and ``passages`` are what retrieval calls.
    """

    def __init__(self, segments: Mapping[str, Segment], sources: SourceTable) -> None:
        self.segments = dict(segments)
        self.sources = sources
        placed = sources.placed()
        self._rows = placed[np.argsort(sources.first_ids[placed], kind="stable")]  # by first id
        self._starts = sources.first_ids[self._rows]
        self._counts = sources.passages[self._rows]
        self._segment_of = sources.segments[self._rows]  # positions in sources.segment_names
        self._members: dict[str, frozenset[str]] = {}
        self.live: dict[str, np.ndarray] = {}
        documents: dict[str, np.ndarray] = {}
        for name, segment in self.segments.items():
            mine = self._segment_of == (sources.segment_names.index(name) if name in sources.segment_names else -2)
            starts = self._starts[mine]
            self.live[name] = live_mask(segment.lexical.ids, np.stack([starts, self._counts[mine]], axis=1))
            documents[name] = live_mask(segment.document_lexical.ids, np.stack([starts, np.ones_like(starts)], axis=1))
        self.live_ids = {name: np.asarray(seg.lexical.ids)[self.live[name]] for name, seg in self.segments.items()}
        self.dead_ids = {name: np.asarray(seg.lexical.ids)[~self.live[name]] for name, seg in self.segments.items()}
        self.vectors = LiveVectors(self)
        self.lexical = Bm25([(seg.lexical, self.live[name]) for name, seg in self.segments.items()])
        self.document_lexical = Bm25([(seg.document_lexical, documents[name]) for name, seg in self.segments.items()])
        self.passages = LivePassages(self)

    def _places(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """For each id: its position in the live ranges, and whether it is live."""
        ids = np.asarray(ids, dtype=np.int64)
        place = np.searchsorted(self._starts, ids, side="right") - 1
        inside = (place >= 0) & (ids < self._starts[np.maximum(place, 0)] + self._counts[np.maximum(place, 0)])
        return place, inside

    def sources_of(self, ids: Sequence[int]) -> list[str | None]:
        """The live source of each passage id (``None`` for an unknown or dead id)."""
        place, inside = self._places(ids)
        names = self.sources.names
        return [names[self._rows[p]] if ok else None for p, ok in zip(place.tolist(), inside.tolist())]

    def by_segment(self, ids: Sequence[int]) -> dict[str, list[int]]:
        """Live passage ids grouped by the segment that holds them, in the given order."""
        place, inside = self._places(ids)
        grouped: dict[str, list[int]] = {}
        for passage_id, p, ok in zip(np.asarray(ids, dtype=np.int64).tolist(), place.tolist(), inside.tolist()):
            if ok:
                grouped.setdefault(self.sources.segment_names[self._segment_of[p]], []).append(passage_id)
        return grouped

    def segment_of(self, source: str) -> str | None:
        """The segment holding a live source's passages (``None`` when it has none)."""
        row = self.sources.row(source)
        if row is None or self.sources.passages[row] <= 0 or self.sources.segments[row] < 0:
            return None
        return self.sources.segment_names[self.sources.segments[row]]

    def members(self, segment: str) -> frozenset[str]:
        """The live sources whose passages ``segment`` holds (computed once per segment)."""
        if segment not in self._members:
            self._members[segment] = frozenset(self.sources.in_segment(segment))
        return self._members[segment]

    def close(self) -> None:
        """Close every segment."""
        for segment in self.segments.values():
            segment.close()


class LiveVectors:
    """Vector search over the live rows of every segment (a ``VectorStore`` for reading)."""

    def __init__(self, live: LiveSegments) -> None:
        self._live = live

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        return next(iter(self._live.segments.values())).vectors.dimension

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._live.live_ids.values())

    def search(
        self, queries: np.ndarray, k: int, allowed: Collection[int] | None = None, filters: Filters | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query row over every segment's live rows; missing places hold id -1.

        ``filters``: what ``allowed`` was computed from, handed to each segment's store (see ``VectorStore.search``).
        """
        k = max(1, min(k, len(self) or 1))
        found_scores, found_ids = [], []
        for name, segment in self._live.segments.items():
            if not len(self._live.live_ids[name]):
                continue
            dead = self._live.dead_ids[name]
            scores, ids = segment.vectors.search(queries, k, allowed, dead if len(dead) else None, filters)
            found_scores.append(scores)
            found_ids.append(ids)
        if not found_scores:
            return np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1, dtype=np.int64)
        scores, ids = np.hstack(found_scores), np.hstack(found_ids)
        scores = np.where(ids >= 0, scores, -np.inf)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            scores = np.hstack([scores, np.full((len(queries), pad), -np.inf, dtype=np.float32)])
            ids = np.hstack([ids, np.full((len(queries), pad), -1, dtype=np.int64)])
        return scores.astype(np.float32), ids

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of live ``ids``, one row each, in order."""
        rows = np.zeros((len(ids), self.dimension), dtype=np.float32)
        place = {int(passage_id): n for n, passage_id in enumerate(ids)}
        for name, group in self._live.by_segment(ids).items():
            rows[[place[i] for i in group]] = self._live.segments[name].vectors.vectors(group)
        return rows


class LivePassages:
    """Passage records, documents and sentence vectors of the live rows (reads only)."""

    def __init__(self, live: LiveSegments) -> None:
        self._live = live
        self._documents: list[dict[str, Any]] | None = None

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRecord]:
        """Records of the given live passage ids (unknown or dead ids are absent)."""
        found: dict[int, PassageRecord] = {}
        for name, group in self._live.by_segment(ids).items():
            found.update(self._live.segments[name].passages.passages(group))
        return found

    def sentence_vectors_of(self, keys: Sequence[tuple[str, int, int]]) -> dict[tuple[str, int, int], np.ndarray | None]:
        """Stored sentences among ``(source, start, end)`` keys with their vectors, one query per segment."""
        grouped: dict[str, list[tuple[str, int, int]]] = {}
        for key in keys:
            if (segment := self._live.segment_of(key[0])) is not None:
                grouped.setdefault(segment, []).append(key)
        found: dict[tuple[str, int, int], np.ndarray | None] = {}
        for name, group in grouped.items():
            found.update(self._live.segments[name].passages.sentence_vectors_of(group))
        return found

    def documents(self) -> list[dict[str, Any]]:
        """Every live document's metadata and passage count, ordered by week then source (read once)."""
        if self._documents is None:
            rows = [
                row for name, segment in self._live.segments.items() for row in segment.passages.documents()
                if row["source"] in self._live.members(name)
            ]
            rows.sort(key=lambda row: (row["week_start"] is None, row["week_start"] or "", row["source"]))
            self._documents = rows
        return [dict(row) for row in self._documents]

    def document(self, source: str) -> Document | None:
        """The stored document of a live source, with its full text and body spans."""
        segment = self._live.segment_of(source)
        return self._live.segments[segment].passages.document(source) if segment else None

    def filtered_ids(self, filters: Filters) -> list[int]:
        """Live passage ids of documents that match the filters."""
        found: list[int] = []
        for name, segment in self._live.segments.items():
            ids = np.asarray(segment.passages.filtered_ids(filters), dtype=np.int64)
            found.extend(ids[np.isin(ids, self._live.live_ids[name])].tolist())
        return found

    def ids(self) -> list[int]:
        """Every live passage id, ascending."""
        return sorted(i for ids in self._live.live_ids.values() for i in ids.tolist())

    def count(self) -> int:
        """Number of live passages."""
        return sum(len(ids) for ids in self._live.live_ids.values())

    def check(self) -> None:
        """Raise ``sqlite3.DatabaseError`` unless every segment's passage store passes SQLite's integrity check."""
        for name, segment in self._live.segments.items():
            try:
                segment.passages.check()
            except sqlite3.DatabaseError as error:
                raise sqlite3.DatabaseError(f"segment {name}: {error}") from None
