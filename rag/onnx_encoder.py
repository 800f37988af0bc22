"""Questions encoded without torch: an ONNX export of the embedding model, run by onnxruntime.

:func:`export` runs once, when an index is built (torch is needed then anyway), and writes
three files into a folder: the transformer as ONNX, the model's fast tokenizer, and
``encoder.json`` with the pooling, normalisation and maximum length the sentence-transformers
pipeline of the model uses. :class:`OnnxQuestionEncoder` reproduces that pipeline with
``onnxruntime`` and ``tokenizers`` only: importing it never imports torch, transformers or
sentence-transformers.

>>> encoder = OnnxQuestionEncoder("index/gen-000001/encoder")  # doctest: +SKIP
>>> encoder.encode(["What did Belarus seek from China?"]).shape  # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ModelError

if TYPE_CHECKING:
    import numpy as np

#: The files of an exported encoder, inside its folder.
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "encoder.json"
FILES = (ONNX_FILE, TOKENIZER_FILE, CONFIG_FILE)
#: Texts per model call: bounds memory (attention grows with batch x length²).
BATCH_SIZE = 32

_POOLING_MODES = ("mean", "cls", "max")


class ExportError(ModelError):
    """The model's pipeline cannot be reproduced in ONNX (questions then use sentence-transformers)."""


def _pipeline(model_path: Path) -> dict[str, Any]:
    """Pooling, normalisation and maximum length of a sentence-transformers folder's pipeline."""
    try:
        modules = json.loads((model_path / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ExportError(f"{model_path} has no readable modules.json") from None
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    if not kinds or kinds[0] != "Transformer" or any(kind not in ("Pooling", "Normalize") for kind in kinds[1:]):
        raise ExportError(f"pipeline {kinds} is not Transformer + Pooling (+ Normalize)")
    pooling = "mean"
    for module in modules:
        if str(module.get("type", "")).endswith("Pooling"):
            config = json.loads((model_path / module["path"] / "config.json").read_text(encoding="utf-8"))
            chosen = [mode for mode in _POOLING_MODES if config.get(f"pooling_mode_{mode}_tokens" if mode != "cls" else "pooling_mode_cls_token")]
            if len(chosen) != 1:
                raise ExportError(f"pooling {config} is not exactly one of {_POOLING_MODES}")
            pooling = chosen[0]
    try:
        settings = json.loads((model_path / "sentence_bert_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        settings = {}
    return {"pooling": pooling, "normalize": "Normalize" in kinds, "max_length": int(settings.get("max_seq_length") or 512)}


def export(model_path: Path, folder: Path) -> None:
    """Write the ONNX encoder of the local model at ``model_path`` into ``folder`` (created).

    Raises ``ExportError`` when the pipeline has parts ONNX here does not reproduce (a Dense
    layer, an unknown pooling) or the model has no fast tokenizer.
    """
    pipeline = _pipeline(model_path)
    if not (model_path / TOKENIZER_FILE).is_file():
        raise ExportError(f"{model_path} has no fast tokenizer ({TOKENIZER_FILE})")
    from .embedding import offline

    offline()
    import torch
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()
    except Exception as error:  # noqa: BLE001 - any loader failure means: no ONNX for this model
        raise ExportError(f"cannot load {model_path} for export: {error}") from None
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class _Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.long)
    folder.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "hidden"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes: none apply to this export
        torch.onnx.export(_Hidden(), tuple(sample for _ in names), str(folder / ONNX_FILE), input_names=names,
                          output_names=["hidden"], dynamic_axes=axes, opset_version=17, dynamo=False)
    shutil.copyfile(model_path / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    config = {**pipeline, "inputs": names, "dimension": int(model.config.hidden_size)}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")


class OnnxQuestionEncoder:
    """A ``QuestionEncoder`` running an exported model with onnxruntime on the CPU."""

    def __init__(self, folder: str | Path, name: str = "onnx") -> None:
        import numpy as np
        import onnxruntime
        from tokenizers import Tokenizer

        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
            self._tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = min(4, os.cpu_count() or 1)
            # Idle threads sleep instead of spinning: a search runs FAISS and numpy right after.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(
                str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # noqa: BLE001 - any failure means: use the fallback
            raise ModelError(f"cannot load the ONNX encoder in {folder}: {error}") from None
        self.name = name
        self.dimension = int(config["dimension"])
        self._inputs: list[str] = list(config["inputs"])
        self._pooling: str = config["pooling"]
        self._normalize: bool = bool(config["normalize"])
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(int(config["max_length"]))
        self._np = np

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, as the sentence-transformers pipeline gives them.

        Texts run through the model ``BATCH_SIZE`` at a time, grouped by length, so memory
        stays bounded however many come and little time goes into padding.
        """
        np = self._np
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return vectors
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda row: len(encodings[row].ids))
        for first in range(0, len(order), BATCH_SIZE):
            rows = order[first : first + BATCH_SIZE]
            vectors[rows] = self._run([encodings[row] for row in rows])
        return vectors

    def _run(self, encodings: list[Any]) -> np.ndarray:
        np = self._np
        width = max(len(encoding.ids) for encoding in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
            types[row, : len(encoding.ids)] = encoding.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = self._session.run(None, {name: feeds[name] for name in self._inputs})[0]
        if self._pooling == "cls":
            pooled = hidden[:, 0]
        elif self._pooling == "max":
            pooled = np.where(mask[..., None] > 0, hidden, -np.inf).max(axis=1)
        else:
            pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        if self._normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled
