"""Build, update and open the persisted index: manifest, locking, atomic replace, staleness checks.

Layout of an index folder::

    index/
      CURRENT              name of the live generation (replaced atomically)
      gen-000003/          one complete generation, never modified once published
        manifest.json      format, model and its files, settings, segments, per-source fingerprints
                           and live passage ids, file checksums
        READERS            every process serving this generation holds a shared lock on it
        seg-3f9c.../       an immutable segment (see rag.segments), hard-linked between generations:
          vectors.faiss      chunk vectors (a FAISS index chosen by the segment's size)
          passages.sqlite    documents, chunks, int8 sentence vectors
          lexical/           BM25 term counts over the same chunk ids
          lexical-documents/ BM25 term counts over whole documents, each under its first chunk's id
        encoder/           the model's question encoder as ONNX + tokenizer (hard-linked between generations)
      .lock                held by the one process that builds, updates or cleans

An update writes one new segment holding the added and changed briefs, links the previous
generation's segments into the new generation folder, and records in the manifest which
rows of each segment are live (a changed or removed brief's old rows are tombstoned by
leaving them out); it costs what changed. Small segments are merged as they accumulate
(see :func:`_merge_plan`). A new generation is written into a temporary folder and renamed
into place; ``CURRENT`` is switched last. A crash at any point leaves the previous generation live. Readers take no
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
from concurrent.futures import Future, ThreadPoolExecutor
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .checksums import FileRecord, changed_files, records
from .chunking import Chunk, chunk_document
from .config import DEFAULT_INDEX_TYPE, IndexSettings, StoreSettings
from .documents import Corpus, Document, Scan
from .onnx_encoder import QUESTION_FILES as ENCODER_FILES
from .embedding import MODEL_BACKEND, ONNX_BACKEND, PassageEmbedder, model_file_names, resolve_model_path
from .errors import CorpusError, IndexCorruptError, IndexWriteError, ModelError, RagError
from .segments import LiveSegments, Segment, SegmentEntry, SegmentWriter, segment_files, segments_store
from .segments import search_text as search_text
from .sources import SourceEntry as SourceEntry
from .sources import SourceTable
from .stores.base import LexicalIndex, PassageIndex, ReadableVectors

FORMAT_VERSION = 6
CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
READERS_FILE = "READERS"
ENCODER_DIR = "encoder"
LOCK_FILE = ".lock"
DOCUMENTS_PER_BATCH = 64
#: Merge policy: a new segment absorbs the older segments before it while each holds at most
#: ``MERGE_FACTOR`` times the rows gathered so far (or fewer than ``SMALL_SEGMENT`` rows), up to
#: ``MAX_MERGE_ROWS`` rows in all, and any segment of at most that size that is mostly dead rows.
MERGE_FACTOR = 4
SMALL_SEGMENT = 1_000
MAX_MERGE_ROWS = 50_000
_GENERATION_RE = re.compile(r"gen-\d{6,}")
_SEGMENT_RE = re.compile(r"seg-[0-9a-f]{8,32}")
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
class Manifest:
    """The manifest of a generation; :meth:`from_dict` refuses anything malformed."""

    format: int
    model: str
    model_files: dict[str, FileRecord]
    encoder: str  # how questions are encoded: "onnx" (files in encoder/) or "sentence-transformers"
    passage_embedder: str  # the backend that embedded the passages (its ``backend`` attribute)
    dimension: int
    settings: dict[str, Any]
    corpus: str
    created: str
    sources: SourceTable  # every source of the corpus, as columns
    segments: dict[str, SegmentEntry]  # oldest first
    index_type: str  # the vector index type asked for ("auto": chosen by each segment's size)
    next_id: int  # the first passage id a later update may give out
    files: dict[str, FileRecord]

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-ready values."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values["model_files"] = {name: record.to_dict() for name, record in self.model_files.items()}
        values["files"] = {name: record.to_dict() for name, record in self.files.items()}
        values["segments"] = {name: asdict(entry) for name, entry in self.segments.items()}
        values["sources"] = self.sources.to_dict()
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
                passage_embedder=_typed(values["passage_embedder"], str),
                dimension=_typed(values["dimension"], int),
                settings=_typed(values["settings"], dict),
                corpus=_typed(values["corpus"], str),
                created=_typed(values["created"], str),
                sources=SourceTable.from_dict(values["sources"]),
                segments={_segment_name(n): SegmentEntry.from_dict(e) for n, e in _typed(values["segments"], dict).items()},
                index_type=_typed(values["index_type"], str),
                next_id=_typed(values["next_id"], int),
                files={_typed(n, str): FileRecord.from_dict(r) for n, r in _typed(values["files"], dict).items()},
            )
        except (KeyError, TypeError, ValueError) as error:
            raise IndexCorruptError(f"the manifest is malformed ({error.__class__.__name__}: {error})") from None
        if set(values) != {f for f in cls.__dataclass_fields__}:
            raise IndexCorruptError("the manifest has unexpected or missing fields")
        if not set(manifest.sources.segment_names) <= set(manifest.segments):
            raise IndexCorruptError("the manifest places passages in a segment it does not list")
        return manifest

    def model_identity(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """What questions must be encoded with: the backend, the model and its files' hashes."""
        return self.encoder, self.model, tuple(sorted((name, r.sha256) for name, r in self.model_files.items()))

    def counts(self) -> tuple[int, int]:
        """(indexed documents, passages)."""
        return self.sources.counts()


