"""The periods a question names, and whether a brief's week falls in one of them.

A weekly brief reports its own week and, often, the one before it ("Last week, Kazakhstan hosted…"),
so a question asking what happened "in September 2017" is best answered by the brief of a week in
September 2017 or just after it, even when that brief never writes the month. Named years,
months of a year and days of a year count ("2018", "September 2017", "April 16th, 2019",
"16 April 2019"); a month or day without a year names no period (it would match every year).

>>> [(p.start.isoformat(), p.end.isoformat()) for p in question_periods("What was held in Sept. 2017 and in 2018?")]
[('2017-09-01', '2017-09-30'), ('2018-01-01', '2018-12-31')]
>>> in_periods(question_periods("in September 2017"), "2017-10-02", "2017-10-08")
True
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

#: How long after a period a brief may still report it ("last week"): a brief whose week starts
#: within this many days after a named period's end is counted as covering it.
REPORTING_LAG = dt.timedelta(days=7)

#: English month names (not ``calendar.month_name``, which follows the locale).
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_MONTH_NAMES = "|".join(f"{name}|{name[:3]}\\.?" for name in _MONTHS) + r"|sept\.?"


def _month(group: str) -> str:
    return rf"(?P<{group}>{_MONTH_NAMES})"


def _day(group: str) -> str:
    return rf"(?P<{group}>\d{{1,2}})(?:st|nd|rd|th)?"


#: "[Month [day,]] year" or "day Month year"; a year is four digits from 1900 to 2099 standing alone.
_PERIOD_RE = re.compile(
    rf"(?<!\w)(?:{_month('month')}\s+(?:{_day('day')},?\s+)?|{_day('day_first')}\s+{_month('month_after')},?\s+)?"
    r"(?P<year>(?:19|20)\d\d)(?!\w)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Period:
    """A span of days named by a question, both ends included."""

    start: dt.date
    end: dt.date


def question_periods(question: str) -> tuple[Period, ...]:
    """The years, months and days of a year that ``question`` names, in order."""
    periods = []
    for match in _PERIOD_RE.finditer(question):
        year = int(match["year"])
        month_name = match["month"] or match["month_after"]
        day = match["day"] or match["day_first"]
        if not month_name:
            periods.append(Period(dt.date(year, 1, 1), dt.date(year, 12, 31)))
            continue
        month = next(number for number, name in enumerate(_MONTHS, start=1) if name.startswith(month_name[:3].lower()))
        last = calendar.monthrange(year, month)[1]
        if day and 1 <= int(day) <= last:
            periods.append(Period(dt.date(year, month, int(day)), dt.date(year, month, int(day))))
        else:
            periods.append(Period(dt.date(year, month, 1), dt.date(year, month, last)))
    return tuple(periods)


def in_periods(periods: Sequence[Period], week_start: str | None, week_end: str | None) -> bool:
    """Whether a brief of the week ``week_start``–``week_end`` (ISO dates; a missing end is the
    start) covers one of ``periods``: its week overlaps the period or starts at most
    ``REPORTING_LAG`` after the period ends. A brief without a week covers none."""
    if not periods or not week_start:
        return False
    try:
        start = dt.date.fromisoformat(week_start)
        end = dt.date.fromisoformat(week_end) if week_end else start
    except ValueError:
        return False
    return any(period.start <= end and start <= period.end + REPORTING_LAG for period in periods)
