"""Dense vectors in FAISS inner-product indexes keyed by int64 passage ids: the FAISS ``VectorStore``\\ s.

Three kinds, all searched by inner product (cosine similarity on normalized vectors):

- ``flat`` (:class:`FaissStore`): exact scan, ``IndexIDMap2(IndexFlatIP)``; the reference.
- ``hnsw`` (:class:`HnswStore`): ``IndexIDMap2(IndexHNSWFlat)``, full float vectors in a graph.
  FAISS cannot remove from an HNSW graph, so :meth:`~HnswStore.remove` turns the removed nodes
  into tombstones: their entry in the id map becomes :data:`REMOVED` (-1, never a valid id), and
  every search excludes that id through an ``IDSelectorNot``. The tombstones live in the index
  file itself (the id map is saved with it), so a store is still one file; re-adding a removed id
  makes a new node, and the dead one can never come back under it.
- ``ivf`` (:class:`IvfStore`): ``IVF{nlist},SQ8``, 8-bit scalar-quantized vectors in ``nlist``
  k-means cells, with a hash-table direct map for :meth:`~IvfStore.vectors` and removal.

``allowed`` and ``excluded`` are applied inside FAISS as id selectors. An approximate search that
comes back with empty places (a restrictive filter hides the graph neighbours or probed cells) is
run again exhaustively for those queries, so ``k`` results come back whenever ``k`` eligible
vectors exist; a small ``allowed`` set goes exhaustive at once.

A store is one file (:func:`store_files`). It is opened memory-mapped and read-only
(``IO_FLAG_MMAP_IFC``), so even a million vectors open in milliseconds; the first change re-reads
the file into memory (FAISS aborts the process on a write into a mapped index), so that file must
still exist then. :meth:`~_FaissVectorStore.save` writes a temporary file and renames it over
``path``: a file other processes have mapped (or hard-linked) is replaced, never rewritten in place.

>>> import numpy as np
>>> store = FaissStore.create(2)
>>> store.add(np.array([7, 9]), np.array([[1, 0], [0, 1]], dtype="float32"))
>>> store.search(np.array([[1, 0]], dtype="float32"), 1)[1].tolist()
[[7]]
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from .passages import Filters

#: Below this many vectors compared (per search, over all queries) a search runs on one thread:
#: OpenMP's start-up and spinning cost more than the scan, and its spinning threads slow the
#: question encoder that runs next.
SINGLE_THREAD_BELOW = 100_000

#: The name of this backend in a store's ``params()``.
BACKEND = "faiss"

#: The id of a tombstoned HNSW node, and of a missing place in search results; never a valid id.
REMOVED = -1

#: An ``allowed`` set at most this fraction of the store is searched exhaustively (under the
#: selector, only allowed vectors are scored): a graph walk or a few probed cells would miss most.
EXHAUSTIVE_ALLOWED_FRACTION = 0.05

#: k-means needs this many training vectors per IVF cell (FAISS warns below it); fewer cut ``nlist``.
MIN_POINTS_PER_LIST = 39

#: An IVF store trains once this many vectors per cell are at hand (k-means costs grow with
#: training rows x cells; more rows barely move recall), on an evenly spread sample of them.
TRAIN_POINTS_PER_LIST = 50


def _threads(work: int) -> int:
    """OpenMP threads for ``work`` vector comparisons (see :data:`SINGLE_THREAD_BELOW`)."""
    return 1 if work < SINGLE_THREAD_BELOW else os.cpu_count() or 1


def _mapped_read(path: Path) -> Any:
    """Read the index file at ``path`` memory-mapped and read-only."""
    import faiss

    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)


def checked_rows(ids: np.ndarray, vectors: np.ndarray, dimension: int) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` as contiguous int64 and ``vectors`` as contiguous float32 rows, one per id, of ``dimension``.

    Raises ``ValueError`` for rows of another length or the reserved id :data:`REMOVED`.
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), -1)
    if vectors.shape[1] != dimension:
        raise ValueError(f"vectors of {vectors.shape[1]} floats, the store holds {dimension}")
    if (ids == REMOVED).any():
        raise ValueError(f"{REMOVED} is not a valid vector id")
    return ids, vectors


def _empty(rows: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((rows, k), -np.inf, dtype=np.float32), np.full((rows, k), REMOVED, dtype=np.int64)


def _id_array(ids: Collection[int]) -> np.ndarray:
    if isinstance(ids, np.ndarray):
        return np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    return np.fromiter(ids, dtype=np.int64, count=len(ids))


def store_files(path: Path, params: dict[str, Any]) -> list[Path]:
    """The files of the FAISS store saved at ``path``: always ``path`` alone, for every kind."""
    return [Path(path)]


class _FaissVectorStore:
    """What every FAISS kind shares: validation, selectors, threads, copy-on-write, saving."""

    kind: ClassVar[str]
    #: Whether a search can miss eligible vectors (then short rows are searched again exhaustively).
    approximate: ClassVar[bool] = True

    def __init__(self, index: Any, mapped: Path | None = None) -> None:
        self._index = index
        self._mapped = mapped

    @classmethod
    def open(cls, path: Path, params: dict[str, Any]) -> Self:
        """Open the store saved at ``path`` with the ``params()`` it was saved with."""
        index = _mapped_read(path)
        if "dimension" in params and int(params["dimension"]) != index.d:
            raise ValueError(f"{path}: vectors of {index.d} floats, expected {params['dimension']}")
        store = cls(index, Path(path))
        store._configure(params)
        return store

    def _configure(self, params: dict[str, Any]) -> None:
        """Check the opened index is of this kind and take the search settings from ``params``."""
        raise NotImplementedError

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        return int(self._index.d)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def params(self) -> dict[str, Any]:
        """``{"backend": "faiss", "kind", "dimension", ...}`` plus the kind's own settings."""
        return {"backend": BACKEND, "kind": self.kind, "dimension": self.dimension, **self._settings()}

    def _settings(self) -> dict[str, Any]:
        return {}

    def _writable(self) -> Any:
        """The index, first read into memory if it is still mapped from its file."""
        if self._mapped is not None:
            import faiss

            self._index = faiss.read_index(str(self._mapped))
            self._mapped = None
        return self._index

    def add(self, ids: np.ndarray, vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Add ``vectors`` (one row each) under the given new int64 ``ids`` (-1 is reserved); ``payloads`` are not kept."""
        ids, vectors = checked_rows(ids, vectors, self.dimension)
        if len(ids):
            self._add(ids, vectors)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._writable().add_with_ids(vectors, ids)

    def remove(self, ids: Collection[int]) -> None:
        """Remove the vectors of ``ids``; unknown ids are ignored."""
        if len(ids):
            self._remove(_id_array(ids))

    def _remove(self, ids: np.ndarray) -> None:
        self._writable().remove_ids(ids)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: Collection[int] | None = None,
        excluded: Collection[int] | None = None,
        filters: Filters | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query row, best first; missing places hold id -1, score -inf.

        ``k`` is clipped to [1, ``len(self)``]. Only ids in ``allowed`` (when given) and never
        ids in ``excluded`` are returned, applied inside FAISS, so ``k`` results come back
        whenever ``k`` such vectors exist. ``filters`` are ignored: FAISS keeps no metadata,
        and ``allowed`` holds the ids they select.
        """
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        if not len(self) or (allowed is not None and not len(allowed)):
            return _empty(len(queries), k)
        self._ready()
        keep: list[Any] = []  # the FAISS selectors hold raw pointers to one another
        selector = self._selector(allowed, excluded, keep)
        exhaustive = not self.approximate or (
            allowed is not None and len(allowed) <= EXHAUSTIVE_ALLOWED_FRACTION * len(self)
        )
        faiss.omp_set_num_threads(_threads(len(queries) * (len(self) if exhaustive else self._scan())))
        if exhaustive:
            scores, ids = self._exhaustive(queries, k, selector)
        else:
            scores, ids = self._approximate(queries, k, selector)
            short = (ids == REMOVED).any(axis=1)
            if short.any():
                faiss.omp_set_num_threads(_threads(int(short.sum()) * len(self)))
                scores[short], ids[short] = self._exhaustive(queries[short], k, selector)
        scores[ids == REMOVED] = -np.inf
        return scores, ids

    def _ready(self) -> None:
        """Make the index searchable (the IVF store trains on what it has buffered)."""

    def _tombstones(self) -> bool:
        return False

    def _selector(self, allowed: Collection[int] | None, excluded: Collection[int] | None, keep: list[Any]) -> Any:
        """The FAISS selector for ``allowed`` and not ``excluded`` (nor tombstones); None for every id."""
        import faiss

        chosen = None
        if allowed is not None:
            allowed_ids = _id_array(allowed)
            keep.append(faiss.IDSelectorBatch(allowed_ids[allowed_ids != REMOVED]))
            chosen = keep[-1]
        banned = _id_array(excluded) if excluded is not None and len(excluded) else np.zeros(0, np.int64)
        if allowed is None and self._tombstones():
            banned = np.append(banned, REMOVED)
        if len(banned):
            keep.append(faiss.IDSelectorBatch(banned))
            keep.append(faiss.IDSelectorNot(keep[-1]))
            if chosen is not None:
                keep.append(faiss.IDSelectorAnd(chosen, keep[-1]))
            chosen = keep[-1]
        return chosen

    def _scan(self) -> int:
        """Vectors compared per query by an approximate search (for the thread rule)."""
        return len(self)

    def _approximate(self, queries: np.ndarray, k: int, selector: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._exhaustive(queries, k, selector)

    def _exhaustive(self, queries: np.ndarray, k: int, selector: Any) -> tuple[np.ndarray, np.ndarray]:
        """Search every live vector the selector lets through (exact but for quantization)."""
        import faiss

        params = None if selector is None else faiss.SearchParameters(sel=selector)
        return self._index.search(queries, k, params=params)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of ``ids``, one float32 row each, in order; KeyError for unknown ids."""
        keys = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(keys):
            return np.zeros((0, self.dimension), dtype=np.float32)
        self._ready()
        if (keys == REMOVED).any():
            raise KeyError(REMOVED)
        try:
            return np.asarray(self._index.reconstruct_batch(keys), dtype=np.float32)
        except RuntimeError:
            raise KeyError("vector ids not in the store") from None

    def save(self, path: Path) -> None:
        """Write the store to the file ``path`` (through a temporary file renamed over it)."""
        import faiss

        self._ready()
        path = Path(path)
        temporary = path.with_name(path.name + ".tmp")
        faiss.write_index(self._index, str(temporary))
        os.replace(temporary, path)


class FaissStore(_FaissVectorStore):
    """Exact search: every vector scored, the reference the approximate kinds are measured against."""

    kind = "flat"
    approximate = False

    @classmethod
    def create(cls, dimension: int) -> FaissStore:
        """An empty store for vectors of ``dimension`` floats."""
        import faiss

        return cls(faiss.index_factory(dimension, "IDMap2,Flat", faiss.METRIC_INNER_PRODUCT))

    @classmethod
    def load(cls, path: Path) -> FaissStore:
        """Open a flat store written by :meth:`save` (memory-mapped; see the module notes)."""
        return cls.open(path, {})

    def _configure(self, params: dict[str, Any]) -> None:
        import faiss

        if not isinstance(self._index, faiss.IndexIDMap2) or not isinstance(
            faiss.downcast_index(self._index.index), faiss.IndexFlat
        ):
            raise ValueError("not a flat FAISS store")


class HnswStore(_FaissVectorStore):
    """Approximate search in an HNSW graph of the full vectors; removal leaves tombstones."""

    kind = "hnsw"

    def __init__(self, index: Any, mapped: Path | None = None) -> None:
        super().__init__(index, mapped)
        self._ef_search = 0
        self._removed = int(np.count_nonzero(self._id_map() == REMOVED))

    @classmethod
    def create(cls, dimension: int, m: int, ef_construction: int, ef_search: int) -> HnswStore:
        """An empty graph of ``m`` links per node, built with ``ef_construction``, searched with ``ef_search``."""
        import faiss

        store = cls(faiss.index_factory(dimension, f"IDMap2,HNSW{m},Flat", faiss.METRIC_INNER_PRODUCT))
        store._hnsw().efConstruction = ef_construction
        store._ef_search = ef_search
        return store

    def _configure(self, params: dict[str, Any]) -> None:
        import faiss

        if not isinstance(self._index, faiss.IndexIDMap2) or not isinstance(
            faiss.downcast_index(self._index.index), faiss.IndexHNSWFlat
        ):
            raise ValueError("not an HNSW FAISS store")
        if int(params.get("m", self._m())) != self._m():
            raise ValueError(f"HNSW graph of {self._m()} links per node, expected {params['m']}")
        self._ef_search = int(params.get("ef_search", self._hnsw().efSearch))

    def _hnsw(self) -> Any:
        import faiss

        return faiss.downcast_index(self._index.index).hnsw

    def _m(self) -> int:
        return int(self._hnsw().nb_neighbors(1))

    def _id_map(self) -> np.ndarray:
        """A writable view of the index's id map (position in the graph -> id); valid until the next add."""
        import faiss

        id_map = self._index.id_map
        return faiss.rev_swig_ptr(id_map.data(), id_map.size()) if id_map.size() else np.zeros(0, np.int64)

    def _settings(self) -> dict[str, Any]:
        return {"m": self._m(), "ef_construction": int(self._hnsw().efConstruction), "ef_search": self._ef_search}

    def __len__(self) -> int:
        return int(self._index.ntotal) - self._removed

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        import faiss

        index = self._writable()
        faiss.omp_set_num_threads(_threads(len(ids) * int(self._hnsw().efConstruction) * self._m()))
        index.add_with_ids(vectors, ids)

    def _remove(self, ids: np.ndarray) -> None:
        index = self._writable()
        id_map = self._id_map()
        dead = np.isin(id_map, ids[ids != REMOVED])
        if dead.any():
            id_map[dead] = REMOVED
            self._removed += int(dead.sum())
            index.construct_rev_map()

    def _tombstones(self) -> bool:
        return self._removed > 0

    def _scan(self) -> int:
        return self._ef_search * self._m()

    def _approximate(self, queries: np.ndarray, k: int, selector: Any) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self._ef_search, k))
        return self._index.search(queries, k, params=params)

    def _exhaustive(self, queries: np.ndarray, k: int, selector: Any) -> tuple[np.ndarray, np.ndarray]:
        """Scan the graph's flat storage (graph positions), the selector translated through the id map."""
        import faiss

        storage = faiss.downcast_index(faiss.downcast_index(self._index.index).storage)
        params = None
        if selector is not None:
            translated = faiss.IDSelectorTranslated(self._index.id_map, selector)
            params = faiss.SearchParameters(sel=translated)
        scores, positions = storage.search(queries, k, params=params)
        return scores, np.where(positions >= 0, self._id_map()[np.maximum(positions, 0)], REMOVED)