def vector_family(backend: str) -> str:
    """Backends whose passage vectors agree (cosine >= 0.9999) share a family; others force a rebuild.

    The ONNX export and sentence-transformers run the same float32 model; a distributed
    runner (``"ray:onnx"``) is its inner backend; int8 and test embedders are their own.

    >>> vector_family("sentence-transformers") == vector_family("ray:onnx") == "float32"
    True
    >>> vector_family("onnx-int8")
    'onnx-int8'
    """
    inner = backend.rsplit(":", 1)[-1]
    return "float32" if inner in (ONNX_BACKEND, MODEL_BACKEND) else inner


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _segment_name(name: Any) -> str:
    if not isinstance(name, str) or not _SEGMENT_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a segment name")
    return name


# ---------------------------------------------------------------------------
# Reports and open generations
# ---------------------------------------------------------------------------


@dataclass
class IndexReport:
    """What opening an index did, in words an interface can print."""

    action: str = "opened"  # opened | built | updated | rebuilt | optimized
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

    def __init__(self, directory: Path, manifest: Manifest, live: LiveSegments, readers: int, report: IndexReport) -> None:
        self.directory = directory
        self.manifest = manifest
        self.live = live
        #: What retrieval calls (protocols of ``rag.stores.base``): vector search, BM25 over passages
        #: and over documents, passage records.
        self.vectors: ReadableVectors = live.vectors
        self.lexical: LexicalIndex = live.lexical
        self.document_lexical: LexicalIndex = live.document_lexical
        self.passages: PassageIndex = live.passages
        self.report = report
        #: Signatures under which each source's indexed content is known to be on disk now.
        self.signatures = manifest.sources.signature_map()
        # Closes the READERS lock when the index is dropped without close(), as when a
        # script lets a Retriever go: the generation must not stay pinned for ever.
        self._release_readers = weakref.finalize(self, os.close, readers)
        self._lock = threading.Lock()
        self._leases = 0
        self._retired = False
        self._closed = False

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
        self.live.close()
        self._release_readers()
        _remove_if_unused(self.directory)


# ---------------------------------------------------------------------------
# Files, locking, loading
# ---------------------------------------------------------------------------


def _file_names(directory: Path, folders: dict[str, SegmentEntry], encoder: bool) -> list[str]:
    """Names, relative to a generation folder, of the files of the given segments (and of the encoder)."""
    files = [path for name, entry in folders.items() for path in segment_files(directory / name, entry)]
    if encoder and (directory / ENCODER_DIR).is_dir():
        files += sorted((directory / ENCODER_DIR).iterdir())
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


