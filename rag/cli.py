"""The ``rag`` command: argument parsing and printing only; all work goes through ``Retriever``.

Usage errors exit 2, other failures exit 1, each with a one-line message on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TextIO

from .config import (
    ANSWER_THRESHOLD,
    DEFAULT_CORPUS,
    DEFAULT_INDEX_DIR,
    DEFAULT_K,
    DEFAULT_MODE,
    INDEX_TYPES,
    MAX_BATCH_LINE_BYTES,
    MAX_FILE_BYTES,
    MAX_K,
    QDRANT_API_KEY_ENV,
    QDRANT_URL_ENV,
    SEARCH_MODES,
    STORES,
)
from .errors import QueryError, RagError
from .serving import AUTH_ENV

if TYPE_CHECKING:
    from .config import StoreSettings
    from .embedding import PassageEmbedder
    from .retrieval import Hit, Retriever
    from .stores.passages import Filters

EXIT_FAILURE = 1
EXIT_USAGE = 2
#: The status of a process ended by SIGPIPE (128 + 13), given when the reader of the output goes away.
EXIT_BROKEN_PIPE = 141


class UsageError(Exception):
    """A mistake in how the command was called (exit 2)."""


def _ranged(kind: type, low: float, high: float | None = None, *, above: bool = False) -> Callable[[str], Any]:
    """An argparse type: a ``kind`` number from ``low`` (excluded when ``above``) to ``high``."""
    noun = "a whole number" if kind is int else "a number"

    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {noun}, got {value!r}") from None
        if number != number:  # NaN compares false with every bound
            raise argparse.ArgumentTypeError(f"must be {noun}, got {value!r}")
        if (number <= low if above else number < low) or (high is not None and number > high):
            if high is None:
                bounds = f"at least {low:g}"
            elif above:
                bounds = f"more than {low:g} and at most {high:g}"
            else:
                bounds = f"between {low:g} and {high:g}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return number

    return parse


_k = _ranged(int, 1, MAX_K)
_unit_interval = _ranged(float, 0.0, 1.0)
_port = _ranged(int, 1, 65535)
_positive = _ranged(int, 1)
_megabytes_number = _ranged(float, 0, 1024, above=True)


def _megabytes(value: str) -> int:
    return int(_megabytes_number(value) * 1024 * 1024)


def _add_index_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help=f"folder of .txt/.md documents, relative to the working directory (default: {DEFAULT_CORPUS}/)")
    parser.add_argument("--index-dir", type=Path, default=DEFAULT_INDEX_DIR,
                        help=f"where the index is kept, relative to the working directory (default: {DEFAULT_INDEX_DIR}/)")
    parser.add_argument("--max-file-mb", type=_megabytes, default=MAX_FILE_BYTES, dest="max_file_bytes", metavar="MB",
                        help=f"skip (with a warning) corpus files larger than this (default: {MAX_FILE_BYTES // 2**20})")


def _add_search_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-k", type=_k, default=DEFAULT_K, help=f"passages per question, 1-{MAX_K} (default: {DEFAULT_K})")
    parser.add_argument("--mode", choices=SEARCH_MODES, default=DEFAULT_MODE,
                        help=f"hybrid (BM25 + dense fusion), dense or bm25 (default: {DEFAULT_MODE})")
    parser.add_argument("--mmr", type=_unit_interval, metavar="LAMBDA",
                        help="diversify results with maximal marginal relevance (1.0 = pure relevance)")
    parser.add_argument("--reranker", type=Path, metavar="PATH",
                        help="local sentence-transformers cross-encoder folder to rerank candidates (off by default)")
    filters = parser.add_argument_group("filters (applied inside the index, before top-k)")
    filters.add_argument("--source", action="append", default=[], metavar="FILE", help="only this file (repeatable)")
    filters.add_argument("--category", action="append", default=[], help="only this category (repeatable)")
    filters.add_argument("--trend", action="append", default=[], choices=("better", "unchanged", "worse"),
                         help="only briefs with this trend (repeatable)")
    filters.add_argument("--date-from", metavar="YYYY-MM-DD", help="only briefs whose week ends on or after this date")
    filters.add_argument("--date-to", metavar="YYYY-MM-DD", help="only briefs whose week starts on or before this date")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line and a hint, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    """``--store`` and ``--qdrant-url``: where the segments keep their vectors."""
    parser.add_argument("--store", choices=STORES,
                        help="where the segments keep their vectors: faiss files, or qdrant (embedded in the index "
                             "folder, or the server of --qdrant-url); rebuilds when it changes and is kept afterwards "
                             "(default: the index's own, faiss for a new index)")
    parser.add_argument("--qdrant-url", metavar="URL",
                        help=f"with --store qdrant (implied): the Qdrant server or cluster to keep the vectors in, one "
                             f"collection per segment (default: ${QDRANT_URL_ENV}, else embedded; API key from "
                             f"${QDRANT_API_KEY_ENV})")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``rag`` command."""
    from importlib.metadata import PackageNotFoundError, version

    parser = _Parser(prog="rag", description="Ask questions of security briefs; get cited passages back.")
    try:
        installed = version("belarus-rag")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        installed = "unknown (not installed)"
    parser.add_argument("--version", action="version", version=f"rag {installed}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    index = commands.add_parser("index", help="build or update the index of a corpus folder")
    _add_index_options(index)
    index.add_argument("--rebuild", action="store_true", help="rebuild from scratch even if up to date")
    index.add_argument("--optimize", action="store_true",
                       help="merge the index's segments into one and drop replaced rows (after many updates)")
    index.add_argument("--index-type", choices=INDEX_TYPES, metavar="TYPE",
                       help="vector index of the segments: auto (exact up to a size, then approximate), flat (exact), "
                            "hnsw or ivf; rebuilds when it changes and is kept afterwards (default: the index's own, "
                            "auto for a new index)")
    _add_store_options(index)
    index.add_argument("--ray", action="store_true",
                       help="embed the passages with a Ray Data pipeline of actors: on the cluster of --ray-address, "
                            "else a local Ray instance (needs: pip install '.[scale]')")
    index.add_argument("--ray-address", metavar="URL",
                       help="with --ray (implied): the Ray cluster to embed on (default: $RAY_ADDRESS, else local)")
    index.add_argument("--ray-actors", type=_positive, metavar="N",
                       help="with --ray (implied): actors embedding at once (default: one per node)")
    index.add_argument("--check", action="store_true",
                       help="verify the index completely (checksums, SQLite integrity, question encoder) without "
                            "building; exit 1 on damage")

    ask = commands.add_parser("ask", help="answer a question (or a file of questions) with cited passages")
    _add_store_options(ask)
    ask.add_argument("question", nargs="?", help="the question, in plain English")
    ask.add_argument("--batch", metavar="FILE",
                     help="questions, one per line or JSONL with a 'question' field ('-' reads standard input); "
                          "prints JSON lines")
    ask.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_index_options(ask)
    _add_search_options(ask)

    serve = commands.add_parser("serve", help="start the web app (Gradio) on this machine")
    _add_index_options(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=_port, default=7860, help="port to listen on, 1-65535 (default: 7860)")
    serve.add_argument("--auth-file", type=Path, metavar="FILE",
                       help=f"require a login: lines of USER:PASSWORD (or set {AUTH_ENV}=USER:PASSWORD)")
    serve.add_argument("--read-only", action="store_true",
                       help="serve search only: no uploads, no rebuilds from the page")

    bench = commands.add_parser("bench", help="measure the question path's speed against a plain reference recipe")
    _add_index_options(bench)
    bench.add_argument("--runs", type=_positive, default=5, help="fresh processes per cold-start figure (default: 5)")
    bench.add_argument("--questions", type=_positive, default=10_000,
                       help="distinct questions in the batch run (default: 10000)")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    bench.add_argument("--scale", action="store_true",
                       help="instead: how search, updates, disk, open time and memory grow with the corpus, on indexes "
                            "of synthetic briefs built in /tmp (about 15 minutes for the default sizes; --corpus, "
                            "--index-dir, --runs and --questions do not apply)")
    bench.add_argument("--sizes", type=_sizes, metavar="N,N,...",
                       help="with --scale: passages per index, e.g. 10k,100k (default: 10000,100000,1000000)")
    bench.add_argument("--benchmarks", type=Path, metavar="DIR",
                       help="with --scale: folder of BEIR datasets whose passages and questions are used "
                            "(default: ../shared/benchmarks beside the repository)")

    evaluate = commands.add_parser("eval", help="measure retrieval quality on a BEIR dataset folder or a QA file")
    evaluate.add_argument("dataset", type=Path, nargs="+", metavar="DATASET",
                          help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv), or one or more QA .jsonl "
                               "files with question, source and evidence per line (scored as one set)")
    evaluate.add_argument("--mode", choices=SEARCH_MODES, default=DEFAULT_MODE,
                          help=f"hybrid (BM25 + dense fusion), dense or bm25 (default: {DEFAULT_MODE})")
    evaluate.add_argument("--split", default="test", help="BEIR qrels split to run (default: test)")
    evaluate.add_argument("--limit", type=_positive, metavar="N", help="only the first N judged queries")
    evaluate.add_argument("--index-dir", type=Path,
                          help="where the index is kept (default: benchmarks-index/<dataset>/ for a BEIR folder, "
                               f"{DEFAULT_INDEX_DIR}/ for a QA file)")
    evaluate.add_argument("--corpus", type=Path,
                          help=f"QA file only: folder of the documents it asks about (default: {DEFAULT_CORPUS}/)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    evaluate.add_argument("--unanswerable", type=Path, metavar="FILE", action="append",
                          help="QA files only: JSONL of questions the corpus does not answer; reports how many are "
                               "flagged as not found (repeatable: the files are scored as one set)")
    evaluate.add_argument("--fit-confidence", action="store_true",
                          help="with --unanswerable: print confidence weights and threshold fitted on these sets "
                               "instead of scores")
    return parser


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


