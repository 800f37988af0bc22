"""HTML for the web app: result cards, citations, the digest and timeline, the brief reader, the corpus table and messages.

Pure functions over hit dictionaries (the ``Hit.to_dict()`` schema) and ``Document`` objects.
Every piece of document or question text goes through :func:`html.escape` here, so a brief
containing ``<script>`` is shown as text.

>>> hit = {"title": "T", "week_start": "2019-04-15", "week_end": "2019-04-21", "source": "a.txt",
...        "sentence": {"text": "Quote.", "start": 10, "end": 16}}
>>> citation(hit)
'“Quote.” — T (week 2019-04-15–2019-04-21), a.txt, chars 10–16'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from .digest import counted, digest_markdown, week, week_label
from .documents import Document

#: Element id of the highlighted passage in the brief reader (scrolled into view).
PASSAGE_ANCHOR = "brief-passage"

#: Styles of the HTML produced here, given to the app at launch.
CSS = """
/* Gradio's theme ships Source Sans Pro 400 and a glyph subset at 600; load the full bold face for 700. */
@font-face { font-family: 'Source Sans Pro'; font-weight: 700; font-style: normal;
  src: url('static/fonts/SourceSansPro/SourceSansPro-Bold.woff2') format('woff2'); }
.rag-cards { display: flex; flex-direction: column; gap: 0.9rem; }
.rag-card { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 0.9rem 1.1rem;
  background: var(--block-background-fill); color: var(--body-text-color); }
