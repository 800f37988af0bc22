"""``rag bench --scale``: how search, updates, disk, open time and memory grow with the corpus.

For each size (10k, 100k and 1M passages by default) a real index is built through
:func:`rag.index.open_index` in a temporary folder under ``/tmp`` (deleted afterwards) over a
:class:`SyntheticCorpus`: real benchmark passages (title + text of ``../shared/benchmarks/*``)
repeated in shuffled copies with light perturbation (each copy swaps a few words and numbers
its titles) until the corpus holds the requested number of ~128-token passages, one benchmark
text a brief. The bulk build embeds with :class:`StandInEmbedder` (clustered unit vectors from
hashes: no model), whose token counts follow the real tokenizer's, and keeps sentence vectors;
questions still go through the real ONNX question encoder, and the timed updates through the
real passage embedder. Per size, :func:`run_scale` measures:

- the search-only figures of ``rag.stores.ann_bench.measure`` at that size;
- in a fresh process (:func:`probe`): ``Retriever.open`` of the up-to-date index, then distinct
  benchmark questions end to end (hybrid, k=10, warm), then the process's peak RSS;
- ``open_index`` after adding one bundled brief, then after removing one generated brief;
- the live generation's size on disk;

and once, in the smallest row, ``rag.throughput.measure`` on real benchmark passages.

>>> result = run_scale([10_000])  # doctest: +SKIP
>>> sorted(result["rows"][0]) == sorted(ROW_KEYS)  # doctest: +SKIP
True
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import BENCHMARK_CHUNK_TOKENS, BENCHMARK_OVERLAP_TOKENS, BUNDLED_MODEL, IndexSettings
from .documents import Document, Loaded, Scan
from .errors import CorpusError

if TYPE_CHECKING:
    import numpy as np

    from .chunking import TokenCounter
    from .embedding import PassageEmbedder

#: Where the BEIR benchmark folders are, beside the repository (``../shared/benchmarks``).
DEFAULT_BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
#: Word pairs swapped in each passage text of a copy (copy 0 is the text as published).
SWAPS_PER_TEXT = 3
#: Documents chunked to learn how many passages a document makes (all of them for small sizes).
CALIBRATION_DOCUMENTS = 2_000

_PIECE_RE = re.compile(r"\w+|[^\w\s]")


def scale_settings() -> IndexSettings:
    """Benchmark-sized passages (``BENCHMARK_CHUNK_TOKENS``) with sentence vectors, as briefs are indexed."""
    return IndexSettings(model=BUNDLED_MODEL, chunk_tokens=BENCHMARK_CHUNK_TOKENS, overlap_tokens=BENCHMARK_OVERLAP_TOKENS)


@functools.lru_cache(maxsize=4)
def benchmark_texts(root: Path) -> list[tuple[str, str]]:
    """(title, text) of every passage in the ``corpus.jsonl`` of each BEIR folder under ``root``, in name order.

    Read once per process: treat the list as read-only.
    """
    texts = []
    for corpus in sorted(Path(root).glob("*/corpus.jsonl")):
        with corpus.open(encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                text = " ".join(str(record.get("text") or "").split())
                if text:
                    texts.append((" ".join(str(record.get("title") or "").split()), text))
    if not texts:
        raise CorpusError(f"no BEIR corpus.jsonl under {root}: pass --benchmarks DIR")
    return texts


def benchmark_questions(root: Path) -> list[str]:
    """The distinct questions of every ``queries.jsonl`` under ``root``, in name order."""
    questions: dict[str, None] = {}
    for queries in sorted(Path(root).glob("*/queries.jsonl")):
        with queries.open(encoding="utf-8") as handle:
            for line in handle:
                question = " ".join(str(json.loads(line).get("text") or "").split())
                if question:
                    questions[question] = None
    return list(questions)


@functools.lru_cache(maxsize=1 << 18)
def estimate_tokens(text: str) -> int:
    """About the number of WordPiece tokens of ``text``: a piece per word or mark, one more per 7 letters.

    Within 2% of all-MiniLM-L6-v2's tokenizer on the benchmark sentences on average (correlation
    0.99), at a third of its cost; cached, since copies repeat most sentences.

    >>> estimate_tokens("Belarus bought sixteen radars.")
    5
    """
    return sum(1 + (len(piece) - 1) // 7 for piece in _PIECE_RE.findall(text))


class StandInEmbedder:
    """A fast, deterministic stand-in passage embedder for bulk builds: clustered unit vectors.

    A text's vector is one of ``clusters`` random centres, chosen by its first line (a brief's
    title leads its passages), plus two noise vectors chosen by its CRC-32, normalized: no
    model, a few microseconds a text, 8 MB of tables. Token counts are :func:`estimate_tokens`. With
    ``export=True`` the index gets the real model's ONNX question encoder (torch is loaded
    once for that), so questions are encoded as in production; otherwise there is none
    and the stand-in encodes questions too (:meth:`encode` serves both).
    """

    name = "scale-stand-in"
    backend = "scale-stand-in"
    dimension = 384
    max_tokens = 256

    def __init__(self, *, export: bool = True, cache: Path | None = None, clusters: int = 1024, seed: int = 0) -> None:
        import numpy as np

        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((clusters, self.dimension)).astype(np.float32)
        self._centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        # two of 4,096 noise rows of norm ~0.6 each: a text's cosine with its centre is about 0.76
        self._noise = (0.6 * rng.standard_normal((1 << 12, self.dimension)) / math.sqrt(self.dimension)).astype(np.float32)
        self._export = export
        self._cache = cache

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit float32 vectors, one row per text."""
        import numpy as np

        keys = np.fromiter((zlib.crc32(text.encode("utf-8", "replace")) for text in texts), dtype=np.int64, count=len(texts))
        lines = np.fromiter((zlib.crc32(text.split("\n", 1)[0][:80].encode("utf-8", "replace")) for text in texts),
                            dtype=np.int64, count=len(texts))
        vectors = self._centres[lines % len(self._centres)] + self._noise[keys & 0xFFF] + self._noise[(keys >> 12) & 0xFFF]
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """About the model tokens of each text (:func:`estimate_tokens`)."""
        return [estimate_tokens(text) for text in texts]

    def export_question_encoder(self, folder: Path) -> None:
        """The real model's ONNX question encoder (``export=True``), else ``ExportError``.

        Exported once; with a ``cache`` folder, later indexes get hard links to that export.
        """
        from .embedding import resolve_model_path
        from .onnx_encoder import ExportError, export

        if not self._export:
            raise ExportError("the scale stand-in embedder was asked for no question encoder")
        if self._cache is not None and self._cache.is_dir():
            shutil.copytree(self._cache, folder, dirs_exist_ok=True, copy_function=_link_or_copy)
            return
        export(resolve_model_path(BUNDLED_MODEL), folder)
        if self._cache is not None:
            shutil.copytree(folder, self._cache, copy_function=_link_or_copy)