class IvfStore(_FaissVectorStore):
    """Approximate search over ``nprobe`` of ``nlist`` k-means cells of 8-bit quantized vectors.

    The cells are trained on the ``training`` vectors given to :meth:`create`, or else on the
    first :data:`TRAIN_POINTS_PER_LIST` x ``nlist`` vectors added (buffered until then); a search,
    ``vectors()`` or ``save()`` before that trains on what is buffered, with ``nlist`` cut so each
    cell gets :data:`MIN_POINTS_PER_LIST` vectors. ``params()`` reports the ``nlist`` in use.
    """

    kind = "ivf"

    def __init__(self, index: Any, mapped: Path | None = None) -> None:
        super().__init__(index, mapped)
        self._nprobe = 1
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    @classmethod
    def create(cls, dimension: int, nlist: int, nprobe: int, training: np.ndarray | None = None) -> IvfStore:
        """An empty store of ``nlist`` cells searched ``nprobe`` at a time, trained now if ``training`` is given."""
        store = cls(cls._new_index(dimension, nlist))
        store._nprobe = nprobe
        if training is not None:
            store._train(np.ascontiguousarray(training, dtype=np.float32))
        return store

    @staticmethod
    def _new_index(dimension: int, nlist: int) -> Any:
        import faiss

        index = faiss.index_factory(dimension, f"IVF{nlist},SQ8", faiss.METRIC_INNER_PRODUCT)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        index.cp.min_points_per_centroid = 1  # nlist is cut to the training rows before FAISS sees them
        return index

    def _configure(self, params: dict[str, Any]) -> None:
        import faiss

        if not isinstance(self._index, faiss.IndexIVFScalarQuantizer):
            raise ValueError("not an IVF-SQ8 FAISS store")
        if self._index.direct_map.type != faiss.DirectMap.Hashtable:
            raise ValueError("IVF store without its id hash table")
        if int(params.get("nlist", self._index.nlist)) != self._index.nlist:
            raise ValueError(f"IVF store of {self._index.nlist} cells, expected {params['nlist']}")
        self._nprobe = int(params.get("nprobe", self._index.nprobe))

    def _settings(self) -> dict[str, Any]:
        return {"nlist": int(self._index.nlist), "nprobe": min(self._nprobe, int(self._index.nlist)), "encoding": "SQ8"}

    def __len__(self) -> int:
        return int(self._index.ntotal) + sum(len(ids) for ids, _ in self._pending)

    def _train(self, training: np.ndarray) -> None:
        """Train the cells on (an even sample of) ``training``, cutting ``nlist`` to fit its rows."""
        import faiss

        nlist = max(1, min(int(self._index.nlist), len(training) // MIN_POINTS_PER_LIST))
        if nlist != self._writable().nlist:
            self._index = self._new_index(self.dimension, nlist)
        if len(training) > TRAIN_POINTS_PER_LIST * nlist:
            rows = np.random.default_rng(0).choice(len(training), TRAIN_POINTS_PER_LIST * nlist, replace=False)
            training = training[np.sort(rows)]
        faiss.omp_set_num_threads(_threads(len(training) * nlist))
        self._index.train(training)

    def _ready(self) -> None:
        """Train on the buffered vectors (if still untrained) and move them into the index."""
        if self._index.is_trained or not self._pending:
            return
        pending, self._pending = self._pending, []
        self._train(np.vstack([vectors for _, vectors in pending]))
        for ids, vectors in pending:
            self._add(ids, vectors)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        import faiss

        if not self._index.is_trained:
            self._pending.append((ids.copy(), vectors.copy()))  # the caller may reuse its arrays
            if len(self) >= TRAIN_POINTS_PER_LIST * self._index.nlist:
                self._ready()
            return
        index = self._writable()
        faiss.omp_set_num_threads(_threads(len(ids) * int(index.nlist)))
        index.add_with_ids(vectors, ids)

    def _remove(self, ids: np.ndarray) -> None:
        pending, self._pending = self._pending, []
        for pending_ids, vectors in pending:
            keep = ~np.isin(pending_ids, ids)
            self._pending.append((pending_ids[keep], vectors[keep]))
        if self._index.ntotal:
            self._writable().remove_ids(ids)

    def _scan(self) -> int:
        return self._nprobe * (len(self) // max(1, int(self._index.nlist)) + 1) + int(self._index.nlist)

    def _approximate(self, queries: np.ndarray, k: int, selector: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._probe(queries, k, selector, self._nprobe)

    def _exhaustive(self, queries: np.ndarray, k: int, selector: Any) -> tuple[np.ndarray, np.ndarray]:
        return self._probe(queries, k, selector, int(self._index.nlist))

    def _probe(self, queries: np.ndarray, k: int, selector: Any, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = faiss.SearchParametersIVF(sel=selector, nprobe=min(nprobe, int(self._index.nlist)))
        return self._index.search(queries, k, params=params)


class FaissBackend:
    """The FAISS implementations of ``VectorStore``, by kind, for the factory in :mod:`rag.stores.vectors`."""

    kinds: ClassVar[dict[str, type[_FaissVectorStore]]] = {"flat": FaissStore, "hnsw": HnswStore, "ivf": IvfStore}

    @classmethod
    def create(cls, dimension: int, params: dict[str, Any], training: np.ndarray | None = None) -> _FaissVectorStore:
        """An empty store of the kind and settings in ``params`` (IVF trains on ``training`` if given)."""
        kind = params["kind"]
        if kind == "flat":
            return FaissStore.create(dimension)
        if kind == "hnsw":
            return HnswStore.create(dimension, params["m"], params["ef_construction"], params["ef_search"])
        if kind == "ivf":
            return IvfStore.create(dimension, params["nlist"], params["nprobe"], training)
        raise ValueError(f"unknown FAISS store kind {kind!r}")

    @classmethod
    def load(cls, path: Path, params: dict[str, Any]) -> _FaissVectorStore:
        """Open the store saved at ``path`` with its ``params()``."""
        if params.get("kind") not in cls.kinds:
            raise ValueError(f"unknown FAISS store kind {params.get('kind')!r}")
        return cls.kinds[params["kind"]].open(path, params)

    @classmethod
    def files(cls, path: Path, params: dict[str, Any]) -> list[Path]:
        """The files of the store saved at ``path`` (see :func:`store_files`)."""
        return store_files(path, params)
