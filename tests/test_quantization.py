"""The int8 rewrite on a toy model: an embedding table with one outlier channel, then two MatMuls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag import quantization

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
#: A token id past the vocabulary: its row of the table is loud.
LOUD = len(WORDS) + 1


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A float32 model (ids -> table row -> @ W1 -> @ W2) and a word-level tokenizer of ``WORDS`` (ids 1-8)."""
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    folder = tmp_path_factory.mktemp("toy")
    draw = np.random.default_rng(7)
    table = draw.normal(size=(LOUD + 1, 32)).astype(np.float32)
    table[:, 3] *= 40  # the outlier channel transformers' activations have
    table[LOUD] = 3 * np.abs(table).max()  # and a loud token no calibration text holds
    first, second = (draw.normal(size=shape).astype(np.float32) for shape in ((32, 48), (48, 16)))
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "input_ids"], ["rows"]),
         helper.make_node("MatMul", ["rows", "first"], ["hidden"]),
         helper.make_node("MatMul", ["hidden", "second"], ["output"])],
        "toy",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "tokens", 16])],
        [numpy_helper.from_array(array, name) for name, array in (("table", table), ("first", first), ("second", second))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(folder / "model.onnx"))
    tokenizer = Tokenizer(WordLevel({word: index for index, word in enumerate(["[UNK]", *WORDS])}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    return folder / "model.onnx", folder / "tokenizer.json"


def _run(path: Path, ids: np.ndarray) -> np.ndarray:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input_ids": ids})[0]


def test_every_weight_matmul_becomes_int8_and_stays_close(toy: tuple[Path, Path], tmp_path: Path) -> None:
    model, tokenizer = toy
    quantization.write_int8_model(model, tokenizer, str(tmp_path / "int8.onnx"))
    kinds = [node.op_type for node in onnx.load(str(tmp_path / "int8.onnx")).graph.node]
    assert "MatMul" not in kinds and kinds.count("MatMulInteger") == 2
    ids = np.random.default_rng(1).integers(1, len(WORDS) + 1, size=(4, 12))
    exact, approximate = _run(model, ids), _run(tmp_path / "int8.onnx", ids)
    assert np.abs(approximate - exact).max() <= 0.02 * np.abs(exact).max()
    assert not np.array_equal(approximate, exact)  # truly integer arithmetic


def test_a_row_does_not_depend_on_its_batch(toy: tuple[Path, Path], tmp_path: Path) -> None:
    """Each token row has its own scale: batched beside rows of larger activations, a text's output is unchanged."""
    model, tokenizer = toy
    quantization.write_int8_model(model, tokenizer, str(tmp_path / "int8.onnx"))
    alone = np.array([[1, 2, 3, 4]])
    crowded = np.array([[1, 2, 3, 4], [LOUD] * 4])
    np.testing.assert_array_equal(_run(tmp_path / "int8.onnx", alone)[0], _run(tmp_path / "int8.onnx", crowded)[0])


def test_calibration_texts_are_drawn_from_the_vocabulary_the_same_way_every_time(toy: tuple[Path, Path]) -> None:
    _, tokenizer = toy
    texts = quantization.calibration_texts(tokenizer)
    assert texts == quantization.calibration_texts(tokenizer)
    assert len(texts) == quantization.CALIBRATION_TEXTS
    assert all(len(text.split()) == quantization.CALIBRATION_WORDS and set(text.rstrip(".").split()) <= set(WORDS) for text in texts)


def test_smoothing_moves_the_outlier_channel_into_the_weights(
    toy: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an outlier channel, smoothing (SmoothQuant) makes the int8 outputs clearly closer to the float ones."""
    model, tokenizer = toy
    ids = np.random.default_rng(2).integers(1, len(WORDS) + 1, size=(4, 12))
    exact = _run(model, ids)

    def error(smoothing: float) -> float:
        monkeypatch.setattr(quantization, "SMOOTHING", smoothing)
        quantization.write_int8_model(model, tokenizer, str(tmp_path / f"{smoothing}.onnx"))
        return float(np.abs(_run(tmp_path / f"{smoothing}.onnx", ids) - exact).mean())

    assert error(quantization.SMOOTHING) < 0.5 * error(0.0)
