"""What the data card says about how the rows were made, read from the run records and the rows themselves:
models and revisions, templates and their hashes, sampling parameters and seeds, judges, presets, filter flags,
skip counts and failed rows. Everything here is read, nothing is assumed: a fact no record holds is not printed."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from socialsynth.export.tables import Subset, failure_of

MODEL_KEYS = ("model", "model_revision", "model_source", "backend", "dtype", "quantization",
              "checkpoint_quantization")
SAMPLING_KEYS = frozenset({"temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens", "seed", "n",
                           "do_sample", "min_p", "stop"})
ID_KEYS = ("id", "post_id", "user_id", "case_id", "item_id")
FLAG_GROUPS = ("flags", "filters")
NOT_MODELS = frozenset({"none", "generator", "null", ""})  # settings that name no model
# the settings, besides "model", that name a model (others ending in _model do not: select_model, ...)
MODEL_SETTINGS = frozenset({"embedding_model", "content_model", "fidelity_model", "fluency_model",
                            "sentiment_model", "upvote_model"})
_PRESET = re.compile(r"--preset[= ](\S+)")


@dataclass
class Provenance:
    """The distinct models, templates, sampling settings, seeds and judges behind some rows."""

    models: list[dict[str, Any]] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    sampling: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[Any] = field(default_factory=list)
    judges: list[str] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)
    selections: list[dict[str, Any]] = field(default_factory=list)  # best-of-N: judge, rule, n

    def add_unique(self, name: str, value: Any) -> None:
        bucket = getattr(self, name)
        if value not in bucket:
            bucket.append(value)


def _dicts(value: Any, key: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every object inside ``value`` with the key it sits under."""
    if isinstance(value, Mapping):
        yield key, value
        for k, v in value.items():
            yield from _dicts(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _dicts(v, key)


def _add_model(prov: Provenance, role: str, name: Any, details: Mapping[str, Any] | None = None) -> None:
    if not isinstance(name, str) or name.lower() in NOT_MODELS:
        return
    entry = {"role": role, **{k: details[k] for k in MODEL_KEYS if details and details.get(k) is not None}}
    entry["model"] = name
    if not any(m["model"] == name and m["role"] == role for m in prov.models):
        prov.models.append(entry)


def _add_from(prov: Provenance, source: Any) -> None:
    for key, obj in _dicts(source):
        if isinstance(obj.get("model"), str):
            _add_model(prov, "generator" if key in ("", "provenance", "model") else key, obj["model"], obj)
        for other in (k for k in obj if k in MODEL_SETTINGS):
            _add_model(prov, other, obj[other])
        for k, v in obj.items():
            if "template" in k and isinstance(v, str) and v:
                hashed = obj.get(f"{k}_hash") or obj.get("template_hash") if k == "template" else None
                prov.add_unique("templates", f"{v}@{hashed}" if hashed and "@" not in v else v)
            elif k.endswith("_hash") and isinstance(v, str) and not k.startswith("template"):
                label = obj.get(k[: -len("_hash")])
                prov.add_unique("templates", f"{k[:-5]} {label}@{v}" if isinstance(label, str) else f"{k}: {v}")
        sampling = {k: v for k, v in obj.items() if k in SAMPLING_KEYS and not isinstance(v, (dict, list))}
        if key in ("sampling", "params", "rating_sampling", "generation_params") and sampling:
            prov.add_unique("sampling", sampling)
        if isinstance(obj.get("seed"), int) and not isinstance(obj.get("seed"), bool):
            prov.add_unique("seeds", obj["seed"])


def provenance_of(subset: Subset, max_distinct_rows: int = 50) -> Provenance:
    """The provenance of a subset: its run records (``provenance``, ``config``, commands) and the distinct
    ``provenance`` objects and judges of its rows."""
    prov = Provenance()
    for run in subset.runs:
        meta = run.meta
        _add_from(prov, meta.get("provenance"))
        config = meta.get("config") if isinstance(meta.get("config"), Mapping) else {}
        if isinstance(config.get("seed"), int):
            prov.add_unique("seeds", config["seed"])
        for command in [meta.get("command"), *(r.get("command") for r in meta.get("runs") or [])]:
            for name in _PRESET.findall(str(command or "")):
                prov.add_unique("presets", name)
    seen: set[str] = set()
    for row in subset.all_rows():
        for judge in row.get("judges") or []:
            prov.add_unique("judges", str(judge))
        if isinstance(row.get("selection"), Mapping):
            prov.add_unique("selections", dict(row["selection"]))
        if isinstance(row.get("provenance"), Mapping) and len(seen) < max_distinct_rows:
            text = json.dumps(row["provenance"], sort_keys=True, default=str)
            if text not in seen:
                seen.add(text)
                _add_from(prov, row["provenance"])
    for run in subset.runs:
        _add_judges(prov, run.meta.get("judges"))
        _add_config_models(prov, run.meta.get("config"))
    return prov


def _add_judges(prov: Provenance, judges: Any) -> None:
    """The normness run record's ``judges`` entries: each judge's name, the model it loaded and its template."""
    for entry in judges if isinstance(judges, list) else []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        prov.add_unique("judges", entry["name"])
        loaded = entry.get("provenance") if isinstance(entry.get("provenance"), Mapping) else entry
        method = entry.get("method_used") or entry.get("method")
        _add_model(prov, f"judge ({method})" if method else "judge", loaded.get("model"), loaded)
        if isinstance(entry.get("template"), str):
            prov.add_unique("templates", entry["template"])


def _add_config_models(prov: Provenance, config: Any) -> None:
    """The models a run's config names: its ``*_model`` settings (embeddings, fluency, ...), and its ``model``
    when neither the record nor the rows named a generator (jobs without a provenance block)."""
    if not isinstance(config, Mapping):
        return
    has_generator = any(m["role"] == "generator" for m in prov.models)
    for _, group in _dicts(config):  # settings may sit in groups (the model flags' group is "model")
        for key, value in group.items():
            if key in MODEL_SETTINGS:
                _add_model(prov, key, value)
            elif key in ("model", "models") and not has_generator:
                for model in value if isinstance(value, list) else [value]:
                    _add_model(prov, "model", model)


@dataclass
class Counts:
    """Row counts of a subset: per split, per status, the failed rows and why, the quality flags raised."""

    rows: dict[str, int]
    status: Counter
    failures: Counter  # reason -> rows
    failed_ids: list[str]
    flags: Counter  # flag -> times raised (over rows and, for per-level filters, levels)
    passed: Counter  # "passed"/"not passed" over the same units
    skipped: dict[str, Any]

    @property
    def n_failed(self) -> int:
        return sum(self.failures.values())


def _flag_values(group: Any) -> Iterator[tuple[str, bool]]:
    """(flag, value) for the booleans of a flags object, or of each level's object in a filters object."""
    if not isinstance(group, Mapping):
        return
    for key, value in group.items():
        if isinstance(value, bool):
            yield str(key), value
        elif isinstance(value, Mapping):
            yield from ((k, v) for k, v in value.items() if isinstance(v, bool))


def counts_of(subset: Subset, max_ids: int = 20) -> Counts:
    status, failures, flags, passed = Counter(), Counter(), Counter(), Counter()
    failed_ids: list[str] = []
    for row in subset.all_rows():
        if "status" in row:
            status[str(row["status"])] += 1
        reason = failure_of(row)
        if reason is not None:
            failures[reason[:300]] += 1
            row_id = next((row[k] for k in ID_KEYS if row.get(k) is not None), None)
            if row_id is not None and len(failed_ids) < max_ids:
                failed_ids.append(str(row_id))
        for group in FLAG_GROUPS:
            for flag, value in _flag_values(row.get(group)):
                if flag == "passed":
                    passed["passed" if value else "not passed"] += 1
                elif value:
                    flags[flag] += 1
        if isinstance(row.get("passed"), bool) and not any(isinstance(row.get(g), Mapping) and
                                                          "passed" in row[g] for g in FLAG_GROUPS):
            passed["passed" if row["passed"] else "not passed"] += 1
    return Counts({s: subset.n_rows(s) for s in subset.splits}, status, failures, failed_ids, flags, passed,
                  _skips(subset))


def _skips(subset: Subset) -> dict[str, Any]:
    """What the run records count about the input: rows read, selected, written, skipped (by reason)."""
    found: dict[str, Any] = {}
    for run in subset.runs:
        for key, value in run.meta.items():
            if key.startswith("n_") and isinstance(value, int) and not isinstance(value, bool):
                found[key] = found.get(key, 0) + value if len(subset.runs) > 1 else value
            elif key in ("skipped", "dropped") and isinstance(value, Mapping):
                for reason, n in value.items():
                    if isinstance(n, int):
                        found[f"{key}: {reason}"] = found.get(f"{key}: {reason}", 0) + n
    return found
