"""Evaluation metrics for the text classifiers: classification, regression and pairwise ranking accuracy.

Score conventions (every function here expects them; apply sigmoid/softmax to logits first):

* ``binary``: ``y_true`` (n,) of 0/1; ``scores`` (n,) probability of the positive class.
* ``multiclass``: ``y_true`` (n,) class indices 0..C-1; ``scores`` (n, C) probabilities (rows sum to 1).
* ``multilabel``: ``y_true`` (n, L) of 0/1; ``scores`` (n, L) independent sigmoid probabilities.
* ``regression``: ``y_true`` (n,) floats; ``scores`` (n,) predictions.

An item is predicted positive when ``score >= threshold``. Everything returned is plain Python (float, int,
list, dict, None), so it can be written with ``json.dumps``; an undefined value (AUROC with one class present,
R² of a constant target, ...) is ``None``, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

TASKS = ("binary", "multiclass", "multilabel", "regression")
RANKING_GAPS = (0.01, 0.1, 0.3, 1.0)
DEFAULT_GRID = tuple(round(k / 100, 2) for k in range(1, 100))  # 0.01 .. 0.99, for tune_thresholds(grid=True)
# regression_metrics samples pairs above this many (n(n-1)/2 > DEFAULT_MAX_PAIRS, i.e. n > ~20,000 items).
DEFAULT_MAX_PAIRS = 200_000_000
# Elements per block of the pairwise computations: a few arrays of this size (int32/bool) stay well under 100 MB.
_BLOCK_ELEMENTS = 1 << 22
_PROB_TOLERANCE = 1e-6
_ROW_SUM_TOLERANCE = 1e-2


# ----------------------------------------------------------------------------------------------- validation


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


def _finite(name: str, array: np.ndarray) -> None:
    if array.size and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")


def _zero_one(name: str, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.int64)
    _finite(name, array.astype(np.float64))
    if array.size and not np.all((array == 0) | (array == 1)):
        bad = np.unique(array[(array != 0) & (array != 1)])[:5].tolist()
        raise ValueError(f"{name} must contain only 0 and 1; found {bad}")
    return array.astype(np.int64)


def _probabilities(name: str, scores: np.ndarray) -> None:
    _finite(name, scores)
    if scores.size and (scores.min() < -_PROB_TOLERANCE or scores.max() > 1 + _PROB_TOLERANCE):
        raise ValueError(
            f"{name} must be probabilities in [0, 1] (got values in [{scores.min():.4g}, {scores.max():.4g}]); "
            "apply sigmoid (binary/multilabel) or softmax (multiclass) to logits first"
        )


def _names(task: str, label_names: Sequence[str] | None, expected: int) -> list[str]:
    if label_names is None:
        raise ValueError(f"label_names is required for task {task!r}")
    if isinstance(label_names, str):
        raise ValueError("label_names must be a list of strings, not a single string")
    names = [str(name) for name in label_names]
    if len(names) != expected:
        what = {
            "binary": "2 names ([negative, positive])",
            "multiclass": f"{expected} names (one per class column of scores)",
            "multilabel": f"{expected} names (one per label column)",
            "regression": "1 name ([target])",
        }[task]
        raise ValueError(f"label_names has {len(names)} entries; task {task!r} needs {what}")
    if len(set(names)) != len(names):
        raise ValueError(f"label_names must be distinct: {names}")
    return names


def _prepare(task: str, y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes/values for a task; returns (y_true, scores) as numpy arrays (ints / float64)."""
    _check_task(task)
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if task in ("binary", "regression"):
        if y.ndim != 1 or s.ndim != 1:
            hint = " (for binary pass the positive-class probability, e.g. probs[:, 1])" if task == "binary" else ""
            raise ValueError(f"task {task!r} needs 1-D y_true and scores; got shapes {y.shape} and {s.shape}{hint}")
        if len(y) != len(s):
            raise ValueError(f"y_true has {len(y)} items but scores has {len(s)}")
        if len(y) == 0:
            raise ValueError("no items to evaluate")
        if task == "binary":
            y = _zero_one("y_true", y)
            _probabilities("scores", s)
        else:
            y = y.astype(np.float64)
            _finite("y_true", y)
            _finite("scores", s)
        return y, s
    if task == "multiclass":
        if y.ndim != 1 or s.ndim != 2:
            raise ValueError(
                f"task 'multiclass' needs y_true (n,) class indices and scores (n, C); got {y.shape} and {s.shape}"
            )
    elif y.ndim != 2 or s.ndim != 2 or y.shape != s.shape:
        raise ValueError(
            f"task 'multilabel' needs y_true and scores of the same (n, L) shape; got {y.shape} and {s.shape}"
        )
    if len(y) != len(s):
        raise ValueError(f"y_true has {len(y)} items but scores has {len(s)}")
    if len(y) == 0:
        raise ValueError("no items to evaluate")
    _probabilities("scores", s)
    if task == "multiclass":
        n_classes = s.shape[1]
        if n_classes < 2:
            raise ValueError(f"multiclass scores need at least 2 columns; got {n_classes}")
        yf = y.astype(np.float64)
        _finite("y_true", yf)
        if not np.all(yf == np.round(yf)) or yf.min() < 0 or yf.max() >= n_classes:
            raise ValueError(f"multiclass y_true must be class indices in 0..{n_classes - 1}")
        sums = s.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=_ROW_SUM_TOLERANCE, rtol=0):
            worst = float(sums[np.argmax(np.abs(sums - 1.0))])
            raise ValueError(f"multiclass scores must be probabilities whose rows sum to 1 (a row sums to {worst:.4g})")
        return yf.astype(np.int64), s
    return _zero_one("y_true", y), s


