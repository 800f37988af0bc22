"""Dense vectors in Qdrant, keyed by int64 passage ids: the Qdrant ``VectorStore`` (``pip install '.[scale]'``).

``qdrant_client`` is imported only inside the functions that need it, so the default (FAISS)
path never loads it. Vectors are compared by Qdrant's ``Dot`` distance: the stored vectors are
the normalized ones given, unchanged, and scores are their inner products with the query (as
with FAISS; ``Cosine`` would renormalize them on upload).

Ids. Qdrant point ids are unsigned 64-bit integers (or UUIDs); a passage id is a signed int64.
The point id is the id's two's-complement bit pattern (``int64 -> uint64``, so ids >= 0 are
their own point ids and -5 is 2**64 - 5), and the mapping is reversed on the way out: no
payload lookup, and id -1 stays the "missing" id, never stored.

Payloads and filters. Each point may carry its passage's document metadata (``source``,
``week_start``, ``week_end``, ``category``, ``trend``). :meth:`QdrantStore.search` then applies
``filters`` as payload conditions in place of the ``allowed`` id list (on a server that is one
small condition instead of a list of every matching id, per segment and query): ``source``,
``category`` and ``trend`` as ``MatchAny``, the week overlap as a ``Range`` on
``week_end >= date_from`` and ``week_start <= date_to``. The weeks are stored as ``YYYYMMDD``
integers: for dates spelled ``YYYY-MM-DD`` their order is the text order the passage store's
SQL compares, and a numeric range is cheap where a ``DatetimeRange`` makes embedded Qdrant parse
every point's date strings on every query (5-10x slower here). A date in another spelling
(stored or asked for) and a store whose points lack payloads fall back to ``allowed``. ``excluded`` (tombstoned rows) is a
``must_not`` ``HasIdCondition``.

Two modes, recorded in ``params()["mode"]``:

- ``local``: Qdrant's embedded mode. :meth:`~QdrantStore.save` writes a genuine Qdrant local
  storage folder beside the store path (``vectors.faiss`` -> ``vectors.qdrant/``: ``meta.json``
  and ``collection/vectors/storage.sqlite``, see :meth:`QdrantBackend.files`), so generations
  hard-link it like any segment file and ``QdrantClient(path=...)`` (or ``qdrant_client.migrate``
  to move it onto a server) can open a copy of it. Embedded Qdrant scans every vector: the
  store is exact (``kind`` ``flat``).

  Opening that folder with ``QdrantClient(path=...)`` takes an exclusive, non-blocking
  ``portalocker`` lock on its ``.lock`` file for the client's lifetime: a second process (the
  web app and a ``rag ask`` over the same index, say) fails with "Storage folder ... is already
  accessed by another instance of Qdrant client" (measured; ``tests/stores/test_qdrant_store.py``
  shows it). It also creates that ``.lock`` file and opens the SQLite file read-write, which a
  read-only index folder refuses and which must not touch files hard-linked across generations
  and checksummed in the manifest. So a reader never opens the folder as Qdrant storage: it
  reads the points from ``storage.sqlite`` through a read-only, immutable SQLite connection (no
  lock, no write, any number of processes at once) and uploads them into a private in-memory
  client, ``QdrantClient(":memory:")``, which is what embedded Qdrant does in memory anyway
  (it keeps every point in numpy arrays and scans them). Changing a loaded store changes only
  that copy, until it is saved again.

  Writing goes through qdrant-client's own persistence (``CollectionPersistence.persist``, so
  the format is the library's), with SQLite's journal and fsync turned off like the passage
  store (the index fsyncs a generation once before publishing it): through
  ``QdrantClient(path=...)`` every point is its own fsynced transaction, 92 s per 10k points
  here against 1.6 s. The folder is written beside the target and renamed over it, so readers
  that loaded the old one keep theirs.

  Cost on this 2-core machine with other jobs running (random 384-d unit vectors with payloads,
  a small script timing ``create_vector_store``/``save``/``load_vector_store``/``search``):
  10k points take 4,137 bytes each on disk (pickled float lists; FAISS flat 1,544), save in
  1.6 s and load in 1.8 s; a query takes 20 ms (337 ms with a source filter, which embedded Qdrant
  evaluates point by point in Python). 100k: 4,140 bytes each, 58 s to add in memory, 54 s to save,
  27 s to load, 368 ms a query (1.9 s filtered). Embedded mode is for tests and one machine's
  trials; a FAISS segment opens memory-mapped in milliseconds.

- ``server``: a Qdrant server or cluster at ``url`` (API key from ``$QDRANT_API_KEY``, read
  when the store is opened, never recorded). A segment's points live in one collection named
  ``collection_prefix`` + the segment folder's name (``rag-seg-0123abcd...``: unique, since a
  segment is written once); the collection is created at :meth:`~QdrantStore.save` with the
  configured ``shard_number`` and ``replication_factor``, keyword payload indexes on
  ``source``/``category``/``trend`` and datetime ones on the weeks, and HNSW (``m``,
  ``ef_construct``) when ``kind`` is ``hnsw``; a ``flat`` store searches with ``exact=True``.
  Until it is saved a new store buffers its points in memory. The segment folder then holds only
  a small pointer file, ``vectors.qdrant.json`` (url and collection), so the checksummed files
  say which collection a segment uses; removing old collections is left to the operator.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
import uuid
import warnings
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import QDRANT_API_KEY_ENV
from .faiss_store import REMOVED, _empty, _id_array, checked_rows
from .passages import Filters

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from qdrant_client.http import models

#: The name of this backend in a store's ``params()``.
BACKEND = "qdrant"
#: The collection inside a segment's local storage folder, and of a store not yet saved to a server.
LOCAL_COLLECTION = "vectors"
#: What replaces the store path's suffix: the local storage folder ...
LOCAL_SUFFIX = ".qdrant"
#: ... and, in server mode, the pointer file.
POINTER_SUFFIX = ".qdrant.json"
#: Points per upload, retrieve or scroll request.
BATCH = 512
#: The payload fields holding dates (stored as ``YYYYMMDD`` integers).
DATE_FIELDS = ("week_start", "week_end")
#: Qdrant payload index kinds of the payload fields (``base.PAYLOAD_FIELDS``), created on a server.
_PAYLOAD_SCHEMAS = {"source": "keyword", "week_start": "integer", "week_end": "integer",
                    "category": "keyword", "trend": "keyword"}

def local_folder(path: Path) -> Path:
    """The local-mode storage folder of the store saved at ``path``."""
    return Path(path).with_suffix(LOCAL_SUFFIX)


def pointer_file(path: Path) -> Path:
    """The server-mode pointer file of the store saved at ``path``."""
    return Path(path).with_suffix(POINTER_SUFFIX)


def collection_name(path: Path, prefix: str) -> str:
    """The server collection of the store saved at ``path``: ``prefix`` + its segment folder's name."""
    return prefix + Path(path).resolve().parent.name


