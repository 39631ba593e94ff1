"""The run record: one object owns a run's life and its file, ``<name>.meta.json`` beside the outputs.

Every job writes the same schema (read back by :func:`read_run_record`):

    job        the job's name ("norms", "rephrase", ...)
    command    the command line of the latest run
    config     the resolved config (also saved as ``<name>.config.yaml``, which ``--config`` reads back)
    versions   package versions of the latest run
    complete   True once every selected item is written (``merge`` refuses shards that are not)
    status     "running", "finished", "interrupted" or "failed" (the latest run)
    seconds    wall time summed over every run
    tokens     tokens in and out per model and per stage, summed over every run (resumes included)
    runs       one entry per run: command, started, finished, seconds, status, tokens, items
    ...        job-specific fields (counts, summary, provenance, throughput)

The record is written when the run starts (``complete: false``), whenever the job asks (:meth:`JobRun.save`),
and when it ends, however it ends; every write is atomic. A resumed run keeps what earlier runs recorded.

While it runs, a job holds ``<name>.lock`` (:mod:`socialsynth.core.lock`): a second run on the same output refuses.
A rerun whose settings differ from the record's (other model, levels, temperature, template ...) would mix records
made two ways in one output, so it is refused with the differences listed, unless the config's ``overwrite`` is set
(``--overwrite``: the record, its config and the job's ``outputs`` are deleted and the run starts over). Settings
that do not change what a record holds (batch size, device, engine, index range, ...) may change between runs.

Example::

    with JobRun("norms", out_dir / "askmen_formality.meta.json", cfg) as run:
        with run.track(backend, "rewrite"):
            completions = backend.generate(chats, params)
        run.meta["n_written"] = 40
        run.mark_complete(True)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from socialsynth.core.errors import InputError, Interrupted
from socialsynth.core.io import atomic_write_json, meta_path
from socialsynth.core.lock import OutputLock, lock_path

log = logging.getLogger(__name__)

RECORD_KEYS = ("job", "command", "config", "versions", "complete", "status", "seconds", "tokens", "runs")
STATUSES = ("running", "finished", "interrupted", "failed")

# settings a resumed run may change: they change how the work is done, not what a record holds
RESUME_SAFE = frozenset({
    "batch_size", "eval_batch_size", "device", "backend", "api_base", "api_key_env", "concurrency", "request_timeout",
    "max_retries", "tensor_parallel", "max_num_seqs", "gpu_memory_utilization", "num_workers", "start_idx", "end_idx",
    "shard", "overwrite", "verbose", "log_level", "report", "progress", "output_dir", "output", "skip_bad_rows",
    "embedding_batch_size", "max_batch_size", "slots",
})


# called with the JobRun after every run that finished (see on_finish); socialsynth.jobs registers the report
_FINISH_HOOKS: list[Callable[[JobRun], None]] = []


def on_finish(hook: Callable[[JobRun], None]) -> None:
    """Call ``hook(run)`` after each run that ends "finished" (its record written, its lock still held). Jobs use it
    for what a flag asks at the end of every job, e.g. ``--report``; core itself knows nothing of what it does."""
    if hook not in _FINISH_HOOKS:
        _FINISH_HOOKS.append(hook)


def record_path(output: str | Path) -> Path:
    """``out/askmen_formality.jsonl`` -> ``out/askmen_formality.meta.json`` (the output's suffix is replaced)."""
    return meta_path(output)


def config_path(record: str | Path) -> Path:
    """``x.meta.json`` -> ``x.config.yaml``: the resolved config saved beside the record."""
    record = Path(record)
    return record.with_name(record.name[: -len(".meta.json")] + ".config.yaml")


def read_run_record(path: str | Path) -> dict[str, Any]:
    """Read any job's run record; InputError if the file is not one (missing keys, not JSON)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"cannot read the run record: {e.strerror or e}", path=path) from None
    except ValueError as e:
        raise InputError(f"the run record is not valid JSON ({e})", path=path) from None
    if not isinstance(record, dict):
        raise InputError("the run record is not a JSON object", path=path)
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise InputError(f"not a run record: missing {', '.join(missing)}", path=path)
    return record


def _load_previous(path: Path) -> dict[str, Any]:
    """The earlier runs' record ({} when there is none); a damaged one is refused rather than overwritten."""
    if not path.exists():
        return {}
    hint = "delete it (or pass --overwrite) to start over"
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"the run record is not UTF-8 text; {hint}", path=path) from None
    except OSError as e:
        raise InputError(f"cannot read the run record: {e.strerror or e}", path=path) from None
    except ValueError as e:
        raise InputError(f"the run record is not valid JSON ({e}); {hint}", path=path) from None
    if not isinstance(previous, dict):
        raise InputError(f"the run record is not a JSON object; {hint}", path=path)
    for field, kind, name in (("runs", list, "a list"), ("tokens", dict, "an object"),
                              ("seconds", (int, float), "a number")):
        if field in previous and (not isinstance(previous[field], kind) or isinstance(previous[field], bool)):
            raise InputError(f"field '{field}' of the run record is not {name}; {hint}", path=path)
    return previous


