"""Measure the vector store the factory picks for a size: build time, latency, recall, size, open time, memory.

The vectors are synthetic, from :class:`Mixture`: unit vectors around a few thousand centres,
which is what makes approximate search meaningful (uniform random vectors have no neighbours
worth finding). Run as a script for the sizes the factory's thresholds were chosen from::

    python -m rag.stores.ann_bench 10000 100000 1000000
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from .faiss_store import TRAIN_POINTS_PER_LIST
from .vectors import configure, create_vector_store, load_vector_store, store_files

#: Vectors generated (and added) per chunk, to bound memory at a million rows.
CHUNK_ROWS = 50_000
#: Queries run before timing, to warm caches and the mapped pages of the index.
WARM_UP = 20
#: Results per query, and the depth of the recall measure.
K = 10


class Mixture:
    """A Gaussian mixture of unit vectors shaped like sentence embeddings.

    ``topics`` unit directions; ``centres`` cluster centres, each a topic plus a random
    direction of norm ``topic_spread`` (so centres of one topic are related); a vector is a
    centre plus noise of norm about ``spread``, renormalized. The noise has a power-law spectrum
    (the j-th of ``dimension`` random orthogonal directions scaled by j^-``spectrum``; about 26
    effective dimensions at 384) rather than being isotropic, as real embeddings are. With the
    defaults at 384 dimensions a query's best match scores about 0.71, its 10th about 0.62 and
    its 100th about 0.42, like MiniLM questions over a large corpus. Every draw is determined by
    ``seed`` and the ``stream`` it is asked for.
    """

    def __init__(
        self,
        dimension: int,
        seed: int = 0,
        *,
        centres: int = 4096,
        topics: int = 64,
        topic_spread: float = 1.0,
        spread: float = 0.85,
        spectrum: float = 0.5,
    ) -> None:
        rng = np.random.default_rng([seed, 0])
        topic_rows = _unit(rng.normal(size=(topics, dimension)))
        offsets = topic_spread * _unit(rng.normal(size=(centres, dimension)))
        self.centres = _unit(topic_rows[rng.integers(0, topics, centres)] + offsets)
        scales = np.arange(1, dimension + 1, dtype=np.float64) ** -spectrum
        rotation = np.linalg.qr(rng.normal(size=(dimension, dimension)))[0]
        # the noise basis: scaled orthogonal directions, the whole noise of norm about ``spread``
        self.noise = (spread * scales[:, None] / np.linalg.norm(scales) * rotation).astype(np.float32)
        self.seed = seed

    def sample(self, count: int, stream: int) -> np.ndarray:
        """``count`` unit float32 vectors, the same for the same ``stream`` (a non-negative int)."""
        return self._draw(count, np.random.default_rng([self.seed, 1, stream]))

    def queries(self, count: int) -> np.ndarray:
        """``count`` query vectors from the same mixture, drawn apart from every :meth:`sample` stream."""
        return self._draw(count, np.random.default_rng([self.seed, 2]))

    def _draw(self, count: int, rng: np.random.Generator) -> np.ndarray:
        labels = rng.integers(0, len(self.centres), count)
        noise = rng.standard_normal(size=(count, len(self.noise)), dtype=np.float32) @ self.noise
        return _unit(self.centres[labels] + noise)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _rss_mb() -> float:
    """Resident memory of this process, in MiB (from /proc)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _merge_top(scores: np.ndarray, ids: np.ndarray, new_scores: np.ndarray, new_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best :data:`K` per row of two (scores, ids) candidate sets."""
    scores, ids = np.hstack([scores, new_scores]), np.hstack([ids, new_ids])
    best = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    return np.take_along_axis(scores, best, 1), np.take_along_axis(ids, best, 1)


def _open_and_search(path: Path, params: dict[str, Any], queries: np.ndarray) -> dict[str, Any]:
    """In a fresh process: open the saved store, then search one query at a time (run by :func:`measure`)."""
    started = time.perf_counter()
    store = load_vector_store(path, params)
    open_s = time.perf_counter() - started
    rss_open = _rss_mb()
    for query in queries[:WARM_UP]:
        store.search(query[None, :], K)
    latencies, found = [], []
    for query in queries:
        started = time.perf_counter()
        _, ids = store.search(query[None, :], K)
        latencies.append(time.perf_counter() - started)
        found.append(ids[0])
    return {"open_s": open_s, "rss_mb": rss_open, "rss_after_search_mb": _rss_mb(), "latencies": latencies, "ids": np.array(found)}


def measure(rows: int, dimension: int = 384, queries: int = 200, index_type: str = "auto", seed: int = 0) -> dict[str, Any]:
    """Build the store the factory picks for ``rows`` :class:`Mixture` vectors and measure it (JSON-ready).

    ``build_s``: creating, training and filling the store (not generating the vectors).
    ``search_p50_ms`` / ``search_p95_ms``: one query at a time, k=10, after a warm-up.
    ``ann_recall_at_10``: overlap of the top 10 with the exact top 10 of the same vectors.
    ``index_bytes``: the saved files. ``open_s`` and ``rss_mb``: :func:`load_vector_store`
    of the saved file and the resident memory right after, in a fresh process (so the build
    does not count); ``rss_after_search_mb`` once the searches have touched the mapped index.
    """
    mixture = Mixture(dimension, seed)
    query_rows = mixture.queries(queries)
    params = configure(rows, index_type)
    training_rows = min(rows, TRAIN_POINTS_PER_LIST * params.get("nlist", 0))
    training = np.vstack([mixture.sample(min(CHUNK_ROWS, training_rows - i), i) for i in range(0, training_rows, CHUNK_ROWS)]) if training_rows else None
    truth_scores = np.full((queries, K), -np.inf, dtype=np.float32)
    truth_ids = np.full((queries, K), -1, dtype=np.int64)
    started = time.perf_counter()
    store = create_vector_store(dimension, rows, index_type, training=training)
    build_s = time.perf_counter() - started
    del training
    for first in range(0, rows, CHUNK_ROWS):
        chunk = mixture.sample(min(CHUNK_ROWS, rows - first), first)
        ids = np.arange(first, first + len(chunk), dtype=np.int64)
        started = time.perf_counter()
        store.add(ids, chunk)
        build_s += time.perf_counter() - started
        scores = query_rows @ chunk.T
        best = np.argpartition(-scores, min(K, len(chunk) - 1), axis=1)[:, :K]
        truth_scores, truth_ids = _merge_top(truth_scores, truth_ids, np.take_along_axis(scores, best, 1), ids[best])
    with tempfile.TemporaryDirectory(prefix="ann-bench-") as folder:
        path = Path(folder) / "vectors.faiss"
        started = time.perf_counter()
        store.save(path)
        build_s += time.perf_counter() - started
        params = store.params()
        del store
        index_bytes = sum(file.stat().st_size for file in store_files(path, params))
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            searched = pool.submit(_open_and_search, path, params, query_rows).result()
    latencies_ms = np.array(searched["latencies"]) * 1000
    recall = np.mean([len(set(found.tolist()) & set(truth.tolist())) / K for found, truth in zip(searched["ids"], truth_ids)])
    return {
        "passages": rows,
        "index_type": params["kind"],
        "params": params,
        "build_s": round(build_s, 2),
        "search_p50_ms": round(float(np.percentile(latencies_ms, 50)), 3),
        "search_p95_ms": round(float(np.percentile(latencies_ms, 95)), 3),
        "ann_recall_at_10": round(float(recall), 4),
        "index_bytes": index_bytes,
        "open_s": round(searched["open_s"], 4),
        "rss_mb": round(searched["rss_mb"], 1),
        "rss_after_search_mb": round(searched["rss_after_search_mb"], 1),
    }


if __name__ == "__main__":
    for size in sys.argv[1:] or ["10000", "100000", "1000000"]:
        print(json.dumps(measure(int(size))), flush=True)
