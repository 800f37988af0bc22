"""Embedded Qdrant against FAISS flat: bytes per vector on disk, add, save, open and query times.

Usage (needs the ``scale`` extra)::

    python -m rag.stores.qdrant_bench 10000 100000

Per size: random 384-dimensional unit vectors with brief payloads (20 vectors per brief), stored
through the factory (``StoreSettings("qdrant")``, embedded local mode), saved, reopened as a
reader does, queried 20 times at k=10 and 5 times with a source filter; the same vectors in a
FAISS flat store give the size to compare with. One line per size on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import StoreSettings
from .passages import Filters
from .vectors import create_vector_store, load_vector_store, store_files

DIMENSION = 384
QUERIES = 20
FILTERED_QUERIES = 5


def measure(rows: int, seed: int = 0) -> dict[str, Any]:
    """The figures of one size (seconds, milliseconds, bytes)."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(rows, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1, rows + 1, dtype=np.int64)
    payloads = [{"source": f"{n // 20:06}_brief.txt", "week_start": "2019-04-15", "week_end": "2019-04-21",
                 "category": "Security issues", "trend": "better"} for n in range(rows)]
    folder = Path(tempfile.mkdtemp(prefix="qdrant-bench-")) / "seg-bench"
    folder.mkdir()
    try:
        path = folder / "vectors.faiss"
        store = create_vector_store(DIMENSION, rows, store=StoreSettings("qdrant"))
        started = time.perf_counter()
        store.add(ids, vectors, payloads)
        added = time.perf_counter() - started
        started = time.perf_counter()
        store.save(path)
        saved = time.perf_counter() - started
        params = json.loads(json.dumps(store.params()))
        size = sum(file.stat().st_size for file in store_files(path, params))
        del store
        started = time.perf_counter()
        opened = load_vector_store(path, params)
        loaded = time.perf_counter() - started
        queries = vectors[:QUERIES] + 0.01
        started = time.perf_counter()
        for query in queries:
            opened.search(query[None, :], 10)
        plain = (time.perf_counter() - started) / len(queries) * 1000
        started = time.perf_counter()
        for query in queries[:FILTERED_QUERIES]:
            opened.search(query[None, :], 10, filters=Filters(sources=("000003_brief.txt",)))
        filtered = (time.perf_counter() - started) / FILTERED_QUERIES * 1000
        flat = create_vector_store(DIMENSION, rows, "flat")
        flat.add(ids, vectors)
        flat.save(folder / "flat.faiss")
        return {"rows": rows, "bytes_per_vector": size / rows, "faiss_flat_bytes_per_vector": (folder / "flat.faiss").stat().st_size / rows,
                "add_s": added, "save_s": saved, "open_s": loaded, "query_ms": plain, "filtered_query_ms": filtered}
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Print one line of figures per size given on the command line."""
    parser = argparse.ArgumentParser(prog="python -m rag.stores.qdrant_bench", description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="+", type=int, metavar="N", help="vectors per measured store")
    for rows in parser.parse_args(argv).sizes:
        f = measure(rows)
        print(f"{rows} vectors: {f['bytes_per_vector']:.0f} bytes/vector on disk (FAISS flat {f['faiss_flat_bytes_per_vector']:.0f}); "
              f"add {f['add_s']:.1f} s, save {f['save_s']:.1f} s, open {f['open_s']:.1f} s; query {f['query_ms']:.0f} ms, "
              f"with a source filter {f['filtered_query_ms']:.0f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
