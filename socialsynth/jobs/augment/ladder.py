"""The sparsity ladder of seed 003: training sets at several positive rates, made by replacing real negatives
with synthetic positives (the training set keeps its size; every real positive is kept), with validation and
test sets real only; optionally a classifier trained and tested on each set.
"""

from __future__ import annotations

import csv
import io
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from socialsynth.classify.labels import label_key
from socialsynth.core.errors import InputError
from socialsynth.core.io import atomic_write_json, atomic_write_text, iter_jsonl, read_records
from socialsynth.jobs.augment.data import RealData, check_target, read_labelled

log = logging.getLogger(__name__)
DEFAULT_RATES = (0.0025, 0.01, 0.03, 0.05)


@dataclass
class LadderSet:
    rate: float  # asked for
    rows: list[tuple[str, str, object, str]]  # (id, text, label as in the file, source: real|synthetic)
    positives: int
    size: int
    synthetic: int
    dropped_real_positives: int = 0
    removed_negatives: int = 0
    note: str = ""

    @property
    def achieved(self) -> float:
        return self.positives / self.size if self.size else 0.0

    def describe(self) -> dict:
        return {
            "rate": self.rate,
            "achieved_rate": self.achieved,
            "positives": self.positives,
            "size": self.size,
            "synthetic": self.synthetic,
            "real_positives": self.positives - self.synthetic,
            "removed_negatives": self.removed_negatives,
            "dropped_real_positives": self.dropped_real_positives,
            "note": self.note,
        }


def parse_rates(spec: str) -> list[float]:
    try:
        rates = [float(x) for x in str(spec).split(",") if x.strip()]
    except ValueError:
        raise InputError(f"expected comma-separated fractions, got {spec!r}", field="--positive-rates") from None
    if not rates or any(not 0 <= r < 1 for r in rates):
        raise InputError(f"rates must be fractions in [0, 1), got {spec!r}", field="--positive-rates")
    return rates


def build_ladder(
    train: RealData,
    target: str,
    synthetic: Sequence[str],
    rates: Sequence[float],
    seed: int = 0,
    label_value=None,
    strict: bool = False,
) -> list[LadderSet]:
    """One training set per rate. Above the real rate, S = round(rate * N) - P synthetic positives replace S
    seeded negatives (size N fixed); with too few synthetic positives the rate is capped (or, `strict`, an
    error). Below the real rate, real positives are dropped instead and the set shrinks by as many rows.
    The same seeded orders are used at every rate, so a higher rate's set contains a lower one's additions."""
    n = len(train.texts)
    pos = [i for i in range(n) if train.labels[i] == target]
    neg = [i for i in range(n) if train.labels[i] != target]
    label_value = label_value if label_value is not None else train.raw_labels[pos[0]] if pos else target
    neg_order = list(neg)
    random.Random(f"{seed}:negatives").shuffle(neg_order)
    pos_order = list(pos)
    random.Random(f"{seed}:positives").shuffle(pos_order)
    syn_order = list(range(len(synthetic)))
    random.Random(f"{seed}:synthetic").shuffle(syn_order)
    sets = []
    for rate in rates:
        wanted = round(rate * n)
        note, dropped, removed, extra = "", set(), set(), []
        if wanted >= len(pos):
            s = wanted - len(pos)
            if s > len(synthetic):
                msg = (
                    f"rate {rate:g} needs {s} synthetic positives, only {len(synthetic)} available: "
                    f"capped at {(len(pos) + len(synthetic)) / n:.4%}"
                )
                if strict:
                    raise InputError(msg + " (generate more with --n, or leave out --strict-rates)")
                log.warning(msg)
                note, s = "capped: " + msg, len(synthetic)
            removed = set(neg_order[:s])
            extra = [syn_order[k] for k in range(s)]
        else:
            keep = round(rate * len(neg) / (1 - rate))
            dropped = set(pos_order[keep:])
            note = f"below the real rate ({len(pos) / n:.4%}): dropped {len(dropped)} real positives"
        rows = [
            (train.ids[i], train.texts[i], train.raw_labels[i], "real")
            for i in range(n)
            if i not in removed and i not in dropped
        ]
        rows += [(f"synthetic:{k}", synthetic[k], label_value, "synthetic") for k in extra]
        n_pos = sum(1 for i in pos if i not in dropped) + len(extra)
        sets.append(LadderSet(rate, rows, n_pos, len(rows), len(extra), len(dropped), len(removed), note))
    return sets


