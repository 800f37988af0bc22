"""Chunking: exact offsets, nothing lost, size limits, bullets kept with their lead-in."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rag.chunking import Chunk, chunk_document, split_sentences
from rag.documents import Document, FolderCorpus, Span, decode, parse_text

from .conftest import SEEDS


def count_words(texts: list[str]) -> list[int]:
    """A stand-in token counter: whitespace-separated words."""
    return [len(text.split()) for text in texts]


def assert_exact(doc: Document, chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip() and chunk.text
        assert chunk.id == f"{doc.source}#{chunk.start}-{chunk.end}"
        for start, end in chunk.sentences:
            assert chunk.start <= start < end <= chunk.end
            assert doc.text[start:end].strip() == doc.text[start:end]


def assert_nothing_lost(doc: Document, chunks: list[Chunk]) -> None:
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    for start, end in doc.body:
        missing = [i for i in range(start, end) if i not in covered and not doc.text[i].isspace()]
        assert not missing, f"body text lost at {missing[:5]}: {doc.text[missing[0]:missing[0] + 40]!r}"


def chunk_and_check(doc: Document, counter, max_tokens: int, overlap: int) -> list[Chunk]:
    """Chunk a document and assert the invariants every chunking must keep."""
    chunks = chunk_document(doc, counter, max_tokens, overlap)
    assert_exact(doc, chunks)
    assert_nothing_lost(doc, chunks)
    for chunk in chunks:
        assert sum(counter([doc.text[s:e] for s, e in chunk.sentences])) <= max_tokens
    starts = [c.start for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)
    return chunks


@pytest.fixture(scope="module")
def count_tokens():
    from rag.embedding import passage_embedder

    return passage_embedder().count_tokens


@pytest.mark.parametrize("max_tokens,overlap", [(128, 32), (64, 0), (256, 64), (24, 8)])
def test_seed_chunks_exact_complete_and_bounded(count_tokens, max_tokens: int, overlap: int) -> None:
    corpus = FolderCorpus(SEEDS)
    for source in corpus.scan().signatures:
        doc = corpus.load(source).document
        assert doc is not None
        chunk_and_check(doc, count_tokens, max_tokens, overlap)


def test_seed_body_sentences_each_inside_a_chunk(count_tokens) -> None:
    corpus = FolderCorpus(SEEDS)
    for source in corpus.scan().signatures:
        doc = corpus.load(source).document
        assert doc is not None
        chunks = chunk_document(doc, count_tokens, 128, 32)
        for paragraph in doc.body:
            for start, end in split_sentences(doc.text, *paragraph):
                assert any(c.start <= start and end <= c.end for c in chunks), doc.text[start:end]


def test_bullet_list_stays_with_lead_in(count_tokens) -> None:
    doc = FolderCorpus(SEEDS).load("002_ad1ab4cf14487f8f.txt").document
    assert doc is not None
    chunks = chunk_document(doc, count_tokens, 200, 32)
    lead_in = doc.text.index("In September and H1 October")
    last_bullet = doc.text.index("visited Minsk", doc.text.index("Ugandan")) + len("visited Minsk")
    assert any(c.start <= lead_in and last_bullet <= c.end for c in chunks)


def test_bullets_are_separate_sentences() -> None:
    text = "Events included:\n• one thing happened\n• another thing\nAfter. Then more."
    spans = split_sentences(text, 0, len(text))
    assert [text[s:e] for s, e in spans] == [
        "Events included:", "• one thing happened", "• another thing", "After.", "Then more.",
    ]


def test_overlong_sentence_is_cut_at_word_boundaries() -> None:
    words = " ".join(f"word{i}" for i in range(50)) + "."
    doc = parse_text("long.txt", words)
    assert doc is not None
    chunks = chunk_document(doc, count_words, max_tokens=10, overlap_tokens=0)
    assert len(chunks) == 5
    assert_exact(doc, chunks)
    assert all(re.fullmatch(r"\S+( \S+)*", c.text) for c in chunks)
    assert " ".join(c.text for c in chunks) == words


def test_overlap_repeats_trailing_sentences() -> None:
    doc = parse_text("o.txt", "Ships sail far. Birds fly high. Fish swim deep. Cats nap long.")
    assert doc is not None
    chunks = chunk_document(doc, count_words, max_tokens=6, overlap_tokens=3)
    assert [c.text for c in chunks] == [
        "Ships sail far. Birds fly high.", "Birds fly high. Fish swim deep.", "Fish swim deep. Cats nap long.",
    ]


def test_invalid_sizes_are_rejected() -> None:
    doc = parse_text("a.txt", "Text.")
    assert doc is not None
    with pytest.raises(ValueError):
        chunk_document(doc, count_words, max_tokens=10, overlap_tokens=10)


_word = st.text(alphabet=st.sampled_from("abcXYZ’–é0"), min_size=1, max_size=8)
_sentence = st.builds(
    lambda words, end: " ".join(words) + end,
    st.lists(_word, min_size=1, max_size=12),
    st.sampled_from([".", "!", "?", "", ":"]),
)
_line = st.builds(lambda bullet, s: ("• " if bullet else "") + s, st.booleans(), _sentence)
_paragraph = st.builds(" ".join, st.lists(_line, min_size=1, max_size=4))
_separator = st.sampled_from(["\n", "\n\n", "\n \n", "\n\n\n  "])


@st.composite
def _texts(draw: st.DrawFn) -> str:
    paragraphs = draw(st.lists(_paragraph, min_size=1, max_size=6))
    text = paragraphs[0]
    for paragraph in paragraphs[1:]:
        text += draw(_separator) + paragraph
    return draw(st.sampled_from(["", "  ", "\n"])) + text


@settings(max_examples=150, deadline=None)
@given(text=_texts(), max_tokens=st.integers(3, 40), overlap=st.integers(0, 10))
def test_property_offsets_exact_and_nothing_lost(text: str, max_tokens: int, overlap: int) -> None:
    overlap = min(overlap, max_tokens - 1)
    doc = parse_text("p.txt", text)
    assert doc is not None
    chunk_and_check(doc, count_words, max_tokens, overlap)


# ---------------------------------------------------------------------------
# Generated briefs: header, body with bullets and long sentences, site footer
# ---------------------------------------------------------------------------

_MONTH_SPELLINGS = [
    ("January", "Jan"), ("February", "Feb"), ("March", "Mar"), ("April", "Apr"), ("May", "May"),
    ("June", "Jun"), ("July", "Jul"), ("August", "Aug"), ("September", "Sept", "Sep"),
    ("October", "Oct"), ("November", "Nov"), ("December", "Dec"),
]
_TRENDS = [("gotten better", "better"), ("not changed", "unchanged"), ("gotten worse", "worse")]
_VOCABULARY = [
    "Belarus", "Minsk", "Lukashenka", "military-industrial", "cooperation", "Polonaise", "Belarus’",
    "Беларусь", "ваенны", "Ўзброеныя", "Sino-Belarusian", "USD", "2019", "1%-2%", "H1", "(UAVs",
    "missiles)", "“quoted”", "e.g.", "U.S.", "No.", "Dr.", "10th", "–", "—", "100 km", "Zürich", "naïve",
    "ČEZ", "🙂",
]
_body_word = st.one_of(
    st.sampled_from(_VOCABULARY),
    st.text(alphabet=st.sampled_from("abcdefXYZéўЖ’0123"), min_size=1, max_size=9),
)
_name_word = st.builds(
    str.capitalize, st.text(alphabet=st.sampled_from("aeiornstlkvczўёжш"), min_size=2, max_size=10)
)
_indent = st.sampled_from(["", "", "", "  ", "\t", "    "])
_trailing = st.sampled_from(["", "", " ", "\t"])
_blank = st.sampled_from(["\n\n", "\n\n", "\n\n\n", "\n \n", "\n\t\n\n"])
_ADVERT = (
    "Once a week, in coordination with a group of prominent Belarusian analysts, we provide analytical "
    "commentaries on the most topical and relevant issues. These commentaries are available in Belarusian, "
    "Russian, and English.\nEN\nBE/RU\nSubscribe\n\n"
)
_SIDEBAR_TAIL = "View all\n\nSubscribe to us\n\nRead more"
_FOOTERS = [  # the sidebar alone with 2, 1 or 0 lines before "View all", and the site's footers as in the seeds
    "Situation in Belarus\n\nMarch 18 – March 24\nEN\n" + _SIDEBAR_TAIL,
    "You have been successfully subscribed\n\nSubscribe to our newsletter\n\n" + _ADVERT
    + "Situation in Belarus\n\nOctober 7 – October 13\n" + _SIDEBAR_TAIL,
    "Situation in Belarus\n\nMarch 18 – March 24\n" + _SIDEBAR_TAIL,
    "Subscribe to our newsletter\n\n" + _ADVERT + "Situation in Belarus\n\nApril 1 – April 7\n" + _SIDEBAR_TAIL,
    "You have been successfully subscribed\n",
    "Situation in Belarus\n" + _SIDEBAR_TAIL,
]
_FOOTER_MARKERS = ("You have been successfully subscribed", "Subscribe to our newsletter", "View all", "Read more")


def _words_sentence(words: list[str], end: str) -> str:
    return " ".join(words) + end


_short_sentence = st.builds(
    _words_sentence,
    st.lists(_body_word, min_size=1, max_size=12),
    st.sampled_from([".", ".", ".", "!", "?", "…", ".”", ";", ""]),
)
_long_sentence = st.builds(
    lambda words, times, end: _words_sentence(words * times, end),
    st.lists(_body_word, min_size=5, max_size=12),
    st.integers(3, 6),
    st.sampled_from([".", "?", ""]),
)
_body_sentence = st.one_of(_short_sentence, _short_sentence, _short_sentence, _long_sentence)


@st.composite
def _week_line(draw: st.DrawFn) -> tuple[str, str, str]:
    """A week range line in one of the site's spellings, with its ISO start and end dates."""
    year_end = st.builds(date, st.integers(2000, 2035), st.just(12), st.integers(15, 31))
    start = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2035, 12, 31)) | year_end)
    end = start + timedelta(days=draw(st.integers(0, 16)))

    def month(day: date) -> str:
        spelling = draw(st.sampled_from(_MONTH_SPELLINGS[day.month - 1]))
        return spelling + (draw(st.sampled_from(["", "."])) if len(spelling) <= 4 and spelling != "May" else "")

    dash = draw(st.sampled_from([" – ", " – ", " — ", " - ", "–", " -"]))
    same_month = (start.year, start.month) == (end.year, end.month)
    form = draw(st.sampled_from(["both months", "both years"] + (["one month"] if same_month else [])))
    if form == "one month":
        line = f"{month(start)} {start.day}{dash}{end.day}, {end.year}"
    elif form == "both years":
        line = f"{month(start)} {start.day}, {start.year}{dash}{month(end)} {end.day}, {end.year}"
    else:
        line = f"{month(start)} {start.day}{dash}{month(end)} {end.day}, {end.year}"
    return line, start.isoformat(), end.isoformat()


