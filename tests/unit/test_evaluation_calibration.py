"""Calibration summaries and decision-curve net benefit against hand computations and brute-force loops."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputError
from core.evaluation.calibration import (bin_edges, brier_decomposition, brier_score, expected_calibration_error,
                                         net_benefit, reliability_curve)
from core.evaluation.metrics import wilson_interval


def _data(seed=0, n=200):
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 2, n)
    y = (rng.random(n) < p ** 1.5).astype(int)  # miscalibrated on purpose
    return y, p


def _brute_bins(y, p, edges):
    """Loop over cases: bin b holds e_b <= p < e_{b+1}, last bin closed."""
    nb = len(edges) - 1
    members = [[] for _ in range(nb)]
    for yi, pi in zip(y, p):
        for b in range(nb):
            if edges[b] <= pi < edges[b + 1] or (b == nb - 1 and pi == edges[-1]):
                members[b].append((yi, pi))
                break
    return members


def test_brier_score_by_hand():
    # (0.9-1)^2 + (0.2-0)^2 + (0.6-1)^2 + (0.5-0)^2 = 0.01 + 0.04 + 0.16 + 0.25 = 0.46; / 4
    assert brier_score([1, 0, 1, 0], [0.9, 0.2, 0.6, 0.5]) == pytest.approx(0.115)


def test_brier_decomposition_exact_for_discrete_forecasts():
    y = np.array([0, 0, 1, 1, 1, 0, 1, 1])
    p = np.array([0.15, 0.15, 0.15, 0.55, 0.55, 0.55, 0.95, 0.95])
    d = brier_decomposition(y, p, n_bins=10)
    # bins: p=0.15 (o=1/3), 0.55 (o=2/3), 0.95 (o=1); o_bar = 5/8
    rel = (3 * (0.15 - 1 / 3) ** 2 + 3 * (0.55 - 2 / 3) ** 2 + 2 * 0.05 ** 2) / 8
    res = (3 * (1 / 3 - 5 / 8) ** 2 + 3 * (2 / 3 - 5 / 8) ** 2 + 2 * (3 / 8) ** 2) / 8
    assert d["reliability"] == pytest.approx(rel) and d["resolution"] == pytest.approx(res)
    assert d["uncertainty"] == pytest.approx(5 / 8 * 3 / 8)
    assert d["within_bin"] == pytest.approx(0.0, abs=1e-15)
    assert d["brier"] == pytest.approx(rel - res + d["uncertainty"])


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_brier_decomposition_sums_to_brier(strategy):
    y, p = _data(1)
    d = brier_decomposition(y, p, n_bins=8, strategy=strategy)
    assert d["brier"] == pytest.approx(brier_score(y, p))
    total = d["reliability"] - d["resolution"] + d["uncertainty"] + d["within_bin"]
    assert total == pytest.approx(d["brier"], abs=1e-12)


def test_ece_by_hand():
    # bin [0, 0.5): p=0.2, 0.2 with y=0, 1 -> |0.5-0.2| * 2/4; bin [0.5, 1]: p=0.9, 0.9, y=1, 1 -> |1-0.9| * 2/4
    assert expected_calibration_error([0, 1, 1, 1], [0.2, 0.2, 0.9, 0.9], n_bins=2) == pytest.approx(0.2)
    assert expected_calibration_error([0, 1], [0.0, 1.0]) == 0.0


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_ece_and_reliability_match_brute_force_binning(strategy):
    y, p = _data(2)
    edges = bin_edges(p, n_bins=10, strategy=strategy)
    members = [m for m in _brute_bins(y, p, edges) if m]
    ece = sum(abs(np.mean([a for a, _ in m]) - np.mean([b for _, b in m])) * len(m) for m in members) / len(y)
    assert expected_calibration_error(y, p, n_bins=10, strategy=strategy) == pytest.approx(ece)
    r = reliability_curve(y, p, n_bins=10, strategy=strategy)
    assert r["count"].tolist() == [len(m) for m in members] and r["count"].sum() == len(y)
    np.testing.assert_allclose(r["observed"], [np.mean([a for a, _ in m]) for m in members])
    np.testing.assert_allclose(r["mean_predicted"], [np.mean([b for _, b in m]) for m in members])
    k0 = sum(a for a, _ in members[0])
    assert (r["observed_low"][0], r["observed_high"][0]) == pytest.approx(wilson_interval(k0, len(members[0])))
    if strategy == "quantile":
        assert r["count"].min() >= 19 and r["count"].max() <= 21


def test_reliability_curve_drops_empty_bins():
    r = reliability_curve([0, 1, 1], [0.05, 0.07, 0.95], n_bins=10, strategy="uniform")
    assert r["count"].tolist() == [2, 1]
    assert r["bin_low"].tolist() == pytest.approx([0.0, 0.9]) and r["observed"].tolist() == [0.5, 1.0]


def test_net_benefit_by_hand():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.5, 0.1, 0.6, 0.3, 0.25, 0.1, 0.1, 0.05, 0.05])
    r = net_benefit(y, p, [0.2, 0.5])
    # pt = 0.2: treated p >= 0.2 -> TP 2, FP 3: NB = 2/10 - 3/10 * 0.25 = 0.125
    # pt = 0.5: TP 2, FP 1: NB = 0.2 - 0.1 * 1 = 0.1
    np.testing.assert_allclose(r["model"], [0.125, 0.1])
    # treat all: prevalence 0.3 - 0.7 * odds
    np.testing.assert_allclose(r["treat_all"], [0.3 - 0.7 * 0.25, 0.3 - 0.7])
    np.testing.assert_array_equal(r["treat_none"], [0.0, 0.0])


def test_net_benefit_of_perfect_model_is_prevalence():
    y = np.array([1, 0, 0, 1, 0])
    r = net_benefit(y, y.astype(float), np.linspace(0.05, 0.95, 19))
    np.testing.assert_allclose(r["model"], 0.4)


@pytest.mark.parametrize("call,match", [
    (lambda: brier_score([0, 1], [0.2, 1.3]), r"outside \[0, 1\]"),
    (lambda: brier_score([0, 1, 1], [0.2, 0.3]), "2 values but there are 3"),
    (lambda: expected_calibration_error([0, 1], [0.2, np.nan]), "NaN"),
    (lambda: reliability_curve([0, 2], [0.2, 0.3]), "not binary"),
    (lambda: reliability_curve([0, 1], [0.2, 0.3], strategy="kmeans"), "strategy"),
    (lambda: brier_decomposition([0, 1], [0.2, 0.3], n_bins=0), "n_bins"),
    (lambda: net_benefit([0, 1], [0.2, 0.3], [0.0, 0.5]), "thresholds"),
    (lambda: net_benefit([0, 1], [0.2, 0.3], [1.0]), "thresholds"),
])
def test_bad_input_raises_with_fix(call, match):
    with pytest.raises(InputError, match=match) as err:
        call()
    assert err.value.fix