def _open(args: argparse.Namespace, rebuild: bool = False, optimize: bool = False) -> Retriever:
    from .documents import FolderCorpus
    from .retrieval import Retriever

    reranker = None
    if getattr(args, "reranker", None):
        from .rerank import CrossEncoderReranker

        reranker = CrossEncoderReranker(args.reranker)
    retriever = Retriever.open(
        FolderCorpus(args.corpus, getattr(args, "max_file_bytes", MAX_FILE_BYTES)), args.index_dir, reranker=reranker,
        progress=sys.stderr.isatty(), rebuild=rebuild, on_wait=lambda notice: print(f"rag: {notice}", file=sys.stderr),
        index_type=getattr(args, "index_type", None), store=_store(args), embed=_ray(args), optimize=optimize,
    )
    report = retriever.report
    if report.action != "opened" or report.warnings or report.skipped or getattr(args, "command", "") == "index":
        for message in report.messages():
            print(f"rag: {message}", file=sys.stderr)
    return retriever


def _store(args: argparse.Namespace) -> StoreSettings | None:
    """The vector store ``--store``/``--qdrant-url`` ask for (``None``: the index's own)."""
    from .config import store_settings

    backend, url = getattr(args, "store", None), getattr(args, "qdrant_url", None)
    if backend is None and url is None:
        return None
    try:
        return store_settings(backend or "qdrant", url)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _ray(args: argparse.Namespace) -> Callable[[], PassageEmbedder] | None:
    """The Ray passage embedder ``--ray``/``--ray-address``/``--ray-actors`` ask for (``None``: the default one)."""
    address, actors = getattr(args, "ray_address", None), getattr(args, "ray_actors", None)
    if not getattr(args, "ray", False) and address is None and actors is None:
        return None
    from .ray_embedding import ray_embed

    return ray_embed(address, actors)


