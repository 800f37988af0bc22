"""The Qdrant store beyond the shared contract: concurrent readers, filter pushdown, server mode, settings."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.config import QDRANT_API_KEY_ENV, StoreSettings, store_settings
from rag.stores import qdrant_store
from rag.stores.passages import Filters
from rag.stores.vectors import configure, create_vector_store, load_vector_store, store_files
from rag.stores.vectors import store_settings as settings_of

from .test_vector_contract import IDS, VECTORS, build, needs_qdrant, unit_rows

pytestmark = needs_qdrant

ROOT = Path(__file__).resolve().parents[2]

#: One brief per 50 rows of ``IDS``: its source, week, category and trend (some missing, as in real briefs).
BRIEFS = [
    {
        "source": f"{n:03}.txt",
        "week_start": (date(2019, 1, 7) + timedelta(weeks=n)).isoformat(),
        "week_end": (date(2019, 1, 13) + timedelta(weeks=n)).isoformat(),
        "category": ("Security issues", "Economy", None)[n % 3],
        "trend": ("better", "worse", "unchanged", None)[n % 4],
    }
    for n in range(len(IDS) // 50)
]
PAYLOADS = [{key: value for key, value in BRIEFS[row // 50].items() if value is not None} for row in range(len(IDS))]


def matches(brief: dict[str, Any], filters: Filters) -> bool:
    """What ``PassageStore.filtered_ids`` selects, in Python: SQL ``IN`` and text comparison of the dates."""
    return (
        (not filters.sources or brief["source"] in filters.sources)
        and (not filters.categories or brief["category"] in filters.categories)
        and (not filters.trends or brief["trend"] in filters.trends)
        and (not filters.date_from or brief["week_end"] >= filters.date_from)
        and (not filters.date_to or brief["week_start"] <= filters.date_to)
    )


def allowed_by(filters: Filters) -> set[int]:
    return {int(IDS[row]) for row in range(len(IDS)) if matches(BRIEFS[row // 50], filters)}


@pytest.fixture(scope="module")
def described() -> qdrant_store.QdrantStore:
    """An embedded Qdrant store over ``IDS``/``VECTORS`` with each row's brief as payload (shared: do not change)."""
    store = create_vector_store(VECTORS.shape[1], len(IDS), store=StoreSettings("qdrant"))
    store.add(IDS, VECTORS, PAYLOADS)
    return store


FILTERS = [
    Filters(sources=("003.txt", "017.txt")),
    Filters(categories=("Economy",)),
    Filters(trends=("worse", "unchanged")),
    Filters(date_from=BRIEFS[30]["week_end"]),  # the boundary week still overlaps
    Filters(date_to=BRIEFS[4]["week_start"]),
    Filters(date_from="2019-03-01", date_to="2019-05-31", categories=("Security issues",)),
    Filters(sources=("001.txt",), trends=("better",)),  # matches nothing
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda filters: repr(filters)[8:60])
def test_filters_pushed_down_give_what_faiss_gives_with_the_allowed_ids(
    described: qdrant_store.QdrantStore, filters: Filters
) -> None:
    faiss = build("flat")
    queries = unit_rows(8, seed=21)
    allowed = allowed_by(filters)
    excluded = set(IDS[::7].tolist())
    expected = faiss.search(queries, 10, allowed=allowed, excluded=excluded)
    pushed = described.search(queries, 10, excluded=excluded, filters=filters)  # no ids: the payloads decide
    assert pushed[1].tolist() == expected[1].tolist()
    assert np.allclose(pushed[0], expected[0], atol=1e-5)
    assert described.search(queries, 10, allowed, excluded, filters)[1].tolist() == expected[1].tolist()


