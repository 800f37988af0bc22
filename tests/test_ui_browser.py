"""The web app in headless Chromium: question → cited passages → the passage inside its brief.

Screenshots go to ``test-artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
CHINA_TITLE = "Sino-Belarusian military-industrial cooperation is likely to widen"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def chromium() -> Path:
    """The Chromium binary; skipped (failed under CI) when it is not installed."""
    if not CHROMIUM.exists():
        reason = f"no {CHROMIUM}: install Chromium: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def page(chromium: Path, ui_url: str) -> Iterator[Any]:
    """A fresh page on the app (clipboard allowed); fails the test on any page JavaScript error."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ui_url.rstrip("/"))
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(ui_url)
        yield page
        browser.close()
    assert errors == []


def ask(page: Any, question: str) -> None:
    box = page.locator("#rag-question").get_by_role("textbox")
    box.fill(question)
    box.press("Enter")


def test_question_to_cited_passage_and_brief_in_context(page: Any) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    ask(page, "What did Belarus seek from China?")
    first = page.locator("#rag-results .rag-card").first
    expect(first.locator(".rag-title")).to_have_text(CHINA_TITLE)
    expect(page.locator("#rag-status")).to_contain_text("5 passages")
    sentence = first.locator("mark").inner_text()
    assert len(sentence) > 20
    citation = first.locator(".rag-citation")
    expect(citation).to_contain_text(f"“{sentence}” — {CHINA_TITLE} (week 2017-12-11–2017-12-17)")
    expect(citation).to_contain_text("003_d66b08127121952b.txt, chars ")
    page.screenshot(path=ARTIFACTS / "results.png")

    first.locator("button.rag-copy").click()
    expect(first.locator("button.rag-copy")).to_have_text("Copied ✓")
    assert page.evaluate("navigator.clipboard.readText()") == citation.inner_text()

    first.locator("button.rag-open").click()
    passage = page.locator("#brief-passage")
    expect(passage.locator("mark")).to_have_text(sentence)
    expect(passage).to_be_in_viewport()
    expect(page.locator("#rag-brief h2")).to_have_text(CHINA_TITLE)
    page.screenshot(path=ARTIFACTS / "brief.png")


