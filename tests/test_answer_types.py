"""Answer kinds: what a question asks for, and whether a sentence holds it beyond what the question names."""

from __future__ import annotations

import pytest

from rag.answer_types import expected_answer, holds_answer


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("How many Stiletto systems has Azerbaijan acquired?", "quantity"),
        ("How much did Azerbaijan pay for the battery?", "quantity"),
        ("What was the total value of Belarusian military exports in 2017?", "quantity"),
        ("What is the maximum range of the Polonaise?", "quantity"),
        ("When were the launchers handed over?", "time"),
        ("On what date did Lukashenka visit Turkey?", "time"),
        ("How long before the delivery were the sales announced?", "time"),
        ("Who headed the delegation?", "name"),
        ("Where did the committee meet?", "name"),
        ("Which city in Kazakhstan hosted the meeting?", "name"),
        ("Which Turkish companies did Golovchenko talk to?", "name"),
        ("What did Belarus seek from China?", None),
        ("Why is Turkey important to Minsk?", None),
        ("Belarus Azerbaijan MLRS deliveries", None),
    ],
)
def test_the_kind_of_answer_a_question_asks_for(question: str, kind: str | None) -> None:
    assert expected_answer(question) == kind


@pytest.mark.parametrize(
    ("kind", "text", "question", "held"),
    [
        ("quantity", "Azerbaijan received at least one battery.", "How many launchers did Azerbaijan receive?", True),
        ("quantity", "Exports grew by 15%.", "How much did exports grow?", True),
        ("quantity", "The target is USD 1 billion.", "What is the value of the target?", True),
        ("quantity", "Azerbaijan acquired Stiletto systems.", "How many Stiletto systems has Azerbaijan acquired?", False),
        # a number the question names itself is no answer
        ("quantity", "In 2017 exports grew.", "How much did exports grow in 2017?", False),
        ("time", "The supply took place sometime in mid-May.", "When did the supply take place?", True),
        ("time", "It was announced over a year ago.", "How long ago was it announced?", True),
        ("time", "On September 11th-13th, Minsk hosted the meeting.", "When did Minsk host the meeting?", True),
        ("time", "Belarus joined the organisation.", "When did Belarus join the organisation?", False),
        ("name", "Head of the committee Roman Golovchenko held talks.", "Who held talks?", True),
        ("name", "Kazakhstan hosted the meeting.", "Which city in Kazakhstan hosted the meeting?", False),
        # the first word is capitalised anyway, and a month is no name
        ("name", "Talks were held in May.", "Who held talks?", False),
        (None, "Anything at all.", "What did Belarus seek?", True),
    ],
)
def test_a_sentence_holds_an_answer_only_beyond_what_the_question_names(
    kind: str | None, text: str, question: str, held: bool
) -> None:
    assert holds_answer(kind, text, question) is held
