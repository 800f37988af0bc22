"""The Retriever: answers, exact citations, filters, de-duplication, the seeds question set."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.config import MAX_K, SEARCH_MODES, FusionSettings
from rag.errors import IndexWriteError, QueryError
from rag.evaluate import evaluate_qa, read_qa
from rag.ranking import overlap_fraction
from rag.retrieval import Hit, Retriever, results_payload
from rag.stores.passages import Filters

from .conftest import DATA, HashingEmbedder

CHINA = "003_d66b08127121952b.txt"
HIT_KEYS = {"rank", "score", "source", "title", "week_start", "week_end", "category", "trend", "start", "end", "text", "sentence",
            "confidence"}


def load_questions(name: str = "seeds_qa.jsonl") -> list[dict[str, str]]:
    lines = (DATA / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def assert_cited_exactly(hits: list[Hit], corpus: Path) -> None:
    for hit in hits:
        text = (corpus / hit.source).read_text(encoding="utf-8")
        assert text[hit.start : hit.end] == hit.text
        assert text[hit.sentence.start : hit.sentence.end] == hit.sentence.text
        assert hit.start <= hit.sentence.start < hit.sentence.end <= hit.end


def test_china_question_returns_china_brief_with_answering_sentence(seeds_retriever: Retriever, seeds_copy: Path) -> None:
    hits = seeds_retriever.search("What did Belarus seek from China?", k=5)
    assert hits[0].source == CHINA
    assert hits[0].title == "Sino-Belarusian military-industrial cooperation is likely to widen"
    assert "Chin" in hits[0].sentence.text
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert_cited_exactly(hits, seeds_copy)


@pytest.mark.parametrize("mode", SEARCH_MODES)
def test_every_mode_cites_exactly_and_never_repeats_a_span(seeds_retriever: Retriever, seeds_copy: Path, mode: str) -> None:
    for question in ("Roketsan missiles", "Which country bought the Polonaise?", "military exports to double"):
        hits = seeds_retriever.search(question, k=8, mode=mode)
        assert hits and len(hits) <= 8
        assert_cited_exactly(hits, seeds_copy)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        for i, a in enumerate(hits):
            for b in hits[i + 1 :]:
                assert a.source != b.source or overlap_fraction((a.start, a.end), (b.start, b.end)) <= 0.5


def test_hit_json_schema(seeds_retriever: Retriever) -> None:
    record = seeds_retriever.search("Polonaise Azerbaijan", k=1)[0].to_dict()
    assert set(record) == HIT_KEYS
    assert set(record["sentence"]) == {"text", "start", "end"}
    assert json.loads(json.dumps(record)) == record


def test_filters_apply_inside_the_index(seeds_retriever: Retriever) -> None:
    only_2017 = seeds_retriever.search("cooperation", k=10, filters=Filters(date_from="2017-01-01", date_to="2017-12-31"))
    assert only_2017 and {h.week_start[:4] for h in only_2017} == {"2017"}  # type: ignore[index]
    worse = seeds_retriever.search("cooperation", k=3, filters=Filters(trends=("worse",)))
    assert worse == []
    uncategorized = seeds_retriever.search("cooperation", k=3, filters=Filters(categories=("Security issues",)))
    assert all(h.category == "Security issues" for h in uncategorized)
    one = seeds_retriever.search("China", k=4, filters=Filters(sources=("000_3b696b7c0f75676d.txt",)))
    assert {h.source for h in one} == {"000_3b696b7c0f75676d.txt"}
    # k results come back when k exist: the Turkey brief alone has at least 3 passages
    assert len(seeds_retriever.search("Azerbaijan", k=3, mode="dense", filters=Filters(sources=("000_3b696b7c0f75676d.txt",)))) >= 3


@pytest.mark.parametrize(
    "question,k,mode,message",
    [("", 5, "hybrid", "empty"), ("   \n", 5, "hybrid", "empty"), ("x", 0, "hybrid", "k must"),
     ("x", MAX_K + 1, "hybrid", "k must"), ("x", 5, "magic", "unknown search mode")],
)
def test_bad_queries_raise_clear_errors(seeds_retriever: Retriever, question: str, k: int, mode: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        seeds_retriever.search(question, k=k, mode=mode)


def test_seeds_question_set_recall_and_evidence(seeds_retriever: Retriever) -> None:
    questions = load_questions()
    assert len(questions) >= 30
    first, in_top5 = 0, 0
    for item in questions:
        hits = seeds_retriever.search(item["question"], k=5)
        first += hits[0].source == item["source"]
        in_top5 += any(h.source == item["source"] and item["evidence"] in h.text for h in hits)
    assert first / len(questions) >= 0.95, f"Recall@1 {first}/{len(questions)}"
    assert in_top5 / len(questions) >= 0.95, f"evidence in top 5 {in_top5}/{len(questions)}"


def test_weighing_the_best_sentence_puts_answering_passages_first(seeds_retriever: Retriever) -> None:
    examples = read_qa(DATA / "seeds_qa.jsonl") + read_qa(DATA / "seeds_qa_heldout.jsonl")
    without = Retriever(seeds_retriever.corpus, seeds_retriever.index_dir, seeds_retriever.settings,
                        seeds_retriever._index, FusionSettings(sentence_weight=0.0))
    held = evaluate_qa(seeds_retriever, examples, "hybrid").metrics["sentence_holds_evidence"]
    baseline = evaluate_qa(without, examples, "hybrid").metrics["sentence_holds_evidence"]
    assert held >= baseline + 0.03, f"with sentence weight {held:.3f}, without {baseline:.3f}"


def test_a_search_reads_and_scores_only_its_pool_of_candidates(seeds_retriever: Retriever) -> None:
    narrow = Retriever(seeds_retriever.corpus, seeds_retriever.index_dir, seeds_retriever.settings,
                       seeds_retriever._index, FusionSettings(pool_per_hit=1, pool_extra=2))
    index = seeds_retriever._index
    read: list[list[int]] = []
    original = index.passages.passages
    index.passages.passages = lambda ids: read.append(list(ids)) or original(ids)  # type: ignore[method-assign]
    try:
        hits = narrow.search("What did Belarus seek from China?", k=5)
    finally:
        del index.passages.passages
    assert narrow.fusion.pool(5) == 7 and FusionSettings().pool(10) == 40
    # the pool, and at most as many of BM25's best read ahead while the question encodes
    assert read and max(map(len, read)) <= 7 and len({i for ids in read for i in ids}) <= 14 and len(hits) == 5


def test_a_new_question_is_encoded_while_bm25_searches(seeds_retriever: Retriever) -> None:
    real, searched, overlapped = seeds_retriever.encoder, threading.Event(), []

    class WaitsForBm25:
        name, dimension = real.name, real.dimension

        def encode(self, texts: list[str]) -> np.ndarray:
            overlapped.append(searched.wait(timeout=5))  # False when BM25 only starts once this returns
            return real.encode(texts)

    index = seeds_retriever._index
    retriever = Retriever(seeds_retriever.corpus, seeds_retriever.index_dir, seeds_retriever.settings, index,
                          encoder=WaitsForBm25())
    original = index.lexical.search
    index.lexical.search = lambda *args: (searched.set(), original(*args))[1]  # type: ignore[method-assign]
    try:
        hits = retriever.search("Which rockets did Belarus develop with Chinese help?", k=3)
        again = retriever.search("Which rockets did Belarus develop with Chinese help?", k=3)
    finally:
        del index.lexical.search
    assert overlapped == [True], "the second search takes the cached vector"
    assert [hit.chunk_id for hit in hits] == [hit.chunk_id for hit in again]
    assert [hit.chunk_id for hit in hits] == [hit.chunk_id for hit in seeds_retriever.search(
        "Which rockets did Belarus develop with Chinese help?", k=3)]


def test_while_the_question_encodes_bm25s_best_passages_are_read_ahead(seeds_retriever: Retriever) -> None:
    real, read, waited = seeds_retriever.encoder, threading.Event(), []
    question = "Which observers came to the firing of the Polonaise?"

    class WaitsForReads:
        name, dimension = real.name, real.dimension

        def encode(self, texts: list[str]) -> np.ndarray:
            waited.append(read.wait(timeout=5))  # False when nothing is read before the vector is there
            return real.encode(texts)

    index = seeds_retriever._index
    retriever = Retriever(seeds_retriever.corpus, seeds_retriever.index_dir, seeds_retriever.settings, index,
                          encoder=WaitsForReads())
    original = index.passages.sentence_vectors_of
    index.passages.sentence_vectors_of = lambda keys: (read.set(), original(keys))[1]  # type: ignore[method-assign]
    try:
        hits = retriever.search(question, k=3)
    finally:
        del index.passages.sentence_vectors_of
    assert waited == [True]
    assert [(hit.chunk_id, hit.sentence) for hit in hits] == [
        (hit.chunk_id, hit.sentence) for hit in seeds_retriever.search(question, k=3)]


def test_the_dense_search_runs_as_soon_as_the_vector_is_ready_while_bm25_runs(seeds_retriever: Retriever) -> None:
    """The thread that encodes the question searches the vectors next; BM25 waits here until that search has
    begun, which never happens when the dense search waits for BM25 to finish."""
    question, began, overlapped = "Which partners did Minsk court for its missile programme?", threading.Event(), []
    index = seeds_retriever._index
    retriever = Retriever(seeds_retriever.corpus, seeds_retriever.index_dir, seeds_retriever.settings, index,
                          encoder=seeds_retriever.encoder)
    lexical, vectors = index.lexical.search, index.vectors.search
    index.lexical.search = lambda *args: (overlapped.append(began.wait(timeout=5)), lexical(*args))[1]  # type: ignore[method-assign]
    index.vectors.search = lambda *args: (began.set(), vectors(*args))[1]  # type: ignore[method-assign]
    try:
        hits = retriever.search(question, k=3)
    finally:
        del index.lexical.search, index.vectors.search
    assert overlapped == [True]
    assert [(hit.chunk_id, hit.sentence) for hit in hits] == [
        (hit.chunk_id, hit.sentence) for hit in seeds_retriever.search(question, k=3)]


def test_a_failing_dense_search_fails_the_search_after_bm25_is_done(seeds_retriever: Retriever) -> None:
    index, bm25_done = seeds_retriever._index, []
    retriever = Retriever(seeds_retriever.corpus, seeds_retriever.index_dir, seeds_retriever.settings, index,
                          encoder=seeds_retriever.encoder)
    lexical = index.lexical.search
    index.lexical.search = lambda *args: (lexical(*args), bm25_done.append(True))[0]  # type: ignore[method-assign]
    index.vectors.search = lambda *args: (_ for _ in ()).throw(OSError("the vectors' disk is gone"))  # type: ignore[method-assign]
    try:
        with pytest.raises(OSError, match="disk is gone"):
            retriever.search("What did Belarus seek from Turkey?", k=3)
    finally:
        del index.lexical.search, index.vectors.search
    assert bm25_done == [True]


@pytest.mark.parametrize("name", ["seeds_qa_heldout.jsonl", "seeds_qa_heldout2.jsonl"])
def test_held_out_question_set_finds_the_evidence(seeds_retriever: Retriever, seeds_copy: Path, name: str) -> None:
    """Questions never tuned on: floors against regressions, not targets."""
    questions = load_questions(name)
    assert len(questions) >= 20
    in_top5 = 0
    for item in questions:
        assert item["evidence"] in (seeds_copy / item["source"]).read_text(encoding="utf-8")
        hits = seeds_retriever.search(item["question"], k=5)
        in_top5 += any(h.source == item["source"] and item["evidence"] in h.text for h in hits)
    assert in_top5 / len(questions) >= 0.9, f"evidence in top 5 {in_top5}/{len(questions)}"


def test_refresh_indexes_a_new_file_without_reopening(corpus_dir: Path, tmp_path: Path) -> None:
    retriever = Retriever.open(corpus_dir, tmp_path / "index")
    (corpus_dir / "memo.md").write_text("# Memo\n\nBelarus ordered Pantsir radars from Oryol in 2021.", encoding="utf-8")
    report = retriever.refresh()
    assert report.action == "updated" and report.added == ["memo.md"]
    hit = retriever.search("Pantsir radars Oryol", k=1)[0]
    assert hit.source == "memo.md" and hit.title == "memo"
    assert_cited_exactly([hit], corpus_dir)


# -- reliability: shared between threads, following the index on disk ------------------------------


def fast_retriever(corpus: Path, index_dir: Path) -> Retriever:
    """A Retriever over the hashing stand-in embedder, so rebuilds take a fraction of a second."""
    return Retriever.open(corpus, index_dir, encoder=HashingEmbedder(), embed=HashingEmbedder)


def test_searches_survive_refreshes_and_rebuilds_from_other_threads(corpus_dir: Path, tmp_path: Path) -> None:
    retriever = fast_retriever(corpus_dir, tmp_path / "index")
    questions = ["What did Belarus seek from China?", "Roketsan", "Polonaise Azerbaijan", "military exports"]
    errors: list[BaseException] = []
    searches = 0
    stop = threading.Event()

    def user(offset: int) -> None:
        nonlocal searches
        try:
            while not stop.is_set():
                for question in questions[offset:] + questions[:offset]:
                    hits = retriever.search(question, k=5, mode=("hybrid", "dense", "bm25")[searches % 3])
                    assert_cited_exactly(hits, corpus_dir)
                    retriever.documents()
                    searches += 1
        except BaseException as error:  # noqa: BLE001 - collected and re-raised below
            errors.append(error)

    users = [threading.Thread(target=user, args=(i,)) for i in range(4)]
    for thread in users:
        thread.start()
    try:
        for round_ in range(3):
            retriever.refresh(rebuild=True)
            (corpus_dir / f"note-{round_}.txt").write_text(f"Note {round_}: Belarus and China.", encoding="utf-8")
            retriever.refresh()
    finally:
        stop.set()
        for thread in users:
            thread.join(60)
    assert not errors, errors[0]
    assert searches > 20
    assert retriever.report.documents == 8


def test_more_distinct_questions_than_the_cache_holds(corpus_dir: Path, tmp_path: Path) -> None:
    retriever = fast_retriever(corpus_dir, tmp_path / "index")
    questions = [f"question number {i} about Minsk" for i in range(1100)]
    assert retriever.encode_questions(questions).shape == (1100, 384)
    answers = list(retriever.search_many(questions + ["  ", "Minsk \ud800"], k=1, mode="bm25"))
    assert [a.question for a in answers[:1100]] == questions and all(a.hits and a.error is None for a in answers[:1100])
    assert "empty" in answers[1100].error and "broken characters" in answers[1101].error
    assert answers[1101].to_dict()["question"] == "Minsk \ufffd"


def test_a_search_follows_a_generation_published_elsewhere(corpus_dir: Path, tmp_path: Path) -> None:
    serving = fast_retriever(corpus_dir, tmp_path / "index")
    old = serving._index.directory
    (corpus_dir / "memo.md").write_text("Belarus ordered Pantsir radars from Oryol.", encoding="utf-8")
    other = fast_retriever(corpus_dir, tmp_path / "index")  # e.g. `rag index` in another process
    assert other._index.directory != old
    hit = serving.search("Pantsir radars Oryol", k=1)[0]
    assert hit.source == "memo.md" and serving._index.directory == other._index.directory
    assert not old.exists()  # nobody serves the old generation any more


def test_a_cited_file_changed_on_disk_is_reindexed_before_it_is_cited(corpus_dir: Path, tmp_path: Path) -> None:
    retriever = fast_retriever(corpus_dir, tmp_path / "index")
    china = corpus_dir / CHINA
    china.write_text("An added first line shifts every offset.\n" + china.read_text(encoding="utf-8"), encoding="utf-8")
    # A question the hashing stand-in's bag of words points at the China brief ("seek" is in another title).
    hits = retriever.search("What did Lukashenka propose to China for the Great Stone?", k=5)
    assert hits[0].source == CHINA and retriever.report.action == "updated" and retriever.report.changed == [CHINA]
    assert_cited_exactly(hits, corpus_dir)


def test_a_file_edited_in_place_to_the_same_size_with_its_time_set_back_is_reindexed(corpus_dir: Path,
                                                                                     tmp_path: Path) -> None:
    """``rsync --inplace -t`` or ``touch -r`` can restore size, inode and modification time: the
    status change time still tells the file apart."""
    retriever = fast_retriever(corpus_dir, tmp_path / "index")
    china = corpus_dir / CHINA
    before = china.stat()
    text = china.read_text(encoding="utf-8")
    start = text.index("Sino-Belarusian military-industrial cooperation is likely to widen\n\nThe situation")
    edited = text[:start] + "Belarus" + text[start + 7 :]  # seven characters for seven, from the title on
    assert len(edited.encode()) == before.st_size and edited != text
    with china.open("r+", encoding="utf-8") as handle:  # in place: the same inode
        handle.write(edited)
    os.utime(china, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (china.stat().st_ino, china.stat().st_size, china.stat().st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)
    hits = retriever.search("What did Lukashenka propose to China for the Great Stone?", k=5)
    assert retriever.report.changed == [CHINA]
    assert_cited_exactly(hits, corpus_dir)


def test_when_the_index_cannot_be_updated_inexact_citations_are_dropped(
    corpus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    retriever = fast_retriever(corpus_dir, tmp_path / "index")
    assert any(hit.source == CHINA for hit in retriever.search("China military-technical cooperation", k=8))

    def read_only(**options):
        raise IndexWriteError("the index folder cannot be written")

    monkeypatch.setattr(retriever, "refresh", read_only)
    china = corpus_dir / CHINA
    china.write_text("Shifted.\n" + china.read_text(encoding="utf-8"), encoding="utf-8")
    hits = retriever.search("China military-technical cooperation", k=8)
    assert hits and all(hit.source != CHINA for hit in hits)
    assert [hit.rank for hit in hits] == list(range(1, len(hits) + 1))
    assert_cited_exactly(hits, corpus_dir)


@pytest.mark.parametrize("question,message", [("Minsk \ud800 army", "broken characters"), ("x" * 2001, "too long")])
def test_unusable_question_text_is_a_query_error(seeds_retriever: Retriever, question: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        seeds_retriever.search(question)


def test_another_process_serving_the_index_follows_a_rebuild_made_here(corpus_dir: Path, seeds_index: Path) -> None:
    import subprocess
    import sys

    from rag.cli import main

    server = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, json\n"
            "from rag.retrieval import Retriever\n"
            f"r = Retriever.open({str(corpus_dir)!r}, {str(seeds_index)!r})\n"
            "for line in sys.stdin:\n"
            "    hits = r.search(line.strip(), k=3)\n"
            "    print(json.dumps([r._index.directory.name, [h.to_dict() for h in hits]]), flush=True)\n"
        )],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdin and server.stdout
        server.stdin.write("What did Belarus seek from China?\n")
        server.stdin.flush()
        served, _ = json.loads(server.stdout.readline())
        china = corpus_dir / CHINA
        china.write_text("A new first line.\n" + china.read_text(encoding="utf-8"), encoding="utf-8")
        assert main(["index", "--corpus", str(corpus_dir), "--index-dir", str(seeds_index)]) == 0
        assert (seeds_index / served).is_dir()  # the other process still serves it
        server.stdin.write("What did Belarus seek from China?\n")
        server.stdin.flush()
        now, hits = json.loads(server.stdout.readline())
        assert now != served and not (seeds_index / served).exists()
        text = china.read_text(encoding="utf-8")
        cited = next(hit for hit in hits if hit["source"] == CHINA)  # its offsets moved with the new line
        assert text[cited["start"] : cited["end"]] == cited["text"]
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("mode", SEARCH_MODES)
def test_no_sentence_is_quoted_twice_in_one_result_list(seeds_retriever: Retriever, mode: str) -> None:
    from rag.stores.passages import Filters as F

    cases = [("military cooperation", F(date_from="2019-01-01")), ("military cooperation", None),
             ("China", None), ("Turkey Roketsan Aselsan", None), ("exports", F(sources=("002_ad1ab4cf14487f8f.txt",)))]
    for question, filters in cases:
        hits = seeds_retriever.search(question, k=10, mode=mode, filters=filters)
        quotes = [(h.source, h.sentence.start, h.sentence.end) for h in hits]
        assert hits and len(quotes) == len(set(quotes)), (question, quotes)
        assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_filters_name_briefs_loosely_but_never_match_nothing_silently(seeds_retriever: Retriever, seeds_copy: Path) -> None:
    from rag.stores.passages import Filters as F

    for given in (CHINA, "003", "003_d66b", f"./{CHINA}", f".//{CHINA}", str(seeds_copy / CHINA)):
        resolved = seeds_retriever.resolve_filters(F(sources=(given,)))
        assert resolved is not None and resolved.sources == (CHINA,), given
    assert seeds_retriever.resolve_filters(F(categories=("SECURITY issues",))).categories == ("Security issues",)  # type: ignore[union-attr]
    for filters, message in [(F(sources=("00",)), "matches 5 briefs"), (F(sources=("nope.txt",)), "no indexed brief is named"),
                             (F(categories=("weather",)), "no indexed brief has the category"),
                             (F(date_from="2019-05-01", date_to="2019-01-01"), "reversed")]:
        with pytest.raises(QueryError, match=message):
            seeds_retriever.search("China", filters=filters)


def test_an_empty_result_says_why(seeds_retriever: Retriever) -> None:
    from rag.stores.passages import Filters as F

    assert seeds_retriever.search("China", filters=F(trends=("worse",))) == []
    assert seeds_retriever.explain_empty("China", "hybrid", F(trends=("worse",))) == (
        "no indexed passage matches trend worse: widen or clear a filter")
    empty = seeds_retriever.answer("China", filters=F(trends=("worse",)))
    assert empty.hits == [] and empty.to_dict()["reason"] == "no indexed passage matches trend worse: widen or clear a filter"
    found = seeds_retriever.answer("China", 2)
    assert len(found.hits) == 2 and found.reason is None and "reason" not in found.to_dict()
    both = F(sources=(CHINA,), date_from="2019-01-01")  # each alone matches, together nothing
    assert "all the filters together" in seeds_retriever.explain_empty("China", "hybrid", both)
    assert seeds_retriever.search("zzzqqq xyzzy", mode="bm25") == []
    assert "no word of the question is in the index" in seeds_retriever.explain_empty("zzzqqq xyzzy", "bm25", None)
    assert seeds_retriever.search("and of the", mode="bm25") == []
    assert "only common words" in seeds_retriever.explain_empty("and of the", "bm25", None)
    china = F(sources=(CHINA,))  # Roketsan is in the Turkish brief only
    assert seeds_retriever.search("Roketsan", mode="bm25", filters=china) == []
    assert "no passage the filters select holds a word" in seeds_retriever.explain_empty("Roketsan", "bm25", china)
    answers = list(seeds_retriever.search_many(["Roketsan", "China"], mode="bm25", filters=china))
    assert answers[0].to_dict()["reason"].startswith("no passage the filters select") and answers[1].reason is None
    assert "reason" not in answers[1].to_dict()


def test_questions_the_briefs_do_not_answer_are_flagged(seeds_retriever: Retriever) -> None:
    """Floors on the training sets the confidence was fitted on (held-out figures are in the README)."""
    from rag.evaluate import evaluate_qa, read_unanswerable

    unanswerable = read_unanswerable(DATA / "unanswerable_train.jsonl")
    metrics = evaluate_qa(seeds_retriever, read_qa(DATA / "seeds_qa.jsonl"), "hybrid", unanswerable=unanswerable).metrics
    assert metrics["answerable_flagged"] <= 0.1 and metrics["unanswerable_flagged"] >= 0.65, metrics
    hits = seeds_retriever.search("What is the population of Minsk?")
    assert hits and all(0.0 <= hit.confidence < 0.4 for hit in hits)
    assert results_payload("q", hits)["answer_found"] is False
    assert results_payload("q", seeds_retriever.search("What did Belarus seek from China?"))["answer_found"] is True


def test_int8_sentence_vectors_pick_the_sentences_float32_vectors_would(seeds_retriever: Retriever) -> None:
    """The measured effect of storing sentence vectors as int8: for every seeds question and every
    passage, the sentence with the best cosine is the one float32 vectors of the model would pick."""
    from rag.embedding import passage_embedder

    embedder = passage_embedder(seeds_retriever.settings.model)
    questions = [example.question for example in read_qa(DATA / "seeds_qa.jsonl")]
    query_vectors = seeds_retriever.encode_questions(questions)
    with seeds_retriever._lease() as index:
        records = list(index.passages.passages(index.passages.ids()).values())
        stored = index.passages.sentence_vectors_of([(r.source, s, e) for r in records for s, e in r.sentences])
    agree = pairs = 0
    for record in records:
        keys = [(record.source, s, e) for s, e in record.sentences if (record.source, s, e) in stored]
        if len(keys) < 2:
            continue
        int8 = np.vstack([stored[key] for key in keys])
        exact = embedder.encode([record.text[s - record.start : e - record.start] for _, s, e in keys])
        agree += int(np.sum(np.argmax(query_vectors @ int8.T, axis=1) == np.argmax(query_vectors @ exact.T, axis=1)))
        pairs += len(questions)
    assert pairs > 500 and agree / pairs >= 0.99, f"int8 and float32 agree on {agree} of {pairs} choices"


# -- the supporting sentence (rag.sentences) -----------------------------------------------------


def _unit(*values: float) -> np.ndarray:
    vector = np.zeros(8, dtype=np.float32)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


CONTEXT = "Belarus could be interested in Kazakhstan's experience in joint production."
FOLLOW_UP = "Such interest was stated at the highest level."


def _score(question: str, previous: list[int]) -> np.ndarray:
    from rag.sentences import question_profile, score_sentences

    texts = [CONTEXT, FOLLOW_UP, "Exports grew last year."]
    vectors = [_unit(1.0, 0.2), _unit(0.1, 1.0), _unit(0.0, 0.0, 1.0)]  # the question's vector is close to CONTEXT
    return score_sentences(question_profile(question, _idf, 10), _unit(1.0, 0.1), texts, vectors, previous, ["a"] * 3,
                           term_weight=1.0, continuation_penalty=0.3, continuation_gain=2.0, centrality_weight=0.0,
                           centrality_neighbours=5).score


def _idf(term: str) -> float:
    return 3.0 if term == "level" else 1.0  # "level" is rare in the briefs, "interest" is not


def test_the_sentence_with_the_fact_is_quoted_rather_than_one_restating_the_brief(
    seeds_retriever: Retriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A training question that the centrality discount answers (rag.sentences.centrality)."""
    question = "What did the Belarusian head of state order the army to prioritise when acquiring equipment?"
    answer = "President Lukashenka demanded that the national army gave priority to domestic products."
    assert seeds_retriever.search(question, k=3)[0].sentence.text == answer
    monkeypatch.setattr("rag.retrieval.CENTRALITY_WEIGHT", 0.0)
    assert seeds_retriever.search(question, k=3)[0].sentence.text != answer


