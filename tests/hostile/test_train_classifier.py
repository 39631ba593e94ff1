"""Hostile input and faults for `train_classifier.py` (socialsynth.jobs.train.cli.main), run in-process.

The corpus covers malformed and mistyped data files, encodings, empty files and texts, duplicate ids, huge texts,
a bad value for every numeric and choice flag, unwritable output places, missing models, damaged outputs (run
records, model cards, metrics, predictions, torn checkpoints) and argparse's own errors. Each case must end in
exit 2 with one stderr line naming the file, line, field or flag, or in exit 0 with what was skipped counted.
Most cases use the TF-IDF baseline and stop before any model loads; the checkpoint cases train the tiny random BERT.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from socialsynth.jobs.train.cli import main
from tests.conftest import SeparableTexts

from .conftest import Case, Error, Skip, case_params

TFIDF = ["--model", "tfidf-logreg"]
BIN = ["--task", "binary", "--input", "{data}", *TFIDF, "-o", "{tmp}/out"]
ML = ["--task", "multilabel", "--label-col", "labels", "--input", "{data}", *TFIDF, "-o", "{tmp}/out"]


def rows(n: int = 40, seed: int = 0) -> list[dict]:
    return SeparableTexts.binary(n, seed=seed)


def csv_file(name: str = "data.csv", n: int = 40, edit=None):
    """setup: a binary CSV (``edit(rows)`` may change the rows first)."""

    def setup(tmp: Path) -> dict:
        data = rows(n)
        if edit is not None:
            edit(data)
        return {"data": SeparableTexts.write(tmp / name, data)}

    return setup


def raw_file(name: str, content: bytes | str):
    """setup: a file with exactly these bytes (or UTF-8 text)."""

    def setup(tmp: Path) -> dict:
        path = tmp / name
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return {"data": path}

    return setup


def jsonl_lines(*lines: str, good: int = 30):
    """setup: ``good`` valid rows, then these raw lines, then ``good`` more rows."""

    def setup(tmp: Path) -> dict:
        head = [json.dumps(r) for r in rows(good, seed=1)]
        tail = [json.dumps(r) for r in SeparableTexts.binary(good, seed=2, prefix="t")]
        path = tmp / "data.jsonl"
        path.write_text("\n".join([*head, *lines, *tail]) + "\n", encoding="utf-8")
        return {"data": path}

    return setup


def trained_tfidf(then=None):
    """setup: a finished tfidf training run in {tmp}/out from data.csv; ``then(out)`` damages it."""

    def setup(tmp: Path) -> dict:
        values = csv_file()(tmp)
        with quiet():
            code = main([a.format(tmp=tmp, **values) for a in BIN])
        assert code == 0
        if then is not None:
            then(tmp / "out")
        return values

    return setup


PREDICT = ["--predict", "{new}", "--model-dir", "{tmp}/out", "-o", "{tmp}/pred.jsonl"]


def predicted(damage):
    """setup: a tfidf model, 30 new rows scored into pred.jsonl, then ``damage(pred.jsonl)`` as a kill would leave."""

    def setup(tmp: Path) -> dict:
        values = trained_tfidf()(tmp)
        values["new"] = SeparableTexts.write(tmp / "new.csv", SeparableTexts.binary(30, seed=9, prefix="n"))
        with quiet():
            assert main([a.format(tmp=tmp, **values) for a in PREDICT]) == 0
        damage(tmp / "pred.jsonl")
        return values

    return setup


def _tear_middle_line(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[10] = lines[10][: len(lines[10]) // 2]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _double_a_line(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([*lines[:5], lines[4], *lines[5:]]) + "\n", encoding="utf-8")


def mixed_label_types(tmp: Path) -> dict:
    lines = []
    for i, r in enumerate(rows(60)):
        positive = r["label"] == "toxic"
        label = [1, "1", 1.0, "1.0", True][i % 5] if positive else [0, "0", 0.0, "0.0", False][i % 5]
        lines.append(json.dumps({"id": r["id"], "text": r["text"], "label": label}))
    path = tmp / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"data": path}


def with_test_file(tmp: Path) -> dict:
    test = SeparableTexts.binary(20, seed=3, prefix="t")
    test[0]["text"] = test[1]["text"] = " "
    return {"data": SeparableTexts.write(tmp / "data.csv", rows()),
            "test": SeparableTexts.write(tmp / "test.csv", test)}


def _with_bom(path: Path) -> Path:
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    return path


@contextlib.contextmanager
def quiet():
    """A setup's own run prints nothing into the case's output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# ------------------------------------------------------------------------------------------------ the table

