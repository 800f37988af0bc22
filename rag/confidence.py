"""How likely a hit is to answer its question: a small logistic model over five signals.

The signals of a hit (:class:`Evidence`):

* its supporting sentence's cosine with the question (MiniLM);
* the IDF-weighted share of the question's content terms that the index knows at all (question
  words left out; a capital counts for its country, "Ugandan" for "Uganda": ``rag.sentences``);
* whether the question names something no passage holds (a capitalised name, a year, a number:
  "India", "2022", "MZKT");
* whether the question asks for a kind of answer (a number, a time, a name) that the sentence does
  not hold (``rag.answer_types``);
* the weight of the question's heaviest term that none of the passages found holds.

A question about a country or a year the briefs never mention has terms no brief holds; one on the
briefs' topic that asks a fact they do not state ("How many Stiletto systems…" where the brief gives
no number; "What is the budget of…") is caught, when it is, by the last two. The weights in
``config.CONFIDENCE_WEIGHTS`` and the threshold ``config.ANSWER_THRESHOLD`` were fitted with
:func:`fit` and :func:`choose_threshold` on written training question sets
(``rag eval ... --fit-confidence``); an answer whose best hit scores below the threshold is reported
as not found in these briefs.

>>> round(confidence(Evidence(0.0, 0.0, 0.0, 0.0, 0.0), (0.0, 1.0, 1.0, 1.0, 1.0, 1.0)), 2)
0.5
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The signals, in the order of the weights after the bias.
FEATURES = ("sentence_cosine", "known_terms", "unknown_name", "answer_missing", "heaviest_missing")


@dataclass(frozen=True)
class Evidence:
    """The signals of one hit."""

    #: Cosine of the supporting sentence's stored vector with the question's.
    sentence_cosine: float
    #: IDF-weighted share of the question's content terms that some passage of the index holds (0 to 1;
    #: ``rag.sentences.QuestionProfile.known``).
    known_terms: float
    #: 1.0 when the question names something no passage holds (``rag.sentences.QuestionProfile``), else 0.0.
    unknown_name: float
    #: 1.0 when the question asks for a number, a time or a name that the sentence does not hold
    #: beyond what the question names (``rag.answer_types``), else 0.0.
    answer_missing: float
    #: The share of the question's term weight carried by its heaviest term that no passage found holds (0 to 1).
    heaviest_missing: float

    def values(self) -> tuple[float, float, float, float, float]:
        """The signals in the order of ``FEATURES`` (``dataclasses.astuple`` copies deeply: slow per hit)."""
        return self.sentence_cosine, self.known_terms, self.unknown_name, self.answer_missing, self.heaviest_missing


def confidence(evidence: Evidence, weights: Sequence[float]) -> float:
    """``sigmoid(bias + w · signals)`` with ``weights = (bias, *w)``: between 0 and 1."""
    total = weights[0] + sum(w * x for w, x in zip(weights[1:], evidence.values()))
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, total))))


def fit(rows: Sequence[Evidence], labels: Sequence[int], *, steps: int = 20_000, rate: float = 0.5,
        l2: float = 1e-3) -> tuple[float, ...]:
    """Logistic-regression weights (bias first) for ``rows`` labelled 1 (answers) or 0 (not answered).

    Plain gradient descent with a small L2 penalty on the weights (not the bias), classes
    weighted equally so a larger answerable set does not push the threshold.

    >>> w = fit([Evidence(0.9, 1, 0, 0, 0), Evidence(0.1, 0, 1, 1, 1)], [1, 0])
    >>> confidence(Evidence(0.9, 1, 0, 0, 0), w) > 0.9 > 0.1 > confidence(Evidence(0.1, 0, 1, 1, 1), w)
    True
    """
    import numpy as np

    x = np.hstack([np.ones((len(rows), 1)), np.asarray([row.values() for row in rows], dtype=float)])
    y = np.asarray(labels, dtype=float)
    balance = np.where(y == 1, 0.5 / max(y.sum(), 1), 0.5 / max((1 - y).sum(), 1))
    weights = np.zeros(x.shape[1])
    for _ in range(steps):
        predicted = 1.0 / (1.0 + np.exp(-(x @ weights)))
        gradient = x.T @ (balance * (predicted - y)) + l2 * np.r_[0.0, weights[1:]]
        weights -= rate * gradient
    return tuple(round(float(w), 4) for w in weights)


def choose_threshold(answerable: Sequence[float], unanswerable: Sequence[float], *,
                     max_false_alarms: float = 0.05) -> float:
    """The threshold (two decimals) that flags the most ``unanswerable`` answers while flagging at most
    ``max_false_alarms`` of the ``answerable`` ones; each value is an answer's best hit confidence.
    Among equally good thresholds, the lowest.

    >>> choose_threshold([0.9, 0.8, 0.7, 0.3], [0.2, 0.4, 0.6], max_false_alarms=0.25)
    0.61
    """
    best, best_flagged = 0.0, -1
    for step in range(1, 100):
        threshold = step / 100
        false_alarms = sum(value < threshold for value in answerable)
        flagged = sum(value < threshold for value in unanswerable)
        if false_alarms <= max_false_alarms * len(answerable) and flagged > best_flagged:
            best, best_flagged = threshold, flagged
    return best