def _num(value: Any) -> float | None:
    """A plain float, or None for missing / non-finite values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _no_thresholds(thresholds: Any) -> bool:
    """None or an empty sequence (a model that was never tuned) both mean 'no thresholds'."""
    return thresholds is None or (not np.isscalar(thresholds) and np.asarray(thresholds).size == 0)


def _thresholds_for(task: str, thresholds: Any, n_labels: int) -> list[float]:
    if _no_thresholds(thresholds):
        return [0.5] * n_labels
    if np.isscalar(thresholds):
        values = [float(thresholds)] * (1 if task == "binary" else n_labels)
    else:
        values = [float(t) for t in np.asarray(thresholds, dtype=np.float64).reshape(-1)]
    if len(values) != n_labels:
        raise ValueError(f"got {len(values)} thresholds; task {task!r} needs {n_labels}")
    if not all(math.isfinite(t) for t in values):
        raise ValueError("thresholds must be finite numbers")
    return values


# ------------------------------------------------------------------------------------------ threshold tuning


def _best_f1_threshold(y: np.ndarray, s: np.ndarray, grid: np.ndarray | None) -> float:
    """Threshold maximising F1 of (s >= t) for one label; ties go to the threshold closest to 0.5 (then the lower)."""
    positives = int(y.sum())
    if positives == 0:
        return 0.5
    if grid is None:
        order = np.argsort(-s, kind="mergesort")
        s_desc = s[order]
        tp_cum = np.cumsum(y[order])
        # Last index of each run of equal scores: threshold s_desc[k] predicts items 0..k positive.
        last = np.flatnonzero(np.r_[s_desc[1:] != s_desc[:-1], True])
        candidates = s_desc[last]
        tp = tp_cum[last]
        predicted = last + 1
    else:
        candidates = grid
        predicted = len(s) - np.searchsorted(np.sort(s), candidates, side="left")
        tp = positives - np.searchsorted(np.sort(s[y == 1]), candidates, side="left")
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (predicted + positives); equal fractions give identical floats.
    f1 = 2.0 * tp / (predicted + positives)
    best = np.flatnonzero(f1 == f1.max())
    distance = np.abs(candidates[best] - 0.5)
    closest = best[distance == distance.min()]
    return float(candidates[closest].min())


def tune_thresholds(task: str, y_true: Any, scores: Any, grid: Any = None) -> list[float]:
    """Decision thresholds maximising F1 on (validation) data: binary -> [t]; multilabel -> one per label.

    Candidates are the distinct score values (``grid=None``), the grid 0.01..0.99 (``grid=True``) or the given
    sequence of thresholds. Ties go to the threshold closest to 0.5 (then the lower one). A label without positives
    gets 0.5. multiclass/regression -> []. Cost: one sort per label (O(n log n)), plus O(G log n) for a grid.
    """
    _check_task(task)
    if task in ("multiclass", "regression"):
        return []
    y, s = _prepare(task, y_true, scores)
    grid_values = None
    if grid is not None and grid is not False:
        grid_values = np.asarray(DEFAULT_GRID if grid is True else grid, dtype=np.float64).reshape(-1)
        if grid_values.size == 0 or not np.all(np.isfinite(grid_values)):
            raise ValueError("grid must be a non-empty sequence of finite thresholds")
        grid_values = np.unique(grid_values)
    if task == "binary":
        return [_best_f1_threshold(y, s, grid_values)]
    return [_best_f1_threshold(y[:, j], s[:, j], grid_values) for j in range(y.shape[1])]


# --------------------------------------------------------------------------------------------- pairwise ranking


def _pairwise_inputs(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.ndim != 1 or p.ndim != 1 or len(t) != len(p):
        raise ValueError(f"y_true and y_pred must be 1-D of the same length; got shapes {t.shape} and {p.shape}")
    _finite("y_true", t)
    _finite("y_pred", p)
    return t, p


def _check_gap(gap: Any) -> float:
    gap = float(gap)
    if not math.isfinite(gap) or gap < 0:
        raise ValueError(f"gap must be a finite number >= 0; got {gap}")
    return gap


def _lower_bound(predicate, size: int, n: int) -> np.ndarray:
    """For `size` monotone (False..False True..True over j in 0..n-1) predicates: the first j where True (n if none).

    ``predicate(j)`` gets an index array of length `size` (one candidate j per query) and returns a bool array.
    Vectorised binary search: about log2(n) passes.
    """
    lo = np.zeros(size, dtype=np.int64)
    hi = np.full(size, n, dtype=np.int64)
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        ok = predicate(np.minimum(mid, n - 1)) & active
        hi = np.where(ok, mid, hi)
        lo = np.where(active & ~ok, mid + 1, lo)


def _above(t_sorted: np.ndarray, gap: float) -> np.ndarray:
    """k[i] = first j with t[j] - t[i] > gap (t sorted ascending), evaluated exactly as the difference is."""
    return _lower_bound(lambda j: (t_sorted[j] - t_sorted) > gap, len(t_sorted), len(t_sorted))


def _below(t_sorted: np.ndarray, gap: float) -> np.ndarray:
    """l[i] = number of j with t[i] - t[j] > gap (a prefix of the sorted order)."""
    return _lower_bound(lambda j: ~((t_sorted - t_sorted[j]) > gap), len(t_sorted), len(t_sorted))


def _row_block(n_columns: int) -> int:
    return max(1, _BLOCK_ELEMENTS // max(1, n_columns))


def _pairwise_exact(t: np.ndarray, p: np.ndarray, gaps: Sequence[float]) -> list[tuple[float | None, int]]:
    """Exact pairwise accuracy for several gaps, in row blocks over the items sorted by y_true.

    With t sorted ascending, the pairs (i, j>i) with t[j] - t[i] > gap are j >= k[i]. The pair is ordered right
    when p[j] > p[i] (2 half-points) and tied when p[j] == p[i] (1 half-point); a prefix sum of these half-points
    along each row gives the total over j >= k[i] for every gap at once.
    """
    order = np.argsort(t, kind="mergesort")
    t, p = t[order], p[order]
    n = len(t)
    starts = [_above(t, gap) for gap in gaps]
    first = np.minimum.reduce(starts)
    half_points = np.zeros(len(gaps), dtype=np.int64)
    n_pairs = [int((n - k).sum()) for k in starts]
    rows = _row_block(n)
    for a in range(0, n, rows):
        b = min(n, a + rows)
        c0 = int(first[a:b].min())
        if c0 >= n:
            continue
        block = p[c0:][None, :]
        row_p = p[a:b, None]
        points = (block > row_p).astype(np.int32)
        points *= 2
        points += block == row_p
        prefix = np.cumsum(points, axis=1, dtype=np.int32)  # prefix[:, c] = points over columns c0..c0+c
        total = prefix[:, -1]
        index = np.arange(b - a)
        for g, k in enumerate(starts):
            offset = k[a:b] - c0  # columns before k[i] in this block
            before = np.where(offset > 0, prefix[index, np.clip(offset - 1, 0, None)], 0)
            half_points[g] += int((total - before).sum())
    return [((hp / 2) / m if m else None, m) for hp, m in zip(half_points.tolist(), n_pairs, strict=True)]


def _pairwise_sampled(
    t: np.ndarray, p: np.ndarray, gaps: Sequence[float], n_samples: int, seed: int
) -> list[tuple[float | None, int]]:
    """Pairwise accuracy over `n_samples` random pairs i != j (with replacement); counts are sampled pairs."""
    rng = np.random.default_rng(seed)
    n = len(t)
    half_points = np.zeros(len(gaps), dtype=np.int64)
    counts = np.zeros(len(gaps), dtype=np.int64)
    chunk = 1 << 20
    for start in range(0, n_samples, chunk):
        size = min(chunk, n_samples - start)
        i = rng.integers(0, n, size)
        j = rng.integers(0, n - 1, size)
        j += j >= i
        dt = t[i] - t[j]
        dp = p[i] - p[j]
        points = 2 * (((dt > 0) & (dp > 0)) | ((dt < 0) & (dp < 0))) + (dp == 0)
        distance = np.abs(dt)
        for g, gap in enumerate(gaps):
            mask = distance > gap
            half_points[g] += int(points[mask].sum())
            counts[g] += int(mask.sum())
    return [((hp / 2) / m if m else None, m) for hp, m in zip(half_points.tolist(), counts.tolist(), strict=True)]


def _pairwise_many(
    t: np.ndarray, p: np.ndarray, gaps: Sequence[float], max_pairs: int | None, seed: int
) -> list[tuple[float | None, int]]:
    n = len(t)
    if n < 2:
        return [(None, 0) for _ in gaps]
    if max_pairs is not None:
        max_pairs = int(max_pairs)
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1; got {max_pairs}")
        if n * (n - 1) // 2 > max_pairs:
            return _pairwise_sampled(t, p, gaps, max_pairs, seed)
    return _pairwise_exact(t, p, gaps)


def pairwise_ranking_accuracy(
    y_true: Any, y_pred: Any, gap: float, max_pairs: int | None = None, seed: int = 0
) -> tuple[float | None, int]:
    """Fraction of pairs with |y_true_i - y_true_j| > gap that the predictions order the same way.

    A predicted tie counts 0.5. Returns (accuracy, number of qualifying pairs); accuracy is None when no pair
    qualifies. Exact (blockwise, bounded memory) unless ``max_pairs`` is given and n(n-1)/2 exceeds it: then
    ``max_pairs`` random pairs (seeded) are drawn and the count returned is the number of qualifying sampled pairs.
    """
    t, p = _pairwise_inputs(y_true, y_pred)
    return _pairwise_many(t, p, [_check_gap(gap)], max_pairs, seed)[0]


def per_item_pairwise_accuracy(y_true: Any, y_pred: Any, gap: float) -> np.ndarray:
    """For each item i, the pairwise accuracy over the qualifying pairs involving i (NaN where there is none)."""
    t, p = _pairwise_inputs(y_true, y_pred)
    gap = _check_gap(gap)
    n = len(t)
    result = np.full(n, np.nan)
    if n < 2:
        return result
    order = np.argsort(t, kind="mergesort")
    ts, ps = t[order], p[order]
    upper = _above(ts, gap)  # partners above: j >= upper[i]; right when p[j] > p[i]
    lower = _below(ts, gap)  # partners below: j < lower[i]; right when p[i] > p[j]
    half_points = np.zeros(n, dtype=np.int64)
    rows = _row_block(n)
    for a in range(0, n, rows):
        b = min(n, a + rows)
        row_p = ps[a:b, None]
        points = (ps[None, :] > row_p).astype(np.int32)
        points *= 2
        points += ps[None, :] == row_p
        prefix = np.zeros((b - a, n + 1), dtype=np.int32)
        np.cumsum(points, axis=1, out=prefix[:, 1:])
        index = np.arange(b - a)
        lo, hi = lower[a:b], upper[a:b]
        # below: sum over j < lo of (2 - points) ; above: sum over j >= hi of points
        half_points[a:b] = 2 * lo - prefix[index, lo] + prefix[:, n] - prefix[index, hi]
    count = lower + (n - upper)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, half_points / np.maximum(2 * count, 1), np.nan)
    result[order] = accuracy
    return result


# ----------------------------------------------------------------------------------------------- classification


def _auroc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if y.min() == y.max():
        return None
    return _num(roc_auc_score(y, s))


def _auprc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import average_precision_score

    if y.min() == y.max():
        return None
    return _num(average_precision_score(y, s))


def _mean_defined(values: Iterable[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return float(sum(defined) / len(defined)) if defined else None


def _per_label(names, precision, recall, f1, support) -> dict:
    """Per-class precision/recall/F1/support as plain numbers, keyed by class name."""
    return {
        name: {
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        for c, name in enumerate(names)
    }


def _binary_metrics(y: np.ndarray, s: np.ndarray, names: list[str], threshold: float) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    pred = (s >= threshold).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=[0, 1], average=None, zero_division=0
    )
    (tn, fp), (fn, tp) = confusion_matrix(y, pred, labels=[0, 1]).tolist()
    return {
        "accuracy": float((tn + tp) / len(y)),
        "precision": float(precision[1]),
        "recall": float(recall[1]),
        "f1": float(f1[1]),
        "auroc": _auroc(y, s),
        "auprc": _auprc(y, s),
        "support_pos": int(support[1]),
        "support_neg": int(support[0]),
        "threshold": float(threshold),
        "confusion": [[int(tn), int(fp)], [int(fn), int(tp)]],
        "label_names": list(names),
        # each class taken as the positive one (the negative class's row uses score < threshold)
        "per_label": _per_label(names, precision, recall, f1, support),
    }


def _multiclass_metrics(y: np.ndarray, s: np.ndarray, names: list[str]) -> dict:
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(names)))
    pred = s.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, average=None, zero_division=0
    )
    return {
        "accuracy": float(np.mean(pred == y)),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y, pred, labels=labels, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, labels=labels, average="weighted", zero_division=0)),
        "per_label": _per_label(names, precision, recall, f1, support),
        "confusion": confusion_matrix(y, pred, labels=labels).astype(int).tolist(),
        "label_names": list(names),
    }


def _multilabel_metrics(y: np.ndarray, s: np.ndarray, names: list[str], thresholds: list[float]) -> dict:
    from sklearn.metrics import f1_score, hamming_loss, precision_recall_fscore_support

    pred = (s >= np.asarray(thresholds)[None, :]).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    micro_p, micro_r, micro_f1, _ = precision_recall_fscore_support(y, pred, average="micro", zero_division=0)
    per_label = {}
    for j, name in enumerate(names):
        per_label[name] = {
            "precision": float(precision[j]),
            "recall": float(recall[j]),
            "f1": float(f1[j]),
            "support": int(support[j]),
            "threshold": float(thresholds[j]),
            "auprc": _auprc(y[:, j], s[:, j]),
            "auroc": _auroc(y[:, j], s[:, j]),
        }
    return {
        "subset_accuracy": float(np.mean(np.all(pred == y, axis=1))),
        "micro_precision": float(micro_p),
        "micro_recall": float(micro_r),
        "micro_f1": float(micro_f1),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "samples_f1": float(f1_score(y, pred, average="samples", zero_division=0)),
        "hamming_loss": float(hamming_loss(y, pred)),
        "macro_auroc": _mean_defined(v["auroc"] for v in per_label.values()),
        "macro_auprc": _mean_defined(v["auprc"] for v in per_label.values()),
        "per_label": per_label,
        "thresholds": {name: float(t) for name, t in zip(names, thresholds, strict=True)},
        "label_names": list(names),
    }


def classification_metrics(
    task: str, y_true: Any, scores: Any, label_names: Sequence[str], thresholds: Any = None
) -> dict:
    """Metrics of one classification task at the given thresholds (0.5 by default; multiclass uses argmax).

    binary: accuracy, precision, recall, f1 (of the positive class), auroc, auprc, support_pos/neg, threshold,
    confusion [[tn, fp], [fn, tp]] (+ per_label for both classes, label_names). multiclass: accuracy, macro/micro/
    weighted F1 over all C classes, per_label, confusion (rows true, columns predicted). multilabel: subset_accuracy,
    micro P/R/F1, macro_f1, samples_f1, hamming_loss, macro_auroc/auprc (mean over labels where defined), per_label
    (incl. threshold, auprc, auroc), thresholds. zero_division=0 throughout; AUROC/AUPRC None with one class present.
    """
    _check_task(task)
    if task == "regression":
        raise ValueError("classification_metrics does not handle task 'regression'; use regression_metrics")
    y, s = _prepare(task, y_true, scores)
    if task == "binary":
        names = _names(task, label_names, 2)
        return _binary_metrics(y, s, names, _thresholds_for(task, thresholds, 1)[0])
    names = _names(task, label_names, s.shape[1])
    if task == "multiclass":
        return _multiclass_metrics(y, s, names)
    return _multilabel_metrics(y, s, names, _thresholds_for(task, thresholds, s.shape[1]))


# --------------------------------------------------------------------------------------------------- regression


def _gap_key(gap: float) -> str:
    return str(float(gap))


def regression_metrics(
    y_true: Any,
    y_pred: Any,
    gaps: Sequence[float] = RANKING_GAPS,
    max_pairs: int | None = DEFAULT_MAX_PAIRS,
    seed: int = 0,
) -> dict:
    """mse, mae, r2, pearson, spearman, n, and the pairwise ranking accuracy (and pair count) per gap.

    Gap keys are ``str(float(gap))`` ("0.01", "0.1", "0.3", "1.0"). R² is None for a constant target and the
    correlations are None when either side is constant. Pairs are sampled above ``max_pairs`` (see
    :func:`pairwise_ranking_accuracy`).
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    t, p = _prepare("regression", y_true, y_pred)
    gaps = [_check_gap(g) for g in gaps]
    n = len(t)
    varying = n >= 2 and np.ptp(t) > 0 and np.ptp(p) > 0
    r2 = r2_score(t, p, force_finite=False) if n >= 2 and np.ptp(t) > 0 else None
    ranking = _pairwise_many(t, p, gaps, max_pairs, seed)
    return {
        "mse": float(mean_squared_error(t, p)),
        "mae": float(mean_absolute_error(t, p)),
        "r2": _num(r2),
        "pearson": _num(pearsonr(t, p)[0]) if varying else None,
        "spearman": _num(spearmanr(t, p)[0]) if varying else None,
        "n": int(n),
        "pairwise_accuracy": {_gap_key(g): _num(acc) for g, (acc, _) in zip(gaps, ranking, strict=True)},
        "pairwise_pairs": {_gap_key(g): int(m) for g, (_, m) in zip(gaps, ranking, strict=True)},
    }


