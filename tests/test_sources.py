"""The columnar source table behaves as the dict of entries it replaces."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.sources import SourceEntry, SourceTable

SEGMENTS = ["seg-00000001", "seg-00000002", "seg-00000003"]


@st.composite
def entries(draw: st.DrawFn) -> dict[str, SourceEntry]:
    names = draw(st.lists(st.text("abcé/ .\n", min_size=1, max_size=6), unique=True, max_size=12))
    found: dict[str, SourceEntry] = {}
    first = 1
    for name in names:
        if draw(st.booleans()):
            count = draw(st.integers(0, 4))
            found[name] = SourceEntry(
                draw(st.sampled_from(["", "f1", "f2"])), draw(st.text("0123:", max_size=5)), "indexed", count,
                draw(st.sampled_from(["brief", "text"])), warnings=tuple(draw(st.lists(st.text(max_size=3), max_size=2))),
                segment=draw(st.sampled_from(SEGMENTS)) if count else None, first_id=first if count else None,
            )
            first += count
        else:
            found[name] = SourceEntry("", "sig", "skipped", note=draw(st.text(max_size=5)))
    return found


@settings(max_examples=150, deadline=None)
@given(entries(), entries(), st.data())
def test_updates_match_the_same_changes_made_to_a_dict(base: dict, new: dict, data: st.DataObject) -> None:
    table = SourceTable.from_entries(base)
    assert dict(table.items()) == base and list(table) == list(base)
    removed = data.draw(st.lists(st.sampled_from(list(base)), unique=True) if base else st.just([]))
    kept = [s for s in base if s not in removed]
    signatures = {s: "moved" for s in data.draw(st.lists(st.sampled_from(kept), unique=True) if kept else st.just([]))}
    added = {s: e for s, e in new.items() if s not in base or s in removed}
    merging = data.draw(st.lists(st.sampled_from(SEGMENTS), unique=True, max_size=2))

    got = table.updated(removed=removed, signatures=signatures).updated(added=added).updated(merged=(merging, "seg-0000000a"))

    expected = {s: e for s, e in base.items() if s not in removed}
    expected.update({s: SourceEntry(**{**e.__dict__, "signature": signatures[s]}) for s, e in expected.items() if s in signatures})
    expected.update(added)
    expected = {
        s: SourceEntry(**{**e.__dict__, "segment": "seg-0000000a"}) if e.segment in merging else e for s, e in expected.items()
    }
    assert dict(got.items()) == expected
    again = SourceTable.from_dict(json.loads(json.dumps(got.to_dict())))
    assert again == got
    assert set(again.segment_names) == {e.segment for e in expected.values() if e.segment}
    live = again.live_rows()
    for segment in again.segment_names:
        assert live[segment] == sum(e.passages for e in expected.values() if e.segment == segment)
        assert again.in_segment(segment) == {s: (e.first_id, e.passages) for s, e in expected.items() if e.segment == segment and e.passages}
    indexed = [e for e in expected.values() if e.status == "indexed"]
    assert again.counts() == (len(indexed), sum(e.passages for e in indexed))
    assert again.signature_map() == {s: e.signature for s, e in expected.items()}


def test_rows_and_placed_rows() -> None:
    table = SourceTable.from_entries({
        "a": SourceEntry("f", "s", "indexed", 2, "brief", segment=SEGMENTS[0], first_id=1),
        "b": SourceEntry("f", "s", "indexed", 0, "brief"),
        "c": SourceEntry("", "s", "skipped", note="empty"),
    })
    assert table.row("a") == 0 and table.row("zzz") is None and "zzz" not in table
    assert table.placed().tolist() == [0]


def valid() -> dict:
    return SourceTable.from_entries({"a": SourceEntry("f", "s", "indexed", 2, "brief", segment=SEGMENTS[0], first_id=1)}).to_dict()


@pytest.mark.parametrize(
    "change",
    [
        lambda v: v.pop("note"),
        lambda v: v.update(extra=[]),
        lambda v: v.update(passages=[1, 2]),
        lambda v: v.update(passages=[-1]),
        lambda v: v.update(passages=[True]),
        lambda v: v.update(passages=[1.5]),
        lambda v: v.update(status=[2]),
        lambda v: v.update(segment=[1]),
        lambda v: v.update(first_id=[-1]),
        lambda v: v.update(source=["a", "a"], fingerprint=["f"] * 2, signature=["s"] * 2, status=[0, 0],
                           passages=[0, 0], kind=[None] * 2, segment=[-1, -1], first_id=[-1, -1]),
        lambda v: v.update(fingerprint=[7]),
        lambda v: v.update(note={"5": "x"}),
        lambda v: v.update(warnings={"0": "not a list"}),
        lambda v: v.update(segments="seg"),
    ],
)
def test_malformed_tables_are_refused(change) -> None:  # type: ignore[no-untyped-def]
    values = valid()
    change(values)
    with pytest.raises((TypeError, ValueError, KeyError)):
        SourceTable.from_dict(values)


def test_an_update_of_a_large_table_costs_array_operations() -> None:
    """At 100,000 sources one removal and one addition must not materialize an entry per source."""
    rows = 100_000
    table = SourceTable(
        [f"s{i}" for i in range(rows)], ["f"] * rows, ["sig"] * rows, np.ones(rows, bool), np.full(rows, 4),
        ["brief"] * rows, SEGMENTS[:1], np.zeros(rows, np.int64), np.arange(rows) * 4 + 1, {}, {},
    )
    calls = 0
    original = SourceTable.entry

    def counting(self: SourceTable, row: int) -> SourceEntry:
        nonlocal calls
        calls += 1
        return original(self, row)

    SourceTable.entry = counting  # type: ignore[method-assign]
    try:
        got = table.updated(removed=["s5"], added={"new": SourceEntry("f", "s", "indexed", 1, "brief", segment=SEGMENTS[1], first_id=rows * 4 + 1)})
        got.live_rows(), got.counts(), got.signature_map(), got.to_dict()
    finally:
        SourceTable.entry = original  # type: ignore[method-assign]
    assert calls == 0 and len(got) == rows and got["new"].segment == SEGMENTS[1]
