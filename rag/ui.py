"""The Gradio web app: Blocks layout and callbacks only; all the work goes through ``Retriever``.

Start it with ``rag serve`` or ``python app.py``. Callbacks live on :class:`SearchApp`, so they
can be called (and tested) without a browser. The same search is the ``/search`` API endpoint:

>>> from gradio_client import Client  # doctest: +SKIP
>>> Client("http://127.0.0.1:7860/").predict("What did Belarus seek from China?", 3, api_name="/search")  # doctest: +SKIP
{'question': 'What did Belarus seek from China?', 'hits': [{'rank': 1, ...}, ...]}
"""

from __future__ import annotations

import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from .config import DEFAULT_K, DEFAULT_MODE, SEARCH_MODES
from .digest import counted, timeline
from .documents import FolderCorpus
from .errors import QueryError, RagError
from .retrieval import Retriever, results_payload
from .stores.passages import Filters, filter_date
from .ui_files import (
    MAX_UPLOAD_BYTES,
    UploadError,
    read_upload,
    save_upload,
    write_csv,
    write_digest,
    write_json,
)
from .ui_render import (
    CSS,
    PASSAGE_ANCHOR,
    brief_view,
    corpus_table,
    digest_view,
    message,
    placeholder,
    result_cards,
    timeline_view,
)

#: Questions offered under the question box, each answered by one of the bundled briefs.
EXAMPLE_QUESTIONS = (
    "What did Belarus seek from China?",
    "Which Turkish firms such as Roketsan held talks with Belarus?",
    "Did Azerbaijan receive the Polonaise from Belarus?",
    "Which Kazakh defence firms did Belarusians visit?",
)

#: What the brief reader shows before "Open in brief" is pressed.
BRIEF_PLACEHOLDER = "Press “Open in brief” on a result to read the whole brief, passage highlighted."

#: Largest top-k offered by the slider.
UI_MAX_K = 20

#: Searches (page and ``/search`` API) run at once. Search is CPU-bound and this machine class
#: has 2 cores: 4 keeps both busy while one request waits on I/O; more only adds contention.
SEARCH_CONCURRENCY = 4
#: Requests that may wait in the queue; beyond it a client is told the queue is full at once.
QUEUE_SIZE = 256
#: Uploads, removals and rebuilds share one slot: the index has one writer at a time.
WRITER_CONCURRENCY_ID = "index-writer"
#: Gradio's cached output files (exports) older than this are deleted, checked as often (seconds).
CACHE_SECONDS = 3600

_NO_RESULTS = results_payload("", [])

#: The corpus table HTML and updated brief, category and trend filter dropdowns.
CorpusView = tuple[str, gr.Dropdown, gr.Dropdown, gr.Dropdown]
#: A message HTML followed by a ``CorpusView``.
CorpusUpdate = tuple[str, str, gr.Dropdown, gr.Dropdown, gr.Dropdown]

# Delegated click handler of the result cards: "Open in brief" asks the server for the brief,
# "Copy" writes the card's citation to the clipboard, or selects it when the clipboard is unavailable.
_RESULTS_JS = """
element.addEventListener('click', (event) => {
  const open = event.target.closest('button[data-open-rank]');
  if (open) { trigger('click', {rank: Number(open.dataset.openRank)}); return; }
  const copy = event.target.closest('button.rag-copy');
  if (!copy) return;
  // A card copies its citation; the digest copies its Markdown block.
  const cite = copy.closest('.rag-card, .rag-digest').querySelector('.rag-citation, .rag-digest-markdown');
  const label = copy.dataset.label || copy.textContent;
  copy.dataset.label = label;
  const say = (text) => { copy.textContent = text; setTimeout(() => { copy.textContent = label; }, 2000); };
  const select = () => { window.getSelection().selectAllChildren(cite); say('Selected: press Ctrl+C'); };
  try {
    navigator.clipboard.writeText(cite.textContent).then(() => say('Copied ✓'), select);
  } catch (error) {
    select();
  }
});
"""

# Asks before the Remove button deletes the chosen file: sends the choice and whether it was confirmed.
_CONFIRM_REMOVAL_JS = """(source, confirmed) => [source, Boolean(source) && window.confirm(
  `Delete ${source} from the corpus folder? The file itself is deleted, and its passages leave the index.`
)]"""

