"""The torch-free question encoder: parity with sentence-transformers, what it refuses, the fallback,
and that it is the very export the passages were embedded with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.embedding import MODEL_BACKEND, ONNX_BACKEND, passage_embedder, question_encoder
from rag.onnx_encoder import (
    CONFIG_FILE, ONNX_FILE, QUESTION_FILE, QUESTION_FILES, ExportError, OnnxPassageEmbedder, OnnxQuestionEncoder,
    export,
)
from rag.index import ENCODER_DIR

from .conftest import DATA, ROOT

BENCHMARKS = ROOT.parent / "shared" / "benchmarks"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder_dir(seeds_index_template: Path) -> Path:
    """The ONNX export kept in the session's seeds index."""
    current = (seeds_index_template / "CURRENT").read_text().strip()
    return seeds_index_template / current / ENCODER_DIR


def benchmark_queries() -> list[str]:
    """Every query of the shared benchmark collections (none when they are not beside the repository)."""
    return [json.loads(line)["text"] for path in sorted(BENCHMARKS.glob("*/queries.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def every_question() -> list[str]:
    """The seeds' questions, odd ones (tiny, foreign, emoji, truncated) and every benchmark query."""
    questions = [json.loads(line)["question"] for name in ("seeds_qa.jsonl", "seeds_qa_heldout.jsonl")
                 for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    return questions + ["?", "a", "Минск и Пекин", "🙂", "word " * 600] + benchmark_queries()


@pytest.fixture(scope="module")
def reference_vectors() -> np.ndarray:
    return passage_embedder("all-MiniLM-L6-v2", MODEL_BACKEND).encode(every_question())


def test_the_float32_export_matches_sentence_transformers_on_every_question(encoder_dir: Path, reference_vectors) -> None:
    questions = every_question()
    onnx = OnnxQuestionEncoder(encoder_dir, model_file=ONNX_FILE).encode(questions)
    cosines = (onnx * reference_vectors).sum(axis=1)
    assert onnx.dtype == np.float32 and onnx.shape == reference_vectors.shape
    assert np.linalg.norm(onnx, axis=1) == pytest.approx(1.0, abs=1e-5)
    worst = int(cosines.argmin())
    assert cosines.min() >= 0.999, f"cosine {cosines.min():.6f} for {questions[worst]!r}"
    assert len(questions) > 4000 or not BENCHMARKS.is_dir()
    assert OnnxQuestionEncoder(encoder_dir).encode([]).shape == (0, 384)


def test_the_question_model_stays_close_to_sentence_transformers_whatever_the_batch(
    encoder_dir: Path, reference_vectors
) -> None:
    """Questions run the 8-bit weight-only model the index holds: close to the model's own vectors on
    every question, and a question's vector does not depend on the questions batched with it."""
    questions = every_question()
    encoder = OnnxQuestionEncoder(encoder_dir)
    assert encoder.model_file == QUESTION_FILE
    batched = encoder.encode(questions)
    cosines = (batched * reference_vectors).sum(axis=1)
    worst = int(cosines.argmin())
    assert cosines.min() >= 0.995, f"cosine {cosines.min():.6f} for {questions[worst]!r}"
    assert cosines.mean() >= 0.999
    alone = np.vstack([encoder.encode([question]) for question in questions[:300]])
    assert (alone * batched[:300]).sum(axis=1).min() >= 0.99999
    # one question runs on the one-thread session, a batch on the session with a thread per core
    assert encoder._session_for(1) is not encoder._session_for(8) or encoder._wide_threads == 1


def test_the_index_keeps_the_export_its_passages_were_embedded_with(encoder_dir: Path) -> None:
    """One export per model: the index's question encoder is the passage embedder's cached export."""
    embedder = passage_embedder()
    assert isinstance(embedder, OnnxPassageEmbedder)
    for name in QUESTION_FILES:
        assert (encoder_dir / name).read_bytes() == (embedder.folder / name).read_bytes()
        # as readable as the export: an index folder shared read-only must serve other users too
        assert (encoder_dir / name).stat().st_mode == (encoder_dir / ONNX_FILE).stat().st_mode


def test_encoder_settings_follow_the_model_pipeline(encoder_dir: Path) -> None:
    config = json.loads((encoder_dir / CONFIG_FILE).read_text())
    assert config == {"pooling": "mean", "normalize": True, "max_length": 256,
                      "inputs": ["input_ids", "attention_mask", "token_type_ids"], "dimension": 384}


def test_a_pipeline_onnx_cannot_reproduce_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]))
    with pytest.raises(ExportError, match="not Transformer"):
        export(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_or_broken_export_falls_back_with_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              encoder_dir: Path) -> None:
    broken = tmp_path / "encoder"
    broken.mkdir()
    for name in ("tokenizer.json", CONFIG_FILE):
        (broken / name).write_bytes((encoder_dir / name).read_bytes())
    (broken / "model.onnx").write_bytes(b"not a model")
    for _ in range(2):
        encoder = question_encoder(ONNX_BACKEND, broken, "all-MiniLM-L6-v2")
    assert encoder is passage_embedder("all-MiniLM-L6-v2", MODEL_BACKEND) and encoder.backend == MODEL_BACKEND
    assert capsys.readouterr().err.count("encoding questions with sentence-transformers instead") == 1
    assert question_encoder(MODEL_BACKEND, broken, "all-MiniLM-L6-v2") is passage_embedder("all-MiniLM-L6-v2", MODEL_BACKEND)
    assert isinstance(question_encoder(ONNX_BACKEND, encoder_dir, "all-MiniLM-L6-v2"), OnnxQuestionEncoder)


def test_the_question_path_never_imports_torch(seeds_index: Path, corpus_dir: Path, tmp_path: Path) -> None:
    """rag ask, rag ask --batch and the app's search, each in a fresh process."""
    batch = tmp_path / "questions.txt"
    batch.write_text("What did Belarus seek from China?\nRoketsan\n", encoding="utf-8")
    options = f"'--corpus', {str(corpus_dir)!r}, '--index-dir', {str(seeds_index)!r}"
    heavy = "('torch', 'transformers', 'sentence_transformers', 'gradio')"
    for call, allowed in [
        (f"main(['ask', 'What did Belarus seek from China?', {options}])", ()),
        (f"main(['ask', '--batch', {str(batch)!r}, {options}])", ()),
        ("from rag.retrieval import Retriever; from rag.ui import SearchApp; "
         f"SearchApp(Retriever.open({str(corpus_dir)!r}, {str(seeds_index)!r})).search_api('Roketsan', 3)", ("gradio",)),
    ]:
        code = (f"import sys; from rag.cli import main; {call}; "
                f"print('LOADED', [m for m in {heavy} if m in sys.modules and m not in {allowed!r}])")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "LOADED []" in result.stdout, (call, result.stdout[-300:])
        assert "Belarus" in result.stdout or "Roketsan" in result.stdout or "search_api" in call