class SyntheticCorpus:
    """Documents made of real passages, repeated with light perturbation: a ``Corpus`` of any size.

    Copy ``c`` of the benchmark texts is a permutation of them (seeded by ``c``); document
    ``j`` of a copy holds ``texts_per_document`` consecutive texts of that permutation. Copy 0
    is the texts as published; later copies swap ``SWAPS_PER_TEXT`` word pairs in each text and
    number the document's title. Documents are laid out as briefs: a title line, then each
    text (with its own title) as paragraphs. Nothing is stored: a document is made when it is
    loaded, and the texts are read only then (``text_count`` spares a search process reading
    them). :meth:`add` and :meth:`remove` change the corpus as a folder would change.
    """

    def __init__(
        self, benchmarks: Path, documents: int, *, texts_per_document: int = 1, seed: int = 0, text_count: int | None = None
    ) -> None:
        self.benchmarks = Path(benchmarks)
        self.documents = documents
        self.texts_per_document = texts_per_document
        self.seed = seed
        self.text_count = len(self.texts) if text_count is None else text_count
        self.per_copy = math.ceil(self.text_count / texts_per_document)
        self._orders: dict[int, list[int]] = {}
        self._added: dict[str, Document] = {}
        self._removed: set[str] = set()

    def __repr__(self) -> str:
        return f"SyntheticCorpus({self.text_count} texts, {self.documents} documents, seed {self.seed})"

    @classmethod
    def sized(
        cls, benchmarks: Path, passages: int, settings: IndexSettings, count_tokens: TokenCounter,
        *, texts_per_document: int = 1, seed: int = 0,
    ) -> SyntheticCorpus:
        """A corpus of about ``passages`` passages under ``settings``: exact when it takes fewer than
        ``CALIBRATION_DOCUMENTS`` documents, else extrapolated from that many."""
        from .chunking import chunk_document

        probe = cls(benchmarks, CALIBRATION_DOCUMENTS, texts_per_document=texts_per_document, seed=seed)
        made = 0
        for number in range(CALIBRATION_DOCUMENTS):
            made += len(chunk_document(probe.document(number), count_tokens, settings.chunk_tokens, settings.overlap_tokens))
            if made >= passages:
                return cls(benchmarks, number + 1, texts_per_document=texts_per_document, seed=seed)
        return cls(benchmarks, max(1, round(passages * CALIBRATION_DOCUMENTS / made)), texts_per_document=texts_per_document, seed=seed)

    @functools.cached_property
    def texts(self) -> list[tuple[str, str]]:
        """The benchmark texts the documents are made of."""
        return benchmark_texts(self.benchmarks)

    def source(self, number: int) -> str:
        """The source name of generated document ``number``."""
        return f"copy-{number // self.per_copy:03d}/brief-{number % self.per_copy:06d}.txt"

    def _number(self, source: str) -> int | None:
        match = re.fullmatch(r"copy-(\d{3,})/brief-(\d{6})\.txt", source)
        if not match or int(match[2]) >= self.per_copy:
            return None
        number = int(match[1]) * self.per_copy + int(match[2])
        return number if number < self.documents else None

    def _order(self, copy: int) -> list[int]:
        if copy not in self._orders:
            order = list(range(self.text_count))
            _random(self.seed, copy).shuffle(order)
            self._orders[copy] = order
        return self._orders[copy]

    def document(self, number: int) -> Document:
        """Generated document ``number``."""
        copy, place = divmod(number, self.per_copy)
        members = self._order(copy)[place * self.texts_per_document : (place + 1) * self.texts_per_document]
        paragraphs: list[str] = []
        for position, member in enumerate(members):
            title, text = self.texts[member]
            if copy:
                text = _swapped(text, _random(self.seed, copy, member))
            if title and position:
                paragraphs.append(title)
            paragraphs.append(text)
        first_title, first_text = self.texts[members[0]]
        title = first_title or " ".join(first_text.split()[:8])
        if copy:
            title = f"{title} ({copy})"
        text = title
        body = []
        for paragraph in paragraphs:
            text += "\n\n"
            body.append((len(text), len(text) + len(paragraph)))
            text += paragraph
        return Document(source=self.source(number), text=text + "\n", title=title, body=tuple(body), kind="brief")

    def add(self, document: Document) -> None:
        """Add a document under its ``source`` (as a new file would be)."""
        self._added[document.source] = document
        self._removed.discard(document.source)

    def remove(self, source: str) -> None:
        """Remove a source (as a deleted file would be)."""
        self._added.pop(source, None)
        self._removed.add(source)

    def _fingerprint(self, source: str) -> str:
        """SHA-256 of an added document's text; of its recipe for a generated one (its text follows from it)."""
        if source in self._added:
            return _fingerprint(self._added[source].text)
        return _fingerprint(f"{self.seed}:{self.texts_per_document}:{self.text_count}:{source}")

    def scan(self) -> Scan:
        """Every source with its signature (constant: generated documents never change)."""
        copies, rest = divmod(self.documents, self.per_copy)
        names = [f"{place:06d}.txt" for place in range(self.per_copy)]
        signatures = dict.fromkeys((f"copy-{copy:03d}/brief-" + name for copy in range(copies + 1)
                                    for name in (names if copy < copies else names[:rest])), "generated")
        for source in self._removed:
            signatures.pop(source, None)
        signatures.update((source, self._fingerprint(source)) for source in self._added)
        return Scan(signatures)

    def signature(self, source: str) -> str | None:
        """The signature of one source; ``None`` when there is no such source."""
        if source in self._added:
            return self._fingerprint(source)
        return "generated" if source not in self._removed and self._number(source) is not None else None

    def fingerprint(self, source: str) -> str:
        """SHA-256 of the source's content (see :meth:`_fingerprint`)."""
        return self.load(source).fingerprint

    def load(self, source: str) -> Loaded:
        """The document of a source; ``CorpusError`` when there is none."""
        signature = self.signature(source)
        if signature is None:
            raise CorpusError(f"{source}: no such document")
        number = self._number(source)
        doc = self._added[source] if number is None else self.document(number)
        return Loaded(doc, self._fingerprint(source), signature)