def test_dates_spelled_otherwise_and_stores_without_payloads_fall_back_to_the_allowed_ids(
    described: qdrant_store.QdrantStore,
) -> None:
    queries = unit_rows(4, seed=22)
    faiss = build("flat")
    odd = Filters(date_to="20190304")  # SQL compares text: every "2019-..." week starts before it
    allowed = allowed_by(odd)
    assert len(allowed) == len(IDS) and qdrant_store.payload_filter(odd) is None
    assert described.search(queries, 10, allowed, filters=odd)[1].tolist() == faiss.search(queries, 10, allowed)[1].tolist()
    bare = build("qdrant")  # added without payloads: the filters cannot be applied
    assert bare.params()["payloads"] is False
    odd_week = create_vector_store(VECTORS.shape[1], 2, store=StoreSettings("qdrant"))
    odd_week.add(IDS[:2], VECTORS[:2], [PAYLOADS[0], {**PAYLOADS[1], "week_start": "2019-4-1"}])
    assert odd_week.params()["payloads"] is False
    narrow = Filters(sources=("002.txt",))
    assert bare.search(queries, 5, allowed_by(narrow), filters=narrow)[1].tolist() == faiss.search(
        queries, 5, allowed_by(narrow))[1].tolist()


def test_payloads_and_the_pushdown_survive_saving_and_reopening(described: qdrant_store.QdrantStore, tmp_path: Path) -> None:
    path = tmp_path / "vectors.faiss"
    described.save(path)
    opened = load_vector_store(path, json.loads(json.dumps(described.params())))
    assert opened.params()["payloads"] is True
    queries = unit_rows(3, seed=23)
    for filters in FILTERS[:3]:
        assert opened.search(queries, 10, filters=filters)[1].tolist() == described.search(queries, 10, filters=filters)[1].tolist()


READER = """
import json, sys, time
from pathlib import Path
import numpy as np
from rag.stores.vectors import load_vector_store

path, params, me, everyone = Path(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
store = load_vector_store(path, params)
me.touch()
deadline = time.monotonic() + 120
while len(list(me.parent.glob("*.ready"))) < everyone:  # every reader holds the store open at once
    if time.monotonic() > deadline:
        sys.exit("the other reader never opened the store")
    time.sleep(0.02)
print(json.dumps(store.search(np.asarray(json.loads(sys.stdin.read()), dtype=np.float32), 5)[1].tolist()))
"""