def _table_csv(rows, text_col: str, label_col: str, target: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", text_col, label_col, "target", "source"])
    for row_id, text, label, source in rows:
        writer.writerow([row_id, text, label, int(label_key(label) == target), source])
    return buffer.getvalue()


def rate_name(rate: float) -> str:
    return f"{rate:g}"


def read_synthetic(path: Path, text_col: str, label_col: str, target: str) -> list[str]:
    """Synthetic positives: an augment_labels.py JSONL (rows that passed), or a table (rows of the target label,
    every row when it has no label column)."""
    path = Path(path)
    if not path.exists():
        raise InputError("synthetic file not found", path=path)
    if path.suffix == ".jsonl":
        rows = [rec for _, rec in iter_jsonl(path)]
        if any("passed" in r for r in rows):
            return [r["text"] for r in rows if r.get("passed") is True and isinstance(r.get("text"), str)
                    and r["text"].strip()]
        if rows and not any(text_col in r for r in rows):
            raise InputError(f"neither augment_labels.py records (with 'passed') nor rows with a {text_col!r} "
                             "field", path=path, field=text_col)
    else:
        rows = read_records(path, required=(text_col,), nonempty=(text_col,)).records
    if rows and label_col in rows[0]:
        rows = [r for r in rows if label_key(r.get(label_col)) == target]
    return [str(r[text_col]) for r in rows if r.get(text_col)]


@dataclass
class LadderConfig:
    output_dir: Path
    target_label: str
    rates: list[float] = field(default_factory=lambda: list(DEFAULT_RATES))
    input: Path | None = None
    train: Path | None = None
    val: Path | None = None
    test: Path | None = None
    text_col: str = "text"
    label_col: str = "label"
    seed: int = 0
    strict: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    skip_bad_rows: bool = False
    evaluate: bool = False
    classifier: str = "tfidf-logreg"
    epochs: float = 3.0


def load_real_splits(cfg: LadderConfig) -> tuple[RealData, RealData, RealData]:
    if cfg.train is not None:
        if cfg.val is None or cfg.test is None:
            raise InputError("--train needs --val and --test (or give --input to split it)", field="--train")
        return tuple(read_labelled(p, cfg.text_col, cfg.label_col, cfg.skip_bad_rows)
                     for p in (cfg.train, cfg.val, cfg.test))
    if cfg.input is None:
        raise InputError("the ladder needs --input (split by --val-fraction/--test-fraction) or --train/--val/--test")
    from socialsynth.classify.data import split_indices

    data = read_labelled(cfg.input, cfg.text_col, cfg.label_col, cfg.skip_bad_rows)
    parts = split_indices(len(data.texts), cfg.seed, cfg.val_fraction, cfg.test_fraction, stratify=data.labels)

    def subset(index, skipped):
        return RealData(
            [data.texts[i] for i in index],
            [data.labels[i] for i in index],
            [data.raw_labels[i] for i in index],
            [data.ids[i] for i in index],
            data.path,
            skipped,
        )

    # the rows left out of the input are counted once, with the training split
    return tuple(subset(p, data.skipped if k == 0 else Counter()) for k, p in enumerate(parts))


def skipped_rows(splits: Sequence[RealData]) -> dict[str, int]:
    """Rows the ladder's files left out, by split and reason ("train: empty label" -> 2)."""
    out: Counter = Counter()
    for name, data in zip(("train", "val", "test"), splits, strict=True):
        out.update({f"{name}: {why}": n for why, n in data.skipped.items()})
    return dict(sorted(out.items()))


def run_ladder(cfg: LadderConfig, synthetic: Sequence[str]) -> dict:
    """Write ladder/train_rate_<r>.csv, val.csv, test.csv (+ ladder.json); with `evaluate`, train and test a
    classifier on each and add the metrics (and ladder.png)."""
    target = label_key(cfg.target_label)
    train, val, test = load_real_splits(cfg)
    check_target(train, target, cfg.label_col)
    folder = Path(cfg.output_dir) / "ladder"
    sets = build_ladder(train, target, synthetic, cfg.rates, cfg.seed, strict=cfg.strict)
    if cfg.evaluate:
        check_trainable(sets, train.path)
    files = {}
    for name, data in (("val", val), ("test", test)):
        rows = list(zip(data.ids, data.texts, data.raw_labels, ["real"] * len(data.texts), strict=True))
        files[name] = folder / f"{name}.csv"
        atomic_write_text(files[name], _table_csv(rows, cfg.text_col, cfg.label_col, target))
    report = {
        "target": target,
        "real_train": {"size": len(train.texts), "positives": sum(lab == target for lab in train.labels)},
        "val": {"size": len(val.texts), "positives": sum(lab == target for lab in val.labels)},
        "test": {"size": len(test.texts), "positives": sum(lab == target for lab in test.labels)},
        "synthetic_available": len(synthetic),
        "skipped": skipped_rows((train, val, test)),
        "classifier": cfg.classifier if cfg.evaluate else None,
        "sets": [],
    }
    for s in sets:
        path = folder / f"train_rate_{rate_name(s.rate)}.csv"
        atomic_write_text(path, _table_csv(s.rows, cfg.text_col, cfg.label_col, target))
        entry = {**s.describe(), "file": str(path)}
        if cfg.evaluate:
            entry["metrics"] = evaluate_set(cfg, path, files["val"], files["test"], folder / "models" / path.stem)
        report["sets"].append(entry)
        atomic_write_json(folder / "ladder.json", report)  # after each set: a stopped run keeps what it did
    if cfg.evaluate:
        report["plot"] = plot_ladder(report, folder / "ladder.png")
    atomic_write_json(folder / "ladder.json", report)
    report["folder"] = str(folder)
    return report


def check_trainable(sets: Sequence[LadderSet], path: Path) -> None:
    """Before any training: every set needs positives and negatives, or its classifier fails after the others."""
    for s in sets:
        if s.positives == 0 or s.positives == s.size:
            what = "no positives" if s.positives == 0 else "no negatives"
            raise InputError(f"rate {rate_name(s.rate)} gives a training set of {s.size} rows with {what}: "
                             "a classifier cannot be trained on it (leave the rate out, or --evaluate)",
                             path=path, field="--positive-rates")


def evaluate_set(cfg: LadderConfig, train_file: Path, val_file: Path, test_file: Path, out: Path) -> dict:
    from socialsynth.classify.model import TrainSettings
    from socialsynth.classify.train import TrainJob, run_training

    job = TrainJob(
        task="binary",
        output_dir=out,
        model=cfg.classifier,
        train=[str(train_file)],
        val=val_file,
        test=test_file,
        text_col=cfg.text_col,
        label_cols=["target"],
        positive_label="1",
        settings=TrainSettings(seed=cfg.seed, epochs=cfg.epochs),
        overwrite=True,
    )
    results = run_training(job)
    test = results.get("test") or {}
    chosen = test.get("tuned") or test.get("at_0.5") or {}
    return {
        "f1": chosen.get("f1"),
        "precision": chosen.get("precision"),
        "recall": chosen.get("recall"),
        "auprc": chosen.get("auprc"),
        "auroc": chosen.get("auroc"),
        "f1_at_0.5": (test.get("at_0.5") or {}).get("f1"),
        "threshold": chosen.get("threshold"),
    }


def _f(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def format_ladder(report: dict) -> str:
    lines = [
        f"real train: {report['real_train']['size']} rows, {report['real_train']['positives']} positives; "
        f"val {report['val']['size']} ({report['val']['positives']} pos), test {report['test']['size']} "
        f"({report['test']['positives']} pos), real only; synthetic positives available: "
        f"{report['synthetic_available']}",
        "rate asked | achieved | positives (synthetic) | size | F1 | P | R | AUPRC",
    ]
    for s in report["sets"]:
        m = s.get("metrics") or {}
        lines.append(
            f"{s['rate']:>10g} | {s['achieved_rate']:.4%} | {s['positives']} ({s['synthetic']}) | {s['size']} | "
            f"{_f(m.get('f1'))} | {_f(m.get('precision'))} | {_f(m.get('recall'))} | {_f(m.get('auprc'))}"
        )
    lines += [f"note ({s['rate']:g}): {s['note']}" for s in report["sets"] if s["note"]]
    if report.get("skipped"):
        lines.append("skipped input rows: " + ", ".join(f"{k}: {v}" for k, v in report["skipped"].items()))
    if report.get("classifier"):
        lines.append(f"metrics: {report['classifier']} on the real test set, threshold tuned for F1 on val")
    if report.get("plot"):
        lines.append(f"plot: {report['plot']}")
    return "\n".join(lines)


def plot_ladder(report: dict, path: Path) -> str | None:
    rows = [s for s in report["sets"] if s.get("metrics")]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [100 * s["achieved_rate"] for s in rows]
    fig, ax = plt.subplots(figsize=(5, 4))
    for key, label in (("f1", "F1"), ("precision", "precision"), ("recall", "recall"), ("auprc", "AUPRC")):
        ax.plot(x, [s["metrics"].get(key) or 0 for s in rows], marker="o", label=label)
    ax.set(
        xlabel="positives in training set (%)",
        ylabel="test score",
        ylim=(0, 1),
        title=f"sparsity ladder ({report['classifier']})",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
