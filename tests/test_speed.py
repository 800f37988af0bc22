"""``rag bench``: every figure and its reference counterpart are measured and reported (not timed here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.cli import main
from rag.speed import distinct_questions

pytestmark = pytest.mark.slow
KEYS = {"cold_start_s", "query_p50_ms", "query_p95_ms", "batch_questions_per_s", "peak_rss_mb", "batch_rss_growth_mb"}


def test_bench_json_reports_ours_and_the_reference(capsys: pytest.CaptureFixture[str], corpus_dir: Path,
                                                   seeds_index: Path) -> None:
    assert main(["bench", "--json", "--runs", "1", "--questions", "40",
                 "--corpus", str(corpus_dir), "--index-dir", str(seeds_index)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert KEYS <= set(result) and KEYS <= set(result["reference"])
    assert all(result[key] > 0 for key in KEYS - {"batch_rss_growth_mb"})
    assert all(result["reference"][key] > 0 for key in KEYS - {"batch_rss_growth_mb"})
    assert set(result["ratios"]) == {"cold_start", "query_p50", "batch_time_per_question"}
    assert result["setup"]["batch_questions"] == 40 and result["setup"]["passages"] > 0
    assert 0 < result["help_s"] and 0 < result["usage_mistake_s"]


def test_batch_questions_are_distinct() -> None:
    questions = distinct_questions(10_000)
    assert len(set(questions)) == 10_000 and all(len(q) < 200 for q in questions)
