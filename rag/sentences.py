"""Which sentence of the retrieved passages answers the question: the signals and their combination.

A sentence scores ``cosine + SENTENCE_TERM_WEIGHT * coverage``:

* ``cosine``: its stored (int8) MiniLM vector against the question's;
* ``coverage``: the BM25-IDF-weighted share of the question's content terms it holds. Question
  words ("what", "did", "how"...) are not content; a term matches its stem, its spelling variant
  (defence/defense, -ise/-ize) and, for places, the country it stands for (Ankara, Turkish and
  Turkey match; "8th", "eighth" and "VIII" match), so a paraphrase naming a capital still counts.

A *continuation* sentence ("Such interest was stated at the highest level.", "Two years later, no
progress has been made on that project.") means little alone: it may take over the score of the
sentence just before it, less ``CONTINUATION_PENALTY``, plus ``CONTINUATION_GAIN`` times the share of
the question it covers that its antecedent does not. So it is quoted when the question asks for what
it adds (the level, the outcome), and its antecedent is quoted when the question only restates it.

The same question profile gives the confidence signals of ``rag.confidence``: how much of the
question's weight the index knows at all, and whether it names something (a capitalised name, a
year, a number) that no passage holds.

>>> profile = question_profile("What did Ankara sign?", lambda term: 1.0)
>>> [sorted(forms) for forms in profile.forms]
[['@turkey', 'ankara'], ['sign']]
>>> coverage(profile, sentence_terms("Turkish firms signed a memorandum."))
1.0
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .stores.lexical import content_words, stems, terms

#: Words that frame a question rather than say what it is about (after stemming).
_QUESTION_WORDS = frozenset(terms(
    "what which who whom whose when where why how did does do doing done has have had having was were "
    "been being am can could would should shall may might must much many ever also about any some there "
    "here its his her him she he they them we us our you your i me my according so very just from about "
    "after before during between over under up out else only besides"
))

#: Country names, their adjectives and capitals (and one older name) that briefs use for one another.
_PLACES = {
    "Afghanistan": "Afghan Kabul", "Algeria": "Algerian Algiers", "Armenia": "Armenian Yerevan",
    "Azerbaijan": "Azerbaijani Azeri Baku", "Bangladesh": "Bangladeshi Dhaka", "Belarus": "Belarusian Belarussian Minsk",
    "Brazil": "Brazilian Brasilia", "Bulgaria": "Bulgarian Sofia", "China": "Chinese Beijing Sino PRC",
    "Cuba": "Cuban Havana", "Czechia": "Czech Prague", "Egypt": "Egyptian Cairo", "Estonia": "Estonian Tallinn",
    "Finland": "Finnish Helsinki", "France": "French Paris", "Georgia": "Georgian Tbilisi", "Germany": "German Berlin",
    "Hungary": "Hungarian Budapest", "India": "Indian Delhi", "Indonesia": "Indonesian Jakarta",
    "Iran": "Iranian Tehran", "Iraq": "Iraqi Baghdad", "Israel": "Israeli Jerusalem", "Italy": "Italian Rome",
    "Japan": "Japanese Tokyo", "Kazakhstan": "Kazakh Kazakhstani Astana Almaty", "Kyrgyzstan": "Kyrgyz Bishkek",
    "Latvia": "Latvian Riga", "Lithuania": "Lithuanian Vilnius", "Moldova": "Moldovan Chisinau",
    "Mongolia": "Mongolian Ulaanbaatar", "Myanmar": "Burmese Naypyidaw", "Nigeria": "Nigerian Abuja",
    "Pakistan": "Pakistani Islamabad", "Poland": "Polish Warsaw", "Russia": "Russian Moscow Kremlin",
    "Serbia": "Serbian Belgrade", "Sudan": "Sudanese Khartoum", "Syria": "Syrian Damascus",
    "Tajikistan": "Tajik Dushanbe", "Turkey": "Turkish Ankara Turk Turkiye", "Turkmenistan": "Turkmen Ashgabat",
    "Uganda": "Ugandan Kampala", "Ukraine": "Ukrainian Kyiv Kiev", "UAE": "Emirates Emirati Emirate Dhabi",
    "Britain": "British London UK", "USA": "American Washington US", "Uzbekistan": "Uzbek Tashkent",
    "Venezuela": "Venezuelan Caracas", "Vietnam": "Vietnamese Hanoi", "Zimbabwe": "Zimbabwean Harare",
}
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
             "eleventh", "twelfth")
_ROMAN = ("i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x", "xi", "xii")


def _aliases() -> dict[str, frozenset[str]]:
    """Extra forms of a stem: a place's country key, an ordinal's number key."""
    forms: dict[str, set[str]] = {}
    for country, names in _PLACES.items():
        key = "@" + country.lower()
        for stem in terms(f"{country} {names}"):
            forms.setdefault(stem, set()).add(key)
    for number, (word, roman) in enumerate(zip(_ORDINALS, _ROMAN), start=1):
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number if number < 4 else 0, "th")
        for stem in {*terms(word), roman, f"{number}{suffix}"}:
            forms.setdefault(stem, set()).add(f"#{number}")
    return {stem: frozenset(keys) for stem, keys in forms.items()}


_ALIASES = _aliases()
#: British spellings written as American ones before stemming, so "defence" meets "defense".
_SPELLING = (
    (re.compile(r"(?<=\w{3})is(e|es|ed|ing|ation|ations)\b", re.IGNORECASE), r"iz\1"),
    (re.compile(r"(?<=\w{2})our(s|ed|ing)?\b", re.IGNORECASE), r"or\1"),
    (re.compile(r"\b(def|off|lic)ence", re.IGNORECASE), r"\1ense"),
    (re.compile(r"(?<=\w{4})mme\b", re.IGNORECASE), "m"),
    (re.compile(r"(?<=\w{3})tre(s)?\b", re.IGNORECASE), r"ter\1"),
)


#: What every pattern of ``_SPELLING`` needs: most words hold none of it and skip them all.
_SPELLING_HINT = re.compile("is|our|ence|mme|tre", re.IGNORECASE)


def _american(text: str) -> str:
    if not _SPELLING_HINT.search(text):
        return text
    for pattern, replacement in _SPELLING:
        text = pattern.sub(replacement, text)
    return text


@functools.lru_cache(maxsize=200_000)
def _word_stems(word: str) -> tuple[str, str]:
    """A content word's stem and the stem of its American spelling (a vocabulary is small: cached)."""
    stem, variant = stems([word, _american(word)])
    return stem, variant