def _filters(args: argparse.Namespace) -> Filters:
    from .stores.passages import Filters, filter_date

    return Filters(tuple(args.source), tuple(args.category), tuple(args.trend),
                   filter_date(args.date_from, "--date-from"), filter_date(args.date_to, "--date-to"))


def _resolved(retriever: Retriever, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the filters matched to the index; a filter that matches nothing is a usage error."""
    try:
        return {**kwargs, "filters": retriever.resolve_filters(kwargs["filters"])}
    except QueryError as error:
        raise UsageError(str(error)) from None


def _open_batch(name: str) -> BinaryIO:
    """The batch file to read (``-`` is standard input)."""
    if name == "-":
        return sys.stdin.buffer
    try:
        return open(name, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise RagError(f"batch file not found: {name}") from None
    except OSError as error:
        raise RagError(f"cannot read batch file {name}: {error.strerror or error}") from None


def _batch_lines(handle: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) per line, streamed; ``None`` for a line over ``MAX_BATCH_LINE_BYTES``."""
    number = 0
    while line := handle.readline(MAX_BATCH_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_BATCH_LINE_BYTES and not line.endswith(b"\n"):
            while (rest := handle.readline(1 << 16)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, line


def _read_batch(handle: BinaryIO) -> Iterator[tuple[str | None, str | None]]:
    """(question, error) per non-blank line of a batch: plain text, or JSON with a "question" string."""
    for number, raw in _batch_lines(handle):
        if raw is None:
            yield None, f"line {number}: longer than {MAX_BATCH_LINE_BYTES:,} bytes"
            continue
        try:
            stripped = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            yield None, f"line {number}: not UTF-8 text"
            continue
        if not stripped:
            continue
        if not stripped.startswith("{"):
            yield stripped, None
            continue
        try:
            question = json.loads(stripped).get("question")
        except (ValueError, AttributeError, RecursionError):
            yield None, f"line {number}: not valid JSON"
            continue
        if not isinstance(question, str):
            yield None, f"line {number}: no 'question' string"
        else:
            yield question, None


def _search_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"k": args.k, "mode": args.mode, "filters": _filters(args), "mmr": args.mmr}


def _ask_batch(args: argparse.Namespace, out: TextIO) -> int:
    """Answer every line of the batch, writing each JSON line as soon as it is ready."""
    import time

    from .digest import counted
    from .retrieval import Answer, QUESTION_BATCH

    kwargs = _search_kwargs(args)
    handle = _open_batch(args.batch)
    retriever = _open(args)
    kwargs = _resolved(retriever, kwargs)
    started, lines_written, errors = time.perf_counter(), 0, 0
    with contextlib.closing(handle) if handle is not sys.stdin.buffer else contextlib.nullcontext():
        lines = _read_batch(handle)
        while chunk := list(itertools.islice(lines, QUESTION_BATCH)):
            answers = retriever.search_many([q for q, error in chunk if error is None], **kwargs)
            for question, error in chunk:
                answer = next(answers) if error is None else Answer(question, [], error)
                out.write(json.dumps(answer.to_dict(), ensure_ascii=False) + "\n")
                out.flush()
                lines_written += 1
                errors += answer.error is not None
    seconds = time.perf_counter() - started
    answered = lines_written - errors
    rate = f" ({answered / seconds:.0f} questions/s)" if seconds > 0 and answered else ""
    failed = f"; {counted(errors, 'line')} could not be answered (see their \"error\")" if errors else ""
    print(f"rag: answered {counted(answered, 'question')} in {seconds:.1f}s{rate}{failed}", file=sys.stderr)
    return 0



def _ask(args: argparse.Namespace, out: TextIO) -> int:
    if args.batch is not None:
        if args.question is not None:
            raise UsageError("give either a QUESTION or --batch FILE, not both")
        return _ask_batch(args, out)
    if args.question is None or not args.question.strip():
        raise UsageError("the question is empty: rag ask \"What did Belarus seek from China?\"")
    from .digest import week

    kwargs = _search_kwargs(args)
    retriever = _open(args)
    kwargs = _resolved(retriever, kwargs)
    answer = retriever.answer(args.question, **kwargs)
    hits, payload = answer.hits, answer.to_dict()
    if args.json:
        out.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    elif answer.reason is not None:
        out.write(f"No passage found: {answer.reason}.\n")
    else:
        if not payload["answer_found"]:
            out.write(f"The briefs do not seem to answer this question (best confidence {max(h.confidence for h in hits):.2f}"
                      f" < {ANSWER_THRESHOLD}). The nearest passages:\n")
        else:
            out.write("Evidence digest, oldest brief first:\n")
            for entry in payload["digest"]:
                sentence, trend = entry["sentence"], f", {entry['trend']}" if entry["trend"] else ""
                out.write(f"  {week(entry)}{trend}: “{sentence['text']}” — {entry['source']} [{sentence['start']}:{sentence['end']}]\n")
        _print_hits(hits, out)
    return 0


def _print_hits(hits: Sequence[Hit], out: TextIO) -> None:
    marked = out.isatty()
    for hit in hits:
        week = f"{hit.week_start} – {hit.week_end}" if hit.week_start else "no date"
        out.write(f"\n#{hit.rank}  score {hit.score:.3f}  confidence {hit.confidence:.2f}  {hit.title}\n")
        out.write(f"    {week} · {hit.source} [{hit.start}:{hit.end}]\n")
        before = hit.text[: hit.sentence.start - hit.start]
        after = hit.text[hit.sentence.end - hit.start :]
        sentence = f"\033[1;4m{hit.sentence.text}\033[0m" if marked else f"»{hit.sentence.text}«"
        out.write("    " + (before + sentence + after).replace("\n", "\n    ") + "\n")
        out.write(f"    quote [{hit.sentence.start}:{hit.sentence.end}]: {hit.sentence.text}\n")


def _index(args: argparse.Namespace, out: TextIO) -> int:
    if args.check:
        if args.rebuild or args.optimize:
            raise UsageError("give --check alone, without --rebuild or --optimize")
        from .index import check_index

        findings, problems = check_index(args.index_dir)
        for line in findings:
            out.write(f"ok: {line}\n")
        for line in problems:
            out.write(f"DAMAGED: {line}\n")
        out.write(f"index in {args.index_dir}: {'damaged, run rag index --rebuild' if problems else 'sound'}\n")
        return EXIT_FAILURE if problems else 0
    retriever = _open(args, rebuild=args.rebuild, optimize=args.optimize)
    out.write(f"index in {args.index_dir}: {retriever.report.documents} documents, {retriever.report.passages} passages\n")
    return 0


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    from .serving import auth_from, exposure_warning

    auth = auth_from(args.auth_file)
    if warning := exposure_warning(args.host, auth is not None, args.read_only):
        print(f"rag: warning: {warning}", file=sys.stderr)
    print(f"rag: opening the index of {args.corpus} in {args.index_dir} (built or updated first when needed)",
          file=sys.stderr)
    retriever = _open(args)
    from .ui import serve

    serve(retriever, args.host, args.port, auth=auth, read_only=args.read_only)
    return 0


_EVAL_LABELS = {
    "ndcg@10": "nDCG@10", "recall@1": "Recall@1", "recall@5": "Recall@5", "recall@10": "Recall@10",
    "recall@100": "Recall@100", "mrr@10": "MRR@10", "sentence_holds_evidence": "sentence holds evidence",
    "evidence_in_top5": "evidence in top 5", "queries_per_second": "queries/s",
    "answerable_flagged": "answerable called unanswered", "unanswerable_flagged": "unanswerable flagged",
}


def _eval(args: argparse.Namespace, out: TextIO) -> int:
    from . import evaluate

    report: evaluate.BeirReport | evaluate.QaReport
    if any(path.is_dir() for path in args.dataset):
        if len(args.dataset) > 1:
            raise UsageError("give one BEIR folder at a time (several DATASET arguments are for QA files)")
        if args.corpus is not None:
            raise UsageError("--corpus is for QA files: a BEIR folder holds its own corpus.jsonl")
        root = args.dataset[0]
        dataset = evaluate.load_beir(root, args.split, args.limit)
        retriever = evaluate.open_beir(root, args.index_dir, progress=sys.stderr.isatty())
        for message in retriever.report.messages():
            print(f"rag: {message}", file=sys.stderr)
        report = evaluate.evaluate_beir(retriever, dataset, args.mode)
        heading = f"{report.dataset} · {report.split} split · {report.queries} queries · mode {report.mode}"
    else:
        examples = [example for path in args.dataset for example in evaluate.read_qa(path)][: args.limit]
        unanswerable = [question for path in args.unanswerable or () for question in evaluate.read_unanswerable(path)]
        args.corpus = args.corpus or DEFAULT_CORPUS
        args.index_dir = args.index_dir or DEFAULT_INDEX_DIR
        if args.fit_confidence:
            if not unanswerable:
                raise UsageError("--fit-confidence needs --unanswerable FILE")
            weights, threshold = evaluate.fit_confidence(_open(args), examples, unanswerable, args.mode)
            out.write(f"CONFIDENCE_WEIGHTS = {weights!r}\nANSWER_THRESHOLD = {threshold!r}\n")
            return 0
        name = " + ".join(path.name for path in args.dataset)
        report = evaluate.evaluate_qa(_open(args), examples, args.mode, name, unanswerable)
        extra = f" + {len(unanswerable)} unanswerable" if unanswerable else ""
        heading = f"{report.dataset} · {report.questions} questions{extra} over {args.corpus} · mode {report.mode}"
    if args.json:
        out.write(json.dumps(report.to_dict(), ensure_ascii=False) + "\n")
        return 0
    out.write(heading + "\n")
    for key, value in report.to_dict().items():
        if key in _EVAL_LABELS:
            out.write(f"  {_EVAL_LABELS[key]:<29} {value}\n")
    return 0


def _sizes(value: str) -> list[int]:
    """An argparse type: comma-separated passage counts, each a whole number with an optional k or M."""
    sizes = []
    for item in value.split(","):
        text = item.strip().lower()
        scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
        try:
            size = int(text[:-1] if scale > 1 else text) * scale
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be passage counts such as 10000,100k,1M; got {item.strip()!r}") from None
        if size < 100:
            raise argparse.ArgumentTypeError(f"each size must be at least 100 passages, got {size}")
        sizes.append(size)
    return sizes


def _bench(args: argparse.Namespace, out: TextIO) -> int:
    if args.scale:
        from .scale import DEFAULT_BENCHMARKS, DEFAULT_SIZES, run_scale, stderr_log
        from .scale import markdown as scale_markdown

        log = stderr_log()
        log("rag bench --scale: builds, searches and updates an index per size (about 15 minutes for the defaults)")
        result = run_scale(args.sizes or DEFAULT_SIZES, benchmarks=args.benchmarks or DEFAULT_BENCHMARKS, log=log,
                           progress=sys.stderr.isatty())
        out.write(json.dumps(result) + "\n" if args.json else scale_markdown(result))
        return 0
    if args.sizes is not None or args.benchmarks is not None:
        raise UsageError("--sizes and --benchmarks go with --scale")
    from .speed import markdown, run_bench

    print("rag: benchmarking (a few minutes: cold starts, warm queries, a batch run, then the reference)",
          file=sys.stderr)
    result = run_bench(args.corpus, args.index_dir, runs=args.runs, batch_questions=args.questions)
    out.write(json.dumps(result) + "\n" if args.json else markdown(result))
    return 0


#: Each subcommand is a parser entry in ``build_parser`` and a function (args, out) -> exit status here.
COMMANDS = {"index": _index, "ask": _ask, "serve": _serve, "eval": _eval, "bench": _bench}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``rag`` command; returns the exit status."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    try:
        if unknown:
            raise UsageError(f"unrecognized arguments: {' '.join(unknown)}")
        status = COMMANDS[args.command](args, sys.stdout)
        sys.stdout.flush()  # here, so a reader gone away is met below rather than at exit
        return status
    except (UsageError, QueryError) as error:
        parser.exit(EXIT_USAGE, f"rag {args.command}: error: {error} (see rag {args.command} --help)\n")
    except BrokenPipeError:
        # The reader went away (``rag ask … | head``): stop quietly, as a pipe's writer killed by SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except RagError as error:
        print(f"rag: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as error:
        print(f"rag: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
