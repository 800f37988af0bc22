"""The web app's callbacks, without a browser: filters, escaping, exports, uploads, the brief reader."""

from __future__ import annotations

import csv
import json
import re
from html import escape, unescape
from pathlib import Path

import gradio as gr
import pytest

from rag.digest import digest_markdown, timeline
from rag.retrieval import Retriever, results_payload
from rag.ui import SearchApp
from rag.ui_files import CSV_COLUMNS, MAX_UPLOAD_BYTES, UploadError, save_upload
from rag.ui_render import PASSAGE_ANCHOR, citation, timeline_view

CHINA = "003_d66b08127121952b.txt"
CHINA_TITLE = "Sino-Belarusian military-industrial cooperation is likely to widen"
TURKEY = "000_3b696b7c0f75676d.txt"
QUESTION = "What did Belarus seek from China?"
EVIL = "<script>alert(1)</script>"
EVIL_BRIEF = f"""by
June 3 – June 9, 2019
Security issues

{EVIL} Minsk buys zeppelins

The situation has gotten worse
{EVIL} Minsk buys zeppelins

Minsk ordered three zeppelins from Ruritania {EVIL} for border patrols.

The zeppelins arrive next spring.
"""


@pytest.fixture(scope="module")
def app(seeds_retriever: Retriever) -> SearchApp:
    """Callbacks over the shared seeds index (searching only)."""
    return SearchApp(seeds_retriever)


@pytest.fixture
def own_app(corpus_dir: Path, seeds_index: Path) -> SearchApp:
    """Callbacks over a private corpus folder and index, free to add files to."""
    return SearchApp(Retriever.open(corpus_dir, seeds_index))


def search(app: SearchApp, question: str = QUESTION, k: int = 5, **filters) -> tuple[str, str, dict]:
    return app.search(question, k, "hybrid", **filters)


def test_search_renders_cards_with_marked_sentence_and_citation(app: SearchApp) -> None:
    status, cards, payload = search(app)
    hits = payload["hits"]
    assert payload["question"] == QUESTION and len(hits) == 5
    assert hits[0]["source"] == CHINA and hits[0]["title"] == CHINA_TITLE
    assert "5 passages" in status and "error" not in status
    first_card = cards.split('<article class="rag-card"')[1]
    assert cards.count('<article class="rag-card"') == 5 and CHINA_TITLE in first_card
    assert f"<mark>{escape(hits[0]['sentence']['text'])}</mark>" in first_card
    quote = citation(hits[0])
    assert quote.startswith(f"“{hits[0]['sentence']['text']}” — {CHINA_TITLE} (week 2017-12-11–2017-12-17), {CHINA}")
    assert quote.endswith(f"chars {hits[0]['sentence']['start']}–{hits[0]['sentence']['end']}")
    assert 'data-open-rank="1"' in cards and "rag-copy" in cards


@pytest.mark.parametrize(
    ("filters", "allowed"),
    [
        ({"categories": ["Security issues"]}, {"000_3b696b7c0f75676d.txt", "002_ad1ab4cf14487f8f.txt", CHINA, "004_cb06eed4b89f8d75.txt"}),
        ({"trends": ["unchanged"]}, {"001_ab578dc02529a0f4.txt", "002_ad1ab4cf14487f8f.txt"}),
        ({"date_from": "2018-01-01", "date_to": "2018-12-31"}, {"004_cb06eed4b89f8d75.txt"}),
        ({"sources": ["000_3b696b7c0f75676d.txt"]}, {"000_3b696b7c0f75676d.txt"}),
    ],
)
def test_filters_return_only_matching_briefs_and_k_results(app: SearchApp, filters: dict, allowed: set[str]) -> None:
    status, cards, payload = search(app, k=3, **filters)
    assert len(payload["hits"]) == 3
    assert {hit["source"] for hit in payload["hits"]} <= allowed
    assert cards.count('<article class="rag-card"') == 3


def test_no_match_and_bad_input_give_messages_not_tracebacks(app: SearchApp) -> None:
    status, cards, payload = search(app, date_from="2030-01-01")
    assert "No passage found: no indexed passage matches weeks 2030-01-01" in status and cards == "" and payload["hits"] == []
    for kwargs, expected in [
        ({"question": "   "}, "The question is empty"),
        ({"date_from": "last week"}, "must be a date like"),
        ({"date_to": "20190101"}, "must be a date like"),  # the CLI refuses it too
        ({"date_from": "2019-01-01", "date_to": "2018-01-01"}, "reversed"),
    ]:
        status, cards, payload = search(app, **kwargs)
        assert expected in status and 'role="alert"' in status
        assert cards == "" and payload["hits"] == [] and "Traceback" not in status