def test_a_continuation_sentence_is_quoted_when_it_adds_what_the_question_asks() -> None:
    asks_more = "At what level was Belarus' interest in Kazakhstan's joint-production experience expressed?"
    assert int(np.argmax(_score(asks_more, [-1, 0, 1]))) == 1
    assert int(np.argmax(_score(asks_more, [-1, -1, -1]))) == 0  # without its context it loses
    restates = "Which Kazakh experience could Belarus be interested in?"
    assert int(np.argmax(_score(restates, [-1, 0, 1]))) == 0  # it adds nothing asked: the sentence before is quoted


def test_question_terms_match_capitals_spellings_and_ordinals_and_rare_terms_weigh_more() -> None:
    from rag.sentences import coverage, question_profile, sentence_terms

    profile = question_profile("What did Ankara agree at the eighth defence meeting?", lambda term: 1.0, 10)
    assert coverage(profile, sentence_terms("Turkish defense officials agreed at the VIII meeting.")) == 1.0
    assert coverage(profile, sentence_terms("Moscow held a meeting.")) == 0.2
    weighted = question_profile("Which Roketsan missiles did Belarus buy?", {"roketsan": 3.0, "missil": 1.0, "belarus": 0.1,
                                                                              "buy": 1.0}.get, 10)
    assert coverage(weighted, sentence_terms("Roketsan talks")) > 0.5 > coverage(weighted, sentence_terms("Belarus missiles"))