def _point_ids(ids: Collection[int]) -> list[int]:
    """Qdrant point ids (uint64) of int64 ids: the same bits."""
    return _id_array(ids).view(np.uint64).tolist()


def _signed(point_ids: Sequence[Any]) -> np.ndarray:
    """The int64 ids of Qdrant point ids."""
    return np.asarray(point_ids, dtype=np.uint64).view(np.int64)


def day_number(value: Any) -> int | None:
    """A ``YYYY-MM-DD`` date as the integer ``YYYYMMDD`` (same order as the text), else ``None``.

    >>> day_number("2019-04-15"), day_number("20190415"), day_number("2019-4-15")
    (20190415, None, None)
    """
    try:
        day = date.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return day.year * 10_000 + day.month * 100 + day.day if day.isoformat() == value else None


def stored_payload(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """A payload as stored, its dates as :func:`day_number` integers; ``None`` when a date is spelled otherwise."""
    stored = dict(payload)
    for key in DATE_FIELDS:
        if key in stored:
            day = day_number(stored[key])
            if day is None:
                return None
            stored[key] = day
    return stored


def payload_filter(filters: Filters) -> list[models.FieldCondition] | None:
    """The payload conditions selecting what ``PassageStore.filtered_ids(filters)`` selects.

    ``None`` when a date is not spelled ``YYYY-MM-DD`` (SQL compares it as text; a date range
    could disagree), so the caller falls back to the ids.
    """
    from qdrant_client.http import models

    conditions = [
        models.FieldCondition(key=key, match=models.MatchAny(any=list(values)))
        for key, values in (("source", filters.sources), ("category", filters.categories), ("trend", filters.trends))
        if values
    ]
    for key, value, bound in (("week_end", filters.date_from, "gte"), ("week_start", filters.date_to, "lte")):
        if value:
            day = day_number(value)
            if day is None:
                return None
            conditions.append(models.FieldCondition(key=key, range=models.Range(**{bound: day})))
    return conditions


def _server_client(url: str, api_key: str | None) -> QdrantClient:
    """A client of the Qdrant server at ``url``."""
    from qdrant_client import QdrantClient

    return QdrantClient(url=url, api_key=api_key)


def _memory_client() -> QdrantClient:
    from qdrant_client import QdrantClient

    return QdrantClient(":memory:")


def _upload(
    client: QdrantClient, collection: str, ids: np.ndarray, vectors: np.ndarray, payloads: Sequence[Any] | None
) -> None:
    """Upsert points, waiting until they are searchable.

    Hides embedded Qdrant's advice to use a server beyond 20k points: the module notes give the
    costs, and the warning would otherwise follow every ``rag ask`` over such a segment.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Local mode is not recommended")
        client.upload_collection(collection, vectors=vectors, ids=_point_ids(ids), payload=payloads, batch_size=BATCH, wait=True)


class QdrantStore:
    """A ``VectorStore`` in one Qdrant collection: embedded in memory, or on a server (see the module notes)."""

    def __init__(
        self, client: QdrantClient, collection: str, dimension: int, params: dict[str, Any], *, payloads: bool, remote: bool
    ) -> None:
        self._client = client
        self._collection = collection
        self._dimension = dimension
        self._settings = _settings(params)
        self._payloads = payloads  # every point carries its metadata: filters can be applied
        self._remote = remote  # the client is a server's (else an in-memory one)
        self._count = int(client.count(collection, exact=True).count)

    @classmethod
    def in_memory(
        cls, dimension: int, params: dict[str, Any], points: tuple[np.ndarray, np.ndarray, list[Any]] | None = None
    ) -> QdrantStore:
        """A store held in an in-memory client with the settings in ``params``, of the (ids, vectors,
        payloads) ``points`` when given (then ``params["payloads"]`` says whether they carry metadata)."""
        client = _memory_client()
        _create_collection(client, LOCAL_COLLECTION, dimension, _settings(params), server=False)
        if points is not None and len(points[0]):
            _upload(client, LOCAL_COLLECTION, *points)
        payloads = points is None or bool(params.get("payloads", False))
        return cls(client, LOCAL_COLLECTION, dimension, params, payloads=payloads, remote=False)

    @property
    def dimension(self) -> int:
        """Length of each vector."""
        return self._dimension

    def __len__(self) -> int:
        return self._count

    def params(self) -> dict[str, Any]:
        """``{"backend": "qdrant", "kind", "mode", ...}``, the dimension, whether payloads are kept, and the server collection."""
        params = {**self._settings, "dimension": self._dimension, "payloads": self._payloads}
        if self._remote:
            params["collection"] = self._collection
        return params

    def add(self, ids: np.ndarray, vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Add ``vectors`` under the new int64 ``ids`` (-1 is reserved), each with its payload when given."""
        ids, vectors = checked_rows(ids, vectors, self.dimension)
        if payloads is not None and len(payloads) != len(ids):
            raise ValueError(f"{len(payloads)} payloads for {len(ids)} vectors")
        if not len(ids):
            return
        stored = None if payloads is None else [stored_payload(payload) for payload in payloads]
        self._payloads = self._payloads and stored is not None and all(payload is not None for payload in stored)
        _upload(self._client, self._collection, ids, vectors, None if stored is None else [p or {} for p in stored])
        self._count = int(self._client.count(self._collection, exact=True).count)

    def remove(self, ids: Collection[int]) -> None:
        """Remove the vectors of ``ids``; unknown ids are ignored."""
        from qdrant_client.http import models

        if not len(ids):
            return
        self._client.delete(self._collection, points_selector=models.PointIdsList(points=_point_ids(ids)), wait=True)
        self._count = int(self._client.count(self._collection, exact=True).count)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: Collection[int] | None = None,
        excluded: Collection[int] | None = None,
        filters: Filters | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query row, best first; missing places hold id -1, score -inf.

        ``k`` is clipped to [1, ``len(self)``]. ``filters`` (with payloads kept) or else
        ``allowed`` restrict the results, ``excluded`` ids never come back; all are applied by
        Qdrant as one filter, so ``k`` results come back whenever ``k`` such vectors exist.
        """
        from qdrant_client.http import models

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(k, len(self)))
        scores, ids = _empty(len(queries), k)
        if not len(self) or (allowed is not None and not len(allowed)):
            return scores, ids
        condition = self._filter(allowed, excluded, filters)
        params = self._search_params(k)
        requests = [
            models.QueryRequest(query=query.tolist(), limit=k, filter=condition, params=params, with_payload=False)
            for query in queries
        ]
        for row, response in enumerate(self._client.query_batch_points(self._collection, requests)):
            found = response.points
            if found:
                ids[row, : len(found)] = _signed([point.id for point in found])
                scores[row, : len(found)] = [point.score for point in found]
        return scores, ids

    def _filter(
        self, allowed: Collection[int] | None, excluded: Collection[int] | None, filters: Filters | None
    ) -> models.Filter | None:
        """One Qdrant filter for the search: payload conditions or allowed ids, and not the excluded ids."""
        from qdrant_client.http import models

        must: list[Any] = []
        pushed = payload_filter(filters) if filters is not None and self._payloads else None
        if pushed is not None:
            must.extend(pushed)
        elif allowed is not None:
            must.append(models.HasIdCondition(has_id=_point_ids(allowed)))
        must_not: list[Any] = []
        if excluded is not None and len(excluded):
            must_not.append(models.HasIdCondition(has_id=_point_ids(excluded)))
        if not must and not must_not:
            return None
        return models.Filter(must=must or None, must_not=must_not or None)

    def _search_params(self, k: int) -> models.SearchParams | None:
        """Exact or HNSW search on a server; embedded Qdrant always scans (and warns about any params)."""
        from qdrant_client.http import models

        if not self._remote:
            return None
        if self._settings["kind"] == "hnsw":
            return models.SearchParams(hnsw_ef=max(int(self._settings["ef_search"]), k))
        return models.SearchParams(exact=True)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of ``ids``, one float32 row each, in order; KeyError for unknown ids."""
        keys = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(keys):
            return np.zeros((0, self.dimension), dtype=np.float32)
        if (keys == REMOVED).any():
            raise KeyError(REMOVED)
        wanted = np.unique(keys)
        found: dict[int, Any] = {}
        for first in range(0, len(wanted), BATCH):
            records = self._client.retrieve(
                self._collection, ids=_point_ids(wanted[first : first + BATCH]), with_vectors=True, with_payload=False
            )
            found.update(zip(_signed([record.id for record in records]).tolist(), (record.vector for record in records)))
        if len(found) != len(wanted):
            raise KeyError("vector ids not in the store")
        return np.asarray([found[key] for key in keys.tolist()], dtype=np.float32)

    def _points(self) -> Iterator[list[models.PointStruct]]:
        """Every point with its vector and payload, in batches."""
        from qdrant_client.http import models

        offset = None
        while True:
            records, offset = self._client.scroll(
                self._collection, limit=BATCH, offset=offset, with_vectors=True, with_payload=True
            )
            if records:
                yield [models.PointStruct(id=r.id, vector=r.vector, payload=r.payload) for r in records]  # type: ignore[arg-type]
            if offset is None:
                return

    def save(self, path: Path) -> None:
        """Write the local storage folder of ``path``, or (server mode) the collection and the pointer file."""
        if self._settings["mode"] == "local":
            self._save_local(local_folder(path))
        else:
            self._save_server(Path(path))

    def _save_local(self, folder: Path) -> None:
        """Write a Qdrant local storage folder beside ``folder`` and rename it over ``folder``."""
        from qdrant_client import QdrantClient
        from qdrant_client.local.persistence import CollectionPersistence

        temporary = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex}")
        try:
            writer = QdrantClient(path=str(temporary))
            try:
                _create_collection(writer, LOCAL_COLLECTION, self.dimension, self._settings, server=False)
            finally:
                writer.close()
            (temporary / ".lock").unlink()  # a reader never takes it (see the module notes)
            storage = CollectionPersistence(str(temporary / "collection" / LOCAL_COLLECTION))
            try:
                storage.storage.execute("PRAGMA journal_mode = OFF")
                storage.storage.execute("PRAGMA synchronous = OFF")
                for batch in self._points():
                    for point in batch:
                        storage.persist(point)
            finally:
                storage.close()
            retired = folder.with_name(f"{folder.name}.old-{uuid.uuid4().hex}")
            if folder.exists():
                os.rename(folder, retired)
            os.rename(temporary, folder)
            shutil.rmtree(retired, ignore_errors=True)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise

    def _save_server(self, path: Path) -> None:
        """Create the segment's collection on the server, upload the points (unless already there), write the pointer."""
        name = collection_name(path, self._settings["collection_prefix"])
        if self._collection != name:
            server = _server_client(self._settings["url"], os.environ.get(QDRANT_API_KEY_ENV) or None)
            if server.collection_exists(name):
                server.delete_collection(name)
            _create_collection(server, name, self.dimension, self._settings, server=True)
            for batch in self._points():
                server.upsert(name, points=batch, wait=True)
            self._client, self._collection, self._remote = server, name, True
        pointer = pointer_file(path)
        temporary = pointer.with_name(pointer.name + ".tmp")
        temporary.write_text(json.dumps({"url": self._settings["url"], "collection": name, "points": len(self)}) + "\n")
        os.replace(temporary, pointer)


