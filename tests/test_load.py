"""Bounded load and race tests: the app under concurrent users while the corpus changes, and memory over many questions.

``test_concurrent_api_users_during_uploads_and_rebuilds`` serves the app from a separate
process (a crash there shows as a dead server, not a dead pytest) while a thread in that
process keeps adding small briefs and rebuilding the index, and many ``gradio_client`` users
call ``/search`` at the same time. It proves that no user call fails, the server survives and
shuts down cleanly, uploads and rebuilds really happened during the load, and every returned
passage and sentence is still an exact slice of its file on disk.

``test_thousand_sequential_questions_keep_memory_flat`` asks a thousand distinct questions in
process and proves the resident memory stays flat (question cache and stores do not grow).

Both are ``slow``. The CI defaults are short (12 s of load, 20 users, 1,000 questions); the
full run is::

    RAG_LOAD_SECONDS=60 .venv/bin/python -m pytest tests/test_load.py -s

Knobs: ``RAG_LOAD_SECONDS`` (load window, default 12), ``RAG_LOAD_USERS`` (concurrent users,
default 20), ``RAG_LOAD_QUESTIONS`` (sequential questions, default 1000).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gc
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODES = ("hybrid", "dense", "bm25")
#: Modes the load users draw from: hybrid most often, as it reads the most rows per search
#: (it scores the sentences of every candidate), so it holds the index longest.
USER_MODES = ("hybrid", "hybrid", "hybrid", "dense", "bm25")

LOAD_SECONDS = float(os.environ.get("RAG_LOAD_SECONDS", "12"))
LOAD_USERS = int(os.environ.get("RAG_LOAD_USERS", "20"))
LOAD_QUESTIONS = int(os.environ.get("RAG_LOAD_QUESTIONS", "1000"))

#: Seconds the server process may take to import, open the index and start serving.
STARTUP_TIMEOUT = 120.0
#: Seconds one /search call may take before the user counts it as hung.
CALL_TIMEOUT = 30.0
#: Seconds the load may run past its window for the first upload and rebuild to finish (the
#: first upload loads the passage embedder under load: 16 s on a busy CI machine).
CHURN_TIMEOUT = 300.0

TEMPLATES = (
    "What did Belarus seek from {}?",
    "Which {} firms held talks with Belarus?",
    "Did Minsk buy weapons from {}?",
    "How did cooperation between Belarus and {} develop?",
    "Which delegation from {} visited Minsk?",
    "What air defence systems were discussed with {}?",
    "Is Belarus replacing Russian systems with ones from {}?",
    "What did Lukashenka propose to {}?",
    "Which enterprises did the delegation from {} visit?",
    "Did {} sign a military-technical agreement with Belarus?",
    "What is the trend in relations between Belarus and {}?",
    "Were drones from {} offered to the Belarusian army?",
    "What industrial park projects involve {}?",
    "Who led the talks with {} on defence industry?",
    "What did the security brief say about {}?",
    "Did Belarusian exports to {} include missiles?",
    "How is {} involved in the Great Stone Industrial Park?",
    "Which joint projects with {} stalled?",
    "What weapons did Belarus show to {}?",
    "When did officials from {} come to Minsk?",
)
TERMS = (
    "China", "Turkey", "Russia", "Azerbaijan", "Kazakhstan", "Ukraine", "Vietnam", "Serbia", "India",
    "Egypt", "Sudan", "Venezuela", "Myanmar", "Algeria", "Pakistan", "Iran", "Armenia", "Uzbekistan",
    "Poland", "Lithuania", "NORINCO", "CASIC", "AVIC", "Roketsan", "Aselsan", "Baykar", "Tochmash",
    "the Polonaise", "the Great Stone park", "Chinese corporations", "Turkish firms", "Kazakh firms",
    "the State Authority for Military Industry", "Xu Zhanbin", "short-range air defence", "MLRS makers",
    "satellite builders", "drone makers", "optics plants", "electronics suppliers", "radar designers",
    "the Russian MoD", "Gulf buyers", "African customers", "Asian partners", "the CSTO", "NATO neighbours",
    "arms exporters", "helicopter repairers", "ammunition plants", "the Chinese army",
)


def questions(count: int, salt: str = "") -> list[str]:
    """``count`` distinct questions: templates × terms, numbered past their product."""
    base = [template.format(term) for term, template in itertools.product(TERMS, TEMPLATES)]
    out = [question + salt for question in base[:count]]
    for n in itertools.count(1):
        if len(out) >= count:
            break
        out.extend(f"{question} (case {n}){salt}" for question in base[: count - len(out)])
    assert len(set(out)) == count
    return out


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0..1) of ``values`` by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def rss_mb() -> float:
    """This process's resident set size in MB (``VmRSS`` of ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


