"""Statistics of socialsynth.core.stats against values worked out by hand on small tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from socialsynth.core.stats import bootstrap_ci, cohen_kappa, spearman, spearman_ci


def test_cohen_kappa_on_a_hand_table():
    # Two judges' pair decisions on five pairs; they agree on 4 of 5 (po = 0.8).
    a = ["1", "1", "2", "2", "tie"]
    b = ["1", "2", "2", "2", "tie"]
    # Label shares: a 1:2/5 2:2/5 tie:1/5, b 1:1/5 2:3/5 tie:1/5 -> pe = (2*1 + 2*3 + 1*1) / 25 = 0.36
    po, pe = 0.8, 0.36
    assert cohen_kappa(a, b) == pytest.approx((po - pe) / (1 - pe))  # 0.6875
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    # Systematic opposition: po = 0, pe = 0.5 -> kappa = -1
    assert cohen_kappa(["1", "2", "1", "2"], ["2", "1", "2", "1"]) == pytest.approx(-1.0)


def test_cohen_kappa_undefined_cases():
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["1", "1", "1"], ["1", "1", "1"]) is None  # pe == 1
    with pytest.raises(ValueError):
        cohen_kappa(["1"], ["1", "2"])


def test_spearman_on_hand_tables():
    # No ties: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)), d = [0, 1, 1, 0] -> 1 - 12 / 60
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # Ties get average ranks: x ranks [1, 2.5, 2.5, 4], y ranks [1, 3, 2, 4]; Pearson on the ranks
    # deviations dx = [-1.5, 0, 0, 1.5], dy = [-1.5, .5, -.5, 1.5]: cov 4.5, var_x 4.5, var_y 5
    assert spearman([0.1, 0.5, 0.5, 0.9], [10, 30, 20, 40]) == pytest.approx(4.5 / math.sqrt(4.5 * 5))
    # A missing value leaves its pair out: ranks of [1, 3] vs [2, 1] are reversed
    assert spearman([1, None, 3], [2, 5, 1]) == pytest.approx(-1.0)


def test_spearman_undefined_cases():
    assert spearman([], []) is None
    assert spearman([1.0], [2.0]) is None
    assert spearman([2, 2, 2], [1, 2, 3]) is None  # a constant side has no ranking


def test_bootstrap_ci_of_an_agreement_rate_matches_the_exact_bootstrap_distribution():
    # Three labelled pairs: agree, agree, disagree. A resample's rate is k/3 with k ~ Binomial(3, 2/3):
    # P(0) = 1/27 = 0.037, P(1) = 6/27, P(2) = 12/27, P(3) = 8/27.
    agreed = np.array([1.0, 1.0, 0.0])
    point, low, high = bootstrap_ci(3, lambda idx: agreed[idx].mean(), n_boot=20000, seed=1)
    assert point == pytest.approx(2 / 3)
    # 95 %: the 2.5 % quantile falls in P(0) = 3.7 %, the 97.5 % one in P(3)
    assert (low, high) == (pytest.approx(0.0), pytest.approx(1.0))
    # 90 %: the 5 % quantile is past P(0) = 3.7 % and inside P(<= 1/3) = 25.9 %
    _, low90, high90 = bootstrap_ci(3, lambda idx: agreed[idx].mean(), n_boot=20000, seed=1, level=0.90)
    assert (low90, high90) == (pytest.approx(1 / 3), pytest.approx(1.0))


def test_bootstrap_ci_is_seeded_and_skips_undefined_resamples():
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    first = bootstrap_ci(5, lambda idx: values[idx].mean(), seed=3)
    assert first == bootstrap_ci(5, lambda idx: values[idx].mean(), seed=3)

    # A statistic undefined on some resamples (here: when index 0 is missing) still gives an interval
    def needs_item_zero(idx):
        return None if 0 not in idx else float(values[idx].mean())

    point, low, high = bootstrap_ci(5, needs_item_zero, n_boot=500)
    assert point == pytest.approx(0.6) and low is not None and low <= point <= high
    assert bootstrap_ci(0, lambda idx: 1.0) == (None, None, None)
    assert bootstrap_ci(4, lambda idx: None) == (None, None, None)
    assert bootstrap_ci(4, lambda idx: float("nan")) == (None, None, None)


def test_spearman_ci_of_a_monotone_relation_is_one_throughout():
    # Every resample with two distinct items ranks them the same way: rho = 1 (constant resamples are skipped)
    assert spearman_ci([1, 2, 3, 4, 5], [2, 4, 8, 16, 32], n_boot=300) == (
        pytest.approx(1.0), pytest.approx(1.0), pytest.approx(1.0))
    rho, low, high = spearman_ci([1, 2, 3, 4, 5, 6], [1, 3, 2, 5, 4, 6], n_boot=500)
    assert rho == pytest.approx(1 - 6 * 4 / (6 * 35)) and low < rho <= high <= 1.0