def _settings(params: dict[str, Any]) -> dict[str, Any]:
    """The settings in a store's params (what :func:`rag.stores.vectors.configure` chose), checked."""
    if params.get("backend") != BACKEND or params.get("mode") not in ("local", "server"):
        raise ValueError(f"not the params of a Qdrant store: {params!r}")
    if params["mode"] == "server" and not params.get("url"):
        raise ValueError("a Qdrant server store without a url")
    return {key: value for key, value in params.items() if key not in ("dimension", "payloads", "collection")}


def _create_collection(client: QdrantClient, name: str, dimension: int, settings: dict[str, Any], *, server: bool) -> None:
    """Create collection ``name`` for the store's vectors (on a server: shards, replicas, HNSW and payload indexes)."""
    from qdrant_client.http import models

    vectors = models.VectorParams(size=dimension, distance=models.Distance.DOT)
    if not server:
        client.create_collection(name, vectors_config=vectors)
        return
    hnsw = None
    if settings["kind"] == "hnsw":
        hnsw = models.HnswConfigDiff(m=int(settings["m"]), ef_construct=int(settings["ef_construction"]))
    client.create_collection(
        name, vectors_config=vectors, hnsw_config=hnsw,
        shard_number=settings.get("shard_number"), replication_factor=settings.get("replication_factor"),
    )
    for field, schema in _PAYLOAD_SCHEMAS.items():
        client.create_payload_index(name, field_name=field, field_schema=models.PayloadSchemaType(schema), wait=True)