@st.composite
def _paragraph_lines(draw: st.DrawFn) -> list[str]:
    """One body paragraph as its lines: prose (maybe wrapped) or a lead-in line with bullets."""
    if draw(st.integers(0, 2)) == 0:
        lead_in = draw(_short_sentence).rstrip(".!?…;”")
        lead_in += draw(st.sampled_from([":", ", including the following.", ""]))
        numbered = draw(st.booleans())
        marker = draw(st.sampled_from(["•", "-", "–", "●", "*"]))
        items = draw(st.lists(_body_sentence, min_size=1, max_size=5))
        bullets = [
            draw(_indent) + (f"{n}{draw(st.sampled_from(['.', ')']))}" if numbered else marker) + " " + item
            for n, item in enumerate(items, start=1)
        ]
        return [draw(_indent) + lead_in] + bullets
    line_count = draw(st.integers(1, 3))
    lines = [" ".join(draw(st.lists(_body_sentence, min_size=1, max_size=4))) for _ in range(line_count)]
    return [draw(_indent) + line for line in lines]


Brief = tuple[str, dict[str, str | None], tuple[Span, ...], int, int]


@st.composite
def _briefs(draw: st.DrawFn) -> Brief:
    """A brief's file text, its metadata, its body paragraph spans, header end and footer start."""
    names = st.builds(" ".join, st.lists(_name_word, min_size=1, max_size=3))
    author = draw(st.sampled_from([None, "absent"]) | names)  # "absent": a bare "by" line
    week, week_start, week_end = draw(_week_line())
    category = draw(
        st.none() | st.sampled_from(["Security issues", "Foreign policy", "Economy", "Унутраная палітыка"])
    )
    title = " ".join(draw(st.lists(_body_word, min_size=1, max_size=14)))
    trend_phrase, trend = draw(st.sampled_from(_TRENDS))
    trend_line = draw(st.sampled_from([str, str.upper, str.title]))(f"The situation has {trend_phrase}")
    trend_line += draw(st.sampled_from(["", "."]))

    header = []
    if author is not None:
        header.append("by" if author == "absent" else draw(st.sampled_from(["by ", "By ", "by  "])) + author)
    header += [week] + ([category] if category else []) + [title, trend_line]
    repeat_title = draw(st.integers(0, 4)) > 0
    if repeat_title:
        header.append(title)
    text = ""
    for line in header:
        text += draw(_indent) + line + draw(_trailing) + draw(st.sampled_from(["\n", "\n", "\n\n", "\n \n"]))
    text = draw(st.sampled_from(["", "\n", "  \n"])) + text.rstrip("\n \t")
    header_end = len(text)

    paragraphs = draw(st.lists(_paragraph_lines(), min_size=1, max_size=6))
    if not repeat_title:
        assume(paragraphs[0][0].strip() != title)  # else the parser takes it for the repeated title
    body: list[Span] = []
    for number, lines in enumerate(paragraphs):
        text += draw(st.sampled_from(["\n", "\n\n"])) if number == 0 else draw(_blank)
        block = "\n".join(line + draw(_trailing) for line in lines)
        begin = len(text) + len(block) - len(block.lstrip())
        body.append((begin, begin + len(block.strip())))
        text += block
    text += draw(st.sampled_from(["\n", "\n\n", "\n\n\n"]))
    footer_start = len(text)
    text += draw(st.sampled_from(_FOOTERS)) + draw(st.sampled_from(["", "\n"]))

    metadata = {
        "title": title, "week_start": week_start, "week_end": week_end, "category": category,
        "trend": trend, "author": None if author in (None, "absent") else author,
    }
    return text, metadata, tuple(body), header_end, footer_start


