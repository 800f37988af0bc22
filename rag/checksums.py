"""File records (size, modification time, SHA-256) and the checks that compare files with them.

Used for the files of an index generation and for the files of the embedding model.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "a.bin").write_bytes(b"abc")
>>> recorded = records(folder, ["a.bin"], with_mtime=True)
>>> recorded["a.bin"].size, changed_files(folder, recorded)
(3, [])
>>> _ = (folder / "a.bin").write_bytes(b"abd")
>>> changed_files(folder, recorded)
['a.bin']
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class FileRecord:
    """What a file was when it was recorded."""

    size: int
    sha256: str
    mtime_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (``mtime_ns`` only when recorded)."""
        values: dict[str, Any] = {"size": self.size, "sha256": self.sha256}
        if self.mtime_ns is not None:
            values["mtime_ns"] = self.mtime_ns
        return values

    @classmethod
    def from_dict(cls, values: Any) -> FileRecord:
        """Parse :meth:`to_dict` output; raises ``ValueError`` for anything else."""
        if not isinstance(values, dict) or set(values) - {"size", "sha256", "mtime_ns"}:
            raise ValueError("a file record must be an object with size, sha256 and optionally mtime_ns")
        size, digest, mtime = values.get("size"), values.get("sha256"), values.get("mtime_ns")
        if not _whole(size) or not isinstance(digest, str) or not (mtime is None or _whole(mtime)):
            raise ValueError("a file record has a malformed size, sha256 or mtime_ns")
        return cls(size, digest, mtime)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def records(root: Path, names: Iterable[str], *, with_mtime: bool = False) -> dict[str, FileRecord]:
    """A record of each named file under ``root`` (its status taken before it is hashed)."""
    result = {}
    for name in names:
        status = os.stat(root / name)
        result[name] = FileRecord(status.st_size, sha256_file(root / name), status.st_mtime_ns if with_mtime else None)
    return result


def changed_files(root: Path, recorded: Mapping[str, FileRecord], *, deep: bool = False) -> list[str]:
    """Names of recorded files under ``root`` that are missing or differ from their record.

    Size (and modification time, where recorded) are compared first; a file is hashed only
    when ``deep`` is set or when its time moved while its size did not.
    """
    changed = []
    for name, record in recorded.items():
        try:
            status = os.stat(root / name)
        except OSError:
            changed.append(name)
            continue
        if status.st_size != record.size:
            changed.append(name)
        elif (deep or (record.mtime_ns is not None and status.st_mtime_ns != record.mtime_ns)) and (
            sha256_file(root / name) != record.sha256
        ):
            changed.append(name)
    return changed