def _stem_pairs(text: str) -> list[tuple[str, str]]:
    """Each content word's stem beside the stem of its American spelling.

    >>> _stem_pairs("The defence programme")
    [('defenc', 'defens'), ('programm', 'program')]
    """
    return [_word_stems(word) for word in content_words(text)]


@functools.lru_cache(maxsize=200_000)
def _word_forms(word: str) -> frozenset[str]:
    return _forms(*_word_stems(word))


def _forms(stem: str, variant: str) -> frozenset[str]:
    return frozenset({stem, variant}) | _ALIASES.get(stem, frozenset()) | _ALIASES.get(variant, frozenset())


@functools.lru_cache(maxsize=200_000)
def sentence_terms(text: str) -> frozenset[str]:
    """Every form of every stemmed term of ``text`` (stem, American-spelling stem, place and ordinal keys)."""
    return frozenset().union(*map(_word_forms, content_words(text)))


@dataclass(frozen=True)
class QuestionProfile:
    """A question's content terms: the forms each matches and its weight (BM25 IDF)."""

    forms: tuple[frozenset[str], ...]
    weights: tuple[float, ...]
    #: The IDF-weighted share of the question's content the index knows (0 without content).
    known: float
    #: The names of the question (capitalised words, numbers) that no passage holds, as their stems.
    unknown_names: tuple[tuple[str, ...], ...] = ()

    @property
    def total(self) -> float:
        return sum(self.weights)

    def heaviest_missing(self, held: frozenset[str]) -> float:
        """The share of the question's weight carried by its heaviest term that none of the forms ``held`` matches.

        >>> profile = QuestionProfile((frozenset({"budget"}), frozenset({"belarus"})), (3.0, 1.0), 1.0)
        >>> profile.heaviest_missing(sentence_terms("Belarus raised the budget.")), profile.heaviest_missing(frozenset({"belarus"}))
        (0.0, 0.75)
        """
        total = self.total
        missing = (weight for forms, weight in zip(self.forms, self.weights) if forms.isdisjoint(held))
        return max(missing, default=0.0) / total if total else 0.0

    def names_unknown(self, nearby: Iterable[str] = ()) -> bool:
        """Whether the question names something no passage holds, not even spelled a little
        differently in the ``nearby`` terms (those of the passages found: "Lukashenko" for "Lukashenka")."""
        vocabulary = frozenset(nearby) if self.unknown_names else frozenset()
        return any(not any(_spelling_variant(stem, vocabulary) for stem in name) for name in self.unknown_names)