# ---------------------------------------------------------------------------
# 1. Concurrent API users while files are uploaded and the index is rebuilt
# ---------------------------------------------------------------------------

# The server process: opens the index, serves the app on a free loopback port, writes
# "READY <port>" to stdout, then obeys stdin: "go" starts the corpus churn thread
# (back-to-back uploads of new small briefs, every eighth operation a full rebuild, until told
# to stop; one JSON line per outcome in the log),
# "stop" (or end of input) ends the churn after the operation under way, joins the thread,
# closes the server and exits 0.
DRIVER = textwrap.dedent(
    r'''
    import faulthandler, json, socket, sys, threading, time, traceback
    from pathlib import Path

    faulthandler.enable()
    corpus, index, incoming, log_path = map(Path, sys.argv[1:5])

    from rag.retrieval import Retriever
    from rag.ui import SearchApp, serve

    retriever = Retriever.open(corpus, index)
    retriever.search("What did Belarus seek from China?", 3)  # load the model before users arrive
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo = serve(retriever, "127.0.0.1", port, block=False)
    print("READY", port, flush=True)

    PARTNERS = [
        ("China", "NORINCO", "short-range air defence systems"),
        ("Turkey", "Roketsan", "guided rockets for the Polonaise"),
        ("China", "CASIC", "satellite communications"),
        ("Turkey", "Aselsan", "electronic warfare equipment"),
        ("China", "AVIC", "training aircraft"),
        ("Turkey", "Baykar", "reconnaissance drones"),
    ]

    def brief(n):
        country, firm, topic = PARTNERS[n % len(PARTNERS)]
        day = 1 + n % 27
        return (
            "by\n"
            f"March {day} – March {day + 1}, 2019\n"
            "Security issues\n\n"
            f"Belarus and {country} discuss {topic} (note {n})\n\n"
            "The situation has not changed\n"
            f"Belarus and {country} discuss {topic} (note {n})\n\n"
            f"A delegation of {firm} from {country} visited Minsk for talks number {n} on {topic}. "
            f"Belarusian enterprises offered to assemble parts of the {topic} locally.\n\n"
            f"Officials in Minsk expect a contract with {firm} within a year. "
            f"The State Authority for Military Industry called {country} a key partner.\n"
        )

    stop = threading.Event()
    counts = {"upload": 0, "rebuild": 0, "failed": 0}

    def churn():
        app = SearchApp(retriever)
        n = 0
        with open(log_path, "a", encoding="utf-8") as log:
            while not stop.is_set():
                # U R U U U U U U U R ...: every upload re-indexes too (and swaps the live index)
                # at a tenth of a rebuild's cost, so mostly uploads swap the index most often.
                op = "rebuild" if n % 8 == 1 else "upload"
                started = time.monotonic()
                entry = {"op": op, "n": n}
                try:
                    if op == "upload":
                        path = incoming / f"note-{n:04d}-belarus.txt"
                        path.write_text(brief(n), encoding="utf-8")
                        status = app.upload([str(path)])[0]
                        ok = f"Added {path.name}" in status
                    else:
                        status = app.rebuild()[0]
                        ok = "Rebuild finished" in status
                    ok = ok and "failed" not in status.lower() and "rag-error" not in status
                    entry.update(ok=ok, message=status)
                except BaseException:
                    entry.update(ok=False, message=traceback.format_exc())
                entry["seconds"] = round(time.monotonic() - started, 3)
                counts[op if entry["ok"] else "failed"] += 1
                log.write(json.dumps(entry) + "\n")
                log.flush()
                n += 1

    worker = None
    for line in sys.stdin:
        command = line.split()
        if command and command[0] == "go" and worker is None:
            worker = threading.Thread(target=churn, daemon=True)
            worker.start()
        elif command and command[0] == "stop":
            break
    stop.set()
    if worker is not None:
        worker.join(timeout=120)  # a rebuild under way on a slow machine
    demo.close()
    print("DONE", json.dumps(counts), flush=True)
    '''
)


