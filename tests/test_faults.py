"""Fault injection: a build killed at any moment never harms the live index.

In the spirit of SQLite's crash tests, a build (``--rebuild`` of an existing index, or an
incremental update after a file was added or changed) runs in a child process that is
SIGKILLed either right after a named step of writing a generation (named kill points) or
after a random delay (random kill points). After every kill the tests prove that:

(a) the index opens and answers WITHOUT building anything (``load_current`` wrapped in a
    ``Retriever``; any attempt to build during the check fails the test): the previous
    generation is current and gives exactly the top-5 hits (source, start, end, sentence
    span) of three fixed questions it gave before the kill, unless the kill came after the
    ``CURRENT`` switch, in which case the new generation is current, complete, and answers
    exactly like a reference build of the changed corpus;
(b) running the same build again completes with the right document count, and leaves no
    ``.tmp-*`` folder, no ``.CURRENT.*.tmp`` file and only the live generation folder.

How the builds run: a driver process (started once per module, with the tree this file
lives in on ``PYTHONPATH``) imports ``rag`` and forks one child per build; the child
monkeypatches ``rag.index`` / the stores so that it SIGKILLs itself after the named step,
or the driver SIGKILLs it after a delay. Model inference is the only thing not redone in
the children: an embedder recorded from the real model earlier in the session replays the
exact vectors and token counts for the same texts (a miss falls back to the real model).
This keeps each build well under a second, so kills land in the index-writing code.

Environment: ``RAG_FAULT_RUNS`` random kills (default 3); ``RAG_FAULT_ALL=1`` runs every
named point for every build kind (by default the "changed file" kind runs a subset).
Full run::

    RAG_FAULT_RUNS=30 RAG_FAULT_ALL=1 .venv/bin/python -m pytest tests/test_faults.py -s
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

QUESTIONS = (
    "What did Belarus seek from China?",
    "How could Turkey help the Belarusian military industry?",
    "How does Minsk reduce its military-technical dependence on Russia?",
)
NEW_FILE = "005_fault_injection.txt"
NEW_TEXT = (
    "by\nMay 6 – May 12, 2019\nSecurity issues\n\n"
    "Belarus asks China for drones and air defence\n\n"
    "Belarus sought Chinese drones, air defence systems and loans for its military industry from China. "
    "The Chinese side promised to study the requests. Minsk hopes that China will finance joint missile projects.\n"
)
CHANGED_FILE = "000_3b696b7c0f75676d.txt"
CHANGED_TEXT = (
    "\nIn the same week, Belarus sought military loans from China and asked Beijing to fund "
    "a joint plant for Chinese armoured vehicles.\n"
)

#: Named kill points, in the order a build reaches them.
POINTS = (
    "passages-first-document",  # first document written into the new segment's passages.sqlite
    "passages-closed",  # the segment writer closed passages.sqlite
    "lexical-saved",  # first LexicalSegment.save (lexical/, after the vectors were saved)
    "document-lexical-saved",  # second LexicalSegment.save (lexical-documents/)
    "segment-finished",  # the first segment written is complete (an update then merges it with the old one)
    "manifest-written",  # _write_atomic(.../manifest.json) returned
    "renamed-before-current",  # os.rename(.tmp-*, gen-N) done, CURRENT not yet written
    "current-temp-before-replace",  # .CURRENT.*.tmp written and fsynced, os.replace not yet done
    "current-switched",  # CURRENT names the new generation; _load and _clean not yet run
    "clean-midway",  # inside _clean: the first folder it removes is half deleted (see seed_crash_leftovers)
)
#: Points after which the new generation must be the current one.
SWITCHED = {"current-switched", "clean-midway"}
KINDS = ("rebuild", "update-add", "update-change")
#: The "changed file" kind runs this subset unless RAG_FAULT_ALL is set.
CHANGE_SUBSET = ("passages-closed", "segment-finished", "manifest-written", "renamed-before-current", "current-switched", "clean-midway")
ALL = os.environ.get("RAG_FAULT_ALL", "") not in ("", "0")
CASES = [
    (kind, point)
    for kind in KINDS
    for point in POINTS
    if kind != "update-change" or ALL or point in CHANGE_SUBSET
]
RUNS = int(os.environ.get("RAG_FAULT_RUNS", "3"))

# ---------------------------------------------------------------------------
# The driver: imports rag once, forks one child per build
# ---------------------------------------------------------------------------

DRIVER = r'''
import json, os, pickle, re, shutil, signal, sys, time
from pathlib import Path

import numpy as np
import faiss, bm25s  # imported lazily by the stores: import them once, before forking
import rag
import rag.cli
import rag.index as index
import rag.retrieval
from rag.config import IndexSettings
from rag.documents import FolderCorpus
from rag.segments import SegmentWriter
from rag.stores.lexical import LexicalSegment
from rag.stores.passages import PassageStore

GENERATION = re.compile(r"gen-\d{6,}")


class Replay:
    """Vectors and token counts recorded from the real model; a miss loads the real model."""

    def __init__(self, path):
        with open(path, "rb") as handle:
            recorded = pickle.load(handle)
        self.name, self.dimension, self.max_tokens = recorded["name"], recorded["dimension"], recorded["max_tokens"]
        self.backend = recorded["backend"]
        self.vectors, self.tokens = recorded["vectors"], recorded["tokens"]
        self.encoder = recorded["encoder"]

    def export_question_encoder(self, folder):
        """The real model's ONNX export, linked from the template index instead of exported again."""
        shutil.copytree(self.encoder, folder, copy_function=os.link)

    def _real(self):
        print("fault driver: embedding cache miss, loading the real model", file=sys.stderr)
        from rag.embedding import passage_embedder
        return passage_embedder(self.name)

    def encode(self, texts, *, progress=False):
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if all(text in self.vectors for text in texts):
            return np.vstack([self.vectors[text] for text in texts]).astype(np.float32)
        return self._real().encode(texts)

    def count_tokens(self, texts):
        if all(text in self.tokens for text in texts):
            return [self.tokens[text] for text in texts]
        return self._real().count_tokens(texts)


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def after(owner, name, when=lambda *a, **k: True, nth=1):
    """SIGKILL right after the nth call of owner.name for which when(...) holds."""
    original = getattr(owner, name)
    seen = [0]

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            seen[0] += 1
            if seen[0] == nth:
                die()
        return result

    setattr(owner, name, wrapper)