_NAME_RE = re.compile(r"(?<![\w-])(?:[A-Z][\w'’-]*|[\w-]*\d[\w-]*)")


def question_profile(question: str, idf: Callable[[str], float], documents: int = 0) -> QuestionProfile:
    """The content terms of ``question`` with their IDF (``idf`` of a stemmed term, 0 when unknown).

    A term the index does not know weighs what a term of one passage in ``documents`` would
    (it is rare, so it matters); ``known`` is the share of the weight of known terms.
    """
    idf = functools.lru_cache(maxsize=None)(idf)  # forms and names ask for the same terms again
    unknown_weight = math.log(1 + (max(documents, 1) - 0.5) / 1.5)
    forms, weights, known = [], [], 0.0
    seen: set[str] = set()
    for stem, variant in _stem_pairs(question):
        if stem in _QUESTION_WORDS or stem in seen:
            continue
        seen.add(stem)
        every = _forms(stem, variant)
        weight = max((idf(form) for form in every if not form[0] in "@#"), default=0.0)
        if weight <= 0.0:
            alias_known = any(idf(other) > 0 for key in every if key[0] in "@#" for other in _members(key))
            if alias_known:  # "Beijing" when the briefs say "China"
                weight = max(idf(other) for key in every if key[0] in "@#" for other in _members(key))
        if weight > 0.0:
            known += weight
        else:
            weight = unknown_weight
        forms.append(every)
        weights.append(weight)
    total = sum(weights)
    names = [terms(match.group()) for match in _NAME_RE.finditer(question.strip())
             if not (match.start() == 0 and match.group().isalpha())]  # a capital opens the question anyway
    unknown = tuple(tuple(name) for name in names if name and not any(_known(stem, idf) for stem in name))
    return QuestionProfile(tuple(forms), tuple(weights), known / total if total else 0.0, unknown)


_ORDINAL_RE = re.compile(r"^(\d+)(?:st|nd|rd|th)?$")


def _known(stem: str, idf: Callable[[str], float]) -> bool:
    """Whether some passage holds ``stem``, its country (for a capital) or its number (16, 16th)."""
    if idf(stem) > 0.0 or _alias_known(stem, idf):
        return True
    number = _ORDINAL_RE.match(stem)
    return bool(number) and any(idf(number.group(1) + suffix) > 0.0 for suffix in ("", "st", "nd", "rd", "th"))


def _spelling_variant(stem: str, vocabulary: frozenset[str]) -> bool:
    """Whether a term of ``vocabulary`` shares all but the last two letters of ``stem`` (at least five;
    numbers must match exactly)."""
    if len(stem) < 5 or any(ch.isdigit() for ch in stem):
        return False
    prefix = stem[: max(5, len(stem) - 2)]
    return any(term.startswith(prefix) for term in vocabulary)


@functools.cache
def _members(key: str) -> tuple[str, ...]:
    """The stems that carry an alias key."""
    return tuple(stem for stem, keys in _ALIASES.items() if key in keys)


def _alias_known(stem: str, idf: Callable[[str], float]) -> bool:
    return any(idf(other) > 0 for key in _ALIASES.get(stem, ()) for other in _members(key) if other != stem)


def coverage(profile: QuestionProfile, held: frozenset[str]) -> float:
    """The weighted share of the question's content terms found among the forms ``held``."""
    total = profile.total
    if not total:
        return 0.0
    return sum(weight for forms, weight in zip(profile.forms, profile.weights) if not forms.isdisjoint(held)) / total


def _gain(profile: QuestionProfile, held: frozenset[str], before: frozenset[str]) -> float:
    """The weighted share of the question found in ``held`` and not in ``before``."""
    total = profile.total
    if not total:
        return 0.0
    return sum(weight for forms, weight in zip(profile.forms, profile.weights)
               if not forms.isdisjoint(held) and forms.isdisjoint(before)) / total


