"""What kind of answer a question asks for, and whether a sentence holds one it does not already name.

A classic question-answering check (answer-type matching): "How many…" wants a number, "When…"
a time, "Who…" a name, "Which city…" a place. A retrieved sentence on the question's topic that
holds no such thing beyond what the question itself names ("Kazakhstan hosted the VIII meeting"
for "Which city in Kazakhstan hosted the VIII meeting?") is evidence that the briefs do not state
the answer. It is one signal of the hit confidence (``rag.confidence``); questions of other
kinds ("what did…", "why…") expect nothing in particular.

>>> expected_answer("How many Stiletto systems has Azerbaijan acquired?")
'quantity'
>>> holds_answer("quantity", "Azerbaijan acquired Stiletto systems.", "How many Stiletto systems has Azerbaijan acquired?")
False
>>> holds_answer("time", "The supply took place in mid-May.", "When did the supply take place?")
True
>>> expected_answer("What did Belarus seek from China?") is None
True
"""

from __future__ import annotations

import re

#: Question patterns of each answer kind, tried in this order (the first that matches decides).
_KINDS = (
    ("quantity", re.compile(
        r"\bhow (?:many|much)\b|\bhow (?:large|big|far|old)\b|\bwhat (?:is|was|were|are) the (?:\w+ )?"
        r"(?:number|amount|value|cost|price|budget|population|size|range|share|percentage|volume|sum)\b",
        re.IGNORECASE)),
    ("time", re.compile(
        r"^\W*when\b|\bhow long\b|\b(?:what|which) (?:date|day|year|month|week)\b|\bon what date\b|\bin what year\b",
        re.IGNORECASE)),
    ("name", re.compile(
        r"^\W*(?:who|where)\b|\bwhom\b|\bwhose\b|\b(?:which|what) (?:\w+ )?(?:official|officials|minister|ministers|president|"
        r"person|people|leader|leaders|city|cities|town|country|countries|region|place|venue|capital|company|"
        r"companies|firm|firms|enterprise|enterprises|corporation|corporations|plant|factory|manufacturer|"
        r"organi[sz]ations?)\b",
        re.IGNORECASE)),
)
_MONTHS = frozenset(
    "january february march april may june july august september october november december".split()
)
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve dozen dozens hundred hundreds thousand "
    "thousands million millions billion billions percent half".split()
)
#: Words that place a statement in time: months, time units, relative times, seasons.
_TIME_WORDS = _MONTHS | frozenset(
    "year years month months week weeks day days decade decades ago later earlier recently since today "
    "yesterday tomorrow spring summer autumn winter".split()
)
_WORD_RE = re.compile(r"[\w’'-]+")
_YEAR_RE = re.compile(r"(?:19|20)\d\d")
_DAY_RE = re.compile(r"\d{1,2}(?:st|nd|rd|th)\b.*")


def expected_answer(question: str) -> str | None:
    """The kind of answer ``question`` asks for: ``quantity``, ``time``, ``name`` or ``None`` (no particular kind)."""
    return next((kind for kind, pattern in _KINDS if pattern.search(question)), None)


def holds_answer(kind: str | None, text: str, question: str) -> bool:
    """Whether ``text`` holds an answer of ``kind`` that ``question`` does not name itself.

    A quantity is a number (in digits or words) or a percentage; a time is a month, a year, a day
    ("16th"), a time unit or a relative time ("later", "recently"); a name is a capitalised word
    other than the first of ``text`` and other than a month. ``kind`` ``None`` is always held.
    """
    if kind is None:
        return True
    asked = {word.lower() for word in _WORD_RE.findall(question)}
    words = _WORD_RE.findall(text)
    new = [(position, word) for position, word in enumerate(words) if word.lower() not in asked]
    if kind == "quantity":
        return "%" in text or any(any(ch.isdigit() for ch in word) or word.lower() in _NUMBER_WORDS for _, word in new)
    if kind == "time":
        return any(_YEAR_RE.fullmatch(word) or _DAY_RE.fullmatch(word) or word.lower().removeprefix("mid-") in _TIME_WORDS
                   for _, word in new)
    return any(position > 0 and word[:1].isupper() and word.lower() not in _MONTHS for position, word in new)