def _load(directory: Path, report: IndexReport, written: Manifest | None = None) -> OpenIndex:
    """Check a generation cheaply against its manifest and load its stores.

    Sizes and modification times are compared (a file whose time moved is hashed); when
    a store then fails to load, every checksum is verified to name the damaged file.
    ``written``: the manifest this process just published there (not read back).
    """
    readers = _hold_readers(directory)
    try:
        manifest = written or _read_manifest(directory)
        _damaged(directory, manifest, deep=False)
        segments: dict[str, Segment] = {}
        try:
            for name, entry in manifest.segments.items():
                segments[name] = Segment(directory / name, entry)
            live = LiveSegments(segments, manifest.sources)
            if live.passages.count() != manifest.counts()[1] or len(live.document_lexical) != len(manifest.sources.placed()):
                raise IndexCorruptError("the segments disagree with the manifest on the live passages")
        except (RuntimeError, OSError, ValueError, sqlite3.DatabaseError) as error:
            for segment in segments.values():
                segment.close()
            _damaged(directory, manifest, deep=True)
            raise IndexCorruptError(f"index files unreadable ({error})") from None
        except IndexCorruptError:
            for segment in segments.values():
                segment.close()
            raise
    except BaseException:
        os.close(readers)
        raise
    report.documents, report.passages = manifest.counts()
    return OpenIndex(directory, manifest, live, readers, report)


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
    findings = [
        f"generation {index.directory.name}: {index.report.documents} documents, {index.report.passages} passages "
        f"in {len(index.manifest.segments)} segment(s)"
    ]
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
            problems.append(f"passages.sqlite: SQLite integrity check failed: {error}")
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
    index_type: str  # the vector index type new segments get
    store: StoreSettings  # where new segments keep their vectors
    optimize: bool = False  # merge every segment into one, dropping dead rows (when there is anything to merge)

    @property
    def up_to_date(self) -> bool:
        return self.report.action == "opened"


def _plan(
    corpus: Corpus, scan: Scan, index_dir: Path, settings: IndexSettings, rebuild: bool, index_type: str | None,
    store: StoreSettings | None = None,
    optimize: bool = False,
) -> _Plan:
    """What opening must do; ``index_type`` (``store``) ``None`` keeps the index's own type (vector store);
    ``optimize`` merges the segments of an index that has more than one, or dead rows."""
    report = IndexReport(skipped=list(scan.skipped), warnings=list(scan.warnings))
    try:
        previous = _load_current(index_dir)
    except IndexCorruptError as error:
        report.action = "rebuilt"
        report.reason = str(error) if isinstance(error, _FormatChanged) else f"the existing index was corrupted: {error}"
        return _Plan(None, report, {}, index_type or DEFAULT_INDEX_TYPE, store or StoreSettings())
    if previous is None:
        report.action = "built"
        return _Plan(None, report, {}, index_type or DEFAULT_INDEX_TYPE, store or StoreSettings())
    kept = previous.manifest.index_type
    kept_store = segments_store(previous.manifest.segments.values())
    try:
        stale = _stale_reason(previous.manifest, settings) or ("a rebuild was requested" if rebuild else None)
    except BaseException:
        previous.close()
        raise
    if not stale and index_type not in (None, kept):
        stale = f"the vector index type changed ({kept} -> {index_type})"
    if not stale and store not in (None, kept_store):
        stale = f"the vector store changed ({kept_store.describe()} -> {store.describe()})"
    if stale:
        previous.close()
        report.action, report.reason = "rebuilt", stale
        return _Plan(None, report, {}, index_type or kept, store or kept_store)
    table = previous.manifest.sources
    known = previous.signatures  # the manifest's, read once when the generation was loaded
    verified: dict[str, str] = {}
    moved = [(source, signature) for source, signature in scan.signatures.items() if known.get(source) != signature]
    for source, signature in moved:
        if source not in known:
            report.added.append(source)
        else:
            try:
                same = corpus.fingerprint(source) == table[source].fingerprint
            except CorpusError:
                same = False
            if same:
                verified[source] = signature
            else:
                report.changed.append(source)
    report.removed = sorted(known.keys() - scan.signatures.keys())
    if report.added or report.changed or report.removed:
        report.action, report.reason = "updated", "the corpus changed"
    elif optimize and _fragmented(previous.manifest.segments, previous.manifest.sources.live_rows()):
        report.action, report.reason = "optimized", "an optimization was requested"
    else:
        previous.signatures.update(verified)
        previous.report = report
        report.documents, report.passages = previous.manifest.counts()
    return _Plan(previous, report, verified, kept, kept_store, optimize)