def _fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _random(*numbers: int) -> random.Random:
    """A generator seeded by a sequence of non-negative numbers (each below a million)."""
    return random.Random(functools.reduce(lambda seed, number: seed * 1_000_003 + number, numbers, 1))


def _swapped(text: str, rng: random.Random) -> str:
    """``text`` with ``SWAPS_PER_TEXT`` pairs of neighbouring words swapped."""
    words = text.split(" ")
    if len(words) > 2:
        for _ in range(SWAPS_PER_TEXT):
            place = rng.randrange(len(words) - 1)
            words[place], words[place + 1] = words[place + 1], words[place]
    return " ".join(words)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
#: The figures of one row, in order; ``None`` where a row does not measure one.
ROW_KEYS = (
    "passages", "search_p50_ms", "search_p95_ms", "ann_recall_at_10", "e2e_p50_ms", "index_passages_per_s",
    "reference_passages_per_s", "update_add_s", "update_remove_s", "update_embed_s", "index_bytes", "open_s", "peak_rss_mb",
)
#: Distinct benchmark questions timed end to end per size (after the warm-up ones), unless they
#: take more than ``E2E_SECONDS``: then the timing stops once ``E2E_MIN_QUESTIONS`` are done.
E2E_QUESTIONS = 200
E2E_SECONDS = 60.0
E2E_MIN_QUESTIONS = 20
WARM_UP_QUESTIONS = 10
#: Real benchmark passages the indexing throughput is measured on (once per run). Each is encoded
#: about four times by a 2-core CPU at some 30 ms each (ours and the reference, twice), so 1,000
#: passages take about two minutes of the run's 15; 2,000 would take about four.
THROUGHPUT_PASSAGES = 1_000
#: Results per question, end to end.
E2E_K = 10
QUESTION_ENCODERS = ("index", "stand-in")