def in_tmp(store, *args, **kwargs):
    return any(folder.name.startswith(".tmp-") for folder in store.path.parents)


def arm(point):
    if point == "passages-first-document":
        after(PassageStore, "add_document", in_tmp)
    elif point == "passages-closed":
        after(PassageStore, "close", in_tmp)
    elif point == "lexical-saved":
        after(LexicalSegment, "save", nth=1)
    elif point == "document-lexical-saved":
        after(LexicalSegment, "save", nth=2)
    elif point == "segment-finished":
        after(SegmentWriter, "finish")
    elif point == "manifest-written":
        after(index, "_write_atomic", lambda path, content: Path(path).name == index.MANIFEST_FILE)
    elif point == "renamed-before-current":
        after(os, "rename", lambda src, dst, *a, **k: bool(GENERATION.fullmatch(Path(dst).name)))
    elif point == "current-temp-before-replace":
        replace = os.replace

        def before_replace(src, dst, *args, **kwargs):
            if Path(dst).name == index.CURRENT_FILE:
                die()
            return replace(src, dst, *args, **kwargs)

        os.replace = before_replace
    elif point == "current-switched":
        after(index, "_write_atomic", lambda path, content: Path(path).name == index.CURRENT_FILE)
    elif point == "clean-midway":
        clean, rmtree = index._clean, shutil.rmtree
        cleaning = [False]

        def in_clean(index_dir):
            cleaning[0] = True
            return clean(index_dir)

        def half_rmtree(path, *args, **kwargs):
            name = Path(path).name
            if cleaning[0] and (GENERATION.fullmatch(name) or name.startswith(".tmp-")):
                files = sorted(p for p in Path(path).rglob("*") if p.is_file())
                for victim in files[: max(1, len(files) // 2)]:
                    victim.unlink()
                die()
            return rmtree(path, *args, **kwargs)

        index._clean = in_clean
        shutil.rmtree = half_rmtree
    elif point:
        raise ValueError(f"unknown kill point {point}")


def child(command):
    log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)  # the driver's stdout is the pipe to the test
    os.dup2(log, 2)
    replay = Replay(command["cache"])
    rag.retrieval.passage_embedder = lambda model=None: replay
    arm(command.get("kill"))
    if command["cli"]:
        argv = ["index", "--corpus", command["corpus"], "--index-dir", command["index"]]
        code = rag.cli.main(argv + (["--rebuild"] if command["rebuild"] else []))
    else:
        opened = index.open_index(
            FolderCorpus(command["corpus"]), Path(command["index"]), IndexSettings(), lambda: replay,
            rebuild=command["rebuild"],
        )
        opened.close()
        code = 0
    sys.stdout.flush()
    os._exit(code)


def run(command):
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            child(command)
        except BaseException:
            import traceback
            traceback.print_exc()
            os._exit(70)
    killed_by_driver = False
    deadline = None if command.get("kill_after") is None else started + command["kill_after"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG if deadline is not None else 0)
        if done:
            break
        if time.perf_counter() >= deadline:
            os.kill(pid, signal.SIGKILL)
            killed_by_driver = True
            done, status = os.waitpid(pid, 0)
            break
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    signalled = os.WIFSIGNALED(status)
    with open(command["log"], encoding="utf-8", errors="replace") as handle:
        log = handle.read()
    return {
        "log": log[-3000:],
        "killed": signalled and os.WTERMSIG(status) == signal.SIGKILL,
        "by_driver": killed_by_driver,
        "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "seconds": seconds,
    }


print(json.dumps({"ready": rag.__file__}), flush=True)
for line in sys.stdin:
    print(json.dumps(run(json.loads(line))), flush=True)
'''


class Driver:
    """The driver process: ``build`` sends it one build and returns how the child ended."""

    def __init__(self, script: Path, cache: Path) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        env["TOKENIZERS_PARALLELISM"] = "false"
        self.cache = cache
        self.process = subprocess.Popen(
            [sys.executable, str(script)], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready = json.loads(self._line())
        assert Path(ready["ready"]).resolve().is_relative_to(ROOT), f"the driver imported rag from {ready['ready']}"

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the fault driver died (exit {self.process.poll()})"
        return line

    def check(self, result: dict[str, Any]) -> dict[str, Any]:
        assert "embedding cache miss" not in result["log"], "the build ran the model: the recording is incomplete"
        return result

    def build(
        self, corpus: Path, index_dir: Path, *, rebuild: bool, kill: str | None = None,
        kill_after: float | None = None, cli: bool = False,
    ) -> dict[str, Any]:
        assert self.process.stdin is not None
        command = {"corpus": str(corpus), "index": str(index_dir), "rebuild": rebuild, "kill": kill,
                   "kill_after": kill_after, "cli": cli, "cache": str(self.cache),
                   "log": str(Path(index_dir).parent / "build.log")}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.check(json.loads(self._line()))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)


# ---------------------------------------------------------------------------
# The recording embedder and the reference builds
# ---------------------------------------------------------------------------


class Recorder:
    """An ``Embedder`` that remembers every vector and token count of the real model by text."""

    def __init__(self) -> None:
        from rag.embedding import passage_embedder

        self.real = passage_embedder()
        self.name, self.dimension, self.max_tokens = self.real.name, self.real.dimension, self.real.max_tokens
        self.backend = self.real.backend
        self.vectors: dict[str, Any] = {}
        self.tokens: dict[str, int] = {}
        self.encoder: Path | None = None

    def export_question_encoder(self, folder: Path) -> None:
        """Link the learnt index's ONNX export (the real model's) instead of exporting again."""
        assert self.encoder is not None, "learn() an index first"
        shutil.copytree(self.encoder, folder, copy_function=os.link)

    def encode(self, texts: list[str], *, progress: bool = False):
        import numpy as np

        missing = [text for text in dict.fromkeys(texts) if text not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.real.encode(missing)))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.vstack([self.vectors[text] for text in texts]).astype(np.float32)

    def count_tokens(self, texts: list[str]) -> list[int]:
        missing = [text for text in dict.fromkeys(texts) if text not in self.tokens]
        if missing:
            self.tokens.update(zip(missing, self.real.count_tokens(missing)))
        return [self.tokens[text] for text in texts]

    def learn(self, index_dir: Path) -> None:
        """Take the vectors stored in an index as recorded (they are what the model gave for those texts)."""
        from rag.config import IndexSettings
        from rag.index import load_current, search_text

        index = load_current(index_dir, IndexSettings())
        assert index is not None
        self.encoder = index.directory / "encoder"
        try:
            ids = index.passages.ids()
            records = index.passages.passages(ids)
            vectors = index.vectors.vectors(ids)
            self.vectors.update(
                (search_text(records[i].kind, records[i].title, records[i].text), vector) for i, vector in zip(ids, vectors)
            )
            for record in records.values():
                keys = [(record.source, start, end) for start, end in record.sentences]
                for (_, start, end), vector in index.passages.sentence_vectors_of(keys).items():
                    if vector is not None:  # stored as int8: the direction, as near as 1/127 allows
                        self.vectors.setdefault(record.text[start - record.start : end - record.start], vector)
        finally:
            index.close()

    def dump(self, path: Path) -> None:
        with path.open("wb") as handle:
            pickle.dump({"name": self.name, "dimension": self.dimension, "max_tokens": self.max_tokens, "backend": self.backend,
                         "vectors": self.vectors, "tokens": self.tokens, "encoder": self.encoder}, handle)


def change_corpus(kind: str, corpus: Path) -> None:
    """Apply the corpus change of a build kind (nothing for a rebuild)."""
    if kind == "update-add":
        (corpus / NEW_FILE).write_text(NEW_TEXT, encoding="utf-8")
    elif kind == "update-change":  # a paragraph early in the body moves every later passage
        path = corpus / CHANGED_FILE
        text = path.read_text(encoding="utf-8")
        anchor = text.index("\nAmid reducing exports")
        path.write_text(text[:anchor] + CHANGED_TEXT + text[anchor:], encoding="utf-8")


def seed_crash_leftovers(index_dir: Path) -> list[str]:
    """What an earlier crashed writer leaves: a half-written ``.tmp-*`` folder and a ``.CURRENT.*.tmp`` file.

    In an update the previous generation is deleted when it is closed, before ``_clean``
    runs, so these give ``_clean`` something to be killed in the middle of.
    """
    folder = index_dir / ".tmp-0123456789abcdef0123456789abcdef"
    segment = next((index_dir / current_name(index_dir)).glob("seg-*"))
    shutil.copytree(segment, folder / segment.name)
    (folder / "READERS").touch()
    (index_dir / ".CURRENT.0123456789abcdef0123456789abcdef.tmp").write_text("gen-000009\n", encoding="utf-8")
    return sorted([folder.name, ".CURRENT.0123456789abcdef0123456789abcdef.tmp"])


def current_name(index_dir: Path) -> str:
    return (index_dir / "CURRENT").read_text(encoding="utf-8").strip()


def leftovers(index_dir: Path) -> list[str]:
    """Everything in the index folder that is neither the live generation nor CURRENT/.lock."""
    keep = {"CURRENT", ".lock", current_name(index_dir)}
    return sorted(path.name for path in index_dir.iterdir() if path.name not in keep)


@contextmanager
def opened_without_building(index_dir: Path, corpus: Path, recorder: Recorder) -> Iterator[Any]:
    """A ``Retriever`` over the current generation, opened with ``load_current``; a build fails the test.

    Its questions are encoded by ``recorder`` (the real model, each question encoded once per session).
    """
    import rag.index
    from rag.config import IndexSettings
    from rag.documents import FolderCorpus
    from rag.retrieval import Retriever

    write = rag.index._Builder.write

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("checking the index after a kill tried to build")

    index = rag.index.load_current(index_dir, IndexSettings())
    assert index is not None, f"the index in {index_dir} does not open without a build"
    retriever = Retriever(FolderCorpus(corpus), index_dir, IndexSettings(), index, encoder=recorder, embed=lambda: recorder)
    rag.index._Builder.write = refuse
    try:
        yield retriever
    finally:
        rag.index._Builder.write = write
        retriever._index.close()
        index.close()


def answers(retriever: Any) -> list[list[tuple[str, int, int, int, int]]]:
    """Top-5 (source, start, end, sentence start, sentence end) for each fixed question."""
    return [
        [(h.source, h.start, h.end, h.sentence.start, h.sentence.end) for h in retriever.search(q, k=5)]
        for q in QUESTIONS
    ]


@pytest.fixture(scope="module")
def faults(seeds_index_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The driver, the recorder and, per build kind, what the index answers before and after the build."""
    from rag.config import IndexSettings
    from rag.documents import FolderCorpus
    from rag.index import open_index

    import rag

    assert Path(rag.__file__).resolve().is_relative_to(ROOT), f"the tests import rag from {rag.__file__}, not {ROOT}"
    base = tmp_path_factory.mktemp("faults")
    recorder = Recorder()
    recorder.learn(seeds_index_template)  # so rebuilding the seeds runs no model inference
    seeds = sorted((ROOT / "seeds").glob("*.txt"))
    reference: dict[str, Any] = {}
    for kind in KINDS:
        corpus, index_dir = base / kind / "corpus", base / kind / "index"
        corpus.mkdir(parents=True)
        for path in seeds:
            shutil.copy(path, corpus / path.name)
        shutil.copytree(seeds_index_template, index_dir)
        if kind == KINDS[0]:
            with opened_without_building(index_dir, corpus, recorder) as retriever:
                reference["before"] = answers(retriever)
                reference["generation"] = current_name(index_dir)
        change_corpus(kind, corpus)
        built = open_index(FolderCorpus(corpus), index_dir, IndexSettings(), lambda: recorder, rebuild=kind == "rebuild")
        built.close()
        with opened_without_building(index_dir, corpus, recorder) as retriever:
            reference[kind] = {"after": answers(retriever), "documents": built.report.documents,
                               "passages": built.report.passages}
    # The three kinds must be told apart by their answers, or check (a) proves little.
    assert reference["rebuild"]["after"] == reference["before"]
    assert reference["update-add"]["after"] != reference["before"]
    assert reference["update-change"]["after"] != reference["before"]
    cache = base / "embeddings.pickle"
    recorder.dump(cache)
    script = base / "fault_driver.py"
    script.write_text(textwrap.dedent(DRIVER), encoding="utf-8")
    driver = Driver(script, cache)
    yield {"driver": driver, "recorder": recorder, "reference": reference, "template": seeds_index_template}
    driver.close()


def check_after_kill(faults: dict[str, Any], kind: str, index_dir: Path, before_corpus: Path, corpus: Path,
                     switched: bool | None) -> bool:
    """Check (a); ``switched=None`` accepts either generation. Returns whether the new one is current."""
    reference = faults["reference"]
    old = reference["generation"]
    is_new = current_name(index_dir) != old
    if switched is not None:
        assert is_new == switched, f"CURRENT names {current_name(index_dir)}; expected the {'new' if switched else 'previous'} generation"
    with opened_without_building(index_dir, corpus if is_new else before_corpus, faults["recorder"]) as retriever:
        got = answers(retriever)
        documents, passages = retriever.report.documents, retriever.report.passages
        generation = retriever._index.directory.name
    assert generation == current_name(index_dir)
    if is_new:
        assert got == reference[kind]["after"], "the new generation answers differently from a complete build"
        assert (documents, passages) == (reference[kind]["documents"], reference[kind]["passages"])
    else:
        assert got == reference["before"], "the previous generation answers differently after the kill"
    return is_new


def recover(faults: dict[str, Any], kind: str, index_dir: Path, corpus: Path) -> None:
    """Check (b): run the same build again in-process; nothing a crash left may outlive it."""
    from rag.config import IndexSettings
    from rag.documents import FolderCorpus
    from rag.index import open_index

    reference = faults["reference"][kind]
    recorder = faults["recorder"]
    opened = open_index(FolderCorpus(corpus), index_dir, IndexSettings(), lambda: recorder, rebuild=kind == "rebuild")
    opened.close()
    assert (opened.report.documents, opened.report.passages) == (reference["documents"], reference["passages"])
    with opened_without_building(index_dir, corpus, recorder) as retriever:
        assert answers(retriever) == reference["after"]
    left = leftovers(index_dir)
    assert left == [], f"left behind after the build was run again ({opened.report.action}): {left}"


def prepare(tmp_path: Path, corpus_dir: Path, kind: str) -> Path:
    """A copy of the corpus as it was before the change, then the change applied to ``corpus_dir``."""
    before = tmp_path / "corpus-before"
    shutil.copytree(corpus_dir, before)
    change_corpus(kind, corpus_dir)
    return before


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "point"), CASES, ids=[f"{k}-{p}" for k, p in CASES])
def test_kill_at_named_point(faults: dict[str, Any], kind: str, point: str, corpus_dir: Path, seeds_index: Path,
                             tmp_path: Path) -> None:
    """SIGKILL right after a named step of the build; the index survives and the next build cleans up."""
    with opened_without_building(seeds_index, corpus_dir, faults["recorder"]) as retriever:
        assert answers(retriever) == faults["reference"]["before"]
    before = prepare(tmp_path, corpus_dir, kind)
    if point == "clean-midway":
        seed_crash_leftovers(seeds_index)
    result = faults["driver"].build(corpus_dir, seeds_index, rebuild=kind == "rebuild", kill=point)
    assert result["killed"], f"kill point {point} was never reached (child exit {result['code']}): {result['log']}"
    left = leftovers(seeds_index)
    check_after_kill(faults, kind, seeds_index, before, corpus_dir, switched=point in SWITCHED)
    recover(faults, kind, seeds_index, corpus_dir)
    print(f"\n[faults] {kind}/{point}: kills=1 recovered=1 leftovers-after-kill={len(left)} {left} "
          "leftovers-after-rerun=0")


def test_kill_at_random_moments(faults: dict[str, Any], tmp_path: Path) -> None:
    """``rag index`` (rebuild, or update after adding a file) SIGKILLed after seeded random delays."""
    driver = faults["driver"]
    template = ROOT / "seeds"

    def fresh(name: str, kind: str) -> tuple[Path, Path, Path]:
        corpus, index_dir = tmp_path / name / "corpus", tmp_path / name / "index"
        corpus.mkdir(parents=True)
        for path in template.glob("*.txt"):
            shutil.copy(path, corpus / path.name)
        shutil.copytree(faults["template"], index_dir)
        before = prepare(tmp_path / name, corpus, kind)
        return corpus, index_dir, before

    kinds = ("rebuild", "update-add")
    durations = {}
    for kind in kinds:  # one uninterrupted build of each kind sets the range of delays
        corpus, index_dir, _ = fresh(f"measure-{kind}", kind)
        result = driver.build(corpus, index_dir, rebuild=kind == "rebuild", cli=True)
        assert result["code"] == 0 and not result["killed"], result
        assert f"{faults['reference'][kind]['documents']} documents" in result["log"], result["log"]
        assert leftovers(index_dir) == []
        durations[kind] = result["seconds"]
    kills = switched = 0
    left_total = 0
    for run in range(RUNS):
        kind = kinds[run % 2]
        delay = random.Random(run).uniform(0.0, durations[kind])
        corpus, index_dir, before = fresh(f"run-{run}", kind)
        result = driver.build(corpus, index_dir, rebuild=kind == "rebuild", cli=True, kill_after=delay)
        assert result["killed"] or result["code"] == 0, result
        kills += result["killed"]
        left_total += len(leftovers(index_dir))
        switched += check_after_kill(faults, kind, index_dir, before, corpus, switched=None)
        recover(faults, kind, index_dir, corpus)
    print(f"\n[faults] random: runs={RUNS} kills={kills} recovered={RUNS} new-generation-current={switched} "
          f"leftovers-after-kill={left_total} leftovers-after-rerun=0 "
          f"build seconds={ {k: round(v, 2) for k, v in durations.items()} }")
