"""The protocols every store implementation follows; retrieval and indexing call only these.

One declaration of each contract. ``tests/stores/`` runs the same contract suite against
every implementation, with the exact flat FAISS store as the reference.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..documents import Document
from .passages import Filters, PassageRecord


#: The document metadata a vector's payload may carry (see :meth:`VectorStore.add`), named as ``Filters`` name it.
PAYLOAD_FIELDS = ("source", "week_start", "week_end", "category", "trend")


@runtime_checkable
class VectorStore(Protocol):
    """Normalized vectors under int64 ids, searched by inner product (cosine similarity).

    ``params()`` is JSON-ready and recorded in the manifest; the factory reopens a saved store
    from its path and those params, so an open never guesses the index type.
    """

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    def __len__(self) -> int:
        """Number of live (not removed) vectors."""
        ...

    def params(self) -> dict[str, Any]:
        """The implementation's kind and parameters, as recorded in the manifest."""
        ...

    def add(self, ids: np.ndarray, vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Add ``vectors`` (one row each) under the given new int64 ``ids``.

        ``payloads``, one per row when given, hold each passage's document metadata (``source``,
        ``week_start``, ``week_end``, ``category``, ``trend``) for stores that filter on it
        themselves (Qdrant); the others ignore them.
        """
        ...

    def remove(self, ids: Collection[int]) -> None:
        """Remove the vectors of ``ids``; unknown ids are ignored."""
        ...

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: Collection[int] | None = None,
        excluded: Collection[int] | None = None,
        filters: Filters | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query row, best first; missing places hold id -1.

        Only ids in ``allowed`` (when given) and never ids in ``excluded`` are returned,
        applied inside the index so ``k`` results come back whenever ``k`` such vectors exist.
        ``filters``, when given, are the metadata filters ``allowed`` was computed from (the
        passage ids of the documents that match them): a store that keeps the metadata as
        payloads may apply them in place of ``allowed``, with the same result; others ignore them.
        """
        ...

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of ``ids``, one float32 row each, in order (approximate for quantized stores)."""
        ...

    def save(self, path: Path) -> None:
        """Write the store to the file ``path``."""
        ...


class LexicalIndex(Protocol):
    """Keyword search over passage (or document) texts under the same int64 ids as the vectors.

    Implemented by :class:`rag.stores.lexical.Bm25` over the live rows of a generation's
    segments; segments are written once, so deleting is tombstoning (see ``rag.segments``).
    """

    def __len__(self) -> int:
        """Number of live texts."""
        ...

    def search(self, query: str, k: int, allowed: Collection[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) with a positive score, best first; only ``allowed`` ids when given."""
        ...

    def idf(self, term: str) -> float:
        """The inverse document frequency of a stemmed term over the live texts (0 when absent)."""
        ...


class PassageIndex(Protocol):
    """Passage records, documents and sentence vectors of the live rows, read in batches (no per-row query)."""

    def passages(self, ids: Sequence[int]) -> dict[int, PassageRecord]:
        """Records of the given live ids (unknown or dead ids are absent)."""
        ...

    def sentence_vectors_of(self, keys: Sequence[tuple[str, int, int]]) -> dict[tuple[str, int, int], np.ndarray | None]:
        """Stored sentences among ``(source, start, end)`` keys, with their unit vectors (``None`` when not embedded)."""
        ...

    def documents(self) -> list[dict[str, Any]]:
        """Every live document's metadata and passage count, by week then source."""
        ...

    def document(self, source: str) -> Document | None:
        """The stored document of a live source."""
        ...

    def filtered_ids(self, filters: Filters) -> list[int]:
        """Live passage ids of the documents that match ``filters``."""
        ...

    def ids(self) -> list[int]:
        """Every live passage id, ascending."""
        ...

    def count(self) -> int:
        """Number of live passages."""
        ...

    def check(self) -> None:
        """Raise ``sqlite3.DatabaseError`` (or the backend's error) unless the storage is sound."""
        ...


class ReadableVectors(Protocol):
    """What searching needs of vectors: a :class:`VectorStore`, or the live rows of several (``rag.segments``)."""

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        ...

    def __len__(self) -> int:
        """Number of live vectors."""
        ...

    def search(
        self, queries: np.ndarray, k: int, allowed: Collection[int] | None = None, filters: Filters | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query row, best first; missing places hold id -1.

        ``filters``: what ``allowed`` was computed from, as in :meth:`VectorStore.search`.
        """
        ...

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of ``ids``, one row each, in order."""
        ...