_chunk_sizes = st.sampled_from([(6, 0), (10, 3), (16, 5), (30, 0), (40, 12), (128, 32)])


def assert_sentences_listed(doc: Document, chunks: list[Chunk], max_tokens: int) -> None:
    """Every body sentence is one of some chunk's sentence spans; an over-long one is covered by listed pieces.

    Chunks sharing characters is not enough: a sentence missing from every ``sentences`` tuple cannot be quoted.
    """
    listed = {span for chunk in chunks for span in chunk.sentences}
    for chunk in chunks:
        assert list(chunk.sentences) == sorted(chunk.sentences)
        assert all(a[1] <= b[0] for a, b in zip(chunk.sentences, chunk.sentences[1:])), "sentences overlap"
    for paragraph in doc.body:
        for start, end in split_sentences(doc.text, *paragraph):
            sentence = doc.text[start:end]
            if count_words([sentence])[0] <= max_tokens:
                assert (start, end) in listed, f"sentence not listed in any chunk: {sentence!r}"
                continue
            pieces = [(s, e) for s, e in listed if start <= s and e <= end]
            covered = {i for s, e in pieces for i in range(s, e)}
            missing = [i for i in range(start, end) if i not in covered and not doc.text[i].isspace()]
            assert not missing, f"part of a long sentence is in no chunk's list: {doc.text[missing[0]:end]!r}"


