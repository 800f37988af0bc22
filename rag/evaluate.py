"""Evaluation: BEIR datasets, a metric wrapper around ir_measures, and QA-file evaluation.

A BEIR folder holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

>>> scores({"q1": {"d1": 1}}, {"q1": {"d1": 2.0, "d2": 1.0}})["ndcg@10"]
1.0
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import BENCHMARK_INDEX_ROOT, benchmark_settings
from .documents import Document, Loaded, Scan, content_hash
from .errors import CorpusError

if TYPE_CHECKING:
    from .embedding import QuestionEncoder
    from .retrieval import Retriever

#: Our metric names and the ir_measures measures behind them.
MEASURES = {"ndcg@10": "nDCG@10", "recall@10": "R@10", "recall@100": "R@100", "mrr@10": "RR@10"}

#: Documents ranked per query: enough for Recall@100.
RUN_DEPTH = 100

#: Questions encoded per model call during an evaluation run.
QUESTION_BATCH = 64


# ---------------------------------------------------------------------------
# BEIR datasets
# ---------------------------------------------------------------------------


def _json_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(raw line, parsed object) per non-blank line of a JSONL file."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(f"file not found: {path}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise CorpusError(f"{path}: line {number} is not valid JSON") from None
            if not isinstance(record, dict):
                raise CorpusError(f"{path}: line {number} is not a JSON object")
            yield line.rstrip("\n"), record


class BeirCorpus:
    """The documents of a BEIR ``corpus.jsonl``, one ``Document`` per line, named by ``_id``.

    A document's text is its title, a blank line and its text; only the text part is body,
    and the title leads every passage through ``index.search_text`` (kind ``"record"``).

    >>> corpus = BeirCorpus("/data/scifact")  # doctest: +SKIP
    >>> corpus.load("4983").document.title  # doctest: +SKIP
    'Microstructural development of human newborn cerebral white matter ...'
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lines: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"BeirCorpus({str(self.root)!r})"

    def _records(self) -> dict[str, str]:
        if self._lines is None:
            lines: dict[str, str] = {}
            for line, record in _json_lines(self.root / "corpus.jsonl"):
                if "_id" not in record:
                    raise CorpusError(f"{self.root / 'corpus.jsonl'}: a line has no '_id'")
                lines[str(record["_id"])] = line
            if not lines:
                raise CorpusError(f"{self.root / 'corpus.jsonl'} holds no document")
            self._lines = lines
        return self._lines

    def scan(self) -> Scan:
        """Every document ``_id``, signed by the SHA-256 of its JSON line."""
        return Scan({source: content_hash(line.encode("utf-8")) for source, line in self._records().items()})

    def signature(self, source: str) -> str | None:
        """The SHA-256 of a document's JSON line (``None`` for an unknown ``_id``)."""
        line = self._records().get(source)
        return None if line is None else content_hash(line.encode("utf-8"))

    def fingerprint(self, source: str) -> str:
        """The SHA-256 of a document's JSON line."""
        return content_hash(self._records()[source].encode("utf-8"))

    def load(self, source: str) -> Loaded:
        """The document of one ``_id``; ``None`` when it has neither title nor text."""
        line = self._records()[source]
        fingerprint = content_hash(line.encode("utf-8"))
        record = json.loads(line)
        title = str(record.get("title") or "").strip()
        body = str(record.get("text") or "").strip()
        if not body:
            if not title:
                return Loaded(None, fingerprint, fingerprint)
            title, body = "", title
        head = f"{title}\n\n" if title else ""
        text = head + body
        document = Document(
            source=source, text=text, title=title, body=((len(head), len(text)),), kind="record" if title else "text"
        )
        return Loaded(document, fingerprint, fingerprint)


def read_queries(path: Path) -> dict[str, str]:
    """Query texts by ``_id`` from a BEIR ``queries.jsonl``."""
    return {str(record["_id"]): str(record["text"]) for _, record in _json_lines(path)}


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Judgments ``{query_id: {doc_id: grade}}`` from a BEIR qrels TSV (header line skipped)."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except FileNotFoundError:
        raise CorpusError(f"qrels file not found: {path}") from None
    qrels: dict[str, dict[str, int]] = {}
    with handle:
        rows = csv.reader(handle, delimiter="\t")
        for number, row in enumerate(rows, start=1):
            if not row or (number == 1 and not row[-1].lstrip("-").isdigit()):
                continue
            if len(row) != 3:
                raise CorpusError(f"{path}: line {number} does not have 3 tab-separated fields")
            qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


@dataclass(frozen=True)
class BeirDataset:
    """The judged queries of one split of a BEIR dataset."""

    root: Path
    split: str
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def name(self) -> str:
        """The dataset's folder name."""
        return self.root.resolve().name