def _flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, Mapping):
        return {}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value and all(isinstance(k, str) for k in value):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def setting_differences(before: Any, now: Any, safe: frozenset[str] = RESUME_SAFE) -> list[str]:
    """``name: old -> new`` for each setting that changed between two recorded configs (nested groups flattened).

    Settings in ``safe`` and settings only one side knows (a field added by a newer version) are not compared."""
    old, new = _flatten(before), _flatten(now)
    changed = []
    for key in sorted(old.keys() & new.keys()):
        if key.rsplit(".", 1)[-1] in safe:
            continue
        if _same(old[key], new[key]):
            continue
        changed.append(f"{key.rsplit('.', 1)[-1]}: {old[key]!r} -> {new[key]!r}")
    return changed


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def _add_tokens(table: dict, model: str, stage: str, tokens_in: int, tokens_out: int, seconds: float) -> None:
    entry = table.setdefault(model, {}).setdefault(stage, {"in": 0, "out": 0, "seconds": 0.0})
    entry["in"] += int(tokens_in)
    entry["out"] += int(tokens_out)
    entry["seconds"] = round(entry.get("seconds", 0.0) + seconds, 3)


class JobRun:
    """A run of a job and its record file.

    Args:
        job: the job's name, written as ``job``.
        path: the record file, ``<name>.meta.json`` (see :func:`record_path`).
        config: the resolved config dataclass (or a mapping); written as ``config`` and saved as
            ``<name>.config.yaml`` when it is a declared config.
        command: the command line; default: this process's.
        resumable: False for a one-shot job that writes its output whole (prepare): the record and the saved config
            are written only when the run succeeds, so bad input leaves nothing behind.
        outputs: the files a resumed run appends to. A rerun with other settings is refused (they would mix records
            made two ways); with the config's ``overwrite`` set they are deleted, with the record, and the run starts
            over. Empty: the job rewrites its outputs whole, so other settings simply replace them.
        resume_safe: more settings (field names) that may change between runs of this job.
    """

    def __init__(self, job: str, path: str | Path, config: Any = None, *, command: str | None = None,
                 resumable: bool = True, outputs: Sequence[str | Path] = (),
                 resume_safe: Sequence[str] = ()) -> None:
        from socialsynth.core.provenance import command_line, redact_command

        self.job = job
        self.path = Path(path)
        self.config = config
        self.command = redact_command(command) if command is not None else command_line()  # no credentials
        self.resumable = resumable
        self.outputs = [Path(p) for p in outputs]
        self.resume_safe = RESUME_SAFE | frozenset(resume_safe)
        self.meta: dict[str, Any] = {}
        self.tokens: dict[str, dict[str, dict[str, float]]] = {}  # this run's
        self._t0 = 0.0
        self._entry: dict[str, Any] = {}
        self._lock = OutputLock(lock_path(self.path), what=self.outputs[0] if self.outputs else self.path)

    # ------------------------------------------------------------------ life

    def __enter__(self) -> JobRun:
        self._lock.acquire()
        try:
            return self._start()
        except BaseException:
            self._lock.release()
            raise

    def _start(self) -> JobRun:
        from socialsynth.core.config import to_plain
        from socialsynth.core.provenance import versions

        self._t0 = time.perf_counter()
        config = to_plain(self.config) if self.config is not None else None
        if self.config is not None and getattr(self.config, "overwrite", False) and self.outputs:
            self._start_over(config)
        self.meta = _load_previous(self.path)
        if self.meta.get("config") is not None and self._outputs_hold_records():
            self._refuse_other_settings(self.meta["config"], config)
        self.meta.setdefault("tokens", {})
        self.meta.setdefault("runs", [])
        self.meta.setdefault("seconds", 0.0)
        self.meta.update(job=self.job, command=self.command, versions=versions(), complete=False, status="running")
        self.meta["config"] = config
        if self.config is not None and not isinstance(self.config, Mapping):
            self.meta["config_file"] = str(config_path(self.path))
        self._entry = {"command": self.command, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "running"}
        self.meta["runs"].append(self._entry)
        if self.resumable:
            self._save_config()
            self.save()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            status = "finished" if exc_type is None else "interrupted" if _is_interruption(exc_type) else "failed"
            if exc_type is not None and not self.resumable:
                return False
            if not self.resumable:
                self._save_config()
            self.finish(status)
            if status == "finished":
                for hook in _FINISH_HOOKS:
                    hook(self)
        finally:
            self._lock.release()
        return False

    def _start_over(self, config: Any) -> None:
        """--overwrite: delete the outputs, the record and its saved config (we hold the lock). A rerun of an
        interrupted --overwrite run with the same settings (a SLURM requeue) resumes it instead of starting over."""
        try:
            previous = _load_previous(self.path)
        except InputError:
            previous = {}
        earlier = previous.get("config") or {}
        if (isinstance(earlier, Mapping) and earlier.get("overwrite") and previous.get("complete") is False
                and not setting_differences(earlier, config, self.resume_safe)):
            log.info("%s: resuming the interrupted --overwrite run", self.path)
            return
        gone = [p for p in (*self.outputs, self.path, config_path(self.path)) if p.exists()]
        for path in gone:
            path.unlink()
        if gone:
            log.warning("--overwrite: deleted %s; starting over", ", ".join(str(p) for p in gone))

    def _outputs_hold_records(self) -> bool:
        """Other settings only matter when there is something to mix with (a failed model load leaves none)."""
        return any(p.is_file() and p.stat().st_size > 0 for p in self.outputs)

    def _refuse_other_settings(self, before: Any, now: Any) -> None:
        changed = setting_differences(before, now, self.resume_safe)
        if not changed:
            return
        what = self.outputs[0] if self.outputs else self.path
        raise InputError(
            f"holds records made with other settings ({'; '.join(changed)}): rerun with the settings of "
            f"{config_path(self.path).name} to resume, pass --overwrite to start over, or choose another output",
            path=what)

    def _save_config(self) -> None:
        from socialsynth.core.config import save_config

        if self.config is not None and not isinstance(self.config, Mapping):
            save_config(self.config, config_path(self.path))

    def finish(self, status: str = "finished") -> None:
        """Close this run's entry (time, tokens, status) and write the record."""
        seconds = round(time.perf_counter() - self._t0, 2)
        self._entry.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S"), seconds=seconds, status=status,
                           tokens=self.tokens)
        self.meta["status"] = status
        self.meta["seconds"] = round(float(self.meta.get("seconds") or 0.0) + seconds, 2)
        self._t0 = time.perf_counter()
        self.save()

    def save(self) -> None:
        """Write the record now (atomically); jobs call it after costly steps a kill should not lose."""
        atomic_write_json(self.path, self.meta)

    # ------------------------------------------------------------------ what jobs record

    def mark_complete(self, complete: bool) -> None:
        self.meta["complete"] = bool(complete)

    def note_items(self, done: int) -> None:
        """Items this run processed (for the runs[] entry)."""
        self._entry["items"] = int(done)

    def note_run(self, **fields: Any) -> None:
        """Add job-specific fields to this run's entry in ``runs`` (e.g. the provenance this run used)."""
        self._entry.update(fields)

    def count_tokens(self, model: str, stage: str, tokens_in: int, tokens_out: int = 0,
                     seconds: float = 0.0) -> None:
        """Add tokens for ``model`` in ``stage`` to this run and to the totals over every run."""
        _add_tokens(self.tokens, model, stage, tokens_in, tokens_out, seconds)
        _add_tokens(self.meta["tokens"], model, stage, tokens_in, tokens_out, seconds)

    @contextmanager
    def track(self, backend: Any, stage: str, model: str | None = None) -> Iterator[None]:
        """Count the tokens ``backend`` reads and writes inside the block under ``stage``."""
        before = _stats_snapshot(backend)
        try:
            yield
        finally:
            after = _stats_snapshot(backend)
            name = model or _model_name(backend)
            self.count_tokens(name, stage, after["tokens_in"] - before["tokens_in"],
                              after["tokens_out"] - before["tokens_out"], after["seconds"] - before["seconds"])


