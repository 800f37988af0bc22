"""Embedding with Ray (``rag index --ray``): the same vectors in the same order as one process,
the same answers from the index, a clear message without Ray, and no Ray on the default path."""

from __future__ import annotations

import importlib.util
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag import ray_embedding
from rag.chunking import chunk_document
from rag.config import IndexSettings
from rag.documents import FolderCorpus
from rag.embedding import PASSAGE_BACKENDS, passage_embedder
from rag.index import open_index, search_text

from .conftest import SEEDS, HashingEmbedder
from .test_cli import run

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (optional extra: pip install '.[scale]')")
QUESTIONS = ["What did Belarus seek from China?", "Roketsan", "Polonaise", "military exercises with Russia"]
# Ray Data's own context warns about its deprecated settings when copied: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray instance of 2 CPUs for the module; the embedders under test join it."""
    pytest.importorskip("ray.data", reason="ray is not installed (optional extra: pip install '.[scale]')")
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


def seed_texts() -> list[str]:
    """A few hundred distinct texts from the seeds: paragraphs, passages cut at three sizes, sentences."""
    embedder = passage_embedder()
    settings = IndexSettings()
    corpus = FolderCorpus(SEEDS)
    texts = [part.strip() for path in sorted(SEEDS.glob("*.txt"))
             for part in path.read_text(encoding="utf-8").split("\n\n") if part.strip()]
    for source in corpus.scan().signatures:
        doc = corpus.load(source).document
        assert doc is not None
        for tokens, overlap in ((settings.chunk_tokens, settings.overlap_tokens), (64, 16), (32, 4)):
            for chunk in chunk_document(doc, embedder.count_tokens, tokens, overlap):
                texts.append(search_text(doc.kind, doc.title, chunk.text))
                texts += [doc.text[start:end] for start, end in chunk.sentences]
    return list(dict.fromkeys(texts))


@needs_ray
@pytest.mark.slow
def test_ray_vectors_equal_single_process_ones_in_order(local_ray: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_embedding, "TEXTS_PER_TASK", 24)  # many batches over two actors, finishing in any order
    texts = seed_texts()
    assert len(texts) >= 250
    embedder = ray_embedding.RayPassageEmbedder(actors=2)
    assert embedder.actors == 2 and not embedder._started  # joined the module's instance
    single = passage_embedder()
    vectors, expected = embedder.encode(texts), single.encode(texts)
    assert vectors.shape == expected.shape == (len(texts), 384) and vectors.dtype == np.float32
    assert np.einsum("ij,ij->i", vectors, expected).min() >= 0.9999


@needs_ray
@pytest.mark.slow
def test_ray_embedder_is_a_passage_embedder_of_the_model(local_ray: None) -> None:
    embedder = ray_embedding.RayPassageEmbedder()
    single = passage_embedder()
    assert embedder.backend == f"ray:{single.backend}" == f"ray:{PASSAGE_BACKENDS[0]}" and embedder.actors == 1  # one node: one actor on its 2 CPUs
    assert (embedder.name, embedder.dimension, embedder.max_tokens) == (single.name, 384, single.max_tokens)
    assert embedder.documents_per_batch == ray_embedding.DOCUMENTS_PER_BATCH > 64
    assert embedder.count_tokens(["Minsk and Ankara"]) == [3]
    assert embedder.encode([]).shape == (0, 384)


@needs_ray
@pytest.mark.slow
def test_rag_index_ray_answers_like_the_default_build(
    local_ray: None, capsys: pytest.CaptureFixture[str], corpus_dir: Path, seeds_index: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    encode = ray_embedding.RayPassageEmbedder.encode
    monkeypatch.setattr(ray_embedding.RayPassageEmbedder, "encode",
                        lambda self, texts: calls.append(len(texts)) or encode(self, texts))
    ray_index = tmp_path / "ray-index"
    status, out, err = run(capsys, "index", "--ray", "--corpus", str(corpus_dir), "--index-dir", str(ray_index))
    assert status == 0 and "index built" in err and "5 documents" in out
    assert len(calls) == 1 and calls[0] > 50  # all five briefs' passages and sentences in one Ray call
    for question in QUESTIONS:
        answers = []
        for index_dir in (ray_index, seeds_index):
            status, out, _ = run(capsys, "ask", question, "--json", "-k", "5", "--corpus", str(corpus_dir),
                                 "--index-dir", str(index_dir))
            assert status == 0
            answers.append(json.loads(out))
        ray_hits, default_hits = (answer.pop("hits") for answer in answers)
        assert answers[0] == answers[1]
        assert [(h["source"], h["start"], h["end"]) for h in ray_hits] == [(h["source"], h["start"], h["end"]) for h in default_hits]
        assert [h["score"] for h in ray_hits] == pytest.approx([h["score"] for h in default_hits], abs=1e-3)


def test_without_ray_the_command_says_what_to_install(
    capsys: pytest.CaptureFixture[str], corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # "import ray" now fails as if it were not installed
    monkeypatch.setitem(sys.modules, "ray.data", None)
    status, _, err = run(capsys, "index", "--ray", "--corpus", str(corpus_dir), "--index-dir", str(tmp_path / "i"))
    assert status == 1 and "pip install '.[scale]'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "i").exists()  # refused before any work


def test_the_default_path_never_imports_ray() -> None:
    code = ("import sys, rag.cli, rag.index, rag.retrieval, rag.embedding, rag.ray_embedding; rag.cli.build_parser(); "
            "print('ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_builder_embeds_documents_per_batch_of_the_embedder(corpus_dir: Path, tmp_path: Path) -> None:
    calls: list[int] = []

    class Batched(HashingEmbedder):
        documents_per_batch = 2

        def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
            calls.append(len(texts))
            return super().encode(texts)

    open_index(FolderCorpus(corpus_dir), tmp_path / "index", IndexSettings(), Batched).close()
    assert len(calls) == 3  # five briefs, two per call


@needs_ray
def test_an_unreachable_cluster_is_one_line_at_once(corpus_dir: Path, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "rag.cli", "index", "--ray-address", "127.0.0.1:1",
            "--corpus", str(corpus_dir), "--index-dir", str(tmp_path / "i")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("rag: error: cannot reach the Ray cluster at 127.0.0.1:1")
