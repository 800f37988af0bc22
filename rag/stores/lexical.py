"""BM25 over segments: term counts per immutable segment, scored with corpus-wide statistics at query time.

bm25s bakes each term's IDF and the average length into the scores it stores, so an index
built from several segments (or with deleted rows) would score with the wrong statistics.
Each segment here keeps only raw term counts (a sparse documents x terms matrix) and
document lengths; :class:`Bm25` scores a question over the live rows of all segments with
bm25s' tokenizer and its default Lucene BM25 formula (``k1=1.5``, ``b=0.75``), using the
document count, frequencies and average length of the live rows. Scores equal bm25s'
over the same live texts (``tests/stores/test_lexical.py`` checks it against bm25s).
"""

from __future__ import annotations

import array
import functools
import json
import re
import threading
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

K1 = 1.5
B = 0.75
_TERMS_FILE = "terms.json"
#: The arrays of a segment, each its own ``.npy`` file (memory-mapped when opened).
_ARRAYS = ("ids", "lengths", "indptr", "rows", "counts")
#: bm25s's default token pattern (scikit-learn's CountVectorizer).
_TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")
_STEMMERS = threading.local()  # PyStemmer objects are not thread-safe: one per thread


@functools.cache
def _stop_words() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def terms(text: str) -> list[str]:
    """The stemmed terms of ``text``, stop words dropped: what ``bm25s.tokenize`` gives it, faster.

    >>> terms("Belarus is seeking Chinese missiles")
    ['belarus', 'seek', 'chines', 'missil']
    """
    return stems(content_words(text))


def content_words(text: str) -> list[str]:
    """The lowercased words of ``text`` that BM25 indexes (two or more word characters, no stop words)."""
    stop = _stop_words()
    return [word for word in _TOKEN_RE.findall(text.lower()) if word not in stop]


def stems(words: list[str]) -> list[str]:
    """The English (Snowball) stem of each word."""
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