def _is_interruption(exc_type: type) -> bool:
    return issubclass(exc_type, (Interrupted, KeyboardInterrupt))


def _stats_snapshot(backend: Any) -> dict[str, float]:
    stats = getattr(backend, "stats", None)
    if stats is None:
        return {"tokens_in": 0, "tokens_out": 0, "seconds": 0.0}
    if hasattr(stats, "snapshot"):
        return stats.snapshot()
    return {
        "tokens_in": getattr(stats, "prompt_tokens", 0) + getattr(stats, "scored_tokens", 0),
        "tokens_out": getattr(stats, "new_tokens", 0),
        "seconds": getattr(stats, "seconds", 0.0) + getattr(stats, "scoring_seconds", 0.0),
    }


def _model_name(backend: Any) -> str:
    try:
        info = backend.describe()
    except Exception:  # a backend that cannot describe itself still gets counted
        return type(backend).__name__
    return str(info.get("model") or info.get("name") or type(backend).__name__)


def throughput(stats: Any, done: int, seconds: float, unit: str = "items") -> dict[str, Any]:
    """The throughput block of a record from a backend's GenerationStats and this run's item count."""
    return {
        "generation_seconds": round(stats.seconds, 2),
        "rating_seconds": round(stats.scoring_seconds, 2),
        "new_tokens": stats.new_tokens,
        "padded_tokens": stats.padded_tokens,
        "prompt_tokens": stats.prompt_tokens,
        "new_tokens_per_second": round(stats.new_tokens / stats.seconds, 1) if stats.seconds else None,
        f"{unit}_this_run": done,
        f"{unit}_per_second": round(done / seconds, 3) if seconds else None,
    }
