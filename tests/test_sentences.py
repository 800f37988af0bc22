"""The supporting-sentence signals of ``rag.sentences`` (more, through the retriever, in test_retrieval.py)."""

from __future__ import annotations

import pytest

from rag.sentences import CONTINUATION_RE, coverage, question_profile, sentence_terms


@pytest.mark.parametrize(
    ("sentence", "leans"),
    [
        ("Such interest was stated at the highest level.", True),
        ("That project has made no progress.", True),
        ("Two years later, no progress has been made.", True),
        # "That said" concedes a point; it does not refer back to the sentence before.
        ("That said, in May 2015, a joint project was announced.", False),
        ("That said Turkish companies may buy radars.", False),
        ("Belarus hosted the meeting.", False),
    ],
)
def test_continuations_are_sentences_that_lean_on_the_one_before(sentence: str, leans: bool) -> None:
    assert bool(CONTINUATION_RE.match(sentence)) is leans


def test_minsk_stands_for_belarus_as_a_capital_for_its_country() -> None:
    profile = question_profile("What did Minsk hope to gain?", lambda term: 1.0, 10)
    assert coverage(profile, sentence_terms("Belarus hoped to gain experience.")) == 1.0
    assert coverage(profile, sentence_terms("Belarusian plants hope to gain.")) == 1.0


def test_a_sentence_restating_its_brief_loses_to_one_stating_a_fact() -> None:
    """Centrality among the candidates of a brief is taken off: the theme sentence, close to the rest
    of its brief, no longer outscores the sentence with the particular fact."""
    import numpy as np

    from rag.sentences import score_sentences

    def unit(*values: float) -> np.ndarray:
        return np.array(values, dtype=np.float32) / np.linalg.norm(values)

    theme, fact = unit(1.0, 1.0, 1.0, 0.2), unit(1.0, 0.1, 0.0, 1.0)
    texts = ["Belarus widens its cooperation.", "Belarus bought radars.", "Belarus and partners.", "Partners of Belarus."]
    vectors = [theme, fact, unit(0.2, 1.0, 1.0, 0.0), unit(0.3, 1.0, 0.9, 0.1)]
    profile = question_profile("What did Belarus buy?", lambda term: 1.0, 10)

    def best(weight: float) -> int:
        signals = score_sentences(profile, unit(1.0, 0.7, 0.6, 0.4), texts, vectors, [-1, 0, 1, 2], ["a"] * 4,
                                  term_weight=0.0, continuation_penalty=0.3, continuation_gain=2.0,
                                  centrality_weight=weight, centrality_neighbours=5)
        return int(np.argmax(signals.score))

    assert (best(0.0), best(0.75)) == (0, 1)