class _Builder:
    """Writes one new generation: the previous one's segments linked, what changed in a new segment."""

    def __init__(self, corpus: Corpus, settings: IndexSettings, embed: Callable[[], PassageEmbedder], progress: bool):
        self.corpus = corpus
        self.settings = settings
        self.embed = embed
        self.progress = progress

    def write(self, folder: Path, plan: _Plan, scan: Scan) -> Manifest:
        embedder = self.embed()
        previous, report = plan.previous, plan.report
        if previous is not None and vector_family(previous.manifest.passage_embedder) != vector_family(embedder.backend):
            # Rows embedded another way would not be comparable with the new ones: start again.
            report.action = "rebuilt"
            report.reason = f"the passage embedder changed ({previous.manifest.passage_embedder} -> {embedder.backend})"
            report.added, report.changed, report.removed = [], [], []
            previous = None
        # A changed or removed source's rows stay in their segment, dead from now on.
        sources = (
            previous.manifest.sources.updated(removed=[*report.removed, *report.changed], signatures=plan.verified)
            if previous else SourceTable.empty()
        )
        (folder / READERS_FILE).touch()
        segments: dict[str, SegmentEntry] = dict(previous.manifest.segments) if previous else {}
        next_id = previous.manifest.next_id if previous else 1
        todo = [s for s in scan.signatures if s not in sources]
        new = None
        added: dict[str, SourceEntry] = {}
        if todo:
            new = _new_segment_name()
            writer = SegmentWriter(folder / new, embedder.dimension, plan.index_type, plan.store)
            # Embedding the next batch overlaps writing this one into SQLite (one batch in flight).
            with _progress_bar(len(todo), self.progress) as advance, ThreadPoolExecutor(1, "rag-write") as writes:
                pending: Future[None] | None = None
                step = getattr(embedder, "documents_per_batch", DOCUMENTS_PER_BATCH)  # e.g. larger for Ray
                for first in range(0, len(todo), step):
                    batch = todo[first : first + step]
                    rows, next_id = self._embed_batch(self._prepare(batch, scan, embedder), embedder, new, next_id, added, report)
                    if pending is not None:
                        pending.result()
                    pending = writes.submit(_write_rows, writer, rows)
                    advance(len(batch))
                if pending is not None:
                    pending.result()
            segments[new] = writer.finish()
        sources = sources.updated(added=added)
        live = Counter(sources.live_rows())
        if new is not None and not live[new]:
            shutil.rmtree(folder / new)
        segments = {name: entry for name, entry in segments.items() if live[name]}
        merging = _merge_plan(segments, live, new, everything=plan.optimize)
        for name in segments:
            if name != new and name not in merging:
                assert previous is not None
                _link_tree(previous.directory / name, folder / name)
        if merging:
            merged = _new_segment_name()
            segments[merged] = self._merge(folder, merged, merging, segments, sources, plan, embedder.dimension)
            for name in merging:
                del segments[name]
            sources = sources.updated(merged=(merging, merged))
        # The previous generation's records still hold: opening checked the model's files by size and time.
        model_files = previous.manifest.model_files if previous else _model_records(self.settings.model)
        encoder = _question_encoder_files(embedder, folder / ENCODER_DIR, previous, model_files, report)
        return Manifest(
            format=FORMAT_VERSION,
            model=self.settings.model,
            model_files=model_files,
            encoder=encoder,
            passage_embedder=embedder.backend,
            dimension=embedder.dimension,
            settings=self.settings.to_dict(),
            corpus=repr(self.corpus),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            sources=sources,
            segments=segments,
            index_type=plan.index_type,
            next_id=next_id,
            files=_records(folder, _file_names(folder, segments, encoder=True), previous),
        )

    def _merge(
        self,
        folder: Path,
        merged: str,
        merging: list[str],
        segments: dict[str, SegmentEntry],
        sources: SourceTable,
        plan: _Plan,
        dimension: int,
    ) -> SegmentEntry:
        """Write segment ``merged`` from the live rows of the ``merging`` segments (removed afterwards)."""
        previous = plan.previous
        writer = SegmentWriter(folder / merged, dimension, plan.index_type, plan.store)
        for name in merging:
            fresh = previous is None or name not in previous.live.segments
            segment = Segment(folder / name, segments[name]) if fresh else previous.live.segments[name]
            try:
                writer.copy(segment, sources.in_segment(name))
            finally:
                if fresh:
                    segment.close()
                    shutil.rmtree(folder / name)
        return writer.finish()

    def _prepare(self, batch: list[str], scan: Scan, embedder: PassageEmbedder) -> list[_Prepared]:
        """Read and chunk a batch of sources (a source that cannot be indexed comes back with its reason)."""
        prepared = []
        for source in batch:
            try:
                read = self.corpus.load(source)
            except CorpusError as error:
                prepared.append(_Prepared(source, scan.signatures[source], "", None, [], str(error)))
                continue
            doc = read.document
            if doc is None:
                prepared.append(_Prepared(source, read.signature, read.fingerprint, None, [], "no text to index"))
                continue
            chunks = chunk_document(doc, embedder.count_tokens, self.settings.chunk_tokens, self.settings.overlap_tokens)
            prepared.append(_Prepared(source, read.signature, read.fingerprint, doc, chunks, None))
        return prepared

    def _embed_batch(
        self,
        prepared: list[_Prepared],
        embedder: PassageEmbedder,
        segment: str,
        next_id: int,
        sources: dict[str, SourceEntry],
        report: IndexReport,
    ) -> tuple[list[_Row], int]:
        """Embed a prepared batch (passages and sentences in one call, each distinct text once) under
        ids from ``next_id``; returns the rows to write and the next free id."""
        loaded = []
        for item in prepared:
            if item.doc is None:
                sources[item.source] = SourceEntry(item.fingerprint, item.signature, "skipped", note=item.problem)
                report.skipped.append((item.source, item.problem or ""))
                continue
            report.warnings.extend(item.doc.warnings)
            sources[item.source] = SourceEntry(
                item.fingerprint, item.signature, "indexed", len(item.chunks), item.doc.kind,
                warnings=tuple(item.doc.warnings),
                segment=segment if item.chunks else None, first_id=next_id if item.chunks else None,
            )
            spans = sorted({span for chunk in item.chunks for span in chunk.sentences})
            loaded.append((item, item.doc, next_id, spans))
            next_id += len(item.chunks)
        texts = [search_text(doc.kind, doc.title, chunk.text) for item, doc, _, _ in loaded for chunk in item.chunks]
        if self.settings.embed_sentences:
            texts += [doc.text[start:end] for _, doc, _, spans in loaded for start, end in spans]
        distinct = list(dict.fromkeys(texts))
        vectors = embedder.encode(distinct) if distinct else np.zeros((0, embedder.dimension), dtype=np.float32)
        place = {text: number for number, text in enumerate(distinct)}
        ordered = vectors[[place[text] for text in texts]] if texts else vectors
        rows, passage_row, sentence_row = [], 0, sum(len(item.chunks) for item, *_ in loaded)
        for item, doc, first_id, spans in loaded:
            sentence_vectors = None
            if self.settings.embed_sentences:
                sentence_vectors = ordered[sentence_row : sentence_row + len(spans)]
                sentence_row += len(spans)
            rows.append(_Row(
                doc, item.fingerprint, item.chunks, np.arange(first_id, first_id + len(item.chunks), dtype=np.int64),
                ordered[passage_row : passage_row + len(item.chunks)], spans, sentence_vectors,
            ))
            passage_row += len(item.chunks)
        return rows, next_id


