"""Turn files into ``Document`` objects: decoding, brief-layout detection, footer removal, metadata.

A *file text* is the file decoded as UTF-8 with universal newlines, exactly what
``open(path, encoding="utf-8").read()`` returns. Every offset in this project points
into that string.

>>> doc = parse_text("notes.txt", "First paragraph.\\n\\nSecond one.")
>>> [doc.text[s:e] for s, e in doc.body]
['First paragraph.', 'Second one.']
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Protocol

from .config import DOCUMENT_SUFFIXES
from .errors import CorpusError

Span = tuple[int, int]


@dataclass(frozen=True)
class Document:
    """One source file: its full text, metadata and the spans of its body paragraphs."""

    source: str
    text: str
    title: str
    body: tuple[Span, ...]
    week_start: str | None = None
    week_end: str | None = None
    category: str | None = None
    trend: str | None = None
    author: str | None = None
    kind: str = "text"  # "brief" or "text"
    warnings: tuple[str, ...] = field(default=(), compare=False)


class Corpus(Protocol):
    """A set of documents addressed by source name, each with a content fingerprint."""

    def fingerprints(self) -> dict[str, str]:
        """Map every source name to a hash of its content."""
        ...

    def load(self, source: str) -> Document | None:
        """Read one source; ``None`` when it holds nothing to index."""
        ...


# ---------------------------------------------------------------------------
# Brief layout
# ---------------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}

_WEEK_RE = re.compile(
    r"^(?P<m1>[A-Za-z]+)\.? (?P<d1>\d{1,2})(?:, (?P<y1>\d{4}))?\s*[–—-]\s*"
    r"(?:(?P<m2>[A-Za-z]+)\.? )?(?P<d2>\d{1,2}), (?P<y2>\d{4})$"
)
_BY_RE = re.compile(r"^by\b\s*(?P<author>.*)$", re.IGNORECASE)
_TREND_RE = re.compile(r"^The situation has (?P<trend>.+?)\.?$", re.IGNORECASE)
_TRENDS = {"gotten better": "better", "not changed": "unchanged", "gotten worse": "worse"}
_FOOTER_STARTS = ("You have been successfully subscribed", "Subscribe to our newsletter")
_SIDEBAR_HEADING = "Situation in Belarus"
_HEADER_LOOKAHEAD = 4


def _lines(text: str) -> list[Span]:
    """Spans of the non-blank lines of ``text``, trimmed of surrounding whitespace."""
    spans = []
    for match in re.finditer(r"[^\n]+", text):
        line = match.group()
        stripped = line.strip()
        if stripped:
            start = match.start() + (len(line) - len(line.lstrip()))
            spans.append((start, start + len(stripped)))
    return spans


def _paragraphs(text: str, start: int, end: int) -> tuple[Span, ...]:
    """Spans of blank-line separated paragraphs inside ``text[start:end]``, trimmed."""
    spans = []
    for match in re.finditer(r"(?:[^\n]*\S[^\n]*(?:\n|$))+", text[start:end]):
        block = match.group()
        stripped = block.strip()
        if stripped:
            begin = start + match.start() + (len(block) - len(block.lstrip()))
            spans.append((begin, begin + len(stripped)))
    return tuple(spans)


def _parse_week(line: str) -> tuple[str, str] | None:
    """ISO start and end dates of a week range such as ``April 15 – April 21, 2019``."""
    match = _WEEK_RE.match(line)
    if not match:
        return None
    month1 = _MONTHS.get(match["m1"].lower())
    month2 = _MONTHS.get((match["m2"] or match["m1"]).lower())
    if month1 is None or month2 is None:
        return None
    year2 = int(match["y2"])
    year1 = int(match["y1"]) if match["y1"] else (year2 - 1 if month1 > month2 else year2)
    try:
        start = date(year1, month1, int(match["d1"]))
        end = date(year2, month2, int(match["d2"]))
    except ValueError:
        return None
    if end < start:
        return None
    return start.isoformat(), end.isoformat()


def _footer_index(text: str, lines: list[Span], first: int) -> int:
    """Index of the first footer line at or after ``first`` (``len(lines)`` when none)."""
    for i in range(first, len(lines)):
        line = text[slice(*lines[i])]
        if line.startswith(_FOOTER_STARTS):
            return i
        following = [text[slice(*span)] for span in lines[i + 1 : i + 4]]
        if line == _SIDEBAR_HEADING and "View all" in following:
            return i
    return len(lines)


def parse_brief(source: str, text: str) -> Document | None:
    """Parse a "Situation in Belarus" brief; ``None`` when the text does not have that layout.

    Header: optional ``by`` line, week range, optional category, title, trend line,
    the title repeated. Everything from the site footer on is dropped.
    """
    lines = _lines(text)
    values = [text[s:e] for s, e in lines]
    i = 0
    author = None
    if values and (by := _BY_RE.match(values[0])) and len(values[0]) < 80:
        author = by["author"].strip() or None
        i = 1
    week = _parse_week(values[i]) if i < len(values) else None
    if week is None:
        return None
    i += 1
    trend_at = next(
        (j for j in range(i + 1, min(i + _HEADER_LOOKAHEAD, len(values))) if _TREND_RE.match(values[j])),
        None,
    )
    if trend_at is None or trend_at - i not in (1, 2):
        return None
    category = values[i] if trend_at - i == 2 else None
    title = values[trend_at - 1]
    trend_phrase = _TREND_RE.match(values[trend_at])["trend"].lower()  # type: ignore[index]
    body_first = trend_at + 1
    if body_first < len(values) and values[body_first] == title:
        body_first += 1
    footer = _footer_index(text, lines, body_first)
    if body_first >= footer:
        return None
    body = _paragraphs(text, lines[body_first][0], lines[footer - 1][1])
    return Document(
        source=source,
        text=text,
        title=title,
        body=body,
        week_start=week[0],
        week_end=week[1],
        category=category,
        trend=_TRENDS.get(trend_phrase, trend_phrase),
        author=author,
        kind="brief",
    )


def parse_text(source: str, text: str, warnings: tuple[str, ...] = ()) -> Document | None:
    """A brief when the text has the brief layout, else plain text titled by its file name.

    Returns ``None`` when the text holds nothing but whitespace.
    """
    brief = parse_brief(source, text)
    if brief is not None:
        return replace(brief, warnings=warnings)
    body = _paragraphs(text, 0, len(text))
    if not body:
        return None
    return Document(source=source, text=text, title=Path(source).stem, body=body, warnings=warnings)


# ---------------------------------------------------------------------------
# Files and folders
# ---------------------------------------------------------------------------


def decode(data: bytes, source: str) -> tuple[str, tuple[str, ...]]:
    """Decode file bytes as UTF-8 with universal newlines; undecodable bytes become U+FFFD.

    Returns the text and the warnings raised while decoding.
    """
    warnings: tuple[str, ...] = ()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        text = data.decode("utf-8", errors="replace")
        warnings = (
            f"{source}: not valid UTF-8 (first bad byte at offset {error.start}); "
            "indexed with undecodable bytes replaced by U+FFFD",
        )
    return text.replace("\r\n", "\n").replace("\r", "\n"), warnings


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest used as a content fingerprint."""
    return hashlib.sha256(data).hexdigest()