class LexicalSegment:
    """Term counts of one segment's texts: a compressed-column documents x terms matrix.

    ``ids[row]`` is the int64 id of the text in ``row``; ``lengths[row]`` its number of terms;
    the rows holding term ``t`` are ``rows[indptr[t]:indptr[t + 1]]`` with their counts in
    ``counts`` at the same places. Immutable once built; saved as one ``.npy`` per array.
    """

    def __init__(self, terms: Sequence[str], arrays: dict[str, np.ndarray]) -> None:
        self.terms = list(terms)
        self.ids, self.lengths, self.indptr, self.rows, self.counts = (arrays[name] for name in _ARRAYS)
        self._vocabulary: dict[str, int] | None = None

    @classmethod
    def build(cls, ids: Sequence[int], texts: Sequence[str]) -> LexicalSegment:
        """Count the terms of ``texts`` (one per id)."""
        vocabulary: dict[str, int] = {}
        columns = array.array("i")  # 4 bytes a term, not a Python int each: a million passages fit
        lengths = np.zeros(len(texts), dtype=np.float32)
        for row, text in enumerate(texts):
            found = terms(text)
            lengths[row] = len(found)
            columns.extend([vocabulary.setdefault(term, len(vocabulary)) for term in found])
        row_of = np.repeat(np.arange(len(texts), dtype=np.int32), lengths.astype(np.int64))
        return cls._from_pairs(
            list(vocabulary), np.asarray(ids, dtype=np.int64), lengths, np.frombuffer(columns, dtype=np.int32), row_of
        )

    @classmethod
    def _from_pairs(
        cls, terms_: list[str], ids: np.ndarray, lengths: np.ndarray, columns: np.ndarray, rows: np.ndarray,
        counts: np.ndarray | None = None,
    ) -> LexicalSegment:
        """The segment whose (row, term) pairs are given, each counted ``counts`` times (once by default)."""
        import scipy.sparse

        weights = np.ones(len(rows), dtype=np.float32) if counts is None else counts
        matrix = scipy.sparse.csc_matrix(
            (weights, (rows, columns)), shape=(len(ids), len(terms_)), dtype=np.float32
        )
        matrix.sum_duplicates()
        arrays = {
            "ids": ids, "lengths": lengths, "indptr": matrix.indptr.astype(np.int64),
            "rows": matrix.indices.astype(np.int32), "counts": matrix.data.astype(np.float32),
        }
        return cls(terms_, arrays)

    @classmethod
    def merge(cls, parts: Sequence[tuple[LexicalSegment, np.ndarray]]) -> LexicalSegment:
        """One segment holding the rows of each part that its boolean mask keeps, in order."""
        vocabulary: dict[str, int] = {}
        ids, lengths, columns, rows, counts = [], [], [], [], []
        offset = 0
        for segment, keep in parts:
            new_row = np.full(len(segment.ids), -1, dtype=np.int64)
            new_row[keep] = offset + np.arange(int(keep.sum()))
            remap = np.asarray([vocabulary.setdefault(term, len(vocabulary)) for term in segment.terms], dtype=np.int64)
            term_of = segment.term_of_postings()
            kept = keep[segment.rows]
            columns.append(remap[term_of[kept]])
            rows.append(new_row[segment.rows[kept]])
            counts.append(np.asarray(segment.counts)[kept])
            ids.append(np.asarray(segment.ids)[keep])
            lengths.append(np.asarray(segment.lengths)[keep])
            offset += int(keep.sum())
        joined = [np.concatenate(values) if values else np.zeros(0) for values in (ids, lengths, columns, rows, counts)]
        return cls._from_pairs(
            list(vocabulary), joined[0].astype(np.int64), joined[1].astype(np.float32),
            joined[2].astype(np.int64), joined[3].astype(np.int64), joined[4].astype(np.float32),
        )

    def term_of_postings(self) -> np.ndarray:
        """The term (column) of each entry of ``rows``/``counts``."""
        return np.repeat(np.arange(len(self.terms)), np.diff(self.indptr))

    def sorted_by_id(self) -> LexicalSegment:
        """This segment with its rows in ascending id order (itself when they already are)."""
        ids = np.asarray(self.ids)
        if len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])):
            return self
        order = np.argsort(ids, kind="stable")
        position = np.empty_like(order)
        position[order] = np.arange(len(order))
        return self._from_pairs(
            self.terms, ids[order], np.asarray(self.lengths)[order], self.term_of_postings(), position[np.asarray(self.rows)],
            np.asarray(self.counts),
        )

    @classmethod
    def load(cls, folder: Path) -> LexicalSegment:
        """Open a segment written by :meth:`save`; its arrays are memory-mapped, not read."""
        with (folder / _TERMS_FILE).open(encoding="utf-8") as handle:
            terms_ = json.load(handle)
        if not isinstance(terms_, list):
            raise ValueError(f"{folder / _TERMS_FILE} is not a list of terms")
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in _ARRAYS}
        segment = cls(terms_, arrays)
        if len(segment.indptr) != len(terms_) + 1 or len(segment.lengths) != len(segment.ids) or (
            len(segment.rows) != len(segment.counts) or (len(segment.indptr) and segment.indptr[-1] != len(segment.rows))
        ):
            raise ValueError(f"the lexical arrays in {folder} disagree in size")
        return segment

    def save(self, folder: Path) -> None:
        """Write the segment into ``folder`` (created if needed)."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / _TERMS_FILE).write_text(json.dumps(self.terms, ensure_ascii=False), encoding="utf-8")
        for name in _ARRAYS:
            np.save(folder / f"{name}.npy", np.asarray(getattr(self, name)))

    def __len__(self) -> int:
        return len(self.ids)

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, counts) of the texts holding ``term``."""
        if self._vocabulary is None:
            self._vocabulary = {term: column for column, term in enumerate(self.terms)}
        column = self._vocabulary.get(term)
        if column is None:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        start, end = int(self.indptr[column]), int(self.indptr[column + 1])
        return np.asarray(self.rows[start:end]), np.asarray(self.counts[start:end])


