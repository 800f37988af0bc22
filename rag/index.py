"""Build, update and open the persisted index: manifest, locking, atomic replace, staleness checks.

Layout of an index folder::

    index/
      CURRENT              name of the live generation (replaced atomically)
      gen-000003/          one complete generation
        manifest.json      format, model, settings, per-source fingerprints, file checksums
        vectors.faiss      chunk vectors (FAISS, inner product, id map)
        passages.sqlite    documents, chunks, sentence vectors
        lexical/           bm25s index over the same chunk ids
        lexical-documents/ bm25s index over whole documents, each under its first chunk's id
      .lock                held while a process checks or writes the index

A new generation is written into a temporary folder and renamed into place; ``CURRENT`` is
switched last. A crash at any point leaves the previous generation live. Opening compares
the manifest with the corpus and the settings, then rebuilds only what changed; an index
whose files fail their checksums is rebuilt from scratch. Stale vectors are never served.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chunking import chunk_document
from .config import IndexSettings
from .documents import Corpus, Document
from .embedding import Embedder
from .errors import CorpusError, IndexCorruptError
from .stores.faiss_store import FaissStore
from .stores.lexical import LexicalStore
from .stores.passages import Filters, PassageStore

FORMAT_VERSION = 2
CURRENT_FILE = "CURRENT"
MANIFEST_FILE = "manifest.json"
VECTORS_FILE = "vectors.faiss"
PASSAGES_FILE = "passages.sqlite"
LEXICAL_DIR = "lexical"
DOCUMENT_LEXICAL_DIR = "lexical-documents"
LOCK_FILE = ".lock"
DOCUMENTS_PER_BATCH = 64


class _FormatChanged(IndexCorruptError):
    """The index was written in another format version; it is rebuilt, not repaired."""


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


@dataclass
class OpenIndex:
    """A live, verified index generation with its stores loaded."""

    directory: Path
    manifest: dict[str, Any]
    vectors: FaissStore
    lexical: LexicalStore
    document_lexical: LexicalStore
    passages: PassageStore
    report: IndexReport
    _sources: dict[int, str] | None = field(default=None, init=False, repr=False)

    def close(self) -> None:
        """Release the SQLite connection."""
        self.passages.close()

    def source_of(self, passage_id: int) -> str | None:
        """The source of a passage id (``None`` when unknown); the map is read once, on first use."""
        if self._sources is None:
            self._sources = {i: source for source, ids in _passage_ids(self.passages).items() for i in ids}
        return self._sources.get(passage_id)


def search_text(kind: str, title: str, text: str) -> str:
    """The text embedded and BM25-indexed for a passage: the title leads unless it is a file name."""
    return text if kind == "text" else f"{title}\n{text}"


# ---------------------------------------------------------------------------
# Files, checksums, locking
# ---------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _index_files(directory: Path) -> dict[str, dict[str, Any]]:
    files = [
        directory / VECTORS_FILE,
        directory / PASSAGES_FILE,
        *sorted((directory / LEXICAL_DIR).iterdir()),
        *sorted((directory / DOCUMENT_LEXICAL_DIR).iterdir()),
    ]
    return {
        path.relative_to(directory).as_posix(): {"size": path.stat().st_size, "sha256": _sha256(path)}
        for path in files
    }


def _fsync_tree(directory: Path) -> None:
    for path in [*directory.rglob("*"), directory]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: Path, content: str) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@contextlib.contextmanager
def _locked(index_dir: Path) -> Iterator[None]:
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _current_generation(index_dir: Path) -> Path | None:
    try:
        name = (index_dir / CURRENT_FILE).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise IndexCorruptError(f"cannot read {index_dir / CURRENT_FILE}: {error}") from error
    if not name.startswith("gen-") or "/" in name:
        raise IndexCorruptError(f"{index_dir / CURRENT_FILE} does not name a generation")
    return index_dir / name


def _load(directory: Path, report: IndexReport) -> OpenIndex:
    """Verify a generation against its manifest's checksums and load its stores."""
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IndexCorruptError(f"manifest unreadable ({error.__class__.__name__})") from error
    if manifest.get("format") != FORMAT_VERSION:
        raise _FormatChanged(f"the index format changed ({manifest.get('format')!r} -> {FORMAT_VERSION})")
    for name, expected in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            raise IndexCorruptError(f"{name} is missing")
        if path.stat().st_size != expected["size"] or _sha256(path) != expected["sha256"]:
            raise IndexCorruptError(f"{name} is truncated or corrupted (checksum mismatch)")
    try:
        vectors = FaissStore.load(directory / VECTORS_FILE)
        lexical = LexicalStore.load(directory / LEXICAL_DIR)
        document_lexical = LexicalStore.load(directory / DOCUMENT_LEXICAL_DIR)
        passages = PassageStore(directory / PASSAGES_FILE, read_only=True)
        passages.check()
    except (RuntimeError, OSError, ValueError, sqlite3.DatabaseError) as error:
        raise IndexCorruptError(f"index files unreadable ({error})") from error
    if len(vectors) != passages.count() or len(lexical) != len(vectors):
        raise IndexCorruptError("stores disagree on the number of passages")
    report.documents, report.passages = _counts(manifest)
    if len(document_lexical) != sum(1 for entry in manifest["sources"].values() if entry["passages"]):
        raise IndexCorruptError("the document-level lexical store disagrees with the manifest")
    return OpenIndex(directory, manifest, vectors, lexical, document_lexical, passages, report)


