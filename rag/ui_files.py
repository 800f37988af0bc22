"""Files the web app writes: result exports (JSON, CSV, the digest as Markdown) and checked uploads into the corpus folder.

>>> safe_name("../../etc/Brief 12.txt")
'Brief 12.txt'
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import DOCUMENT_SUFFIXES
from .digest import digest_markdown
from .errors import RagError

#: Largest accepted upload, in bytes.
MAX_UPLOAD_BYTES = 2 * 1024 * 1024

#: Columns of the CSV export, in order (``sentence_*`` describe the supporting sentence).
CSV_COLUMNS = (
    "rank", "score", "confidence", "source", "title", "week_start", "week_end", "category", "trend",
    "start", "end", "sentence_start", "sentence_end", "sentence", "text",
)

#: First characters that make a spreadsheet read a cell as a formula (OWASP: CSV injection).
_FORMULA_STARTS = frozenset("=+-@\t\r")

_NAME_RE = re.compile(r"[\w][\w .()+,-]*", re.UNICODE)
_MAX_NAME_LENGTH = 120


class UploadError(RagError):
    """An uploaded file was refused (bad name, type, size or encoding, or a name clash)."""


def write_json(payload: Mapping[str, Any], folder: Path) -> Path:
    """Write ``payload`` to ``folder/results.json`` (UTF-8, indented) and return the path."""
    path = folder / "results.json"
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def write_csv(payload: Mapping[str, Any], folder: Path) -> Path:
    """Write one row per hit with the question and :data:`CSV_COLUMNS` to ``folder/results.csv``.

    UTF-8 with a byte-order mark, so spreadsheet programs read the quotes' characters right; a text
    cell a spreadsheet would take for a formula gets a leading apostrophe (:func:`spreadsheet_text`).
    """
    path = folder / "results.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("question", *CSV_COLUMNS))
        for hit in payload["hits"]:
            sentence = hit["sentence"]
            row = {**hit, "sentence_start": sentence["start"], "sentence_end": sentence["end"], "sentence": sentence["text"]}
            writer.writerow([spreadsheet_text(value) for value in (payload["question"], *(row[c] for c in CSV_COLUMNS))])
    return path


def spreadsheet_text(value: Any) -> Any:
    """``value``, with an apostrophe before a text that a spreadsheet would run as a formula
    (one starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return); numbers as they are.

    >>> print(spreadsheet_text('=HYPERLINK("http://x")'), spreadsheet_text("Roketsan"), spreadsheet_text(-0.5))
    '=HYPERLINK("http://x") Roketsan -0.5
    """
    if isinstance(value, str) and value[:1] in _FORMULA_STARTS:
        return "'" + value
    return value


def write_digest(payload: Mapping[str, Any], folder: Path) -> Path:
    """Write the evidence digest of ``payload`` to ``folder/digest.md`` and return the path.

    The text is the one "Copy digest as Markdown" gives: :func:`rag.digest.digest_markdown`.
    """
    path = folder / "digest.md"
    path.write_text(digest_markdown(payload["question"], payload["digest"]), encoding="utf-8")
    return path


def safe_name(name: str) -> str:
    """The file name to store an upload under: directories stripped, hidden or odd names refused.

    Raises ``UploadError`` for a hidden name, unusual characters, an over-long name or a
    suffix other than ``.txt``/``.md``.
    """
    base = re.split(r"[/\\]", name.strip())[-1].strip()
    if not base or base.startswith("."):
        raise UploadError(f"{name!r}: hidden or empty file names are not accepted")
    if len(base) > _MAX_NAME_LENGTH or not _NAME_RE.fullmatch(base):
        raise UploadError(
            f"{base!r}: use a simple file name (letters, digits, spaces, . _ - ( ) + ,) of at most "
            f"{_MAX_NAME_LENGTH} characters"
        )
    if Path(base).suffix.lower() not in DOCUMENT_SUFFIXES:
        raise UploadError(f"{base}: only {' and '.join(DOCUMENT_SUFFIXES)} files can be added")
    return base


def read_upload(path: Path) -> bytes:
    """The bytes of an uploaded file, read up to one byte past the size limit."""
    with path.open("rb") as handle:
        return handle.read(MAX_UPLOAD_BYTES + 1)


def check_content(name: str, data: bytes) -> None:
    """Raise ``UploadError`` unless ``data`` is non-empty UTF-8 text within the size limit."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadError(f"{name}: larger than the {MAX_UPLOAD_BYTES // (1024 * 1024)} MB limit")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UploadError(
            f"{name}: not UTF-8 text (first bad byte at offset {error.start}); save it as UTF-8 and upload it again"
        ) from None
    if "\x00" in text:
        raise UploadError(f"{name}: looks like a binary file, not text")
    if not text.strip():
        raise UploadError(f"{name}: the file holds no text")


def save_upload(name: str, data: bytes, corpus_dir: Path) -> tuple[str, bool]:
    """Check an upload and store it in ``corpus_dir``; returns (stored name, whether it is new).

    An identical file already in the folder is left alone (returns ``False``); a different
    file of the same name is never overwritten (``UploadError``).
    """
    stored = safe_name(name)
    check_content(stored, data)
    target = corpus_dir / stored
    clash = UploadError(f"{stored}: a different file of that name is already in the corpus; rename it and upload again")
    if target.exists():
        if target.is_file() and target.read_bytes() == data:
            return stored, False
        raise clash
    try:
        with target.open("xb") as handle:
            handle.write(data)
    except FileExistsError:
        raise clash from None
    return stored, True