#: Terms whose live document frequency a :class:`Bm25` remembers before it starts afresh.
_FREQUENCY_CACHE = 100_000


class Bm25:
    """BM25 search over the live rows of several segments, with their joint statistics.

    ``parts`` pairs each segment with a boolean mask of its live rows (rows of deleted or
    replaced texts are dead: they neither match nor count in the statistics).
    """

    def __init__(self, parts: Sequence[tuple[LexicalSegment, np.ndarray]]) -> None:
        self._parts = [(segment, np.asarray(live, dtype=bool)) for segment, live in parts]
        self._documents = sum(int(live.sum()) for _, live in self._parts)
        total = sum(float(np.asarray(segment.lengths)[live].sum(dtype=np.float64)) for segment, live in self._parts)
        self._average_length = total / self._documents if self._documents else 1.0
        self._frequencies: dict[str, int] = {}  # live document frequency by term (the parts never change)
        self._all_live = [bool(live.all()) for _, live in self._parts]
        self._norms: list[np.ndarray | None] = [None] * len(self._parts)

    def __len__(self) -> int:
        return self._documents

    def _live_postings(self, term: str) -> list[tuple[np.ndarray, np.ndarray]]:
        found = []
        for (segment, live), all_live in zip(self._parts, self._all_live):
            rows, counts = segment.postings(term)
            if not all_live:
                keep = live[rows]
                rows, counts = rows[keep], counts[keep]
            found.append((rows, counts))
        return found

    def _term_scores(self, part: int, weight: np.float32, rows: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """What a term of ``weight`` adds to the BM25 score of each of a part's ``rows`` holding it ``counts`` times."""
        return weight * (counts / (self._norm(part)[rows] + counts))

    def _norm(self, part: int) -> np.ndarray:
        """BM25's length normalisation ``k1 * (1 - b + b * length / average)`` of every row of a part
        (computed on first use: the parts and their statistics never change)."""
        norm = self._norms[part]
        if norm is None:
            lengths = np.asarray(self._parts[part][0].lengths, dtype=np.float32)
            norm = np.float32(K1) * (np.float32(1 - B) + np.float32(B) * lengths / np.float32(self._average_length))
            self._norms[part] = norm
        return norm

    def _frequency(self, term: str) -> int:
        """How many live texts hold ``term`` (remembered: sentence scoring asks for the same terms again)."""
        frequency = self._frequencies.get(term)
        if frequency is None:
            if len(self._frequencies) >= _FREQUENCY_CACHE:
                self._frequencies.clear()
            frequency = self._frequencies[term] = sum(len(rows) for rows, _ in self._live_postings(term))
        return frequency

    def idf(self, term: str) -> float:
        """BM25's inverse document frequency of a stemmed term over the live texts (0 when absent)."""
        frequency = self._frequency(term)
        return self._idf(frequency) if frequency else 0.0

    def _idf(self, frequency: int) -> float:
        """Lucene's BM25 IDF of a term held by ``frequency`` of the live texts (bm25s' default)."""
        return float(np.log(1 + (self._documents - frequency + 0.5) / (frequency + 0.5)))

    def search(self, query: str, k: int, allowed: Collection[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) with a positive BM25 score, best first.

        ``allowed`` restricts which ids are returned, not the statistics (as bm25s' weight mask).
        Terms are scored rarest (highest weight) first. Without ``allowed``, once the ``k``-th best
        score so far is at least the total weight of the terms left, no text those terms alone
        hold can reach the top ``k`` (a term adds less than its weight: MaxScore). From then on
        only the texts found so far that can still reach the ``k``-th best score are scored, each
        looked up in the remaining terms' sorted postings. The result is the exhaustive one.
        """
        empty = (np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64))
        query_terms = terms(query)
        if not query_terms or not self._documents or k < 1 or (allowed is not None and not allowed):
            return empty
        weighted = self._weighted_terms(query_terms)
        totals = [np.zeros(len(segment), dtype=np.float32) for segment, _ in self._parts]
        found: list[list[np.ndarray]] = [[] for _ in self._parts]  # a text is found when its total leaves 0
        left, done, widened = sum(float(weight) for weight, _ in weighted), 0.0, 0
        for weight, postings in weighted:
            # checked only once the terms scanned could outweigh those left
            if allowed is None and done >= left and self._out_of_reach(totals, found, k, left):
                break
            for part, (rows, counts) in enumerate(postings):
                before = totals[part][rows]
                found[part].append(rows[before == 0])
                totals[part][rows] = before + self._term_scores(part, weight, rows, counts)
            left -= float(weight)
            done += float(weight)
            widened += 1
        candidates = [np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64) for pieces in found]
        for weight, postings in weighted[widened:]:
            candidates = _contenders(totals, candidates, k, left)
            for part, (rows, counts) in enumerate(postings):
                if len(rows) and len(candidates[part]):
                    at = np.minimum(np.searchsorted(rows, candidates[part]), len(rows) - 1)
                    held = rows[at] == candidates[part]
                    hits, hit_counts = candidates[part][held], counts[at[held]]
                    totals[part][hits] += self._term_scores(part, weight, hits, hit_counts)
            left -= float(weight)
        scores, ids = [], []
        for (segment, _), total, rows in zip(self._parts, totals, candidates):
            ids_found = np.asarray(segment.ids)[rows]
            if allowed is not None:
                keep = np.isin(ids_found, np.fromiter(allowed, dtype=np.int64))
                rows, ids_found = rows[keep], ids_found[keep]
            scores.append(total[rows])
            ids.append(ids_found)
        all_scores, all_ids = np.concatenate(scores), np.concatenate(ids)
        if len(all_scores) > k:
            top = np.argpartition(-all_scores, k - 1)[:k]
            all_scores, all_ids = all_scores[top], all_ids[top]
        order = np.argsort(-all_scores, kind="stable")
        return all_scores[order].astype(np.float32), all_ids[order]

    def _weighted_terms(self, query_terms: list[str]) -> list[tuple[np.float32, list[tuple[np.ndarray, np.ndarray]]]]:
        """The query's distinct terms that some live text holds, as (weight, live postings per part), the
        highest weight first. A term's weight, its IDF times its count in the query (bm25s adds a
        repeated query term's scores again), is more than it can add to any text's score."""
        weighted = []
        for term in dict.fromkeys(query_terms):
            postings = self._live_postings(term)
            frequency = sum(len(rows) for rows, _ in postings)
            if frequency:
                weighted.append((np.float32(query_terms.count(term)) * np.float32(self._idf(frequency)), postings))
        return sorted(weighted, key=lambda item: -item[0])

    @staticmethod
    def _out_of_reach(totals: list[np.ndarray], found: list[list[np.ndarray]], k: int, left: float) -> bool:
        """Whether ``k`` texts found so far score at least ``left`` (with a margin for float32 rounding),
        so that no text the remaining terms alone hold can enter the top ``k``."""
        scores = np.concatenate([total[np.concatenate(pieces)] for total, pieces in zip(totals, found) if pieces])
        if len(scores) < k:
            return False
        return float(np.partition(scores, len(scores) - k)[len(scores) - k]) >= left * _MARGIN


#: How far the k-th best score must clear the weight of the terms left before they stop widening the search.
_MARGIN = 1.0001


def _contenders(totals: list[np.ndarray], candidates: list[np.ndarray], k: int, left: float) -> list[np.ndarray]:
    """The ``candidates`` (rows per part) whose score so far plus ``left`` (with the rounding margin) still
    reaches the ``k``-th best score so far: the others cannot enter the top ``k``, however the terms left add up."""
    scores = [total[rows] for total, rows in zip(totals, candidates)]
    every = np.concatenate(scores)
    if len(every) <= k:
        return candidates
    bar = float(np.partition(every, len(every) - k)[len(every) - k])
    return [rows[(score + np.float32(left)) * np.float32(_MARGIN) >= bar] for rows, score in zip(candidates, scores)]