@dataclass(frozen=True)
class _Row:
    """A document embedded and ready to write: the arguments of :meth:`SegmentWriter.add`."""

    doc: Document
    fingerprint: str
    chunks: list[Chunk]
    ids: np.ndarray
    chunk_vectors: np.ndarray
    sentences: list[tuple[int, int]]
    sentence_vectors: np.ndarray | None


def _write_rows(writer: SegmentWriter, rows: list[_Row]) -> None:
    for row in rows:
        writer.add(row.doc, row.fingerprint, row.chunks, row.ids, row.chunk_vectors, row.sentences, row.sentence_vectors)


@dataclass(frozen=True)
class _Prepared:
    """A source read and chunked, ready to embed (``doc`` is ``None`` when it cannot be indexed, and why)."""

    source: str
    signature: str
    fingerprint: str
    doc: Document | None
    chunks: list[Chunk]
    problem: str | None


def _new_segment_name() -> str:
    return f"seg-{uuid.uuid4().hex[:16]}"


def _fragmented(segments: dict[str, SegmentEntry], live: Mapping[str, int]) -> bool:
    """More than one segment, or one that holds dead rows (``live``: each segment's live rows)."""
    return len(segments) > 1 or any(live.get(name, 0) < entry.passages for name, entry in segments.items())