def check_brief(brief: Brief, sizes: tuple[int, int]) -> None:
    """Parse a generated brief, check its metadata, body and the chunks of its body."""
    text, metadata, body, header_end, footer_start = brief
    doc = parse_text("brief.txt", text)
    assert doc is not None and doc.kind == "brief"
    assert {key: getattr(doc, key) for key in metadata} == metadata
    assert doc.body == body
    max_tokens, overlap = sizes
    chunks = chunk_and_check(doc, count_words, max_tokens, overlap)
    for start, end in [*doc.body, *((c.start, c.end) for c in chunks)]:
        assert header_end < start and end <= footer_start, f"header or footer inside: {text[start:end]!r}"
    for chunk in chunks:
        assert not any(marker in chunk.text for marker in _FOOTER_MARKERS), chunk.text
    assert_sentences_listed(doc, chunks, max_tokens)


@settings(max_examples=100, deadline=None)
@given(brief=_briefs(), sizes=_chunk_sizes)
def test_property_generated_brief_parsed_and_chunked(brief: Brief, sizes: tuple[int, int]) -> None:
    """Metadata, header/footer exclusion and lossless sentence-aligned chunks for generated briefs."""
    check_brief(brief, sizes)


@settings(max_examples=100, deadline=None)
@given(brief=_briefs(), sizes=_chunk_sizes, newlines=st.lists(st.sampled_from(["\r\n", "\r\n", "\n"]), min_size=1))
def test_property_generated_brief_with_crlf_decodes_the_same(
    brief: Brief, sizes: tuple[int, int], newlines: list[str]
) -> None:
    """A brief saved with CRLF (or mixed CRLF/LF) line endings decodes to its LF text and passes the same checks."""
    text, metadata, body, header_end, footer_start = brief
    pieces = text.split("\n")
    raw = pieces[0] + "".join(newlines[i % len(newlines)] + piece for i, piece in enumerate(pieces[1:]))
    decoded, warnings = decode(raw.encode("utf-8"), "brief.txt")
    assert warnings == () and decoded == text
    check_brief((decoded, metadata, body, header_end, footer_start), sizes)


def test_unpunctuated_text_is_cut_before_tokenizing(count_tokens) -> None:
    """A megabyte on one line (no sentence end) becomes bounded pieces, so tokenizing stays small."""
    from rag.config import MAX_SENTENCE_CHARS

    words = " ".join(f"word{i % 977}" for i in range(130_000))
    doc = parse_text("one-line.txt", words + "\n\n" + "x" * 5_000)  # and a 'word' with no space at all
    assert doc is not None and len(doc.text) > 1_000_000
    spans = [span for paragraph in doc.body for span in split_sentences(doc.text, *paragraph)]
    assert max(end - start for start, end in spans) <= MAX_SENTENCE_CHARS
    assert "".join(doc.text[s:e] for s, e in spans).replace(" ", "") == doc.text.replace(" ", "").replace("\n", "")
    seen: list[int] = []
    chunks = chunk_document(doc, lambda texts: seen.append(max(map(len, texts), default=0)) or count_tokens(texts), 128, 32)
    assert max(seen) <= MAX_SENTENCE_CHARS  # the tokenizer never saw a longer text
    assert_exact(doc, chunks)
    assert_nothing_lost(doc, chunks)
