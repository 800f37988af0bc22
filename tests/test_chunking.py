"""Chunking: exact offsets, nothing lost, size limits, bullets kept with their lead-in."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.chunking import Chunk, chunk_document, split_sentences
from rag.documents import Document, FolderCorpus, parse_text

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
    from rag.embedding import load_embedder

    return load_embedder().count_tokens


@pytest.mark.parametrize("max_tokens,overlap", [(128, 32), (64, 0), (256, 64), (24, 8)])
def test_seed_chunks_exact_complete_and_bounded(count_tokens, max_tokens: int, overlap: int) -> None:
    corpus = FolderCorpus(SEEDS)
    for source in corpus.fingerprints():
        doc = corpus.load(source)
        assert doc is not None
        chunk_and_check(doc, count_tokens, max_tokens, overlap)


def test_seed_body_sentences_each_inside_a_chunk(count_tokens) -> None:
    corpus = FolderCorpus(SEEDS)
    for source in corpus.fingerprints():
        doc = corpus.load(source)
        assert doc is not None
        chunks = chunk_document(doc, count_tokens, 128, 32)
        for paragraph in doc.body:
            for start, end in split_sentences(doc.text, *paragraph):
                assert any(c.start <= start and end <= c.end for c in chunks), doc.text[start:end]


def test_bullet_list_stays_with_lead_in(count_tokens) -> None:
    doc = FolderCorpus(SEEDS).load("002_ad1ab4cf14487f8f.txt")
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
