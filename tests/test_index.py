"""The persisted index: round trip, incremental updates, staleness, corruption, crash safety."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rag.config import IndexSettings
from rag.documents import FolderCorpus
from rag.embedding import load_embedder
from rag.errors import CorpusError
from rag.index import CURRENT_FILE, MANIFEST_FILE, PASSAGES_FILE, VECTORS_FILE, OpenIndex, open_index


def open_seeds(corpus: Path, index_dir: Path, settings: IndexSettings = IndexSettings(), embed=load_embedder) -> OpenIndex:
    """Open the index of a folder; ``embed=None`` asserts that nothing needs embedding."""
    return open_index(FolderCorpus(corpus), index_dir, settings, embed)


def live_generation(index_dir: Path) -> Path:
    return index_dir / (index_dir / CURRENT_FILE).read_text().strip()


def test_build_then_reopen_without_work(corpus_dir: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    built = open_seeds(corpus_dir, index_dir)
    assert built.report.action == "built" and built.report.documents == 5
    manifest = json.loads((live_generation(index_dir) / MANIFEST_FILE).read_text())
    assert manifest["model"] == "all-MiniLM-L6-v2" and manifest["dimension"] == 384
    assert manifest["settings"] == IndexSettings().to_dict()
    assert set(manifest["sources"]) == {p.name for p in corpus_dir.iterdir()}
    assert {"vectors.faiss", "passages.sqlite"} <= set(manifest["files"])
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
        lambda gen: (gen / VECTORS_FILE).write_bytes((gen / VECTORS_FILE).read_bytes()[:100]),
        lambda gen: (gen / PASSAGES_FILE).write_bytes(b"garbage" * 100),
        lambda gen: (gen / MANIFEST_FILE).write_text("{not json"),
        lambda gen: (gen / VECTORS_FILE).unlink(),
        lambda gen: shutil.rmtree(gen / "lexical"),
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
