"""Dense vectors in an exact FAISS inner-product index keyed by int64 passage ids.

>>> import numpy as np
>>> store = FaissStore.create(2)
>>> store.add(np.array([7, 9]), np.array([[1, 0], [0, 1]], dtype="float32"))
>>> store.search(np.array([[1, 0]], dtype="float32"), 1)[1].tolist()
[[7]]
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

#: Below this many vectors a search runs on one thread: OpenMP's start-up and spinning cost more
#: than the scan, and its spinning threads slow the question encoder that runs next.
SINGLE_THREAD_BELOW = 100_000


class FaissStore:
    """Normalized vectors searched by inner product (cosine similarity), with an id map."""

    def __init__(self, index: Any) -> None:
        self._index = index

    @classmethod
    def create(cls, dimension: int) -> FaissStore:
        """An empty store for vectors of ``dimension`` floats."""
        import faiss

        return cls(faiss.IndexIDMap2(faiss.IndexFlatIP(dimension)))

    @classmethod
    def load(cls, path: Path) -> FaissStore:
        """Read a store written by :meth:`save`."""
        import faiss

        return cls(faiss.read_index(str(path)))

    def save(self, path: Path) -> None:
        """Write the store to ``path``."""
        import faiss

        faiss.write_index(self._index, str(path))

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        return int(self._index.d)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under the given int64 ids."""
        if len(ids):
            self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Collection[int]) -> None:
        """Remove the vectors of the given ids (unknown ids are ignored)."""
        if ids:
            self._index.remove_ids(np.fromiter(ids, dtype=np.int64))

    def search(
        self, queries: np.ndarray, k: int, allowed: Collection[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query row; missing places hold id -1.

        ``allowed`` restricts the search to those ids inside FAISS, so ``k`` results come
        back whenever ``k`` allowed vectors exist.
        """
        import faiss

        queries = np.ascontiguousarray(queries, dtype=np.float32)
        faiss.omp_set_num_threads(1 if len(self) * len(queries) < SINGLE_THREAD_BELOW else os.cpu_count() or 1)
        k = max(1, min(k, len(self)))
        if allowed is None:
            return self._index.search(queries, k)
        if not allowed:
            return np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1)
        selector = faiss.IDSelectorBatch(np.fromiter(allowed, dtype=np.int64))
        return self._index.search(queries, k, params=faiss.SearchParameters(sel=selector))

    def vectors(self, ids: Collection[int]) -> np.ndarray:
        """The stored vectors of the given ids, one row each, in order."""
        if not ids:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.vstack([self._index.reconstruct(int(i)) for i in ids]).astype(np.float32)
