"""Sentence splitting and chunk assembly with exact character offsets.

Chunks are runs of whole sentences of at most ``max_tokens`` model tokens, consecutive
chunks sharing up to ``overlap_tokens`` of trailing sentences. A sentence longer than a
chunk is cut at word boundaries. A bullet list stays in one chunk with its lead-in line
when the whole block fits. Every chunk satisfies ``doc.text[chunk.start:chunk.end] == chunk.text``.

>>> from rag.documents import parse_text
>>> doc = parse_text("a.txt", "One two. Three four five.\\n\\nSix.")
>>> words = lambda texts: [len(t.split()) for t in texts]
>>> [c.text for c in chunk_document(doc, words, max_tokens=5, overlap_tokens=0)]
['One two. Three four five.', 'Six.']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import MAX_SENTENCE_CHARS
from .documents import Document, Span

TokenCounter = Callable[[list[str]], list[int]]

_BULLET_RE = re.compile(r"^\s*(?:[•●▪◦‣∙·*]|[-–—](?=\s)|\d{1,2}[.)](?=\s))")


@dataclass(frozen=True)
class Chunk:
    """A passage: exact span of a source's text and the spans of the sentences inside it."""

    id: str
    source: str
    start: int
    end: int
    text: str
    sentences: tuple[Span, ...]


@dataclass(frozen=True)
class _Unit:
    span: Span
    tokens: int
    bullet: bool


def split_sentences(text: str, start: int, end: int) -> list[Span]:
    """Sentence spans inside ``text[start:end]``: bullet lines alone, other lines by sentencex.

    Spans are trimmed of surrounding whitespace and never empty. A sentence longer than
    ``MAX_SENTENCE_CHARS`` is cut into pieces of at most that many characters, at word
    boundaries where there are any.
    """
    import sentencex

    spans: list[Span] = []
    run_start: int | None = None

    def flush_run(run_end: int) -> None:
        if run_start is None:
            return
        for boundary in sentencex.get_sentence_boundaries("en", text[run_start:run_end]):
            for span in _trim(text, run_start + boundary["start_index"], run_start + boundary["end_index"]):
                spans.extend(_bounded(text, span))

    for line in re.finditer(r"[^\n]+", text[start:end]):
        line_start, line_end = start + line.start(), start + line.end()
        if _BULLET_RE.match(line.group()):
            flush_run(line_start)
            run_start = None
            spans.extend(piece for span in _trim(text, line_start, line_end) for piece in _bounded(text, span))
        elif run_start is None:
            run_start = line_start
    flush_run(end)
    return spans


def _bounded(text: str, span: Span, limit: int = MAX_SENTENCE_CHARS) -> list[Span]:
    """``span`` cut into trimmed pieces of at most ``limit`` characters, at whitespace when possible.

    >>> _bounded("aaa bbb ccc", (0, 11), limit=7)
    [(0, 7), (8, 11)]
    """
    pieces: list[Span] = []
    start, end = span
    while end - start > limit:
        cut = text.rfind(" ", start + 1, start + limit + 1)
        cut = max(cut, text.rfind("\n", start + 1, start + limit + 1))
        if cut <= start:
            cut = start + limit
        pieces.extend(_trim(text, start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    pieces.extend(_trim(text, start, end))
    return pieces


def _trim(text: str, start: int, end: int) -> list[Span]:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return []
    begin = start + len(piece) - len(piece.lstrip())
    return [(begin, begin + len(stripped))]


def _units(doc: Document, count_tokens: TokenCounter) -> list[_Unit]:
    spans = [span for paragraph in doc.body for span in split_sentences(doc.text, *paragraph)]
    counts = count_tokens([doc.text[s:e] for s, e in spans]) if spans else []
    return [
        _Unit(span, tokens, bool(_BULLET_RE.match(doc.text[span[0] : span[1]])))
        for span, tokens in zip(spans, counts)
    ]


def _blocks(units: list[_Unit]) -> list[list[_Unit]]:
    """Group units: a bullet list joins the sentence that introduces it; others stand alone."""
    blocks: list[list[_Unit]] = []
    for unit in units:
        previous = blocks[-1] if blocks else None
        if unit.bullet and previous is not None and (previous[-1].bullet or len(previous) == 1):
            previous.append(unit)
        else:
            blocks.append([unit])
    return blocks


def _word_pieces(text: str, unit: _Unit, count_tokens: TokenCounter, max_tokens: int) -> list[_Unit]:
    """Cut an over-long sentence at word boundaries into pieces of at most ``max_tokens``."""
    words = [(m.start() + unit.span[0], m.end() + unit.span[0]) for m in re.finditer(r"\S+", text[slice(*unit.span)])]
    counts = count_tokens([text[s:e] for s, e in words])
    pieces: list[_Unit] = []
    piece_start, piece_tokens, last_end = words[0][0], 0, words[0][0]
    for (start, end), tokens in zip(words, counts):
        if piece_tokens and piece_tokens + tokens > max_tokens:
            pieces.append(_Unit((piece_start, last_end), piece_tokens, unit.bullet))
            piece_start, piece_tokens = start, 0
        piece_tokens += tokens
        last_end = end
    pieces.append(_Unit((piece_start, last_end), piece_tokens, unit.bullet))
    return pieces


def _make_chunk(doc: Document, units: Sequence[_Unit]) -> Chunk:
    start, end = units[0].span[0], units[-1].span[1]
    return Chunk(
        id=f"{doc.source}#{start}-{end}",
        source=doc.source,
        start=start,
        end=end,
        text=doc.text[start:end],
        sentences=tuple(unit.span for unit in units),
    )


def chunk_document(
    doc: Document, count_tokens: TokenCounter, max_tokens: int = 128, overlap_tokens: int = 32
) -> list[Chunk]:
    """Split a document's body into sentence-aligned chunks with exact offsets.

    ``count_tokens`` maps texts to their lengths in model tokens (without special tokens).
    """
    if max_tokens < 1 or overlap_tokens < 0 or overlap_tokens >= max_tokens:
        raise ValueError("need max_tokens >= 1 and 0 <= overlap_tokens < max_tokens")
    chunks: list[Chunk] = []
    current: list[_Unit] = []

    def flush() -> None:
        nonlocal current
        if not current:
            return
        chunks.append(_make_chunk(doc, current))
        carried: list[_Unit] = []
        for unit in reversed(current[1:]):
            if sum(u.tokens for u in carried) + unit.tokens > overlap_tokens:
                break
            carried.insert(0, unit)
        current = carried

    def add(block: list[_Unit]) -> None:
        size = sum(unit.tokens for unit in block)
        if sum(unit.tokens for unit in current) + size > max_tokens:
            flush()
            while current and sum(unit.tokens for unit in current) + size > max_tokens:
                current.pop(0)
        current.extend(block)

    for block in _blocks(_units(doc, count_tokens)):
        if sum(unit.tokens for unit in block) <= max_tokens:
            add(block)
            continue
        for unit in block:
            if unit.tokens <= max_tokens:
                add([unit])
            else:
                for piece in _word_pieces(doc.text, unit, count_tokens, max_tokens):
                    add([piece])
    if current and (not chunks or current[-1].span[1] > chunks[-1].end):
        chunks.append(_make_chunk(doc, current))
    return chunks