def load_beir(root: str | Path, split: str = "test", limit: int | None = None) -> BeirDataset:
    """The queries of ``split`` that have judgments (the first ``limit`` of them, in qrels order)."""
    root = Path(root)
    qrels = read_qrels(root / "qrels" / f"{split}.tsv")
    texts = read_queries(root / "queries.jsonl")
    judged = [query_id for query_id in qrels if query_id in texts]
    if limit is not None:
        judged = judged[:limit]
    if not judged:
        raise CorpusError(f"no query of {root / 'queries.jsonl'} is judged in the {split} split")
    return BeirDataset(root, split, {q: texts[q].strip() for q in judged}, {q: qrels[q] for q in judged})


# ---------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------


def scores(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """nDCG@10, Recall@10, Recall@100 and MRR@10 of ``run`` against ``qrels``, by ir_measures.

    Both map query ids to ``{doc_id: value}`` (grades, scores). Every judged query counts;
    one missing from the run scores 0. Grades above 0 are relevant (nDCG uses them as gains).
    """
    import ir_measures

    measures = {name: ir_measures.parse_measure(spec) for name, spec in MEASURES.items()}
    judged = {q: dict(docs) for q, docs in qrels.items()}
    ranked = {q: dict(run.get(q, {})) for q in judged}
    values = ir_measures.calc_aggregate(measures.values(), judged, ranked)
    return {name: float(values[measure]) for name, measure in measures.items()}


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BeirReport:
    """Scores of one mode on one split of a BEIR dataset."""

    dataset: str
    split: str
    mode: str
    queries: int
    seconds: float
    metrics: dict[str, float]

    @property
    def queries_per_second(self) -> float:
        """Questions answered per second, question encoding included."""
        return self.queries / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """The report in the JSON schema printed by ``rag eval --json``."""
        return {
            "dataset": self.dataset,
            "split": self.split,
            "mode": self.mode,
            **{name: round(value, 4) for name, value in self.metrics.items()},
            "queries": self.queries,
            "queries_per_second": round(self.queries_per_second, 1),
        }


def beir_index_dir(root: Path) -> Path:
    """The default index folder of a BEIR dataset: ``benchmarks-index/<folder name>`` in the cwd."""
    return BENCHMARK_INDEX_ROOT / Path(root).resolve().name


def open_beir(
    root: str | Path,
    index_dir: Path | None = None,
    *,
    progress: bool = False,
    encoder: QuestionEncoder | None = None,
    passage_backend: str | None = None,
) -> Retriever:
    """A ``Retriever`` over a BEIR corpus, its index built with the benchmark settings on first use.

    ``encoder`` replaces the question encoder the index names (to compare backends);
    ``passage_backend`` (one of ``embedding.PASSAGE_BACKENDS``) embeds the passages another way,
    into its own default folder (``benchmarks-index/<name>-<backend>``).
    """
    import functools

    from .embedding import passage_embedder
    from .retrieval import Retriever

    root = Path(root)
    folder = index_dir if index_dir is not None else beir_index_dir(root)
    embed = None
    if passage_backend is not None:
        embed = functools.partial(passage_embedder, benchmark_settings().model, passage_backend)
        folder = folder if index_dir is not None else folder.with_name(f"{folder.name}-{passage_backend}")
    return Retriever.open(
        BeirCorpus(root), folder, settings=benchmark_settings(), progress=progress, encoder=encoder, embed=embed
    )


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for first in range(0, len(items), size):
        yield items[first : first + size]


def evaluate_beir(retriever: Retriever, dataset: BeirDataset, mode: str, depth: int = RUN_DEPTH) -> BeirReport:
    """Rank ``depth`` documents for every judged query of ``dataset`` and score the run.

    Questions are encoded in batches; the clock covers encoding and ranking, not loading.
    """
    query_ids = list(dataset.queries)
    retriever.rank_sources(dataset.queries[query_ids[0]], 1, mode=mode)  # loads the model and the source map
    retriever.forget_questions()
    run: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    for batch in _batches(query_ids, QUESTION_BATCH):
        if mode != "bm25":
            retriever.encode_questions([dataset.queries[q] for q in batch])
        for query_id in batch:
            run[query_id] = dict(retriever.rank_sources(dataset.queries[query_id], depth, mode=mode))
    seconds = time.perf_counter() - started
    return BeirReport(dataset.name, dataset.split, mode, len(query_ids), seconds, scores(dataset.qrels, run))


# ---------------------------------------------------------------------------
# QA files
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class QaExample:
    """A question, the source that answers it and a verbatim evidence quote from that source."""

    question: str
    source: str
    evidence: str


@dataclass(frozen=True)
class QaReport:
    """Brief-level and evidence-level scores of one mode on a QA file."""

    dataset: str
    mode: str
    questions: int
    metrics: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """The report in the JSON schema printed by ``rag eval FILE.jsonl --json``."""
        return {
            "dataset": self.dataset,
            "mode": self.mode,
            **{name: round(value, 4) for name, value in self.metrics.items()},
            "questions": self.questions,
        }


def read_qa(path: Path) -> list[QaExample]:
    """The examples of a QA file: JSON lines with "question", "source" and "evidence"."""
    examples = []
    for _, record in _json_lines(path):
        try:
            examples.append(QaExample(str(record["question"]), str(record["source"]), str(record["evidence"])))
        except KeyError as missing:
            raise CorpusError(f"{path}: a line has no {missing} field") from None
    if not examples:
        raise CorpusError(f"{path} holds no question")
    return examples


def _normalized(text: str) -> str:
    return " ".join(text.split())


def evaluate_qa(
    retriever: Retriever, examples: Sequence[QaExample], mode: str, name: str = "qa",
    unanswerable: Sequence[str] = (),
) -> QaReport:
    """Score the top 10 passages of every question at brief level and at evidence level.

    ``recall@1``/``recall@5``: the answering source is among the first 1/5 hits;
    ``mrr@10``: mean reciprocal rank of its first hit; ``sentence_holds_evidence``: the
    rank-1 hit is from that source and its supporting sentence contains the evidence
    (whitespace normalized); ``evidence_in_top5``: a top-5 passage of that source contains it;
    ``answerable_flagged``: the share of these questions reported as not found (false alarms).
    With ``unanswerable`` questions, ``unanswerable_flagged`` is the share of them reported as
    not found (the higher the better).
    """
    from .retrieval import answer_found

    retriever.encode_questions([example.question.strip() for example in examples])
    totals = dict.fromkeys(("recall@1", "recall@5", "mrr@10", "sentence_holds_evidence", "evidence_in_top5",
                            "answerable_flagged"), 0.0)
    for example in examples:
        hits = retriever.search(example.question, k=10, mode=mode)
        evidence = _normalized(example.evidence)
        right = [hit.source == example.source for hit in hits]
        totals["recall@1"] += any(right[:1])
        totals["recall@5"] += any(right[:5])
        totals["mrr@10"] += next((1.0 / rank for rank, ok in enumerate(right, start=1) if ok), 0.0)
        totals["sentence_holds_evidence"] += bool(right[:1] == [True] and evidence in _normalized(hits[0].sentence.text))
        totals["evidence_in_top5"] += any(ok and evidence in _normalized(hit.text) for ok, hit in zip(right[:5], hits))
        totals["answerable_flagged"] += not answer_found(hits[:5])
    metrics = {key: value / len(examples) for key, value in totals.items()}
    if unanswerable:
        flagged = sum(not answer_found(retriever.search(question, k=5, mode=mode)) for question in unanswerable)
        metrics["unanswerable_flagged"] = flagged / len(unanswerable)
    return QaReport(name, mode, len(examples), metrics)


def read_unanswerable(path: Path) -> list[str]:
    """The questions of a JSONL file of questions the corpus does not answer (a "question" field per line)."""
    questions = [str(record["question"]) for _, record in _json_lines(path) if "question" in record]
    if not questions:
        raise CorpusError(f"{path} holds no question")
    return questions


def fit_confidence(
    retriever: Retriever, examples: Sequence[QaExample], unanswerable: Sequence[str], mode: str
) -> tuple[tuple[float, ...], float]:
    """Weights for ``config.CONFIDENCE_WEIGHTS`` and the threshold for ``config.ANSWER_THRESHOLD``.

    The weights are fitted on the rank-1 hit's evidence of answerable questions against that of
    unanswerable ones (see ``rag.confidence.fit``); the threshold, on the answers' best confidence
    among their top 5 hits with those weights, flags the most unanswerable questions with at most
    5% of the answerable ones flagged (``rag.confidence.choose_threshold``).
    """
    from .confidence import choose_threshold, confidence, fit

    answers = [(retriever.search(e.question, k=5, mode=mode), 1) for e in examples]
    answers += [(retriever.search(question, k=5, mode=mode), 0) for question in unanswerable]
    rows, labels = [], []
    for hits, label in answers:
        if hits and hits[0].evidence is not None:
            rows.append(hits[0].evidence)
            labels.append(label)
    weights = fit(rows, labels)

    def best(hits: Sequence[Any]) -> float:
        return max((confidence(hit.evidence, weights) for hit in hits if hit.evidence is not None), default=0.0)

    threshold = choose_threshold([best(hits) for hits, label in answers if label],
                                 [best(hits) for hits, label in answers if not label])
    return weights, threshold
