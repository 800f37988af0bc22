"""Shared fixtures: a copy of the seeds and one index built over it per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def seeds_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the five bundled briefs (tests must not modify it)."""
    folder = tmp_path_factory.mktemp("seeds")
    for path in SEEDS.glob("*.txt"):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="session")
def seeds_retriever(seeds_copy: Path, tmp_path_factory: pytest.TempPathFactory):
    """A ``Retriever`` over the seeds copy, its index built once for the whole session."""
    from rag.retrieval import Retriever

    return Retriever.open(seeds_copy, tmp_path_factory.mktemp("index"))


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A fresh corpus folder holding a copy of the seeds, free to modify."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for path in SEEDS.glob("*.txt"):
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="session")
def seeds_index_template(seeds_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index folder of the seeds with default settings, built once; copy it, never modify it."""
    from rag.config import IndexSettings
    from rag.documents import FolderCorpus
    from rag.embedding import passage_embedder
    from rag.index import open_index

    folder = tmp_path_factory.mktemp("index-template")
    open_index(FolderCorpus(seeds_copy), folder, IndexSettings(), passage_embedder).close()
    return folder


@pytest.fixture
def seeds_index(seeds_index_template: Path, tmp_path: Path) -> Path:
    """A private, up-to-date index folder of the seeds (matches ``corpus_dir``), free to modify."""
    folder = tmp_path / "index"
    shutil.copytree(seeds_index_template, folder)
    return folder


@pytest.fixture(scope="session")
def ui_url(seeds_retriever):
    """URL of the web app over ``seeds_retriever``, served on a free loopback port for the session."""
    import socket

    from rag.ui import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = serve(seeds_retriever, "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


class HashingEmbedder:
    """A fast, deterministic stand-in embedder: hashed bag of words, unit length; tokens are words.

    For index tests that exercise building and updating, not retrieval quality.
    """

    name = "hashing"
    backend = "hashing"
    dimension = 384
    max_tokens = 256

    def encode(self, texts: list[str], *, progress: bool = False):
        import zlib

        import numpy as np

        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                vectors[row, zlib.crc32(word.encode("utf-8", "replace")) % self.dimension] += 1.0
            vectors[row, 0] += 1e-3
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(text.split()) for text in texts]

    def export_question_encoder(self, folder: Path) -> None:
        from rag.onnx_encoder import ExportError

        raise ExportError("the hashing stand-in has no ONNX export")