# ---------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------


def _stale_reason(manifest: dict[str, Any], settings: IndexSettings) -> str | None:
    if manifest.get("model") != settings.model:
        return f"the model changed ({manifest.get('model')} -> {settings.model})"
    if manifest.get("settings") != settings.to_dict():
        return "the index settings changed"
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


class _Builder:
    """Writes one new generation: copies the previous one, applies source changes."""

    def __init__(self, corpus: Corpus, settings: IndexSettings, embed: Callable[[], Embedder], progress: bool):
        self.corpus = corpus
        self.settings = settings
        self.embed = embed
        self.progress = progress

    def write(
        self,
        folder: Path,
        previous: OpenIndex | None,
        fingerprints: dict[str, str],
        report: IndexReport,
    ) -> dict[str, Any]:
        embedder = self.embed()
        sources: dict[str, Any] = dict(previous.manifest["sources"]) if previous else {}
        if previous:
            shutil.copy2(previous.directory / PASSAGES_FILE, folder / PASSAGES_FILE)
            vectors = FaissStore.load(previous.directory / VECTORS_FILE)
        else:
            vectors = FaissStore.create(embedder.dimension)
        passages = PassageStore(folder / PASSAGES_FILE)
        try:
            outdated = [s for s in sources if s not in fingerprints or sources[s]["fingerprint"] != fingerprints[s]]
            vectors.remove(passages.remove_sources(outdated))
            for source in outdated:
                del sources[source]
            todo = [s for s in fingerprints if s not in sources]
            with _progress_bar(len(todo), self.progress) as advance:
                for first in range(0, len(todo), DOCUMENTS_PER_BATCH):
                    batch = todo[first : first + DOCUMENTS_PER_BATCH]
                    self._add_batch(batch, fingerprints, embedder, vectors, passages, sources, report)
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
        return {
            "format": FORMAT_VERSION,
            "model": self.settings.model,
            "dimension": embedder.dimension,
            "settings": self.settings.to_dict(),
            "corpus": repr(self.corpus),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "sources": dict(sorted(sources.items())),
            "files": _index_files(folder),
        }

    def _add_batch(
        self,
        batch: list[str],
        fingerprints: dict[str, str],
        embedder: Embedder,
        vectors: FaissStore,
        passages: PassageStore,
        sources: dict[str, Any],
        report: IndexReport,
    ) -> None:
        loaded: list[tuple[Document, list[Any]]] = []
        for source in batch:
            entry: dict[str, Any] = {"fingerprint": fingerprints[source], "status": "skipped", "passages": 0}
            sources[source] = entry
            try:
                doc = self.corpus.load(source)
            except CorpusError as error:
                entry["note"] = str(error)
                report.skipped.append((source, str(error)))
                continue
            if doc is None:
                entry["note"] = "no text to index"
                report.skipped.append((source, "no text to index"))
                continue
            report.warnings.extend(doc.warnings)
            chunks = chunk_document(
                doc, embedder.count_tokens, self.settings.chunk_tokens, self.settings.overlap_tokens
            )
            entry.update(status="indexed", passages=len(chunks), kind=doc.kind)
            if doc.warnings:
                entry["warnings"] = list(doc.warnings)
            loaded.append((doc, chunks))
        texts = [search_text(doc.kind, doc.title, chunk.text) for doc, chunks in loaded for chunk in chunks]
        chunk_vectors = embedder.encode(texts)
        sentence_spans = [sorted({s for chunk in chunks for s in chunk.sentences}) for _, chunks in loaded]
        sentence_vectors = None
        if self.settings.embed_sentences:
            sentence_vectors = embedder.encode(
                [doc.text[s:e] for (doc, _), spans in zip(loaded, sentence_spans) for s, e in spans]
            )
        chunk_row = sentence_row = 0
        for (doc, chunks), spans in zip(loaded, sentence_spans):
            doc_sentence_vectors = (
                sentence_vectors[sentence_row : sentence_row + len(spans)] if sentence_vectors is not None else None
            )
            ids = passages.add_document(doc, fingerprints[doc.source], chunks, spans, doc_sentence_vectors)
            vectors.add(ids, chunk_vectors[chunk_row : chunk_row + len(chunks)])
            chunk_row += len(chunks)
            sentence_row += len(spans)


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


