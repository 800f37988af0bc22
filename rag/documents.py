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
import os
import re
import stat
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Protocol

from .config import DOCUMENT_SUFFIXES, MAX_FILE_BYTES, MAX_FOLDER_DEPTH
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


@dataclass(frozen=True)
class Scan:
    """What listing a corpus found: a cheap signature per source, and what it passed over.

    A signature (size, modification time and inode for files) changes whenever the content
    may have; comparing signatures costs no reading. ``skipped`` holds (source, reason)
    pairs of files that are never indexed, ``warnings`` what else the user should know.
    """

    signatures: dict[str, str]
    skipped: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Loaded:
    """One source as read for indexing.

    ``fingerprint`` is the SHA-256 of exactly the bytes that were parsed, and ``signature``
    was taken before reading them, so a file changed during the read looks changed next time.
    """

    document: Document | None
    fingerprint: str
    signature: str


class Corpus(Protocol):
    """A set of documents addressed by source name."""

    def scan(self) -> Scan:
        """Every indexable source with its cheap signature. Raises ``CorpusError`` when there is none."""
        ...

    def signature(self, source: str) -> str | None:
        """The current cheap signature of one source; ``None`` when it is gone."""
        ...

    def fingerprint(self, source: str) -> str:
        """SHA-256 of the source's current content. Raises ``CorpusError`` when it cannot be read."""
        ...

    def load(self, source: str) -> Loaded:
        """Read and parse one source. Raises ``CorpusError`` when it cannot be read."""
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


def _skip_bom(text: str, start: int) -> int:
    """``start``, moved past a byte-order mark when it opens the file (editors on Windows write one)."""
    return 1 if start == 0 and text.startswith("\ufeff") else start


def _lines(text: str) -> list[Span]:
    """Spans of the non-blank lines of ``text``, trimmed of surrounding whitespace (and a leading BOM)."""
    spans = []
    for match in re.finditer(r"[^\n]+", text):
        begin = _skip_bom(text, match.start())
        line = text[begin : match.end()]
        stripped = line.strip()
        if stripped:
            start = begin + (len(line) - len(line.lstrip()))
            spans.append((start, start + len(stripped)))
    return spans


def _paragraphs(text: str, start: int, end: int) -> tuple[Span, ...]:
    """Spans of blank-line separated paragraphs inside ``text[start:end]``, trimmed (and past a leading BOM)."""
    start = _skip_bom(text, start)
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


