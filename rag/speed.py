"""``rag bench``: how fast the question path is, measured against a plain reference recipe in one run.

Every figure is measured on this machine, in this run, for both our path and the reference
recipe (sentence-transformers encode + an exact FAISS search over the same passage vectors),
so ratios compare like with like:

- cold start: a fresh process, from start to printed answer, index already built (median of runs);
- warm query p50/p95: one question end to end in a live process (hybrid search with the
  supporting sentence for us), question cache cleared each time;
- batch: many distinct questions from a file to JSON lines, whole process timed;
  peak RSS and RSS growth of that process.

>>> result = run_bench("seeds", "index", runs=5, batch_questions=10_000)  # doctest: +SKIP
>>> result["query_p50_ms"], result["reference"]["query_p50_ms"]  # doctest: +SKIP
(5.9, 12.4)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import DEFAULT_K

#: The reference recipe, run as its own process: load the model and an exact FAISS index,
#: then answer the questions of a file (or one question) with passage ids.
REFERENCE_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["HF_HUB_OFFLINE"] = "1"
    import faiss
    from sentence_transformers import SentenceTransformer
    model_path, index_path, k, source = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    model = SentenceTransformer(model_path, device="cpu")
    index = faiss.read_index(index_path)
    if source == "--question":
        vectors = model.encode([sys.argv[5]], normalize_embeddings=True)
        print(index.search(vectors, k)[1][0].tolist())
    else:
        questions = [line.strip() for line in open(source, encoding="utf-8") if line.strip()]
        out = sys.stdout
        for first in range(0, len(questions), 64):
            batch = questions[first : first + 64]
            scores, ids = index.search(model.encode(batch, batch_size=64, normalize_embeddings=True), k)
            for question, row in zip(batch, ids.tolist()):
                out.write(json.dumps({"question": question, "ids": row}) + "\\n")
    """
)

_TEMPLATES = (
    "What did {a} seek from {b}?", "How does {a} cooperate with {b} on {c}?", "Which {c} did {a} discuss with {b}?",
    "Did {a} sign a {c} agreement with {b}?", "What is the role of {b} in {a}'s {c}?",
)
_NAMES = ("Belarus", "Minsk", "China", "Turkey", "Azerbaijan", "Kazakhstan", "Russia", "Lukashenka", "Beijing", "Ankara")
_TOPICS = ("missiles", "radars", "air defence", "drones", "military exports", "wheeled chassis", "satellites",
           "armoured vehicles", "loans", "joint ventures", "training", "optics", "electronics", "the Polonaise")