def test_question_and_document_text_are_escaped(own_app: SearchApp) -> None:
    (own_app.corpus_dir / "evil.txt").write_text(EVIL_BRIEF, encoding="utf-8")
    own_app.retriever.refresh()
    status, cards, payload = search(own_app, f"zeppelins from Ruritania {EVIL}", k=1, sources=["evil.txt"])
    assert payload["hits"][0]["title"] == f"{EVIL} Minsk buys zeppelins"
    brief = own_app.open_brief(payload, 1)
    corpus = own_app.corpus_view()[0]
    for html in (status, cards, brief, corpus):
        assert "<script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_open_brief_shows_the_whole_body_with_the_passage_anchored(app: SearchApp, seeds_copy: Path) -> None:
    _, _, payload = search(app)
    hit = payload["hits"][0]
    doc = app.retriever.document(CHINA)
    html = app.open_brief(payload, 1)
    assert f"<h2>{CHINA_TITLE}</h2>" in html
    assert f'id="{PASSAGE_ANCHOR}"' in html and "<mark>" in html
    plain = unescape(re.sub(r"<[^>]+>", "", html))
    assert doc.text[doc.body[0][0] : doc.body[-1][1]] in plain
    assert "Subscribe to our newsletter" not in plain  # the site footer is not part of the brief
    assert (seeds_copy / CHINA).read_text(encoding="utf-8")[hit["start"] : hit["end"]] == hit["text"]
    assert "no result #9" in app.open_brief(payload, 9)