def test_processes_open_the_same_saved_store_at_once_while_embedded_qdrant_holds_its_lock(tmp_path: Path) -> None:
    from qdrant_client import QdrantClient

    path = tmp_path / "seg-0001" / "vectors.faiss"
    path.parent.mkdir()
    store = build("qdrant", IDS[:300], VECTORS[:300])
    store.save(path)
    params = store.params()
    files = store_files(path, params)
    digests = {file: hashlib.sha256(file.read_bytes()).hexdigest() for file in files}
    folder = qdrant_store.local_folder(path)
    holder = QdrantClient(path=str(folder))  # what a reader must not do: it locks the folder
    try:
        with pytest.raises(RuntimeError, match="already accessed by another instance"):
            QdrantClient(path=str(folder))
        queries = unit_rows(3, seed=24)
        readers = [
            subprocess.Popen(
                [sys.executable, "-c", READER, str(path), json.dumps(params), str(tmp_path / f"{n}.ready"), "2"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            )
            for n in range(2)
        ]
        mine = load_vector_store(path, params)  # and this process too
        outputs = [reader.communicate(json.dumps(queries.tolist()), timeout=180) for reader in readers]
    finally:
        holder.close()
    for reader, (out, err) in zip(readers, outputs):
        assert reader.returncode == 0, err
        assert json.loads(out) == mine.search(queries, 5)[1].tolist() == store.search(queries, 5)[1].tolist()
    assert {file: hashlib.sha256(file.read_bytes()).hexdigest() for file in files} == digests  # nothing written


def test_open_rejects_params_that_do_not_describe_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "vectors.faiss"
    saved = build("qdrant", IDS[:20], VECTORS[:20])
    saved.save(path)
    params = saved.params()
    for wrong in ({**params, "dimension": 8}, {**params, "mode": "cloud"}, {**params, "mode": "server"}):
        with pytest.raises(ValueError):
            load_vector_store(path, wrong)
    with pytest.raises(FileNotFoundError):
        load_vector_store(tmp_path / "elsewhere.faiss", params)


class FakeServer:
    """Stands in for Qdrant servers: one in-memory client per URL, remembering who asked and with which key."""

    def __init__(self) -> None:
        from qdrant_client import QdrantClient

        self.client = QdrantClient(":memory:")
        self.calls: list[tuple[str, str | None]] = []
        self.created: list[dict[str, Any]] = []
        create = self.client.create_collection

        def recording(name: str, **settings: Any) -> bool:
            self.created.append({"name": name, **settings})
            return create(name, **settings)

        self.client.create_collection = recording  # type: ignore[method-assign]

    def __call__(self, url: str, api_key: str | None) -> Any:
        self.calls.append((url, api_key))
        return self.client


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect", "ignore:Local mode performs exact")
def test_server_mode_keeps_a_collection_per_segment_and_only_a_pointer_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakeServer()
    monkeypatch.setattr(qdrant_store, "_server_client", server)
    monkeypatch.setenv(QDRANT_API_KEY_ENV, "s3cret")
    monkeypatch.setenv("RAG_QDRANT_SHARDS", "3")
    monkeypatch.setenv("RAG_QDRANT_REPLICATION", "2")
    settings = store_settings("qdrant", "http://qdrant.internal:6333")
    store = create_vector_store(VECTORS.shape[1], len(IDS), store=settings)
    store.add(IDS, VECTORS, PAYLOADS)
    assert server.calls == []  # buffered in memory until saved
    path = tmp_path / "seg-00ff" / "vectors.faiss"
    path.parent.mkdir()
    store.save(path)
    params = json.loads(json.dumps(store.params()))
    assert params["collection"] == "rag-seg-00ff" and params["url"] == "http://qdrant.internal:6333"
    assert "s3cret" not in json.dumps(params) and "s3cret" not in qdrant_store.pointer_file(path).read_text()
    assert server.calls == [("http://qdrant.internal:6333", "s3cret")]
    assert [(c["name"], c["shard_number"], c["replication_factor"]) for c in server.created] == [("rag-seg-00ff", 3, 2)]
    assert store_files(path, params) == [qdrant_store.pointer_file(path)]
    assert sorted(file for file in tmp_path.rglob("*") if file.is_file()) == [qdrant_store.pointer_file(path)]
    assert settings_of(params) == settings
    opened = load_vector_store(path, params)
    queries = unit_rows(4, seed=25)
    assert len(opened) == len(IDS) and opened.params() == params
    for filters in (None, FILTERS[0], FILTERS[5]):
        expected = build("flat").search(queries, 10, allowed=None if filters is None else allowed_by(filters))
        assert opened.search(queries, 10, filters=filters)[1].tolist() == expected[1].tolist()
    assert opened.vectors(IDS[[4, 2]].tolist()).tolist() == VECTORS[[4, 2]].tolist()
    with pytest.raises(ValueError):
        load_vector_store(path, {**params, "collection": "rag-seg-other"})


def test_store_settings_round_trip_through_the_params_and_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QDRANT_URL", raising=False)
    assert settings_of(configure(10)) == StoreSettings() == store_settings("faiss")
    assert configure(10, "hnsw", StoreSettings("qdrant")) == {"backend": "qdrant", "kind": "flat", "mode": "local"}
    assert settings_of(configure(10, store=store_settings("qdrant"))) == StoreSettings("qdrant")
    server = StoreSettings("qdrant", "https://q:6333", "idx-", 2, None)
    assert configure(100_000, store=server)["kind"] == "hnsw" and configure(100, store=server)["kind"] == "flat"
    assert settings_of(configure(60_000, "flat", server)) == server
    with pytest.raises(ValueError):
        configure(10, "ivf", StoreSettings("qdrant"))
    for wrong in ({"backend": "pinecone"}, {"backend": "faiss", "url": "http://q"}, {"backend": "qdrant", "shard_number": 0}):
        with pytest.raises(ValueError):
            StoreSettings(**wrong)  # type: ignore[arg-type]
    monkeypatch.setenv("RAG_QDRANT_SHARDS", "many")
    with pytest.raises(ValueError):
        store_settings("qdrant")


def test_ids_map_to_point_ids_and_back_through_their_bits() -> None:
    ids = np.array([0, 1, -2, 2**63 - 1, -(2**63)], dtype=np.int64)
    points = qdrant_store._point_ids(ids)
    assert points[:2] == [0, 1] and points[2] == 2**64 - 2 and all(0 <= p < 2**64 for p in points)
    assert qdrant_store._signed(points).tolist() == ids.tolist()


def test_importing_the_default_store_path_does_not_import_qdrant() -> None:
    code = "import sys, rag.segments, rag.stores.vectors; print('qdrant_client' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