def _merge_plan(
    segments: dict[str, SegmentEntry], live: Counter[str | None], new: str | None, *, everything: bool = False
) -> list[str]:
    """The segments to merge into one, in order (none when fewer than two, or one that is not mostly dead).

    ``everything``: all of them (when there are several or any dead rows), whatever their sizes.

    Like a binomial counter: the new segment absorbs the segments written before it, newest
    first, while each holds at most ``MERGE_FACTOR`` times the rows gathered so far (or fewer
    than ``SMALL_SEGMENT``), so a corpus grown one brief at a time keeps O(log n) segments
    and each row is rewritten O(log n) times. A segment whose rows are mostly dead is
    compacted. No merge writes more than ``MAX_MERGE_ROWS`` rows, so an update stays cheap;
    larger segments come only from builds.
    """
    names = list(segments)
    if everything and _fragmented(segments, live):
        return names
    chosen: set[str] = set()
    if new is not None and new in segments:
        gathered = live[new]
        for name in reversed(names[:-1]):
            rows = live[name]
            if rows > max(MERGE_FACTOR * gathered, SMALL_SEGMENT) or gathered + rows > MAX_MERGE_ROWS:
                break
            chosen.add(name)
            gathered += rows
    chosen |= {name for name in names if 2 * live[name] < segments[name].passages and live[name] <= MAX_MERGE_ROWS}
    if chosen and new in segments:
        chosen.add(new)
    if len(chosen) == 1 and live[next(iter(chosen))] == segments[next(iter(chosen))].passages:
        return []
    return [name for name in names if name in chosen]


def _records(folder: Path, names: list[str], previous: OpenIndex | None) -> dict[str, FileRecord]:
    """Checksum records of the named files; a file hard-linked from the previous generation keeps its record."""
    kept: dict[str, FileRecord] = {}
    if previous is not None:
        for name in names:
            record = previous.manifest.files.get(name)
            with contextlib.suppress(OSError):
                if record is not None and os.stat(folder / name).st_ino == os.stat(previous.directory / name).st_ino:
                    kept[name] = record
    return {**records(folder, [name for name in names if name not in kept], with_mtime=True), **kept}


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
    """Hard-link (copy where linking fails) every file under ``source`` into ``target``."""
    shutil.copytree(source, target, copy_function=_link_or_copy)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _publish(index_dir: Path, folder: Path, manifest: Manifest) -> Path:
    """Seal a written generation and make it the live one."""
    # No indent: it makes json fall back to its pure-Python encoder (seconds at 250k sources).
    _write_atomic(folder / MANIFEST_FILE, json.dumps(manifest.to_dict(), ensure_ascii=False))
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
    index_type: str | None = None,
    store: StoreSettings | None = None,
    optimize: bool = False,
) -> OpenIndex:
    """Open the index of ``corpus`` in ``index_dir``, building or updating it first when needed.

    An up-to-date index is opened without any index-wide lock, so a read-only index folder
    can be searched. ``embed`` is called only when passages must be embedded. ``on_wait``
    hears when another process holds the writer lock. ``optimize`` merges every segment into
    one without dead rows (Lucene's force-merge): searches touch one segment, and the next
    update costs as before. ``index_type`` (one of
    ``config.INDEX_TYPES``) rebuilds an index of another type; ``None`` keeps the index's own.
    ``store`` likewise rebuilds an index whose vectors are kept elsewhere (``None``: where they are).
    Raises ``CorpusError`` when the corpus cannot be listed, ``IndexWriteError`` when the
    index must change but cannot.
    """
    index_dir = Path(index_dir)
    scan = corpus.scan()
    plan = _plan(corpus, scan, index_dir, settings, rebuild, index_type, store, optimize)
    if plan.up_to_date:
        assert plan.previous is not None
        _clean_if_idle(index_dir)
        return plan.previous
    if plan.previous is not None:
        plan.previous.close()
    with _writer_lock(index_dir, on_wait):
        plan = _plan(corpus, scan, index_dir, settings, rebuild, index_type, store, optimize)  # another writer may have done the work
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
        opened = _load(generation, plan.report, manifest)
        _clean(index_dir)
        return opened
