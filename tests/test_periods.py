from __future__ import annotations

import datetime as dt

import pytest

from rag.periods import REPORTING_LAG, Period, in_periods, question_periods


def _spans(question: str) -> list[tuple[str, str]]:
    return [(period.start.isoformat(), period.end.isoformat()) for period in question_periods(question)]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What happened in 2018?", [("2018-01-01", "2018-12-31")]),
        ("Who met in September 2017?", [("2017-09-01", "2017-09-30")]),
        ("Which deals in Sept. 2017 or dec 2019?", [("2017-09-01", "2017-09-30"), ("2019-12-01", "2019-12-31")]),
        ("Who visited on April 16th, 2019?", [("2019-04-16", "2019-04-16")]),
        ("Who visited on 16 April 2019?", [("2019-04-16", "2019-04-16")]),
        ("Exports in 2018-2019?", [("2018-01-01", "2018-12-31"), ("2019-01-01", "2019-12-31")]),
        ("Plans for mid-2018?", [("2018-01-01", "2018-12-31")]),
        ("Feb 29, 2019 is no day", [("2019-02-01", "2019-02-28")]),
        ("Feb 29, 2020 is one", [("2020-02-29", "2020-02-29")]),
        ("What happened in mid-May?", []),  # no year: every May
        ("The S-300 and the MiG-29 in the 2000s", []),
        ("Version 2019b, model 12019", []),
    ],
)
def test_a_question_names_years_months_and_days(question: str, expected: list[tuple[str, str]]) -> None:
    assert _spans(question) == expected


def test_month_names_do_not_follow_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    import calendar

    monkeypatch.setattr(calendar, "month_name", ["", *("x" * 12)])
    assert _spans("In March 2019?") == [("2019-03-01", "2019-03-31")]


def test_a_brief_covers_its_week_and_the_one_before() -> None:
    september = question_periods("in September 2017")
    assert in_periods(september, "2017-09-11", "2017-09-17")
    assert in_periods(september, "2017-08-28", "2017-09-03")  # overlaps the month's first days
    last_day = dt.date(2017, 9, 30)
    assert in_periods(september, (last_day + REPORTING_LAG).isoformat(), None)  # reports "last week"
    assert not in_periods(september, (last_day + REPORTING_LAG + dt.timedelta(days=1)).isoformat(), None)
    assert not in_periods(september, "2017-08-21", "2017-08-27")
    assert not in_periods(september, None, None) and not in_periods((), "2017-09-11", "2017-09-17")
    assert not in_periods(september, "not a date", "2017-09-17")
    assert in_periods([Period(dt.date(2019, 4, 16), dt.date(2019, 4, 16))], "2019-04-15", "2019-04-21")
