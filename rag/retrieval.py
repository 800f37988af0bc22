"""The ``Retriever``: dense + lexical search, fusion, filters, de-duplication, supporting sentence.

>>> retriever = Retriever.open(corpus="seeds", index_dir="index")  # doctest: +SKIP
>>> hit = retriever.search("What did Belarus seek from China?", k=3)[0]  # doctest: +SKIP
>>> hit.text == open("seeds/" + hit.source, encoding="utf-8").read()[hit.start:hit.end]  # doctest: +SKIP
True
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from . import ranking
from .config import (
    DEFAULT_CORPUS,
    DEFAULT_INDEX_DIR,
    DEFAULT_K,
    DEFAULT_MODE,
    MAX_K,
    SEARCH_MODES,
    SENTENCE_TERM_WEIGHT,
    FusionSettings,
    IndexSettings,
    model_setting,
)
from .documents import Corpus, Document, FolderCorpus
from .embedding import Embedder, load_embedder
from .errors import QueryError
from .index import IndexReport, OpenIndex, open_index, search_text
from .rerank import Reranker
from .stores.lexical import term_overlap
from .stores.passages import Filters, PassageRecord

_QUESTION_CACHE_SIZE = 1024

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
        }


def results_payload(question: str | None, hits: Sequence[Hit]) -> dict[str, Any]:
    """The JSON document of one search, as ``rag ask --json``, the app's export and ``/search`` give it."""
    return {"question": question, "hits": [hit.to_dict() for hit in hits]}


def validate_query(question: str, k: int, mode: str) -> str:
    """The stripped question; raises ``QueryError`` for an empty question, bad ``k`` or mode."""
    if not isinstance(question, str) or not question.strip():
        raise QueryError("the question is empty: type a question in plain English")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise QueryError(f"k must be a whole number from 1 to {MAX_K} (got {k!r})")
    if mode not in SEARCH_MODES:
        raise QueryError(f"unknown search mode {mode!r}: choose one of {', '.join(SEARCH_MODES)}")
    return question.strip()


class Retriever:
    """Answers questions with cited passages from a persisted index.

    Open it with :meth:`open`; it builds or updates the index when the corpus or the
    settings changed. Safe to share between threads.
    """

    def __init__(
        self,
        corpus: Corpus,
        index_dir: Path,
        settings: IndexSettings,
        index: OpenIndex,
        fusion: FusionSettings = FusionSettings(),
        reranker: Reranker | None = None,
    ) -> None:
        self.corpus = corpus
        self.index_dir = index_dir
        self.settings = settings
        self.fusion = fusion
        self.reranker = reranker
        self._index = index
        self._refresh_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._question_vectors: OrderedDict[str, np.ndarray] = OrderedDict()

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
    ) -> Retriever:
        """Open (building or updating as needed) the index of ``corpus`` stored in ``index_dir``.

        ``corpus`` is a folder of ``.txt``/``.md`` files or any ``Corpus``. What the call did
        to the index is in :attr:`report`.
        """
        corpus = FolderCorpus(corpus) if isinstance(corpus, (str, Path)) else corpus
        settings = settings or IndexSettings(model=model_setting())
        index_dir = Path(index_dir)
        index = open_index(
            corpus, index_dir, settings, lambda: load_embedder(settings.model), progress=progress, rebuild=rebuild
        )
        return cls(corpus, index_dir, settings, index, fusion, reranker)

    @property
    def report(self) -> IndexReport:
        """What the last open or refresh did to the index."""
        return self._index.report

    @property
    def embedder(self) -> Embedder:
        """The question encoder (loaded on first use)."""
        return load_embedder(self.settings.model)

    def refresh(self, *, progress: bool = False, rebuild: bool = False) -> IndexReport:
        """Bring the index up to date with the corpus (after files were added or changed)."""
        with self._refresh_lock:
            fresh = open_index(
                self.corpus, self.index_dir, self.settings, lambda: self.embedder, progress=progress, rebuild=rebuild
            )
            old, self._index = self._index, fresh
            if old.directory != fresh.directory:
                old.close()
        return fresh.report

    # -- reading ---------------------------------------------------------------

    def documents(self) -> list[dict[str, Any]]:
        """The indexed documents with title, week, category, trend and passage count."""
        return self._index.passages.documents()

    def document(self, source: str) -> Document | None:
        """The full stored document of a source name."""
        return self._index.passages.document(source)

    # -- searching -------------------------------------------------------------

    def encode_questions(self, questions: Sequence[str]) -> np.ndarray:
        """Question vectors, cached per question text."""
        with self._cache_lock:
            missing = [q for q in dict.fromkeys(questions) if q not in self._question_vectors]
        if missing:
            vectors = self.embedder.encode(list(missing))
            with self._cache_lock:
                for question, vector in zip(missing, vectors):
                    self._question_vectors[question] = vector
                while len(self._question_vectors) > _QUESTION_CACHE_SIZE:
                    self._question_vectors.popitem(last=False)
        with self._cache_lock:
            for question in questions:
                self._question_vectors.move_to_end(question)
            return np.vstack([self._question_vectors[q] for q in questions])

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
        if mmr is not None and not 0.0 <= mmr <= 1.0:
            raise QueryError(f"mmr must be between 0 and 1 (got {mmr})")
        index = self._index
        allowed = None
        if filters is not None and not filters.is_empty():
            allowed = set(index.passages.filtered_ids(filters))
            if not allowed:
                return []
        query_vector = self.encode_questions([question])[0]
        ranked = self._rank(index, question, query_vector, mode, max(self.fusion.candidates, 4 * k), allowed)
        if self.reranker is not None:
            ranked = self._rerank(index, question, ranked[: max(4 * k, 20)])
        records = index.passages.passages([passage_id for passage_id, _ in ranked[: 8 * k + 20]])
        ordered = [(records[i], score) for i, score in ranked if i in records]
        quotes: dict[int, tuple[SentenceSpan, float]] = {}
        if mode == "hybrid" and self.reranker is None and self.fusion.sentence_weight:
            quotes = _supporting_sentences(index, [record for record, _ in ordered], query_vector, question)
            ordered = _add_sentence_scores(ordered, quotes, self.fusion.sentence_weight)
        ordered = ranking.drop_overlapping(ordered, lambda item: (item[0].source, item[0].start, item[0].end))
        if mmr is not None and ordered:
            vectors = index.vectors.vectors([record.id for record, _ in ordered])
            ordered = [ordered[i] for i in ranking.maximal_marginal_relevance(query_vector, vectors, k, mmr)]
        top = ordered[:k]
        unquoted = [record for record, _ in top if record.id not in quotes]
        quotes.update(_supporting_sentences(index, unquoted, query_vector, question))
        return [_hit(rank, record, score, quotes[record.id][0]) for rank, (record, score) in enumerate(top, start=1)]

    def _rank(
        self,
        index: OpenIndex,
        question: str,
        query_vector: np.ndarray,
        mode: str,
        candidates: int,
        allowed: set[int] | None,
    ) -> list[tuple[int, float]]:
        dense: dict[int, float] = {}
        lexical: dict[int, float] = {}
        if mode in ("dense", "hybrid"):
            scores, ids = index.vectors.search(query_vector[None, :], candidates, allowed)
            dense = {int(i): float(s) for s, i in zip(scores[0], ids[0]) if i >= 0}
        if mode in ("bm25", "hybrid"):
            scores, ids = index.lexical.search(question, candidates, allowed)
            lexical = {int(i): float(s) for s, i in zip(scores, ids)}
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
        index = self._index
        depth = max(self.fusion.source_candidates, n)
        dense: dict[str, float] = {}
        lexical: dict[str, float] = {}
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

