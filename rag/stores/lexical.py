"""BM25 lexical search with bm25s: English stop words, Snowball stemming, persisted to a folder."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

_IDS_FILE = "ids.npy"
#: bm25s's default token pattern (scikit-learn's CountVectorizer).
_TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")
_STEMMERS = threading.local()  # PyStemmer objects are not thread-safe: one per thread


def _tokenize(texts: list[str], **options: Any) -> Any:
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False, **options)


@functools.cache
def _stop_words() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def terms(text: str) -> list[str]:
    """The stemmed terms of ``text``, stop words dropped: what ``bm25s.tokenize`` gives it, faster.

    >>> terms("Belarus is seeking Chinese missiles")
    ['belarus', 'seek', 'chines', 'missil']
    """
    words = [word for word in _TOKEN_RE.findall(text.lower()) if word not in _stop_words()]
    if not words:
        return []
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        import Stemmer

        stemmer = _STEMMERS.english = Stemmer.Stemmer("english")
    return stemmer.stemWords(words)


@functools.lru_cache(maxsize=200_000)
def _term_set(text: str) -> frozenset[str]:
    return frozenset(terms(text))


def term_overlap(query: str, texts: list[str]) -> list[float]:
    """For each text, the share of the query's distinct stemmed terms (stop words aside) it holds.

    >>> term_overlap("Lukashenka visits Turkey", ["Lukashenka visited Turkey.", "Nothing here."])
    [1.0, 0.0]
    """
    query_terms = _term_set(query)
    if not query_terms:
        return [0.0] * len(texts)
    return [len(query_terms & _term_set(text)) / len(query_terms) for text in texts]


class LexicalStore:
    """A bm25s index over passage texts, addressed by the same int64 ids as the vectors."""

    def __init__(self, model: Any, ids: np.ndarray) -> None:
        self._model = model
        self._ids = ids
        self._position = {int(passage_id): position for position, passage_id in enumerate(ids)}

    @classmethod
    def build(cls, ids: np.ndarray, texts: list[str]) -> LexicalStore:
        """Index ``texts`` (one per id)."""
        import bm25s

        model = bm25s.BM25()
        if texts:
            model.index(_tokenize(texts), show_progress=False)
        return cls(model, np.asarray(ids, dtype=np.int64))

    @classmethod
    def load(cls, folder: Path) -> LexicalStore:
        """Read a store written by :meth:`save`."""
        import bm25s

        ids = np.load(folder / _IDS_FILE)
        model = bm25s.BM25.load(str(folder), show_progress=False) if len(ids) else bm25s.BM25()
        return cls(model, ids)

    def save(self, folder: Path) -> None:
        """Write the store into ``folder`` (created if needed)."""
        folder.mkdir(parents=True, exist_ok=True)
        if len(self._ids):
            self._model.save(str(folder), show_progress=False)
        np.save(folder / _IDS_FILE, self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def known_share(self, query: str) -> float:
        """The share of the query's distinct terms that occur anywhere in the indexed texts (0 without terms)."""
        query_terms = set(terms(query))
        if not query_terms or not len(self._ids):
            return 0.0
        return sum(term in self._model.vocab_dict for term in query_terms) / len(query_terms)

    def search(self, query: str, k: int, allowed: Collection[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) with a positive BM25 score, best first."""
        empty = (np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64))
        if not len(self._ids):
            return empty
        vocabulary = self._model.vocab_dict
        tokens = [token for token in terms(query) if token in vocabulary]
        if not tokens:
            return empty
        mask = None
        if allowed is not None:
            mask = np.zeros(len(self._ids), dtype=np.float32)
            positions = [self._position[i] for i in allowed if i in self._position]
            if not positions:
                return empty
            mask[positions] = 1.0
        k = min(k, len(self._ids))
        positions, scores = self._model.retrieve([tokens], k=k, show_progress=False, weight_mask=mask)
        positions, scores = positions[0], scores[0]
        keep = scores > 0
        return scores[keep].astype(np.float32), self._ids[positions[keep]]
