"""The persisted index: round trip, incremental updates, staleness, corruption, crash safety."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import rag.index
from rag.config import IndexSettings
from rag.documents import FolderCorpus
from rag.embedding import PASSAGE_BACKENDS, passage_embedder
from rag.errors import CorpusError, IndexWriteError
from rag.index import CURRENT_FILE, ENCODER_DIR, FORMAT_VERSION, MANIFEST_FILE, OpenIndex, open_index
from rag.segments import PASSAGES_FILE, VECTORS_FILE

from .conftest import HashingEmbedder


def open_seeds(corpus: Path, index_dir: Path, settings: IndexSettings = IndexSettings(), embed=passage_embedder) -> OpenIndex:
    """Open the index of a folder; ``embed=None`` asserts that nothing needs embedding."""
    return open_index(FolderCorpus(corpus), index_dir, settings, embed)


def live_generation(index_dir: Path) -> Path:
    return index_dir / (index_dir / CURRENT_FILE).read_text().strip()


def segment(generation: Path) -> Path:
    """The generation's only (or first) segment folder."""
    return sorted(generation.glob("seg-*"))[0]


def test_build_then_reopen_without_work(corpus_dir: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    built = open_seeds(corpus_dir, index_dir)
    assert built.report.action == "built" and built.report.documents == 5
    manifest = json.loads((live_generation(index_dir) / MANIFEST_FILE).read_text())
    assert manifest["model"] == "all-MiniLM-L6-v2" and manifest["dimension"] == 384
    assert manifest["settings"] == IndexSettings().to_dict()
    assert set(manifest["sources"]["source"]) == {p.name for p in corpus_dir.iterdir()}
    (name,) = manifest["segments"]  # a build writes one segment
    assert {f"{name}/vectors.faiss", f"{name}/passages.sqlite"} <= set(manifest["files"])
    again = open_seeds(corpus_dir, index_dir, embed=None)
    assert again.report.action == "opened" and again.report.passages == built.report.passages
    assert again.directory == built.directory


def test_stored_passages_keep_exact_offsets(corpus_dir: Path, seeds_index: Path) -> None:
    index = open_seeds(corpus_dir, seeds_index)
    records = index.passages.passages(list(range(1, index.report.passages + 1)))
    assert len(records) == index.report.passages
    for record in records.values():
        text = (corpus_dir / record.source).read_text(encoding="utf-8")
        assert text[record.start : record.end] == record.text
        for start, end in record.sentences:
            assert record.start <= start < end <= record.end


def test_changed_added_and_removed_files_update_only_what_changed(corpus_dir: Path, seeds_index: Path) -> None:
    index_dir = seeds_index
    first = open_seeds(corpus_dir, index_dir)
    kept = {r.chunk_id: r.id for r in first.passages.passages(list(range(1, 200))).values()
            if r.source == "000_3b696b7c0f75676d.txt"}
    changed = corpus_dir / "003_d66b08127121952b.txt"
    changed.write_text(changed.read_text(encoding="utf-8").replace("Xu Zhanbin", "Xu Zhanbin (deputy)"), encoding="utf-8")
    (corpus_dir / "004_cb06eed4b89f8d75.txt").unlink()
    (corpus_dir / "notes.md").write_text("Analyst note.\n\nBelarus bought drones from Turkey.", encoding="utf-8")
    second = open_seeds(corpus_dir, index_dir)
    report = second.report
    assert report.action == "updated"
    assert (report.added, report.changed, report.removed) == (
        ["notes.md"], ["003_d66b08127121952b.txt"], ["004_cb06eed4b89f8d75.txt"])
    records = second.passages.passages(list(range(1, 400)))
    sources = {r.source for r in records.values()}
    assert "004_cb06eed4b89f8d75.txt" not in sources and "notes.md" in sources
    assert any("(deputy)" in r.text for r in records.values())
    still = {r.chunk_id: r.id for r in records.values() if r.source == "000_3b696b7c0f75676d.txt"}
    assert still == kept  # untouched files keep their passages and ids
    assert len(second.vectors) == len(second.lexical) == second.passages.count()


def test_settings_or_model_change_rebuilds(corpus_dir: Path, seeds_index: Path) -> None:
    index_dir = seeds_index
    open_seeds(corpus_dir, index_dir)
    smaller = open_seeds(corpus_dir, index_dir, IndexSettings(chunk_tokens=64, overlap_tokens=16))
    assert smaller.report.action == "rebuilt" and "settings" in smaller.report.reason
    generation = live_generation(index_dir)
    manifest = json.loads((generation / MANIFEST_FILE).read_text())
    manifest["model"] = "some-other-model"
    (generation / MANIFEST_FILE).write_text(json.dumps(manifest))
    reopened = open_seeds(corpus_dir, index_dir, IndexSettings(chunk_tokens=64, overlap_tokens=16))
    assert reopened.report.action == "rebuilt" and "model changed" in reopened.report.reason


@pytest.mark.parametrize(
    "damage",
    [
        lambda gen: (segment(gen) / VECTORS_FILE).write_bytes((segment(gen) / VECTORS_FILE).read_bytes()[:100]),
        lambda gen: (segment(gen) / PASSAGES_FILE).write_bytes(b"garbage" * 100),
        lambda gen: (gen / MANIFEST_FILE).write_text("{not json"),
        lambda gen: (segment(gen) / VECTORS_FILE).unlink(),
        lambda gen: shutil.rmtree(segment(gen) / "lexical"),
        lambda gen: (gen.parent / CURRENT_FILE).write_text("../../etc"),
    ],
    ids=["truncated-vectors", "garbage-sqlite", "bad-manifest", "missing-vectors", "missing-lexical", "bad-current"],
)
def test_corrupted_index_is_detected_and_rebuilt(corpus_dir: Path, seeds_index: Path, damage) -> None:
    index_dir = seeds_index
    open_seeds(corpus_dir, index_dir)
    damage(live_generation(index_dir))
    recovered = open_seeds(corpus_dir, index_dir)
    assert recovered.report.action == "rebuilt" and "corrupted" in recovered.report.reason
    assert recovered.report.documents == 5
    assert open_seeds(corpus_dir, index_dir, embed=None).report.action == "opened"


def test_crash_during_update_leaves_previous_index_live(corpus_dir: Path, seeds_index: Path) -> None:
    index_dir = seeds_index
    before = open_seeds(corpus_dir, index_dir)
    (corpus_dir / "new.txt").write_text("Fresh text about Belarus.", encoding="utf-8")

    def crashing_embedder():
        raise KeyboardInterrupt("power cut")

    with pytest.raises(KeyboardInterrupt):
        open_index(FolderCorpus(corpus_dir), index_dir, IndexSettings(), crashing_embedder)
    assert live_generation(index_dir) == before.directory
    assert not list(index_dir.glob(".tmp-*"))
    (corpus_dir / "new.txt").unlink()
    assert open_seeds(corpus_dir, index_dir, embed=None).report.action == "opened"


def test_bad_files_never_abort_the_build(corpus_dir: Path, seeds_index: Path) -> None:
    (corpus_dir / "latin1.txt").write_bytes("Minsk caf\xe9 report on Belarus.".encode("latin-1"))
    (corpus_dir / "empty.md").write_text("   \n", encoding="utf-8")
    index = open_seeds(corpus_dir, seeds_index)
    assert index.report.documents == 6
    assert index.report.skipped == [("empty.md", "no text to index")]
    assert any("latin1.txt" in w and "UTF-8" in w for w in index.report.warnings)
    messages = index.report.messages()
    assert any("skipped empty.md" in m for m in messages)


def test_corpus_with_nothing_indexable_is_an_error(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "blank.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no document"):
        open_seeds(corpus, tmp_path / "index")
    assert not (tmp_path / "index" / CURRENT_FILE).exists()


# -- reliability: malformed pointers and manifests, model changes, readers and writers ----------


@pytest.mark.parametrize(
    "manifest", ["null", "[]", f'{{"format": {FORMAT_VERSION}}}', '"text"', f'{{"format": {FORMAT_VERSION}, "sources": 7}}',
                 "[" * 100_000],
    ids=["null", "list", "format-only", "string", "bad-sources", "deeply-nested"],
)
def test_malformed_manifest_is_rebuilt_not_a_crash(corpus_dir: Path, seeds_index: Path, manifest: str) -> None:
    (live_generation(seeds_index) / MANIFEST_FILE).write_text(manifest)
    recovered = open_seeds(corpus_dir, seeds_index, embed=HashingEmbedder)
    assert recovered.report.action == "rebuilt" and "corrupted" in recovered.report.reason
    assert recovered.report.documents == 5


def test_current_pointer_damage_is_rebuilt_and_leaves_nothing_behind(corpus_dir: Path, seeds_index: Path) -> None:
    (seeds_index / CURRENT_FILE).write_bytes(b"gen-\xff\xfe\n")
    assert open_seeds(corpus_dir, seeds_index, embed=HashingEmbedder).report.action == "rebuilt"
    (seeds_index / CURRENT_FILE).unlink()
    (seeds_index / CURRENT_FILE).mkdir()
    (seeds_index / f".{CURRENT_FILE}.0123.tmp").write_text("gen-000009")  # left by a crashed switch
    for _ in range(2):
        reopened = open_seeds(corpus_dir, seeds_index, embed=HashingEmbedder)
    assert reopened.report.action == "opened" and (seeds_index / CURRENT_FILE).is_file()
    reopened.close()
    assert sorted(p.name for p in seeds_index.iterdir() if p.name != ".lock") == [CURRENT_FILE, reopened.directory.name]


def test_model_files_changed_in_place_rebuild(corpus_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "weights.bin").write_bytes(b"\x01" * 64)
    settings = IndexSettings(model=str(model))
    index_dir = tmp_path / "index"
    open_seeds(corpus_dir, index_dir, settings, embed=HashingEmbedder).close()
    os.utime(model / "weights.bin", ns=(1, 1))  # touched, same bytes: nothing to do
    assert open_seeds(corpus_dir, index_dir, settings, embed=None).report.action == "opened"
    (model / "weights.bin").write_bytes(b"\x02" * 64)  # same size, new weights
    rebuilt = open_seeds(corpus_dir, index_dir, settings, embed=HashingEmbedder)
    assert rebuilt.report.action == "rebuilt" and "model's files changed (weights.bin)" in rebuilt.report.reason
    (model / "tokenizer.json").write_text("{}")
    assert "model's files changed" in open_seeds(corpus_dir, index_dir, settings, embed=HashingEmbedder).report.reason


def test_a_file_edited_during_the_build_and_reverted_is_indexed_again(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = corpus_dir / "003_d66b08127121952b.txt"
    original = path.read_text(encoding="utf-8")
    real_scan = FolderCorpus.scan

    def scan_then_edit(self):
        scan = real_scan(self)
        path.write_text(original.replace("Xu Zhanbin", "Xu Zhanbin (edited)"), encoding="utf-8")
        return scan

    monkeypatch.setattr(FolderCorpus, "scan", scan_then_edit)
    built = open_seeds(corpus_dir, tmp_path / "index", embed=HashingEmbedder)
    monkeypatch.undo()
    assert any("(edited)" in r.text for r in built.passages.passages(list(range(1, 400))).values())
    path.write_text(original, encoding="utf-8")  # reverted
    reopened = open_seeds(corpus_dir, tmp_path / "index", embed=HashingEmbedder)
    assert reopened.report.action == "updated" and reopened.report.changed == [path.name]
    for record in reopened.passages.passages(list(range(1, 400))).values():
        assert (corpus_dir / record.source).read_text(encoding="utf-8")[record.start : record.end] == record.text


def test_an_up_to_date_index_opens_without_writing(corpus_dir: Path, seeds_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p: p.stat().st_mtime_ns for p in seeds_index.rglob("*")}

    @contextlib.contextmanager
    def unwritable(index_dir, on_wait, **options):
        raise IndexWriteError(f"the index in {index_dir} must be built or updated, but the folder cannot be written")
        yield

    monkeypatch.setattr(rag.index, "_writer_lock", unwritable)
    opened = open_seeds(corpus_dir, seeds_index, embed=None)
    assert opened.report.action == "opened"
    assert {p: p.stat().st_mtime_ns for p in seeds_index.rglob("*")} == before
    (corpus_dir / "new.txt").write_text("Belarus bought radars.", encoding="utf-8")
    with pytest.raises(IndexWriteError, match="cannot be written"):
        open_seeds(corpus_dir, seeds_index, embed=HashingEmbedder)


def test_a_writer_waiting_for_the_lock_says_so(corpus_dir: Path, seeds_index: Path) -> None:
    (corpus_dir / "new.txt").write_text("Belarus bought radars.", encoding="utf-8")
    notices: list[str] = []
    with (seeds_index / ".lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another "process" is building
        worker = threading.Thread(target=lambda: open_index(
            FolderCorpus(corpus_dir), seeds_index, IndexSettings(), HashingEmbedder, on_wait=notices.append))
        worker.start()
        deadline = time.monotonic() + 30
        while not notices and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.is_alive()
        fcntl.flock(held, fcntl.LOCK_UN)
    worker.join(30)
    assert not worker.is_alive()
    assert len(notices) == 1 and "waiting for the index lock" in notices[0]


def test_a_generation_is_removed_only_when_nobody_serves_it(corpus_dir: Path, seeds_index: Path) -> None:
    served = open_seeds(corpus_dir, seeds_index, embed=None)
    old = served.directory
    served.acquire()  # a search in progress
    rebuilt = open_index(FolderCorpus(corpus_dir), seeds_index, IndexSettings(), HashingEmbedder, rebuild=True)
    assert rebuilt.directory != old and old.is_dir()  # still served here
    served.close()
    assert old.is_dir() and not served.closed  # retired, but the search still runs
    assert served.passages.count() > 0
    served.release()
    assert served.closed and not old.exists()
    rebuilt.close()
    assert rebuilt.directory.is_dir()  # the current generation stays


# -- speed: opening does not hash; the question encoder is linked, not copied -----------------


def test_opening_hashes_only_files_whose_time_moved(corpus_dir: Path, seeds_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rag.checksums

    hashed: list[str] = []
    real = rag.checksums.sha256_file
    monkeypatch.setattr(rag.checksums, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    open_seeds(corpus_dir, seeds_index, embed=None).close()
    assert hashed == []  # sizes and times match: nothing is read
    generation = live_generation(seeds_index)
    os.utime(segment(generation) / VECTORS_FILE, ns=(1, 1))
    assert open_seeds(corpus_dir, seeds_index, embed=None).report.action == "opened"
    assert hashed == [VECTORS_FILE]  # time moved, content did not: hashed, still sound
    data = bytearray((segment(generation) / PASSAGES_FILE).read_bytes())
    data[-1] ^= 0xFF  # same size, new content, new time
    (segment(generation) / PASSAGES_FILE).write_bytes(bytes(data))
    recovered = open_seeds(corpus_dir, seeds_index, embed=HashingEmbedder)
    assert recovered.report.action == "rebuilt" and "passages.sqlite" in recovered.report.reason


def test_updates_link_the_question_encoder_instead_of_exporting_it(corpus_dir: Path, seeds_index: Path) -> None:
    before = (live_generation(seeds_index) / ENCODER_DIR / "model.onnx").stat().st_ino
    (corpus_dir / "memo.md").write_text("Belarus ordered radars.", encoding="utf-8")
    class CannotExport(HashingEmbedder):
        backend = PASSAGE_BACKENDS[0]  # the backend that built the seeds index, so the update is not a rebuild

    updated = open_seeds(corpus_dir, seeds_index, embed=CannotExport)
    after = updated.directory / ENCODER_DIR / "model.onnx"
    assert updated.report.action == "updated" and updated.manifest.encoder == "onnx"
    assert after.stat().st_ino == before  # the same file on disk for both generations


def test_an_update_by_an_embedder_of_another_kind_rebuilds(corpus_dir: Path, tmp_path: Path) -> None:
    """Rows embedded by the int8 model (or a stand-in) never sit beside float32 rows in one index."""

    class Int8Stand(HashingEmbedder):
        backend = "onnx-int8"

    class RayStand(HashingEmbedder):
        backend = "ray:hashing"  # a distributed runner of the same embedder: same vectors

    index_dir = tmp_path / "index"
    open_seeds(corpus_dir, index_dir, embed=HashingEmbedder).close()
    (corpus_dir / "added.txt").write_text("Belarus and Kazakhstan held talks.\n", encoding="utf-8")
    same = open_seeds(corpus_dir, index_dir, embed=RayStand)
    assert same.report.action == "updated" and same.manifest.passage_embedder == "ray:hashing"
    same.close()
    (corpus_dir / "added.txt").write_text("Belarus and Kazakhstan held more talks.\n", encoding="utf-8")
    other = open_seeds(corpus_dir, index_dir, embed=Int8Stand)
    assert other.report.action == "rebuilt" and "passage embedder changed (ray:hashing -> onnx-int8)" in other.report.reason
    assert other.manifest.passage_embedder == "onnx-int8" and other.report.documents == 6
    assert len(list(live_generation(index_dir).glob("seg-*"))) == 1  # nothing of the old rows is linked
    other.close()


def test_optimize_merges_every_segment_and_drops_replaced_rows(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rag.index, "SMALL_SEGMENT", 0)  # small updates stay separate segments
    index_dir = tmp_path / "index"
    open_seeds(corpus_dir, index_dir, embed=HashingEmbedder).close()
    for number in range(3):
        (corpus_dir / f"memo-{number}.md").write_text(f"Belarus ordered radars, batch {number}.", encoding="utf-8")
        open_seeds(corpus_dir, index_dir, embed=HashingEmbedder).close()
    (corpus_dir / "memo-0.md").write_text("Belarus cancelled the radars.", encoding="utf-8")
    fragmented = open_seeds(corpus_dir, index_dir, embed=HashingEmbedder)
    assert len(fragmented.manifest.segments) > 1
    before = {source: fragmented.passages.document(source).text for source in fragmented.signatures}
    ids_before = fragmented.passages.count()
    fragmented.close()

    optimized = open_index(FolderCorpus(corpus_dir), index_dir, IndexSettings(), HashingEmbedder, optimize=True)
    assert optimized.report.action == "optimized"
    (name,) = optimized.manifest.segments
    assert optimized.manifest.segments[name].passages == optimized.passages.count() == ids_before  # no dead rows left
    assert {source: optimized.passages.document(source).text for source in optimized.signatures} == before
    assert set(optimized.manifest.sources.segment_names) == {name}
    optimized.close()
    again = open_index(FolderCorpus(corpus_dir), index_dir, IndexSettings(), None, optimize=True)
    assert again.report.action == "opened"  # nothing left to merge
    again.close()
    (corpus_dir / "memo-9.md").write_text("Belarus tested the radars.", encoding="utf-8")
    grown = open_index(FolderCorpus(corpus_dir), index_dir, IndexSettings(), HashingEmbedder, optimize=True)
    assert grown.report.action == "updated" and len(grown.manifest.segments) == 1  # the update's segment merged too
    grown.close()
