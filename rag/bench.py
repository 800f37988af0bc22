"""The benchmark table: every search mode on every BEIR dataset, printed as markdown.

Usage (indexes are built on first use under ``benchmarks-index/`` in the cwd)::

    python -m rag.bench /path/to/benchmarks/scifact /path/to/benchmarks/nfcorpus /path/to/benchmarks/time

Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from .config import SEARCH_MODES, benchmark_settings
from .embedding import PASSAGE_BACKENDS
from .errors import RagError
from .evaluate import BeirReport, evaluate_beir, load_beir, open_beir

#: Published BM25 nDCG@10 on the test splits (BEIR paper, Thakur et al. 2021).
PUBLISHED_BM25 = {"scifact": 0.665, "nfcorpus": 0.325}

_COLUMNS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")


def run(
    datasets: Iterable[Path],
    modes: Sequence[str] = SEARCH_MODES,
    split: str = "test",
    encoder: str = "index",
    passage_backend: str | None = None,
) -> Iterator[BeirReport]:
    """Evaluate every mode on every dataset's split, one report at a time.

    ``encoder`` is ``index`` (the question encoder the index names, ONNX by default) or
    ``sentence-transformers`` (the model itself, to compare the two). ``passage_backend``
    embeds passages with another backend, into an index folder of its own.
    """
    from .embedding import MODEL_BACKEND, passage_embedder

    for root in datasets:
        dataset = load_beir(root, split)
        forced = passage_embedder(benchmark_settings().model, MODEL_BACKEND) if encoder == "sentence-transformers" else None
        retriever = open_beir(root, progress=sys.stderr.isatty(), encoder=forced, passage_backend=passage_backend)
        for message in retriever.report.messages():
            print(f"bench: {dataset.name}: {message}", file=sys.stderr)
        for mode in modes:
            report = evaluate_beir(retriever, dataset, mode)
            print(f"bench: {dataset.name} {mode}: nDCG@10 {report.metrics['ndcg@10']:.4f}", file=sys.stderr)
            yield report


def markdown(reports: Iterable[BeirReport]) -> str:
    """A markdown table with one row per report and the published BM25 anchor beside it."""
    lines = [
        "| dataset | split | queries | mode | nDCG@10 | Recall@10 | Recall@100 | MRR@10 | queries/s | published BM25 nDCG@10 |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        anchor = PUBLISHED_BM25.get(report.dataset)
        values = " | ".join(f"{report.metrics[name]:.3f}" for name in _COLUMNS)
        lines.append(
            f"| {report.dataset} | {report.split} | {report.queries} | {report.mode} | {values} | "
            f"{report.queries_per_second:.0f} | {f'{anchor:.3f}' if anchor is not None else '—'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Print the benchmark table of the given BEIR folders; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m rag.bench", description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path, metavar="DIR", help="BEIR dataset folders")
    parser.add_argument("--split", default="test", help="qrels split to run (default: test)")
    parser.add_argument("--mode", action="append", choices=SEARCH_MODES, dest="modes",
                        help="only this mode (repeatable; default: all)")
    parser.add_argument("--question-encoder", choices=("index", "sentence-transformers"), default="index",
                        help="encode questions with the index's ONNX question encoder or with sentence-transformers (default: index)")
    parser.add_argument("--passage-embedder", choices=PASSAGE_BACKENDS, metavar="BACKEND",
                        help=f"embed passages with this backend ({', '.join(PASSAGE_BACKENDS)}) into "
                             "benchmarks-index/<dataset>-<backend> (default: the default backend, benchmarks-index/<dataset>)")
    args = parser.parse_args(argv)
    try:
        reports = run(args.datasets, args.modes or SEARCH_MODES, args.split, args.question_encoder, args.passage_embedder)
        sys.stdout.write(markdown(reports))
    except RagError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