def distinct_questions(count: int) -> list[str]:
    """``count`` different questions in the briefs' domain (templates x names x topics x a number).

    >>> len(set(distinct_questions(500))) == 500
    True
    """
    questions = []
    for number in range(count):
        template = _TEMPLATES[number % len(_TEMPLATES)]
        a, b = _NAMES[number % len(_NAMES)], _NAMES[(number // len(_NAMES) + 1 + number) % len(_NAMES)]
        topic = _TOPICS[(number // 7) % len(_TOPICS)]
        questions.append(template.format(a=a, b=b, c=topic) + f" ({number})")
    return questions


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _timed_process(
    command: list[str], stdout: Any = subprocess.DEVNULL, *, check: bool = True
) -> tuple[float, float, list[float]]:
    """(wall seconds, peak RSS in MB, RSS samples in MB every 0.1 s) of a command run to completion.

    The peak is the largest ``VmHWM`` read from ``/proc`` while the command ran (``ru_maxrss``
    would count the parent's memory copied at fork).
    """
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=errors)
        samples: list[float] = []
        peaks: list[float] = [0.0]
        finished = threading.Event()

        def sample() -> None:
            while not finished.wait(0.1):
                try:
                    status = dict(line.split(":", 1) for line in Path(f"/proc/{process.pid}/status").read_text().splitlines())
                    samples.append(int(status["VmRSS"].split()[0]) / 1024)
                    peaks.append(int(status["VmHWM"].split()[0]) / 1024)
                except (OSError, KeyError, ValueError):
                    return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, _ = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        finished.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        if check and process.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(command[:5])} failed: {errors.read().decode(errors='replace')[-500:]}")
    return seconds, max(peaks), samples


def _median_wall(command: list[str], runs: int, *, check: bool = True) -> float:
    """Median wall time of ``runs`` runs; ``check=False`` accepts a failing exit status (usage errors)."""
    return statistics.median(_timed_process(command, check=check)[0] for _ in range(runs))


def _growth(samples: Sequence[float]) -> float:
    """RSS growth over a run: the end against the point a tenth of the way in (start-up excluded)."""
    if len(samples) < 5:
        return 0.0
    return max(samples[len(samples) // 10 :]) - samples[len(samples) // 10]


def run_bench(corpus: str | Path, index_dir: str | Path, *, runs: int = 5, batch_questions: int = 10_000,
              k: int = DEFAULT_K) -> dict[str, Any]:
    """Measure our question path and the reference recipe; the dictionary ``rag bench --json`` prints."""
    import numpy as np

    from .embedding import resolve_model_path
    from .retrieval import Retriever

    retriever = Retriever.open(corpus, index_dir)  # built or updated here, not timed
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    questions = [json.loads(line)["question"] for name in ("seeds_qa.jsonl", "seeds_qa_heldout.jsonl")
                 for path in [Path(__file__).resolve().parent.parent / "tests" / "data" / name] if path.is_file()
                 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] or distinct_questions(60)
    batch_file = work / "questions.txt"
    batch_file.write_text("\n".join(distinct_questions(batch_questions)) + "\n", encoding="utf-8")
    ask = [sys.executable, "-m", "rag.cli", "ask", "--corpus", str(corpus), "--index-dir", str(index_dir), "-k", str(k)]
    ours: dict[str, Any] = {"cold_start_s": _median_wall([*ask, questions[0]], runs)}
    timings = []
    for _ in range(3):
        for question in questions:
            retriever.forget_questions()
            started = time.perf_counter()
            retriever.search(question, k)
            timings.append((time.perf_counter() - started) * 1000)
    ours["query_p50_ms"], ours["query_p95_ms"] = statistics.median(timings), _percentile(timings, 0.95)
    with (work / "answers.jsonl").open("wb") as answers:
        seconds, peak, samples = _timed_process([*ask, "--batch", str(batch_file)], stdout=answers)
    ours.update(batch_questions_per_s=batch_questions / seconds, peak_rss_mb=peak, batch_rss_growth_mb=_growth(samples))

    import faiss

    flat = faiss.IndexFlatIP(retriever.encoder.dimension)
    flat.add(np.ascontiguousarray(retriever.passage_vectors()))
    faiss.write_index(flat, str(work / "reference.faiss"))
    script = work / "reference.py"
    script.write_text(REFERENCE_SCRIPT, encoding="utf-8")
    model = str(resolve_model_path(retriever.settings.model))
    reference_cmd = [sys.executable, str(script), model, str(work / "reference.faiss"), str(k)]
    reference: dict[str, Any] = {"cold_start_s": _median_wall([*reference_cmd, "--question", questions[0]], runs)}
    from .embedding import MODEL_BACKEND, passage_embedder

    model_in_process = passage_embedder(retriever.settings.model, MODEL_BACKEND)
    timings = []
    for _ in range(3):
        for question in questions:
            started = time.perf_counter()
            flat.search(model_in_process.encode([question]), k)
            timings.append((time.perf_counter() - started) * 1000)
    reference["query_p50_ms"], reference["query_p95_ms"] = statistics.median(timings), _percentile(timings, 0.95)
    with (work / "reference.jsonl").open("wb") as answers:
        seconds, peak, samples = _timed_process([*reference_cmd, str(batch_file)], stdout=answers)
    reference.update(batch_questions_per_s=batch_questions / seconds, peak_rss_mb=peak, batch_rss_growth_mb=_growth(samples))
    help_s = _median_wall([sys.executable, "-m", "rag.cli", "--help"], runs)
    mistake_s = _median_wall([sys.executable, "-m", "rag.cli", "ask", "-k", "0", "x"], runs, check=False)
    shutil.rmtree(work, ignore_errors=True)
    result = {
        **{key: round(value, 4) for key, value in ours.items()},
        "help_s": round(help_s, 4),
        "usage_mistake_s": round(mistake_s, 4),
        "reference": {key: round(value, 4) for key, value in reference.items()},
        "ratios": {
            "cold_start": round(ours["cold_start_s"] / reference["cold_start_s"], 3),
            "query_p50": round(ours["query_p50_ms"] / reference["query_p50_ms"], 3),
            "batch_time_per_question": round(reference["batch_questions_per_s"] / ours["batch_questions_per_s"], 3),
        },
        "setup": {"corpus": str(corpus), "passages": retriever.report.passages, "warm_questions": len(timings),
                  "batch_questions": batch_questions, "runs": runs, "cpus": os.cpu_count()},
    }
    return result


_ROWS = (
    ("cold start, fresh `rag ask` process to printed answer", "cold_start_s", "s"),
    ("warm query p50, end to end", "query_p50_ms", "ms"),
    ("warm query p95, end to end", "query_p95_ms", "ms"),
    ("batch of distinct questions, whole process", "batch_questions_per_s", "questions/s"),
    ("peak RSS of the batch process", "peak_rss_mb", "MB"),
    ("RSS growth over the batch run", "batch_rss_growth_mb", "MB"),
)


def markdown(result: dict[str, Any]) -> str:
    """The figures as a markdown table: ours, the reference, the ratio."""
    lines = ["| figure | rag | reference recipe | ratio |", "|---|---:|---:|---:|"]
    for label, key, unit in _ROWS:
        ours, reference = result[key], result["reference"][key]
        ratio = f"{ours / reference:.2f}×" if reference else "—"
        lines.append(f"| {label} | {ours:,.2f} {unit} | {reference:,.2f} {unit} | {ratio} |")
    lines.append(f"| `rag --help` | {result['help_s']:.2f} s | | |")
    lines.append(f"| `rag ask` with a usage mistake | {result['usage_mistake_s']:.2f} s | | |")
    setup = result["setup"]
    lines.append(f"\n{setup['passages']} passages; {setup['warm_questions']} warm queries; "
                 f"{setup['batch_questions']:,} batch questions; medians of {setup['runs']} cold starts; {setup['cpus']} CPUs.")
    return "\n".join(lines) + "\n"
