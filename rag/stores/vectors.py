"""The vector-store factory: the index kind and its settings chosen from the number of rows.

Modelled on txtai's ``ANNFactory`` and its FAISS ``configure()``: :func:`configure` turns a row
count (and an optional forced kind) into a JSON-ready params dict; :func:`create_vector_store`
builds an empty store from it; the store's own ``params()`` (recorded in the manifest) and its
path are all :func:`load_vector_store` needs to reopen it. :data:`BACKENDS` maps the ``backend``
named in the params to its implementation: FAISS (:mod:`rag.stores.faiss_store`, the default) or
Qdrant (:mod:`rag.stores.qdrant_store`, chosen by :class:`~rag.config.StoreSettings`; its client
library is imported only when a Qdrant store is made or opened).

Thresholds, measured with ``rag.stores.ann_bench`` on this 2-core machine while other jobs ran
(384-dimensional :class:`~rag.stores.ann_bench.Mixture` vectors, one query at a time, k=10):

- flat: 0.3 ms at 10k rows, 4-7 ms at 50k (one core), 6-15 ms at 100k, linear beyond; exact
  search is kept up to :data:`FLAT_MAX_ROWS`.
- IVF-SQ8 (nlist and nprobe as below): 0.14 ms at recall@10 0.999 at 50k rows; at 1M rows
  0.9 ms p50 / 1.3 ms p95 at recall 0.989, a 411 MB file built in 50 s, opened (memory-mapped)
  in 0.07 s, 0.5 GB resident after 200 searches. Chosen beyond :data:`FLAT_MAX_ROWS`.
- HNSW (M 32, efConstruction 64): 0.23 ms at recall 0.984 at 100k rows (efSearch 64); at 1M
  rows recall 0.89-0.91 at efSearch 64 and 0.95 only at 256 (0.9 ms), from a 1.8 GB file (full
  vectors plus graph; 1.8 GB resident after 200 searches) built in 8-11 minutes. Never chosen
  automatically; ``index_type="hnsw"`` forces it.

>>> configure(20_000)
{'backend': 'faiss', 'kind': 'flat'}
>>> configure(1_000_000)
{'backend': 'faiss', 'kind': 'ivf', 'nlist': 2000, 'nprobe': 31, 'encoding': 'SQ8'}
>>> configure(1_000_000, store=StoreSettings("qdrant", "http://qdrant:6333", shard_number=4))
{'backend': 'qdrant', 'kind': 'hnsw', 'm': 32, 'ef_construction': 64, 'ef_search': 256, 'mode': 'server', 'url': 'http://qdrant:6333', 'collection_prefix': 'rag-', 'shard_number': 4}
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config import INDEX_TYPES, StoreSettings
from .base import VectorStore
from .faiss_store import FaissBackend
from .qdrant_store import QdrantBackend


#: The backend new stores are built with.
DEFAULT_BACKEND = "faiss"

#: Up to this many rows the store is exact (flat): one query scans them in about 4 ms on one
#: core (7 ms with the other core busy); IVF-SQ8 answers in 0.14 ms at recall@10 0.999 here.
FLAT_MAX_ROWS = 50_000

#: HNSW links per node: 16 loses recall on 384-dimensional clustered vectors (0.67 at efSearch 128).
HNSW_M = 32
#: HNSW build beam width.
HNSW_EF_CONSTRUCTION = 64
#: HNSW search beam width (raised to k when k is larger): recall@10 0.984 at 100k rows ...
HNSW_EF_SEARCH = 64
#: ... and beyond this many rows a wider one: 64 gives 0.89-0.91 at 1M, 256 gives 0.95.
HNSW_WIDE_ROWS = 100_000
#: The wider beam.
HNSW_EF_SEARCH_WIDE = 256

#: IVF cells per square root of the rows. txtai uses 4; k-means and assignment costs grow with
#: the cells, and 2 keeps the 1M-row build near a minute at the same recall and under 1 ms a query.
IVF_LISTS_PER_SQRT_ROW = 2
#: IVF cells probed per query: at least this many ...
IVF_MIN_NPROBE = 16
#: ... or this fraction of the cells, whichever is more.
IVF_NPROBE_FRACTION = 1 / 64


class VectorBackend(Protocol):
    """What a backend provides to the factory: create, reopen and list the files of its stores."""

    def create(self, dimension: int, params: dict[str, Any], training: np.ndarray | None = None) -> VectorStore:
        """An empty store of the kind and settings in ``params``."""
        ...

    def load(self, path: Path, params: dict[str, Any]) -> VectorStore:
        """Open the store saved at ``path`` with its ``params()``."""
        ...

    def files(self, path: Path, params: dict[str, Any]) -> list[Path]:
        """Every file the store saved at ``path`` consists of."""
        ...


#: Backend name -> implementation; the ``backend`` entry of a store's params selects one.
BACKENDS: dict[str, VectorBackend] = {"faiss": FaissBackend(), "qdrant": QdrantBackend()}


def configure(rows: int, index_type: str = "auto", store: StoreSettings | None = None) -> dict[str, Any]:
    """The backend, kind and settings for a store of about ``rows`` vectors (JSON-ready).

    ``index_type`` ``"auto"`` is exact flat up to :data:`FLAT_MAX_ROWS` rows and IVF-SQ8
    beyond; ``"flat"``, ``"hnsw"`` and ``"ivf"`` force the kind, its settings still sized by
    ``rows``. IVF: ``nlist`` = 2·sqrt(rows), at most rows/39 (k-means wants 39 points a cell),
    ``nprobe`` = max(16, nlist/64). HNSW: ``efSearch`` 64, or 256 beyond :data:`HNSW_WIDE_ROWS`.

    ``store`` (default FAISS) picks the backend. A Qdrant server store is flat (exact search)
    or HNSW, ``"auto"`` choosing HNSW where FAISS would choose IVF; it records the server's
    ``url`` (never the API key), the collection prefix, and the shard and replication settings
    when set. Embedded (local) Qdrant always scans every vector, so it is flat whatever the type.

    >>> configure(3_000, "ivf")
    {'backend': 'faiss', 'kind': 'ivf', 'nlist': 76, 'nprobe': 16, 'encoding': 'SQ8'}
    >>> configure(10, "hnsw")
    {'backend': 'faiss', 'kind': 'hnsw', 'm': 32, 'ef_construction': 64, 'ef_search': 64}
    >>> configure(10, "hnsw", StoreSettings("qdrant"))
    {'backend': 'qdrant', 'kind': 'flat', 'mode': 'local'}
    """
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index type {index_type!r} is not one of {', '.join(INDEX_TYPES)}")
    store = store or StoreSettings()
    kind = index_type if index_type != "auto" else "flat" if rows <= FLAT_MAX_ROWS else "ivf"
    if store.backend == "qdrant":
        if index_type == "ivf":
            raise ValueError("a qdrant store is flat or hnsw, not ivf")
        kind = "flat" if store.url is None else "hnsw" if kind == "ivf" else kind
    params: dict[str, Any] = {"backend": store.backend, "kind": kind}
    if kind == "hnsw":
        ef_search = HNSW_EF_SEARCH if rows <= HNSW_WIDE_ROWS else HNSW_EF_SEARCH_WIDE
        params.update(m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, ef_search=ef_search)
    elif kind == "ivf":
        nlist = max(1, min(round(IVF_LISTS_PER_SQRT_ROW * math.sqrt(max(rows, 0))), rows // 39))
        params.update(nlist=nlist, nprobe=min(nlist, max(IVF_MIN_NPROBE, round(nlist * IVF_NPROBE_FRACTION))), encoding="SQ8")
    if store.backend == "qdrant" and store.url is None:
        params["mode"] = "local"
    elif store.backend == "qdrant":
        server = {"url": store.url, "collection_prefix": store.collection_prefix,
                  "shard_number": store.shard_number, "replication_factor": store.replication_factor}
        params.update(mode="server", **{key: value for key, value in server.items() if value is not None})
    return params


def store_settings(params: dict[str, Any]) -> StoreSettings:
    """The store settings a store of ``params`` was configured with (the inverse of :func:`configure`'s ``store``).

    >>> store_settings(configure(10, store=StoreSettings("qdrant", "http://qdrant:6333", replication_factor=2)))
    StoreSettings(backend='qdrant', url='http://qdrant:6333', collection_prefix='rag-', shard_number=None, replication_factor=2)
    """
    if params.get("backend", DEFAULT_BACKEND) != "qdrant":
        return StoreSettings()
    if params.get("mode") != "server":
        return StoreSettings("qdrant")
    return StoreSettings(
        "qdrant", params["url"], params["collection_prefix"], params.get("shard_number"), params.get("replication_factor")
    )


def _backend(params: dict[str, Any]) -> VectorBackend:
    name = params.get("backend", DEFAULT_BACKEND)
    if name not in BACKENDS:
        raise ValueError(f"unknown vector backend {name!r}")
    return BACKENDS[name]


def create_vector_store(
    dimension: int,
    rows: int,
    index_type: str = "auto",
    training: np.ndarray | None = None,
    store: StoreSettings | None = None,
) -> VectorStore:
    """An empty store for about ``rows`` vectors of ``dimension`` floats, as :func:`configure` picks.

    An IVF store trains on ``training`` (vectors like the ones to come, e.g. the first batch)
    when given, else on the first vectors added (see ``IvfStore``).
    """
    params = configure(rows, index_type, store)
    return _backend(params).create(dimension, params, training)


def load_vector_store(path: Path, params: dict[str, Any]) -> VectorStore:
    """Reopen the store saved at ``path`` from the ``params()`` recorded when it was saved.

    ``configure(0, "flat")`` describes a store saved before params were recorded.
    """
    return _backend(params).load(Path(path), params)


def store_files(path: Path, params: dict[str, Any]) -> list[Path]:
    """Every file of the store saved at ``path`` (to copy or hard-link a generation's store)."""
    return _backend(params).files(Path(path), params)