class User(threading.Thread):
    """One API user: its own client, varied questions, modes and k, until the deadline."""

    def __init__(self, number: int, url: str, server: subprocess.Popen, start: threading.Event) -> None:
        super().__init__(name=f"load-user-{number}", daemon=True)
        self.number, self.url, self.server, self.start_event = number, url, server, start
        self.ready = threading.Event()
        self.deadline = float("inf")  # set by the test when the load ends
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.results: list[tuple[str, dict]] = []
        self.client_races = 0

    def run(self) -> None:
        try:
            from gradio_client import Client

            client = Client(
                self.url, verbose=False, analytics_enabled=False, download_files=False,
                httpx_kwargs={"timeout": CALL_TIMEOUT},
            )
        except Exception as error:  # noqa: BLE001 - every failure is a finding
            self.errors.append(f"user {self.number}: client setup: {error.__class__.__name__}: {error}")
            self.ready.set()
            return
        self.ready.set()
        self.start_event.wait(STARTUP_TIMEOUT)
        rng = random.Random(self.number)
        asked = questions(len(TEMPLATES) * len(TERMS), salt=f" [u{self.number}]")
        rng.shuffle(asked)
        for question in itertools.cycle(asked):
            if time.monotonic() >= self.deadline or self.server.poll() is not None:
                break
            k, mode = rng.randint(1, 10), rng.choice(USER_MODES)
            started = time.perf_counter()
            try:
                result = client.predict(question, k, mode, api_name="/search")
            except concurrent.futures.CancelledError:
                # gradio_client's own cancel watcher races its stream thread (utils.check_for_cancel
                # raises when the thread completes first): the server never saw a failure. Counted
                # and bounded by the test, not hidden.
                self.client_races += 1
                continue
            except Exception as error:  # noqa: BLE001
                self.errors.append(f"user {self.number}: {mode} k={k} {question!r}: {error.__class__.__name__}: {error}")
                continue
            finally:
                self.latencies.append(time.perf_counter() - started)
            if not isinstance(result, dict) or result.get("question") != question or len(result.get("hits", ())) > k:
                self.errors.append(f"user {self.number}: malformed answer to {question!r}: {str(result)[:300]}")
                continue
            self.results.append((question, result))


