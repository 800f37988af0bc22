"""The embedding model without torch: an ONNX export of it, run by onnxruntime.

:func:`export` writes three files into a folder: the transformer as ONNX, the model's fast
tokenizer, and ``encoder.json`` with the pooling, normalisation and maximum length the
sentence-transformers pipeline of the model uses. It needs torch, and runs once per model:
:func:`cached_export` keeps the export in a cache folder (``$RAG_CACHE_DIR``, else
``~/.cache/rag``), keyed by the model's files. :class:`OnnxPassageEmbedder` encodes passages
with it when an index is built and hard-links the same files into the index as its question
encoder; :class:`OnnxQuestionEncoder` encodes questions with the index's copy. Both reproduce
the pipeline with ``onnxruntime`` and ``tokenizers`` only: loading and running them never
imports torch, transformers or sentence-transformers.

>>> encoder = OnnxQuestionEncoder("index/gen-000001/encoder")  # doctest: +SKIP
>>> encoder.encode(["What did Belarus seek from China?"]).shape  # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .embedding import ONNX_BACKEND, ONNX_INT8_BACKEND, model_file_names, offline
from .errors import ModelError

if TYPE_CHECKING:
    import numpy as np

#: The files of an exported encoder, inside its folder.
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "encoder.json"
FILES = (ONNX_FILE, TOKENIZER_FILE, CONFIG_FILE)
#: The int8 variant of ``ONNX_FILE`` (see :func:`quantize`), beside it in a cached export; never in an index.
INT8_FILE = "model.int8-rows.onnx"
#: The question model (see :func:`question_model`): beside ``ONNX_FILE`` in a cached export and in an index.
QUESTION_FILE = "question.q8w-b64.onnx"
#: Weights sharing one scale in ``QUESTION_FILE`` (with 128 or more, one text's vector depends on its batch).
QUESTION_BLOCK = 64
#: The files of an index's question encoder: ``QUESTION_FILE`` runs, ``FILES`` describe it (and run when it is absent).
QUESTION_FILES = (*FILES, QUESTION_FILE)
#: Tokens per model call (texts x longest text, padding included): texts are sorted by length
#: and cut into batches of about this size, so memory stays bounded and little goes to padding.
BATCH_TOKENS = 4096
#: Where exports are cached (default ``$XDG_CACHE_HOME/rag``, else ``~/.cache/rag``).
CACHE_ENV = "RAG_CACHE_DIR"
#: Part of every cache key: raise it when :func:`export` writes something else.
EXPORT_VERSION = 1

_POOLING_MODES = ("mean", "cls", "max")


class ExportError(ModelError):
    """The model's pipeline cannot be reproduced in ONNX (sentence-transformers encodes instead)."""


