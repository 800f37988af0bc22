"""The evidence digest (the answering sentences of a result list, each cited, oldest brief first)
and the timeline (the hits grouped by their brief's week).

Built from hit dictionaries (the ``Hit.to_dict()`` schema), so the CLI, the JSON and the app
show the same digest: the supporting sentences (distinct within a result list) of the hits
whose confidence reaches the answer threshold. Without such a hit, the digest is empty.

>>> hits = [{"source": "b.txt", "title": "B", "week_start": "2019-04-15", "week_end": "2019-04-21", "trend": "better",
...          "confidence": 0.9, "sentence": {"text": "Later.", "start": 5, "end": 11}},
...         {"source": "a.txt", "title": "A", "week_start": "2017-12-11", "week_end": "2017-12-17", "trend": "worse",
...          "confidence": 0.8, "sentence": {"text": "Earlier.", "start": 0, "end": 8}}]
>>> [entry["source"] for entry in digest(hits, threshold=0.5)]
['a.txt', 'b.txt']
>>> [entry["source"] for entry in digest(hits, threshold=0.85)]
['b.txt']
>>> print(digest_markdown("Q?", digest(hits, threshold=0.5)).splitlines()[2])
- **2017-12-11–2017-12-17** (trend: worse): “Earlier.” — A, `a.txt`, chars 0–8

The timeline keeps every hit, not only the confident ones:

>>> [(entry["week_start"], entry["hits"]) for entry in timeline(hits)]
[('2017-12-11', 1), ('2019-04-15', 1)]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

#: The fields of a digest entry, taken from the hit it quotes.
DIGEST_FIELDS = ("source", "title", "week_start", "week_end", "trend", "sentence")

#: The fields of a brief in the timeline, taken from its hits.
TIMELINE_BRIEF_FIELDS = ("source", "title", "trend")


def _chronological(item: Mapping[str, Any]) -> tuple[bool, str, str]:
    """Sort key of a hit or week: by week start, then end; undated (no ``week_start``) last."""
    return not item["week_start"], item["week_start"] or "", item["week_end"] or ""


def digest(hits: Sequence[Mapping[str, Any]], *, threshold: float) -> list[dict[str, Any]]:
    """One entry per hit at least ``threshold`` confident, ordered by week, undated documents last."""
    confident = [hit for hit in hits if hit["confidence"] >= threshold]
    ordered = sorted(confident, key=lambda hit: (*_chronological(hit), hit["source"]))
    return [{field: hit[field] for field in DIGEST_FIELDS} for hit in ordered]


def timeline(hits: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The hits grouped by their brief's week, oldest week first, undated briefs together last.

    ``hits`` come best first, as a result list has them. Each week is ``{"week_start",
    "week_end", "hits", "briefs"}`` (``hits`` counts its hits; both dates are ``None`` for the
    undated group); each of its briefs is ``{"source", "title", "trend", "hits", "best"}``,
    ``best`` being the brief's first (best) hit, and the brief with the better best hit comes first.
    """
    weeks: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for hit in hits:
        when = (hit["week_start"], hit["week_end"]) if hit["week_start"] else (None, None)
        week_entry = weeks.setdefault(when, {"week_start": when[0], "week_end": when[1], "hits": 0, "briefs": {}})
        week_entry["hits"] += 1
        brief = week_entry["briefs"].setdefault(
            hit["source"], {**{field: hit[field] for field in TIMELINE_BRIEF_FIELDS}, "hits": 0, "best": hit}
        )
        brief["hits"] += 1
    ordered = sorted(weeks.values(), key=_chronological)
    return [{**week_entry, "briefs": list(week_entry["briefs"].values())} for week_entry in ordered]


def counted(number: int, noun: str) -> str:
    """``number`` and ``noun``, plural unless one: the counts the CLI and the app print.

    >>> counted(1, "passage"), counted(3, "passage"), counted(0, "week")
    ('1 passage', '3 passages', '0 weeks')
    """
    return f"{number} {noun}{'' if number == 1 else 's'}"


def week_label(week_start: str | None, week_end: str | None) -> str:
    """``"2019-04-15–2019-04-21"``, or ``"no date"`` for a document without a week.

    >>> week_label("2019-04-15", "2019-04-21"), week_label("2019-04-15", "2019-04-15"), week_label(None, None)
    ('2019-04-15–2019-04-21', '2019-04-15', 'no date')
    """
    if not week_start:
        return "no date"
    return f"{week_start}–{week_end}" if week_end and week_end != week_start else week_start


def week(entry: Mapping[str, Any]) -> str:
    """The :func:`week_label` of a digest entry or hit."""
    return week_label(entry["week_start"], entry["week_end"])


#: Characters that Markdown would read as markup inside a line.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def markdown_text(text: str) -> str:
    r"""``text`` on one line, with Markdown's markup characters backslash-escaped so that it renders as itself.

    >>> print(markdown_text("**Why** _did_ [x](y)?"))
    \*\*Why\*\* \_did\_ \[x\](y)?
    """
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def markdown_code(text: str) -> str:
    """``text`` as a Markdown code span, shown exactly as written (a file name keeps its underscores).

    >>> print(markdown_code("003_brief.txt"), markdown_code("odd`name.md"))
    `003_brief.txt` `` odd`name.md ``
    """
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def digest_markdown(question: str, entries: Sequence[Mapping[str, Any]]) -> str:
    """The digest as a Markdown block an analyst can paste: one cited quote per line (the question,
    titles and quotes escaped and file names in code spans, so that they render as written)."""
    lines = [f"**{markdown_text(question)}** — evidence from the briefs, oldest first", ""]
    for entry in entries:
        sentence = entry["sentence"]
        trend = f" (trend: {entry['trend']})" if entry["trend"] else ""
        lines.append(f"- **{week(entry)}**{trend}: “{markdown_text(sentence['text'])}” — {markdown_text(entry['title'])}, "
                     f"{markdown_code(entry['source'])}, chars {sentence['start']}–{sentence['end']}")
    return "\n".join(lines) + "\n"