CASES = [
    # ---- malformed files
    Case("jsonl-broken-line-in-middle", BIN, Error("data.jsonl:31"), jsonl_lines('{"text": "half a line", "lab')),
    Case("jsonl-row-is-a-list", BIN, Error("data.jsonl:31"), jsonl_lines('["text", "label"]')),
    Case("csv-unclosed-quote", BIN, Error("data.csv"), raw_file("data.csv", 'text,label\n"open quote,1\nfine,0\n')),
    Case("parquet-that-is-text", BIN, Error("data.parquet"), raw_file("data.parquet", "text,label\nhi,1\n")),
    Case("unknown-extension", BIN, Error("data.xyz"), raw_file("data.xyz", "text,label\nhi,1\n")),
    # ---- wrong types and columns
    Case("missing-label-column", [*BIN, "--label-col", "toxic"], Error("'toxic'"), csv_file()),
    Case("missing-text-column", [*BIN, "--text-col", "body"], Error("'body'"), csv_file()),
    Case("regression-label-not-a-number", ["--task", "regression", "--input", "{data}", *TFIDF, "-o", "{tmp}/out"],
         Error("data.jsonl:3"), raw_file("data.jsonl", '{"text": "a b", "label": 1.5}\n{"text": "c d", "label": 2}\n'
                                          '{"text": "e f", "label": "lots"}\n')),
    Case("binary-label-is-a-list", BIN, Error("data.jsonl:31"), jsonl_lines('{"text": "a b c", "label": [1, 0]}')),
    # 1, "1", 1.0, "1.0" and true are one class: two classes here, not five (the report names the positive one)
    Case("binary-mixed-label-types", BIN, Skip("precision (1)"), mixed_label_types),
    Case("text-column-of-numbers", BIN, Skip("text is not text", record="out/train.meta.json"),
         jsonl_lines('{"text": 12345, "label": "clean"}', '{"text": 3.5, "label": "toxic"}')),
    Case("multilabel-label-is-an-object", ML, Error("data.jsonl:2"),
         raw_file("data.jsonl", '{"text": "a b", "labels": ["Age"]}\n{"text": "c d", "labels": {"Age": 1}}\n')),
    Case("multilabel-nested-list", ML, Error("data.jsonl:2"),
         raw_file("data.jsonl", '{"text": "a b", "labels": ["Age"]}\n{"text": "c d", "labels": [["Age"]]}\n')),
    # doccano spans (seed 001) are categories; a span with a non-integer offset is not, and is named
    Case("multilabel-doccano-span-bad-offset", ML, Error("data.jsonl:2"),
         raw_file("data.jsonl", '{"text": "a b", "labels": [[0, 1, "Age"]]}\n'
                                '{"text": "c d", "labels": [["0", 1, "Age"]]}\n')),
    # the seed's upvote split needs the upvote recipe; the seed's counts on a tiny file fall back to fractions
    Case("seed-split-without-upvote-recipe", [*BIN, "--split-method", "seed"], Error("--split-method"), csv_file()),
    Case("label-with-one-class", BIN, Error("single class"),
         csv_file(edit=lambda d: [r.update(label="clean") for r in d])),
    Case("label-col-equals-text-col", [*BIN, "--label-col", "text"], Error("--label-col"), csv_file()),
    # ---- encodings
    Case("csv-not-utf8", BIN, Error("data.csv"), raw_file("data.csv", b"text,label\ncaf\xe9 au lait,1\nplain,0\n")),
    Case("jsonl-not-utf8", BIN, Error("data.jsonl:2"),
         raw_file("data.jsonl", b'{"text": "a b", "label": 1}\n{"text": "caf\xe9", "label": 0}\n')),
    Case("csv-with-bom", BIN, Skip("predictions in"),
         lambda tmp: {"data": _with_bom(SeparableTexts.write(tmp / "data.csv", rows()))}),
    Case("csv-utf16", BIN, Error("data.csv"), raw_file("data.csv", "text,label\nhi,1\n".encode("utf-16"))),
    # ---- empty files and empty texts
    Case("csv-empty-file", BIN, Error("data.csv"), raw_file("data.csv", b"")),
    Case("csv-header-only", BIN, Error("data.csv"), raw_file("data.csv", "text,label\n")),
    Case("jsonl-blank-lines-only", BIN, Error("data.jsonl"), raw_file("data.jsonl", "\n\n  \n")),
    Case("all-texts-empty", BIN, Error("data.csv"), csv_file(edit=lambda d: [r.update(text="  ") for r in d])),
    Case("some-texts-empty", BIN, Skip("skipped rows: empty text: 3"),
         csv_file(edit=lambda d: [r.update(text="") for r in d[:3]])),
    Case("some-labels-empty", BIN, Skip("missing label: 3"),
         csv_file(edit=lambda d: [r.update(label=None) for r in d[:3]])),
    Case("test-file-rows-empty", [*BIN, "--test", "{test}"], Skip("test.csv: empty text: 2"), with_test_file),
    Case("five-rows-only", BIN, Skip("predictions in"), csv_file(n=5)),
    # (seed 28 holds both rows of the rare class out: training would see two classes only)
    Case("rare-class-of-two-rows", ["--task", "multiclass", *BIN[2:], "--seed", "28"], Skip("predictions in"),
         csv_file(n=12, edit=lambda d: [r.update(label=["a", "b", "c"][min(i // 5, 2)]) for i, r in enumerate(d)])),
    # ---- duplicate ids and rows
    Case("duplicate-ids", BIN, Skip("duplicate ids"),
         csv_file(edit=lambda d: [r.update(id="same") for r in d[:4]])),
    # ---- huge texts
    Case("two-megabyte-text", BIN, Skip("predictions in"),
         csv_file(edit=lambda d: d[0].update(text="idiot " * 350_000))),
    # ---- a bad value for every numeric and choice flag
    *[
        Case(f"flag {' '.join(extra)}", [*BIN, *extra], Error(name), csv_file())
        for extra, name in [
            (["--epochs", "0"], "--epochs"),
            (["--epochs", "inf"], "--epochs"),
            (["--batch-size", "0"], "--batch-size"),
            (["--grad-accum", "0"], "--grad-accum"),
            (["--lr", "-1"], "--lr"),
            (["--lr", "nan"], "--lr"),
            (["--weight-decay", "-0.1"], "--weight-decay"),
            (["--weight-decay", "inf"], "--weight-decay"),
            (["--warmup", "-1"], "--warmup"),
            (["--warmup", "nan"], "--warmup"),
            (["--max-length", "0"], "--max-length"),
            (["--class-weight", "heavy"], "--class-weight"),
            (["--metric", "bogus"], "--metric"),
            (["--metric", "r2"], "--metric"),
            (["--early-stopping", "-1"], "--early-stopping"),
            (["--eval-steps", "0"], "--eval-steps"),
            (["--seed", "-1"], "--seed"),
            (["--seed", "99999999999"], "--seed"),
            (["--tfidf-features", "0"], "--tfidf-features"),
            (["--C", "0"], "--C"),
            (["--C", "inf"], "--C"),
            (["--val-fraction", "1.5"], "--val-fraction"),
            (["--test-fraction", "-0.1"], "--test-fraction"),
            (["--val-fraction", "0.6", "--test-fraction", "0.4"], "--test-fraction"),
            (["--precision", "fp8"], "--precision"),
            (["--device", "gpu"], "--device"),
            (["--device", "cuda:99"], "--device"),
            (["--model", "./no-such-folder"], "--model"),
            (["--task", "ranking"], "--task"),
            (["--preset", "likes"], "--preset"),
            (["--preset", "upvote"], "--task"),
            (["--label-col", ","], "--label-col"),
            (["--text-col", ""], "--text-col"),
            (["--label-sep", ""], "--label-sep"),
            (["--id-col", " "], "--id-col"),
            (["--positive-label", ""], "--positive-label"),
            (["--train", "{data}:-1"], "--train"),
            (["--train", "{data}:nan"], "--train"),
        ]
    ],
    # ---- argparse's own errors
    Case("argparse-missing-value", [*BIN, "--epochs"], Error("--epochs"), csv_file()),
    Case("argparse-not-a-number", [*BIN, "--batch-size", "many"], Error("--batch-size"), csv_file()),
    Case("argparse-unknown-flag", [*BIN, "--bogus-flag", "1"], Error("--bogus-flag"), csv_file()),
    # ---- unwritable places
    Case("output-dir-is-a-file", ["--task", "binary", "--input", "{data}", *TFIDF, "-o", "{data}"],
         Error("data.csv"), csv_file()),
    Case("predict-output-under-a-file", ["--predict", "{data}", "--model-dir", "{tmp}/out", "-o",
                                         "{data}/pred.jsonl"], Error("data.csv"), trained_tfidf()),
    # ---- missing models
    Case("model-path-missing", ["--task", "binary", "--input", "{data}", "--model", "{tmp}/no/such/model",
                                "-o", "{tmp}/out"], Error("no/such/model"), csv_file()),
    Case("model-id-not-cached-offline", ["--task", "binary", "--input", "{data}", "--model",
                                         "nobody/no-such-encoder-xyz", "-o", "{tmp}/out"],
         Error("nobody/no-such-encoder-xyz"), csv_file()),
    Case("model-dir-not-a-model", ["--predict", "{data}", "--model-dir", "{tmp}"], Error("classifier.json"),
         csv_file()),
    # ---- damaged outputs
    Case("run-record-is-a-list", BIN, Error("train.meta.json"),
         trained_tfidf(lambda out: (out / "train.meta.json").write_text("[1, 2]"))),
    Case("model-card-is-a-list", BIN, Error("classifier.json"),
         trained_tfidf(lambda out: (out / "classifier.json").write_text("[]"))),
    Case("model-card-truncated", BIN, Error("classifier.json"),
         trained_tfidf(lambda out: (out / "classifier.json").write_text('{"task": "bin'))),
    Case("predict-with-card-as-list", ["--predict", "{data}", "--model-dir", "{tmp}/out"], Error("classifier.json"),
         trained_tfidf(lambda out: (out / "classifier.json").write_text("[]"))),
    Case("predict-with-weights-missing", ["--predict", "{data}", "--model-dir", "{tmp}/out"],
         Error("model.joblib"), trained_tfidf(lambda out: (out / "model.joblib").unlink())),
    Case("metrics-missing-after-the-model-save", BIN, Skip("metrics.json"),
         trained_tfidf(lambda out: (out / "metrics.json").unlink())),
    Case("metrics-is-a-list", BIN, Skip("metrics.json"),
         trained_tfidf(lambda out: (out / "metrics.json").write_text("[]"))),
    Case("predictions-with-a-torn-line-in-the-middle", PREDICT, Error("pred.jsonl:11"), predicted(_tear_middle_line)),
    Case("predictions-with-a-doubled-line", PREDICT, Skip("pred.jsonl"), predicted(_double_a_line)),
]


def _read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _one_line_per_id(tmp: Path) -> None:
    ids = [json.loads(line)["id"] for line in (tmp / "pred.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(ids) == 30 and len(set(ids)) == 30


def _metrics_rewritten(tmp: Path) -> None:
    assert "auroc" in _read_json(tmp / "out" / "metrics.json")["headline"]


# what must hold in the output folder besides the exit code and the message
AFTER = {
    "duplicate-ids": lambda tmp: _read_json(tmp / "out" / "train.meta.json")["duplicate_ids"] == {
        str(tmp / "data.csv"): 3},
    "some-texts-empty": lambda tmp: _read_json(tmp / "out" / "train.meta.json")["skipped"] == {"empty text": 3},
    "metrics-missing-after-the-model-save": _metrics_rewritten,
    "metrics-is-a-list": _metrics_rewritten,
    "predictions-with-a-doubled-line": _one_line_per_id,
    "rare-class-of-two-rows": lambda tmp: _read_json(tmp / "out" / "classifier.json")["labels"]["names"]
    == ["a", "b", "c"],
    "binary-mixed-label-types": lambda tmp: _read_json(tmp / "out" / "classifier.json")["labels"]["names"]
    == ["0", "1"],
}


@pytest.mark.parametrize("case", case_params(CASES))
def test_train_classifier_hostile(hostile, case, tmp_path):
    hostile(main, case)
    if case.id in AFTER:
        assert AFTER[case.id](tmp_path) is not False


# --------------------------------------------------------------------------- cases that need the machine's state


def test_device_cuda_without_a_gpu(hostile, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    hostile(main, Case("device-cuda-without-gpu", [*BIN, "--device", "cuda"], Error("--device"), csv_file()))


def test_read_only_output_folder(hostile):
    if os.geteuid() == 0:
        pytest.skip("root ignores permissions")

    def setup(tmp: Path) -> dict:
        values = csv_file()(tmp)
        (tmp / "locked").mkdir()
        (tmp / "locked").chmod(0o500)
        return values

    hostile(main, Case("read-only-folder", ["--task", "binary", "--input", "{data}", *TFIDF, "-o", "{tmp}/locked/out"],
                       Error("cannot write in"), setup))


# ------------------------------------------------------------------ faults a kill leaves in a fine-tuning run

TINY = ["--task", "binary", "--input", "{data}", "--model", "{encoder}", "--epochs", "3", "--lr", "1e-3",
        "--early-stopping", "0", "--max-length", "16", "--keep-checkpoints", "-o", "{tmp}/out"]


def _killed_while_saving(damage):
    """A finished tiny-BERT run with checkpoints 3..9, its final files gone as a kill during the last checkpoint's
    save leaves them, then ``damage(checkpoints folder)``."""

    def apply(out: Path) -> None:
        for name in ("classifier.json", "metrics.json", "report.txt"):
            (out / name).unlink()
        shutil.rmtree(out / "model")
        damage(out / "checkpoints")

    return apply


def _truncate(path: Path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


TRANSFORMER_CASES = [
    Case("torn-optimizer-in-the-last-checkpoint", TINY, Skip("torn checkpoints skipped: checkpoint-9"),
         _killed_while_saving(lambda c: _truncate(c / "checkpoint-9" / "optimizer.pt"))),
    Case("last-checkpoint-without-trainer-state", TINY, Skip("torn checkpoints skipped: checkpoint-9"),
         _killed_while_saving(lambda c: (c / "checkpoint-9" / "trainer_state.json").unlink())),
    Case("last-checkpoint-with-truncated-weights", TINY, Skip("torn checkpoints skipped: checkpoint-9"),
         _killed_while_saving(lambda c: _truncate(c / "checkpoint-9" / "model.safetensors", 3000))),
    Case("empty-checkpoint-folder", TINY, Skip("torn checkpoints skipped: checkpoint-12"),
         _killed_while_saving(lambda c: (c / "checkpoint-12").mkdir())),
    Case("transformer-metrics-missing", TINY, Skip("metrics.json was missing"),
         lambda out: (out / "metrics.json").unlink()),
    Case("huge-texts-cut-at-the-encoder-context", [*TINY[:-5], "-o", "{tmp}/long"], Skip("texts cut at --max-length"),
         None),
]


@pytest.mark.parametrize("case", case_params(TRANSFORMER_CASES))
def test_train_classifier_faults_of_a_fine_tuning_run(hostile, case, tiny_encoder_dir):
    def setup(tmp: Path) -> dict:
        data = SeparableTexts.binary(60, seed=4)
        data[0]["text"] = "idiot " * 300_000  # 1.8 MB
        values = {"data": SeparableTexts.write(tmp / "toxic.jsonl", data), "encoder": tiny_encoder_dir}
        if case.setup is not None:
            with quiet():
                assert main([a.format(tmp=tmp, **values) for a in TINY]) == 0
            case.setup(tmp / "out")
        return values

    hostile(main, Case(case.id, case.argv, case.expect, setup))
