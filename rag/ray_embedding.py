"""Passage embedding spread over a Ray cluster (``rag index --ray``): an optional extra.

:class:`RayPassageEmbedder` is a ``PassageEmbedder`` whose :meth:`~RayPassageEmbedder.encode`
runs a Ray Data pipeline: the texts become a dataset of (row, text) records, sorted by length
so each batch pads little, and ``map_batches`` sends batches of ``TEXTS_PER_TASK`` texts to a
pool of actors, each holding the passage embedder of the model
(``embedding.passage_embedder(model, backend)``, the cached ONNX export by default). Every
record keeps its row number, so the vectors are put back in the order of the texts whatever
order the batches finish in. Token counting, the model's facts and the question encoder come
from the same embedder loaded in this process; they are cheap next to embedding.

It connects to the cluster at ``address`` (else ``$RAY_ADDRESS``); without either it starts
a local Ray instance with one CPU per core of this machine, no dashboard and quiet logs, and
:meth:`~RayPassageEmbedder.close` (or the end of the process) shuts down only that instance.
onnxruntime in an actor runs on every core of its node, so by default the pool has one actor
per node, each holding the CPUs of the smallest node; ``actors`` asks for another pool size.

Ray is never imported by the default path: only this module imports it, inside functions.

Overhead, measured on a shared 2-core machine (local instance, ``num_cpus=2``): starting Ray
takes about 5 s once; every ``encode`` call then costs 3 to 6 s before the first vector,
since Ray Data starts a new actor pool per execution (a pool that does nothing at all costs
the same: worker processes and their imports, not loading the model, which takes 0.6 s).
Ray Data keeps no actor pool alive between executions, so the builder must call rarely:
this embedder's ``documents_per_batch`` (``DOCUMENTS_PER_BATCH``, 1024 briefs, about 18,000
passages and sentences) tells the index builder to embed that many documents per call
instead of its own 64 (about 1,150 texts, 25 to 50 s of embedding on those 2 cores against
3 to 6 s of fixed cost), which makes the fixed cost a few percent of a call. On 2,000
SciFact passages, taking turns with one process: the default pool (1 actor, 2 CPUs) embedded
24.4 passages/s against 26.6, two actors of 1 CPU 35.2 against 28.4 (two processes keep two
cores busier than one process's two onnxruntime threads; on big nodes the thread count per
actor makes more actors per node oversubscribe). Vectors equal the single-process ones
(cosine 0.99999 or more): the same model runs on the same texts, only batched differently.

Measured with ``python -m rag.ray_embedding BEIR_FOLDER --passages N`` (:func:`measure`).

>>> embedder = RayPassageEmbedder("all-MiniLM-L6-v2")  # doctest: +SKIP
>>> embedder.backend, embedder.encode(["What did Belarus seek from China?"]).shape  # doctest: +SKIP
('ray:onnx', (1, 384))
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import BUNDLED_MODEL, model_setting
from .embedding import default_passage_backend, passage_embedder
from .errors import ModelError
from .throughput import best_of_turns

if TYPE_CHECKING:
    import numpy as np

#: Where the cluster is when no address is given (Ray's own variable).
ADDRESS_ENV = "RAY_ADDRESS"
#: Documents the index builder embeds per ``encode`` call with this embedder (see the module notes).
DOCUMENTS_PER_BATCH = 1024
#: Texts per ``map_batches`` batch: one actor call; enough to amortize Ray's per-task cost.
TEXTS_PER_TASK = 256
#: What to run when Ray is missing.
INSTALL_HINT = "pip install '.[scale]'"


def require_ray() -> None:
    """Raise ``ModelError`` with the install command when Ray Data cannot be imported."""
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise ModelError(f"Ray is not installed; embedding with Ray needs the 'scale' extra: {INSTALL_HINT}") from None


class _EmbedActor:
    """One actor of the pool: the passage embedder of the model, loaded once, encoding batches."""

    def __init__(self, model: str, backend: str) -> None:
        self._embedder = passage_embedder(model, backend)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"row": batch["row"], "vector": self._embedder.encode(batch["text"].tolist())}


class RayPassageEmbedder:
    """A ``PassageEmbedder`` whose passages are embedded by a pool of Ray actors.

    ``backend`` (one of ``embedding.PASSAGE_BACKENDS``) is what the actors and this process
    load; the embedder's own ``backend`` reads ``"ray:"`` and the one loaded here. Connects to
    ``address``, else ``$RAY_ADDRESS``, else starts a local instance. ``actors`` is the pool
    size (default: one per node). Raises ``ModelError`` when Ray is not installed or the
    cluster cannot be reached.
    """

    def __init__(
        self,
        model: str = BUNDLED_MODEL,
        backend: str | None = None,
        *,
        address: str | None = None,
        actors: int | None = None,
        documents_per_batch: int = DOCUMENTS_PER_BATCH,
    ) -> None:
        require_ray()
        backend = backend or default_passage_backend()  # resolved here: actors may not share this environment
        self._local = passage_embedder(model, backend)
        self._model, self._inner_backend = model, backend
        self.name = self._local.name
        self.dimension = self._local.dimension
        self.max_tokens = self._local.max_tokens
        self.backend = f"ray:{self._local.backend}"
        self.documents_per_batch = documents_per_batch
        self._started = _connect(address or os.environ.get(ADDRESS_ENV) or None)
        self.actors, self._cpus = _pool(actors)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text in the order given, embedded by the actor pool."""
        import numpy as np
        import ray
        import ray.data

        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        order = sorted(range(len(texts)), key=lambda row: len(texts[row]))
        records = [{"row": row, "text": texts[row]} for row in order]
        batches = -(-len(records) // TEXTS_PER_TASK)
        dataset = ray.data.from_items(records, override_num_blocks=batches).map_batches(
            _EmbedActor, fn_constructor_args=(self._model, self._inner_backend), batch_size=TEXTS_PER_TASK,
            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=min(self.actors, batches)), num_cpus=self._cpus,
        )
        done = np.zeros(len(texts), dtype=bool)
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                vectors[batch["row"]] = batch["vector"]
                done[batch["row"]] = True
        except ray.exceptions.RayError as error:
            raise ModelError(f"embedding with Ray failed: {_reason(error)}") from None
        if not done.all():
            raise ModelError(f"embedding with Ray lost {int((~done).sum())} of {len(texts)} texts")
        return vectors

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Model tokens per text, counted in this process, without [CLS]/[SEP]."""
        return self._local.count_tokens(texts)

    def export_question_encoder(self, folder: Path) -> None:
        """Write the question encoder of the embedder loaded in this process (see ``PassageEmbedder``)."""
        self._local.export_question_encoder(folder)

    def close(self) -> None:
        """Shut down the local Ray instance this embedder started, if any (a cluster is left alone)."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def ray_embed(address: str | None = None, actors: int | None = None) -> Callable[[], RayPassageEmbedder]:
    """What ``open_index``/``Retriever.open`` take as ``embed`` to embed with Ray: the model setting's
    :class:`RayPassageEmbedder`, made when passages must be embedded. Checks at once that Ray is installed."""
    require_ray()
    return lambda: RayPassageEmbedder(model_setting(), address=address, actors=actors)


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address``, or start a quiet local instance; True when this call started one."""
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address:
            _check_reachable(address)
            ray.init(address=address, **quiet)
            return False
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        ray.init(num_cpus=cores, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ModelError(f"cannot connect to {where}: {error}") from None
    return True


def _check_reachable(address: str) -> None:
    """Fail at once when nothing listens at a ``host:port`` address (Ray itself retries for minutes)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and the like: Ray's own to resolve
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as error:
        raise ModelError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


