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