# ------------------------------------------------------------------------------------------------- entry points


def evaluate(task: str, y_true: Any, scores: Any, label_names: Sequence[str], thresholds: Any = None) -> dict:
    """All metrics of one evaluation.

    binary/multilabel: {"at_0.5": metrics at 0.5, "tuned": metrics at `thresholds` (only when given, i.e. not None
    and not empty), "n"}. multiclass: classification_metrics + "n" (thresholds ignored). regression:
    regression_metrics + "target" (label_names[0]).
    """
    _check_task(task)
    if task == "regression":
        y, s = _prepare(task, y_true, scores)
        names = _names(task, label_names, 1)
        return {**regression_metrics(y, s), "target": names[0]}
    if task == "multiclass":
        result = classification_metrics(task, y_true, scores, label_names)
        result["n"] = int(len(np.asarray(y_true)))
        return result
    result = {"at_0.5": classification_metrics(task, y_true, scores, label_names, None)}
    if not _no_thresholds(thresholds):
        result["tuned"] = classification_metrics(task, y_true, scores, label_names, thresholds)
    result["n"] = int(len(np.asarray(y_true)))
    return result


def _chosen(metrics: dict) -> dict:
    """The tuned block of an evaluate() result if present, else the 0.5 one (or the dict itself)."""
    if "at_0.5" in metrics:
        return metrics.get("tuned") or metrics["at_0.5"]
    return metrics