def test_export_writes_the_cli_json_schema_csv_and_the_digest_as_markdown(app: SearchApp, seeds_copy: Path) -> None:
    _, cards, payload = search(app, k=4)
    json_path, csv_path, markdown_path, note = app.export(payload)
    exported = json.loads(Path(json_path).read_text(encoding="utf-8"))
    assert exported == payload and set(exported) == {"question", "answer_found", "digest", "hits"}
    for hit in exported["hits"]:
        text = (seeds_copy / hit["source"]).read_text(encoding="utf-8")
        assert text[hit["start"] : hit["end"]] == hit["text"]
        assert text[hit["sentence"]["start"] : hit["sentence"]["end"]] == hit["sentence"]["text"]
    assert Path(csv_path).read_bytes().startswith(b"\xef\xbb\xbf")  # a BOM: spreadsheets read UTF-8 right
    with open(csv_path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == ("question", *CSV_COLUMNS) and len(rows) == 4
    assert {row["question"] for row in rows} == {QUESTION}
    assert rows[0]["source"] == CHINA and rows[0]["sentence"] == payload["hits"][0]["sentence"]["text"]
    assert int(rows[0]["sentence_start"]) == payload["hits"][0]["sentence"]["start"]
    markdown = Path(markdown_path).read_text(encoding="utf-8")
    assert Path(markdown_path).name == "digest.md" and markdown == digest_markdown(QUESTION, payload["digest"])
    copied = unescape(re.search(r'<pre class="rag-digest-markdown" hidden>(.*?)</pre>', cards, re.S).group(1))
    assert markdown == copied  # the file holds what "Copy digest as Markdown" copies
    assert markdown.startswith(f"**{QUESTION}**") and markdown.count("\n- **") == len(payload["digest"]) > 0
    assert app.export(None)[:3] == (None, None, None) and "run a search first" in app.export(None)[3]


def test_export_without_a_digest_gives_no_markdown_file(app: SearchApp) -> None:
    _, _, payload = search(app, "What is the population of Minsk?")
    json_path, csv_path, markdown_path, note = app.export(payload)
    assert json_path and csv_path and markdown_path is None and "No digest to export" in note


def test_an_empty_result_exports_its_reason(app: SearchApp) -> None:
    _, _, payload = search(app, date_from="2030-01-01")
    json_path, csv_path, markdown_path, note = app.export(payload)
    exported = json.loads(Path(json_path).read_text(encoding="utf-8"))
    assert exported["hits"] == [] and exported["reason"].startswith("no indexed passage matches weeks 2030-01-01")
    with open(csv_path, encoding="utf-8-sig", newline="") as handle:
        assert list(csv.reader(handle)) == [["question", *CSV_COLUMNS]]
    assert markdown_path is None and "Exported 0 results" in note and "no indexed passage matches" in note
    _, _, failed = search(app, "   ")  # an error: nothing was searched, so nothing is exported
    assert app.export(failed)[:3] == (None, None, None)


def test_exports_do_not_let_a_spreadsheet_or_markdown_run_the_question(app: SearchApp) -> None:
    question = "@Which Turkish firms such as **Roketsan** held talks with Belarus? [see](http://example.com)"
    _, _, payload = search(app, question, k=2)
    _, csv_path, markdown_path, _ = app.export(payload)
    with open(csv_path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["question"] for row in rows} == {"'" + question}  # "@…" would run as a formula
    markdown = Path(markdown_path).read_text(encoding="utf-8")
    assert markdown.startswith(r"**@Which Turkish firms such as \*\*Roketsan\*\* held talks with Belarus? "
                               r"\[see\](http://example.com)** — evidence")


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("brief.pdf", b"text", "only .txt and .md"),
        ("brief.txt.exe", b"text", "only .txt and .md"),
        (".hidden.txt", b"text", "hidden"),
        ("bad<name>.txt", b"text", "simple file name"),
        ("big.txt", b"a" * (MAX_UPLOAD_BYTES + 1), "2 MB limit"),
        ("latin1.txt", "Lukašenka".encode("cp1250"), "not UTF-8"),
        ("empty.md", b"  \n", "no text"),
        ("binary.txt", b"a\x00b", "binary"),
    ],
)
def test_upload_validation_refuses_bad_files(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    with pytest.raises(UploadError, match=reason):
        save_upload(name, data, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_upload_strips_paths_and_never_overwrites(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    assert save_upload("../../escape.txt", b"one", corpus) == ("escape.txt", True)
    assert save_upload("..\\..\\windows.md", b"two", corpus) == ("windows.md", True)
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["escape.txt", "windows.md"]
    assert save_upload("escape.txt", b"one", corpus) == ("escape.txt", False)
    with pytest.raises(UploadError, match="different file"):
        save_upload("escape.txt", b"changed", corpus)
    assert (corpus / "escape.txt").read_bytes() == b"one"


def test_uploaded_brief_is_indexed_and_searchable(own_app: SearchApp, tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    good, bad = uploads / "zeppelins.txt", uploads / "notes.pdf"
    good.write_text(EVIL_BRIEF.replace(EVIL, ""), encoding="utf-8")
    bad.write_bytes(b"%PDF")
    status, corpus, *choices = own_app.upload([str(good), str(bad)])
    assert "Added zeppelins.txt" in status and "notes.pdf: only .txt and .md" in status
    assert "zeppelins.txt" in corpus and "6 documents" in corpus
    assert ("Minsk buys zeppelins (2019-06-03)", "zeppelins.txt") in choices[0].choices
    _, _, payload = search(own_app, "Who sold zeppelins to Minsk?", k=1)
    assert payload["hits"][0]["source"] == "zeppelins.txt"
    status, *_ = own_app.upload([str(good)])
    assert "No file was added" in status and "already in the corpus" in status
    assert "Choose one or more" in own_app.upload([])[0]


def test_rebuild_reports_what_it_did(own_app: SearchApp) -> None:
    status, corpus, *_ = own_app.rebuild()
    assert "Rebuild finished" in status and "rebuilt because a rebuild was requested" in status
    assert "5 documents, 19 passages" in corpus


def test_search_api_returns_the_cli_schema_and_raises_for_bad_input(app: SearchApp, seeds_retriever: Retriever) -> None:
    result = app.search_api(QUESTION, 3)
    assert result == results_payload(QUESTION, seeds_retriever.search(QUESTION, 3)) and result["answer_found"] is True
    assert len(app.search_api(QUESTION, 2, "bm25")["hits"]) == 2
    with pytest.raises(gr.Error, match="question is empty"):
        app.search_api("", 3)


def test_serve_command_opens_the_index_and_serves_on_loopback(
    corpus_dir: Path, seeds_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.ui
    from rag.cli import main

    calls = []
    monkeypatch.setattr(rag.ui, "serve", lambda retriever, host, port, **options: calls.append((retriever, host, port, options)))
    assert main(["serve", "--corpus", str(corpus_dir), "--index-dir", str(seeds_index)]) == 0
    (retriever, host, port, options), = calls
    assert (host, port, options) == ("127.0.0.1", 7860, {"auth": None, "read_only": False})
    assert retriever.search(QUESTION, 1)[0].source == CHINA


# -- reliability: read-only mode, logins, exposure warning, temporary exports --------------------


def test_read_only_app_offers_no_way_to_change_the_corpus(own_app: SearchApp, tmp_path: Path) -> None:
    from rag.ui import build_app

    def writers(demo: gr.Blocks) -> list[str]:
        return [type(b).__name__ for b in demo.blocks.values()
                if (isinstance(b, gr.File) and b.file_count == "multiple")
                or (isinstance(b, gr.Button) and b.value in ("Rebuild index from scratch", "Rescan corpus folder", "Remove"))]

    assert writers(build_app(own_app.retriever)) == ["File", "Button", "Button", "Button"]
    assert writers(build_app(own_app.retriever, read_only=True)) == []
    read_only = SearchApp(own_app.retriever, read_only=True)
    upload = tmp_path / "new.txt"
    upload.write_text("Belarus bought radars.", encoding="utf-8")
    assert "read-only" in read_only.upload([str(upload)])[0] and "read-only" in read_only.rebuild()[0]
    assert not (own_app.corpus_dir / "new.txt").exists()  # type: ignore[operator]


def test_serve_warns_when_exposed_without_a_login(
    corpus_dir: Path, seeds_index: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import rag.ui
    from rag.cli import main

    calls = []
    monkeypatch.setattr(rag.ui, "serve", lambda retriever, host, port, **options: calls.append(options))
    monkeypatch.delenv("RAG_AUTH", raising=False)
    main(["serve", "--host", "0.0.0.0", "--corpus", str(corpus_dir), "--index-dir", str(seeds_index)])
    assert "warning: serving on 0.0.0.0 with no login" in capsys.readouterr().err
    monkeypatch.setenv("RAG_AUTH", "ana:secret")
    main(["serve", "--host", "0.0.0.0", "--read-only", "--corpus", str(corpus_dir), "--index-dir", str(seeds_index)])
    assert "warning" not in capsys.readouterr().err
    assert calls[1] == {"auth": [("ana", "secret")], "read_only": True}


def test_a_served_app_with_logins_refuses_anonymous_api_calls(seeds_retriever: Retriever) -> None:
    import socket

    from gradio_client import Client

    from rag.ui import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = serve(seeds_retriever, "127.0.0.1", port, auth=[("ana", "secret")], read_only=True, block=False)
    try:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises several kinds here
            Client(url, verbose=False).predict(QUESTION, 1, api_name="/search")
        result = Client(url, auth=("ana", "secret"), verbose=False).predict(QUESTION, 1, api_name="/search")
        assert result["hits"][0]["source"] == CHINA
    finally:
        demo.close()


def test_exports_are_temporary(app: SearchApp, seeds_retriever: Retriever) -> None:
    own = SearchApp(seeds_retriever)
    _, _, payload = search(own)
    json_path, csv_path, markdown_path, _ = own.export(payload)
    assert json_path and Path(json_path).is_file() and markdown_path and Path(markdown_path).is_file()
    own.close()
    assert not Path(json_path).exists() and not Path(markdown_path).exists() and not Path(json_path).parent.parent.exists()


def test_the_digest_leads_the_cards_and_copies_as_markdown(app: SearchApp) -> None:
    status, cards, payload = search(app)
    assert payload["answer_found"] and payload["digest"]
    head = cards.split('<details class="rag-timeline">')[0]
    assert head.startswith('<details class="rag-digest" open>') and "oldest brief first" in head
    weeks = [entry["week_start"] for entry in payload["digest"]]
    assert weeks == sorted(weeks) and head.count("<li>") == len(payload["digest"])
    markdown = unescape(re.search(r'<pre class="rag-digest-markdown" hidden>(.*?)</pre>', head, re.S).group(1))
    assert all(f"chars {e['sentence']['start']}–{e['sentence']['end']}" in markdown for e in payload["digest"])
    _, cards, payload = search(app, "What is the population of Minsk?")
    assert not payload["answer_found"] and payload["digest"] == [] and "rag-digest" not in cards


def test_a_new_search_leaves_no_older_panels_and_waits_for_a_question(app: SearchApp) -> None:
    from rag.ui import BRIEF_PLACEHOLDER

    assert app.fresh_panels() == (None, None, None, "", f'<p class="rag-placeholder">{escape(BRIEF_PLACEHOLDER)}</p>')
    assert [type(output) for output in next(app.rerun("  ", 5, "dense"))] == [type(gr.skip())] * 3
    *_, (status, cards, payload) = app.rerun(QUESTION, 2, "dense")
    assert payload["question"] == QUESTION and len(payload["hits"]) == 2 and "dense search" in status


def test_the_first_question_says_the_model_is_loading(own_app: SearchApp) -> None:
    assert not own_app.retriever.encoder_loaded
    first = list(own_app.search_page(QUESTION, 3, "hybrid"))
    assert len(first) == 2 and "Loading the model" in first[0][0]
    assert [type(output) for output in first[0][1:]] == [type(gr.skip())] * 2
    assert first[1][2]["question"] == QUESTION and own_app.retriever.encoder_loaded
    again = list(own_app.search_page(QUESTION, 3, "hybrid"))
    assert len(again) == 1 and "3 passages" in again[0][0]


def test_examples_k_and_mode_rerun_the_search_and_clear_old_panels(seeds_retriever: Retriever) -> None:
    from rag.ui import build_app

    demo = build_app(seeds_retriever)
    names = [getattr(dep.fn, "__name__", "") for dep in demo.fns.values()]
    assert names.count("rerun") == 3 and names.count("fresh_panels") == 4 and names.count("search_page") == 1
    # k re-runs on any change of its value (a key press moves the slider without a release).
    slider = next(block for block in demo.blocks.values() if isinstance(block, gr.Slider))
    triggers = {event for dep in demo.fns.values() if getattr(dep.fn, "__name__", "") == "rerun"
                for block_id, event in dep.targets if block_id == slider._id}
    assert triggers == {"change"}
    # Every export file (JSON, CSV, Markdown) is among what each new search clears.
    exports = {block._id for block in demo.blocks.values() if isinstance(block, gr.File) and block.interactive is False}
    assert len(exports) == 3
    for dep in demo.fns.values():
        if getattr(dep.fn, "__name__", "") in ("fresh_panels", "export"):
            assert exports <= {block._id for block in dep.outputs}


def test_a_declined_removal_removes_nothing_and_keeps_the_choice(own_app: SearchApp) -> None:
    corpus = own_app.corpus_dir
    assert corpus is not None
    status, table, *_ = own_app.remove(CHINA, False)
    assert f"Nothing was removed: {CHINA} stays" in status and (corpus / CHINA).exists() and CHINA in table
    assert own_app.removable(CHINA).value == CHINA and own_app.removable("gone.txt").value is None


def test_briefs_with_the_same_title_and_week_are_told_apart_by_their_file() -> None:
    from rag.ui import filter_choices

    def doc(source: str, title: str = "Drones", week: str | None = "2020-03-02") -> dict:
        return {"source": source, "title": title, "week_start": week, "category": None, "trend": None}

    briefs, _, _ = filter_choices([doc("a.txt"), doc("sub/b.txt"), doc("c.txt", "Tanks"), doc("d.md", week=None)])
    assert briefs == [("Drones (2020-03-02, a.txt)", "a.txt"), ("Drones (2020-03-02, sub/b.txt)", "sub/b.txt"),
                      ("Tanks (2020-03-02)", "c.txt"), ("Drones (d.md)", "d.md")]


def test_a_filter_on_a_brief_that_left_the_index_is_dropped_or_named(own_app: SearchApp) -> None:
    corpus = own_app.corpus_dir
    assert corpus is not None
    (corpus / CHINA).unlink()
    own_app.rescan()
    sources, categories, trends = own_app.pruned_filters([CHINA, TURKEY], ["Security issues", "gone"], ["worse"])
    assert sources.value == [TURKEY] and categories.value == ["Security issues"] and trends.value == []
    # A page not yet pruned (another user's) searches with the stale choice: a clear message, no stale results.
    status, cards, payload = search(own_app, sources=[CHINA])
    assert "no indexed brief is named" in status.lower() and cards == "" and payload["hits"] == []


def test_nothing_is_chosen_for_removal_until_asked_and_removal_asks_first(seeds_retriever: Retriever) -> None:
    from rag.ui import build_app

    demo = build_app(seeds_retriever)
    removal = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "rag-removal")
    assert removal.value is None  # a click on Remove before choosing deletes nothing
    removing = [dep for dep in demo.fns.values() if getattr(dep.fn, "__name__", "") == "remove"]
    assert len(removing) == 1 and "confirm(" in removing[0].js
    # A page opened later lists what was indexed since the app started, in the removal list too.
    loads = [getattr(dep.fn, "__name__", "") for dep in demo.fns.values() if any(event == "load" for _, event in dep.targets)]
    assert sorted(loads) == ["corpus_view", "removable"]


def test_rescan_picks_up_dropped_files_and_remove_deletes_only_indexed_documents(own_app: SearchApp, tmp_path: Path) -> None:
    corpus = own_app.corpus_dir
    assert corpus is not None
    (corpus / "dropped.md").write_text("Belarus ordered Pantsir radars from Oryol.", encoding="utf-8")
    status, table, *_ = own_app.rescan()
    assert "Rescanned" in status and "dropped.md" in table
    assert own_app.retriever.search("Pantsir radars Oryol", k=1)[0].source == "dropped.md"
    outside = tmp_path / "outside.txt"
    outside.write_text("Not part of the corpus.", encoding="utf-8")
    for source in ("../outside.txt", "nope.txt", None):
        assert "Choose an indexed document" in own_app.remove(source)[0]
    assert outside.exists()
    status, table, *_ = own_app.remove("dropped.md")
    assert "Removed dropped.md" in status and "dropped.md" not in table and not (corpus / "dropped.md").exists()
    assert all(hit.source != "dropped.md" for hit in own_app.retriever.search("Pantsir radars Oryol", k=3))
    assert {choice[1] for choice in own_app.removable().choices} == {p.name for p in corpus.iterdir()}
    assert "cannot be removed" in SearchApp(own_app.retriever, read_only=True).remove(CHINA)[0]


def test_the_timeline_groups_the_hits_by_week_between_digest_and_cards(app: SearchApp) -> None:
    _, cards, payload = search(app)
    digest_end, timeline_start = cards.index("</details>"), cards.index('<details class="rag-timeline">')
    assert digest_end < timeline_start < cards.index('<div class="rag-cards">')
    part = cards[timeline_start : cards.index('<div class="rag-cards">')]
    weeks = timeline(payload["hits"])
    assert len(weeks) > 1 and part == timeline_view(weeks)
    headings = re.findall(r"<h4>(.*?)</h4>", part)
    assert headings == [f"{w['week_start']}–{w['week_end']}" for w in weeks] and headings == sorted(headings)
    assert f"Timeline: 5 passages in {len(weeks)} weeks" in part
    assert escape(citation(payload["hits"][0])) in part  # the best hit's quote, cited
    _, cards, payload = search(app, "What is the population of Minsk?")
    assert not payload["answer_found"] and "rag-digest" not in cards and '<details class="rag-timeline">' in cards


def test_timeline_view_escapes_text_names_undated_weeks_and_counts_in_words() -> None:
    def evil_hit(rank: int, week_start: str | None, source: str) -> dict:
        return {"rank": rank, "source": source, "title": f"{EVIL} title", "trend": f"{EVIL}trend",
                "week_start": week_start, "week_end": week_start and f"{week_start}{EVIL}",
                "sentence": {"text": f"{EVIL} quote", "start": 3, "end": 9}}

    html = timeline_view(timeline([evil_hit(1, None, f"{EVIL}.txt"), evil_hit(2, "2019-01-07", "a.txt"),
                                   evil_hit(3, "2019-01-07", "a.txt")]))
    assert "<script>" not in html and html.count(escape(EVIL)) > 6
    assert re.findall(r"<h4>(.*?)</h4>", html) == [f"2019-01-07–2019-01-07{escape(EVIL)}", "undated"]
    assert "Timeline: 3 passages in 1 week and undated documents" in html and "2 passages" in html and "1 passage<" in html
    assert "(no date)" in html and "week no date" not in html
    undated = timeline_view(timeline([evil_hit(1, None, "a.txt"), evil_hit(2, None, "b.txt")]))
    assert "Timeline: 2 passages in undated documents" in undated
    assert re.findall(r'style="width: ([\d.]+)rem"', html) == ["12.00", "6.00"]  # the busiest week has the longest bar
    assert 'aria-hidden="true"' in html and "trend: " in html and "best #2" in html
    assert timeline_view([]) == ""