def _publish(index_dir: Path, folder: Path, manifest: dict[str, Any]) -> Path:
    """Seal a written generation and make it the live one."""
    _write_atomic(folder / MANIFEST_FILE, json.dumps(manifest, indent=1, ensure_ascii=False))
    _fsync_tree(folder)
    numbers = [int(p.name[4:]) for p in index_dir.glob("gen-*") if p.name[4:].isdigit()]
    generation = index_dir / f"gen-{max(numbers, default=0) + 1:06d}"
    os.rename(folder, generation)
    _write_atomic(index_dir / CURRENT_FILE, generation.name + "\n")
    return generation


def _clean(index_dir: Path, keep: set[Path]) -> None:
    """Remove generations other than ``keep`` and temporary folders of crashed builds."""
    for path in [*index_dir.glob("gen-*"), *index_dir.glob(".tmp-*")]:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)


def open_index(
    corpus: Corpus,
    index_dir: Path,
    settings: IndexSettings,
    embed: Callable[[], Embedder],
    *,
    progress: bool = False,
    rebuild: bool = False,
) -> OpenIndex:
    """Open the index of ``corpus`` in ``index_dir``, building or updating it first when needed.

    ``embed`` is called only when passages must be embedded. Raises ``CorpusError``
    when the corpus cannot be listed.
    """
    index_dir = Path(index_dir)
    fingerprints = corpus.fingerprints()
    with _locked(index_dir):
        report = IndexReport()
        previous: OpenIndex | None = None
        try:
            directory = _current_generation(index_dir)
            if directory is not None:
                previous = _load(directory, IndexReport())
        except IndexCorruptError as error:
            changed = isinstance(error, _FormatChanged)
            report.reason = str(error) if changed else f"the existing index was corrupted: {error}"
            report.action = "rebuilt"
        if previous is not None and (stale := _stale_reason(previous.manifest, settings) or ("a rebuild was requested" if rebuild else None)):
            report.reason, report.action = stale, "rebuilt"
            previous.close()
            previous = None
        if previous is not None:
            known = previous.manifest["sources"]
            report.added = sorted(set(fingerprints) - set(known))
            report.removed = sorted(set(known) - set(fingerprints))
            report.changed = sorted(s for s in fingerprints if s in known and known[s]["fingerprint"] != fingerprints[s])
            if not (report.added or report.removed or report.changed):
                previous.report = report
                report.documents, report.passages = _counts(previous.manifest)
                return previous
            report.action, report.reason = "updated", "the corpus changed"
        elif report.action == "opened":
            report.action, report.reason = "built", ""
        started = time.perf_counter()
        folder = index_dir / f".tmp-{uuid.uuid4().hex}"
        folder.mkdir()
        try:
            manifest = _Builder(corpus, settings, embed, progress).write(folder, previous, fingerprints, report)
            if not _counts(manifest)[0]:
                raise CorpusError(
                    "no document in the corpus could be indexed: "
                    + "; ".join(f"{source}: {why}" for source, why in report.skipped)
                )
            generation = _publish(index_dir, folder, manifest)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        finally:
            if previous is not None:
                previous.close()
        _clean(index_dir, keep={generation, previous.directory} if previous else {generation})
        report.seconds = time.perf_counter() - started
        return _load(generation, report)


def _counts(manifest: dict[str, Any]) -> tuple[int, int]:
    entries = [entry for entry in manifest["sources"].values() if entry["status"] == "indexed"]
    return len(entries), sum(entry["passages"] for entry in entries)
