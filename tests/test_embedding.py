"""The embedder: bundled model found locally, offline switches, normalized vectors, token counts;
the ONNX passage embedder against sentence-transformers, its cached export and its fallback."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag import embedding, onnx_encoder
from rag.config import BUNDLED_MODEL
from rag.embedding import MODEL_BACKEND, ONNX_BACKEND, ONNX_INT8_BACKEND, offline, passage_embedder, resolve_model_path
from rag.errors import ModelError
from rag.onnx_encoder import CACHE_ENV, FILES, INT8_FILE, QUESTION_FILES, ExportError, OnnxPassageEmbedder, cached_export

from .conftest import ROOT, SEEDS

SCIFACT = ROOT.parent / "shared" / "benchmarks" / "scifact" / "corpus.jsonl"


def test_the_bundled_model_resolves_to_a_local_folder() -> None:
    path = resolve_model_path(BUNDLED_MODEL)
    assert path.is_dir() and (path / "config.json").is_file()


@pytest.mark.parametrize("model", ["sentence-transformers/all-mpnet-base-v2", "/no/such/folder"])
def test_a_hub_name_or_missing_folder_is_refused_without_downloading(model: str) -> None:
    with pytest.raises(ModelError, match="nothing is fetched from a hub"):
        resolve_model_path(model)


def test_a_folder_without_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a local sentence-transformers folder"):
        resolve_model_path(str(tmp_path))


def test_offline_switches_the_hub_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    offline()
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["TRANSFORMERS_OFFLINE"] == "1"


@pytest.mark.slow
def test_vectors_are_normalized_float32_and_similar_texts_are_close() -> None:
    embedder = passage_embedder()
    assert passage_embedder() is embedder  # loaded once per process
    vectors = embedder.encode(["Belarus buys Chinese missiles.", "Minsk acquires missiles from China.", "Cake recipe."])
    assert vectors.shape == (3, embedder.dimension) == (3, 384)
    assert vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert embedder.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_token_counts_exclude_special_tokens() -> None:
    embedder = passage_embedder()
    assert embedder.count_tokens(["", "Minsk", "Minsk and Ankara"]) == [0, 1, 3]
    assert embedder.count_tokens([]) == []
    assert embedder.max_tokens == 256


def varied_texts() -> list[str]:
    """Seed paragraphs, SciFact abstracts (when beside the repository) and awkward texts."""
    texts = [part.strip() for path in sorted(SEEDS.glob("*.txt"))
             for part in path.read_text(encoding="utf-8").split("\n\n") if part.strip()]
    texts += [path.read_text(encoding="utf-8") for path in sorted(SEEDS.glob("*.txt"))[:2]]  # whole briefs
    if SCIFACT.is_file():
        records = [json.loads(line) for line in SCIFACT.read_text(encoding="utf-8").splitlines()[:150]]
        texts += [f"{record['title']}\n{record['text']}" for record in records]
    return texts + [
        "", " ", "\t\n", "?", "a", "Минск и Пекин", "北京与明斯克的合作", "🙂🙂 🚀", "Ünïcödé naïve café — “quotes”",
        "[CLS] [SEP] [MASK] literal special tokens", "word " * 600, "Lukashenka " * 300, "x" * 3000,
    ]


@pytest.fixture(scope="module")
def reference() -> embedding.SentenceTransformerEmbedder:
    """sentence-transformers itself: what the ONNX embedder must reproduce."""
    model = passage_embedder(BUNDLED_MODEL, MODEL_BACKEND)
    assert isinstance(model, embedding.SentenceTransformerEmbedder)
    return model


@pytest.fixture(scope="module")
def expected(reference) -> tuple[list[str], np.ndarray]:
    """``varied_texts()`` and their sentence-transformers vectors."""
    texts = varied_texts()
    return texts, reference.encode(texts)


@pytest.fixture(scope="module")
def onnx_embedder() -> OnnxPassageEmbedder:
    """The float32 ONNX passage embedder (its export cached from here on)."""
    model = passage_embedder(BUNDLED_MODEL, ONNX_BACKEND)
    assert isinstance(model, OnnxPassageEmbedder) and model.backend == ONNX_BACKEND
    return model


@pytest.mark.slow
def test_onnx_passages_match_sentence_transformers(onnx_embedder: OnnxPassageEmbedder, reference, expected) -> None:
    texts, reference_vectors = expected
    assert max(reference.count_tokens(texts)) > 2 * reference.max_tokens  # truncation is exercised
    vectors = onnx_embedder.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == reference_vectors.shape == (len(texts), 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)
    cosines = (vectors * reference_vectors).sum(axis=1)
    worst = int(cosines.argmin())
    assert cosines.min() >= 0.9999, f"cosine {cosines[worst]:.6f} for {texts[worst][:80]!r}"


@pytest.mark.slow
def test_rows_come_back_in_the_order_given_across_length_buckets(
    onnx_embedder: OnnxPassageEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onnx_encoder, "BATCH_TOKENS", 600)  # many buckets from few texts
    words = "Belarus buys air defence systems from China and Turkey while Russia hesitates".split()
    texts = [" ".join(words[i % len(words)] for i in range(start, start + length))
             for start, length in enumerate([0, 1, 3, 7, 15, 30, 60, 120, 200, 300] * 4)]
    random.Random(7).shuffle(texts)
    assert sum(min(n, 254) + 2 for n in onnx_embedder.count_tokens(texts)) > 4 * onnx_encoder.BATCH_TOKENS
    together = onnx_embedder.encode(texts + texts[:5])
    alone = np.vstack([onnx_embedder.encode([text]) for text in texts])
    np.testing.assert_allclose(together, np.vstack([alone, alone[:5]]), atol=1e-5)


@pytest.mark.slow
def test_token_counts_agree_with_sentence_transformers(onnx_embedder: OnnxPassageEmbedder, reference) -> None:
    texts = varied_texts()
    assert onnx_embedder.count_tokens(texts) == reference.count_tokens(texts)
    assert onnx_embedder.count_tokens(["word " * 600]) == [600]  # counted, not truncated
    assert onnx_embedder.max_tokens == reference.max_tokens == 256
    assert onnx_embedder.dimension == reference.dimension


@pytest.mark.slow
def test_int8_passages_stay_close_and_questions_keep_their_own_model(
    onnx_embedder: OnnxPassageEmbedder, reference, expected, tmp_path: Path
) -> None:
    """The int8 backend: same export, its quantized model beside it; the index gets the float32 files
    and the question model, never the int8 passage model."""
    int8 = passage_embedder(BUNDLED_MODEL, ONNX_INT8_BACKEND)
    assert isinstance(int8, OnnxPassageEmbedder) and int8.backend == ONNX_INT8_BACKEND
    assert int8.folder == onnx_embedder.folder and (int8.folder / INT8_FILE).is_file()
    texts, reference_vectors = expected
    vectors = int8.encode(texts)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(1.0, abs=1e-5)
    cosines = (vectors * reference_vectors).sum(axis=1)
    assert cosines.min() >= 0.98 and cosines.mean() >= 0.997 and cosines.min() < 0.9999  # close ("?" lowest), and truly int8
    assert int8.count_tokens(texts) == reference.count_tokens(texts)
    int8.export_question_encoder(tmp_path / "encoder")
    assert sorted(path.name for path in (tmp_path / "encoder").iterdir()) == sorted(QUESTION_FILES)
    assert (tmp_path / "encoder" / "model.onnx").read_bytes() == (onnx_embedder.folder / "model.onnx").read_bytes()


def test_the_environment_picks_the_passage_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(embedding.PASSAGE_BACKEND_ENV, raising=False)
    assert embedding.default_passage_backend() == ONNX_INT8_BACKEND == embedding.PASSAGE_BACKENDS[0]
    monkeypatch.setenv(embedding.PASSAGE_BACKEND_ENV, " onnx ")
    assert embedding.default_passage_backend() == ONNX_BACKEND
    monkeypatch.setenv(embedding.PASSAGE_BACKEND_ENV, "torch")
    with pytest.raises(ModelError, match="RAG_PASSAGE_EMBEDDER is 'torch'"):
        passage_embedder(BUNDLED_MODEL)


@pytest.mark.slow
def test_the_int8_model_quantizes_every_weight_and_a_vector_does_not_depend_on_its_batch(expected) -> None:
    import onnx

    int8 = passage_embedder(BUNDLED_MODEL, ONNX_INT8_BACKEND)
    assert isinstance(int8, OnnxPassageEmbedder)
    graph = onnx.load(str(int8.folder / INT8_FILE), load_external_data=False).graph
    weights = {init.name for init in graph.initializer}
    assert not [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in weights]
    assert sum(node.op_type == "MatMulInteger" for node in graph.node) == 36  # 6 layers x (q, k, v, output, 2 feed-forward)
    texts, _ = expected
    together = int8.encode(texts)
    alone = np.vstack([int8.encode([text]) for text in texts])
    assert (alone * together).sum(axis=1).min() >= 0.99999


@pytest.mark.slow
def test_a_model_that_cannot_be_exported_falls_back_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], reference
) -> None:
    def refuse(model_path: Path, folder: Path) -> None:
        folder.joinpath("model.onnx").write_bytes(b"half written")
        raise ExportError("this test refuses to export")

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(onnx_encoder, "export", refuse)
    fresh = embedding._passage_embedder.__wrapped__  # the factory without its per-process cache
    for _ in range(2):
        embedder = fresh(BUNDLED_MODEL, ONNX_BACKEND)
        assert embedder is reference and embedder.backend == MODEL_BACKEND
    assert capsys.readouterr().err.count("this test refuses to export; embedding passages with sentence-transformers") == 1
    assert not list((tmp_path / "onnx").iterdir())  # the half-written export is gone
    with pytest.raises(ValueError, match="unknown passage embedder backend"):
        passage_embedder(BUNDLED_MODEL, "torch")


@pytest.mark.slow
def test_the_export_is_made_once_and_remade_when_damaged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], onnx_embedder
) -> None:
    exports = []

    def copy_export(model_path: Path, folder: Path) -> None:
        exports.append(folder)
        for name in FILES:
            shutil.copyfile(onnx_embedder.folder / name, folder / name)

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(onnx_encoder, "export", copy_export)
    model_path = resolve_model_path(BUNDLED_MODEL)
    folder = cached_export(model_path)
    assert cached_export(model_path) == folder and len(exports) == 1
    assert folder.parent == tmp_path / "onnx" and sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    (folder / "model.onnx").write_bytes(b"damaged")
    embedder = embedding._passage_embedder.__wrapped__(BUNDLED_MODEL, ONNX_BACKEND)
    assert isinstance(embedder, OnnxPassageEmbedder) and len(exports) == 2 and "warning" not in capsys.readouterr().err
    np.testing.assert_allclose(embedder.encode(["Minsk"]), onnx_embedder.encode(["Minsk"]), atol=1e-6)


@pytest.mark.slow
def test_the_question_encoder_is_the_passage_embedders_own_export(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, onnx_embedder: OnnxPassageEmbedder
) -> None:
    monkeypatch.setattr(onnx_encoder, "export", None)  # linking must not export again
    onnx_embedder.export_question_encoder(tmp_path / "encoder")
    for name in QUESTION_FILES:
        assert (tmp_path / "encoder" / name).read_bytes() == (onnx_embedder.folder / name).read_bytes()
    questions = ["What did Belarus seek from China?", "Roketsan"]
    encoder = onnx_encoder.OnnxQuestionEncoder(tmp_path / "encoder")
    float32 = onnx_encoder.OnnxQuestionEncoder(tmp_path / "encoder", model_file=onnx_encoder.ONNX_FILE)
    assert encoder.model_file == onnx_encoder.QUESTION_FILE
    np.testing.assert_allclose(float32.encode(questions), onnx_embedder.encode(questions), atol=1e-6)
    assert (encoder.encode(questions) * onnx_embedder.encode(questions)).sum(axis=1).min() >= 0.995


@pytest.mark.slow
def test_without_an_int8_model_passages_take_the_float32_export(
    monkeypatch: pytest.MonkeyPatch, onnx_embedder: OnnxPassageEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    def cannot(folder: Path) -> Path:
        raise ExportError("this test cannot quantize")

    monkeypatch.setattr(onnx_encoder, "quantize", cannot)
    embedder = embedding._passage_embedder.__wrapped__(BUNDLED_MODEL, ONNX_INT8_BACKEND)  # not the per-process one
    assert isinstance(embedder, OnnxPassageEmbedder) and embedder.backend == ONNX_BACKEND
    assert embedder.model_file == onnx_encoder.ONNX_FILE and embedder.folder == onnx_embedder.folder
    assert "this test cannot quantize; embedding passages with the float32 export instead" in capsys.readouterr().err


@pytest.mark.slow
def test_without_a_question_model_questions_take_the_float32_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, onnx_embedder: OnnxPassageEmbedder
) -> None:
    def cannot(folder: Path) -> Path:
        raise ExportError("no quantizer here")

    monkeypatch.setattr(onnx_encoder, "question_model", cannot)
    (tmp_path / "export").mkdir()
    for name in FILES:  # an export made before question models existed
        shutil.copyfile(onnx_embedder.folder / name, tmp_path / "export" / name)
    OnnxPassageEmbedder(tmp_path / "export", BUNDLED_MODEL).export_question_encoder(tmp_path / "encoder")
    assert sorted(path.name for path in (tmp_path / "encoder").iterdir()) == sorted(FILES)
    encoder = onnx_encoder.OnnxQuestionEncoder(tmp_path / "encoder")
    assert encoder.model_file == onnx_encoder.ONNX_FILE
    np.testing.assert_allclose(encoder.encode(["Roketsan"]), onnx_embedder.encode(["Roketsan"]), atol=1e-6)


@pytest.mark.slow
def test_passages_are_encoded_without_torch_once_the_export_is_cached(
    onnx_embedder: OnnxPassageEmbedder, tmp_path: Path
) -> None:
    code = (
        "import sys; from pathlib import Path; from rag.embedding import passage_embedder; "
        "e = passage_embedder(); v = e.encode(['Minsk buys missiles.', '']); n = e.count_tokens(['Minsk and Ankara']); "
        f"e.export_question_encoder(Path({str(tmp_path / 'encoder')!r})); "
        "print('RESULT', e.backend, v.shape, n, "
        "[m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"RESULT {ONNX_INT8_BACKEND} (2, 384) [3] []" in result.stdout, result.stdout[-300:]