# Scrolls the brief box to its highlighted passage, then brings the box itself into view.
_SCROLL_JS = f"""() => {{
  setTimeout(() => {{
    const passage = document.getElementById('{PASSAGE_ANCHOR}');
    if (!passage) return;
    const box = passage.closest('.rag-brief');
    const header = box.querySelector('.rag-brief-head').offsetHeight;
    box.scrollTop += passage.getBoundingClientRect().top - box.getBoundingClientRect().top - header - 16;
    box.scrollIntoView({{block: 'nearest'}});
  }}, 50);
}}"""


def make_filters(
    sources: Sequence[str] | None,
    date_from: str | None,
    date_to: str | None,
    categories: Sequence[str] | None,
    trends: Sequence[str] | None,
) -> Filters:
    """``Filters`` from the filter controls; raises ``QueryError`` for a malformed or reversed date range."""
    start, end = filter_date(date_from, "'Week from'"), filter_date(date_to, "'Week to'")
    if start and end and start > end:
        raise QueryError(f"the week range is reversed: {start} is after {end}")
    return Filters(tuple(sources or ()), tuple(categories or ()), tuple(trends or ()), start, end)


def _describe(filters: Filters, titles: dict[str, str]) -> str:
    parts = []
    if filters.sources:
        parts.append("brief: " + "; ".join(titles.get(source, source) for source in filters.sources))
    if filters.categories:
        parts.append("category: " + ", ".join(filters.categories))
    if filters.trends:
        parts.append("trend: " + ", ".join(filters.trends))
    if filters.date_from or filters.date_to:
        parts.append(f"weeks {filters.date_from or '…'} to {filters.date_to or '…'}")
    return " · ".join(parts)


