"""Semantic question answering over security briefs, with exact citations.

>>> from rag import Retriever  # doctest: +SKIP
>>> hits = Retriever.open("seeds", "index").search("What did Belarus seek from China?")  # doctest: +SKIP

Heavy libraries (torch, faiss, gradio) load only when first needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import CorpusError, IndexCorruptError, ModelError, QueryError, RagError

if TYPE_CHECKING:
    from .retrieval import Hit, Retriever, SentenceSpan
    from .stores.passages import Filters

__all__ = [
    "CorpusError", "Filters", "Hit", "IndexCorruptError", "ModelError", "QueryError", "RagError",
    "Retriever", "SentenceSpan",
]

_LAZY = {"Retriever": "retrieval", "Hit": "retrieval", "SentenceSpan": "retrieval", "Filters": "stores.passages"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
