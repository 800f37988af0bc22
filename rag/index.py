"""Build, update and open the persisted index: manifest, locking, atomic replace, staleness checks.

Layout of an index folder::

    index/
      CURRENT              name of the live generation (replaced atomically)
      gen-000003/          one complete generation, never modified once published
        manifest.json      format, model and its files, settings, per-source fingerprints, file checksums
        READERS            every process serving this generation holds a shared lock on it
        vectors.faiss      chunk vectors (FAISS, inner product, id map)
        passages.sqlite    documents, chunks, sentence vectors
        lexical/           bm25s index over the same chunk ids
        lexical-documents/ bm25s index over whole documents, each under its first chunk's id
        encoder/           the model's question encoder as ONNX + tokenizer (hard-linked between generations)
      .lock                held by the one process that builds, updates or cleans

A new generation is written into a temporary folder and renamed into place; ``CURRENT`` is
switched last. A crash at any point leaves the previous generation live. Readers take no
index-wide lock: they read ``CURRENT`` and hold a shared lock on that generation's
``READERS`` file while they serve it; a generation is deleted only when it is no longer
current and nobody holds that lock. Opening compares the manifest with the corpus (cheap
signatures first, content hashes only for files whose signature moved), the settings and
the model's files, then updates only what changed. Opening checks what is cheap: the
manifest, each file's size and modification time (a file whose time moved is hashed), and
that the stores agree; every checksum is verified when a generation is published, when it
fails to load, and by :func:`check_index` (``rag index --check``). An index whose files fail
these checks is rebuilt from scratch. Stale vectors are never served.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checksums import FileRecord, changed_files, records
from .chunking import chunk_document
from .config import IndexSettings
from .documents import Corpus, Document, Scan
from .onnx_encoder import FILES as ENCODER_FILES
from .embedding import MODEL_BACKEND, ONNX_BACKEND, PassageEmbedder, model_file_names, resolve_model_path
from .errors import CorpusError, IndexCorruptError, IndexWriteError, ModelError, RagError
from .stores.faiss_store import FaissStore
from .stores.lexical import LexicalStore
from .stores.passages import Filters, PassageStore

FORMAT_VERSION = 4
CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
READERS_FILE = "READERS"
VECTORS_FILE = "vectors.faiss"
PASSAGES_FILE = "passages.sqlite"
LEXICAL_DIR = "lexical"
DOCUMENT_LEXICAL_DIR = "lexical-documents"
ENCODER_DIR = "encoder"
LOCK_FILE = ".lock"
DOCUMENTS_PER_BATCH = 64
_GENERATION_RE = re.compile(r"gen-\d{6,}")
_OPEN_ATTEMPTS = 5

#: Called with a message when the writer lock is held by another process and the caller waits.
WaitNotice = Callable[[str], None]


class _FormatChanged(IndexCorruptError):
    """The index was written in another format version; it is rebuilt, not repaired."""


class _Vanished(Exception):
    """The generation named by ``CURRENT`` was replaced and removed while it was being opened."""


# ---------------------------------------------------------------------------
# The manifest: one declaration of its schema
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceEntry:
    """What the index holds of one source."""

    fingerprint: str  # SHA-256 of exactly the bytes that were indexed ("" when unreadable)
    signature: str  # the corpus's cheap signature, taken before those bytes were read
    status: str  # "indexed" or "skipped"
    passages: int = 0
    kind: str | None = None
    note: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """The manifest of a generation; :meth:`from_dict` refuses anything malformed."""

    format: int
    model: str
    model_files: dict[str, FileRecord]
    encoder: str  # how questions are encoded: "onnx" (files in encoder/) or "sentence-transformers"
    dimension: int
    settings: dict[str, Any]
    corpus: str
    created: str
    sources: dict[str, SourceEntry]
    files: dict[str, FileRecord]

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready values."""
        values = asdict(self)
        values["model_files"] = {name: record.to_dict() for name, record in self.model_files.items()}
        values["files"] = {name: record.to_dict() for name, record in self.files.items()}
        values["sources"] = {
            source: {key: value for key, value in asdict(entry).items() if value not in (None, ())}
            for source, entry in self.sources.items()
        }
        return values

    @classmethod
    def from_dict(cls, values: Any) -> Manifest:
        """Parse a manifest; raises ``IndexCorruptError`` (``_FormatChanged`` for another format)."""
        if not isinstance(values, dict):
            raise IndexCorruptError("the manifest is not a JSON object")
        if values.get("format") != FORMAT_VERSION:
            raise _FormatChanged(f"the index format changed ({values.get('format')!r} -> {FORMAT_VERSION})")
        try:
            manifest = cls(
                format=FORMAT_VERSION,
                model=_typed(values["model"], str),
                model_files={_typed(n, str): FileRecord.from_dict(r) for n, r in _typed(values["model_files"], dict).items()},
                encoder=_typed(values["encoder"], str),
                dimension=_typed(values["dimension"], int),
                settings=_typed(values["settings"], dict),
                corpus=_typed(values["corpus"], str),
                created=_typed(values["created"], str),
                sources={_typed(s, str): _source_entry(e) for s, e in _typed(values["sources"], dict).items()},
                files={_typed(n, str): FileRecord.from_dict(r) for n, r in _typed(values["files"], dict).items()},
            )
        except (KeyError, TypeError, ValueError) as error:
            raise IndexCorruptError(f"the manifest is malformed ({error.__class__.__name__}: {error})") from None
        if set(values) != {f for f in cls.__dataclass_fields__}:
            raise IndexCorruptError("the manifest has unexpected or missing fields")
        return manifest

    def model_identity(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What questions must be encoded with: the backend, the model and its files' hashes."""
        return self.encoder, self.model, tuple(sorted((name, r.sha256) for name, r in self.model_files.items()))

    def counts(self) -> tuple[int, int]:
        """(indexed documents, passages)."""
        entries = [entry for entry in self.sources.values() if entry.status == "indexed"]
        return len(entries), sum(entry.passages for entry in entries)


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _source_entry(values: Any) -> SourceEntry:
    values = dict(_typed(values, dict))
    values["warnings"] = tuple(_typed(w, str) for w in _typed(values.get("warnings", []), list))
    entry = SourceEntry(**values)
    if entry.status not in ("indexed", "skipped") or not _typed(entry.passages, int) >= 0:
        raise ValueError("a source entry has a bad status or passage count")
    _typed(entry.fingerprint, str), _typed(entry.signature, str)
    return entry


# ---------------------------------------------------------------------------
# Reports and open generations
# ---------------------------------------------------------------------------


@dataclass
class IndexReport:
    """What opening an index did, in words an interface can print."""

    action: str = "opened"  # opened | built | updated | rebuilt
    reason: str = ""
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    documents: int = 0
    passages: int = 0
    seconds: float = 0.0

    def messages(self) -> list[str]:
        """One line per fact worth telling the user."""
        lines = list(self.warnings)
        lines += [f"skipped {source}: {why}" for source, why in self.skipped]
        if self.action == "opened":
            lines.append(f"index up to date: {self.documents} documents, {self.passages} passages")
            return lines
        parts = [f"{len(items)} {label}" for label, items in
                 (("added", self.added), ("changed", self.changed), ("removed", self.removed)) if items]
        detail = f" ({', '.join(parts)})" if parts and self.action == "updated" else ""
        reason = f" because {self.reason}" if self.reason else ""
        lines.append(
            f"index {self.action}{reason}{detail}: {self.documents} documents, "
            f"{self.passages} passages in {self.seconds:.1f}s"
        )
        return lines


class OpenIndex:
    """A live, verified index generation with its stores loaded.

    While open it holds a shared lock on the generation's ``READERS`` file, so no process
    deletes the generation under it. Threads that search take a lease (:meth:`acquire`,
    :meth:`release`); :meth:`close` retires the index, and it is closed for real when the
    last lease is released.
    """

    def __init__(
        self,
        directory: Path,
        manifest: Manifest,
        stores: tuple[FaissStore, LexicalStore, LexicalStore, PassageStore],
        readers: int,
        report: IndexReport,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.vectors, self.lexical, self.document_lexical, self.passages = stores
        self.report = report
        #: Signatures under which each source's indexed content is known to be on disk now.
        self.signatures = {source: entry.signature for source, entry in manifest.sources.items()}
        # Closes the READERS lock when the index is dropped without close(), as when a
        # script lets a Retriever go: the generation must not stay pinned for ever.
        self._release_readers = weakref.finalize(self, os.close, readers)
        self._lock = threading.Lock()
        self._leases = 0
        self._retired = False
        self._closed = False
        self._sources: dict[int, str] | None = None

    def acquire(self) -> OpenIndex:
        """Take a lease: the stores stay open until :meth:`release`."""
        with self._lock:
            if self._closed:
                raise RuntimeError(f"index generation {self.directory.name} is closed")
            self._leases += 1
        return self

    def release(self) -> None:
        """Return a lease; closes a retired index when it was the last one."""
        with self._lock:
            self._leases -= 1
            last = self._retired and self._leases == 0 and not self._closed
            self._closed = self._closed or last
        if last:
            self._close()

    def close(self) -> None:
        """Retire the index: it closes now, or when its last lease is released."""
        with self._lock:
            self._retired = True
            now = self._leases == 0 and not self._closed
            self._closed = self._closed or now
        if now:
            self._close()

    def encoder_identity(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """Equal for two generations whose questions are encoded the same way."""
        return self.manifest.model_identity()

    def is_current(self) -> bool:
        """True while ``CURRENT`` names this generation."""
        try:
            return _current_generation(self.directory.parent) == self.directory
        except IndexCorruptError:
            return False

    @property
    def closed(self) -> bool:
        """True once the stores are closed."""
        return self._closed

    def _close(self) -> None:
        self.passages.close()
        self._release_readers()
        _remove_if_unused(self.directory)

    def source_of(self, passage_id: int) -> str | None:
        """The source of a passage id (``None`` when unknown); the map is read once, on first use."""
        if self._sources is None:
            self._sources = {i: source for source, ids in _passage_ids(self.passages).items() for i in ids}
        return self._sources.get(passage_id)


def search_text(kind: str, title: str, text: str) -> str:
    """The text embedded and BM25-indexed for a passage: the title leads unless it is a file name."""
    return text if kind == "text" else f"{title}\n{text}"


# ---------------------------------------------------------------------------
# Files, locking, loading
# ---------------------------------------------------------------------------


def _index_file_names(directory: Path) -> list[str]:
    files = [
        directory / VECTORS_FILE,
        directory / PASSAGES_FILE,
        *sorted((directory / LEXICAL_DIR).iterdir()),
        *sorted((directory / DOCUMENT_LEXICAL_DIR).iterdir()),
        *(sorted((directory / ENCODER_DIR).iterdir()) if (directory / ENCODER_DIR).is_dir() else []),
    ]
    return [path.relative_to(directory).as_posix() for path in files]


def _fsync_tree(directory: Path) -> None:
    for path in [*directory.rglob("*"), directory]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make renames inside ``directory`` durable (a power cut must not undo a published switch)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, content: str) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_dir(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _clean_if_idle(index_dir: Path) -> None:
    """Remove what crashed writers left behind, when no writer is at work (else that writer will).

    Costs one directory listing when there is nothing to remove; never waits for a lock.
    """
    names = os.listdir(index_dir)
    if not any(name.startswith((".tmp-", f".{CURRENT_FILE}.")) for name in names) and sum(
        1 for name in names if _GENERATION_RE.fullmatch(name)
    ) < 2:
        return
    with contextlib.suppress(BlockingIOError, IndexWriteError), _writer_lock(index_dir, None, wait=False):
        _clean(index_dir)  # skipped when a writer holds the lock, or the folder is read-only


@contextlib.contextmanager
def _writer_lock(index_dir: Path, on_wait: WaitNotice | None, *, wait: bool = True) -> Iterator[None]:
    """Hold the index folder's writer lock; tells ``on_wait`` when another process has it.

    With ``wait=False`` a lock held elsewhere raises ``BlockingIOError`` instead of waiting.
    """
    try:
        index_dir.mkdir(parents=True, exist_ok=True)
        handle = (index_dir / LOCK_FILE).open("a")
    except OSError as error:
        raise IndexWriteError(
            f"the index in {index_dir} must be built or updated, but the folder cannot be written "
            f"({error.strerror or error})"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise
            if on_wait is not None:
                on_wait(f"waiting for the index lock on {index_dir} (another process is building the index)…")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _current_generation(index_dir: Path) -> Path | None:
    path = index_dir / CURRENT_FILE
    try:
        name = path.read_bytes().decode("utf-8").strip()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise IndexCorruptError(f"{path} is a folder, not a file") from None
    except UnicodeDecodeError:
        raise IndexCorruptError(f"{path} is not text") from None
    except OSError as error:
        raise IndexCorruptError(f"cannot read {path}: {error.strerror or error}") from None
    if not _GENERATION_RE.fullmatch(name):
        raise IndexCorruptError(f"{path} does not name a generation")
    return index_dir / name


def _hold_readers(directory: Path) -> int:
    """A descriptor holding a shared lock on the generation's ``READERS`` file."""
    try:
        fd = os.open(directory / READERS_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if directory.is_dir():
            raise IndexCorruptError(f"{READERS_FILE} is missing") from None
        raise _Vanished from None
    except OSError as error:
        raise IndexCorruptError(f"cannot open {READERS_FILE}: {error.strerror or error}") from None
    fcntl.flock(fd, fcntl.LOCK_SH)
    if not directory.is_dir():  # removed by a cleaner between our open and our lock
        os.close(fd)
        raise _Vanished
    return fd


def _read_manifest(directory: Path) -> Manifest:
    try:
        values = json.loads((directory / MANIFEST_FILE).read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise IndexCorruptError(f"manifest unreadable ({error.__class__.__name__})") from None
    return Manifest.from_dict(values)


def _damaged(directory: Path, manifest: Manifest, *, deep: bool) -> None:
    """Raise ``IndexCorruptError`` naming the files that differ from their records."""
    if not manifest.files:
        raise IndexCorruptError("the manifest lists no index file")
    damaged = changed_files(directory, manifest.files, deep=deep)
    if damaged:
        raise IndexCorruptError(f"{', '.join(damaged)} missing, truncated or corrupted (checksum mismatch)")


def _load(directory: Path, report: IndexReport) -> OpenIndex:
    """Check a generation cheaply against its manifest and load its stores.

    Sizes and modification times are compared (a file whose time moved is hashed); when
    a store then fails to load, every checksum is verified to name the damaged file.
    """
    readers = _hold_readers(directory)
    try:
        manifest = _read_manifest(directory)
        _damaged(directory, manifest, deep=False)
        try:
            vectors = FaissStore.load(directory / VECTORS_FILE)
            lexical = LexicalStore.load(directory / LEXICAL_DIR)
            document_lexical = LexicalStore.load(directory / DOCUMENT_LEXICAL_DIR)
            passages = PassageStore(directory / PASSAGES_FILE, read_only=True)
        except (RuntimeError, OSError, ValueError, sqlite3.DatabaseError) as error:
            _damaged(directory, manifest, deep=True)
            raise IndexCorruptError(f"index files unreadable ({error})") from None
        try:
            if len(vectors) != passages.count() or len(lexical) != len(vectors):
                raise IndexCorruptError("stores disagree on the number of passages")
            if len(document_lexical) != sum(1 for entry in manifest.sources.values() if entry.passages):
                raise IndexCorruptError("the document-level lexical store disagrees with the manifest")
        except sqlite3.DatabaseError as error:
            passages.close()
            _damaged(directory, manifest, deep=True)
            raise IndexCorruptError(f"index files unreadable ({error})") from None
        except IndexCorruptError:
            passages.close()
            raise
    except BaseException:
        os.close(readers)
        raise
    report.documents, report.passages = manifest.counts()
    return OpenIndex(directory, manifest, (vectors, lexical, document_lexical, passages), readers, report)


def _load_current(index_dir: Path) -> OpenIndex | None:
    """The generation ``CURRENT`` names, loaded (``None`` when there is none yet)."""
    for _ in range(_OPEN_ATTEMPTS):
        directory = _current_generation(index_dir)
        if directory is None:
            return None
        try:
            return _load(directory, IndexReport())
        except _Vanished:
            if _current_generation(index_dir) == directory:
                raise IndexCorruptError(f"{CURRENT_FILE} names a missing generation") from None
    raise IndexCorruptError("the index kept changing while it was opened")


def check_index(index_dir: Path) -> tuple[list[str], list[str]]:
    """Verify the current generation completely, in the spirit of ``PRAGMA integrity_check``.

    Every file against its SHA-256, SQLite's integrity check, the stores' agreement and the
    question encoder. Returns (findings, problems); the index is sound when ``problems`` is empty.
    """
    try:
        index = _load_current(Path(index_dir))
    except IndexCorruptError as error:
        return [], [str(error)]
    if index is None:
        return [], [f"there is no index in {index_dir}"]
    findings = [f"generation {index.directory.name}: {index.report.documents} documents, {index.report.passages} passages"]
    problems: list[str] = []
    try:
        damaged = changed_files(index.directory, index.manifest.files, deep=True)
        problems += [f"{name}: missing or changed since it was written (checksum mismatch)" for name in damaged]
        if not damaged:
            findings.append(f"{len(index.manifest.files)} files match their SHA-256 checksums")
        try:
            index.passages.check()
            findings.append("SQLite integrity check: ok")
        except sqlite3.DatabaseError as error:
            problems.append(f"{PASSAGES_FILE}: SQLite integrity check failed: {error}")
        if index.manifest.encoder == ONNX_BACKEND:
            from .onnx_encoder import OnnxQuestionEncoder

            try:
                shape = OnnxQuestionEncoder(index.directory / ENCODER_DIR).encode(["integrity check"]).shape
                if shape != (1, index.manifest.dimension):
                    raise ModelError(f"it gives vectors of shape {shape}, the index holds {index.manifest.dimension}")
                findings.append("ONNX question encoder: loads and gives vectors of the index's dimension")
            except ModelError as error:
                problems.append(f"{ENCODER_DIR}: {error}")
        else:
            findings.append("questions are encoded with sentence-transformers (no ONNX export in this index)")
    finally:
        index.close()
    return findings, problems


def load_current(index_dir: Path, settings: IndexSettings) -> OpenIndex | None:
    """The current generation, opened without any writer lock, when it is sound and made with
    ``settings`` and the model as it is now; ``None`` otherwise (a full open then decides)."""
    try:
        index = _load_current(Path(index_dir))
    except IndexCorruptError:
        return None
    if index is None:
        return None
    try:
        stale = _stale_reason(index.manifest, settings)
    except RagError:
        stale = "the model cannot be checked"
    if stale:
        index.close()
        return None
    return index


def current_marker(index_dir: Path) -> tuple[int, int, int] | None:
    """A cheap token that changes whenever ``CURRENT`` is switched (``None`` when it is missing)."""
    try:
        status = os.stat(Path(index_dir) / CURRENT_FILE)
    except OSError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def _generation_number(directory: Path) -> int:
    return int(directory.name[4:]) if _GENERATION_RE.fullmatch(directory.name) else -1


def _remove_if_unused(directory: Path, *, writer: bool = False) -> bool:
    """Delete a generation that is not current and that no process serves; True when deleted.

    Without the writer lock (``writer=False``) only generations older than the current one
    are touched: a newer one may be a writer's, renamed into place a moment before ``CURRENT``.
    """
    try:
        current = _current_generation(directory.parent)
    except IndexCorruptError:
        current = None
        if not writer:
            return False
    if current == directory or (not writer and (current is None or _generation_number(directory) > _generation_number(current))):
        return False
    try:
        fd = os.open(directory / READERS_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = None  # a generation from an older format, or half deleted: nobody can serve it
    except OSError:
        return False
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return False
                raise
        shutil.rmtree(directory, ignore_errors=True)
        return not directory.exists()
    finally:
        if fd is not None:
            os.close(fd)


def _clean(index_dir: Path) -> None:
    """Under the writer lock: remove unused generations and what crashed writers left behind."""
    for path in index_dir.glob("gen-*"):
        if path.is_dir():
            _remove_if_unused(path, writer=True)
    for path in index_dir.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
    for path in index_dir.glob(f".{CURRENT_FILE}.*.tmp"):
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _model_records(model: str) -> dict[str, FileRecord]:
    root = resolve_model_path(model)
    return records(root, model_file_names(root), with_mtime=True)


def _stale_reason(manifest: Manifest, settings: IndexSettings) -> str | None:
    if manifest.model != settings.model:
        return f"the model changed ({manifest.model} -> {settings.model})"
    if manifest.settings != settings.to_dict():
        return "the index settings changed"
    root = resolve_model_path(settings.model)
    moved = changed_files(root, manifest.model_files)
    if moved or set(model_file_names(root)) != set(manifest.model_files):
        return f"the model's files changed ({', '.join(moved) or 'files added or removed'})"
    return None


@contextlib.contextmanager
def _progress_bar(documents: int, shown: bool) -> Iterator[Callable[[int], None]]:
    """A callback that advances a progress bar over ``documents`` on stderr (a no-op when not shown)."""
    if not shown or not documents:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TextColumn("documents"),
               TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("embedding", total=documents)
        yield lambda done: progress.advance(task, done)


@dataclass
class _Plan:
    """What opening found: the live generation (if usable) and what must change."""

    previous: OpenIndex | None
    report: IndexReport
    verified: dict[str, str]  # sources whose signature moved but whose content did not

    @property
    def up_to_date(self) -> bool:
        return self.report.action == "opened"


def _plan(corpus: Corpus, scan: Scan, index_dir: Path, settings: IndexSettings, rebuild: bool) -> _Plan:
    report = IndexReport(skipped=list(scan.skipped), warnings=list(scan.warnings))
    try:
        previous = _load_current(index_dir)
    except IndexCorruptError as error:
        report.action = "rebuilt"
        report.reason = str(error) if isinstance(error, _FormatChanged) else f"the existing index was corrupted: {error}"
        return _Plan(None, report, {})
    if previous is None:
        report.action = "built"
        return _Plan(None, report, {})
    try:
        stale = _stale_reason(previous.manifest, settings) or ("a rebuild was requested" if rebuild else None)
    except BaseException:
        previous.close()
        raise
    if stale:
        previous.close()
        report.action, report.reason = "rebuilt", stale
        return _Plan(None, report, {})
    known = previous.manifest.sources
    verified: dict[str, str] = {}
    for source, signature in scan.signatures.items():
        if source not in known:
            report.added.append(source)
        elif known[source].signature != signature:
            try:
                same = corpus.fingerprint(source) == known[source].fingerprint
            except CorpusError:
                same = False
            if same:
                verified[source] = signature
            else:
                report.changed.append(source)
    report.removed = sorted(set(known) - set(scan.signatures))
    if report.added or report.changed or report.removed:
        report.action, report.reason = "updated", "the corpus changed"
    else:
        previous.signatures.update(verified)
        previous.report = report
        report.documents, report.passages = previous.manifest.counts()
    return _Plan(previous, report, verified)


class _Builder:
    """Writes one new generation: copies the previous one, applies source changes."""

    def __init__(self, corpus: Corpus, settings: IndexSettings, embed: Callable[[], PassageEmbedder], progress: bool):
        self.corpus = corpus
        self.settings = settings
        self.embed = embed
        self.progress = progress

    def write(self, folder: Path, plan: _Plan, scan: Scan) -> Manifest:
        embedder = self.embed()
        previous, report = plan.previous, plan.report
        sources: dict[str, SourceEntry] = dict(previous.manifest.sources) if previous else {}
        for source, signature in plan.verified.items():
            sources[source] = SourceEntry(**{**asdict(sources[source]), "signature": signature})
        (folder / READERS_FILE).touch()
        if previous:
            shutil.copy2(previous.directory / PASSAGES_FILE, folder / PASSAGES_FILE)
            vectors = FaissStore.load(previous.directory / VECTORS_FILE)
        else:
            vectors = FaissStore.create(embedder.dimension)
        passages = PassageStore(folder / PASSAGES_FILE)
        try:
            outdated = [s for s in sources if s not in scan.signatures or s in report.changed]
            vectors.remove(passages.remove_sources(outdated))
            for source in outdated:
                del sources[source]
            todo = [s for s in scan.signatures if s not in sources]
            with _progress_bar(len(todo), self.progress) as advance:
                for first in range(0, len(todo), DOCUMENTS_PER_BATCH):
                    batch = todo[first : first + DOCUMENTS_PER_BATCH]
                    self._add_batch(batch, scan, embedder, vectors, passages, sources, report)
                    advance(len(batch))
            rows = passages.search_texts()
            lexical = LexicalStore.build(
                np.asarray([row[0] for row in rows], dtype=np.int64), [search_text(*row[1:]) for row in rows]
            )
            document_lexical = _document_lexical(passages)
        finally:
            passages.close()
        vectors.save(folder / VECTORS_FILE)
        lexical.save(folder / LEXICAL_DIR)
        document_lexical.save(folder / DOCUMENT_LEXICAL_DIR)
        model_files = _model_records(self.settings.model)
        return Manifest(
            format=FORMAT_VERSION,
            model=self.settings.model,
            model_files=model_files,
            encoder=_question_encoder_files(embedder, folder / ENCODER_DIR, previous, model_files, report),
            dimension=embedder.dimension,
            settings=self.settings.to_dict(),
            corpus=repr(self.corpus),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            sources=dict(sorted(sources.items())),
            files=records(folder, _index_file_names(folder), with_mtime=True),
        )

    def _add_batch(
        self,
        batch: list[str],
        scan: Scan,
        embedder: PassageEmbedder,
        vectors: FaissStore,
        passages: PassageStore,
        sources: dict[str, SourceEntry],
        report: IndexReport,
    ) -> None:
        loaded: list[tuple[Document, list[Any], str]] = []
        for source in batch:
            try:
                read = self.corpus.load(source)
            except CorpusError as error:
                sources[source] = SourceEntry("", scan.signatures[source], "skipped", note=str(error))
                report.skipped.append((source, str(error)))
                continue
            doc = read.document
            if doc is None:
                sources[source] = SourceEntry(read.fingerprint, read.signature, "skipped", note="no text to index")
                report.skipped.append((source, "no text to index"))
                continue
            report.warnings.extend(doc.warnings)
            chunks = chunk_document(
                doc, embedder.count_tokens, self.settings.chunk_tokens, self.settings.overlap_tokens
            )
            sources[source] = SourceEntry(
                read.fingerprint, read.signature, "indexed", len(chunks), doc.kind, warnings=tuple(doc.warnings)
            )
            loaded.append((doc, chunks, read.fingerprint))
        texts = [search_text(doc.kind, doc.title, chunk.text) for doc, chunks, _ in loaded for chunk in chunks]
        chunk_vectors = embedder.encode(texts)
        sentence_spans = [sorted({s for chunk in chunks for s in chunk.sentences}) for _, chunks, _ in loaded]
        sentence_vectors = None
        if self.settings.embed_sentences:
            sentence_vectors = embedder.encode(
                [doc.text[s:e] for (doc, _, _), spans in zip(loaded, sentence_spans) for s, e in spans]
            )
        chunk_row = sentence_row = 0
        for (doc, chunks, fingerprint), spans in zip(loaded, sentence_spans):
            doc_sentence_vectors = (
                sentence_vectors[sentence_row : sentence_row + len(spans)] if sentence_vectors is not None else None
            )
            ids = passages.add_document(doc, fingerprint, chunks, spans, doc_sentence_vectors)
            vectors.add(ids, chunk_vectors[chunk_row : chunk_row + len(chunks)])
            chunk_row += len(chunks)
            sentence_row += len(spans)


#: Encoder folders of generations this process published, by model identity: later builds link them.
_ENCODERS: dict[tuple[tuple[str, str], ...], Path] = {}


def _question_encoder_files(
    embedder: PassageEmbedder,
    target: Path,
    previous: OpenIndex | None,
    model_files: dict[str, FileRecord],
    report: IndexReport,
) -> str:
    """Put the torch-free question encoder into ``target``; returns the manifest's ``encoder`` value.

    The files are hard-linked from the previous generation (or from a folder this process
    made for the same model files) when there is one, else exported once.
    """
    identity = tuple(sorted((name, record.sha256) for name, record in model_files.items()))
    sources = []
    if previous is not None and previous.manifest.encoder == ONNX_BACKEND and previous.manifest.model_files == model_files:
        sources.append(previous.directory / ENCODER_DIR)
    if identity in _ENCODERS:
        sources.append(_ENCODERS[identity])
    for source in sources:
        with contextlib.suppress(OSError):
            _link_tree(source, target)
            if all((target / name).is_file() for name in ENCODER_FILES):
                return ONNX_BACKEND
        shutil.rmtree(target, ignore_errors=True)
    try:
        embedder.export_question_encoder(target)
    except ModelError as error:
        shutil.rmtree(target, ignore_errors=True)
        report.warnings.append(f"questions will be encoded with sentence-transformers (slower start): {error}")
        return MODEL_BACKEND
    return ONNX_BACKEND


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link (copy where linking fails) every file of ``source`` into ``target``."""
    target.mkdir(parents=True)
    for path in source.iterdir():
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)


def _passage_ids(passages: PassageStore) -> dict[str, list[int]]:
    """The chunk ids of every stored document that has chunks, by source."""
    by_source = {entry["source"]: passages.filtered_ids(Filters(sources=(entry["source"],))) for entry in passages.documents()}
    return {source: ids for source, ids in by_source.items() if ids}


def _document_lexical(passages: PassageStore) -> LexicalStore:
    """BM25 over whole documents (title and body), each stored under the id of its first chunk."""
    ids, texts = [], []
    for source, chunk_ids in _passage_ids(passages).items():
        doc = passages.document(source)
        if doc is not None:
            ids.append(min(chunk_ids))
            texts.append(search_text(doc.kind, doc.title, doc.text[doc.body[0][0] : doc.body[-1][1]]))
    return LexicalStore.build(np.asarray(ids, dtype=np.int64), texts)


def _publish(index_dir: Path, folder: Path, manifest: Manifest) -> Path:
    """Seal a written generation and make it the live one."""
    _write_atomic(folder / MANIFEST_FILE, json.dumps(manifest.to_dict(), indent=1, ensure_ascii=False))
    _fsync_tree(folder)
    numbers = [int(p.name[4:]) for p in index_dir.glob("gen-*") if p.name[4:].isdigit()]
    generation = index_dir / f"gen-{max(numbers, default=0) + 1:06d}"
    os.rename(folder, generation)
    _fsync_dir(index_dir)
    current = index_dir / CURRENT_FILE
    if current.is_dir() and not current.is_symlink():
        shutil.rmtree(current)
    _write_atomic(current, generation.name + "\n")
    return generation


def open_index(
    corpus: Corpus,
    index_dir: Path,
    settings: IndexSettings,
    embed: Callable[[], PassageEmbedder],
    *,
    progress: bool = False,
    rebuild: bool = False,
    on_wait: WaitNotice | None = None,
) -> OpenIndex:
    """Open the index of ``corpus`` in ``index_dir``, building or updating it first when needed.

    An up-to-date index is opened without any index-wide lock, so a read-only index folder
    can be searched. ``embed`` is called only when passages must be embedded. ``on_wait``
    hears when another process holds the writer lock. Raises ``CorpusError`` when the
    corpus cannot be listed, ``IndexWriteError`` when the index must change but cannot.
    """
    index_dir = Path(index_dir)
    scan = corpus.scan()
    plan = _plan(corpus, scan, index_dir, settings, rebuild)
    if plan.up_to_date:
        assert plan.previous is not None
        _clean_if_idle(index_dir)
        return plan.previous
    if plan.previous is not None:
        plan.previous.close()
    with _writer_lock(index_dir, on_wait):
        plan = _plan(corpus, scan, index_dir, settings, rebuild)  # another writer may have done the work
        if plan.up_to_date:
            assert plan.previous is not None
            return plan.previous
        started = time.perf_counter()
        folder = index_dir / f".tmp-{uuid.uuid4().hex}"
        try:
            folder.mkdir()
            manifest = _Builder(corpus, settings, embed, progress).write(folder, plan, scan)
            if not manifest.counts()[0]:
                raise CorpusError(
                    "no document in the corpus could be indexed: "
                    + "; ".join(f"{source}: {why}" for source, why in plan.report.skipped)
                )
            generation = _publish(index_dir, folder, manifest)
            if manifest.encoder == ONNX_BACKEND:
                _ENCODERS[manifest.model_identity()[2]] = generation / ENCODER_DIR
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            if plan.previous is not None:
                plan.previous.close()
        plan.report.seconds = time.perf_counter() - started
        opened = _load(generation, plan.report)
        _clean(index_dir)
        return opened