class _StubPassages:
    def __init__(self, vectors: dict[tuple[str, int, int], np.ndarray]) -> None:
        self.vectors = vectors

    def sentence_vectors_of(self, keys):
        return {key: self.vectors[key] for key in keys if key in self.vectors}


class _StubLexical:
    def idf(self, term: str) -> float:
        return _idf(term)

    def __len__(self) -> int:
        return 10


class _StubIndex:
    def __init__(self, vectors: dict[tuple[str, int, int], np.ndarray]) -> None:
        self.passages = _StubPassages(vectors)
        self.lexical = _StubLexical()


def _record(passage_id: int, text: str, start: int, sentences: tuple[tuple[int, int], ...]):
    from rag.stores.passages import PassageRecord

    return PassageRecord(passage_id, f"c{passage_id}", "a.txt", start, start + len(text), text, sentences,
                         "A brief", None, None, None, None, None, "brief")


def test_the_sentence_before_lends_context_across_a_passage_boundary() -> None:
    from rag.reads import SearchReads
    from rag.retrieval import _supporting_sentences
    from rag.sentences import question_profile

    text = f"{CONTEXT}\n\n{FOLLOW_UP}"
    first, second = (0, len(CONTEXT)), (len(CONTEXT) + 2, len(text))
    index = _StubIndex({("a.txt", *first): _unit(1.0, 0.2), ("a.txt", *second): _unit(0.1, 1.0)})
    before, after = _record(1, CONTEXT, 0, (first,)), _record(2, FOLLOW_UP, second[0], (second,))
    question = "At what level was Belarus' interest in Kazakhstan's joint-production experience expressed?"
    profile = question_profile(question, _idf, 10)
    alone = _supporting_sentences(SearchReads(index.passages), [after], _unit(1.0, 0.1), profile)[2][0]
    together = _supporting_sentences(SearchReads(index.passages), [before, after], _unit(1.0, 0.1), profile)
    assert text[together[2][0].span.start : together[2][0].span.end] == FOLLOW_UP
    assert together[2][0].score > together[1][0].score > alone.score


