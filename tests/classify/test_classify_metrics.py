"""socialsynth.classify.metrics against values worked out by hand (and naive loops for the fast algorithms)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from socialsynth.classify.metrics import (
    RANKING_GAPS,
    classification_metrics,
    evaluate,
    flat_metrics,
    headline,
    pairwise_ranking_accuracy,
    per_item_pairwise_accuracy,
    regression_metrics,
    tune_thresholds,
)
from socialsynth.classify.report import format_comparison, format_report

approx = pytest.approx


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def assert_plain_json(value):
    """No numpy scalars or NaN anywhere: json.dumps with allow_nan=False must accept it."""
    json.dumps(value, allow_nan=False)

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                assert isinstance(k, str)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        else:
            assert node is None or type(node) in (int, float, str, bool), (node, type(node))

    walk(value)


# ------------------------------------------------------------------------------------------------------ binary

# Sorted by score. Positives at 0.9, 0.8, 0.6, 0.4; negatives at 0.55, 0.3, 0.2, 0.1.
BIN_Y = [1, 1, 1, 0, 1, 0, 0, 0]
BIN_S = [0.9, 0.8, 0.6, 0.55, 0.4, 0.3, 0.2, 0.1]


def test_binary_at_half():
    m = classification_metrics("binary", BIN_Y, BIN_S, ["ok", "toxic"])
    # >= 0.5 predicts the first four: TP 3 (0.9, 0.8, 0.6), FP 1 (0.55), FN 1 (0.4), TN 3.
    assert m["confusion"] == [[3, 1], [1, 3]]
    assert m["precision"] == approx(3 / 4)
    assert m["recall"] == approx(3 / 4)
    assert m["f1"] == approx(3 / 4)
    assert m["accuracy"] == approx(6 / 8)
    assert (m["support_pos"], m["support_neg"], m["threshold"]) == (4, 4, 0.5)
    # AUROC: of the 16 (pos, neg) pairs only (0.4, 0.55) is misordered -> 15/16.
    assert m["auroc"] == approx(15 / 16)
    # AP: recall steps of 1/4 at precisions 1, 1, 1 and then 4/5 (0.55 is a false positive before 0.4).
    assert m["auprc"] == approx(0.25 * (1 + 1 + 1 + 0.8))
    assert_plain_json(m)


def test_binary_tuned_threshold():
    # F1 = 2TP / (#predicted + #positives) at each distinct score t (predict score >= t), P = 4:
    #   0.9: 2/5   0.8: 4/6   0.6: 6/7   0.55: 6/8   0.4: 8/9   0.3: 8/10   0.2: 8/11   0.1: 8/12
    # -> 0.4 wins (catches the 4th positive at the cost of one false positive).
    assert tune_thresholds("binary", BIN_Y, BIN_S) == [0.4]
    m = classification_metrics("binary", BIN_Y, BIN_S, ["ok", "toxic"], thresholds=[0.4])
    assert m["confusion"] == [[3, 1], [0, 4]]
    assert m["precision"] == approx(4 / 5)
    assert m["recall"] == approx(1.0)
    assert m["f1"] == approx(8 / 9)
    assert m["accuracy"] == approx(7 / 8)


def test_tuned_threshold_tie_goes_closest_to_half():
    # Sorted scores 0.9 (pos), 0.6 (neg), 0.45 (neg), 0.2 (pos); P = 2.
    # F1: t=0.9 -> 2/(1+2) = 2/3; 0.6 -> 2/4; 0.45 -> 2/5; 0.2 -> 4/(4+2) = 2/3. Tie 0.9 vs 0.2: 0.2 is closer to 0.5.
    assert tune_thresholds("binary", [1, 0, 0, 1], [0.9, 0.6, 0.45, 0.2]) == [0.2]


def test_tune_thresholds_matches_brute_force():
    rng = np.random.default_rng(0)
    n, n_labels = 400, 6
    y = (rng.random((n, n_labels)) < [0.05, 0.2, 0.5, 0.8, 0.3, 0.0]).astype(int)
    # Scores on a coarse grid: many tied scores, and many tied F1 values.
    s = np.clip(np.round(0.35 * y + rng.random((n, n_labels)) * 0.65, 2), 0, 1)

    def brute(yl, sl):
        if yl.sum() == 0:
            return 0.5
        best = None
        for t in np.unique(sl):
            pred = sl >= t
            tp, fp, fn = np.sum(pred & (yl == 1)), np.sum(pred & (yl == 0)), np.sum(~pred & (yl == 1))
            f1 = 2 * tp / (2 * tp + fp + fn)
            key = (-f1, abs(t - 0.5), t)
            best = min(best, (key, t)) if best else (key, t)
        return float(best[1])

    assert tune_thresholds("multilabel", y, s) == [brute(y[:, j], s[:, j]) for j in range(n_labels)]
    assert tune_thresholds("binary", y[:, 2], s[:, 2]) == [brute(y[:, 2], s[:, 2])]
    # the 0.01..0.99 grid equals the brute force over that grid
    grid = np.round(np.arange(1, 100) / 100, 2)

    def brute_grid(yl, sl):
        f1s = [2 * np.sum((sl >= t) & (yl == 1)) / (np.sum(sl >= t) + yl.sum()) for t in grid]
        best = max(f1s)
        return float(min((abs(t - 0.5), t) for t, f in zip(grid, f1s, strict=True) if f == best)[1])

    assert tune_thresholds("binary", y[:, 1], s[:, 1], grid=True) == approx([brute_grid(y[:, 1], s[:, 1])])
    assert tune_thresholds("multiclass", [0, 1], [[0.6, 0.4], [0.3, 0.7]]) == []
    assert tune_thresholds("regression", [0.0, 1.0], [0.2, 0.3]) == []


# -------------------------------------------------------------------------------------------------- multilabel

ML_NAMES = ["toxic", "sarcasm", "spam"]
ML_Y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])  # nobody is spam
ML_LOGITS = np.array(
    [
        [2.0, -1.0, -3.0],  # p = 0.881 0.269 0.047
        [0.3, 1.5, -2.0],  # p = 0.574 0.818 0.119   toxic: logit 0.3 < 0.5 but p > 0.5
        [-0.5, 0.2, -1.0],  # p = 0.378 0.550 0.269   sarcasm: logit 0.2 < 0.5 but p > 0.5
        [0.2, -2.0, 0.1],  # p = 0.550 0.119 0.525   two false positives at 0.5
    ]
)
ML_P = sigmoid(ML_LOGITS)


def test_multilabel_at_half_by_hand():
    m = classification_metrics("multilabel", ML_Y, ML_P, ML_NAMES)
    # predictions (p >= 0.5): [1,0,0] [1,1,0] [0,1,0] [1,0,1] -> rows 0-2 exact, row 3 wrong in 2 cells.
    assert m["subset_accuracy"] == approx(3 / 4)
    assert m["hamming_loss"] == approx(2 / 12)
    toxic, sarcasm, spam = (m["per_label"][k] for k in ML_NAMES)
    assert (toxic["precision"], toxic["recall"], toxic["f1"], toxic["support"]) == approx((2 / 3, 1, 0.8, 2))
    assert (sarcasm["precision"], sarcasm["recall"], sarcasm["f1"]) == approx((1, 1, 1))
    # spam: no positives, one false positive -> 0 everywhere (zero_division=0), AUPRC undefined
    assert (spam["precision"], spam["recall"], spam["f1"], spam["support"]) == (0.0, 0.0, 0.0, 0)
    assert spam["auprc"] is None and spam["auroc"] is None
    # micro: TP 4, FP 2, FN 0
    assert m["micro_precision"] == approx(4 / 6)
    assert m["micro_recall"] == approx(1.0)
    assert m["micro_f1"] == approx(8 / 10)
    assert m["macro_f1"] == approx((0.8 + 1 + 0) / 3)
    # samples F1: rows 0-2 -> 1; row 3 has no true label and two predicted -> 0
    assert m["samples_f1"] == approx(3 / 4)
    assert toxic["auprc"] == approx(1.0) and sarcasm["auprc"] == approx(1.0)
    assert m["thresholds"] == {"toxic": 0.5, "sarcasm": 0.5, "spam": 0.5}


def test_multilabel_thresholds_apply_to_probabilities_not_logits():
    # Thresholding the raw logits at 0.5 would drop toxic on row 1 and sarcasm on row 2 (and row 3's false
    # positives), giving a different subset accuracy (rows 0 and 3 only: 2/4) than the correct 3/4.
    wrong = (ML_LOGITS >= 0.5).astype(int)
    assert np.mean(np.all(wrong == ML_Y, axis=1)) == 0.5
    assert classification_metrics("multilabel", ML_Y, ML_P, ML_NAMES)["subset_accuracy"] == approx(0.75)
    with pytest.raises(ValueError, match="sigmoid"):
        classification_metrics("multilabel", ML_Y, ML_LOGITS, ML_NAMES)


def test_multilabel_tuned_and_label_without_positives():
    # toxic sorted p: 0.881 (pos), 0.574 (pos), 0.550 (neg), 0.378 (neg): t = 0.574 gives F1 1.
    # sarcasm: 0.818 (pos), 0.550 (pos), 0.269, 0.119: t = 0.550 gives F1 1. spam: no positives -> 0.5.
    thresholds = tune_thresholds("multilabel", ML_Y, ML_P)
    assert thresholds == approx([sigmoid(0.3), sigmoid(0.2), 0.5])
    result = evaluate("multilabel", ML_Y, ML_P, ML_NAMES, thresholds)
    tuned = result["tuned"]
    # only row 3's spam false positive is left: TP 4, FP 1
    assert tuned["per_label"]["toxic"]["f1"] == approx(1.0)
    assert tuned["micro_f1"] == approx(8 / 9)
    assert tuned["macro_f1"] == approx(2 / 3)
    assert tuned["subset_accuracy"] == approx(3 / 4)
    assert tuned["hamming_loss"] == approx(1 / 12)
    assert tuned["per_label"]["spam"]["threshold"] == 0.5
    assert result["at_0.5"]["micro_f1"] == approx(0.8)
    assert result["n"] == 4
    assert_plain_json(result)
    assert headline("multilabel", result) == approx(
        {"micro_f1": 8 / 9, "macro_f1": 2 / 3, "subset_accuracy": 0.75, "macro_auprc": 1.0}
    )
    # an all-zero label column never crashes tuning
    assert tune_thresholds("multilabel", np.zeros((3, 2), int), np.full((3, 2), 0.7)) == [0.5, 0.5]


# -------------------------------------------------------------------------------------------------- multiclass


def test_multiclass_macro_vs_micro_by_hand():
    y_true = [0, 0, 0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 0, 0, 0, 1, 1, 0, 2, 0]
    scores = np.full((10, 3), 0.1)
    scores[np.arange(10), y_pred] = 0.8
    m = evaluate("multiclass", y_true, scores, ["neutral", "angry", "happy"])
    # neutral: TP 5, predicted 7, support 6 -> P 5/7, R 5/6, F1 10/13
    # angry:   TP 1, predicted 2, support 2 -> P 1/2, R 1/2, F1 1/2
    # happy:   TP 1, predicted 1, support 2 -> P 1,   R 1/2, F1 2/3
    f1 = [10 / 13, 1 / 2, 2 / 3]
    assert m["per_label"]["neutral"] == approx({"precision": 5 / 7, "recall": 5 / 6, "f1": 10 / 13, "support": 6})
    assert m["per_label"]["happy"] == approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["accuracy"] == approx(7 / 10)
    assert m["micro_f1"] == approx(7 / 10)  # single-label: micro F1 = accuracy
    assert m["macro_f1"] == approx(sum(f1) / 3)  # 0.645: the small classes weigh as much as the big one
    assert m["weighted_f1"] == approx((6 * f1[0] + 2 * f1[1] + 2 * f1[2]) / 10)
    assert m["confusion"] == [[5, 1, 0], [1, 1, 0], [1, 0, 1]]
    assert m["n"] == 10
    assert headline("multiclass", m) == approx({"macro_f1": sum(f1) / 3, "accuracy": 0.7})
    assert_plain_json(m)


# --------------------------------------------------------------------------------------------- pairwise ranking

# pairs and |true difference|: (0,1) 0.05  (0,2) 0.2  (0,3) 1.0  (1,2) 0.15  (1,3) 0.95  (2,3) 0.8
# prediction order:            right       right     right      tie 0.5     wrong       wrong
RANK_TRUE = [0.0, 0.05, 0.2, 1.0]
RANK_PRED = [0.1, 0.3, 0.3, 0.25]


@pytest.mark.parametrize(
    "gap, expected",
    [
        (0.01, (3.5 / 6, 6)),  # all six pairs
        (0.1, (2.5 / 5, 5)),  # drops (0,1)
        (0.3, (1 / 3, 3)),  # (0,3), (1,3), (2,3)
        (1.0, (None, 0)),  # |diff| must exceed the gap: (0,3) = 1.0 does not qualify
    ],
)
def test_pairwise_ranking_by_hand(gap, expected):
    acc, pairs = pairwise_ranking_accuracy(RANK_TRUE, RANK_PRED, gap)
    assert pairs == expected[1]
    assert acc == (None if expected[0] is None else approx(expected[0]))


def test_per_item_by_hand():
    # gap 0.1: item 0 -> (0,2) 1, (0,3) 1; item 1 -> (1,2) 0.5, (1,3) 0; item 2 -> (0,2), (1,2), (2,3) = 1, 0.5, 0;
    # item 3 -> (0,3), (1,3), (2,3) = 1, 0, 0
    assert per_item_pairwise_accuracy(RANK_TRUE, RANK_PRED, 0.1) == approx([1.0, 0.25, 0.5, 1 / 3])
    assert np.all(np.isnan(per_item_pairwise_accuracy(RANK_TRUE, RANK_PRED, 1.0)))


def naive_pairs(t, p, gap):
    score, count = 0.0, 0
    per_score, per_count = np.zeros(len(t)), np.zeros(len(t))
    for i in range(len(t)):
        for j in range(i + 1, len(t)):
            if abs(t[i] - t[j]) > gap:
                dt, dp = t[i] - t[j], p[i] - p[j]
                s = 0.5 if dp == 0 else float((dt > 0) == (dp > 0))
                score, count = score + s, count + 1
                per_score[[i, j]] += s
                per_count[[i, j]] += 1
    with np.errstate(invalid="ignore"):
        return (score / count if count else None), count, per_score / per_count


def test_blockwise_equals_naive_loop(monkeypatch):
    import socialsynth.classify.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "_BLOCK_ELEMENTS", 1000)  # many small row blocks of 3 rows
    rng = np.random.default_rng(1)
    n = 300
    t = np.round(rng.random(n) * 5) / 5 + rng.choice([0, 0.05], n)  # ties in y_true
    p = np.round(t + rng.normal(0, 0.4, n), 1)  # ties in predictions
    for gap in (0.0, 0.01, 0.1, 0.3, 1.0, 10.0):
        acc, count, per_item = naive_pairs(t, p, gap)
        got_acc, got_count = pairwise_ranking_accuracy(t, p, gap)
        assert got_count == count
        assert got_acc == (None if acc is None else approx(acc, abs=1e-12))
        np.testing.assert_allclose(per_item_pairwise_accuracy(t, p, gap), per_item, atol=1e-12)


def test_pairwise_sampling_and_speed():
    rng = np.random.default_rng(2)
    t = rng.normal(size=5000)
    p = t + rng.normal(size=5000)
    exact, pairs = pairwise_ranking_accuracy(t, p, 0.1)
    assert 0.5 < exact < 1 and 0 < pairs < 5000 * 4999 // 2
    sampled, sampled_pairs = pairwise_ranking_accuracy(t, p, 0.1, max_pairs=200_000, seed=3)
    assert sampled_pairs <= 200_000 and sampled == approx(exact, abs=0.01)
    assert pairwise_ranking_accuracy(t, p, 0.1, max_pairs=200_000, seed=3) == (sampled, sampled_pairs)


# -------------------------------------------------------------------------------------------------- regression


def test_regression_by_hand():
    y_true = [1.0, 2.0, 3.0, 4.0]
    y_pred = [1.5, 2.0, 2.5, 5.0]
    m = regression_metrics(y_true, y_pred)
    # errors 0.5, 0, -0.5, 1
    assert m["mse"] == approx((0.25 + 0 + 0.25 + 1) / 4)
    assert m["mae"] == approx((0.5 + 0 + 0.5 + 1) / 4)
    assert m["r2"] == approx(1 - 1.5 / 5)  # SS_res 1.5, SS_tot 5
    assert m["spearman"] == approx(1.0)
    assert m["pearson"] == approx(5.5 / math.sqrt(5 * 7.25))
    assert m["n"] == 4
    # all 6 pairs ordered right; |differences| are 1, 2, 3 -> 6 pairs for gaps < 1, 3 for gap 1.0 (> 1 only)
    assert list(m["pairwise_accuracy"]) == ["0.01", "0.1", "0.3", "1.0"] == [str(g) for g in RANKING_GAPS]
    assert m["pairwise_pairs"] == {"0.01": 6, "0.1": 6, "0.3": 6, "1.0": 3}
    assert m["pairwise_accuracy"] == {"0.01": 1.0, "0.1": 1.0, "0.3": 1.0, "1.0": 1.0}
    constant = regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])
    assert constant["r2"] is None and constant["pearson"] is None and constant["pairwise_accuracy"]["0.01"] is None
    assert_plain_json(constant)


# --------------------------------------------------------------------------------------- entry points, reports


def test_evaluate_is_json_and_headline_flat():
    result = evaluate("binary", BIN_Y, BIN_S, ["ok", "toxic"], thresholds=[0.4])
    assert_plain_json(result)
    assert set(result) == {"at_0.5", "tuned", "n"}
    assert "tuned" not in evaluate("binary", BIN_Y, BIN_S, ["ok", "toxic"])
    assert "tuned" not in evaluate("binary", BIN_Y, BIN_S, ["ok", "toxic"], thresholds=[])  # an untuned model
    assert headline("binary", result) == approx({"f1": 8 / 9, "f1_at_0.5": 0.75, "auroc": 15 / 16, "auprc": 0.95})
    flat = flat_metrics("binary", result, prefix="eval_")
    assert flat["eval_tuned/f1"] == approx(8 / 9) and flat["eval_at_0.5/auroc"] == approx(15 / 16)
    assert all(type(v) is float for v in flat.values())
    # one class only: AUROC/AUPRC None, skipped when flattened and left out of the headline
    single = evaluate("binary", [0, 0, 0], [0.2, 0.6, 0.1], ["ok", "toxic"])
    assert single["at_0.5"]["auroc"] is None and single["at_0.5"]["auprc"] is None
    assert_plain_json(single)
    assert "at_0.5/auroc" not in flat_metrics("binary", single)
    assert "auroc" not in headline("binary", single)

    reg = evaluate("regression", [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 5.0], ["formality"])
    assert_plain_json(reg)
    assert headline("regression", reg) == approx({"mse": 0.375, "r2": 0.7, "spearman": 1.0, "pairwise_acc_0.1": 1.0})
    assert flat_metrics("regression", reg)["pairwise_accuracy/0.3"] == 1.0


def test_shape_errors():
    with pytest.raises(ValueError, match="positive-class probability"):
        evaluate("binary", [0, 1], [[0.5, 0.5], [0.2, 0.8]], ["ok", "toxic"])
    with pytest.raises(ValueError, match="label_names"):
        evaluate("multiclass", [0, 1], [[0.5, 0.5], [0.2, 0.8]], ["a", "b", "c"])
    with pytest.raises(ValueError, match="items"):
        evaluate("regression", [1.0, 2.0], [1.0], ["y"])
    with pytest.raises(ValueError, match="thresholds"):
        evaluate("multilabel", ML_Y, ML_P, ML_NAMES, thresholds=[0.5])
    with pytest.raises(ValueError, match="class indices"):
        evaluate("multiclass", [0, 2], [[0.5, 0.5], [0.2, 0.8]], ["a", "b"])
    with pytest.raises(ValueError, match="unknown task"):
        evaluate("ranking", [0], [0.1], ["x"])
    with pytest.raises(ValueError, match="same length"):
        pairwise_ranking_accuracy([1.0, 2.0], [1.0], 0.1)


def test_format_report_and_comparison():
    binary = format_report("binary", evaluate("binary", BIN_Y, BIN_S, ["ok", "toxic"], [0.4]), title="toxicity")
    assert "toxicity" in binary and "threshold 0.5" in binary and "tuned threshold (0.400)" in binary
    for text in ("ok", "toxic", "0.750", "0.889", "0.938", "0.950"):
        assert text in binary

    thresholds = tune_thresholds("multilabel", ML_Y, ML_P)
    multilabel = format_report("multilabel", evaluate("multilabel", ML_Y, ML_P, ML_NAMES, thresholds))
    for text in ML_NAMES + ["threshold 0.5", "tuned threshold", "0.574", "0.800", "0.889", "subset accuracy"]:
        assert text in multilabel
    table = multilabel.split("-- threshold 0.5 --")[1].splitlines()
    header = next(line for line in table if "precision" in line)
    toxic_row = next(line for line in table if line.strip().startswith("toxic"))
    assert len(header) == len(toxic_row)  # right-aligned columns end together

    regression = format_report("regression", evaluate("regression", [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.5, 5.0], ["y"]))
    for text in ("MSE", "0.375", "MAE", "0.500", "R²", "0.700", "> 1.0"):
        assert text in regression

    comparison = format_comparison({"tfidf": {"f1": 0.5, "auroc": 0.7}, "minilm-long-name": {"f1": 0.8123}})
    lines = comparison.splitlines()
    assert lines[0].split() == ["run", "f1", "auroc"]
    assert "0.812" in lines[3] and lines[3].rstrip().endswith("-")
    assert len({len(line) for line in lines}) == 1