def _pipeline(model_path: Path) -> dict[str, Any]:
    """Pooling, normalisation and maximum length of a sentence-transformers folder's pipeline."""
    try:
        modules = json.loads((model_path / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ExportError(f"{model_path} has no readable modules.json") from None
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    if not kinds or kinds[0] != "Transformer" or any(kind not in ("Pooling", "Normalize") for kind in kinds[1:]):
        raise ExportError(f"pipeline {kinds} is not Transformer + Pooling (+ Normalize)")
    pooling = "mean"
    for module in modules:
        if str(module.get("type", "")).endswith("Pooling"):
            config = json.loads((model_path / module["path"] / "config.json").read_text(encoding="utf-8"))
            chosen = [mode for mode in _POOLING_MODES if config.get(f"pooling_mode_{mode}_tokens" if mode != "cls" else "pooling_mode_cls_token")]
            if len(chosen) != 1:
                raise ExportError(f"pooling {config} is not exactly one of {_POOLING_MODES}")
            pooling = chosen[0]
    # sentence-transformers truncates at max_seq_length, else at the tokenizer's model_max_length.
    limit = _json(model_path / "sentence_bert_config.json").get("max_seq_length")
    if not limit:
        positions = _json(model_path / "config.json").get("max_position_embeddings") or 512
        limit = min(_json(model_path / "tokenizer_config.json").get("model_max_length") or positions, positions)
    return {"pooling": pooling, "normalize": "Normalize" in kinds, "max_length": int(limit)}


def _json(path: Path) -> dict[str, Any]:
    """A JSON object file's content; empty when it is missing or not a JSON object."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def export(model_path: Path, folder: Path) -> None:
    """Write the ONNX encoder of the local model at ``model_path`` into ``folder`` (created), with its
    question model (:func:`add_question_model`).

    Raises ``ExportError`` when the pipeline has parts ONNX here does not reproduce (a Dense
    layer, an unknown pooling) or the model has no fast tokenizer.
    """
    pipeline = _pipeline(model_path)
    if not (model_path / TOKENIZER_FILE).is_file():
        raise ExportError(f"{model_path} has no fast tokenizer ({TOKENIZER_FILE})")
    offline()
    import torch
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()
    except Exception as error:  # noqa: BLE001 - any loader failure means: no ONNX for this model
        raise ExportError(f"cannot load {model_path} for export: {error}") from None
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class _Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.long)
    folder.mkdir(parents=True, exist_ok=True)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "hidden"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes: none apply to this export
        try:
            torch.onnx.export(_Hidden(), tuple(sample for _ in names), str(folder / ONNX_FILE), input_names=names,
                              output_names=["hidden"], dynamic_axes=axes, opset_version=17, dynamo=False)
        except Exception as error:  # noqa: BLE001 - any tracer failure means: no ONNX for this model
            raise ExportError(f"cannot export {model_path} to ONNX: {error}") from None
    shutil.copyfile(model_path / TOKENIZER_FILE, folder / TOKENIZER_FILE)
    config = {**pipeline, "inputs": names, "dimension": int(model.config.hidden_size)}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=1), encoding="utf-8")
    add_question_model(folder)


def cache_root() -> Path:
    """The folder that holds cached exports: ``$RAG_CACHE_DIR``, else ``rag`` in the user's cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "rag"


def cached_export(model_path: Path) -> Path:
    """The folder of the ONNX export of the local model at ``model_path``, exported on first use.

    The folder is named after the model's files (names, sizes, modification times), so a
    changed model gets a new export. The export is written beside it and renamed into place,
    so other processes see all of it or nothing. Raises ``ExportError`` when the model cannot
    be exported or the cache cannot be written.
    """
    identity = hashlib.sha256(f"{EXPORT_VERSION}\n{model_path.resolve()}\n".encode())
    for name in model_file_names(model_path):
        status = (model_path / name).stat()
        identity.update(f"{name}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
    folder = cache_root() / "onnx" / identity.hexdigest()[:32]
    if _complete(folder):
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    except OSError as error:
        raise ExportError(f"cannot write the export cache {folder.parent} (set {CACHE_ENV}): {error}") from None
    try:
        export(model_path, staging)
        if not _complete(folder):  # else another process put its export in place meanwhile
            shutil.rmtree(folder, ignore_errors=True)  # what is left of a damaged one
            os.rename(staging, folder)
    except OSError as error:
        if not _complete(folder):
            raise ExportError(f"cannot write the export cache {folder}: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def quantize(folder: Path) -> Path:
    """The int8 passage model of the export in ``folder`` (``INT8_FILE``, see :mod:`rag.quantization`),
    made on first use. Raises ``ExportError`` when it fails."""
    from .quantization import write_int8_model

    return _variant(folder, INT8_FILE, lambda source, name: write_int8_model(source, folder / TOKENIZER_FILE, name))


def question_model(folder: Path) -> Path:
    """The question model of the export in ``folder`` (``QUESTION_FILE``), made on first use.

    One question is a few tokens, so encoding it is bound by reading the float32 MatMul weights
    (about 44 MB a call), not by arithmetic. Here they are stored as 8-bit integers with one scale
    per ``QUESTION_BLOCK`` weights (onnxruntime's weight-only ``MatMulNBits``), and each text's
    activations are quantized per block of its own row as the int8 kernel runs, so a vector does
    not depend on the other texts of its batch. Measured on the benchmarks' queries: cosine with the
    float32 model's vectors 0.9994 on average, 0.998 at worst, in 0.55-0.6 of the time. Raises
    ``ExportError`` when it fails (the float32 model then encodes questions).
    """
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    def write(source: Path, name: str) -> None:
        config = DefaultWeightOnlyQuantConfig(block_size=QUESTION_BLOCK, is_symmetric=True, accuracy_level=4, bits=8)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), block_size=QUESTION_BLOCK, is_symmetric=True,
                                         accuracy_level=4, algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(name)

    return _variant(folder, QUESTION_FILE, write)


def add_question_model(folder: Path) -> None:
    """Make the question model beside the export in ``folder`` unless it is there; when it cannot be
    made, questions are encoded by the float32 model (:class:`OnnxQuestionEncoder` picks)."""
    with contextlib.suppress(ExportError):
        question_model(folder)


def _variant(folder: Path, file_name: str, write: Callable[[Path, str], None]) -> Path:
    """``folder / file_name``, written on first use by ``write(float32 model, temporary path)`` and renamed
    into place (other processes see all of it or nothing); the quantizers' advice and progress are not shown."""
    target = folder / file_name
    if target.is_file():
        return target
    handle, name = tempfile.mkstemp(prefix=".variant-", suffix=".onnx", dir=folder)
    os.close(handle)
    root, chatty = logging.getLogger(), logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    silence = logging.NullHandler()  # the quantizer advises pre-processing on the root logger: it fails here
    root.addHandler(silence)
    root.addFilter(_no_advice)
    level = chatty.level
    chatty.setLevel(logging.WARNING)  # one INFO line per node otherwise
    try:
        write(folder / ONNX_FILE, name)
        shutil.copymode(folder / ONNX_FILE, name)  # readable as the export is, not only by its maker
        os.replace(name, target)
    except Exception as error:  # noqa: BLE001 - any quantizer failure means: no such model
        raise ExportError(f"cannot quantize {folder / ONNX_FILE} into {file_name}: {error}") from None
    finally:
        chatty.setLevel(level)
        root.removeFilter(_no_advice)
        root.removeHandler(silence)
        Path(name).unlink(missing_ok=True)
    return target


def _no_advice(record: logging.LogRecord) -> bool:
    return "pre-processing before quantization" not in record.getMessage()


class _OnnxModel:
    """An exported model run by onnxruntime: tokenization, length-bucketed batches, pooling."""

    def __init__(self, folder: str | Path, name: str, threads: int, model_file: str = ONNX_FILE) -> None:
        import numpy as np
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.model_file = model_file
        try:
            config = json.loads((self.folder / CONFIG_FILE).read_text(encoding="utf-8"))
            self._tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
            self._session = self._open(threads)
            self.name = name
            self.dimension = int(config["dimension"])
            self.max_tokens = int(config["max_length"])
            self._inputs: list[str] = list(config["inputs"])
            self._pooling: str = config["pooling"]
            self._normalize = bool(config["normalize"])
        except Exception as error:  # noqa: BLE001 - any failure means: use the fallback
            raise ModelError(f"cannot load the ONNX encoder in {self.folder}: {error}") from None
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_tokens)
        self._np = np

    def _open(self, threads: int) -> Any:
        """An onnxruntime session of the model on the CPU with ``threads`` intra-op threads."""
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        # Idle threads sleep instead of spinning: faster on a busy machine, and the caller
        # runs tokenization, FAISS or numpy between model calls.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        return onnxruntime.InferenceSession(str(self.folder / self.model_file), options, providers=["CPUExecutionProvider"])

    def _session_for(self, rows: int) -> Any:
        """The session that runs a call of ``rows`` texts."""
        return self._session

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, as the sentence-transformers pipeline gives them.

        Texts are truncated at the model's maximum length (special tokens included), sorted
        by token count and run ``BATCH_TOKENS`` at a time; rows come back in the order given.
        """
        np = self._np
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = [len(encoding.ids) for encoding in encodings]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        first = 0
        while first < len(order):
            last = first + 1
            while last < len(order) and (last + 1 - first) * lengths[order[last]] <= BATCH_TOKENS:
                last += 1
            rows = order[first:last]
            vectors[rows] = self._run([encodings[row] for row in rows])
            first = last
        return vectors

    def _run(self, encodings: list[Any]) -> np.ndarray:
        np = self._np
        width = max(len(encoding.ids) for encoding in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
            types[row, : len(encoding.ids)] = encoding.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = self._session_for(len(encodings)).run(None, {name: feeds[name] for name in self._inputs})[0]
        if self._pooling == "cls":
            pooled = hidden[:, 0]
        elif self._pooling == "max":
            pooled = np.where(mask[..., None] > 0, hidden, -np.inf).max(axis=1)
        else:
            weights = mask.astype(np.float32)
            pooled = np.einsum("btd,bt->bd", hidden, weights) / np.maximum(weights.sum(axis=1, keepdims=True), 1)
        if self._normalize:
            pooled = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return pooled


class OnnxQuestionEncoder(_OnnxModel):
    """A ``QuestionEncoder`` running an exported model with onnxruntime on the CPU: ``model_file`` in
    ``folder``, by default the question model (``QUESTION_FILE``, see :func:`question_model`) when the
    folder holds one, else the float32 model."""

    def __init__(self, folder: str | Path, name: str = "onnx", model_file: str | None = None) -> None:
        if model_file is None:
            model_file = QUESTION_FILE if (Path(folder) / QUESTION_FILE).is_file() else ONNX_FILE
        self._wide_threads = min(4, os.cpu_count() or 1)
        super().__init__(folder, name, threads=1 if model_file == QUESTION_FILE else self._wide_threads, model_file=model_file)
        self._wide: Any = None
        self._opening = threading.Lock()

    def _session_for(self, rows: int) -> Any:
        """One question runs on one thread: the question model then reads its 8-bit weights from the
        cache as fast as two threads would, and leaves the other core to BM25 and the reads that run
        meanwhile (0.6 ms less a search at a million passages, measured). Batches of questions are
        compute-bound and get a second session, opened on first use, with a thread per core (up to 4):
        258 against 146 questions/s."""
        if rows == 1 or self._wide_threads == 1 or self.model_file != QUESTION_FILE:
            return self._session
        with self._opening:
            if self._wide is None:
                try:
                    self._wide = self._open(self._wide_threads)
                except Exception:  # noqa: BLE001 - the one-thread session still works
                    self._wide = self._session
        return self._wide


class OnnxPassageEmbedder(_OnnxModel):
    """A ``PassageEmbedder`` running an exported model with onnxruntime, tuned for throughput.

    One model call uses every core this process may run on. Token counts come from the
    export's tokenizer, exactly as the model's own tokenizer counts them. ``quantized`` runs
    the export's int8 model (``INT8_FILE``, made by :func:`quantize`) instead of the float32
    one; either way the index gets the same question encoder (:meth:`export_question_encoder`).

    >>> embedder = OnnxPassageEmbedder(cached_export(model_path), name="all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> embedder.count_tokens(["Minsk and Ankara"])  # doctest: +SKIP
    [3]
    """

    def __init__(self, folder: str | Path, name: str, quantized: bool = False) -> None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        super().__init__(folder, name, threads=cores, model_file=INT8_FILE if quantized else ONNX_FILE)
        from tokenizers import Tokenizer

        self.backend = ONNX_INT8_BACKEND if quantized else ONNX_BACKEND
        self._counter = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
        self._counter.no_padding()
        self._counter.no_truncation()

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Model tokens per text, without [CLS]/[SEP] and without truncation."""
        return [len(encoding.ids) for encoding in self._counter.encode_batch(list(texts), add_special_tokens=False)]

    def export_question_encoder(self, folder: Path) -> None:
        """Hard-link (copy where linking fails) this embedder's export and its question model into
        ``folder``: no second export. Without a question model (it could not be made), questions are
        encoded by the float32 model."""
        add_question_model(self.folder)  # an export cached before question models existed has none
        names = [name for name in QUESTION_FILES if name in FILES or (self.folder / name).is_file()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                try:
                    os.link(self.folder / name, folder / name)
                except OSError:
                    shutil.copy2(self.folder / name, folder / name)
        except OSError as error:
            raise ExportError(f"cannot copy the ONNX export into {folder}: {error}") from None
