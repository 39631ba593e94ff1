"""The sparsity ladder: exact positive rates and sizes, real-only val/test, caps, evaluation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from socialsynth.core.errors import InputError
from socialsynth.jobs.augment.data import RealData
from socialsynth.jobs.augment.ladder import LadderConfig, build_ladder, parse_rates, read_synthetic, run_ladder
from tests.helpers import write_csv


def real(n: int, positives: int) -> RealData:
    labels = ["1" if i % (n // positives) == 0 and i // (n // positives) < positives else "0" for i in range(n)]
    return RealData(
        [f"text {i}" for i in range(n)], labels, [int(x) for x in labels], [f"r{i}" for i in range(n)], Path("x")
    )


SYNTHETIC = [f"synthetic toxic {k}" for k in range(60)]


def test_exact_rates_and_fixed_size():
    train = real(1000, 10)
    assert sum(lab == "1" for lab in train.labels) == 10
    sets = build_ladder(train, "1", SYNTHETIC, [0.01, 0.03, 0.05], seed=0)
    assert [s.positives for s in sets] == [10, 30, 50]
    assert [s.size for s in sets] == [1000, 1000, 1000]
    assert [s.achieved for s in sets] == [0.01, 0.03, 0.05]
    assert [s.synthetic for s in sets] == [0, 20, 40]
    for s in sets:
        assert sum(1 for r in s.rows if r[2] == 1) == s.positives == s.positives  # counted from the rows
        real_ids = {r[0] for r in s.rows if r[3] == "real"}
        assert {f"r{i}" for i in range(1000) if train.labels[i] == "1"} <= real_ids  # every real positive kept
        assert len(real_ids) == 1000 - s.synthetic and len({r[0] for r in s.rows}) == 1000
    # nested: the 5% set holds the 3% set's synthetic rows and removes a superset of its negatives
    syn3 = {r[1] for r in sets[1].rows if r[3] == "synthetic"}
    syn5 = {r[1] for r in sets[2].rows if r[3] == "synthetic"}
    assert syn3 < syn5
    assert build_ladder(train, "1", SYNTHETIC, [0.03], seed=0)[0].rows == sets[1].rows  # seeded
    assert build_ladder(train, "1", SYNTHETIC, [0.03], seed=1)[0].rows != sets[1].rows


def test_rate_below_the_real_rate_drops_real_positives():
    (s,) = build_ladder(real(1000, 10), "1", SYNTHETIC, [0.0025])
    # keep = round(0.0025 * 990 / 0.9975) = 2 real positives of 10; the negatives all stay
    assert (s.positives, s.size, s.synthetic, s.dropped_real_positives) == (2, 992, 0, 8)
    assert s.achieved == 2 / 992 and "below the real rate" in s.note


def test_not_enough_synthetic_positives_caps_or_errors():
    (s,) = build_ladder(real(1000, 10), "1", SYNTHETIC[:15], [0.05])
    assert (s.positives, s.size, s.synthetic) == (25, 1000, 15)
    assert s.note.startswith("capped") and "needs 40 synthetic positives, only 15" in s.note
    with pytest.raises(InputError, match="needs 40 synthetic positives"):
        build_ladder(real(1000, 10), "1", SYNTHETIC[:15], [0.05], strict=True)


def test_parse_rates():
    assert parse_rates("0.0025,0.01, 0.03") == [0.0025, 0.01, 0.03]
    for bad in ("", "x", "1.5", "-0.1"):
        with pytest.raises(InputError):
            parse_rates(bad)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def files(tmp_path, separable):
    rows = separable.binary(3000, seed=2)
    toxic = [r for r in rows if r["label"] == "toxic"]
    clean = [r for r in rows if r["label"] == "clean"]
    train = clean[:990] + toxic[:10]
    val = clean[990:1040] + toxic[10:30]
    test = clean[1040:1090] + toxic[30:50]
    syn = [{"id": f"s{i}", "text": r["text"], "label": "toxic"} for i, r in enumerate(toxic[50:110])]
    return {
        "train": write_csv(tmp_path / "train.csv", train),
        "val": write_csv(tmp_path / "val.csv", val),
        "test": write_csv(tmp_path / "test.csv", test),
        "synthetic": write_csv(tmp_path / "syn.csv", syn),
        "val_rows": val,
        "test_rows": test,
    }


def test_run_ladder_writes_sets_with_real_only_val_and_test(files, tmp_path):
    synthetic = read_synthetic(files["synthetic"], "text", "label", "toxic")
    assert len(synthetic) == 60
    cfg = LadderConfig(
        output_dir=tmp_path / "out",
        target_label="toxic",
        rates=[0.01, 0.03, 0.05],
        train=files["train"],
        val=files["val"],
        test=files["test"],
    )
    report = run_ladder(cfg, synthetic)
    folder = tmp_path / "out" / "ladder"
    for rate, positives in ((0.01, 10), (0.03, 30), (0.05, 50)):
        rows = read_csv(folder / f"train_rate_{rate:g}.csv")
        assert len(rows) == 1000
        assert sum(r["target"] == "1" for r in rows) == positives
        assert sum(r["label"] == "toxic" for r in rows) == positives
        assert sum(r["source"] == "synthetic" for r in rows) == positives - 10
    for name in ("val", "test"):
        rows = read_csv(folder / f"{name}.csv")
        assert [r["id"] for r in rows] == [r["id"] for r in files[f"{name}_rows"]]
        assert [r["text"] for r in rows] == [r["text"] for r in files[f"{name}_rows"]]
        assert {r["source"] for r in rows} == {"real"}
    saved = json.loads((folder / "ladder.json").read_text())
    assert [s["achieved_rate"] for s in saved["sets"]] == [0.01, 0.03, 0.05]
    assert saved["test"] == {"size": 70, "positives": 20} and report["real_train"]["positives"] == 10


def test_ladder_evaluate_trains_a_classifier_per_rate(files, tmp_path):
    cfg = LadderConfig(
        output_dir=tmp_path / "out",
        target_label="toxic",
        rates=[0.01, 0.05],
        train=files["train"],
        val=files["val"],
        test=files["test"],
        evaluate=True,
    )
    report = run_ladder(cfg, read_synthetic(files["synthetic"], "text", "label", "toxic"))
    for s in report["sets"]:
        m = s["metrics"]
        assert set(m) >= {"f1", "precision", "recall", "auprc"} and 0 <= m["f1"] <= 1
    assert report["sets"][1]["metrics"]["auprc"] > 0.9  # keyword-separable data
    assert Path(report["plot"]).exists()


def test_ladder_from_input_splits_80_10_10(tmp_path, separable):
    data = separable.write(tmp_path / "all.csv", separable.binary(500, seed=4))
    cfg = LadderConfig(output_dir=tmp_path / "out", target_label="toxic", rates=[0.5], input=data)
    report = run_ladder(cfg, [f"s {i}" for i in range(300)])
    assert report["real_train"]["size"] == 400 and report["val"]["size"] == 50 and report["test"]["size"] == 50
    (s,) = report["sets"]
    assert s["positives"] == 200 and s["size"] == 400 and s["achieved_rate"] == 0.5