Log = Callable[[str], None]


class _TimedEmbedder:
    """A passage embedder that adds up the seconds its ``encode`` takes.

    It names itself as the stand-in: the bench adds rows embedded by the real model to an index
    of stand-in rows on purpose (it times an update, and does not judge the answers), where the
    index would otherwise rebuild rather than mix vectors of two kinds.
    """

    backend = StandInEmbedder.backend

    def __init__(self, inner: PassageEmbedder) -> None:
        self.inner = inner
        self.name, self.dimension, self.max_tokens = inner.name, inner.dimension, inner.max_tokens
        self.seconds = 0.0

    def encode(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        try:
            return self.inner.encode(texts)
        finally:
            self.seconds += time.perf_counter() - started

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.inner.count_tokens(texts)

    def export_question_encoder(self, folder: Path) -> None:
        self.inner.export_question_encoder(folder)


def run_scale(
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    benchmarks: Path = DEFAULT_BENCHMARKS,
    bulk: PassageEmbedder | None = None,
    update: Callable[[], PassageEmbedder] | None = None,
    question_encoder: str = "index",
    ann: Callable[[int], dict[str, Any]] | None = None,
    throughput: Callable[[list[str]], dict[str, Any]] | None = None,
    texts_per_document: int = 1,
    e2e_questions: int = E2E_QUESTIONS,
    temporary: Path | None = None,
    log: Log | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Measure one row per size (passages, ascending); the object ``rag bench --scale --json`` prints.

    ``bulk`` embeds the bulk builds (default: :class:`StandInEmbedder` with the real ONNX question
    encoder); ``update`` gives the embedder of the timed one-brief updates (default: the real
    ``passage_embedder``, loaded before the clock starts). ``question_encoder`` is ``index`` (what
    the index's manifest names) or ``stand-in``. ``ann(rows)`` gives the search-only figures
    (default ``rag.stores.ann_bench.measure``), ``throughput(texts)`` the indexing throughput
    (default ``rag.throughput.measure``), run once. Everything is written under a temporary folder
    in ``temporary`` (default: the system's, ``/tmp``) that is removed before returning.
    """
    if question_encoder not in QUESTION_ENCODERS:
        raise ValueError(f"question_encoder must be one of {', '.join(QUESTION_ENCODERS)}")
    say = log or (lambda message: None)
    started = time.perf_counter()
    sizes = sorted(set(sizes))
    settings = scale_settings()
    root = Path(tempfile.mkdtemp(prefix="rag-scale-", dir=temporary))
    try:
        bulk = bulk or StandInEmbedder(cache=root / "encoder")
        if update is None:
            from .embedding import passage_embedder

            update = functools.partial(passage_embedder, settings.model)
        say(f"reading the benchmark passages and questions under {_shown(benchmarks)}")
        texts = benchmark_texts(Path(benchmarks))
        questions = benchmark_questions(benchmarks)
        random.Random(0).shuffle(questions)
        needed = len(sizes) * (e2e_questions + WARM_UP_QUESTIONS)
        if len(questions) < needed:
            raise CorpusError(f"the benchmarks under {_shown(benchmarks)} hold {len(questions)} distinct questions; "
                              f"{needed} are needed (pass --benchmarks DIR)")
        brief = _seed_brief()
        say(f"loading the update embedder ({settings.model})")
        updater = _TimedEmbedder(update())
        rows, documents, asked = [], {}, {}
        for number, size in enumerate(sizes):
            batch = questions[number * (e2e_questions + WARM_UP_QUESTIONS) : (number + 1) * (e2e_questions + WARM_UP_QUESTIONS)]
            row, corpus = _measure_size(size, root / f"size-{size}", benchmarks, settings, bulk, updater, brief,
                                        batch, question_encoder, texts_per_document, say, progress)
            documents[str(size)] = corpus.documents
            asked[str(size)] = row["e2e_questions"]
            if number == 0:
                sample = _passage_texts(corpus, settings, bulk.count_tokens, THROUGHPUT_PASSAGES)
                say(f"indexing throughput on {len(sample):,} benchmark passages (our embedder vs SentenceTransformer.encode)")
                measured = (throughput or _throughput)(sample)
                row.update(index_passages_per_s=measured["index_passages_per_s"],
                           reference_passages_per_s=measured["reference_passages_per_s"])
            say(f"{size:,}: search-only ANN figures on {size:,} synthetic vectors (rag.stores.ann_bench)")
            found = (ann or _ann)(size)
            row.update(search_p50_ms=found["search_p50_ms"], search_p95_ms=found["search_p95_ms"],
                       ann_recall_at_10=found["ann_recall_at_10"])
            rows.append({key: row.get(key) for key in ROW_KEYS})
            say(f"{size:,}: done ({_summary(rows[-1])})")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "rows": rows,
        "wall_s": round(time.perf_counter() - started, 1),
        "machine": _machine(),
        "commit": _commit(),
        "data": {
            "benchmarks": _shown(benchmarks),
            "benchmark_texts": len(texts),
            "texts_per_document": texts_per_document,
            "documents": documents,
            "swaps_per_text": SWAPS_PER_TEXT,
            "settings": settings.to_dict(),
            "bulk_embedder": bulk.name,
            "update_embedder": updater.name,
            "update_brief": brief.source,
            "question_encoder": question_encoder,
            "e2e_questions": asked,
            "k": E2E_K,
        },
        "notes": _notes(texts_per_document),
    }


def _measure_size(
    size: int, folder: Path, benchmarks: Path, settings: IndexSettings, bulk: PassageEmbedder, updater: _TimedEmbedder,
    brief: Document, questions: list[str], question_encoder: str, texts_per_document: int, say: Log, progress: bool,
) -> tuple[dict[str, Any], SyntheticCorpus]:
    """Build the index of ``size`` passages in ``folder``, probe it in a fresh process, time two updates;
    ``folder`` is removed afterwards."""
    from .index import current_marker, open_index

    corpus = SyntheticCorpus.sized(benchmarks, size, settings, bulk.count_tokens, texts_per_document=texts_per_document)
    index_dir = folder / "index"
    try:
        say(f"{size:,}: building the index of {corpus.documents:,} briefs through open_index (stand-in embedder)")
        started = time.perf_counter()
        index = open_index(corpus, index_dir, settings, lambda: bulk, progress=progress)
        passages, generation = index.report.passages, index.directory
        index.close()
        del index
        _release_memory()
        say(f"{size:,}: built {passages:,} passages in {time.perf_counter() - started:.1f} s")
        row: dict[str, Any] = {"passages": passages, "index_bytes": _disk_bytes(generation)}
        spec: dict[str, Any] = {
            "benchmarks": str(benchmarks), "documents": corpus.documents, "text_count": corpus.text_count,
            "texts_per_document": texts_per_document, "seed": corpus.seed, "index_dir": str(index_dir),
            "warm_up": questions[:WARM_UP_QUESTIONS], "questions": questions[WARM_UP_QUESTIONS:],
            "question_encoder": question_encoder,
        }
        say(f"{size:,}: fresh search process: open, {len(spec['warm_up'])} warm-up then up to {len(spec['questions'])} timed questions")
        row.update(_probe_process(spec, folder / "probe.json"))
        say(f"{size:,}: adding one brief, then removing one (embedder: {updater.name})")
        corpus.add(brief)
        row["update_add_s"], added = _timed_update(corpus, index_dir, settings, updater, open_index)
        row["update_embed_s"] = round(updater.seconds, 4)
        removed = corpus.source(corpus.documents // 2)
        corpus.remove(removed)
        row["update_remove_s"], taken = _timed_update(corpus, index_dir, settings, updater, open_index)
        if added.added != [brief.source] or taken.removed != [removed] or current_marker(index_dir) is None:
            raise RuntimeError(f"the updates did not do what was asked ({added.added}, {taken.removed})")
        return row, corpus
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _timed_update(
    corpus: SyntheticCorpus, index_dir: Path, settings: IndexSettings, embedder: _TimedEmbedder, open_index: Callable[..., Any],
) -> tuple[float, Any]:
    """(wall seconds of ``open_index`` bringing the index up to date, its report); the embedder's clock restarts."""
    embedder.seconds = 0.0
    started = time.perf_counter()
    index = open_index(corpus, index_dir, settings, lambda: embedder)
    seconds = time.perf_counter() - started
    index.close()
    return round(seconds, 4), index.report


def _release_memory() -> None:
    """Give the memory the build freed back to the system before the search process is timed.

    The search process opens the index as one would after ``rag index`` has exited; without
    this, the allocator keeps the build's freed gigabytes and the page cache holding the
    index shrinks by as much (the open at 1M then took 1.4-1.8 s instead of 0.7 s).
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _probe_process(spec: dict[str, Any], path: Path) -> dict[str, Any]:
    """Run :func:`probe` on ``spec`` in a fresh Python process; its figures."""
    path.write_text(json.dumps(spec), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "rag.scale", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the search process failed: {done.stderr.strip()[-800:]}")
    return json.loads(done.stdout)


def probe(spec: dict[str, Any]) -> dict[str, float | int]:
    """In a fresh process: open the index, answer the questions, report open time, e2e p50 and peak RSS.

    ``Retriever.open`` must find the index up to date. Each question is searched once
    (hybrid, ``k=E2E_K``, question encoding included) after the warm-up questions; past
    ``E2E_SECONDS`` the timing stops once ``E2E_MIN_QUESTIONS`` are done (``e2e_questions`` says how many).
    """
    import statistics

    from .retrieval import Retriever

    corpus = SyntheticCorpus(Path(spec["benchmarks"]), spec["documents"], texts_per_document=spec["texts_per_document"],
                             seed=spec["seed"], text_count=spec["text_count"])
    encoder = StandInEmbedder(export=False) if spec["question_encoder"] == "stand-in" else None
    started = time.perf_counter()
    retriever = Retriever.open(corpus, Path(spec["index_dir"]), settings=scale_settings(), encoder=encoder,
                               embed=_refuse_embedding)
    open_s = time.perf_counter() - started
    if retriever.report.action != "opened":
        raise RuntimeError(f"the index was {retriever.report.action}, not opened as it was")
    for question in spec["warm_up"]:
        retriever.search(question, E2E_K, mode="hybrid")
    timings: list[float] = []
    deadline = time.perf_counter() + E2E_SECONDS
    for question in spec["questions"]:
        if len(timings) >= E2E_MIN_QUESTIONS and time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        retriever.search(question, E2E_K, mode="hybrid")
        timings.append((time.perf_counter() - started) * 1000)
    return {"open_s": round(open_s, 4), "e2e_p50_ms": round(statistics.median(timings), 3),
            "e2e_questions": len(timings), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _refuse_embedding() -> PassageEmbedder:
    raise RuntimeError("the search process was asked to embed passages: the index is not up to date")


def _peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _disk_bytes(folder: Path) -> int:
    """Bytes allocated on disk to the files under ``folder``, each hard-linked file counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in folder.rglob("*"):
        status = path.lstat()
        if (status.st_dev, status.st_ino) not in seen:
            seen.add((status.st_dev, status.st_ino))
            total += status.st_blocks * 512
    return total


def _seed_brief() -> Document:
    """The first bundled brief (``seeds/``), under a source name of its own: the document updates add."""
    from .documents import parse_text

    path = min((Path(__file__).resolve().parents[1] / "seeds").glob("*.txt"))
    doc = parse_text(f"added/{path.name}", path.read_text(encoding="utf-8"))
    if doc is None:
        raise CorpusError(f"{path.name} holds no text")
    return doc


def _passage_texts(corpus: SyntheticCorpus, settings: IndexSettings, count_tokens: TokenCounter, count: int) -> list[str]:
    """The first ``count`` passages of ``corpus`` as an index embeds them (title and text)."""
    from .chunking import chunk_document
    from .segments import search_text

    texts: list[str] = []
    for number in itertools.count():
        doc = corpus.document(number)
        texts += [search_text(doc.kind, doc.title, chunk.text)
                  for chunk in chunk_document(doc, count_tokens, settings.chunk_tokens, settings.overlap_tokens)]
        if len(texts) >= count:
            return texts[:count]
    raise AssertionError("unreachable")


def _throughput(texts: list[str]) -> dict[str, Any]:
    from .throughput import measure

    return measure(texts)


def _ann(rows: int) -> dict[str, Any]:
    from .stores.ann_bench import measure

    return measure(rows)


def _machine() -> dict[str, Any]:
    import platform

    memory = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), 0)
    return {"cpus": os.cpu_count(), "memory_gb": round(memory / 2**20, 1), "platform": platform.platform(),
            "python": platform.python_version()}


def _commit() -> dict[str, Any] | None:
    """The repository's commit and whether its files differ from it (``None`` outside a git checkout)."""
    repository = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repository,
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": head.stdout.strip(), "modified": bool(status.stdout.strip())}


def _shown(path: Path) -> str:
    """``path`` as a user reads it: relative to the repository when it lies beside it."""
    repository = Path(__file__).resolve().parents[1]
    try:
        return os.path.relpath(Path(path).resolve(), repository) if Path(path).resolve().is_relative_to(repository.parent) else str(path)
    except ValueError:
        return str(path)


def _notes(texts_per_document: int) -> list[str]:
    return [
        "search_p50_ms, search_p95_ms, ann_recall_at_10: rag.stores.ann_bench.measure at the row's size "
        "(the vector store the factory picks, synthetic clustered unit vectors, one query at a time, k=10).",
        f"e2e_p50_ms: Retriever.search(question, k={E2E_K}, mode='hybrid') on the real index of that size, question "
        f"encoding included, warm, each benchmark question asked once (up to {E2E_QUESTIONS}; fewer when they take over "
        f"{E2E_SECONDS:g} s, see data.e2e_questions); open_s (Retriever.open of the up-to-date index) and peak_rss_mb "
        "(VmHWM) come from that same fresh search process.",
        f"index_passages_per_s, reference_passages_per_s: rag.throughput.measure on {THROUGHPUT_PASSAGES:,} real "
        "benchmark passages, measured once and shown in the smallest row only (null elsewhere).",
        "update_add_s: wall time of open_index after one bundled brief was added, embedded by data.update_embedder "
        "(update_embed_s of it); update_remove_s: after one generated brief was removed.",
        "index_bytes: the live generation folder as built (before the updates), allocated bytes, hard links once.",
        f"data: benchmark passages (title + text), {texts_per_document} per brief, repeated in shuffled copies whose "
        f"texts swap {SWAPS_PER_TEXT} word pairs each; bulk-embedded by a hash-based stand-in (clustered unit vectors, "
        "token counts within 2% of the real tokenizer's), built through open_index.",
    ]


def _summary(row: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in row.items() if value is not None and key != "passages")


#: Markdown columns: heading, key, how a value is shown.
_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("passages", "passages", lambda v: f"{v:,}"),
    ("search p50 ms", "search_p50_ms", lambda v: f"{v:.3f}"),
    ("search p95 ms", "search_p95_ms", lambda v: f"{v:.3f}"),
    ("ANN recall@10", "ann_recall_at_10", lambda v: f"{v:.3f}"),
    ("e2e p50 ms", "e2e_p50_ms", lambda v: f"{v:.1f}"),
    ("index passages/s", "index_passages_per_s", lambda v: f"{v:,.0f}"),
    ("reference passages/s", "reference_passages_per_s", lambda v: f"{v:,.0f}"),
    ("add s", "update_add_s", lambda v: f"{v:.2f}"),
    ("(embedding s)", "update_embed_s", lambda v: f"{v:.2f}"),
    ("remove s", "update_remove_s", lambda v: f"{v:.2f}"),
    ("disk MiB", "index_bytes", lambda v: f"{v / 2**20:,.0f}"),
    ("open s", "open_s", lambda v: f"{v:.3f}"),
    ("peak RSS MiB", "peak_rss_mb", lambda v: f"{v:,.0f}"),
)


def markdown(result: dict[str, Any]) -> str:
    """The rows as a Markdown table (— where a row does not measure a figure), then one line per row."""
    lines = ["| " + " | ".join(heading for heading, _, _ in _COLUMNS) + " |", "|" + "---:|" * len(_COLUMNS)]
    for row in result["rows"]:
        lines.append("| " + " | ".join("—" if row[key] is None else shown(row[key]) for _, key, shown in _COLUMNS) + " |")
    data = result["data"]
    lines.append("")
    for row, size in zip(result["rows"], sorted(data["documents"], key=int)):
        documents = data["documents"][size]
        throughput = ("; indexing throughput measured once, here, on benchmark passages"
                      if row["index_passages_per_s"] is not None else "")
        lines.append(
            f"- {row['passages']:,} passages in {documents:,} generated briefs: search-only figures from ann_bench at this "
            f"size; e2e, open and peak RSS from a fresh search process over {data['e2e_questions'][size]} benchmark questions "
            f"(hybrid, k={data['k']}); add = {data['update_brief']} embedded by {data['update_embedder']}, "
            f"remove = one generated brief{throughput}."
        )
    machine = result["machine"]
    lines.append(f"\nData: {data['benchmarks']} passages ({data['benchmark_texts']:,} texts, {data['texts_per_document']} per brief) "
                 f"in shuffled copies, {data['swaps_per_text']} word pairs swapped per text; bulk-embedded by "
                 f"{data['bulk_embedder']}; questions encoded by the {data['question_encoder']} encoder. "
                 f"{machine['cpus']} CPUs, {machine['memory_gb']} GB; {result['wall_s']:,.0f} s in all.")
    return "\n".join(lines) + "\n"


def stderr_log() -> Log:
    """A logger for :func:`run_scale`: each message on stderr (rich), after the minutes and seconds so far."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    started = time.perf_counter()

    def log(message: str) -> None:
        minutes, seconds = divmod(int(time.perf_counter() - started), 60)
        console.print(f"[dim]{minutes:02d}:{seconds:02d}[/dim] {escape(message)}")

    return log


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rag.scale SPEC.json``: run :func:`probe` on a spec file, print its figures as JSON."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if len(arguments) != 1:
        print("usage: python -m rag.scale SPEC.json (run by rag bench --scale)", file=sys.stderr)
        return 2
    print(json.dumps(probe(json.loads(Path(arguments[0]).read_text(encoding="utf-8")))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
