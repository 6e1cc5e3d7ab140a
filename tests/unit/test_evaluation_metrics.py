"""Binary metrics, Wilson intervals and McNemar's test against hand computations and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import optimize, stats

from core.errors import InputError
from core.evaluation.metrics import (binary_metrics, check_labels, check_probabilities, check_scores, mcnemar_test,
                                     wilson_interval)


def _wilson_by_score_test_inversion(k: int, n: int, alpha: float) -> tuple[float, float]:
    """The Wilson interval is the set of p0 not rejected by the score test |p_hat - p0| <= z sqrt(p0(1-p0)/n)."""
    z = stats.norm.ppf(1 - alpha / 2)
    p_hat = k / n

    def f(p0):
        return abs(p_hat - p0) - z * math.sqrt(p0 * (1 - p0) / n)

    # f(p_hat) < 0 for 0 < p_hat < 1 (and just inside the edges), f > 0 far from p_hat
    low = 0.0 if k == 0 else optimize.brentq(f, 1e-15, p_hat - 1e-12, xtol=1e-14)
    high = 1.0 if k == n else optimize.brentq(f, p_hat + 1e-12, 1 - 1e-15, xtol=1e-14)
    return low, high


def test_wilson_interval_k8_n10_by_hand():
    # z = 1.959964, z^2 = 3.841459; centre = (0.8 + z^2/20) / (1 + z^2/10) = 0.716741;
    # half = z / (1 + z^2/10) * sqrt(0.016 + z^2/400) = 0.226578
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.490163, abs=2e-6)
    assert high == pytest.approx(0.943319, abs=2e-6)


@pytest.mark.parametrize("k,n,alpha", [(0, 7, 0.05), (3, 7, 0.05), (7, 7, 0.05), (1, 50, 0.1), (45, 50, 0.01),
                                       (120, 200, 0.05)])
def test_wilson_interval_matches_score_test_inversion(k, n, alpha):
    assert wilson_interval(k, n, alpha) == pytest.approx(_wilson_by_score_test_inversion(k, n, alpha), abs=1e-9)


def test_wilson_interval_empty_and_bad_counts():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(InputError, match="k=11"):
        wilson_interval(11, 10)
    with pytest.raises(InputError, match="alpha"):
        wilson_interval(1, 10, alpha=1.5)


def test_binary_metrics_counts_and_proportions_by_hand():
    y = np.array([1] * 10 + [0] * 10)
    p = np.array([1] * 8 + [0] * 2 + [1] * 3 + [0] * 7)  # TP 8, FN 2, FP 3, TN 7
    m = binary_metrics(y, p)
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n"]) == (8, 2, 3, 7, 20)
    expected = {"sensitivity": (8, 10), "specificity": (7, 10), "ppv": (8, 11), "npv": (7, 9), "accuracy": (15, 20)}
    for name, (k, n) in expected.items():
        est = m[name]
        assert (est.numerator, est.denominator, est.method) == (k, n, "wilson")
        assert est.value == pytest.approx(k / n)
        assert (est.ci_low, est.ci_high) == pytest.approx(wilson_interval(k, n))
    assert m["sensitivity"].ci_low == pytest.approx(0.490163, abs=2e-6)
    assert m["f1"].value == pytest.approx(16 / 21)  # 2TP / (2TP + FP + FN)
    assert m["f1"].ci_low < m["f1"].value < m["f1"].ci_high <= 1.0


def test_f1_bootstrap_is_seeded_and_matches_case_resampling():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    p = np.where(rng.random(80) < 0.8, y, 1 - y)
    a, b = binary_metrics(y, p, seed=7)["f1"], binary_metrics(y, p, seed=7)["f1"]
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    # brute-force reference: resample cases with replacement
    f1 = []
    for _ in range(3000):
        i = rng.integers(0, 80, 80)
        tp = np.sum((y[i] == 1) & (p[i] == 1))
        f1.append(2 * tp / (2 * tp + np.sum(y[i] != p[i])))
    ref = np.quantile(f1, [0.025, 0.975])
    assert (a.ci_low, a.ci_high) == pytest.approx(ref, abs=0.03)


def test_undefined_ppv_is_nan():
    m = binary_metrics([1, 0, 1, 0], [0, 0, 0, 0])
    assert math.isnan(m["ppv"].value) and math.isnan(m["ppv"].ci_low)
    assert m["npv"].value == 0.5


def test_mcnemar_exact_matches_binomtest():
    # positives only (paired sensitivity): A right & B wrong on 6, A wrong & B right on 1
    y = np.array([1] * 20 + [0] * 5)
    a = np.array([1] * 6 + [0] * 1 + [1] * 10 + [0] * 3 + [0] * 5)
    b = np.array([0] * 6 + [1] * 1 + [1] * 10 + [0] * 3 + [1] * 5)
    r = mcnemar_test(y, a, b, compare="sensitivity")
    assert (r["b"], r["c"], r["n_discordant"], r["n"], r["method"]) == (6, 1, 7, 20, "exact")
    assert r["p"] == pytest.approx(stats.binomtest(6, 7, 0.5).pvalue)
    assert r["p"] == pytest.approx(2 * (1 + 7) / 2 ** 7)  # 2 * P(X <= 1), X ~ Bin(7, 1/2)
    assert (r["proportion_a"], r["proportion_b"]) == (16 / 20, 11 / 20)
    spec = mcnemar_test(y, a, b, compare="specificity")
    assert (spec["b"], spec["c"], spec["n"]) == (5, 0, 5)


def test_mcnemar_chi2_with_continuity_correction_by_hand():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    a = np.where(rng.random(300) < 0.85, y, 1 - y)
    b = np.where(rng.random(300) < 0.70, y, 1 - y)
    r = mcnemar_test(y, a, b)
    ok_a, ok_b = a == y, b == y
    nb, nc = int(np.sum(ok_a & ~ok_b)), int(np.sum(~ok_a & ok_b))
    assert nb + nc >= 25 and r["method"] == "chi2-cc"
    chi2 = (abs(nb - nc) - 1) ** 2 / (nb + nc)
    assert r["statistic"] == pytest.approx(chi2)
    assert r["p"] == pytest.approx(stats.chi2.sf(chi2, 1))
    forced = mcnemar_test(y, a, b, exact=True)
    assert forced["method"] == "exact" and forced["p"] == pytest.approx(stats.binomtest(nb, nb + nc).pvalue)


def test_mcnemar_no_discordant_pairs():
    r = mcnemar_test([0, 1, 1], [0, 1, 0], [0, 1, 0])
    assert (r["p"], r["statistic"], r["n_discordant"]) == (1.0, 0.0, 0)


@pytest.mark.parametrize("call,match", [
    (lambda: binary_metrics([0, 1, 1], [0, 1]), "2 values but there are 3"),
    (lambda: binary_metrics([0, 1, 2], [0, 1, 1]), "not binary"),
    (lambda: binary_metrics([1, 1, 1], [0, 1, 1]), "one class only"),
    (lambda: binary_metrics(["a", "b"], [0, 1]), "non-numeric"),
    (lambda: binary_metrics([0, 1], [0, 1], alpha=0), "alpha"),
    (lambda: check_scores([0.1, np.nan], 2), "NaN"),
    (lambda: check_probabilities([0.1, 1.2], 2), r"outside \[0, 1\]"),
    (lambda: check_labels(np.zeros((2, 2))), "shape"),
    (lambda: mcnemar_test([0, 1], [0, 1], [0, 1], compare="ppv"), "compare"),
    (lambda: mcnemar_test([0, 0], [0, 1], [0, 1], compare="sensitivity"), "no positive"),
])
def test_bad_input_raises_with_fix(call, match):
    with pytest.raises(InputError, match=match) as err:
        call()
    assert err.value.fix