class FolderCorpus:
    """The ``.txt`` and ``.md`` files under a folder (recursively, hidden files skipped).

    >>> corpus = FolderCorpus("seeds")  # doctest: +SKIP
    >>> sorted(corpus.fingerprints())[:1]  # doctest: +SKIP
    ['000_3b696b7c0f75676d.txt']
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FolderCorpus({str(self.root)!r})"

    def _paths(self) -> dict[str, Path]:
        if not self.root.exists():
            raise CorpusError(f"corpus folder not found: {self.root}")
        if not self.root.is_dir():
            raise CorpusError(f"corpus is not a folder: {self.root}")
        paths = {}
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root)
            if any(part.startswith(".") for part in relative.parts):
                continue
            if path.is_file() and path.suffix.lower() in DOCUMENT_SUFFIXES:
                paths[relative.as_posix()] = path
        if not paths:
            raise CorpusError(
                f"no .txt or .md files in corpus folder {self.root}: add documents or pass --corpus DIR"
            )
        return paths

    def fingerprints(self) -> dict[str, str]:
        """SHA-256 of every readable document file, by path relative to the root."""
        result = {}
        for source, path in self._paths().items():
            try:
                result[source] = content_hash(path.read_bytes())
            except OSError:
                result[source] = "unreadable"
        return result

    def path(self, source: str) -> Path:
        """The file behind a source name."""
        return self.root / source

    def load(self, source: str) -> Document | None:
        """Read and parse one file; ``None`` when it is empty or cannot be read."""
        try:
            data = self.path(source).read_bytes()
        except OSError as error:
            raise CorpusError(f"{source}: cannot be read ({error.strerror or error})") from error
        text, warnings = decode(data, source)
        return parse_text(source, text, warnings)