def test_the_passage_holding_the_answering_sentence_of_the_best_brief_leads() -> None:
    from rag.retrieval import Quote, SentenceSpan, _add_sentence_scores

    def passage(passage_id: int, source: str):
        return replace(_record(passage_id, "x", 0, ((0, 1),)), source=source)

    def quote(score: float) -> list[Quote]:
        return [Quote(SentenceSpan("x", 0, 1), score, score, 0.0)]

    top, answering, other = passage(1, "a.txt"), passage(2, "a.txt"), passage(3, "b.txt")
    ordered = [(top, 0.9), (other, 0.8), (answering, 0.3)]
    rescored = _add_sentence_scores(ordered, {1: quote(0.2), 2: quote(0.9), 3: quote(0.5)}, 1.0)
    assert [record.id for record, _ in rescored] == [2, 3, 1]


def test_a_brief_of_the_period_a_question_names_is_preferred() -> None:
    from rag.periods import question_periods
    from rag.retrieval import Quote, SentenceSpan, _add_sentence_scores

    def passage(passage_id: int, source: str, week: str):
        return replace(_record(passage_id, "x", 0, ((0, 1),)), source=source, week_start=week, week_end=week)

    quotes = {1: [Quote(SentenceSpan("x", 0, 1), 0.5, 0.5, 0.0)], 2: [Quote(SentenceSpan("x", 0, 1), 0.5, 0.5, 0.0)]}
    ordered = [(passage(1, "december.txt", "2017-12-11"), 0.6), (passage(2, "september.txt", "2017-09-11"), 0.5)]
    periods = question_periods("What was held in September 2017?")
    assert [r.id for r, _ in _add_sentence_scores(ordered, quotes, 1.0, periods, 0.2)] == [2, 1]
    assert [r.id for r, _ in _add_sentence_scores(ordered, quotes, 1.0, periods, 0.0)] == [1, 2]
    assert [r.id for r, _ in _add_sentence_scores(ordered, quotes, 1.0, (), 0.2)] == [1, 2]


