"""Segments: updates embed only what changed, replaced text is never served, merges keep segments few."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import rag.index
from rag.config import IndexSettings, StoreSettings
from rag.documents import FolderCorpus
from rag.index import MAX_MERGE_ROWS, OpenIndex, SegmentEntry, _merge_plan, open_index
from rag.segments import PASSAGES_FILE
from rag.stores.passages import Filters, PassageStore
from rag.stores.qdrant_store import QdrantStore

from .conftest import HashingEmbedder
from .stores.test_vector_contract import needs_qdrant

CHANGED = "003_d66b08127121952b.txt"
OLD_SENTENCE = "The delegation included directors of leading Chinese military and aerospace corporations"
NEW_SENTENCE = "The delegation brought engineers from shipyards in Dalian and Qingdao"


class RecordingEmbedder(HashingEmbedder):
    """The hashing stand-in, remembering every text it embedded."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str], *, progress: bool = False):
        self.seen.extend(texts)
        return super().encode(texts, progress=progress)


def build(corpus: Path, index_dir: Path, embedder: HashingEmbedder | None = None) -> OpenIndex:
    chosen = embedder or HashingEmbedder()
    return open_index(FolderCorpus(corpus), index_dir, IndexSettings(), lambda: chosen)


@pytest.fixture
def no_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every update leaves its own segment (nothing is small enough to merge)."""
    monkeypatch.setattr(rag.index, "SMALL_SEGMENT", 0)
    monkeypatch.setattr(rag.index, "MERGE_FACTOR", 0)


def served_texts(index: OpenIndex) -> list[str]:
    return [record.text for record in index.passages.passages(index.passages.ids()).values()]


def test_an_edited_sentence_is_never_served_again_and_only_its_brief_is_embedded(
    corpus_dir: Path, tmp_path: Path, no_merges: None
) -> None:
    build(corpus_dir, tmp_path / "index").close()
    path = corpus_dir / CHANGED
    assert OLD_SENTENCE in path.read_text(encoding="utf-8")
    path.write_text(path.read_text(encoding="utf-8").replace(OLD_SENTENCE, NEW_SENTENCE), encoding="utf-8")
    recorder = RecordingEmbedder()
    index = build(corpus_dir, tmp_path / "index", recorder)
    try:
        assert index.report.changed == [CHANGED] and len(index.manifest.segments) == 2
        new_text = path.read_text(encoding="utf-8")
        assert recorder.seen and all(text.split("\n", 1)[-1] in new_text for text in recorder.seen)  # nothing else
        # The old rows are still in the old segment's file (tombstoned), but nothing serves them.
        old_segment = next(iter(index.manifest.segments))
        store = PassageStore(index.directory / old_segment / PASSAGES_FILE, read_only=True)
        try:
            assert any(OLD_SENTENCE in record.text for record in store.passages(store.ids()).values())
        finally:
            store.close()
        assert not any(OLD_SENTENCE in text for text in served_texts(index))
        assert any(NEW_SENTENCE in text for text in served_texts(index))
        _, lexical = index.lexical.search(OLD_SENTENCE, 50)
        _, dense = index.vectors.search(HashingEmbedder().encode([OLD_SENTENCE]), 50)
        returned = [*lexical.tolist(), *[i for i in dense[0].tolist() if i >= 0]]
        assert set(returned) <= set(index.passages.ids())  # no dead row comes out of a search
        found = index.passages.passages(returned)
        assert found and not any(OLD_SENTENCE in record.text for record in found.values())
        for record in found.values():
            assert (corpus_dir / record.source).read_text(encoding="utf-8")[record.start : record.end] == record.text
    finally:
        index.close()


def test_removing_a_brief_embeds_nothing_and_drops_it_everywhere(corpus_dir: Path, tmp_path: Path, no_merges: None) -> None:
    build(corpus_dir, tmp_path / "index").close()
    (corpus_dir / CHANGED).unlink()
    recorder = RecordingEmbedder()
    index = build(corpus_dir, tmp_path / "index", recorder)
    try:
        assert index.report.removed == [CHANGED] and recorder.seen == []
        assert CHANGED not in {row["source"] for row in index.passages.documents()}
        assert index.document_lexical.search("Xu Zhanbin", 10)[1].size == 0
        assert index.lexical.search("Xu Zhanbin", 10)[1].size == 0
        assert len(index.vectors) == len(index.lexical) == index.passages.count() == index.report.passages
    finally:
        index.close()


def test_briefs_added_one_at_a_time_keep_few_segments(corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rag.index, "SMALL_SEGMENT", 4)  # the seeds' passages would all count as small
    build(corpus_dir, tmp_path / "index").close()
    counts = []
    for n in range(24):
        (corpus_dir / f"note-{n:02d}.txt").write_text(
            f"Note {n}. Belarus discussed item{n} with partner{n}. A second sentence about item{n}.", encoding="utf-8"
        )
        index = build(corpus_dir, tmp_path / "index")
        try:
            counts.append(len(index.manifest.segments))
            assert index.lexical.search(f"item{n}", 3)[1].size == 1
            assert len(index.vectors) == index.passages.count() == index.report.passages
        finally:
            index.close()
    assert max(counts) <= 2 * math.log2(25) + 2 and counts[-1] < 12


def entries(*rows: int) -> dict[str, SegmentEntry]:
    return {f"seg-{n:08x}": SegmentEntry(passages=count, documents=1, vectors={}) for n, count in enumerate(rows)}


def test_merge_plan_absorbs_older_segments_while_they_are_not_much_larger() -> None:
    segments = entries(5000, 3000, 400, 20)
    live = {name: entry.passages for name, entry in segments.items()}
    from collections import Counter

    plan = _merge_plan(segments, Counter(live), "seg-00000003")
    assert plan == ["seg-00000002", "seg-00000003"]  # 400 is small; 3000 > 4 x 420 and not small
    assert _merge_plan(segments, Counter(live), None) == []  # nothing new, nothing dead


def test_merge_plan_compacts_mostly_dead_segments_but_never_rewrites_too_much() -> None:
    from collections import Counter

    segments = entries(MAX_MERGE_ROWS * 3, 3000, 2000)
    live = Counter({"seg-00000000": MAX_MERGE_ROWS + 1, "seg-00000001": 1000, "seg-00000002": 2000})
    assert _merge_plan(segments, live, None) == ["seg-00000001"]  # the big one is mostly dead but too big
    assert _merge_plan(entries(10), Counter({"seg-00000000": 10}), "seg-00000000") == []


def test_live_mask_and_sources_of_follow_the_manifest_ranges(corpus_dir: Path, tmp_path: Path) -> None:
    index = build(corpus_dir, tmp_path / "index")
    try:
        ids = index.passages.ids()
        sources = index.live.sources_of([*ids, max(ids) + 1, -5])
        assert sources[-2:] == [None, None]
        records = index.passages.passages(ids)
        assert sources[:-2] == [records[i].source for i in ids]
        assert np.array_equal(np.sort(index.vectors.search(np.eye(1, 384, dtype=np.float32), len(ids))[1][0]), ids)
    finally:
        index.close()


@needs_qdrant
def test_a_store_change_rebuilds_and_later_updates_and_merges_keep_qdrant_and_its_payloads(
    corpus_dir: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    build(corpus_dir, index_dir).close()
    index = open_index(FolderCorpus(corpus_dir), index_dir, IndexSettings(), HashingEmbedder, store=StoreSettings("qdrant"))
    assert (index.report.action, index.report.reason) == ("rebuilt", "the vector store changed (faiss -> qdrant (local))")
    index.close()
    path = corpus_dir / CHANGED
    path.write_text(path.read_text(encoding="utf-8").replace(OLD_SENTENCE, NEW_SENTENCE), encoding="utf-8")
    index = build(corpus_dir, index_dir)  # no store asked for: the index keeps its own
    assert index.report.action == "updated" and len(index.manifest.segments) == 1  # the new rows merged with the old
    assert {type(segment.vectors) for segment in index.live.segments.values()} == {QdrantStore}
    query = HashingEmbedder().encode(["Belarus military industry exports"])
    for document in index.live.passages.documents():
        filters = Filters(sources=(document["source"],), trends=(document["trend"],), date_to=document["week_start"])
        _, ids = index.live.vectors.search(query, 50, filters=filters)  # the payloads alone select
        assert sorted(i for i in ids[0].tolist() if i != -1) == sorted(index.live.passages.filtered_ids(filters))
    index.close()
