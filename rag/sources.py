"""What a generation holds of each source, kept as columns so a million passages open fast.

A manifest lists every source of the corpus: its fingerprint and signature (to see what
changed), whether it was indexed, and where its passages live (segment, first id, count).
At 260,000 sources a dict of per-source objects took 2.3 s to parse and 1.4 s to write;
columns of plain lists and numpy arrays parse in about 0.15 s, and the questions opening
and updating ask (where is this source? how many live rows has each segment? which
signatures are known?) are answered by array operations, not a loop over objects. Rows are
materialized as :class:`SourceEntry` only when one is looked up.

>>> table = SourceTable.from_entries({
...     "a.txt": SourceEntry("f1", "s1", "indexed", 3, "brief", segment="seg-00000001", first_id=1),
...     "b.txt": SourceEntry("", "s2", "skipped", note="not UTF-8"),
... })
>>> table["a.txt"].first_id, table["b.txt"].note, len(table)
(1, 'not UTF-8', 2)
>>> SourceTable.from_dict(table.to_dict()) == table
True
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

STATUSES = ("indexed", "skipped")


@dataclass(frozen=True)
class SourceEntry:
    """What the index holds of one source."""

    fingerprint: str  # SHA-256 of exactly the bytes that were indexed ("" when unreadable)
    signature: str  # the corpus's cheap signature, taken before those bytes were read
    status: str  # "indexed" or "skipped"
    passages: int = 0
    kind: str | None = None
    note: str | None = None
    warnings: tuple[str, ...] = ()
    segment: str | None = None  # the segment holding its passages, ids first_id .. first_id + passages - 1
    first_id: int | None = None


class SourceTable(Mapping[str, SourceEntry]):
    """Every source of a generation (read-only), one column per :class:`SourceEntry` field.

    The serialized form (:meth:`to_dict`) is one JSON object of equally long lists, with the
    segment names listed once and referenced by position, and notes and warnings kept only
    for the rows that have them.
    """

    def __init__(
        self,
        names: list[str],
        fingerprints: list[str],
        signatures: list[str],
        indexed: np.ndarray,
        passages: np.ndarray,
        kinds: list[str | None],
        segment_names: list[str],
        segments: np.ndarray,
        first_ids: np.ndarray,
        notes: dict[int, str],
        warnings: dict[int, tuple[str, ...]],
    ) -> None:
        self.names = names
        self.fingerprints = fingerprints
        self.signatures = signatures
        self.indexed = np.asarray(indexed, dtype=bool)
        self.passages = np.asarray(passages, dtype=np.int64)
        self.kinds = kinds
        self.segment_names = segment_names
        self.segments = np.asarray(segments, dtype=np.int64)  # position in segment_names, -1 for none
        self.first_ids = np.asarray(first_ids, dtype=np.int64)  # -1 for none
        self.notes = notes
        self.warnings = warnings
        self._rows: dict[str, int] | None = None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_entries(cls, entries: Mapping[str, SourceEntry]) -> SourceTable:
        """A table of the given entries, in their order."""
        values = list(entries.values())
        segment_names = sorted({entry.segment for entry in values if entry.segment is not None})
        place = {name: position for position, name in enumerate(segment_names)}
        return cls(
            names=list(entries),
            fingerprints=[entry.fingerprint for entry in values],
            signatures=[entry.signature for entry in values],
            indexed=np.asarray([entry.status == "indexed" for entry in values], dtype=bool),
            passages=np.asarray([entry.passages for entry in values], dtype=np.int64),
            kinds=[entry.kind for entry in values],
            segment_names=segment_names,
            segments=np.asarray([place.get(entry.segment, -1) for entry in values], dtype=np.int64),  # type: ignore[arg-type]
            first_ids=np.asarray([-1 if entry.first_id is None else entry.first_id for entry in values], dtype=np.int64),
            notes={row: entry.note for row, entry in enumerate(values) if entry.note is not None},
            warnings={row: entry.warnings for row, entry in enumerate(values) if entry.warnings},
        )

    @classmethod
    def empty(cls) -> SourceTable:
        """A table without sources."""
        return cls.from_entries({})

    def updated(
        self,
        removed: Collection[str] = (),
        added: Mapping[str, SourceEntry] | None = None,
        signatures: Mapping[str, str] | None = None,
        merged: tuple[Collection[str], str] | None = None,
    ) -> SourceTable:
        """A new table: ``removed`` sources left out, ``signatures`` replaced, ``added`` appended,
        and the rows of the segments ``merged[0]`` moved to segment ``merged[1]``.

        The cost is the columns' length in array operations plus the changed rows in Python.
        """
        keep = np.ones(len(self), dtype=bool)
        new_signatures = self.signatures
        if removed or signatures:
            rows = self._index()
            for source in removed:
                keep[rows[source]] = False
            new_signatures = list(self.signatures)
            for source, signature in (signatures or {}).items():
                new_signatures[rows[source]] = signature
        whole = bool(keep.all())
        kept = np.flatnonzero(keep)

        def column(values: list[Any]) -> list[Any]:
            return values if whole else _take(values, kept)  # the table is read-only: lists may be shared

        old_names = self.segment_names
        segments = self.segments
        if merged is not None:
            merging = {old_names.index(name) for name in merged[0] if name in old_names}
            old_names = [*old_names, merged[1]]
            segments = np.where(np.isin(segments, list(merging)), len(old_names) - 1, segments)
        base = SourceTable(
            names=column(self.names),
            fingerprints=column(self.fingerprints),
            signatures=column(new_signatures),
            indexed=self.indexed[kept],
            passages=self.passages[kept],
            kinds=column(self.kinds),
            segment_names=old_names,
            segments=segments[kept],
            first_ids=self.first_ids[kept],
            notes=_renumbered(self.notes, keep),
            warnings=_renumbered(self.warnings, keep),
        )
        if whole:
            base._rows = self._rows  # the same sources in the same places
        if added:
            base = base._appended(SourceTable.from_entries(added))
        return base._compacted()

    def _appended(self, other: SourceTable) -> SourceTable:
        names = sorted(set(self.segment_names) | set(other.segment_names))
        place = {name: position for position, name in enumerate(names)}
        offset = len(self)
        return SourceTable(
            names=self.names + other.names,
            fingerprints=self.fingerprints + other.fingerprints,
            signatures=self.signatures + other.signatures,
            indexed=np.concatenate([self.indexed, other.indexed]),
            passages=np.concatenate([self.passages, other.passages]),
            kinds=self.kinds + other.kinds,
            segment_names=names,
            segments=np.concatenate([_remapped(self, place), _remapped(other, place)]),
            first_ids=np.concatenate([self.first_ids, other.first_ids]),
            notes={**self.notes, **{row + offset: note for row, note in other.notes.items()}},
            warnings={**self.warnings, **{row + offset: w for row, w in other.warnings.items()}},
        )

    def _compacted(self) -> SourceTable:
        """The same rows with only the segment names some row uses, sorted."""
        used = sorted({self.segment_names[i] for i in np.unique(self.segments[self.segments >= 0]).tolist()})
        if used == self.segment_names:
            return self
        return replace_segments(self, used)

    # -- the Mapping interface ----------------------------------------------------------------

    def _index(self) -> dict[str, int]:
        if self._rows is None:
            self._rows = {name: row for row, name in enumerate(self.names)}
        return self._rows

    def row(self, source: str) -> int | None:
        """The position of ``source`` (``None`` when the table does not hold it)."""
        return self._index().get(source)

    def __getitem__(self, source: str) -> SourceEntry:
        return self.entry(self._index()[source])

    def __contains__(self, source: object) -> bool:
        return source in self._index()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SourceTable):
            return NotImplemented
        return self.names == other.names and all(self.entry(row) == other.entry(row) for row in range(len(self)))

    __hash__ = None  # type: ignore[assignment]

    def entry(self, row: int) -> SourceEntry:
        """The source in position ``row`` as an entry."""
        segment = int(self.segments[row])
        first = int(self.first_ids[row])
        return SourceEntry(
            fingerprint=self.fingerprints[row],
            signature=self.signatures[row],
            status="indexed" if self.indexed[row] else "skipped",
            passages=int(self.passages[row]),
            kind=self.kinds[row],
            note=self.notes.get(row),
            warnings=self.warnings.get(row, ()),
            segment=self.segment_names[segment] if segment >= 0 else None,
            first_id=first if first >= 0 else None,
        )

    # -- questions asked by opening and updating -----------------------------------------------

    def signature_map(self) -> dict[str, str]:
        """Each source's signature."""
        return dict(zip(self.names, self.signatures))

    def counts(self) -> tuple[int, int]:
        """(indexed documents, their passages)."""
        return int(self.indexed.sum()), int(self.passages[self.indexed].sum())

    def live_rows(self) -> dict[str, int]:
        """Passages per segment held by the sources (the segment's live rows)."""
        placed = self.segments >= 0
        totals = np.bincount(self.segments[placed], weights=self.passages[placed], minlength=len(self.segment_names))
        return {name: int(total) for name, total in zip(self.segment_names, totals.tolist())}

    def placed(self) -> np.ndarray:
        """Rows of the sources with passages in a segment."""
        return np.flatnonzero((self.passages > 0) & (self.segments >= 0) & (self.first_ids >= 0))

    def in_segment(self, segment: str) -> dict[str, tuple[int, int]]:
        """Each source with passages in ``segment``: (first id, count)."""
        if segment not in self.segment_names:
            return {}
        rows = np.flatnonzero((self.segments == self.segment_names.index(segment)) & (self.passages > 0))
        return {self.names[row]: (int(self.first_ids[row]), int(self.passages[row])) for row in rows.tolist()}

    # -- serialization --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready columns (see the class docstring)."""
        return {
            "source": self.names,
            "fingerprint": self.fingerprints,
            "signature": self.signatures,
            "status": np.where(self.indexed, 0, 1).tolist(),
            "passages": self.passages.tolist(),
            "kind": self.kinds,
            "segments": self.segment_names,
            "segment": self.segments.tolist(),
            "first_id": self.first_ids.tolist(),
            "note": {str(row): note for row, note in self.notes.items()},
            "warnings": {str(row): list(w) for row, w in self.warnings.items()},
        }

    @classmethod
    def from_dict(cls, values: Any) -> SourceTable:
        """Parse :meth:`to_dict`'s form; raises ``TypeError``/``ValueError``/``KeyError`` when malformed."""
        if not isinstance(values, dict) or set(values) != set(_FIELDS):
            raise ValueError("the source table has unexpected or missing columns")
        rows = len(_strings(values["source"]))
        columns = {name: values[name] for name in _FIELDS}
        if any(len(columns[name]) != rows for name in _ROW_COLUMNS):
            raise ValueError("the source table's columns differ in length")
        if len(set(columns["source"])) != rows:
            raise ValueError("the source table names a source twice")
        segment_names = _strings(columns["segments"])
        status = _integers(columns["status"])
        segments = _integers(columns["segment"])
        passages = _integers(columns["passages"])
        first_ids = _integers(columns["first_id"])
        if ((status < 0) | (status >= len(STATUSES))).any() or (passages < 0).any():
            raise ValueError("the source table has a bad status or passage count")
        if ((segments < -1) | (segments >= len(segment_names))).any():
            raise ValueError("the source table places a source in an unlisted segment")
        if ((passages > 0) & ((segments < 0) | (first_ids < 0))).any():
            raise ValueError("the source table has passages without a place")
        return cls(
            names=columns["source"],
            fingerprints=_strings(columns["fingerprint"]),
            signatures=_strings(columns["signature"]),
            indexed=status == 0,
            passages=passages,
            kinds=_strings(columns["kind"], optional=True),
            segment_names=segment_names,
            segments=segments,
            first_ids=first_ids,
            notes={_row(row, rows): _str(note) for row, note in _typed(columns["note"], dict).items()},
            warnings={
                _row(row, rows): tuple(_str(w) for w in _typed(items, list))
                for row, items in _typed(columns["warnings"], dict).items()
            },
        )


