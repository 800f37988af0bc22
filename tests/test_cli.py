"""The ``rag`` command: JSON schema, batch mode, human output, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rag.cli import main
from rag.index import CURRENT_FILE, VECTORS_FILE

from .test_retrieval import CHINA, HIT_KEYS


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-index")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``rag`` in-process; returns (exit status, stdout, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_ask_json_schema_and_offsets(capsys, seeds_copy: Path, index_dir: Path) -> None:
    status, out, _ = run(capsys, "ask", "What did Belarus seek from China?", "--json", "-k", "3",
                         "--corpus", str(seeds_copy), "--index-dir", str(index_dir))
    assert status == 0
    result = json.loads(out)
    assert set(result) == {"question", "hits"} and result["question"] == "What did Belarus seek from China?"
    assert len(result["hits"]) == 3 and result["hits"][0]["source"] == CHINA
    for hit in result["hits"]:
        assert set(hit) == HIT_KEYS
        text = (seeds_copy / hit["source"]).read_text(encoding="utf-8")
        assert text[hit["start"] : hit["end"]] == hit["text"]
        assert text[hit["sentence"]["start"] : hit["sentence"]["end"]] == hit["sentence"]["text"]


def test_ask_human_output_shows_citation_and_marked_sentence(capsys, seeds_copy: Path, index_dir: Path) -> None:
    status, out, _ = run(capsys, "ask", "Roketsan", "-k", "1", "--corpus", str(seeds_copy), "--index-dir", str(index_dir))
    assert status == 0
    assert "#1  score" in out and "Turkey may become a strategic partner" in out
    assert "2019-04-15 – 2019-04-21 · 000_3b696b7c0f75676d.txt [" in out
    assert "»" in out and "«" in out and "quote [" in out


def test_batch_plain_and_jsonl_keep_order(capsys, tmp_path: Path, seeds_copy: Path, index_dir: Path) -> None:
    plain = tmp_path / "q.txt"
    plain.write_text("What did Belarus seek from China?\n\nRoketsan\n", encoding="utf-8")
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text('{"question": "Polonaise"}\n{"id": 3}\nnot json {\n{"question": "  "}\n', encoding="utf-8")
    options = ["--corpus", str(seeds_copy), "--index-dir", str(index_dir), "-k", "2"]
    status, out, _ = run(capsys, "ask", "--batch", str(plain), *options)
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and [r["question"] for r in records] == ["What did Belarus seek from China?", "Roketsan"]
    assert records[0]["hits"][0]["source"] == CHINA and len(records[1]["hits"]) == 2
    status, out, _ = run(capsys, "ask", "--batch", str(jsonl), "--json", *options)
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and len(records) == 4
    assert records[0]["hits"] and "error" not in records[0]
    assert "question" in records[1]["error"] and records[1]["hits"] == []
    assert records[2]["question"] == "not json {" and records[2]["hits"]  # a plain line that looks odd is still a question
    assert "empty" in records[3]["error"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["ask", ""], "question is empty"),
        (["ask", "   "], "question is empty"),
        (["ask", "x", "-k", "0"], "between 1 and"),
        (["ask", "x", "-k", "100000"], "between 1 and"),
        (["ask", "x", "-k", "five"], "whole number"),
        (["ask"], "question is empty"),
        (["ask", "x", "--batch", "f"], "not both"),
        (["ask", "x", "--date-from", "yesterday"], "date like"),
        (["ask", "x", "--mode", "magic"], "invalid choice"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, argv: list[str], message: str) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2 and message in err and "Traceback" not in err


def test_failures_exit_1_with_one_line(capsys, tmp_path: Path) -> None:
    status, _, err = run(capsys, "ask", "x", "--corpus", str(tmp_path / "nowhere"), "--index-dir", str(tmp_path / "i"))
    assert status == 1 and err.strip() == f"rag: error: corpus folder not found: {tmp_path / 'nowhere'}"
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _, err = run(capsys, "index", "--corpus", str(empty), "--index-dir", str(tmp_path / "i"))
    assert status == 1 and "no .txt or .md files" in err
    status, _, err = run(capsys, "ask", "--batch", str(tmp_path / "missing.txt"))
    assert status == 1 and "batch file not found" in err


def test_index_command_reports_and_recovers_from_corruption(capsys, corpus_dir: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    status, out, err = run(capsys, "index", "--corpus", str(corpus_dir), "--index-dir", str(index_dir))
    assert status == 0 and "index built" in err and "5 documents" in out
    generation = index_dir / (index_dir / CURRENT_FILE).read_text().strip()
    (generation / VECTORS_FILE).write_bytes(b"\0" * 64)
    status, out, err = run(capsys, "ask", "Polonaise", "--json", "--corpus", str(corpus_dir), "--index-dir", str(index_dir))
    assert status == 0 and "rebuilt because the existing index was corrupted" in err
    assert json.loads(out)["hits"]
    (corpus_dir / "bad.txt").write_bytes(b"\xff\xfe Belarus tanks")
    status, out, err = run(capsys, "index", "--corpus", str(corpus_dir), "--index-dir", str(index_dir))
    assert status == 0 and "bad.txt: not valid UTF-8" in err and "1 added" in err


def test_help_is_light() -> None:
    code = "import sys, rag.cli; rag.cli.build_parser(); print(sorted(m for m in ('torch', 'faiss', 'gradio', 'sentence_transformers', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    help_text = subprocess.run([sys.executable, "-m", "rag.cli", "--help"], capture_output=True, text=True, check=True).stdout
    assert "ask" in help_text and "index" in help_text
