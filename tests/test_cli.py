"""The ``rag`` command: JSON schema, batch mode, human output, exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rag.cli import main
from rag.index import CURRENT_FILE
from rag.segments import VECTORS_FILE

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
    assert set(result) == {"question", "answer_found", "digest", "hits"} and result["question"] == "What did Belarus seek from China?"
    assert result["answer_found"] is True
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
        (["ask", "x", "--date-from", "20190101"], "date like 2019-04-15 (YYYY-MM-DD)"),  # the app refuses it too
        (["ask", "x", "--date-to", "2019-W01"], "date like"),
        (["ask", "x", "--mode", "magic"], "invalid choice"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, argv: list[str], message: str) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.rstrip().endswith("--help)")


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
    next(generation.glob("seg-*/" + VECTORS_FILE)).write_bytes(b"\0" * 64)
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


# -- reliability: odd input gets a message, batches stream ---------------------------------------


@pytest.mark.parametrize(
    "argv,message",
    [
        (["serve", "--port", "99999"], "between 1 and 65535"),
        (["serve", "--port", "http"], "whole number"),
        (["index", "--max-file-mb", "0"], "more than 0"),
        (["ask", "China", "--mmr", "nan"], "must be a number"),
        (["ask", "China", "--bogus"], "unrecognized arguments: --bogus (see rag ask --help)"),
        (["index", "--bogus"], "(see rag index --help)"),
        (["ask", "x" * 2001], "too long (2,001 characters"),
    ],
)
def test_more_usage_errors_exit_2(capsys, argv: list[str], message: str) -> None:
    status, _, err = run(capsys, *argv)
    assert status == 2 and message in err and "Traceback" not in err


def test_batch_survives_hostile_lines_and_streams_from_stdin(
    capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seeds_copy: Path, index_dir: Path
) -> None:
    import io

    lines = [
        b"Roketsan",
        b'{"question": "Minsk \\ud800"}',  # a lone surrogate, as JSON allows
        b"[" * 100_000,  # not JSON-shaped: a (useless) plain question
        b"{" * 100_000,  # JSON nested deeper than any parser recursion
        b"caf\xe9 in Minsk",  # not UTF-8
        b"x" * 200_000,  # longer than a batch line may be
        b"Polonaise",
    ]
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\n".join(lines) + b"\n")))
    status, out, err = run(capsys, "ask", "--batch", "-", "-k", "1", "--corpus", str(seeds_copy), "--index-dir", str(index_dir))
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and len(records) == 7 and "Traceback" not in err
    assert records[0]["hits"] and records[6]["hits"] and "error" not in records[0]
    assert "broken characters" in records[1]["error"] and records[1]["question"] == "Minsk \ufffd"
    assert "too long" in records[2]["error"]
    assert records[3]["error"] == "line 4: not valid JSON"
    assert records[4]["error"] == "line 5: not UTF-8 text"
    assert records[5]["error"] == "line 6: longer than 100,000 bytes"
    assert "answered 2 questions" in err and "questions/s" in err and "5 lines could not be answered" in err


def test_batch_answers_more_questions_than_the_cache_holds(
    capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seeds_copy: Path, index_dir: Path
) -> None:
    from rag.retrieval import Retriever

    from .conftest import HashingEmbedder

    real_open = Retriever.open
    monkeypatch.setattr(Retriever, "open", lambda *a, **k: real_open(*a, **{**k, "encoder": HashingEmbedder(), "embed": HashingEmbedder}))
    run(capsys, "index", "--corpus", str(seeds_copy), "--index-dir", str(tmp_path / "index"))
    batch = tmp_path / "many.txt"
    batch.write_text("\n".join(f"question {i} on Minsk" for i in range(1100)) + "\n", encoding="utf-8")
    status, out, err = run(capsys, "ask", "--batch", str(batch), "-k", "1", "--mode", "bm25",
                           "--corpus", str(seeds_copy), "--index-dir", str(tmp_path / "index"))
    records = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and len(records) == 1100 and all(r["hits"] for r in records)
    assert [r["question"] for r in records[:3]] == ["question 0 on Minsk", "question 1 on Minsk", "question 2 on Minsk"]


def test_a_file_name_that_is_not_utf8_never_stops_ask(capsys, corpus_dir: Path, seeds_index: Path) -> None:
    import os

    (corpus_dir / os.fsdecode(b"report-\xe9.txt")).write_text("Belarus bought drones.", encoding="utf-8")
    status, out, err = run(capsys, "ask", "Polonaise", "--json", "--corpus", str(corpus_dir), "--index-dir", str(seeds_index))
    assert status == 0 and json.loads(out)["hits"]
    assert "skipped report-\\xe9.txt: the name is not valid UTF-8; rename it" in err


def test_index_check_verifies_everything_and_fails_on_damage(capsys, corpus_dir: Path, seeds_index: Path) -> None:
    status, out, _ = run(capsys, "index", "--check", "--index-dir", str(seeds_index))
    assert status == 0 and "files match their SHA-256 checksums" in out and "SQLite integrity check: ok" in out
    assert "ONNX question encoder: loads" in out and out.rstrip().endswith("sound")
    generation = seeds_index / (seeds_index / CURRENT_FILE).read_text().strip()
    vectors = next(generation.glob("seg-*/" + VECTORS_FILE))
    data = bytearray(vectors.read_bytes())
    data[100] ^= 0xFF  # same size: only a full check sees it
    vectors.write_bytes(bytes(data))
    status, out, _ = run(capsys, "index", "--check", "--index-dir", str(seeds_index))
    assert status == 1 and f"DAMAGED: {vectors.parent.name}/{VECTORS_FILE}" in out and "checksum mismatch" in out and "rag index --rebuild" in out
    status, _, err = run(capsys, "index", "--check", "--rebuild", "--index-dir", str(seeds_index))
    assert status == 2 and "give --check alone" in err
    status, _, err = run(capsys, "index", "--check", "--optimize", "--index-dir", str(seeds_index))
    assert status == 2 and "give --check alone" in err
    status, out, _ = run(capsys, "index", "--check", "--index-dir", str(corpus_dir / "nowhere"))
    assert status == 1 and "there is no index" in out


def test_index_optimize_on_one_segment_changes_nothing(capsys, corpus_dir: Path, seeds_index: Path) -> None:
    status, out, err = run(capsys, "index", "--optimize", "--corpus", str(corpus_dir), "--index-dir", str(seeds_index))
    assert status == 0 and "index up to date" in err and "5 documents" in out


def test_version(capsys) -> None:
    status, out, _ = run(capsys, "--version")
    assert status == 0 and out.startswith("rag ")


def test_filter_mistakes_are_usage_errors_and_empty_results_say_why(capsys, seeds_copy: Path, index_dir: Path) -> None:
    options = ["--corpus", str(seeds_copy), "--index-dir", str(index_dir)]
    status, _, err = run(capsys, "ask", "China", "--date-from", "2019-05-01", "--date-to", "2019-01-01", *options)
    assert status == 2 and "reversed" in err
    status, _, err = run(capsys, "ask", "China", "--source", "00", *options)
    assert status == 2 and "matches 5 briefs (000_3b696b7c0f75676d.txt, 001_ab578dc02529a0f4.txt, 002_" in err
    status, out, _ = run(capsys, "ask", "China", "--date-from", " 2017-12-11 ", "--date-to", "2017-12-11", "--json", *options)
    assert status == 0 and {hit["source"] for hit in json.loads(out)["hits"]} == {CHINA}  # spaces trimmed, as in the app
    status, out, _ = run(capsys, "ask", "China", "--source", "003", "-k", "1", "--json", *options)
    assert status == 0 and json.loads(out)["hits"][0]["source"] == CHINA
    status, out, _ = run(capsys, "ask", "China", "--trend", "worse", *options)
    assert status == 0 and out == "No passage found: no indexed passage matches trend worse: widen or clear a filter.\n"
    status, out, _ = run(capsys, "ask", "China", "--trend", "worse", "--json", *options)
    payload = json.loads(out)
    assert status == 0 and payload["hits"] == [] and payload["answer_found"] is False
    assert payload["reason"] == "no indexed passage matches trend worse: widen or clear a filter"


def test_ask_leads_with_a_cited_digest(capsys, seeds_copy: Path, index_dir: Path) -> None:
    options = ["--corpus", str(seeds_copy), "--index-dir", str(index_dir)]
    status, out, _ = run(capsys, "ask", "What did Belarus seek from China?", "--json", *options)
    digest = json.loads(out)["digest"]
    assert status == 0 and digest and [e["week_start"] for e in digest] == sorted(e["week_start"] for e in digest)
    for entry in digest:
        assert set(entry) == {"source", "title", "week_start", "week_end", "trend", "sentence"}
        text = (seeds_copy / entry["source"]).read_text(encoding="utf-8")
        assert text[entry["sentence"]["start"] : entry["sentence"]["end"]] == entry["sentence"]["text"]
    status, out, _ = run(capsys, "ask", "What did Belarus seek from China?", *options)
    assert out.startswith("Evidence digest, oldest brief first:\n  20")
    status, out, _ = run(capsys, "ask", "What is the population of Minsk?", *options)
    assert out.startswith("The briefs do not seem to answer this question") and "Evidence digest" not in out


@pytest.mark.parametrize("batch", [False, True])
def test_a_reader_that_goes_away_ends_the_output_quietly(seeds_copy: Path, index_dir: Path, batch: bool) -> None:
    """``rag ask … | head -1``: no "Broken pipe" message, the status of a process ended by SIGPIPE."""
    options = ["--corpus", str(seeds_copy), "--index-dir", str(index_dir), "-k", "20"]
    # The reader takes one line and leaves; a batch's output (about 1 MB) cannot fit in the pipe meanwhile.
    command = [sys.executable, "-m", "rag.cli", "ask", *(["--batch", "-"] if batch else ["Belarus"]), *options]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write(b"Belarus\n" * 200 if batch else b"")
        process.stdin.close()
        process.stdout.readline()
        process.stdout.close()
        err = process.stderr.read().decode()
        status = process.wait(timeout=120)
    assert "Broken pipe" not in err and "Traceback" not in err and "Exception ignored" not in err, err
    assert status in ((141,) if batch else (0, 141))  # one question's output may fit in the pipe before it closes
