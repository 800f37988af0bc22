"""The evidence digest: the answering sentences of a result list, each cited, oldest brief first.

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
- **2017-12-11–2017-12-17** (trend: worse): “Earlier.” — A, a.txt, chars 0–8
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The fields of a digest entry, taken from the hit it quotes.
DIGEST_FIELDS = ("source", "title", "week_start", "week_end", "trend", "sentence")


def digest(hits: Sequence[Mapping[str, Any]], *, threshold: float) -> list[dict[str, Any]]:
    """One entry per hit at least ``threshold`` confident, ordered by week, undated documents last."""
    confident = [hit for hit in hits if hit["confidence"] >= threshold]
    ordered = sorted(confident, key=lambda hit: (hit["week_start"] is None, hit["week_start"] or "", hit["source"]))
    return [{field: hit[field] for field in DIGEST_FIELDS} for hit in ordered]


def week(entry: Mapping[str, Any]) -> str:
    """``"2019-04-15–2019-04-21"``, or ``"no date"``."""
    if not entry["week_start"]:
        return "no date"
    return f"{entry['week_start']}–{entry['week_end']}" if entry["week_end"] else entry["week_start"]


def digest_markdown(question: str, entries: Sequence[Mapping[str, Any]]) -> str:
    """The digest as a Markdown block an analyst can paste: one cited quote per line."""
    lines = [f"**{question.strip()}** — evidence from the briefs, oldest first", ""]
    for entry in entries:
        sentence = entry["sentence"]
        trend = f" (trend: {entry['trend']})" if entry["trend"] else ""
        lines.append(f"- **{week(entry)}**{trend}: “{sentence['text']}” — {entry['title']}, {entry['source']}, "
                     f"chars {sentence['start']}–{sentence['end']}")
    return "\n".join(lines) + "\n"
