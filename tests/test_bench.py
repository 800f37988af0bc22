"""The benchmark table: markdown layout with published anchors, and a full run on a tiny dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.bench import main, markdown
from rag.evaluate import BeirReport

from .test_evaluate import write_beir

METRICS = {"ndcg@10": 0.73041, "recall@10": 0.864, "recall@100": 0.9577, "mrr@10": 0.6909}


def test_markdown_has_one_row_per_report_and_the_published_anchor() -> None:
    reports = [BeirReport("scifact", "test", "hybrid", 300, 4.0, METRICS),
               BeirReport("time", "test", "bm25", 79, 0.5, METRICS)]
    lines = markdown(reports).splitlines()
    assert lines[0].startswith("| dataset | split | queries | mode | nDCG@10 |")
    assert lines[2] == "| scifact | test | 300 | hybrid | 0.730 | 0.864 | 0.958 | 0.691 | 75 | 0.665 |"
    assert lines[3] == "| time | test | 79 | bm25 | 0.730 | 0.864 | 0.958 | 0.691 | 158 | — |"
    assert len(lines) == 4


def test_bench_prints_every_mode_of_every_dataset(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = write_beir(tmp_path / "tiny")
    monkeypatch.chdir(tmp_path)  # indexes go to ./benchmarks-index/
    assert main([str(dataset)]) == 0
    out, err = capsys.readouterr()
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert [row.split(" | ")[3] for row in rows] == ["hybrid", "dense", "bm25"]
    assert (tmp_path / "benchmarks-index" / "tiny" / "CURRENT").is_file()
    assert "bench: tiny hybrid: nDCG@10 1.0000" in err
