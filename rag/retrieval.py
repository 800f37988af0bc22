"""The ``Retriever``: dense + lexical search, fusion, filters, de-duplication, supporting sentence.

>>> retriever = Retriever.open(corpus="seeds", index_dir="index")  # doctest: +SKIP
>>> hit = retriever.search("What did Belarus seek from China?", k=3)[0]  # doctest: +SKIP
>>> hit.text == open("seeds/" + hit.source, encoding="utf-8").read()[hit.start:hit.end]  # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import numpy as np

from . import ranking
from .answer_types import expected_answer, holds_answer
from .confidence import Evidence, confidence
from .digest import digest
from .config import (
    ANSWER_THRESHOLD,
    BRIEF_PRIOR,
    CENTRALITY_NEIGHBOURS,
    CENTRALITY_WEIGHT,
    CONFIDENCE_PASSAGES,
    CONFIDENCE_WEIGHTS,
    CONTINUATION_GAIN,
    CONTINUATION_PENALTY,
    DEFAULT_CORPUS,
    DEFAULT_INDEX_DIR,
    DEFAULT_K,
    DEFAULT_MODE,
    MAX_K,
    MAX_QUESTION_CHARS,
    SEARCH_MODES,
    SENTENCE_TERM_WEIGHT,
    FusionSettings,
    IndexSettings,
    StoreSettings,
    model_setting,
)
from .documents import Corpus, Document, FolderCorpus
from .embedding import PassageEmbedder, QuestionEncoder, passage_embedder, question_encoder
from .errors import CorpusError, IndexWriteError, QueryError
from .index import (
    ENCODER_DIR,
    IndexReport,
    OpenIndex,
    WaitNotice,
    current_marker,
    load_current,
    open_index,
    search_text,
)
from .periods import Period, in_periods, question_periods
from .reads import SearchReads
from .rerank import Reranker
from .sentences import QuestionProfile, question_profile, score_sentences, sentence_terms
from .stores.lexical import terms
from .stores.passages import Filters, PassageRecord

_QUESTION_CACHE_SIZE = 1024
#: Questions encoded per model call by :meth:`Retriever.search_many`.
QUESTION_BATCH = 64
#: Threads per retriever that encode single questions while their searches run BM25.
QUESTION_WORKERS = 4
_SURROGATE_RE = re.compile("[\ud800-\udfff]")

Key = TypeVar("Key", int, str)


@dataclass(frozen=True)
class SentenceSpan:
    """A quotable sentence: ``file_text[start:end] == text``."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Hit:
    """One retrieved passage with its citation and the sentence that best answers the question."""

    rank: int
    score: float
    source: str
    title: str
    week_start: str | None
    week_end: str | None
    category: str | None
    trend: str | None
    start: int
    end: int
    text: str
    sentence: SentenceSpan
    chunk_id: str = field(default="", compare=False)
    #: How likely this passage answers the question, 0 to 1 (see ``rag.confidence``).
    confidence: float = field(default=0.0, compare=False)
    #: The signals the confidence was computed from.
    evidence: Evidence | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The hit in the JSON schema shared by the CLI, the app and evaluation scripts."""
        return {
            "rank": self.rank,
            "score": round(float(self.score), 6),
            "source": self.source,
            "title": self.title,
            "week_start": self.week_start,
            "week_end": self.week_end,
            "category": self.category,
            "trend": self.trend,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "sentence": {"text": self.sentence.text, "start": self.sentence.start, "end": self.sentence.end},
            "confidence": round(float(self.confidence), 4),
        }


def printable(text: str | None) -> str | None:
    """``text`` with unpaired surrogates (which no encoder accepts) replaced by U+FFFD.

    >>> printable("Minsk \\ud800")
    'Minsk \ufffd'
    """
    return None if text is None else _SURROGATE_RE.sub("\ufffd", text)


def answer_found(hits: Sequence[Hit]) -> bool:
    """Whether the briefs seem to answer the question: some hit's confidence reaches ``ANSWER_THRESHOLD``."""
    return any(hit.confidence >= ANSWER_THRESHOLD for hit in hits)


def results_payload(question: str | None, hits: Sequence[Hit], reason: str | None = None) -> dict[str, Any]:
    """The JSON document of one search, as ``rag ask --json``, the app's export and ``/search`` give it;
    ``reason`` (why there are no hits, :meth:`Retriever.explain_empty`) is added when given."""
    records = [hit.to_dict() for hit in hits]
    payload = {"question": printable(question), "answer_found": answer_found(hits),
               "digest": digest(records, threshold=ANSWER_THRESHOLD), "hits": records}
    if reason is not None:
        payload["reason"] = reason
    return payload


