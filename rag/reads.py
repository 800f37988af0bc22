"""What one search reads from the passage store, each thing once, some of it ahead of need.

A hybrid search waits for its question's vector before the dense list, the fusion and the
sentence scoring can start, while BM25's list is ready as soon as the lexical search returns.
:meth:`SearchReads.read_ahead` uses that wait: it reads the records and sentence vectors of the
lexical list's best passages, a few at a time, until the vector is there. Most of them are
among the fused candidates the search then reads; those come from memory, the rest from the
store. Measured at a million passages: about 1 ms less a question (README, Scale).

>>> reads = SearchReads(index.passages)  # doctest: +SKIP
>>> reads.read_ahead(lexical_ids, until=encoding, limit=30)  # doctest: +SKIP
>>> records = reads.records([12, 40, 7])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import numpy as np

from .stores.base import PassageIndex
from .stores.passages import PassageRecord

#: Passages read per step while the question encodes: small, so the search stops reading soon
#: after the vector is ready.
READ_AHEAD_STEP = 10

SentenceKey = tuple[str, int, int]


class SearchReads:
    """The passage records and sentence vectors one search has read (one search, one thread)."""

    def __init__(self, passages: PassageIndex) -> None:
        self._passages = passages
        self._records: dict[int, PassageRecord] = {}
        self._absent: set[int] = set()
        self._vectors: dict[SentenceKey, np.ndarray | None] = {}
        self._unstored: set[SentenceKey] = set()

    def read_ahead(self, ids: Sequence[int], *, until: Future[Any], limit: int) -> None:
        """Read the records and sentence vectors of the first ``limit`` of ``ids``, ``READ_AHEAD_STEP``
        at a time, stopping as soon as ``until`` is done."""
        for first in range(0, min(len(ids), limit), READ_AHEAD_STEP):
            if until.done():
                return
            step = self.records(ids[first : min(first + READ_AHEAD_STEP, limit)])
            self.sentence_vectors([(record.source, start, end) for record in step.values() for start, end in record.sentences])

    def records(self, ids: Sequence[int]) -> dict[int, PassageRecord]:
        """The records of the live ``ids`` (unknown or dead ids are absent), read once per search."""
        return _read_once(ids, self._records, self._absent, self._passages.passages)

    def sentence_vectors(self, keys: Sequence[SentenceKey]) -> dict[SentenceKey, np.ndarray | None]:
        """The stored sentences among ``(source, start, end)`` keys with their vectors (``None``: stored
        without one), as :meth:`PassageIndex.sentence_vectors_of` gives them, read once per search."""
        return _read_once(keys, self._vectors, self._unstored, self._passages.sentence_vectors_of)


Key = TypeVar("Key")
Value = TypeVar("Value")


def _read_once(
    keys: Sequence[Key], known: dict[Key, Value], absent: set[Key], read: Callable[[list[Key]], dict[Key, Value]]
) -> dict[Key, Value]:
    """``keys`` found in ``known`` or, for those neither known nor ``absent`` yet, by ``read`` (which
    leaves out what does not exist); ``known`` and ``absent`` keep what was learnt."""
    missing = [key for key in dict.fromkeys(keys) if key not in known and key not in absent]
    if missing:
        found = read(missing)
        known.update(found)
        absent.update(key for key in missing if key not in found)
    return {key: known[key] for key in keys if key in known}