def filter_choices(documents: Sequence[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """Choices of the brief (label, source), category and trend filters for the indexed documents.

    A brief is labelled with its title and week (its file name when it has none), and with its
    file name too when another brief has the same title and week.
    """
    labels = [f"{doc['title']} ({doc['week_start'] or doc['source']})" for doc in documents]
    repeated = {label for label, times in Counter(labels).items() if times > 1}  # one pass: corpora hold many briefs
    briefs = [(f"{label[:-1]}, {doc['source']})" if label in repeated else label, doc["source"])
              for label, doc in zip(labels, documents)]
    categories = sorted({doc["category"] for doc in documents if doc["category"]})
    trends = sorted({doc["trend"] for doc in documents if doc["trend"]})
    return briefs, categories, trends


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _whole(k: float | int) -> int:
    """A whole-number ``k`` from a slider or API value (``3.0`` becomes ``3``; others fail in validation)."""
    return int(k) if isinstance(k, float) and k.is_integer() else k  # type: ignore[return-value]


class SearchApp:
    """The web app's callbacks over one ``Retriever``.

    >>> app = SearchApp(Retriever.open("seeds", "index"))  # doctest: +SKIP
    >>> status, cards, payload = app.search("What did Belarus seek from China?", 3, "hybrid")  # doctest: +SKIP
    """

    def __init__(self, retriever: Retriever, *, read_only: bool = False) -> None:
        self.retriever = retriever
        self.read_only = read_only
        corpus = retriever.corpus
        self.corpus_dir: Path | None = corpus.root if isinstance(corpus, FolderCorpus) else None
        # Removed by close() or, at the latest, when the process exits.
        self._exports = tempfile.TemporaryDirectory(prefix="rag-exports-")

    def close(self) -> None:
        """Delete the export files this app wrote."""
        self._exports.cleanup()

    # -- searching -------------------------------------------------------------

    def search(
        self,
        question: str | None,
        k: float | int,
        mode: str,
        sources: Sequence[str] | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        categories: Sequence[str] | None = None,
        trends: Sequence[str] | None = None,
    ) -> tuple[str, str, dict[str, Any]]:
        """Search with the page's controls; returns (status HTML, result cards HTML, results payload)."""
        question = question or ""
        try:
            filters = make_filters(sources, date_from, date_to, categories, trends)
            answer = self.retriever.answer(question, _whole(k), mode=mode, filters=filters)
        except RagError as error:
            return message(_capitalized(f"{error}."), "error"), "", _NO_RESULTS
        hits, why, payload = answer.hits, answer.reason, answer.to_dict()
        scope = _describe(filters, {doc["source"]: doc["title"] for doc in self.retriever.documents()})
        if why is not None:
            details = [f"Filters: {scope}"] if scope else []
            return message(_capitalized(f"no passage found: {why}."), "warning", details), "", payload
        summary = message(f"{counted(len(hits), 'passage')} for “{question.strip()}” ({mode} search)"
                          + (f" · {scope}" if scope else ""))
        # The digest is empty when no answer is found; the timeline shows the nearest passages all the same.
        cards = (digest_view(question, payload["digest"]) + timeline_view(timeline(payload["hits"]))
                 + result_cards(payload["hits"]))
        if not payload["answer_found"]:
            best = max(hit.confidence for hit in hits)
            notice = message(f"The briefs do not seem to answer this question (best confidence {best:.2f}). "
                             "The nearest passages are below.", "warning")
            return notice + summary, cards, payload
        return summary, cards, payload

    def search_page(self, question: str | None, *controls: Any) -> Iterator[tuple[Any, Any, Any]]:
        """:meth:`search` for the page: before the first question's model is loaded, the status says
        so first (loading takes about a second; more on a busy machine)."""
        if not self.retriever.encoder_loaded and (question or "").strip():
            yield message("Loading the model… (first question only)"), gr.skip(), gr.skip()
        yield self.search(question, *controls)

    def rerun(self, question: str | None, *controls: Any) -> Iterator[tuple[Any, Any, Any]]:
        """:meth:`search_page` again after an example, k or the mode changed; nothing happens before a question is typed."""
        if not (question or "").strip():
            yield gr.skip(), gr.skip(), gr.skip()
            return
        yield from self.search_page(question, *controls)

    def fresh_panels(self) -> tuple[None, None, None, str, str]:
        """Empty export files (JSON, CSV, Markdown) and note, and the brief reader's placeholder: what a new search leaves."""
        return None, None, None, "", placeholder(BRIEF_PLACEHOLDER)

    def search_api(self, question: str, k: int, mode: str = DEFAULT_MODE) -> dict[str, Any]:
        """Answer ``question`` with the ``k`` best passages: ``{"question": ..., "hits": [...]}``, as ``rag ask --json``.

        ``mode`` is hybrid (default), dense or bm25.
        """
        try:
            return self.retriever.answer(question, _whole(k), mode=mode).to_dict()
        except RagError as error:
            raise gr.Error(str(error)) from None

    def open_brief(self, payload: dict[str, Any] | None, rank: int) -> str:
        """The whole brief of result ``rank`` with its passage highlighted, or a message why not."""
        hit = next((hit for hit in (payload or _NO_RESULTS)["hits"] if hit["rank"] == rank), None)
        if hit is None:
            return message(f"There is no result #{rank} any more: run the search again.", "warning")
        doc = self.retriever.document(hit["source"])
        if doc is None or doc.text[hit["start"] : hit["end"]] != hit["text"]:
            return message(f"{hit['source']} changed or left the index since this search: run it again.", "warning")
        return brief_view(doc, hit)

    def open_brief_event(self, payload: dict[str, Any] | None, event: gr.EventData) -> str:
        """``open_brief`` for the rank sent by a card's "Open in brief" button."""
        return self.open_brief(payload, int(event._data.get("rank", 0)))

    def export(self, payload: dict[str, Any] | None) -> tuple[str | None, str | None, str | None, str]:
        """Write the current results as JSON and CSV and their digest as Markdown.

        Returns (JSON path, CSV path, Markdown path, note HTML); the Markdown path is ``None``
        when the results have no digest (the briefs do not seem to answer the question).
        """
        if not payload or not (payload["question"] or "").strip():
            return None, None, None, message("Nothing to export yet: run a search first.", "warning")
        folder = Path(tempfile.mkdtemp(dir=self._exports.name))
        found = len(payload["hits"])
        note = f"Exported {counted(found, 'result')} for “{payload['question'].strip()}”."
        if not found:
            note += f" No passage was found: {payload.get('reason') or 'nothing matched'}."
        markdown = None
        if payload["digest"]:
            markdown = str(write_digest(payload, folder))
        elif found:
            note += " No digest to export as Markdown: the briefs do not seem to answer this question."
        return str(write_json(payload, folder)), str(write_csv(payload, folder)), markdown, message(note)

    # -- corpus ----------------------------------------------------------------

    def corpus_view(self) -> CorpusView:
        """The corpus table and fresh choices for the brief, category and trend filters."""
        documents = self.retriever.documents()
        briefs, categories, trends = filter_choices(documents)
        return (
            corpus_table(documents),
            gr.Dropdown(choices=briefs),
            gr.Dropdown(choices=categories),
            gr.Dropdown(choices=trends),
        )

    def _refreshed(self, notice: str, rebuild: bool = False) -> CorpusUpdate:
        """Re-index, then (message HTML, *corpus_view()) with the index report appended."""
        if self.read_only:
            return (message("This app is read-only: the corpus cannot be changed from the page.", "error"),
                    *self.corpus_view())
        try:
            report = self.retriever.refresh(rebuild=rebuild)
        except (RagError, OSError) as error:
            return (message(f"{notice} Re-indexing failed: {error}", "error"), *self.corpus_view())
        kind = "warning" if report.skipped or report.warnings else "info"
        return (message(notice, kind, report.messages()), *self.corpus_view())

    def upload(self, paths: Sequence[str] | None) -> CorpusUpdate:
        """Store uploaded ``.txt``/``.md`` files in the corpus folder and index them.

        Returns (message HTML, *corpus_view()). Refused files are listed with the reason.
        """
        if self.read_only:
            return (message("This app is read-only: files cannot be added from the page.", "error"), *self.corpus_view())
        if self.corpus_dir is None:
            return (message("This corpus is not a folder, so files cannot be added to it.", "error"), *self.corpus_view())
        if not paths:
            return (message("Choose one or more .txt or .md files to add.", "warning"), *self.corpus_view())
        added, problems = [], []
        for path in map(Path, paths):
            try:
                name, new = save_upload(path.name, read_upload(path), self.corpus_dir)
            except UploadError as error:
                problems.append(str(error))
                continue
            except OSError as error:
                problems.append(f"{path.name}: cannot be stored ({error.strerror or error})")
                continue
            if new:
                added.append(name)
            else:
                problems.append(f"{name}: this exact file is already in the corpus")
        if not added:
            return (message("No file was added.", "error", problems), *self.corpus_view())
        status, table, briefs, categories, trends = self._refreshed(f"Added {', '.join(added)}.")
        refused = message("Some files were refused.", "warning", problems) if problems else ""
        return status + refused, table, briefs, categories, trends

    def rebuild(self) -> CorpusUpdate:
        """Rebuild the index from scratch; returns (message HTML, *corpus_view())."""
        return self._refreshed("Rebuild finished.", rebuild=True)

    def rescan(self) -> CorpusUpdate:
        """Index what changed in the corpus folder (files dropped in, edited or deleted while the app runs)."""
        return self._refreshed("Rescanned the corpus folder.")

    def remove(self, source: str | None, confirmed: bool = True) -> CorpusUpdate:
        """Delete one indexed document's file from the corpus folder and re-index, once ``confirmed``.

        Only a document the index lists, inside the corpus folder, is ever deleted (a link is
        removed, never what it points to).
        """
        if self.read_only or self.corpus_dir is None:
            return (message("Documents cannot be removed from this app.", "error"), *self.corpus_view())
        known = {doc["source"] for doc in self.retriever.documents()}
        if not source or source not in known:
            return (message("Choose an indexed document to remove.", "warning"), *self.corpus_view())
        if not confirmed:
            return (message(f"Nothing was removed: {source} stays in the corpus."), *self.corpus_view())
        path = self.corpus_dir / source
        if not path.parent.resolve().is_relative_to(self.corpus_dir.resolve()):
            return (message(f"{source} is not inside the corpus folder.", "error"), *self.corpus_view())
        try:
            path.unlink()
        except OSError as error:
            return (message(f"{source} could not be removed: {error.strerror or error}", "error"), *self.corpus_view())
        return self._refreshed(f"Removed {source}.")

    def removable(self, chosen: str | None = None) -> gr.Dropdown:
        """The choices of the "Remove a document" list: every indexed document; ``chosen`` stays
        chosen while it is still indexed."""
        briefs = filter_choices(self.retriever.documents())[0]
        return gr.Dropdown(choices=briefs, value=chosen if chosen in {source for _, source in briefs} else None)

    def pruned_filters(
        self, sources: Sequence[str] | None, categories: Sequence[str] | None, trends: Sequence[str] | None
    ) -> tuple[gr.Dropdown, gr.Dropdown, gr.Dropdown]:
        """The filter choices without the briefs, categories and trends that left the index (after the
        corpus changed), so that no search is filtered by what the page no longer shows."""
        briefs, known_categories, known_trends = filter_choices(self.retriever.documents())

        def pruned(choices: Sequence[Any], known: Sequence[str], chosen: Sequence[str] | None) -> gr.Dropdown:
            return gr.Dropdown(choices=choices, value=[value for value in chosen or () if value in known], multiselect=True)

        return (pruned(briefs, [source for _, source in briefs], sources),
                pruned(known_categories, known_categories, categories), pruned(known_trends, known_trends, trends))


def build_app(retriever: Retriever, *, read_only: bool = False) -> gr.Blocks:
    """The Blocks app over ``retriever``: search page with filters, brief reader, exports, corpus panel.

    With ``read_only`` the corpus panel lists the briefs but offers no upload or rebuild,
    and no event that changes the corpus or the index exists on the server.
    """
    app = SearchApp(retriever, read_only=read_only)
    documents = retriever.documents()
    brief_choices, category_choices, trend_choices = filter_choices(documents)
    with gr.Blocks(
        title="Security briefs: cited search", analytics_enabled=False, delete_cache=(CACHE_SECONDS, CACHE_SECONDS)
    ) as demo:
        gr.Markdown(
            "## Security briefs: cited search\n"
            "Ask a question in plain English; get the passages that answer it, each with an exact citation."
        )
        results_state = gr.State(_NO_RESULTS)
        with gr.Tab("Search"):
            question = gr.Textbox(
                label="Question", placeholder="e.g. What did Belarus seek from China?  (Enter to search)",
                lines=1, max_lines=1, autofocus=True, submit_btn="Search", elem_id="rag-question",
            )
            examples = gr.Examples([[q] for q in EXAMPLE_QUESTIONS], inputs=[question], label="Example questions")
            with gr.Row():
                k = gr.Slider(1, UI_MAX_K, value=DEFAULT_K, step=1, label="Passages (top-k)")
                mode = gr.Radio(
                    list(SEARCH_MODES), value=DEFAULT_MODE, label="Search mode",
                    info="hybrid fuses BM25 keywords with dense embeddings",
                )
            with gr.Accordion("Filters: brief, week, category, trend", open=False):
                with gr.Row():
                    # Custom values: a choice that left the index since the page loaded reaches the search, which
                    # names it, instead of failing Gradio's check; a typed name or prefix matches as --source does.
                    sources = gr.Dropdown(choices=brief_choices, multiselect=True, label="Brief", scale=2,
                                          allow_custom_value=True, elem_id="rag-sources")
                    categories = gr.Dropdown(choices=category_choices, multiselect=True, label="Category",
                                             allow_custom_value=True)
                    trends = gr.Dropdown(choices=trend_choices, multiselect=True, label="Trend", allow_custom_value=True)
                with gr.Row():
                    date_from = gr.Textbox(label="Week from", placeholder="YYYY-MM-DD, e.g. 2018-01-01")
                    date_to = gr.Textbox(label="Week to", placeholder="YYYY-MM-DD, e.g. 2019-12-31")
            status = gr.HTML(elem_id="rag-status")
            with gr.Accordion("Export these results as JSON, CSV and a Markdown digest", open=False):
                with gr.Row():
                    export_button = gr.Button("Export", size="sm", scale=0, min_width=140)
                    export_note = gr.HTML()
                with gr.Row():
                    json_file = gr.File(label="JSON (the rag ask --json schema)", interactive=False, height=70)
                    csv_file = gr.File(label="CSV (one row per passage)", interactive=False, height=70)
                    markdown_file = gr.File(label="Markdown (the evidence digest)", interactive=False, height=70)
            with gr.Row():
                with gr.Column(scale=1):
                    results = gr.HTML(js_on_load=_RESULTS_JS, elem_id="rag-results")
                with gr.Column(scale=1, elem_classes=["rag-brief-column"]):
                    brief = gr.HTML(placeholder(BRIEF_PLACEHOLDER), elem_id="rag-brief")
        with gr.Tab("Corpus"):
            corpus = gr.HTML(corpus_table(documents), elem_id="rag-corpus")
            if not read_only:
                with gr.Row():
                    upload = gr.File(
                        label=f"Add .txt or .md files (UTF-8, at most {MAX_UPLOAD_BYTES // (1024 * 1024)} MB each)",
                        file_count="multiple", type="filepath", scale=3,
                    )
                    with gr.Column(scale=1):
                        rescan = gr.Button("Rescan corpus folder")
                        rebuild = gr.Button("Rebuild index from scratch")
                with gr.Row():
                    removal = gr.Dropdown(choices=brief_choices, value=None, label="Remove a document from the corpus folder",
                                          elem_id="rag-removal", scale=3, allow_custom_value=True)
                    remove = gr.Button("Remove", variant="stop", scale=1)
                    confirmed = gr.Checkbox(False, visible=False)  # set by the confirmation dialog
            corpus_note = gr.HTML(elem_id="rag-corpus-note")

        # The page's own search event is private; the name /search belongs to the JSON endpoint below.
        # Enter, an example, a new k or mode all run the search; each clears the previous
        # question's exports and brief, so nothing on the page belongs to an older question.
        search_inputs = [question, k, mode, sources, date_from, date_to, categories, trends]
        search_outputs = [status, results, results_state]
        stale = [json_file, csv_file, markdown_file, export_note, brief]
        question.submit(
            app.search_page, inputs=search_inputs, outputs=search_outputs, api_name="search_page",
            api_visibility="private", concurrency_id="search",
        ).then(app.fresh_panels, None, stale, api_visibility="private")
        rerun = {"inputs": search_inputs, "outputs": search_outputs, "api_visibility": "private", "concurrency_id": "search"}
        # k.change (not release): a key press moves the slider without releasing it; "always_last"
        # runs the newest value once a drag's earlier searches are done.
        for event in (examples.load_input_event.then, k.change, mode.change):
            event(app.rerun, **rerun).then(app.fresh_panels, None, stale, api_visibility="private")
        results.click(app.open_brief_event, [results_state], [brief], api_visibility="private").then(
            None, js=_SCROLL_JS, api_visibility="private"
        )
        export_button.click(
            app.export, [results_state], [json_file, csv_file, markdown_file, export_note], api_visibility="private"
        )
        corpus_outputs = [corpus_note, corpus, sources, categories, trends]
        if not read_only:
            writer = {"concurrency_limit": 1, "concurrency_id": WRITER_CONCURRENCY_ID, "api_visibility": "private"}
            filters = [sources, categories, trends]
            changes = [upload.upload(app.upload, [upload], corpus_outputs, **writer).then(
                lambda: None, outputs=[upload], api_visibility="private")]
            for button, action, inputs, js in ((rebuild, app.rebuild, None, None), (rescan, app.rescan, None, None),
                                               (remove, app.remove, [removal, confirmed], _CONFIRM_REMOVAL_JS)):
                changes.append(button.click(action, inputs, corpus_outputs, js=js, **writer))
            # After any change of the corpus: the removal list and the filters hold only what is indexed.
            for change in changes:
                change.then(app.removable, [removal], removal, api_visibility="private").then(
                    app.pruned_filters, filters, filters, api_visibility="private")
            demo.load(app.removable, None, removal, api_visibility="private")
        demo.load(app.corpus_view, None, corpus_outputs[1:], api_visibility="private")
        gr.api(app.search_api, api_name="search", concurrency_id="search")
    return demo


def _exit_once(*_: object) -> None:
    """End the process as on Ctrl-C; a second SIGTERM during the clean-up is ignored, not a traceback."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(0)


def serve(
    retriever: Retriever,
    host: str,
    port: int,
    *,
    auth: Sequence[tuple[str, str]] | None = None,
    read_only: bool = False,
    block: bool = True,
) -> gr.Blocks:
    """Launch the app on ``host:port`` (never a public share link).

    ``auth`` is a list of (user, password) logins that the page and the API then require.
    With ``block=False`` it returns once the server runs; stop it with ``.close()``.
    """
    demo = build_app(retriever, read_only=read_only)
    if block:  # a served process ends on SIGTERM as on Ctrl-C, removing its temporary exports
        signal.signal(signal.SIGTERM, _exit_once)
    demo.queue(default_concurrency_limit=SEARCH_CONCURRENCY, max_size=QUEUE_SIZE)
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=False,
        auth=list(auth) if auth else None,
        css=CSS,
        max_file_size=5 * MAX_UPLOAD_BYTES,
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return demo