.rag-card-head { display: flex; align-items: baseline; gap: 0.6rem; flex-wrap: wrap; }
.rag-rank { font-weight: 700; font-size: 1.05rem; color: var(--color-accent); }
.rag-score { font-size: 0.8rem; padding: 0.05rem 0.45rem; border-radius: 999px;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary); }
.rag-title { margin: 0; font-size: 1.05rem; font-weight: 700; line-height: 1.35; flex: 1 1 16rem; }
.rag-meta { margin: 0.35rem 0 0.6rem; font-size: 0.82rem; line-height: 1.5; color: var(--body-text-color-subdued); }
.rag-meta code { font-size: 0.78rem; font-weight: 400; }
.rag-passage-text, .rag-brief-body { white-space: pre-wrap; line-height: 1.55; margin: 0; font-size: 0.95rem; }
.rag-card mark, .rag-brief mark { background: #ffe066; color: #1a1a1a; padding: 0.05rem 0.1rem; border-radius: 3px; }
.rag-citation { margin: 0.7rem 0 0.5rem; padding: 0.4rem 0.7rem; font-size: 0.82rem;
  border-left: 3px solid var(--color-accent); background: var(--background-fill-secondary); }
.rag-actions { display: flex; gap: 0.5rem; flex-wrap: wrap; }
.rag-actions button { font-size: 0.85rem; font-weight: 700; padding: 0.3rem 0.8rem; border-radius: 6px; cursor: pointer;
  border: 1px solid var(--border-color-primary); background: var(--button-secondary-background-fill);
  color: var(--button-secondary-text-color); }
.rag-actions button:hover { background: var(--button-secondary-background-fill-hover); }
.rag-brief { max-height: 80vh; overflow-y: auto; padding: 0.9rem 1.1rem; border-radius: 10px;
  border: 1px solid var(--border-color-primary); background: var(--block-background-fill); }
.rag-brief-head { position: sticky; top: -0.9rem; margin: -0.9rem -1.1rem 0.6rem; padding: 0.9rem 1.1rem 0.2rem;
  background: var(--block-background-fill); border-bottom: 1px solid var(--border-color-primary); }
.rag-brief h2 { margin: 0 0 0.3rem; font-size: 1.15rem; font-weight: 700; }
.rag-brief .rag-passage { background: rgba(255, 214, 51, 0.22); box-shadow: inset 3px 0 0 #f0b400; }
/* The brief reader stays in view beside long result lists (sticky needs a non-scrolling ancestor). */
.gradio-container { overflow: clip !important; }
.rag-brief-column { position: sticky; top: 0.5rem; align-self: flex-start; }
.rag-message { padding: 0.6rem 0.9rem; border-radius: 8px; border: 1px solid var(--border-color-primary);
  background: var(--background-fill-secondary); }
.rag-message.rag-warning { border-color: #e0a800; }
.rag-message.rag-error { border-color: #d9534f; }
.rag-message ul { margin: 0.3rem 0 0 1.2rem; padding: 0; }
.rag-digest { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 0.6rem 1.1rem;
  margin-bottom: 0.9rem; background: var(--block-background-fill); }
.rag-digest summary { font-weight: 700; cursor: pointer; }
.rag-digest ol { margin: 0.5rem 0 0.6rem 1.2rem; padding: 0; line-height: 1.5; }
.rag-digest-week { font-weight: 700; white-space: nowrap; }
.rag-timeline { border: 1px solid var(--border-color-primary); border-radius: 10px; padding: 0.6rem 1.1rem;
  margin-bottom: 0.9rem; background: var(--block-background-fill); }
.rag-timeline summary { cursor: pointer; }
.rag-timeline summary h3 { display: inline; margin: 0; font-size: 1rem; font-weight: 700; }
.rag-timeline-weeks { list-style: none; margin: 0.6rem 0 0.3rem 0.4rem; padding: 0 0 0 1rem;
  border-left: 2px solid var(--border-color-primary); }
.rag-timeline-week { position: relative; margin-bottom: 0.8rem; }
.rag-timeline-week::before { content: ""; position: absolute; left: -1.38rem; top: 0.35rem; width: 0.6rem; height: 0.6rem;
  border-radius: 50%; background: var(--color-accent); }
.rag-timeline-week h4 { margin: 0; font-size: 0.95rem; font-weight: 700; }
.rag-timeline-count { display: flex; align-items: center; gap: 0.5rem; margin: 0.2rem 0; font-size: 0.82rem; }
.rag-timeline-bar { display: inline-block; height: 0.55rem; border-radius: 3px; background: var(--color-accent); }
.rag-timeline-briefs { list-style: none; margin: 0.2rem 0 0; padding: 0; line-height: 1.45; font-size: 0.9rem; }
.rag-timeline-briefs p { display: block; margin: 0.25rem 0 0.4rem; }
.rag-placeholder { color: var(--body-text-color-subdued); font-style: italic; }
.rag-corpus { width: 100%; border-collapse: collapse; border: none; font-size: 0.9rem; }
.rag-corpus th, .rag-corpus td { text-align: left; padding: 0.35rem 0.6rem; border: none;
  border-bottom: 1px solid var(--border-color-primary); }
.rag-corpus td.rag-week { white-space: nowrap; }
.rag-corpus code { font-size: 0.8rem; }
.rag-corpus td.rag-number { text-align: right; }
"""


def citation(hit: Mapping[str, Any]) -> str:
    """The supporting sentence of a hit as a quote an analyst can paste, with its exact citation.

    Format: ``“QUOTE” — TITLE (week START–END), FILE, chars S–E``; the span is the quote's.
    """
    sentence = hit["sentence"]
    when = f"week {week_label(hit['week_start'], hit['week_end'])}" if hit["week_start"] else "no date"
    return f"“{sentence['text']}” — {hit['title']} ({when}), {hit['source']}, chars {sentence['start']}–{sentence['end']}"


def marked(text: str, offset: int, start: int, end: int) -> str:
    """``text`` (found at ``offset`` in its file) escaped, with ``[start, end)`` of the file in ``<mark>``."""
    left = min(max(start - offset, 0), len(text))
    right = min(max(end - offset, left), len(text))
    return f"{escape(text[:left])}<mark>{escape(text[left:right])}</mark>{escape(text[right:])}"


def message(text: str, kind: str = "info", details: Sequence[str] = ()) -> str:
    """A short escaped notice (``kind`` is info, warning or error), with optional detail lines."""
    items = "".join(f"<li>{escape(line)}</li>" for line in details)
    listing = f"<ul>{items}</ul>" if items else ""
    role = "alert" if kind == "error" else "status"
    return f'<div class="rag-message rag-{kind}" role="{role}">{escape(text)}{listing}</div>'


def placeholder(text: str) -> str:
    """Muted escaped text for an empty panel."""
    return f'<p class="rag-placeholder">{escape(text)}</p>'


def _metadata_line(items: Iterable[str | None]) -> str:
    return " · ".join(escape(item) for item in items if item)


def result_card(hit: Mapping[str, Any]) -> str:
    """One result card: rank, score, title, week, category, file and span, marked passage, actions."""
    sentence = hit["sentence"]
    meta = _metadata_line(
        (
            f"week {week_label(hit['week_start'], hit['week_end'])}",
            hit["category"],
            f"trend: {hit['trend']}" if hit["trend"] else None,
        )
    )
    rank = int(hit["rank"])
    return (
        f'<article class="rag-card" data-rank="{rank}">'
        f'<div class="rag-card-head"><span class="rag-rank">#{rank}</span>'
        f'<h3 class="rag-title">{escape(hit["title"])}</h3>'
        f'<span class="rag-score" title="relevance score">score {float(hit["score"]):.3f}</span>'
        f'<span class="rag-score" title="how likely this passage answers the question">confidence {float(hit.get("confidence", 0)):.2f}</span></div>'
        f'<p class="rag-meta">{meta}<br><code>{escape(hit["source"])}</code> · chars {hit["start"]}–{hit["end"]}</p>'
        f'<p class="rag-passage-text">{marked(hit["text"], hit["start"], sentence["start"], sentence["end"])}</p>'
        f'<p class="rag-citation">{escape(citation(hit))}</p>'
        '<div class="rag-actions">'
        '<button type="button" class="rag-copy">Copy quote with citation</button>'
        f'<button type="button" class="rag-open" data-open-rank="{rank}">Open in brief</button>'
        "</div></article>"
    )


def digest_view(question: str, entries: Sequence[Mapping[str, Any]]) -> str:
    """The evidence digest above the cards: collapsible, one cited quote per line, oldest brief first,
    with a button that copies it as Markdown (empty when there is no digest)."""
    if not entries:
        return ""
    items = "".join(
        f'<li><span class="rag-digest-week">{escape(week(entry))}</span>'
        + (f' <span class="rag-score">trend: {escape(entry["trend"])}</span>' if entry["trend"] else "")
        + f' “{escape(entry["sentence"]["text"])}” <span class="rag-meta">— {escape(entry["title"])}, '
        f'<code>{escape(entry["source"])}</code>, chars {entry["sentence"]["start"]}–{entry["sentence"]["end"]}</span></li>'
        for entry in entries
    )
    return (
        f'<details class="rag-digest" open><summary>Evidence digest: {counted(len(entries), "quote")}, oldest brief first</summary>'
        f'<ol>{items}</ol><pre class="rag-digest-markdown" hidden>{escape(digest_markdown(question, entries))}</pre>'
        '<div class="rag-actions"><button type="button" class="rag-copy">Copy digest as Markdown</button></div></details>'
    )


def _timeline_week(entry: Mapping[str, Any], busiest: int) -> str:
    """One week of the timeline: heading, a bar as long as its share of the busiest week's hits, its briefs."""
    label = week_label(entry["week_start"], entry["week_end"]) if entry["week_start"] else "undated"
    briefs = "".join(
        f'<li><p><strong>{escape(brief["title"])}</strong> · '
        + _metadata_line((f"trend: {brief['trend']}" if brief["trend"] else None, counted(brief["hits"], "passage"),
                          f"best #{int(brief['best']['rank'])}"))
        + f'</p><p class="rag-citation">{escape(citation(brief["best"]))}</p></li>'
        for brief in entry["briefs"]
    )
    return (
        f'<li class="rag-timeline-week"><h4>{escape(label)}</h4>'
        f'<p class="rag-timeline-count"><span class="rag-timeline-bar" style="width: {12 * entry["hits"] / busiest:.2f}rem" '
        f'aria-hidden="true"></span>{counted(entry["hits"], "passage")}</p>'
        f'<ul class="rag-timeline-briefs">{briefs}</ul></li>'
    )


def timeline_view(weeks: Sequence[Mapping[str, Any]]) -> str:
    """The hits by brief week (:func:`rag.digest.timeline`) as a collapsible vertical timeline,
    oldest week first: each week's passage count (a bar and in words) and each brief's best quote
    with its citation (empty when there are no hits)."""
    if not weeks:
        return ""
    busiest = max(int(entry["hits"]) for entry in weeks)
    total = sum(int(entry["hits"]) for entry in weeks)
    dated = sum(1 for entry in weeks if entry["week_start"])
    spread = counted(dated, "week") + (" and undated documents" if dated < len(weeks) else "") if dated else "undated documents"
    return (
        f'<details class="rag-timeline"><summary><h3>Timeline: {counted(total, "passage")} in {spread}, oldest first</h3>'
        f'</summary><ol class="rag-timeline-weeks">{"".join(_timeline_week(entry, busiest) for entry in weeks)}</ol></details>'
    )


def result_cards(hits: Sequence[Mapping[str, Any]]) -> str:
    """All result cards, best first."""
    return '<div class="rag-cards">' + "".join(result_card(hit) for hit in hits) + "</div>"


def brief_view(doc: Document, hit: Mapping[str, Any]) -> str:
    """The whole cleaned brief (metadata header, then the body) with the hit's passage highlighted.

    The passage is wrapped in an element with id :data:`PASSAGE_ANCHOR`; its supporting
    sentence is in ``<mark>``.
    """
    body_start, body_end = (doc.body[0][0], doc.body[-1][1]) if doc.body else (0, len(doc.text))
    start = min(max(hit["start"], body_start), body_end)
    end = min(max(hit["end"], start), body_end)
    sentence = hit["sentence"]
    passage = marked(doc.text[start:end], start, sentence["start"], sentence["end"])
    meta = _metadata_line(
        (
            f"week {week_label(doc.week_start, doc.week_end)}",
            doc.category,
            f"trend: {doc.trend}" if doc.trend else None,
            f"by {doc.author}" if doc.author else None,
        )
    )
    return (
        f'<div class="rag-brief"><div class="rag-brief-head"><h2>{escape(doc.title)}</h2>'
        f'<p class="rag-meta">{meta} · <code>{escape(doc.source)}</code> · passage #{int(hit["rank"])}, '
        f"chars {hit['start']}–{hit['end']}</p></div>"
        f'<div class="rag-brief-body">{escape(doc.text[body_start:start])}'
        f'<span id="{PASSAGE_ANCHOR}" class="rag-passage">{passage}</span>'
        f"{escape(doc.text[end:body_end])}</div></div>"
    )


def corpus_table(documents: Sequence[Mapping[str, Any]]) -> str:
    """The indexed documents as an HTML table: title, week, category, trend, passages, file."""
    total = sum(int(doc["passages"]) for doc in documents)
    rows = "".join(
        "<tr>"
        f"<td>{escape(doc['title'])}</td><td class=\"rag-week\">{escape(week_label(doc['week_start'], doc['week_end']))}</td>"
        f"<td>{escape(doc['category'] or '')}</td><td>{escape(doc['trend'] or '')}</td>"
        f'<td class="rag-number">{int(doc["passages"])}</td><td><code>{escape(doc["source"])}</code></td>'
        "</tr>"
        for doc in documents
    )
    return (
        f"<p>{len(documents)} documents, {total} passages indexed.</p>"
        '<table class="rag-corpus"><thead><tr><th>Title</th><th>Week</th><th>Category</th><th>Trend</th>'
        f"<th>Passages</th><th>File</th></tr></thead><tbody>{rows}</tbody></table>"
    )
