"""The reranker seam: rescore (question, passage) pairs after retrieval.

No cross-encoder ships on the package index here, so reranking is off unless a local
cross-encoder folder is configured (``rag ask --reranker PATH``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from .errors import ModelError


class Reranker(Protocol):
    """Scores how well each passage answers a question; higher is better."""

    def score(self, question: str, passages: list[str]) -> list[float]:
        """One score per passage."""
        ...


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder`` loaded from a local folder, on the CPU.

    >>> reranker = CrossEncoderReranker("/models/ms-marco-MiniLM-L6-v2")  # doctest: +SKIP
    >>> reranker.score("what did Belarus seek from China?", ["...", "..."])  # doctest: +SKIP
    """

    def __init__(self, path: str | Path) -> None:
        from .embedding import offline

        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file():
            raise ModelError(f"reranker {path!s} is not a local cross-encoder folder (no config.json)")
        offline()
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(str(folder), device="cpu")

    def score(self, question: str, passages: list[str]) -> list[float]:
        """Cross-encoder relevance of each passage to the question."""
        if not passages:
            return []
        return [float(s) for s in self._model.predict([(question, passage) for passage in passages])]