def _churn(log: Path) -> list[dict]:
    """The corpus operations the server finished so far (one JSON line each)."""
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def _tail(path: Path, chars: int = 6000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except FileNotFoundError:
        return "(none)"


def _crash_summary(path: Path) -> str:
    """Each distinct exception or fatal-error line of the server's stderr with its count, first seen first."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "(no stderr)"
    marks = ("Error:", "Error.", "Exception:", "Fatal Python error", "Segmentation fault", "Aborted")
    counts: dict[str, int] = {}
    for line in lines:
        if not line.startswith(" ") and any(mark in line for mark in marks):
            counts[line.strip()[:300]] = counts.get(line.strip()[:300], 0) + 1
    return "\n".join(f"{count:4d} x {line}" for line, count in counts.items()) or "(no exception lines)"


def _fatal_stacks(path: Path) -> str:
    """The faulthandler dump of a crashed server, cut to the threads and frames in this project."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    if "Fatal Python error" not in text:
        return ""
    dump = text[text.index("Fatal Python error") :].split("\nExtension modules:", 1)[0]
    kept = [dump.splitlines()[0]]
    for block in dump.split("\n\n")[1:]:
        lines = block.strip().splitlines()
        frames = [line for line in lines[1:] if "/rag/" in line or "driver.py" in line]
        if lines and frames:
            kept += [lines[0], *frames]
    return "\n--- crashed server, project frames of each thread (innermost first):\n" + "\n".join(kept)


def _citation_errors(corpus: Path, results: list[tuple[str, dict]]) -> list[str]:
    texts: dict[str, str | None] = {}
    problems = []
    for question, result in results:
        for hit in result["hits"]:
            source = hit["source"]
            if source not in texts:
                path = corpus / source
                texts[source] = path.read_text(encoding="utf-8") if path.is_file() else None
            text = texts[source]
            sentence = hit["sentence"]
            if text is None:
                problems.append(f"{question!r}: {source} is not in the corpus folder")
            elif text[hit["start"] : hit["end"]] != hit["text"]:
                problems.append(f"{question!r}: {source}[{hit['start']}:{hit['end']}] is not the hit text")
            elif text[sentence["start"] : sentence["end"]] != sentence["text"]:
                problems.append(f"{question!r}: {source}[{sentence['start']}:{sentence['end']}] is not the sentence")
            elif not hit["start"] <= sentence["start"] < sentence["end"] <= hit["end"]:
                problems.append(f"{question!r}: the sentence of {source} lies outside its passage")
    return problems


@pytest.mark.slow
def test_concurrent_api_users_during_uploads_and_rebuilds(corpus_dir: Path, seeds_index: Path, tmp_path: Path) -> None:
    incoming, scratch = tmp_path / "incoming", tmp_path / "scratch"
    incoming.mkdir()
    scratch.mkdir()
    script, log, out, err, client_err = (
        tmp_path / name for name in ("driver.py", "churn.jsonl", "driver.out", "driver.err", "clients.err")
    )
    script.write_text(DRIVER, encoding="utf-8")
    env = {
        **os.environ, "PYTHONFAULTHANDLER": "1", "GRADIO_ANALYTICS_ENABLED": "False",
        "TMPDIR": str(scratch), "GRADIO_TEMP_DIR": str(scratch), "PYTHONPATH": str(ROOT),
    }
    users: list[User] = []
    with out.open("w") as stdout, err.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, str(script), str(corpus_dir), str(seeds_index), str(incoming), str(log)],
            stdin=subprocess.PIPE, stdout=stdout, stderr=stderr, cwd=ROOT, env=env, text=True,
            start_new_session=True,
        )

    def evidence() -> str:
        return (
            f"\n--- server exit code: {server.poll()}\n--- server stdout:\n{_tail(out, 1000)}"
            f"\n--- exceptions in server stderr:\n{_crash_summary(err)}{_fatal_stacks(err)}"
            f"\n--- server stderr (tail):\n{_tail(err, 1500)}\n--- churn log (tail):\n{_tail(log, 2000)}"
            f"\n--- client-side tracebacks printed by gradio_client: {_tail(client_err).count('Traceback (most')}"
            f" (in {client_err})"
        )

    try:
        started = time.monotonic()
        while "READY" not in out.read_text():
            assert server.poll() is None, "the server process died while starting" + evidence()
            assert time.monotonic() - started < STARTUP_TIMEOUT, "the server did not start in time" + evidence()
            time.sleep(0.2)
        port = int(out.read_text().split("READY", 1)[1].split()[0])
        url = f"http://127.0.0.1:{port}/"

        go = threading.Event()
        users = [User(n, url, server, go) for n in range(LOAD_USERS)]
        # gradio_client prints a traceback from each user's stream thread when the server dies:
        # keep them in a file (named in the failure message) rather than flooding the terminal.
        with client_err.open("w") as sink, contextlib.redirect_stderr(sink):
            for user in users:
                user.start()
            for user in users:
                user.ready.wait(STARTUP_TIMEOUT)
            assert server.stdin is not None
            server.stdin.write("go\n")
            server.stdin.flush()
            go.set()
            # The load lasts its window and, on a slow machine, until one upload and one
            # rebuild have finished under it (bounded by CHURN_TIMEOUT).
            started = time.monotonic()
            time.sleep(LOAD_SECONDS)
            while time.monotonic() - started < LOAD_SECONDS + CHURN_TIMEOUT and server.poll() is None:
                finished = {entry["op"] for entry in _churn(log)}
                if {"upload", "rebuild"} <= finished or any(not entry["ok"] for entry in _churn(log)):
                    break
                time.sleep(0.5)
            deadline = time.monotonic()
            for user in users:
                user.deadline = deadline
            for user in users:
                user.join(timeout=max(0.0, deadline - time.monotonic()) + CALL_TIMEOUT + 5)
        hung = [user.name for user in users if user.is_alive()]
        alive_after_load = server.poll() is None
        exit_code = None
        if alive_after_load:
            server.stdin.write("stop\n")
            server.stdin.flush()
            try:
                exit_code = server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                exit_code = "did not exit within 60 s of 'stop'"

        latencies = [seconds for user in users for seconds in user.latencies]
        errors = [error for user in users for error in user.errors]
        races = sum(user.client_races for user in users)
        results = [item for user in users for item in user.results]
        churn = _churn(log)
        uploads = sum(1 for entry in churn if entry["op"] == "upload" and entry["ok"])
        rebuilds = sum(1 for entry in churn if entry["op"] == "rebuild" and entry["ok"])
        churn_failures = [entry for entry in churn if not entry["ok"]]
        print(
            f"\n[load] {LOAD_USERS} users x {deadline - started:.0f}s: {len(latencies)} requests, {len(errors)} errors, "
            f"p50 {percentile(latencies, 0.50) * 1000:.0f} ms, p95 {percentile(latencies, 0.95) * 1000:.0f} ms, "
            f"{uploads} uploads, {rebuilds} rebuilds, {len(churn_failures)} failed corpus changes, "
            f"{races} gradio_client cancel races, "
            f"server {'alive' if alive_after_load else f'DEAD (exit {server.returncode})'}"
        )

        assert alive_after_load, f"the server process died under load (exit {server.returncode})" + evidence()
        assert not hung, f"users still waiting after the deadline: {hung}" + evidence()
        assert not errors, f"{len(errors)} of {len(latencies)} calls failed; first ones:\n" + "\n".join(errors[:8]) + evidence()
        assert races <= max(1, len(latencies) // 100), f"{races} of {len(latencies)} calls hit gradio_client's cancel race"
        assert not churn_failures, "uploads or rebuilds failed:\n" + json.dumps(churn_failures[:3], indent=1) + evidence()
        assert uploads >= 1 and rebuilds >= 1, f"only {uploads} uploads and {rebuilds} rebuilds ran" + evidence()
        assert results, "no search returned" + evidence()
        problems = _citation_errors(corpus_dir, results)
        assert not problems, f"{len(problems)} inexact citations; first ones:\n" + "\n".join(problems[:8])
        assert exit_code == 0, f"the server did not exit cleanly when told to: {exit_code}" + evidence()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        if server.stdin is not None:
            server.stdin.close()


# ---------------------------------------------------------------------------
# 2. A thousand distinct questions in a row: memory stays flat
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_thousand_sequential_questions_keep_memory_flat(corpus_dir: Path, seeds_index: Path) -> None:
    from rag.retrieval import Retriever

    retriever = Retriever.open(corpus_dir, seeds_index)
    for question in questions(50, salt=" (warm-up)"):
        retriever.search(question, 5, mode="hybrid")
    gc.collect()
    before = rss_mb()
    latencies = []
    for question in questions(LOAD_QUESTIONS):
        started = time.perf_counter()
        hits = retriever.search(question, 5, mode="hybrid")
        latencies.append(time.perf_counter() - started)
        assert 1 <= len(hits) <= 5
    gc.collect()
    after = rss_mb()
    print(
        f"\n[memory] {LOAD_QUESTIONS} distinct questions: RSS {before:.1f} -> {after:.1f} MB "
        f"({after - before:+.1f} MB), p50 {percentile(latencies, 0.50) * 1000:.1f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.1f} ms, total {sum(latencies):.1f} s"
    )
    assert after - before < 50, f"RSS grew by {after - before:.1f} MB over {LOAD_QUESTIONS} questions"