def shown_name(name: str) -> str:
    """A file name safe to print: bytes that are not UTF-8 are shown as ``\\xNN``.

    >>> shown_name(os.fsdecode(b"bad\\xff.txt"))
    'bad\\\\xff.txt'
    """
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _signature(status: os.stat_result) -> str:
    """Size, modification time, inode and status change time: a file rewritten in place to the same
    size, its modification time set back (``touch -r``, ``rsync --inplace -t``), still differs in the last."""
    return f"{status.st_size}:{status.st_mtime_ns}:{status.st_ino}:{status.st_ctime_ns}"


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class FolderCorpus:
    """The ``.txt`` and ``.md`` files under a folder (recursively, hidden files skipped).

    Nothing outside the folder is ever read through it: links that lead outside are
    skipped, links to folders are not followed, and every read checks where the opened
    file really is. Files over ``max_bytes`` and folders deeper than ``MAX_FOLDER_DEPTH``
    are skipped with a reason.

    >>> corpus = FolderCorpus("seeds")  # doctest: +SKIP
    >>> sorted(corpus.scan().signatures)[:1]  # doctest: +SKIP
    ['000_3b696b7c0f75676d.txt']
    """

    def __init__(self, root: str | Path, max_bytes: int = MAX_FILE_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    def __repr__(self) -> str:
        return f"FolderCorpus({str(self.root)!r})"

    def _real_root(self) -> Path:
        if not self.root.exists():
            raise CorpusError(f"corpus folder not found: {self.root}")
        if not self.root.is_dir():
            raise CorpusError(f"corpus is not a folder: {self.root}")
        return self.root.resolve()

    def _inside(self, real: str | Path, real_root: Path) -> bool:
        return Path(real).is_relative_to(real_root)

    def scan(self) -> Scan:
        """Walk the folder (without recursion limits of Python's own) and sign every document."""
        real_root = self._real_root()
        signatures: dict[str, str] = {}
        skipped: list[tuple[str, str]] = []
        warnings: list[str] = []
        folders: list[tuple[Path, str, int]] = [(self.root, "", 0)]
        while folders:
            folder, prefix, depth = folders.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
            except OSError as error:
                warnings.append(f"folder {shown_name(prefix.rstrip('/') or '.')} skipped: cannot be read ({error.strerror or error})")
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                relative = prefix + entry.name
                if not _is_utf8(entry.name):
                    skipped.append((shown_name(relative), "the name is not valid UTF-8; rename it"))
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if depth + 1 >= MAX_FOLDER_DEPTH:
                            warnings.append(f"folder {relative} skipped: deeper than {MAX_FOLDER_DEPTH} levels")
                        else:
                            folders.append((Path(entry.path), relative + "/", depth + 1))
                        continue
                    if Path(entry.name).suffix.lower() not in DOCUMENT_SUFFIXES:
                        continue
                    if entry.is_symlink():
                        if not self._inside(os.path.realpath(entry.path), real_root):
                            skipped.append((relative, "a link to a file outside the corpus folder; not followed"))
                            continue
                    status = entry.stat()
                except OSError as error:
                    skipped.append((relative, f"cannot be read ({error.strerror or error})"))
                    continue
                if not stat.S_ISREG(status.st_mode):
                    skipped.append((relative, "not a regular file"))
                elif status.st_size > self.max_bytes:
                    skipped.append((relative, _size_limit(self.max_bytes)))
                else:
                    signatures[relative] = _signature(status)
        if not signatures:
            why = "".join(f"; {source}: {reason}" for source, reason in skipped)
            raise CorpusError(f"no .txt or .md files in corpus folder {self.root}: add documents or pass --corpus DIR{why}")
        return Scan(dict(sorted(signatures.items())), tuple(sorted(skipped)), tuple(warnings))

    def signature(self, source: str) -> str | None:
        """Size, modification times and inode of a source's file; ``None`` when it is gone."""
        try:
            return _signature(os.stat(self.root / source))
        except OSError:
            return None

    def path(self, source: str) -> Path:
        """The file behind a source name."""
        return self.root / source

    def _read(self, source: str) -> tuple[bytes, os.stat_result]:
        """The bytes of a source and its status taken before reading, checked to lie inside the folder."""
        real_root = self._real_root()
        try:
            handle = open(self.path(source), "rb", opener=_opener)  # noqa: SIM115 - closed below
        except OSError as error:
            raise CorpusError(f"{source}: cannot be read ({error.strerror or error})") from error
        with handle:
            status = os.fstat(handle.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise CorpusError(f"{source}: not a regular file")
            if not self._inside(_opened_path(handle.fileno(), self.path(source)), real_root):
                raise CorpusError(f"{source}: a link to a file outside the corpus folder; not followed")
            data = handle.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise CorpusError(f"{source}: {_size_limit(self.max_bytes)}")
        return data, status

    def fingerprint(self, source: str) -> str:
        """SHA-256 of the file's current bytes."""
        return content_hash(self._read(source)[0])

    def load(self, source: str) -> Loaded:
        """Read and parse one file; the document is ``None`` when the file holds no text."""
        data, status = self._read(source)
        text, warnings = decode(data, source)
        return Loaded(parse_text(source, text, warnings), content_hash(data), _signature(status))


def _opener(path: str, flags: int) -> int:
    """Open without blocking on a FIFO that took a document's name."""
    return os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)


def _opened_path(descriptor: int, fallback: Path) -> str:
    """Where an open file really is (``/proc`` knows, whatever links led there)."""
    try:
        return os.readlink(f"/proc/self/fd/{descriptor}")
    except OSError:
        return os.path.realpath(fallback)


def _size_limit(size: int) -> str:
    shown = f"{size / (1024 * 1024):g} MB" if size >= 1024 * 1024 else f"{size:,} bytes"
    return f"larger than the {shown} limit per file (--max-file-mb)"