#: Openings that lean on the sentence before: demonstratives, pronouns, "the first/second",
#: "one of", "N years later", "previously"...
CONTINUATION_RE = re.compile(
    r"^\W*(?:such|this|these|that(?! said)|those|the latter|the former|it|its|they|their|them|he|she|his|her|"
    r"both|neither|one of|the first|the second|the third|the same|previously|simultaneously|meanwhile|"
    r"however|apparently|for obvious reasons|\w+ (?:years?|months?|weeks?|days?) later)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SentenceSignals:
    """The scores of candidate sentences, in the order given."""

    score: np.ndarray
    cosine: np.ndarray
    coverage: np.ndarray
    centrality: np.ndarray


def centrality(vectors: Sequence[np.ndarray | None], documents: Sequence[str], neighbours: int) -> np.ndarray:
    """How much each sentence resembles the other candidate sentences of its document: the mean
    cosine with its ``neighbours`` most similar ones (fewer when the document offers fewer; 0 for a
    sentence without a vector or alone in its document).

    A sentence restating its brief's theme is close to many of its sentences; one stating a
    particular fact, which is what a question asks for, is not. Discounting the first is the
    hubness correction of nearest-neighbour retrieval (CSLS, Conneau et al. 2018) within a brief.

    >>> unit = lambda *v: np.array(v) / np.linalg.norm(v)
    >>> theme, fact, other = unit(1, 1, 0), unit(1, 0, 0), unit(0, 1, 0)
    >>> centrality([theme, fact, other, fact], ["a", "a", "a", "b"], 2).round(2).tolist()
    [0.71, 0.35, 0.35, 0.0]
    """
    result = np.zeros(len(vectors), dtype=np.float64)
    groups: dict[str, list[int]] = {}
    for i, (vector, document) in enumerate(zip(vectors, documents)):
        if vector is not None:
            groups.setdefault(document, []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        # One small product per document (a few dozen sentences): BLAS runs it on this thread, where one
        # product over all the candidates would wake its thread pool, which the question encoder keeps busy.
        matrix = np.vstack([vectors[i] for i in members])
        similar = matrix @ matrix.T
        np.fill_diagonal(similar, -np.inf)
        taken = min(neighbours, len(members) - 1)
        result[members] = -np.partition(-similar, taken - 1, axis=1)[:, :taken].mean(axis=1)
    return result


def score_sentences(
    profile: QuestionProfile,
    query_vector: np.ndarray,
    texts: Sequence[str],
    vectors: Sequence[np.ndarray | None],
    previous: Sequence[int],
    documents: Sequence[str],
    *,
    term_weight: float,
    continuation_penalty: float,
    continuation_gain: float,
    centrality_weight: float,
    centrality_neighbours: int,
) -> SentenceSignals:
    """Each sentence's score (see the module docstring); ``previous[i]`` is the index of the
    sentence just before sentence ``i`` in its document, or -1 when it is not among ``texts``;
    ``documents[i]`` names the document of sentence ``i``. Last, ``centrality_weight`` times each
    sentence's :func:`centrality` among the candidates of its document is taken off."""
    count = len(texts)
    cosine = np.zeros(count, dtype=np.float64)
    with_vector = [i for i, vector in enumerate(vectors) if vector is not None]
    if with_vector:
        cosine[with_vector] = np.vstack([vectors[i] for i in with_vector]) @ np.asarray(query_vector, dtype=np.float32)
    held = [sentence_terms(text) for text in texts]
    pairs, total = tuple(zip(profile.forms, profile.weights)), profile.total or 1.0
    covered = np.array([sum(w for forms, w in pairs if not forms.isdisjoint(h)) for h in held], dtype=np.float64) / total
    own = cosine + term_weight * covered
    score = own.copy()
    for i, before in enumerate(previous):
        if before >= 0 and CONTINUATION_RE.match(texts[i]):
            inherited = own[before] - continuation_penalty + continuation_gain * _gain(profile, held[i], held[before])
            score[i] = max(own[i], inherited)
    central = centrality(vectors, documents, centrality_neighbours)
    return SentenceSignals(score - centrality_weight * central, cosine, covered, central)
