"""``rag bench --scale`` at tiny sizes: every figure in its place, real indexes of the asked size, nothing left in /tmp.

Stand-ins embed everything (passages, the update, questions) and a fixed throughput is
injected, so no model is loaded; the search-only figures come from the real ``ann_bench``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag.cli import main
from rag.config import benchmark_settings
from rag.scale import (
    DEFAULT_BENCHMARKS,
    ROW_KEYS,
    THROUGHPUT_PASSAGES,
    StandInEmbedder,
    SyntheticCorpus,
    estimate_tokens,
    markdown,
    run_scale,
)

SIZES = (300, 1_500)
THROUGHPUT = {"passages": 1_000, "index_passages_per_s": 123.0, "reference_passages_per_s": 100.0, "ratio": 1.23}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not DEFAULT_BENCHMARKS.is_dir(), reason="../shared/benchmarks is not beside the repository"),
]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One scale run at the tiny sizes, its temporary folders under a folder of the test's own."""
    temporary = tmp_path_factory.mktemp("scale-tmp")
    texts: list[list[str]] = []

    def throughput(passages: list[str]) -> dict[str, Any]:
        texts.append(passages)
        return THROUGHPUT

    measured = run_scale(
        SIZES, bulk=StandInEmbedder(export=False), update=lambda: StandInEmbedder(export=False),
        question_encoder="stand-in", throughput=throughput, e2e_questions=20, temporary=temporary,
    )
    measured["_temporary"] = temporary
    measured["_throughput_texts"] = texts
    return measured


def test_every_row_has_every_figure_typed_and_nulls_only_where_expected(result: dict[str, Any]) -> None:
    json.dumps({key: value for key, value in result.items() if not key.startswith("_")})
    rows = result["rows"]
    assert [list(row) for row in rows] == [list(ROW_KEYS)] * len(SIZES)
    once = {"index_passages_per_s", "reference_passages_per_s"}
    for number, row in enumerate(rows):
        for key in set(ROW_KEYS) - once:
            assert isinstance(row[key], (int, float)) and not isinstance(row[key], bool), key
            assert row[key] >= 0, key
        assert isinstance(row["passages"], int) and isinstance(row["index_bytes"], int)
        assert 0 <= row["ann_recall_at_10"] <= 1
        assert row["search_p50_ms"] <= row["search_p95_ms"]
        if number == 0:
            assert row["index_passages_per_s"] == THROUGHPUT["index_passages_per_s"]
            assert row["reference_passages_per_s"] == THROUGHPUT["reference_passages_per_s"]
        else:
            assert row["index_passages_per_s"] is None and row["reference_passages_per_s"] is None
    assert {"machine", "commit", "data", "notes", "wall_s"} <= set(result)
    assert result["data"]["e2e_questions"] == {str(size): 20 for size in SIZES}


def test_throughput_runs_once_on_real_passage_texts(result: dict[str, Any]) -> None:
    [texts] = result["_throughput_texts"]
    assert len(texts) == THROUGHPUT_PASSAGES and len(set(texts)) > 0.95 * THROUGHPUT_PASSAGES
    assert all(0 < estimate_tokens(text) <= 200 for text in texts)


def test_indexes_hold_the_asked_passages_and_updates_take_time(result: dict[str, Any]) -> None:
    for size, row in zip(SIZES, result["rows"]):
        assert abs(row["passages"] - size) <= 0.05 * size
        assert row["update_add_s"] > 0 and row["update_remove_s"] > 0
        assert 0 <= row["update_embed_s"] < row["update_add_s"]
        assert row["index_bytes"] > 0 and row["open_s"] > 0 and row["peak_rss_mb"] > 0


def test_temporary_folders_are_gone(result: dict[str, Any]) -> None:
    assert list(result["_temporary"].iterdir()) == []


def test_markdown_shows_a_row_per_size_and_dashes_for_what_a_row_does_not_measure(result: dict[str, Any]) -> None:
    text = markdown(result)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(SIZES)
    assert "—" in table[-1] and "—" not in table[1]
    assert sum(line.startswith("- ") for line in text.splitlines()) == len(SIZES)
    assert "/work" not in text and "../shared/benchmarks" in text


def test_synthetic_corpus_is_deterministic_and_perturbs_its_copies() -> None:
    corpus = SyntheticCorpus(DEFAULT_BENCHMARKS, 30_000)
    first, again = corpus.document(5), SyntheticCorpus(DEFAULT_BENCHMARKS, 30_000).document(5)
    assert first == again and first.text[slice(*first.body[0])] in first.text
    copy = corpus.document(corpus.per_copy + 5)
    assert copy.source.startswith("copy-001/") and copy.title.endswith("(1)")
    assert corpus.load(copy.source).fingerprint != corpus.load(first.source).fingerprint
    assert corpus.signature("copy-999/brief-000000.txt") is None
    corpus.remove(first.source)
    assert first.source not in corpus.scan().signatures and corpus.signature(first.source) is None


def test_stand_in_vectors_are_unit_and_deterministic() -> None:
    import numpy as np

    vectors = StandInEmbedder(export=False).encode(["Title\nsome text", "Title\nother text", "Another\ntext"])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.array_equal(vectors, StandInEmbedder(export=False).encode(["Title\nsome text", "Title\nother text", "Another\ntext"]))
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # one title, one cluster


def test_cli_refuses_scale_options_without_scale(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "--sizes", "10k"])
    assert stopped.value.code == 2 and "--scale" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "--scale", "--sizes", "ten"])
    assert stopped.value.code == 2


def test_cli_reports_a_missing_benchmarks_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["bench", "--scale", "--sizes", "300", "--benchmarks", str(tmp_path / "none")]) == 1
    assert "--benchmarks" in capsys.readouterr().err


def test_scale_settings_are_the_benchmark_passages_with_sentence_vectors() -> None:
    from rag.scale import scale_settings

    assert scale_settings().chunk_tokens == benchmark_settings().chunk_tokens
    assert scale_settings().embed_sentences