def _best_per_source(index: OpenIndex, ids: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """The best score of each source among scored passage ids (id -1 marks an empty place)."""
    best: dict[str, float] = {}
    for passage_id, score in zip(ids.tolist(), scores.tolist()):
        source = index.source_of(passage_id)
        if source is not None and score > best.get(source, -np.inf):
            best[source] = score
    return best


def _hit(rank: int, record: PassageRecord, score: float, sentence: SentenceSpan) -> Hit:
    """A stored passage as a ranked hit with its supporting sentence."""
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
    )


def _add_sentence_scores(
    ordered: list[tuple[PassageRecord, float]], quotes: dict[int, tuple[SentenceSpan, float]], weight: float
) -> list[tuple[PassageRecord, float]]:
    """Passages re-scored with ``weight`` times their supporting sentence's score, best first."""
    rescored = [(record, score + weight * quotes[record.id][1]) for record, score in ordered]
    return sorted(rescored, key=lambda item: -item[1])


def _supporting_sentences(
    index: OpenIndex, records: Sequence[PassageRecord], query_vector: np.ndarray, question: str
) -> dict[int, tuple[SentenceSpan, float]]:
    """For each passage id, the passage sentence that best answers the question, and its score.

    A sentence scores the cosine of its stored vector with the question (0 without one)
    plus ``SENTENCE_TERM_WEIGHT`` times the share of the question's stemmed terms it holds.
    A passage without stored sentences offers its first sentence, scored 0.
    """
    sentences = {record.id: index.passages.sentence_vectors(record.source, record.start, record.end) for record in records}
    texts = [_slice(record, start, end) for record in records for start, end, _ in sentences[record.id]]
    overlaps = iter(term_overlap(question, texts))
    best: dict[int, tuple[SentenceSpan, float]] = {}
    for record in records:
        scored = [
            (start, end, (float(vector @ query_vector) if vector is not None else 0.0) + SENTENCE_TERM_WEIGHT * next(overlaps))
            for start, end, vector in sentences[record.id]
        ]
        if not scored:
            start, end = record.sentences[0] if record.sentences else (record.start, record.end)
            scored = [(start, end, 0.0)]
        start, end, score = max(scored, key=lambda item: item[2])
        best[record.id] = (SentenceSpan(_slice(record, start, end), start, end), score)
    return best


def _slice(record: PassageRecord, start: int, end: int) -> str:
    """The text of the file span ``[start, end)`` inside a passage."""
    return record.text[start - record.start : end - record.start]