@dataclass(frozen=True)
class Answer:
    """The answer to one question of a batch: its hits, or why there are none."""

    question: str | None
    hits: list[Hit]
    error: str | None = None
    #: Why a searched question found no passage (:meth:`Retriever.explain_empty`).
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """:func:`results_payload`, plus ``error`` when the question could not be answered."""
        payload = results_payload(self.question, self.hits, self.reason)
        if self.error is not None:
            payload["error"] = self.error
        return payload


def validate_query(question: str, k: int, mode: str) -> str:
    """The stripped question; raises ``QueryError`` for an empty question, bad ``k`` or mode."""
    if not isinstance(question, str) or not question.strip():
        raise QueryError("the question is empty: type a question in plain English")
    if len(question) > MAX_QUESTION_CHARS:
        raise QueryError(f"the question is too long ({len(question):,} characters; at most {MAX_QUESTION_CHARS:,})")
    if _SURROGATE_RE.search(question):
        raise QueryError("the question holds broken characters (unpaired UTF-16 surrogates): send it as UTF-8 text")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be a whole number from 1 to {MAX_K} (got {k!r})")
    if mode not in SEARCH_MODES:
        raise QueryError(f"unknown search mode {mode!r}: choose one of {', '.join(SEARCH_MODES)}")
    return question.strip()


class Retriever:
    """Answers questions with cited passages from a persisted index.

    Open it with :meth:`open`; it builds or updates the index when the corpus or the
    settings changed. Safe to share between threads: every search holds a lease on the
    index generation it reads, so :meth:`refresh` never closes an index under a search.
    A search notices when another process published a newer generation and switches to
    it, and it never cites a file that changed on disk since it was indexed: such a file
    is re-indexed first.
    """

    def __init__(
        self,
        corpus: Corpus,
        index_dir: Path,
        settings: IndexSettings,
        index: OpenIndex,
        fusion: FusionSettings = FusionSettings(),
        reranker: Reranker | None = None,
        *,
        encoder: QuestionEncoder | None = None,
        embed: Callable[[], PassageEmbedder] | None = None,
    ) -> None:
        """Serve ``index``; ``encoder`` encodes questions (default: the one the index's manifest
        names, see ``embedding.question_encoder``), ``embed`` gives the passage embedder that
        updates need (default: ``embedding.passage_embedder`` of ``settings.model``)."""
        self.corpus = corpus
        self.index_dir = Path(index_dir)
        self.settings = settings
        self.fusion = fusion
        self.reranker = reranker
        self._given_encoder = encoder
        self._encoder = encoder
        self._encoder_lock = threading.Lock()
        self._embed = embed or functools.partial(passage_embedder, settings.model)
        self._index = index
        self._marker = current_marker(self.index_dir) if index.is_current() else None
        self._swap_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._question_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        # Encodes a question while the asking thread runs BM25 (onnxruntime releases the GIL).
        self._encoding = ThreadPoolExecutor(max_workers=QUESTION_WORKERS, thread_name_prefix="rag-question")

    @classmethod
    def open(
        cls,
        corpus: str | Path | Corpus = DEFAULT_CORPUS,
        index_dir: str | Path = DEFAULT_INDEX_DIR,
        *,
        settings: IndexSettings | None = None,
        fusion: FusionSettings = FusionSettings(),
        reranker: Reranker | None = None,
        progress: bool = False,
        rebuild: bool = False,
        on_wait: WaitNotice | None = None,
        encoder: QuestionEncoder | None = None,
        embed: Callable[[], PassageEmbedder] | None = None,
        index_type: str | None = None,
        store: StoreSettings | None = None,
        optimize: bool = False,
    ) -> Retriever:
        """Open (building or updating as needed) the index of ``corpus`` stored in ``index_dir``.

        ``corpus`` is a folder of ``.txt``/``.md`` files or any ``Corpus``. What the call did
        to the index is in :attr:`report`. ``on_wait`` hears when another process is
        building the index and this call waits for it. ``encoder`` and ``embed`` replace the
        default question encoder and passage embedder (see :class:`Retriever`).
        ``index_type`` rebuilds the index with another vector index type (``None`` keeps its own),
        ``store`` with its vectors kept elsewhere (FAISS or Qdrant; ``None`` keeps them where they are).
        ``optimize`` merges the index's segments into one (see :func:`rag.index.open_index`).
        """
        corpus = FolderCorpus(corpus) if isinstance(corpus, (str, Path)) else corpus
        settings = settings or IndexSettings(model=model_setting())
        index_dir = Path(index_dir)
        embed = embed or functools.partial(passage_embedder, settings.model)
        index = open_index(
            corpus, index_dir, settings, embed, progress=progress, rebuild=rebuild, on_wait=on_wait, index_type=index_type,
            store=store, optimize=optimize,
        )
        return cls(corpus, index_dir, settings, index, fusion, reranker, encoder=encoder, embed=embed)

    @property
    def report(self) -> IndexReport:
        """What the last open or refresh did to the index."""
        return self._index.report

    @property
    def encoder_loaded(self) -> bool:
        """Whether the question encoder is loaded (the first search loads it)."""
        return self._encoder is not None

    @property
    def encoder(self) -> QuestionEncoder:
        """The question encoder of the index being served (loaded on first use)."""
        with self._encoder_lock:
            if self._encoder is None:
                index = self._index
                self._encoder = question_encoder(index.manifest.encoder, index.directory / ENCODER_DIR, self.settings.model)
            return self._encoder

    def refresh(self, *, progress: bool = False, rebuild: bool = False) -> IndexReport:
        """Bring the index up to date with the corpus (after files were added or changed)."""
        with self._refresh_lock:
            fresh = open_index(
                self.corpus, self.index_dir, self.settings, self._embed, progress=progress, rebuild=rebuild
            )
            self._install(fresh)
        return fresh.report

    def _install(self, fresh: OpenIndex) -> None:
        """Serve ``fresh`` from now on; the old generation closes when its last search ends."""
        marker = current_marker(self.index_dir)
        if not fresh.is_current():  # switched again meanwhile: the next search follows
            marker = None
        with self._swap_lock:
            old, self._index, self._marker = self._index, fresh, marker
        if self._given_encoder is None and old.encoder_identity() != fresh.encoder_identity():
            with self._encoder_lock:
                self._encoder = None  # the model changed: questions are encoded anew
            self.forget_questions()
        if old is not fresh:
            old.close()

    def _follow_current(self) -> None:
        """Switch to the generation another process published, if there is a newer one."""
        if current_marker(self.index_dir) == self._marker:
            return
        with self._refresh_lock:
            if current_marker(self.index_dir) == self._marker:
                return
            fresh = load_current(self.index_dir, self.settings)
            if fresh is None:
                fresh = open_index(self.corpus, self.index_dir, self.settings, self._embed)
            self._install(fresh)

    @contextlib.contextmanager
    def _lease(self) -> Iterator[OpenIndex]:
        """The live index generation, held open until the block ends."""
        self._follow_current()
        with self._swap_lock:
            index = self._index.acquire()
        try:
            yield index
        finally:
            index.release()

    # -- reading ---------------------------------------------------------------

    def documents(self) -> list[dict[str, Any]]:
        """The indexed documents with title, week, category, trend and passage count."""
        with self._lease() as index:
            return index.passages.documents()

    def document(self, source: str) -> Document | None:
        """The full stored document of a source name."""
        with self._lease() as index:
            return index.passages.document(source)

    def passage_vectors(self) -> np.ndarray:
        """Every stored passage vector, in passage-id order (what a reference recipe searches)."""
        with self._lease() as index:
            return index.vectors.vectors(index.passages.ids())

    # -- searching -------------------------------------------------------------

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        """Question vectors, one row per question, cached per question text (the most recent 1,024)."""
        unique = list(dict.fromkeys(questions))
        found = self._cached_vectors(unique)
        missing = [q for q in unique if q not in found]
        if missing:
            found.update(zip(missing, self.encoder.encode(missing)))
            with self._cache_lock:
                for question in missing[-_QUESTION_CACHE_SIZE:]:
                    self._question_vectors[question] = found[question]
                while len(self._question_vectors) > _QUESTION_CACHE_SIZE:
                    self._question_vectors.popitem(last=False)
        return np.vstack([found[q] for q in questions])

    def _cached_vectors(self, questions: Iterable[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``questions`` (distinct), each marked as just used."""
        with self._cache_lock:
            found = {q: self._question_vectors[q] for q in questions if q in self._question_vectors}
            for question in found:
                self._question_vectors.move_to_end(question)
        return found

    def forget_questions(self) -> None:
        """Empty the question-vector cache (benchmarks time encoding from a cold cache)."""
        with self._cache_lock:
            self._question_vectors.clear()

    def search(
        self,
        question: str,
        k: int = DEFAULT_K,
        *,
        mode: str = DEFAULT_MODE,
        filters: Filters | None = None,
        mmr: float | None = None,
    ) -> list[Hit]:
        """The ``k`` best passages for ``question``, best first, no two overlapping.

        ``mode`` is ``hybrid`` (BM25 + dense fusion), ``dense`` or ``bm25``. ``filters``
        restrict the search inside the stores, so ``k`` hits come back whenever ``k``
        matching passages exist. ``mmr`` (0..1) re-orders for diversity; 1.0 is pure relevance.
        In ``hybrid`` mode without a reranker, each passage also gains ``fusion.sentence_weight``
        times the score of its supporting sentence.
        """
        question = validate_query(question, k, mode)
        _check_mmr(mmr)
        filters = self.resolve_filters(filters)
        return self._answer(question, self._encode_meanwhile(question), k, mode, filters, mmr)

    def answer(
        self,
        question: str,
        k: int = DEFAULT_K,
        *,
        mode: str = DEFAULT_MODE,
        filters: Filters | None = None,
        mmr: float | None = None,
    ) -> Answer:
        """:meth:`search` as an :class:`Answer`, which says why when nothing was found
        (:meth:`explain_empty`): what ``rag ask``, the app and ``/search`` show."""
        return self._answered(question, question, self.search(question, k, mode=mode, filters=filters, mmr=mmr),
                              mode, filters)

    def _answered(self, question: str | None, searched: str, hits: list[Hit], mode: str,
                  filters: Filters | None) -> Answer:
        """The :class:`Answer` to ``question`` (searched as ``searched``), with the reason when ``hits`` is empty."""
        return Answer(question, hits, reason=None if hits else self.explain_empty(searched, mode, filters))

    def _encode_meanwhile(self, question: str) -> Future[np.ndarray]:
        """The question's vector: at once when cached, else encoded on a worker thread so that the
        caller can run the lexical search meanwhile (``Future.result`` waits for it)."""
        if (cached := self._cached_vectors([question]).get(question)) is not None:
            return _ready(cached)
        return self._encoding.submit(lambda: self.encode_questions([question])[0])

    def resolve_filters(self, filters: Filters | None) -> Filters | None:
        """``filters`` as the index names things; raises ``QueryError`` for one that matches nothing.

        A source may be given as its name, a path inside the corpus folder or an unambiguous
        prefix of either; categories match regardless of case; a reversed week range is refused.
        """
        if filters is None or filters.is_empty():
            return filters
        if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
            raise QueryError(f"the date range is reversed: {filters.date_from} is after {filters.date_to}")
        documents = self.documents()
        root = getattr(self.corpus, "root", None)
        sources = tuple(_match_source(given, [doc["source"] for doc in documents], root) for given in filters.sources)
        known = sorted({doc["category"] for doc in documents if doc["category"]})
        categories = []
        for given in filters.categories:
            matches = [category for category in known if category.casefold() == given.strip().casefold()]
            if not matches:
                raise QueryError(f"no indexed brief has the category {given!r} (there are: {', '.join(known) or 'none'})")
            categories.extend(matches)
        return replace(filters, sources=sources, categories=tuple(categories))

    def explain_empty(self, question: str, mode: str, filters: Filters | None) -> str:
        """Why a search found nothing, in one sentence an interface can show."""
        filters = self.resolve_filters(filters)
        if filters is not None and not filters.is_empty():
            with self._lease() as index:
                if not index.passages.filtered_ids(filters):
                    alone = [name for name, single in _single_filters(filters) if not index.passages.filtered_ids(single)]
                    return ("no indexed passage matches " + (" and ".join(alone) if alone else "all the filters together")
                            + ": widen or clear a filter")
        if mode == "bm25":
            if not terms(question):
                return "the question holds only common words, which BM25 ignores: try hybrid or dense mode"
            with self._lease() as index:
                if not index.lexical.search(question, 1)[1].size:
                    return "no word of the question is in the index (BM25 matches words): try hybrid or dense mode"
            if filters is not None and not filters.is_empty():
                return ("no passage the filters select holds a word of the question (BM25 matches words): "
                        "widen the filters or try hybrid or dense mode")
        return "nothing matched: try another wording or search mode"

    def search_many(
        self,
        questions: Iterable[str],
        k: int = DEFAULT_K,
        *,
        mode: str = DEFAULT_MODE,
        filters: Filters | None = None,
        mmr: float | None = None,
    ) -> Iterator[Answer]:
        """Answer many questions in order, encoding them ``QUESTION_BATCH`` at a time.

        Yields one :class:`Answer` per question as soon as it is ready; a question that
        cannot be searched (empty, broken characters) gets an answer with its ``error``.
        The next batch is encoded on a worker thread while this one is searched (the
        encoder releases the GIL). Memory stays flat however many questions come: at most
        two batches are held, and they bypass the question cache.
        """
        validate_query("-", k, mode)
        _check_mmr(mmr)
        filters = self.resolve_filters(filters)
        remaining = iter(questions)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rag-encode") as worker:
            pending = None
            while batch := list(itertools.islice(remaining, QUESTION_BATCH)):
                upcoming = worker.submit(self._encode_batch, batch, k, mode)
                if pending is not None:
                    yield from self._answer_batch(*pending.result(), k, mode, filters, mmr)
                pending = upcoming
            if pending is not None:
                yield from self._answer_batch(*pending.result(), k, mode, filters, mmr)

    def _encode_batch(
        self, questions: list[str], k: int, mode: str
    ) -> tuple[list[str], list[str | QueryError], dict[str, np.ndarray]]:
        """The batch, each question validated (or its error), and the vectors of the valid ones."""
        cleaned: list[str | QueryError] = []
        for question in questions:
            try:
                cleaned.append(validate_query(question, k, mode))
            except QueryError as error:
                cleaned.append(error)
        texts = list(dict.fromkeys(q for q in cleaned if isinstance(q, str)))
        return questions, cleaned, dict(zip(texts, self.encoder.encode(texts))) if texts else {}

    def _answer_batch(
        self,
        questions: list[str],
        cleaned: list[str | QueryError],
        vectors: dict[str, np.ndarray],
        k: int,
        mode: str,
        filters: Filters | None,
        mmr: float | None,
    ) -> Iterator[Answer]:
        for question, item in zip(questions, cleaned):
            if isinstance(item, QueryError):
                yield Answer(question, [], str(item))
            else:
                yield self._answered(question, item, self._answer(item, _ready(vectors[item]), k, mode, filters, mmr),
                                     mode, filters)

    def _answer(
        self, question: str, vector: Future[np.ndarray], k: int, mode: str, filters: Filters | None, mmr: float | None
    ) -> list[Hit]:
        """Search, then make sure every cited file is still what was indexed (re-indexing it if not)."""
        with self._lease() as index:
            hits = self._search(index, question, vector, k, mode, filters, mmr)
            changed = self._changed_sources(index, hits)
        if not changed:
            return hits
        with contextlib.suppress(IndexWriteError, CorpusError):
            self.refresh()
            with self._lease() as index:
                hits = self._search(index, question, vector, k, mode, filters, mmr)
                changed = self._changed_sources(index, hits)
        return self._exact_only(hits, changed) if changed else hits

    def _changed_sources(self, index: OpenIndex, hits: Sequence[Hit]) -> set[str]:
        """Sources of ``hits`` whose file changed on disk since the index read it."""
        return {hit.source for hit in hits if self.corpus.signature(hit.source) != index.signatures.get(hit.source)}

    def _exact_only(self, hits: list[Hit], changed: set[str]) -> list[Hit]:
        """The hits whose passage and sentence are still exact in the files as they are now, re-ranked."""
        texts: dict[str, str | None] = {}
        for source in changed:
            try:
                document = self.corpus.load(source).document
            except CorpusError:
                document = None
            texts[source] = document.text if document is not None else None
        kept = [
            hit for hit in hits
            if hit.source not in texts or (
                (text := texts[hit.source]) is not None
                and text[hit.start : hit.end] == hit.text
                and text[hit.sentence.start : hit.sentence.end] == hit.sentence.text
            )
        ]
        return [replace(hit, rank=rank) for rank, hit in enumerate(kept, start=1)]

    def _search(
        self,
        index: OpenIndex,
        question: str,
        encoding: Future[np.ndarray],
        k: int,
        mode: str,
        filters: Filters | None,
        mmr: float | None,
    ) -> list[Hit]:
        allowed = None
        if filters is not None and not filters.is_empty():
            allowed = set(index.passages.filtered_ids(filters))
            if not allowed:
                return []
        reads = SearchReads(index.passages)
        scored = mode == "hybrid" and self.reranker is None and bool(self.fusion.sentence_weight)
        ranked = self._rank(index, question, encoding, mode, max(self.fusion.candidates, 4 * k), allowed, filters,
                            reads if scored else None, self.fusion.pool(k))
        query_vector = encoding.result()
        if self.reranker is not None:
            ranked = self._rerank(index, question, ranked[: max(4 * k, 20)])
        records = reads.records([passage_id for passage_id, _ in ranked[: self.fusion.pool(k)]])
        ordered = [(records[i], score) for i, score in ranked if i in records]
        profile = question_profile(question, index.lexical.idf, len(index.lexical))
        quotes: dict[int, list[Quote]] = {}
        if scored:
            quotes = _supporting_sentences(reads, [record for record, _ in ordered], query_vector, profile)
            periods = question_periods(question)
            ordered = _add_sentence_scores(ordered, quotes, self.fusion.sentence_weight, periods, self.fusion.period_weight)
        ordered = ranking.drop_overlapping(ordered, lambda item: (item[0].source, item[0].start, item[0].end))
        nearest = [record for record, _ in ordered[:CONFIDENCE_PASSAGES]]  # what the confidence looks at, whatever k
        if mmr is not None and ordered:
            vectors = index.vectors.vectors([record.id for record, _ in ordered])
            ordered = [ordered[i] for i in ranking.maximal_marginal_relevance(query_vector, vectors, k, mmr)]
        chosen: list[tuple[PassageRecord, float, Quote]] = []
        quoted: set[tuple[str, int, int]] = set()
        for position, (record, score) in enumerate(ordered):
            if len(chosen) == k:
                break
            if record.id not in quotes:  # score the sentences of the next k candidates at once
                upcoming = [r for r, _ in ordered[position : position + k] if r.id not in quotes]
                quotes.update(_supporting_sentences(reads, upcoming, query_vector, profile))
            # The best sentence no higher hit quotes already; a passage with nothing new to quote is left out.
            quote = next((q for q in quotes[record.id] if (record.source, q.span.start, q.span.end) not in quoted), None)
            if quote is not None:
                quoted.add((record.source, quote.span.start, quote.span.end))
                chosen.append((record, score, quote))
        return _hits_with_confidence(chosen, nearest, question, profile)

    def _rank(
        self,
        index: OpenIndex,
        question: str,
        encoding: Future[np.ndarray],
        mode: str,
        candidates: int,
        allowed: set[int] | None,
        filters: Filters | None,
        reads: SearchReads | None = None,
        read_ahead: int = 0,
    ) -> list[tuple[int, float]]:
        """The candidates of one question by the mode's lists, fused; ``allowed`` holds the ids ``filters`` select
        (a vector store that keeps the passages' metadata applies ``filters`` itself). The dense search
        runs on the thread that encodes the question, as soon as the vector is ready, while this one
        runs BM25 and then, until the dense results are in, ``reads`` reads ahead the records and
        sentence vectors of up to ``read_ahead`` of BM25's best."""
        dense: dict[int, float] = {}
        lexical: dict[int, float] = {}
        searching = _dense_search_when_encoded(index, encoding, candidates, allowed, filters) if mode != "bm25" else None
        try:
            if mode in ("bm25", "hybrid"):
                scores, ids = index.lexical.search(question, candidates, allowed)
                lexical = {int(i): float(s) for s, i in zip(scores, ids)}
                if reads is not None:
                    reads.read_ahead(list(lexical), until=searching or encoding, limit=read_ahead)
            if searching is not None:
                scores, ids = searching.result()
                dense = {int(i): float(s) for s, i in zip(scores[0], ids[0]) if i >= 0}
        finally:
            if searching is not None:
                wait([searching])  # the index stays leased until its dense search is over
        return self._fuse(dense, lexical, mode, lexical_complete=len(lexical) < candidates)

    def _fuse(
        self, dense: dict[Key, float], lexical: dict[Key, float], mode: str, *, lexical_complete: bool
    ) -> list[tuple[Key, float]]:
        """One ranking, best first: the mode's own list, or both fused as the fusion settings say.

        ``lexical_complete``: the lexical list holds every match, so every other key's BM25
        score is 0, and min-max scaling starts from 0 rather than from the list's minimum.
        """
        if mode == "dense":
            return sorted(dense.items(), key=lambda item: -item[1])
        if mode == "bm25":
            return sorted(lexical.items(), key=lambda item: -item[1])
        if self.fusion.method == "rrf":
            return ranking.reciprocal_rank_fusion(
                [sorted(dense, key=dense.__getitem__, reverse=True), sorted(lexical, key=lexical.__getitem__, reverse=True)],
                k=self.fusion.rrf_k,
            )
        floor = 0.0 if lexical_complete else None
        return ranking.convex_fusion(dense, lexical, self.fusion.dense_weight, lexical_floor=floor)

    def rank_sources(self, question: str, n: int = DEFAULT_K, *, mode: str = DEFAULT_MODE) -> list[tuple[str, float]]:
        """The ``n`` best documents for ``question`` as (source, score), best first.

        A document's dense score is its best passage's (max-passage, over the top
        ``fusion.source_candidates`` passages); its lexical score is BM25 over the whole
        document. In ``hybrid`` mode the two are fused as for passages. Used by ``rag eval``:
        no filters, no de-duplication, no supporting sentence.

        >>> retriever.rank_sources("What did Belarus seek from China?", 2)  # doctest: +SKIP
        [('003_d66b08127121952b.txt', 0.93), ('001_ab578dc02529a0f4.txt', 0.41)]
        """
        question = validate_query(question, n, mode)
        depth = max(self.fusion.source_candidates, n)
        dense: dict[str, float] = {}
        lexical: dict[str, float] = {}
        with self._lease() as index:
            if mode in ("dense", "hybrid"):
                scores, ids = index.vectors.search(self.encode_questions([question]), depth)
                dense = _best_per_source(index, ids[0], scores[0])
            if mode in ("bm25", "hybrid"):
                scores, ids = index.document_lexical.search(question, depth)
                lexical = _best_per_source(index, ids, scores)
        return self._fuse(dense, lexical, mode, lexical_complete=len(lexical) < depth)[:n]

    def _rerank(self, index: OpenIndex, question: str, ranked: list[tuple[int, float]]) -> list[tuple[int, float]]:
        assert self.reranker is not None
        records = index.passages.passages([i for i, _ in ranked])
        ids = [i for i, _ in ranked if i in records]
        texts = [search_text(records[i].kind, records[i].title, records[i].text) for i in ids]
        scores = self.reranker.score(question, texts)
        return sorted(zip(ids, scores), key=lambda item: -item[1])


def _dense_search_when_encoded(
    index: OpenIndex, encoding: Future[np.ndarray], candidates: int, allowed: set[int] | None, filters: Filters | None
) -> Future[tuple[np.ndarray, np.ndarray]]:
    """The vector store's (scores, ids) for the question ``encoding`` gives, searched by the thread that
    completes it (at once, by this one, when it is done already); its failure, or the encoding's, is the result's."""
    searched: Future[tuple[np.ndarray, np.ndarray]] = Future()

    def search(encoded: Future[np.ndarray]) -> None:
        try:
            searched.set_result(index.vectors.search(encoded.result()[None, :], candidates, allowed, filters))
        except BaseException as error:  # noqa: BLE001 - handed to the waiting search
            searched.set_exception(error)

    encoding.add_done_callback(search)
    return searched


def _ready(vector: np.ndarray) -> Future[np.ndarray]:
    """A vector already at hand, as the future a search waits on."""
    future: Future[np.ndarray] = Future()
    future.set_result(vector)
    return future


def _match_source(given: str, known: Sequence[str], root: Path | None) -> str:
    """The indexed source that ``given`` names: exactly, as a path inside the corpus, or by a unique prefix."""
    text = given.strip()
    if text in known:
        return text
    candidates = [PurePosixPath(text).as_posix()]  # "./a.txt" and "sub//a.txt" name "a.txt" and "sub/a.txt"
    if root is not None:
        with contextlib.suppress(ValueError, OSError):
            candidates.append(Path(text).resolve().relative_to(Path(root).resolve()).as_posix())
    for candidate in candidates:
        if candidate in known:
            return candidate
    for matches in (sorted(s for s in known if Path(s).name == text),
                    sorted(s for s in known if any(s.startswith(c) or Path(s).name.startswith(c) for c in candidates if c))):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise QueryError(f"--source {given!r} matches {len(matches)} briefs ({shown}): give more of the name")
    raise QueryError(f"no indexed brief is named {given!r} (names are paths inside the corpus folder, e.g. {known[0]})")


def _single_filters(filters: Filters) -> list[tuple[str, Filters]]:
    """Each restriction of ``filters`` alone, with a description."""
    singles = []
    if filters.sources:
        singles.append((f"brief {', '.join(filters.sources)}", Filters(sources=filters.sources)))
    if filters.categories:
        singles.append((f"category {', '.join(filters.categories)}", Filters(categories=filters.categories)))
    if filters.trends:
        singles.append((f"trend {', '.join(filters.trends)}", Filters(trends=filters.trends)))
    if filters.date_from or filters.date_to:
        singles.append((f"weeks {filters.date_from or '…'} to {filters.date_to or '…'}",
                        Filters(date_from=filters.date_from, date_to=filters.date_to)))
    return singles


def _check_mmr(mmr: float | None) -> None:
    if mmr is not None and not 0.0 <= mmr <= 1.0:
        raise QueryError(f"mmr must be between 0 and 1 (got {mmr})")


def _best_per_source(index: OpenIndex, ids: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The best score of each source among scored passage ids (id -1 marks an empty place)."""
    best: dict[str, float] = {}
    for source, score in zip(index.live.sources_of(ids.tolist()), scores.tolist()):
        if source is not None and score > best.get(source, -np.inf):
            best[source] = score
    return best


def _hits_with_confidence(
    chosen: Sequence[tuple[PassageRecord, float, Quote]],
    nearest: Sequence[PassageRecord],
    question: str,
    profile: QuestionProfile,
) -> list[Hit]:
    """The ranked hits, each with the confidence its evidence gives (see ``rag.confidence``): the
    quoted sentence's cosine, the weighted share of the question's terms the index knows, whether the
    question names something that neither the index nor, spelled a little differently, the ``nearest``
    passages hold, whether the quoted sentence lacks the kind of answer the question asks for, and the
    weight of the question's heaviest term that none of the ``nearest`` passages holds (the search's
    best few, however many hits it returns, so that ``k`` does not change the answer)."""
    if not chosen:
        return []
    found = frozenset().union(*(sentence_terms(record.text) for record in nearest))
    unknown = float(profile.names_unknown(found))
    missing = profile.heaviest_missing(found)
    kind = expected_answer(question)
    return [
        _hit(rank, record, score, quote.span,
             Evidence(quote.cosine, profile.known, unknown, float(not holds_answer(kind, quote.span.text, question)),
                      missing))
        for rank, (record, score, quote) in enumerate(chosen, start=1)
    ]


def _hit(rank: int, record: PassageRecord, score: float, sentence: SentenceSpan, evidence: Evidence) -> Hit:
    """A stored passage as a ranked hit with its supporting sentence and the confidence its evidence gives."""
    return Hit(
        rank=rank,
        score=score,
        source=record.source,
        title=record.title,
        week_start=record.week_start,
        week_end=record.week_end,
        category=record.category,
        trend=record.trend,
        start=record.start,
        end=record.end,
        text=record.text,
        sentence=sentence,
        chunk_id=record.chunk_id,
        confidence=confidence(evidence, CONFIDENCE_WEIGHTS),
        evidence=evidence,
    )


def _add_sentence_scores(
    ordered: list[tuple[PassageRecord, float]],
    quotes: dict[int, list[Quote]],
    weight: float,
    periods: Sequence[Period] = (),
    period_weight: float = 0.0,
) -> list[tuple[PassageRecord, float]]:
    """Passages re-scored, best first: ``BRIEF_PRIOR`` of each passage's fused score is replaced by
    the best fused score of its brief, ``period_weight`` is added when the brief's week covers one
    of the ``periods`` the question names (``rag.periods``), and ``weight`` times its best
    sentence's score is added.

    The brief's score tells which brief answers; its passages then compete on their sentences,
    so the passage holding the answering sentence leads its overlapping neighbours.
    """
    brief: dict[str, float] = {}
    for record, score in ordered:
        brief[record.source] = max(brief.get(record.source, score), score)
    rescored = [
        (record, (1.0 - BRIEF_PRIOR) * score + BRIEF_PRIOR * brief[record.source] + weight * quotes[record.id][0].score
         + period_weight * in_periods(periods, record.week_start, record.week_end))
        for record, score in ordered
    ]
    return sorted(rescored, key=lambda item: -item[1])


@dataclass(frozen=True)
class Quote:
    """A candidate supporting sentence of a passage with its score and the signals behind it."""

    span: SentenceSpan
    score: float
    cosine: float
    coverage: float


#: Two sentences of a document are neighbours when at most this many characters (a space, a blank
#: line and a bullet's indent) separate them.
_NEIGHBOUR_GAP = 8


def _supporting_sentences(
    reads: SearchReads,
    records: Sequence[PassageRecord],
    query_vector: np.ndarray,
    profile: QuestionProfile,
) -> dict[int, list[Quote]]:
    """For each passage id, its sentences with their scores, the best answer to the question first.

    Sentences are scored together (``rag.sentences.score_sentences``), each once even when two
    overlapping passages hold it, with the sentence before it as context when that one is among
    them too. A passage without stored sentences offers its first sentence, scored 0.
    """
    keys = list(dict.fromkeys((r.source, s, e) for r in records for s, e in r.sentences))
    stored = reads.sentence_vectors(keys)
    texts: dict[tuple[str, int, int], str] = {}
    for record in records:
        for start, end in record.sentences:
            if (record.source, start, end) in stored:
                texts.setdefault((record.source, start, end), _slice(record, start, end))
    order = sorted(texts)
    position = {key: i for i, key in enumerate(order)}
    previous = [
        i - 1 if i and order[i - 1][0] == key[0] and 0 <= key[1] - order[i - 1][2] <= _NEIGHBOUR_GAP else -1
        for i, key in enumerate(order)
    ]
    signals = score_sentences(
        profile, query_vector, [texts[key] for key in order], [stored[key] for key in order], previous,
        [source for source, _, _ in order], term_weight=SENTENCE_TERM_WEIGHT, continuation_penalty=CONTINUATION_PENALTY,
        continuation_gain=CONTINUATION_GAIN, centrality_weight=CENTRALITY_WEIGHT, centrality_neighbours=CENTRALITY_NEIGHBOURS,
    )
    score, cosine, covered = signals.score.tolist(), signals.cosine.tolist(), signals.coverage.tolist()
    ranked: dict[int, list[Quote]] = {}
    for record in records:
        found = [(s, e, i) for s, e in record.sentences if (i := position.get((record.source, s, e))) is not None]
        if found:
            quotes = [Quote(SentenceSpan(texts[(record.source, s, e)], s, e), score[i], cosine[i], covered[i]) for s, e, i in found]
            quotes.sort(key=lambda quote: -quote.score)
        else:
            start, end = record.sentences[0] if record.sentences else (record.start, record.end)
            quotes = [Quote(SentenceSpan(_slice(record, start, end), start, end), 0.0, 0.0, 0.0)]
        ranked[record.id] = quotes
    return ranked


def _slice(record: PassageRecord, start: int, end: int) -> str:
    """The text of the file span ``[start, end)`` inside a passage."""
    return record.text[start - record.start : end - record.start]