_FIELDS = ("source", "fingerprint", "signature", "status", "passages", "kind", "segments", "segment", "first_id", "note", "warnings")
_ROW_COLUMNS = ("fingerprint", "signature", "status", "passages", "kind", "segment", "first_id")


def replace_segments(table: SourceTable, names: list[str]) -> SourceTable:
    """``table`` with its segment names replaced by ``names`` (which hold every name a row uses)."""
    place = {name: position for position, name in enumerate(names)}
    copy = SourceTable(
        table.names, table.fingerprints, table.signatures, table.indexed, table.passages, table.kinds,
        names, _remapped(table, place), table.first_ids, table.notes, table.warnings,
    )
    copy._rows = table._rows
    return copy


def _remapped(table: SourceTable, place: dict[str, int]) -> np.ndarray:
    lookup = np.asarray([place.get(name, -1) for name in table.segment_names] + [-1], dtype=np.int64)
    return lookup[table.segments]  # -1 indexes the trailing -1


def _take(values: list[Any], rows: np.ndarray) -> list[Any]:
    """``values`` (strings or ``None``) at ``rows``, by numpy's indexing rather than a Python loop."""
    return np.asarray(values, dtype=object)[rows].tolist() if len(values) else []


def _renumbered(values: dict[int, Any], keep: np.ndarray) -> dict[int, Any]:
    new = np.cumsum(keep) - 1
    return {int(new[row]): value for row, value in values.items() if keep[row]}


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _str(value: Any) -> str:
    return _typed(value, str)


def _strings(values: Any, optional: bool = False) -> list[Any]:
    values = _typed(values, list)
    try:  # str.join refuses anything but strings, in C: 20x faster than an isinstance loop at 250k rows
        "".join([v for v in values if v is not None] if optional else values)
    except TypeError:
        raise TypeError("expected a list of strings") from None
    return values


def _integers(values: Any) -> np.ndarray:
    array = np.asarray(_typed(values, list))
    if len(array) and array.dtype.kind != "i":
        raise TypeError("expected a list of integers")
    return array.astype(np.int64)


def _row(key: Any, rows: int) -> int:
    row = int(_str(key))
    if not 0 <= row < rows:
        raise ValueError("a note or warning names no row")
    return row
