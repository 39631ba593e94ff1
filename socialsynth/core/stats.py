"""Small statistics shared by the jobs' summaries."""

from __future__ import annotations

from collections.abc import Sequence

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