def test_copy_without_clipboard_selects_the_citation(page: Any) -> None:
    from playwright.sync_api import expect

    page.evaluate("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    ask(page, "Roketsan")
    button = page.locator("#rag-results .rag-card").first.locator("button.rag-copy")
    button.click()
    expect(button).to_have_text("Selected: press Ctrl+C")
    assert page.evaluate("window.getSelection().toString()").startswith("“")


def test_empty_question_shows_a_message(page: Any) -> None:
    from playwright.sync_api import expect

    ask(page, "")
    expect(page.locator("#rag-status")).to_contain_text("The question is empty")
    expect(page.locator("#rag-results .rag-card")).to_have_count(0)


def test_digest_above_the_cards_copies_as_markdown(page: Any) -> None:
    from playwright.sync_api import expect

    ask(page, "What did Belarus seek from China?")
    digest = page.locator("#rag-results details.rag-digest")
    expect(digest).to_contain_text("oldest brief first")
    expect(digest.locator("li").first).to_be_visible()
    digest.locator("button.rag-copy").click()
    expect(digest.locator("button.rag-copy")).to_have_text("Copied ✓")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("**What did Belarus seek from China?** — evidence from the briefs, oldest first")
    assert "`003_d66b08127121952b.txt`, chars " in copied
    digest.locator("summary").click()  # collapsible
    expect(digest.locator("li").first).to_be_hidden()


def test_a_question_the_briefs_do_not_answer_says_so_above_the_nearest_passages(page: Any) -> None:
    from playwright.sync_api import expect

    ask(page, "What is the population of Minsk?")
    expect(page.locator("#rag-status")).to_contain_text("The briefs do not seem to answer this question")
    expect(page.locator("#rag-results .rag-card")).to_have_count(5)  # the nearest passages all the same
    expect(page.locator("#rag-results details.rag-digest")).to_have_count(0)  # nothing to quote as an answer
    ask(page, "What did Belarus seek from China?")  # an answered question clears the notice
    expect(page.locator("#rag-results details.rag-digest")).to_have_count(1)
    expect(page.locator("#rag-status")).not_to_contain_text("do not seem to answer")


def test_an_example_runs_and_a_new_mode_reruns_clearing_the_brief(page: Any) -> None:
    from playwright.sync_api import expect

    page.get_by_text("Did Azerbaijan receive the Polonaise from Belarus?").first.click()
    expect(page.locator("#rag-results .rag-card").first).to_be_visible()
    expect(page.locator("#rag-status")).to_contain_text("hybrid search")
    page.locator("#rag-results .rag-card").first.locator("button.rag-open").click()
    expect(page.locator("#brief-passage")).to_be_visible()
    page.get_by_label("bm25").check()
    expect(page.locator("#rag-status")).to_contain_text("bm25 search")
    expect(page.locator("#brief-passage")).to_have_count(0)  # the brief of the older results is gone


@pytest.fixture
def own_page(chromium: Path, corpus_dir: Path, seeds_index: Path) -> Iterator[Any]:
    """A page on an app of its own, over a private corpus folder free to change."""
    import socket

    from playwright.sync_api import expect, sync_playwright

    from rag.retrieval import Retriever
    from rag.ui import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = serve(Retriever.open(corpus_dir, seeds_index), "127.0.0.1", port, block=False)
    expect.set_options(timeout=TIMEOUT_MS)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            yield page
            browser.close()
    finally:
        demo.close()


def test_filters_explain_an_empty_result_and_refuse_a_reversed_range(page: Any) -> None:
    from playwright.sync_api import expect

    page.get_by_text("Filters: brief, week, category, trend").click()
    page.get_by_label("Week from").fill("2030-01-01")
    ask(page, "What did Belarus seek from China?")
    expect(page.locator("#rag-status")).to_contain_text("no indexed passage matches weeks 2030-01-01")
    expect(page.locator("#rag-results .rag-card")).to_have_count(0)
    page.get_by_text("Export these results as JSON, CSV and a Markdown digest").click()
    page.get_by_role("button", name="Export", exact=True).click()  # an empty result exports its reason
    expect(page.locator('a[href$="/results.json"]')).to_be_visible()
    exported = download(page, "results.json")
    assert '"hits": []' in exported and "no indexed passage matches weeks 2030-01-01" in exported
    page.get_by_label("Week from").fill("2019-12-31")
    page.get_by_label("Week to").fill("2019-01-01")
    ask(page, "What did Belarus seek from China?")
    expect(page.locator("#rag-status")).to_contain_text("reversed")
    expect(page.locator('a[href$="/results.json"]')).to_have_count(0)


def download(page: Any, name: str) -> str:
    """The text of the export file ``name`` the page links to."""
    href = page.locator(f'a[href$="/{name}"]').get_attribute("href")
    return page.request.get(urljoin(page.url, href)).text()


def test_export_gives_files_that_a_new_search_or_an_error_clears(page: Any) -> None:
    from playwright.sync_api import expect

    exports = ("results.json", "results.csv", "digest.md")
    ask(page, "Roketsan")
    expect(page.locator("#rag-results .rag-card").first).to_be_visible()
    page.get_by_text("Export these results as JSON, CSV and a Markdown digest").click()
    export = page.get_by_role("button", name="Export", exact=True)
    export.click()
    for name in exports:
        expect(page.locator(f'a[href$="/{name}"]')).to_be_visible()
    copied = page.locator("#rag-results .rag-digest-markdown").text_content()
    assert download(page, "digest.md") == copied and copied.startswith("**Roketsan** — evidence from the briefs")
    ask(page, "Polonaise")
    expect(page.locator("#rag-status")).to_contain_text("Polonaise")
    for name in exports:
        expect(page.locator(f'a[href$="/{name}"]')).to_have_count(0)
    export.click()
    expect(page.locator('a[href$="/digest.md"]')).to_be_visible()
    markdown = download(page, "digest.md")  # the new question's digest replaces the old one
    assert markdown.startswith("**Polonaise**") and "Roketsan" not in markdown.splitlines()[0]
    assert markdown == page.locator("#rag-results .rag-digest-markdown").text_content()
    ask(page, "")
    expect(page.locator("#rag-status")).to_contain_text("The question is empty")
    expect(page.locator('a[href$="/digest.md"]')).to_have_count(0)


def test_timeline_shows_the_weeks_of_the_hits_oldest_first(page: Any) -> None:
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    ask(page, "Roketsan")  # three passages of the Turkish brief (April 2019), two of the Kazakh one (September 2017)
    timeline = page.locator("#rag-results details.rag-timeline")
    expect(timeline.locator("summary")).to_contain_text("Timeline: 5 passages in 2 weeks, oldest first")
    weeks = timeline.locator("h4")
    expect(weeks.first).to_be_hidden()  # collapsed until asked for
    timeline.locator("summary").click()
    expect(weeks.first).to_be_visible()
    headings = weeks.all_inner_texts()
    assert [heading[:10] for heading in headings] == ["2017-09-11", "2019-04-15"]
    busiest = timeline.locator(".rag-timeline-week").nth(1)
    expect(busiest).to_contain_text("3 passages")
    expect(busiest.locator(".rag-citation").first).to_contain_text(f"(week {headings[1]})")
    bars = [bar.bounding_box()["width"] for bar in timeline.locator(".rag-timeline-bar").all()]
    assert bars[0] < bars[1]  # the bar grows with the week's passages
    timeline.screenshot(path=ARTIFACTS / "timeline.png")


def test_upload_indexes_a_brief_the_next_search_finds(own_page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    memo = tmp_path / "pantsir-memo.txt"
    memo.write_text("Belarus ordered Pantsir radars from the Oryol plant in 2021.", encoding="utf-8")
    own_page.get_by_role("tab", name="Corpus").click()
    own_page.locator("input[type=file]").first.set_input_files(str(memo))
    expect(own_page.locator("#rag-corpus")).to_contain_text("pantsir-memo.txt")
    own_page.get_by_role("tab", name="Search").click()
    ask(own_page, "Pantsir radars Oryol")
    expect(own_page.locator("#rag-results .rag-card").first).to_contain_text("pantsir-memo.txt")


def test_a_key_press_on_k_reruns_the_search(page: Any) -> None:
    from playwright.sync_api import expect

    ask(page, "Roketsan")
    expect(page.locator("#rag-status")).to_contain_text("5 passages")
    page.locator('input[type="range"]').first.press("ArrowLeft")
    expect(page.locator("#rag-status")).to_contain_text("4 passages")
    expect(page.locator("#rag-results .rag-card")).to_have_count(4)


def test_removal_needs_a_choice_and_a_confirmation_and_leaves_no_stale_filter(own_page: Any, corpus_dir: Path) -> None:
    from playwright.sync_api import expect

    china = corpus_dir / "003_d66b08127121952b.txt"
    # A search filtered to the brief about to be removed.
    own_page.get_by_text("Filters: brief, week, category, trend").click()
    own_page.locator("#rag-sources input").click()
    own_page.get_by_role("option", name=CHINA_TITLE, exact=False).click()
    ask(own_page, "Roketsan")
    expect(own_page.locator("#rag-status")).to_contain_text(f"brief: {CHINA_TITLE}")

    note = own_page.locator("#rag-corpus-note")
    remove = own_page.get_by_role("button", name="Remove", exact=True)
    choice = own_page.locator("#rag-removal input")
    own_page.get_by_role("tab", name="Corpus").click()
    remove.click()  # nothing chosen yet: nothing is deleted
    expect(note).to_contain_text("Choose an indexed document to remove")
    choice.click()
    own_page.get_by_role("option", name=CHINA_TITLE, exact=False).click()
    expect(choice).not_to_have_value("")
    own_page.once("dialog", lambda dialog: dialog.dismiss())
    remove.click()  # chosen, but the confirmation is declined
    expect(note).to_contain_text("Nothing was removed: 003_d66b08127121952b.txt stays in the corpus")
    expect(choice).to_have_value(f"{CHINA_TITLE} (2017-12-11)")  # still chosen, ready to confirm
    assert china.exists() and len(list(corpus_dir.glob("*.txt"))) == 5
    own_page.once("dialog", lambda dialog: dialog.accept())
    remove.click()
    expect(note).to_contain_text("Removed 003_d66b08127121952b.txt")
    assert not china.exists() and len(list(corpus_dir.glob("*.txt"))) == 4
    expect(own_page.locator("#rag-corpus")).not_to_contain_text(CHINA_TITLE)
    expect(choice).to_have_value("")

    # Back on the search page the filter on the removed brief is gone: searches run over what is left.
    own_page.get_by_role("tab", name="Search").click()
    expect(own_page.locator("#rag-sources")).not_to_contain_text(CHINA_TITLE)
    ask(own_page, "Roketsan")
    expect(own_page.locator("#rag-status")).to_contain_text("5 passages for “Roketsan” (hybrid search)")
    expect(own_page.locator("#rag-status")).not_to_contain_text("brief:")
    expect(own_page.locator("#rag-results .rag-card").first).to_contain_text("000_3b696b7c0f75676d.txt")
