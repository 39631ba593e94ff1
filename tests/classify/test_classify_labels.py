"""Label spaces, label parsing, reading/splitting/mixing labelled files, score conventions and the upvote
preset's helpers: the library pieces under train_classifier.py, checked directly (no model is trained here)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from socialsynth.classify.data import (
    LabelledTexts,
    load_texts,
    parse_weighted_files,
    sample_fraction,
    split_indices,
)
from socialsynth.classify.labels import LabelSpace, UnseenLabel, label_key, parse_label_list, truthy
from socialsynth.classify.model import (
    DEFAULT_METRIC,
    TextClassifier,
    TrainSettings,
    read_card,
    scores_from_logits,
)
from socialsynth.classify.presets import (
    UpvotePreset,
    elapsed_hms,
    readable_time,
    split_half,
    upvote_target,
    upvote_text,
    upvotes_from_target,
)
from socialsynth.classify.registry import load_classifier
from socialsynth.core.errors import InputError
from socialsynth.core.stats import bootstrap_mean_ci

# ------------------------------------------------------------------------------------------ LabelSpace: binary


@pytest.mark.parametrize(
    "labels, positive",
    [
        (["clean", "toxic", "toxic", "clean"], "toxic"),
        ([0, 1, 1, 0], "1"),
        ([0.0, 1.0, 0.0], "1"),  # 1.0 and 1 are the same class
        (["0", "1", "1"], "1"),
        (["true", "false", "false"], "true"),
        (["False", "True"], "True"),
        ([True, False, False], "1"),
        (["no", "yes"], "yes"),
        (["negative", "positive"], "positive"),
        ([-1, 1, -1], "1"),
    ],
)
def test_binary_positive_class_is_detected(labels, positive):
    space = LabelSpace.fit("binary", labels)
    assert space.names[-1] == positive  # the positive class is the last name (the single logit)
    assert len(space.names) == 2
    assert space.encode(labels[0]) == space.names.index(label_key(labels[0]))


def test_binary_positive_label_option_flips_the_classes():
    labels = ["toxic", "clean", "clean", "clean"]
    default = LabelSpace.fit("binary", labels)
    assert default.names == ["clean", "toxic"]
    assert default.counts == [3.0, 1.0]
    flipped = LabelSpace.fit("binary", labels, positive="clean")
    assert flipped.names == ["toxic", "clean"]
    assert flipped.counts == [1.0, 3.0]
    assert flipped.encode("clean") == 1 and flipped.encode("toxic") == 0
    assert flipped.decode(1) == "clean"
    # numbers given on the command line are strings; 1 and "1" are the same class
    assert LabelSpace.fit("binary", [0, 1, 1], positive="0").names == ["1", "0"]


def test_binary_label_space_errors():
    with pytest.raises(InputError, match="single class"):
        LabelSpace.fit("binary", ["toxic", "toxic"], name="toxic")
    with pytest.raises(InputError, match="use --task multiclass"):
        LabelSpace.fit("binary", ["a", "b", "c"])
    with pytest.raises(InputError, match="not among the classes"):
        LabelSpace.fit("binary", ["a", "b"], positive="spam")
    with pytest.raises(InputError, match="no labelled training rows"):
        LabelSpace.fit("binary", [])
    with pytest.raises(InputError, match="unknown task"):
        LabelSpace.fit("ranking", [1, 2])


def test_single_class_error_names_the_label_column():
    with pytest.raises(InputError) as info:
        LabelSpace.fit("binary", [1, 1, 1], name="toxic")
    assert "'toxic'" in str(info.value) and "single class" in str(info.value)


# ------------------------------------------------------------------------------------ LabelSpace: other tasks


def test_multiclass_names_sorted_numerically_and_unseen_label():
    space = LabelSpace.fit("multiclass", [10, 2, 2, 1, 10, 10])
    assert space.names == ["1", "2", "10"]  # numeric order, not "1", "10", "2"
    assert space.counts == [1.0, 2.0, 3.0]
    assert space.num_outputs == 3
    assert space.encode(2) == 1 and space.encode("10") == 2 and space.encode(10.0) == 2
    with pytest.raises(UnseenLabel) as info:
        space.encode(7)
    assert str(info.value) == "7"
    assert isinstance(info.value, ValueError)


def test_multilabel_space_encodes_rows_and_reports_unknown_names():
    rows = [["Age", "Gender"], [], ["Location"], ["Age"]]
    space = LabelSpace.fit("multilabel", rows)
    assert space.names == ["Age", "Gender", "Location"]
    assert space.counts == [2.0, 1.0, 1.0]
    assert space.n_train == 4
    assert space.encode(["Gender", "Age"]).tolist() == [1.0, 1.0, 0.0]
    assert space.encode([]).tolist() == [0.0, 0.0, 0.0]
    assert space.encode(["Age", "Religion"]).tolist() == [1.0, 0.0, 0.0]  # unknown names are left out...
    assert space.unknown_names(["Age", "Religion"]) == ["Religion"]  # ...and reported
    assert space.decode([1, 0, 1]) == ["Age", "Location"]
    with pytest.raises(InputError, match="no training row has any label"):
        LabelSpace.fit("multilabel", [[], []])


def test_regression_space():
    space = LabelSpace.fit("regression", [1.5, 2.0, -3.0], name="score")
    assert space.names == ["score"] and space.num_outputs == 1
    assert space.encode("2.5") == 2.5
    assert space.decode(np.float32(1.25)) == 1.25
    assert space.class_weights("balanced") is None


def test_class_weights():
    binary = LabelSpace.fit("binary", [0] * 30 + [1] * 10)
    np.testing.assert_allclose(binary.class_weights("balanced"), [3.0])  # negatives / positives
    np.testing.assert_allclose(binary.class_weights("sqrt"), [math.sqrt(3.0)])
    assert binary.class_weights("none") is None
    with pytest.raises(InputError, match="unknown class weighting"):
        binary.class_weights("inverse")

    multilabel = LabelSpace.fit("multilabel", [["a"], ["a", "b"], [], [], ["a"]])  # a: 3/5, b: 1/5
    np.testing.assert_allclose(multilabel.class_weights("balanced"), [2 / 3, 4.0])

    multiclass = LabelSpace.fit("multiclass", ["x"] * 6 + ["y"] * 3 + ["z"] * 3)
    np.testing.assert_allclose(multiclass.class_weights("balanced"), [12 / (3 * 6), 12 / (3 * 3), 12 / (3 * 3)])
    assert multiclass.class_weights("balanced").dtype == np.float32


def test_label_space_roundtrip_through_json():
    for space in (
        LabelSpace.fit("binary", ["toxic", "clean", "clean"], positive="clean"),
        LabelSpace.fit("multilabel", [["a"], ["b", "a"], []], label_sep="|"),
        LabelSpace.fit("multiclass", [3, 1, 2]),
        LabelSpace.fit("regression", [0.5, 1.0], name="score"),
    ):
        again = LabelSpace.from_dict(json.loads(json.dumps(space.to_dict())))
        assert again == space
        if space.task != "regression":
            np.testing.assert_allclose(again.class_weights("balanced"), space.class_weights("balanced"))


# ------------------------------------------------------------------------------------------ label parsing


@pytest.mark.parametrize(
    "cell, sep, expected",
    [
        ("['Age', 'Gender']", ",", ["Age", "Gender"]),  # the socsys PII csv: a Python list literal
        ('["Age", "Gender"]', ",", ["Age", "Gender"]),
        (["Age", "Gender"], ",", ["Age", "Gender"]),
        ("Age,Gender", ",", ["Age", "Gender"]),
        (" Age | Gender ", "|", ["Age", "Gender"]),
        ("Age|Gender|Age", "|", ["Age", "Gender"]),  # duplicates once, in order
        ("[]", ",", []),
        ("", ",", []),
        (None, ",", []),
        (float("nan"), ",", []),
        ([1, 2.0, None], ",", ["1", "2"]),
    ],
)
def test_parse_label_list(cell, sep, expected):
    assert parse_label_list(cell, sep) == expected


def test_parse_label_list_rejects_broken_lists():
    with pytest.raises(ValueError, match="cannot read the label list"):
        parse_label_list("[Age, Gender]")
    with pytest.raises(ValueError, match="cannot read the label list"):
        parse_label_list("[__import__('os')]")  # never evaluated


def test_parse_label_list_rejects_a_truncated_list():
    with pytest.raises(ValueError, match="cannot read the label list"):
        parse_label_list("['Age', 'Gender'")


@pytest.mark.parametrize("cell", [{"Age": 1}, [["Age"]], ["Age", {"Gender": 1}], '[["Age"], "Gender"]'])
def test_parse_label_list_rejects_objects_and_nested_lists(cell):
    with pytest.raises(ValueError, match="label"):  # str() of them would become odd label names
        parse_label_list(cell)


@pytest.mark.parametrize(
    "value, expected",
    [
        (1, True),
        (0, False),
        (1.0, True),
        (0.0, False),
        (float("nan"), False),
        ("1", True),
        ("0", False),
        ("True", True),
        ("false", False),
        ("yes", True),
        ("", False),
        ("0.7", True),
        (True, True),
        (False, False),
    ],
)
def test_truthy(value, expected):
    assert truthy(value) is expected


def test_truthy_rejects_words():
    with pytest.raises(ValueError, match="expected 0/1"):
        truthy("maybe")


# ---------------------------------------------------------------------------------------- reading files


def _multilabel_formats(tmp_path: Path, separable) -> dict[str, dict]:
    """The same multilabel rows in the four supported shapes, with the arguments each needs."""
    rows = separable.multilabel(40, seed=3)
    names = list(separable.MULTILABEL)
    literal = tmp_path / "literal.csv"  # "['Age', 'Gender']" as the socsys PII csv
    separable.write(literal, [{"id": r["id"], "text": r["text"], "labels": str(r["labels"])} for r in rows])
    jsonl = separable.write(tmp_path / "list.jsonl", rows)
    piped = tmp_path / "piped.jsonl"  # delimited strings (JSONL: a row with no label is "" here, see below)
    separable.write(piped, [{"id": r["id"], "text": r["text"], "labels": "|".join(r["labels"])} for r in rows])
    columns = tmp_path / "columns.csv"
    separable.write(
        columns, [{"id": r["id"], "text": r["text"], **{n: int(n in r["labels"]) for n in names}} for r in rows]
    )
    return {
        "literal": {"path": literal, "label_cols": ["labels"], "label_sep": ","},
        "json list": {"path": jsonl, "label_cols": ["labels"], "label_sep": ","},
        "delimited": {"path": piped, "label_cols": ["labels"], "label_sep": "|"},
        "0/1 columns": {"path": columns, "label_cols": names, "label_sep": ","},
        "_rows": rows,
    }


def test_multilabel_formats_give_the_same_rows_where_every_row_has_a_label(tmp_path, separable):
    formats = _multilabel_formats(tmp_path, separable)
    rows = formats.pop("_rows")
    labelled = {r["id"] for r in rows if r["labels"]}
    results = {}
    for name, spec in formats.items():
        data = load_texts(spec["path"], task="multilabel", label_cols=spec["label_cols"], label_sep=spec["label_sep"])
        keep = [i for i, row_id in enumerate(data.ids) if row_id in labelled]
        space = LabelSpace.fit("multilabel", [data.labels[i] for i in keep])
        targets = np.stack([space.encode(data.labels[i]) for i in keep])
        results[name] = (space.names, space.counts, [data.ids[i] for i in keep], targets)
    reference = results["json list"]
    assert reference[0] == ["Age", "Gender", "Location"]
    for name, (names, counts, ids, targets) in results.items():
        assert names == reference[0], name
        assert counts == reference[1], name
        assert ids == reference[2], name
        np.testing.assert_array_equal(targets, reference[3], err_msg=name)


def test_multilabel_rows_without_labels_are_kept_in_list_and_column_formats(tmp_path, separable):
    formats = _multilabel_formats(tmp_path, separable)
    rows = formats.pop("_rows")
    empty = [r["id"] for r in rows if not r["labels"]]
    assert empty, "the fixture should have rows with no label"
    for name in ("literal", "json list", "0/1 columns"):
        spec = formats[name]
        data = load_texts(spec["path"], task="multilabel", label_cols=spec["label_cols"], label_sep=spec["label_sep"])
        assert len(data) == len(rows), name
        assert all(data.labels[data.ids.index(i)] == [] for i in empty), name
        assert not data.skipped, name


def test_multilabel_delimited_empty_cell_means_no_labels(tmp_path, separable):
    formats = _multilabel_formats(tmp_path, separable)
    rows = formats.pop("_rows")
    spec = formats["delimited"]
    data = load_texts(spec["path"], task="multilabel", label_cols=spec["label_cols"], label_sep="|")
    assert len(data) == len(rows)
    assert not data.skipped


def test_load_texts_counts_bad_texts_and_missing_labels(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                '{"id": 1, "text": "fine", "label": "a"}',
                '{"id": 2, "text": NaN, "label": "a"}',
                '{"id": 3, "text": null, "label": "b"}',
                '{"id": 4, "text": "   ", "label": "b"}',
                '{"id": 5, "text": "no label", "label": null}',
                '{"id": 6, "text": "blank label", "label": ""}',
                '{"id": 7, "text": "ok too", "label": "b"}',
            ]
        )
        + "\n"
    )
    data = load_texts(path, task="binary")
    assert data.ids == ["1", "7"]
    assert data.labels == ["a", "b"]
    assert sum(data.skipped.values()) == 5
    assert data.skipped["missing label"] == 2
    # for prediction, rows without a label are kept (label None)
    unlabelled = load_texts(path, task="binary", require_labels=False)
    assert unlabelled.ids == ["1", "5", "6", "7"]
    assert unlabelled.labels == ["a", None, None, "b"]


def test_load_texts_ids_default_to_file_and_line(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("text,label\nhello,1\n,0\nbye,0\n")
    data = load_texts(path, task="binary")
    assert data.ids == ["rows:1", "rows:3"]  # the row number in the file, not the position after skipping
    assert data.skipped == Counter({"empty text": 1})
    assert data.origin == ["rows.csv", "rows.csv"]


def test_load_texts_errors_name_file_row_and_column(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("id,text,score\na,one,1.5\nb,two,lots\nc,three,2\n")
    with pytest.raises(InputError) as info:
        load_texts(path, task="regression", label_cols=["score"])
    message = str(info.value)
    assert str(path) in message and ":2" in message and "'score'" in message
    skipped = load_texts(path, task="regression", label_cols=["score"], skip_bad_rows=True)
    assert skipped.labels == [1.5, 2.0] and skipped.skipped == Counter({"unreadable label": 1})

    with pytest.raises(InputError) as info:
        load_texts(path, task="regression", label_cols=["label"])
    assert str(path) in str(info.value) and "'label'" in str(info.value)

    with pytest.raises(InputError, match="need --task multilabel"):
        load_texts(path, task="binary", label_cols=["a", "b"])


@pytest.mark.parametrize("bad", ['"inf"', '"nan"', "true", "Infinity"])
def test_regression_label_must_be_a_finite_number(tmp_path, bad):
    path = tmp_path / "r.jsonl"
    path.write_text(f'{{"text": "x", "label": 1}}\n{{"text": "y", "label": {bad}}}\n')
    with pytest.raises(InputError):
        load_texts(path, task="regression")


# ------------------------------------------------------------------------------------ splits and mixtures


def test_split_indices_80_10_10_seeded_and_stratified():
    labels = ["a"] * 150 + ["b"] * 90 + ["c"] * 60
    train, val, test = split_indices(300, 7, stratify=labels)
    assert (len(train), len(val), len(test)) == (240, 30, 30)
    assert sorted(train + val + test) == list(range(300))
    assert Counter(labels[i] for i in test) == {"a": 15, "b": 9, "c": 6}
    assert split_indices(300, 7, stratify=labels) == (train, val, test)
    assert split_indices(300, 8, stratify=labels)[2] != test


def test_split_indices_edge_cases():
    assert split_indices(2, 0) == ([0, 1], [], [])
    train, val, test = split_indices(100, 0, 0.2, 0.0)
    assert (len(train), len(val), test) == (80, 20, [])
    train, val, test = split_indices(100, 0, 0.0, 0.25)
    assert (len(train), val, len(test)) == (75, [], 25)
    # a class too small to stratify still splits
    train, val, test = split_indices(50, 0, stratify=["a"] * 49 + ["b"])
    assert len(train) + len(val) + len(test) == 50


@pytest.mark.parametrize("n", range(3, 16))
@pytest.mark.parametrize("classes", [2, 3])
def test_split_indices_of_a_handful_of_rows(n, classes):
    """Too few rows to stratify, or fewer held-out rows than classes: no error, every row once, and every class
    keeps a training row (else training would fail with "a single class")."""
    labels = [str(i % classes) for i in range(n)]
    for seed in range(5):
        train, val, test = split_indices(n, seed, stratify=labels)
        assert sorted(train + val + test) == list(range(n))
        assert {labels[i] for i in train} == set(labels)


def test_parse_weighted_files():
    assert parse_weighted_files(["real.csv:1.0,synthetic.csv:0.5"]) == [
        (Path("real.csv"), 1.0),
        (Path("synthetic.csv"), 0.5),
    ]
    assert parse_weighted_files(["a.jsonl", "b.jsonl:2"]) == [(Path("a.jsonl"), 1.0), (Path("b.jsonl"), 2.0)]
    assert parse_weighted_files(["dir:with:colon/x.csv"]) == [(Path("dir:with:colon/x.csv"), 1.0)]
    assert parse_weighted_files([" a.csv:0.25 , "]) == [(Path("a.csv"), 0.25)]
    with pytest.raises(InputError, match=">= 0"):
        parse_weighted_files(["a.csv:-1"])
    with pytest.raises(InputError):
        parse_weighted_files(["a.csv:nan"])


def _texts(n: int) -> LabelledTexts:
    return LabelledTexts(
        [f"t{i}" for i in range(n)], [i % 2 for i in range(n)], [f"id{i}" for i in range(n)], ["f"] * n
    )


def test_sample_fraction():
    data = _texts(100)
    assert sample_fraction(data, 1.0, 0) is data
    half = sample_fraction(data, 0.5, 0)
    assert len(half) == 50 and len(set(half.ids)) == 50
    assert half.ids == sample_fraction(data, 0.5, 0).ids
    assert half.ids != sample_fraction(data, 0.5, 1).ids
    twice = sample_fraction(data, 2.0, 0)
    assert Counter(twice.ids) == {f"id{i}": 2 for i in range(100)}
    one_and_half = sample_fraction(data, 1.5, 0)
    assert len(one_and_half) == 150 and set(one_and_half.ids) == set(data.ids)
    assert len(sample_fraction(data, 0.0, 0)) == 0


def test_infinite_weight_is_bad_input():
    with pytest.raises(InputError):
        parse_weighted_files(["a.csv:inf"])


# ------------------------------------------------------------------------------------ scores and settings


def test_scores_from_logits():
    binary = scores_from_logits("binary", np.array([[0.0], [100.0], [-100.0]]))
    np.testing.assert_allclose(binary, [0.5, 1.0, 0.0], atol=1e-12)
    assert binary.shape == (3,)
    regression = scores_from_logits("regression", np.array([[1.5], [-2.0]]))
    np.testing.assert_allclose(regression, [1.5, -2.0])
    multiclass = scores_from_logits("multiclass", np.array([[1000.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
    assert np.isfinite(multiclass).all()
    np.testing.assert_allclose(multiclass.sum(axis=1), 1.0)
    np.testing.assert_allclose(multiclass[1], [1 / 3] * 3)
    multilabel = scores_from_logits("multilabel", np.array([[0.0, 2.0]]))
    np.testing.assert_allclose(multilabel, [[0.5, 1 / (1 + math.exp(-2))]])


def test_train_settings_defaults_and_metrics():
    s = TrainSettings()
    assert (s.epochs, s.batch_size, s.lr, s.seed, s.class_weight, s.max_length) == (3.0, 16, 5e-5, 42, "balanced", 256)
    assert DEFAULT_METRIC == {
        "binary": "auprc",
        "multiclass": "macro_f1",
        "multilabel": "micro_f1",
        "regression": "pairwise_acc_0.1",
    }


def test_decide_uses_thresholds():
    clf = TextClassifier(LabelSpace.fit("binary", [0, 1]))
    scores = np.array([0.2, 0.45, 0.7])
    assert clf.decide(scores).tolist() == [0, 0, 1]
    clf.thresholds = [0.4]
    assert clf.decide(scores).tolist() == [0, 1, 1]
    ml = TextClassifier(LabelSpace.fit("multilabel", [["a"], ["b"]]))
    ml.thresholds = [0.3, 0.9]
    assert ml.decide(np.array([[0.35, 0.85]])).tolist() == [[1, 0]]


def test_load_classifier_errors(tmp_path):
    with pytest.raises(InputError, match="classifier.json missing"):
        read_card(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(InputError, match="rerun it to resume"):
        load_classifier(tmp_path)
    (tmp_path / "classifier.json").write_text('{"kind": "svm", "labels": {"task": "binary", "names": ["0", "1"]}}')
    with pytest.raises(InputError, match="unknown classifier kind 'svm'"):
        load_classifier(tmp_path)
    (tmp_path / "classifier.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable model card"):
        load_classifier(tmp_path)
    (tmp_path / "classifier.json").write_text("[1, 2]")  # valid JSON, but not a card
    with pytest.raises(InputError, match="not a model card"):
        load_classifier(tmp_path)
    card = {"kind": "tfidf-logreg", "labels": {"task": "binary", "names": ["0", "1"]}}
    (tmp_path / "classifier.json").write_text(json.dumps(card))  # the weights are missing
    with pytest.raises(InputError, match="cannot load the saved tfidf-logreg model.*model.joblib"):
        load_classifier(tmp_path)
    (tmp_path / "model.joblib").write_bytes(b"\x80\x04 torn")
    with pytest.raises(InputError, match="cannot load the saved tfidf-logreg model"):
        load_classifier(tmp_path)
    (tmp_path / "classifier.json").write_text(json.dumps({"kind": "tfidf-logreg", "labels": []}))
    with pytest.raises(InputError, match="unreadable labels"):
        load_classifier(tmp_path)


def test_label_keys_of_mixed_types_name_one_class():
    assert {label_key(v) for v in (1, "1", 1.0, "1.0", True, " 1.00 ")} == {"1"}
    assert {label_key(v) for v in (0, "0", 0.0, "0.0", False, "-0.0")} == {"0"}
    assert [label_key(v) for v in ("1.5", "a.0", "v1.0", "007")] == ["1.5", "a.0", "v1.0", "007"]


# ------------------------------------------------------------------------------------------- upvote preset


RECORD = {
    "id": "c1",
    "comment": "Honestly, just ask her.",
    "submission_title": "How do I ask someone out?",
    "created_submission": 1565411252,
    "created_comment": 1565415043,
    "label": 8,
    "author": "alice",
    "author_id": "t2_xyz",
}


def test_upvote_text_format():
    # 1565415043 is 2019-08-10 05:30:43 UTC (a Saturday); 1565415043 - 1565411252 = 3791 s = 1h 3m 11s
    expected = (
        "Time of reply: Saturday, August 10, 2019 05:30:43 UTC, which is 1h 3m 11s after post. || "
        "How do I ask someone out? || Honestly, just ask her."
    )
    assert upvote_text(RECORD) == expected
    assert upvote_text(RECORD, with_author=True) == "Author: alice (t2_xyz) || " + expected
    assert upvote_text(RECORD, comment="A rewrite.").endswith("|| How do I ask someone out? || A rewrite.")
    no_author = {k: v for k, v in RECORD.items() if k not in ("author", "author_id")}
    assert upvote_text(no_author, with_author=True).startswith("Author: [unknown] (-) || Time of reply:")


def test_upvote_text_accepts_strings_and_iso_dates():
    record = {**RECORD, "created_submission": "1565411252", "created_comment": "2019-08-10T05:30:43Z"}
    assert upvote_text(record) == upvote_text(RECORD)
    with pytest.raises(ValueError, match="not a time"):
        upvote_text({**RECORD, "created_comment": "yesterday"})


def test_readable_time_and_elapsed():
    assert readable_time(1565415043) == "Saturday, August 10, 2019 05:30:43 UTC"
    assert readable_time(0) == "Thursday, January 01, 1970 00:00:00 UTC"
    assert elapsed_hms(3791) == "1h 3m 11s"
    assert elapsed_hms(0) == "0h 0m 0s"
    assert elapsed_hms(90061) == "25h 1m 1s"  # hours are not wrapped into days
    assert elapsed_hms(-30) == "0h 0m 0s"  # clock skew


@pytest.mark.parametrize("score, target", [(8, 3.0), (-4, -2.0), (0, 0.0), (1, 0.0), (-1, 0.0), (2, 1.0), (0.5, 0.0)])
def test_upvote_target(score, target):
    assert upvote_target(score) == target


@pytest.mark.parametrize("score", [2, 8, -4, 3, -100, 1000])
def test_upvotes_from_target_inverts_the_target(score):
    assert upvotes_from_target(upvote_target(score)) == pytest.approx(score)


def test_upvotes_from_target_values():
    assert upvotes_from_target(3.0) == 8.0
    assert upvotes_from_target(-2.0) == -4.0
    assert upvotes_from_target(0.0) == 0.0


def test_upvote_preset_example():
    text, target = UpvotePreset().example(RECORD)
    assert text == upvote_text(RECORD) and target == 3.0
    text, target = UpvotePreset(with_author=True).example({**RECORD, "label": "-4"})
    assert text.startswith("Author: alice") and target == -2.0
    assert UpvotePreset().example({**RECORD, "label": None})[1] is None
    with pytest.raises(ValueError, match="score is not a number"):
        UpvotePreset().example({**RECORD, "label": "many"})


@pytest.mark.parametrize("n", [0, 1, 7, 10])
def test_split_half(n):
    train, infer = split_half(n, 3)
    assert sorted(train + infer) == list(range(n))
    assert not set(train) & set(infer)
    assert len(train) - len(infer) in (0, 1)
    assert split_half(n, 3) == (train, infer)
    if n >= 7:
        assert split_half(n, 4) != (train, infer)


def test_bootstrap_mean_ci():
    values = [1.0, 2.0, 3.0, 4.0, None, 5.0]
    mean, low, high = bootstrap_mean_ci(values, n_boot=1000, seed=0)
    assert mean == 3.0
    assert low < mean < high and 1.0 <= low and high <= 5.0
    assert bootstrap_mean_ci(values, n_boot=1000, seed=0) == (mean, low, high)
    assert bootstrap_mean_ci([]) == (None, None, None)
    assert bootstrap_mean_ci([None]) == (None, None, None)
    assert bootstrap_mean_ci([2.5]) == (2.5, 2.5, 2.5)
    # a wider level gives a wider interval; many samples give a tight one around the mean
    _, low99, high99 = bootstrap_mean_ci(values, n_boot=1000, seed=0, level=0.99)
    assert low99 <= low and high99 >= high
    rng = np.random.default_rng(0)
    big = rng.normal(1.0, 1.0, 4000)
    m, lo, hi = bootstrap_mean_ci(big, n_boot=500)
    assert lo < m < hi and hi - lo < 0.1 and lo < 1.05 and hi > 0.95
