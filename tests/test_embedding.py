"""The embedder: bundled model found locally, offline switches, normalized vectors, token counts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from rag.config import BUNDLED_MODEL
from rag.embedding import passage_embedder, offline, resolve_model_path
from rag.errors import ModelError


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