def _read_local(folder: Path, dimension: int) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any] | None]]:
    """(ids, vectors, payloads) of the points in a local storage folder, read without any lock or write.

    The SQLite file is opened read-only and immutable; its rows are the pickled points
    qdrant-client's ``CollectionPersistence`` wrote, in the order written. They are unpickled,
    so the folder must be as trusted as any index file (embedded Qdrant unpickles them too).
    """
    meta = json.loads((folder / "meta.json").read_text())
    config = meta.get("collections", {}).get(LOCAL_COLLECTION)
    if not isinstance(config, dict):
        raise ValueError(f"{folder}: no {LOCAL_COLLECTION!r} collection")
    size = config.get("vectors", {}).get("size")
    if size != dimension:
        raise ValueError(f"{folder}: vectors of {size} floats, expected {dimension}")
    storage = folder / "collection" / LOCAL_COLLECTION / "storage.sqlite"
    if not storage.is_file():
        raise FileNotFoundError(storage)
    database = sqlite3.connect(f"file:{storage}?mode=ro&immutable=1", uri=True)
    try:
        rows = database.execute("SELECT point FROM points ORDER BY rowid").fetchall()
    finally:
        database.close()
    points = [pickle.loads(row[0]) for row in rows]
    ids = _signed([point.id for point in points])
    vectors = np.zeros((len(points), dimension), dtype=np.float32)
    for row, point in enumerate(points):
        vectors[row] = point.vector[""] if isinstance(point.vector, dict) else point.vector
    return ids, vectors, [point.payload for point in points]


class QdrantBackend:
    """The Qdrant implementation of ``VectorStore`` for the factory in :mod:`rag.stores.vectors`."""

    @staticmethod
    def create(dimension: int, params: dict[str, Any], training: np.ndarray | None = None) -> QdrantStore:
        """An empty store with the settings in ``params``, in memory until saved (``training`` is not needed)."""
        return QdrantStore.in_memory(dimension, params)

    @staticmethod
    def load(path: Path, params: dict[str, Any]) -> QdrantStore:
        """Open the store saved at ``path`` with its ``params()``: loaded into memory (local) or connected (server)."""
        if "dimension" not in params:
            raise ValueError("Qdrant store params without a dimension")
        dimension = int(params["dimension"])
        if _settings(params)["mode"] == "local":
            return QdrantStore.in_memory(dimension, params, _read_local(local_folder(path), dimension))
        pointer = json.loads(pointer_file(path).read_text())
        if pointer.get("collection") != params.get("collection") or pointer.get("url") != params.get("url"):
            raise ValueError(f"{pointer_file(path)} names another collection than the store's params")
        server = _server_client(params["url"], os.environ.get(QDRANT_API_KEY_ENV) or None)
        vectors_config = server.get_collection(params["collection"]).config.params.vectors
        size = getattr(vectors_config, "size", None)
        if size != dimension:
            raise ValueError(f"collection {params['collection']}: vectors of {size} floats, expected {dimension}")
        return QdrantStore(server, params["collection"], dimension, params, payloads=bool(params.get("payloads")), remote=True)

    @staticmethod
    def files(path: Path, params: dict[str, Any]) -> list[Path]:
        """The files of the store saved at ``path``: the local storage folder's, or the server pointer file."""
        if params.get("mode") == "server":
            return [pointer_file(path)]
        folder = local_folder(path)
        return [folder / "meta.json", folder / "collection" / LOCAL_COLLECTION / "storage.sqlite"]
