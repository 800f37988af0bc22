"""The embedded-Qdrant measurement runs and reports sizes that follow from what it stored."""

from __future__ import annotations

import pytest

pytest.importorskip("qdrant_client", reason="the Qdrant store needs the 'scale' extra")

from rag.stores.qdrant_bench import main, measure  # noqa: E402


def test_measure_reports_each_figure(capsys: pytest.CaptureFixture[str]) -> None:
    figures = measure(300)
    assert figures["faiss_flat_bytes_per_vector"] >= 384 * 4  # a flat FAISS row is 384 float32
    assert figures["bytes_per_vector"] > 384 * 4  # Qdrant local mode keeps vectors and payloads in SQLite
    assert all(figures[name] > 0 for name in ("add_s", "save_s", "open_s", "query_ms", "filtered_query_ms"))
    assert main(["200"]) == 0 and capsys.readouterr().out.startswith("200 vectors: ")