def headline(task: str, metrics: dict) -> dict[str, float]:
    """The few numbers compared across runs (keys are stable; undefined values are left out).

    binary: f1 (tuned if present, else at 0.5), f1_at_0.5, auroc, auprc. multiclass: macro_f1, accuracy.
    multilabel: micro_f1, macro_f1, subset_accuracy (tuned if present), macro_auprc. regression: mse, r2,
    spearman, pairwise_acc_0.1 (every pairwise_acc_<gap> when 0.1 was not among the gaps).
    """
    _check_task(task)
    out: dict[str, Any] = {}
    if task == "binary":
        chosen = _chosen(metrics)
        out = {
            "f1": chosen.get("f1"),
            "f1_at_0.5": metrics.get("at_0.5", metrics).get("f1"),
            "auroc": chosen.get("auroc"),
            "auprc": chosen.get("auprc"),
        }
    elif task == "multiclass":
        out = {"macro_f1": metrics.get("macro_f1"), "accuracy": metrics.get("accuracy")}
    elif task == "multilabel":
        chosen = _chosen(metrics)
        out = {key: chosen.get(key) for key in ("micro_f1", "macro_f1", "subset_accuracy", "macro_auprc")}
    else:
        out = {"mse": metrics.get("mse"), "r2": metrics.get("r2"), "spearman": metrics.get("spearman")}
        ranking = metrics.get("pairwise_accuracy") or {}
        for key in ["0.1"] if "0.1" in ranking else list(ranking):
            out[f"pairwise_acc_{key}"] = ranking[key]
    return {key: float(value) for key, value in out.items() if _num(value) is not None}


def flat_metrics(task: str, metrics: dict, prefix: str = "") -> dict[str, float]:
    """Nested numeric values as {"a/b/c": float} (prefix prepended verbatim); None, lists and strings skipped."""
    _check_task(task)
    flat: dict[str, float] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}/{key}" if path else str(key))
        elif isinstance(node, (int, float, np.integer, np.floating)) and not isinstance(node, (bool, np.bool_)):
            value = _num(node)
            if value is not None:
                flat[prefix + path] = value

    walk(metrics, "")
    return flat
