"""Small statistics shared by the jobs' summaries: bootstrap intervals, Cohen's kappa and Spearman's rho.

Every function returns ``None`` where the figure is undefined (no items, a constant input) rather than NaN, so that
summaries print "-" and JSON holds ``null`` instead of a number that looks like a result.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np


def bootstrap_mean_ci(values: Sequence[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """Mean with a percentile bootstrap interval: (mean, low, high), or Nones for no data."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(x):
        return None, None, None
    if len(x) == 1:
        return float(x[0]), float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 500):  # blocks keep memory flat for large outputs
        stop = min(start + 500, n_boot)
        means[start:stop] = x[rng.integers(0, len(x), size=(stop - start, len(x)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(x.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def _defined(value) -> float | None:
    """A float, or None for None and NaN (an undefined statistic)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def bootstrap_ci(
    n: int,
    statistic: Callable[[np.ndarray], float | None],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float | None, float | None, float | None]:
    """Percentile bootstrap interval of any statistic of ``n`` items: (value on all items, low, high).

    ``statistic`` receives an array of item indices (all of them once, then ``n_boot`` resamples with replacement)
    and returns the figure, or None where it is undefined on that sample (say, every resampled pair a tie); such
    resamples are left out of the interval. Resampling indices rather than values lets one routine serve paired
    figures (agreement over pairs, Spearman over (x, y)) without copying the data.
    """
    if n <= 0:
        return None, None, None
    point = _defined(statistic(np.arange(n)))
    if point is None:
        return None, None, None
    rng = np.random.default_rng(seed)
    draws = [_defined(statistic(rng.integers(0, n, size=n))) for _ in range(n_boot)]
    draws = np.asarray([d for d in draws if d is not None], dtype=np.float64)
    if not len(draws):
        return point, None, None
    alpha = (1 - level) / 2
    return point, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def cohen_kappa(a: Sequence, b: Sequence) -> float | None:
    """Cohen's kappa of two raters' labels on the same items: agreement beyond what their label shares give by
    chance. None with no items, or when chance agreement is 1 (both used one and the same label throughout)."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} labels against {len(b)}")
    if not len(a) or len(set(a) | set(b)) < 2:
        return None
    return _defined(cohen_kappa_score([str(x) for x in a], [str(x) for x in b]))


def _paired_finite(x: Sequence[float | None], y: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both values are present (a missing rating leaves its pair out)."""
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} values against {len(y)}")
    keep = [(float(u), float(v)) for u, v in zip(x, y, strict=True) if _defined(u) is not None
            and _defined(v) is not None]
    arr = np.asarray(keep, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def _rho(x: np.ndarray, y: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return None  # a constant side has no ranking to correlate
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _defined(spearmanr(x, y).statistic)


def spearman(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Spearman's rank correlation (ties get average ranks); pairs with a missing value are left out. None with
    fewer than two pairs or a constant side."""
    return _rho(*_paired_finite(x, y))


def spearman_ci(
    x: Sequence[float | None], y: Sequence[float | None], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """Spearman's rho with a percentile bootstrap interval over the (x, y) pairs: (rho, low, high)."""
    xs, ys = _paired_finite(x, y)
    return bootstrap_ci(len(xs), lambda idx: _rho(xs[idx], ys[idx]), n_boot=n_boot, seed=seed, level=level)
