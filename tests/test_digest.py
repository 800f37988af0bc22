"""The timeline: hits grouped by their brief's week, oldest first, undated last."""

from __future__ import annotations

from typing import Any

from rag.digest import digest, timeline


def hit(rank: int, source: str, week_start: str | None, week_end: str | None = None, **fields: Any) -> dict[str, Any]:
    """A hit dictionary (``Hit.to_dict()`` schema, the fields the timeline reads)."""
    return {"rank": rank, "source": source, "title": f"Title {source}", "trend": None, "week_start": week_start,
            "week_end": week_end, "confidence": 0.9, "sentence": {"text": f"Quote {rank}.", "start": 0, "end": 8},
            **fields}


def summary(weeks: list[dict[str, Any]]) -> list[tuple[str | None, int, list[tuple[str, int, int]]]]:
    """(week start, hits, [(source, hits, best rank), ...]) per week."""
    return [(entry["week_start"], entry["hits"], [(b["source"], b["hits"], b["best"]["rank"]) for b in entry["briefs"]])
            for entry in weeks]


def test_weeks_come_oldest_first_whatever_the_ranks() -> None:
    hits = [hit(1, "c.txt", "2019-04-15", "2019-04-21"), hit(2, "a.txt", "2017-12-11", "2017-12-17"),
            hit(3, "b.txt", "2018-06-04", "2018-06-10"), hit(4, "c.txt", "2019-04-15", "2019-04-21")]
    assert summary(timeline(hits)) == [
        ("2017-12-11", 1, [("a.txt", 1, 2)]),
        ("2018-06-04", 1, [("b.txt", 1, 3)]),
        ("2019-04-15", 2, [("c.txt", 2, 1)]),
    ]
    assert [(entry["week_start"], entry["week_end"]) for entry in timeline(hits)][0] == ("2017-12-11", "2017-12-17")


def test_undated_briefs_are_grouped_last() -> None:
    hits = [hit(1, "memo.md", None), hit(2, "b.txt", "2019-01-07", "2019-01-13"), hit(3, "notes.txt", ""),
            hit(4, "a.txt", "2018-01-01", "2018-01-07"), hit(5, "memo.md", None)]
    weeks = timeline(hits)
    assert summary(weeks) == [
        ("2018-01-01", 1, [("a.txt", 1, 4)]),
        ("2019-01-07", 1, [("b.txt", 1, 2)]),
        (None, 3, [("memo.md", 2, 1), ("notes.txt", 1, 3)]),
    ]
    assert (weeks[-1]["week_start"], weeks[-1]["week_end"]) == (None, None)


def test_several_briefs_of_one_week_share_it_best_brief_first() -> None:
    week = ("2019-04-15", "2019-04-21")
    hits = [hit(1, "z.txt", *week, trend="worse"), hit(2, "a.txt", *week, trend="better"),
            hit(3, "a.txt", *week), hit(4, "z.txt", *week)]
    (entry,) = timeline(hits)
    assert entry["hits"] == 4 and summary([entry])[0][2] == [("z.txt", 2, 1), ("a.txt", 2, 2)]
    assert [(b["title"], b["trend"]) for b in entry["briefs"]] == [("Title z.txt", "worse"), ("Title a.txt", "better")]
    assert entry["briefs"][1]["best"] is hits[1]  # the brief's first hit is its best, even at an equal score


def test_ties_a_week_start_orders_by_end_and_equal_scores_keep_the_ranking() -> None:
    hits = [hit(1, "long.txt", "2019-04-15", "2019-04-28", score=0.5), hit(2, "short.txt", "2019-04-15", "2019-04-21", score=0.5),
            hit(3, "short.txt", "2019-04-15", "2019-04-21", score=0.5)]
    weeks = timeline(hits)
    assert [(entry["week_end"], entry["hits"]) for entry in weeks] == [("2019-04-21", 2), ("2019-04-28", 1)]
    assert weeks[0]["briefs"][0]["best"]["rank"] == 2


def test_no_hits_no_timeline_and_the_digest_orders_by_week_start_end_then_file() -> None:
    assert timeline([]) == []
    hits = [hit(1, "m.md", None), hit(2, "a.txt", "2019-04-15", "2019-04-28"), hit(3, "b.txt", "2019-04-15", "2019-04-21"),
            hit(4, "c.txt", "2019-04-15", "2019-04-21")]
    assert [entry["source"] for entry in digest(hits, threshold=0.5)] == ["b.txt", "c.txt", "a.txt", "m.md"]