def _pool(actors: int | None) -> tuple[int, int]:
    """(actors, CPUs per actor): one actor per node holding the smallest node's CPUs by default;
    ``actors`` actors share the cluster's CPUs, at most a node's each."""
    import ray

    nodes = [int(node["Resources"]["CPU"]) for node in ray.nodes() if node["Alive"] and node["Resources"].get("CPU", 0) >= 1]
    if not nodes:
        raise ModelError("the Ray cluster has no node with a CPU to embed on")
    if actors is None:
        return len(nodes), min(nodes)
    return actors, max(1, min(min(nodes), sum(nodes) // actors))


def _reason(error: Exception) -> str:
    """The last line of what went wrong inside Ray (its own messages carry whole tracebacks)."""
    cause = getattr(error, "cause", None) or error
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__


def measure(texts: list[str], repeats: int = 2, address: str | None = None, actors: int | None = None) -> dict[str, Any]:
    """Passages per second of the single-process passage embedder and of :class:`RayPassageEmbedder`
    on the same ``texts``, taking turns ``repeats`` times (the best run of each counts), and
    the seconds one Ray ``encode`` call of a single text takes (its fixed cost)."""
    import numpy as np

    ray_embedder = RayPassageEmbedder(model_setting(), address=address, actors=actors)
    single = passage_embedder(model_setting())
    try:
        started = time.perf_counter()
        ray_embedder.encode(texts[:1])
        overhead = time.perf_counter() - started
        single.encode(texts[:64])
        best, vectors = best_of_turns({"single": single.encode, "ray": ray_embedder.encode}, texts, repeats)
        actors_used = ray_embedder.actors
    finally:
        ray_embedder.close()
    return {
        "passages": len(texts),
        "ray_actors": actors_used,
        "single_passages_per_s": round(len(texts) / best["single"], 2),
        "ray_passages_per_s": round(len(texts) / best["ray"], 2),
        "ray_call_overhead_s": round(overhead, 2),
        "min_cosine": float(np.einsum("ij,ij->i", vectors["single"], vectors["ray"]).min()),
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m rag.ray_embedding BEIR_FOLDER``: print :func:`measure` of its passages as JSON."""
    from .throughput import beir_passages

    parser = argparse.ArgumentParser(
        prog="python -m rag.ray_embedding", description="Passages per second: one process against the Ray pipeline."
    )
    parser.add_argument("corpus", type=Path, help="BEIR folder whose corpus.jsonl gives the passages")
    parser.add_argument("--passages", type=int, default=2000, help="passages to encode (default: 2000)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each side (default: 2)")
    parser.add_argument("--address", help=f"Ray cluster (default: ${ADDRESS_ENV}, else a local instance)")
    parser.add_argument("--actors", type=int, help="actors in the pool (default: one per node)")
    args = parser.parse_args(argv)
    json.dump(measure(beir_passages(args.corpus, args.passages), args.repeats, args.address, args.actors), sys.stdout)
    print()


if __name__ == "__main__":
    main()