def test_a_question_naming_a_month_finds_the_brief_of_that_month(
    seeds_retriever: Retriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Kazakh brief (September 11-17, 2017) says "last week", not the month; the Chinese one of
    December 2017 names September. Without the centrality discount (as when the period prior was
    chosen) only the brief's week tells them apart; with it, both signals agree."""
    question = "What bilateral body on arms cooperation held its eighth session in Kazakhstan in September 2017?"
    undated = Retriever(seeds_retriever.corpus, seeds_retriever.index_dir, seeds_retriever.settings,
                        seeds_retriever._index, FusionSettings(period_weight=0.0))
    assert seeds_retriever.search(question, k=3)[0].week_start == "2017-09-11"
    monkeypatch.setattr("rag.retrieval.CENTRALITY_WEIGHT", 0.0)
    assert seeds_retriever.search(question, k=3)[0].week_start == "2017-09-11"
    assert undated.search(question, k=3)[0].week_start != "2017-09-11"


def test_seeds_question_sets_quote_the_answering_sentence(seeds_retriever: Retriever) -> None:
    """Floors, a question below the measured figures, on the three training sets (measured 0.825, 0.75
    and 0.783; 0.70 and 0.68 on the first two before sentence scoring used IDF, neighbours, the brief's
    score, the period the question names and the centrality discount)."""
    for name, floor in (("seeds_qa.jsonl", 0.80), ("seeds_qa_train2.jsonl", 0.725), ("seeds_qa_train3.jsonl", 0.765)):
        metrics = evaluate_qa(seeds_retriever, read_qa(DATA / name), "hybrid").metrics
        assert metrics["sentence_holds_evidence"] >= floor and metrics["recall@1"] >= 0.9, (name, metrics)
