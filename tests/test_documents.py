"""Brief parsing: metadata of every seed, footer removal, plain-text fallback, decoding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag.documents import FolderCorpus, content_hash, decode, parse_brief, parse_text
from rag.errors import CorpusError

from .conftest import SEEDS

EXPECTED = {
    "000_3b696b7c0f75676d.txt": (
        "Turkey may become a strategic partner for the Belarusian military industry",
        "2019-04-15", "2019-04-21", "Security issues", "better",
    ),
    "001_ab578dc02529a0f4.txt": (
        "Minsk seeks to reduce military-technical dependence on Russia",
        "2017-09-11", "2017-09-17", None, "unchanged",
    ),
    "002_ad1ab4cf14487f8f.txt": (
        "Belarusian military industry’s major challenge is to remain afloat",
        "2019-10-07", "2019-10-13", "Security issues", "unchanged",
    ),
    "003_d66b08127121952b.txt": (
        "Sino-Belarusian military-industrial cooperation is likely to widen",
        "2017-12-11", "2017-12-17", "Security issues", "better",
    ),
    "004_cb06eed4b89f8d75.txt": (
        "Belarusian-Azerbaijani military-technical cooperation is likely to step beyond supplies of the MPLRS Polonaise",
        "2018-06-11", "2018-06-17", "Security issues", "better",
    ),
}

FOOTER_PHRASES = [
    "You have been successfully subscribed",
    "Subscribe to our newsletter",
    "Once a week, in coordination",
    "Situation in Belarus",
    "View all",
    "Subscribe to us",
    "Read more",
    "BE/RU",
]


@pytest.mark.parametrize("source", sorted(EXPECTED))
def test_seed_metadata(source: str) -> None:
    doc = FolderCorpus(SEEDS).load(source).document
    assert doc is not None and doc.kind == "brief"
    assert (doc.title, doc.week_start, doc.week_end, doc.category, doc.trend) == EXPECTED[source]
    assert doc.author is None  # every seed has an empty "by" line or none


@pytest.mark.parametrize("source", sorted(EXPECTED))
def test_seed_body_excludes_header_and_footer(source: str) -> None:
    doc = FolderCorpus(SEEDS).load(source).document
    assert doc is not None
    body = "\n".join(doc.text[s:e] for s, e in doc.body)
    for phrase in FOOTER_PHRASES:
        assert phrase not in body
    assert doc.title not in body
    assert not body.startswith("The situation has")


def test_body_spans_are_exact_and_ordered() -> None:
    for source in EXPECTED:
        doc = FolderCorpus(SEEDS).load(source).document
        assert doc is not None
        ends = [0]
        for start, end in doc.body:
            assert start >= ends[-1] and doc.text[start:end].strip() == doc.text[start:end] != ""
            ends.append(end)


def _brief(by: str = "by\n", week: str = "April 15 – April 21, 2019", category: str = "Security issues\n\n") -> str:
    return (
        f"{by}{week}\n{category}A title\n\nThe situation has gotten worse\nA title\n\n"
        "Lead sentence here.\n\nBody sentence.\n\nYou have been successfully subscribed\n\n"
        "Situation in Belarus\n\nMarch 18 – March 24\nView all\n"
    )


def test_author_category_and_week_variants() -> None:
    doc = parse_brief("x.txt", _brief(by="by Anna Maria Dyner\n"))
    assert doc is not None and doc.author == "Anna Maria Dyner" and doc.trend == "worse"
    no_by = parse_brief("x.txt", _brief(by="", category=""))
    assert no_by is not None and no_by.author is None and no_by.category is None and no_by.title == "A title"
    across_months = parse_brief("x.txt", _brief(week="March 28 – April 3, 2019"))
    assert across_months is not None and (across_months.week_start, across_months.week_end) == ("2019-03-28", "2019-04-03")
    across_years = parse_brief("x.txt", _brief(week="December 30, 2019 – January 5, 2020"))
    assert across_years is not None and (across_years.week_start, across_years.week_end) == ("2019-12-30", "2020-01-05")
    implicit_year = parse_brief("x.txt", _brief(week="December 30 – January 5, 2020"))
    assert implicit_year is not None and implicit_year.week_start == "2019-12-30"
    body = [implicit_year.text[s:e] for s, e in implicit_year.body]
    assert body == ["Lead sentence here.", "Body sentence."]


def test_impossible_dates_are_not_a_brief() -> None:
    assert parse_brief("x.txt", _brief(week="February 30 – March 5, 2019")) is None


def test_plain_text_falls_back_to_file_name_title() -> None:
    doc = parse_text("notes/my notes.md", "# Heading\n\nSome text\nwrapped here.\n\n\nMore.")
    assert doc is not None and doc.kind == "text" and doc.title == "my notes"
    assert [doc.text[s:e] for s, e in doc.body] == ["# Heading", "Some text\nwrapped here.", "More."]
    assert parse_text("empty.txt", "  \n\n ") is None


def test_decode_replaces_bad_bytes_and_normalizes_newlines() -> None:
    text, warnings = decode(b"caf\xe9 line\r\nnext\rlast", "bad.txt")
    assert text == "caf\ufffd line\nnext\nlast"
    assert len(warnings) == 1 and "bad.txt" in warnings[0] and "UTF-8" in warnings[0]
    assert decode("Belarus’".encode(), "ok.txt") == ("Belarus’", ())


def test_folder_corpus_lists_documents_and_rejects_bad_folders(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Alpha.", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("Beta.", encoding="utf-8")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.txt").write_text("secret", encoding="utf-8")
    assert sorted(FolderCorpus(tmp_path).scan().signatures) == ["a.txt", "sub/b.md"]
    with pytest.raises(CorpusError, match="not found"):
        FolderCorpus(tmp_path / "missing").scan().signatures
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CorpusError, match="no .txt or .md"):
        FolderCorpus(empty).scan().signatures


# -- what a corpus folder may hold ------------------------------------------------


def test_links_leaving_the_corpus_are_skipped_and_never_read(tmp_path: Path) -> None:
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    corpus.mkdir(), outside.mkdir()
    (outside / "secret.txt").write_text("The password is swordfish.", encoding="utf-8")
    (corpus / "brief.txt").write_text("Belarus and China signed a deal.", encoding="utf-8")
    (corpus / "inside.txt").symlink_to(corpus / "brief.txt")
    (corpus / "leak.txt").symlink_to(outside / "secret.txt")
    (corpus / "folder-link").symlink_to(outside, target_is_directory=True)
    scan = FolderCorpus(corpus).scan()
    assert sorted(scan.signatures) == ["brief.txt", "inside.txt"]
    assert ("leak.txt", "a link to a file outside the corpus folder; not followed") in scan.skipped
    with pytest.raises(CorpusError, match="outside the corpus"):
        FolderCorpus(corpus).load("leak.txt")  # even when asked for by name
    with pytest.raises(CorpusError):
        FolderCorpus(corpus).load("folder-link/secret.txt")


def test_names_that_are_not_utf8_are_skipped_with_a_printable_reason(tmp_path: Path) -> None:
    (tmp_path / "good.txt").write_text("Minsk.", encoding="utf-8")
    (tmp_path / os.fsdecode(b"bad\xff.txt")).write_text("Minsk again.", encoding="utf-8")
    scan = FolderCorpus(tmp_path).scan()
    assert list(scan.signatures) == ["good.txt"]
    assert scan.skipped == (("bad\\xff.txt", "the name is not valid UTF-8; rename it"),)
    assert all(reason.encode("utf-8") for pair in scan.skipped for reason in pair)


def test_deep_and_unreadable_folders_are_skipped_with_warnings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "top.txt").write_text("Top.", encoding="utf-8")
    chain = [tmp_path]
    for _ in range(1100):  # deeper than Python's recursion limit
        chain.append(chain[-1] / "d")
        chain[-1].mkdir()
    (chain[-1] / "bottom.txt").write_text("Bottom.", encoding="utf-8")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "x.txt").write_text("Hidden.", encoding="utf-8")
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    scan = FolderCorpus(tmp_path).scan()
    assert list(scan.signatures) == ["top.txt"]
    assert any("deeper than 32 levels" in warning for warning in scan.warnings)
    assert "folder locked skipped: cannot be read (Permission denied)" in scan.warnings
    (chain[-1] / "bottom.txt").unlink()
    for folder in reversed(chain[1:]):  # pytest's clean-up would recurse too deep
        folder.rmdir()


def test_files_over_the_size_limit_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "small.txt").write_text("Small.", encoding="utf-8")
    (tmp_path / "big.txt").write_bytes(b"x" * 2048)
    corpus = FolderCorpus(tmp_path, max_bytes=1024)
    scan = corpus.scan()
    assert list(scan.signatures) == ["small.txt"]
    assert scan.skipped == (("big.txt", "larger than the 1,024 bytes limit per file (--max-file-mb)"),)
    with pytest.raises(CorpusError, match="larger than"):
        corpus.load("big.txt")


def test_load_fingerprints_exactly_the_bytes_it_parsed(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("First version.", encoding="utf-8")
    corpus = FolderCorpus(tmp_path)
    signature = corpus.scan().signatures["a.txt"]
    loaded = corpus.load("a.txt")
    assert loaded.document is not None and loaded.document.text == "First version."
    assert loaded.fingerprint == content_hash(b"First version.") == corpus.fingerprint("a.txt")
    assert loaded.signature == signature == corpus.signature("a.txt")
    path.write_text("Second version!", encoding="utf-8")
    assert corpus.signature("a.txt") != signature
    path.unlink()
    assert corpus.signature("a.txt") is None


def test_a_byte_order_mark_does_not_hide_the_brief_layout() -> None:
    raw = ("\ufeffApril 15 – April 21, 2019\r\nSecurity issues\r\nTitle here\r\nThe situation has gotten better\r\n"
           "Title here\r\n\r\nBody sentence one. Body two.\r\n\r\nYou have been successfully subscribed\r\n").encode()
    text, warnings = decode(raw, "x.txt")
    doc = parse_text("x.txt", text)
    assert doc is not None and doc.kind == "brief" and doc.title == "Title here" and not warnings
    assert [doc.text[s:e] for s, e in doc.body] == ["Body sentence one. Body two."]
    plain = parse_text("y.txt", "\ufeffJust notes.")
    assert plain is not None and [plain.text[s:e] for s, e in plain.body] == ["Just notes."]
