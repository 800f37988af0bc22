"""Indexing throughput: the repo's passage embedder against a plain sentence-transformers ``encode``.

Both encode the same passages in the same process, taking turns (ours, the reference, ours,
the reference...), and the best time of each counts, so a machine busy with other work
slows both alike and only the ratio is worth comparing between runs.

    python -m rag.throughput ../shared/benchmarks/scifact --passages 2000 [--backend onnx]

>>> measure(passages)  # doctest: +SKIP
{'passages': 2000, 'backend': 'onnx-int8-rows', 'index_passages_per_s': ..., 'reference_passages_per_s': ..., 'ratio': ...}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import BENCHMARK_CHUNK_TOKENS, BENCHMARK_OVERLAP_TOKENS, model_setting
from .embedding import PASSAGE_BACKEND_ENV, PASSAGE_BACKENDS, offline, passage_embedder, resolve_model_path

#: Texts each side encodes once before timing starts (loads lazy parts, sizes buffers).
WARM_UP = 64


def measure(texts: list[str], repeats: int = 2, backend: str | None = None) -> dict[str, float | int | str]:
    """Passages per second of indexing's passage embedder and of the reference, and their ratio.

    The reference is ``SentenceTransformer(model folder).encode(texts, batch_size=32)``; ours is
    ``passage_embedder(model, backend)`` as an index build uses it (``backend`` in the result
    says which one ran: it differs from the one asked for when that one fell back). The two
    runs alternate ``repeats`` times each; the best of each is reported.
    """
    model = model_setting()
    ours = passage_embedder(model, backend)
    offline()
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(resolve_model_path(model)), device="cpu")
    runs: dict[str, Callable[[list[str]], object]] = {
        "index": ours.encode,
        "reference": lambda batch: reference.encode(batch, batch_size=32, show_progress_bar=False),
    }
    for run in runs.values():
        run(texts[:WARM_UP])
    best, _ = best_of_turns(runs, texts, repeats)
    return {
        "passages": len(texts),
        "backend": ours.backend,
        "index_passages_per_s": round(len(texts) / best["index"], 2),
        "reference_passages_per_s": round(len(texts) / best["reference"], 2),
        "ratio": round(best["reference"] / best["index"], 3),
    }


def best_of_turns(
    runs: dict[str, Callable[[list[str]], Any]], texts: list[str], repeats: int
) -> tuple[dict[str, float], dict[str, Any]]:
    """Run each of ``runs`` on ``texts`` in turn, ``repeats`` rounds; the best seconds of each, and its last output."""
    best = {name: float("inf") for name in runs}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            outputs[name] = run(texts)
            best[name] = min(best[name], time.perf_counter() - started)
    return best, outputs


def beir_passages(root: Path, count: int) -> list[str]:
    """The first ``count`` passages of a BEIR corpus, cut and titled as a benchmark index embeds them."""
    from .chunking import chunk_document
    from .evaluate import BeirCorpus
    from .index import search_text

    corpus = BeirCorpus(root)
    count_tokens = passage_embedder(model_setting()).count_tokens
    passages: list[str] = []
    for source in corpus.scan().signatures:
        doc = corpus.load(source).document
        if doc is not None:
            chunks = chunk_document(doc, count_tokens, BENCHMARK_CHUNK_TOKENS, BENCHMARK_OVERLAP_TOKENS)
            passages += [search_text(doc.kind, doc.title, chunk.text) for chunk in chunks]
        if len(passages) >= count:
            break
    return passages[:count]


def main(argv: list[str] | None = None) -> None:
    """``python -m rag.throughput BEIR_FOLDER``: print :func:`measure` of its passages as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m rag.throughput", description="Passages per second: our passage embedder against sentence-transformers."
    )
    parser.add_argument("corpus", type=Path, help="BEIR folder whose corpus.jsonl gives the passages")
    parser.add_argument("--passages", type=int, default=2000, help="passages to encode (default: 2000)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each side (default: 2)")
    parser.add_argument("--backend", choices=PASSAGE_BACKENDS, default=None,
                        help=f"passage embedder to measure (default: ${PASSAGE_BACKEND_ENV}, else {PASSAGE_BACKENDS[0]})")
    args = parser.parse_args(argv)
    json.dump(measure(beir_passages(args.corpus, args.passages), args.repeats, args.backend), sys.stdout)
    print()


if __name__ == "__main__":
    main()
