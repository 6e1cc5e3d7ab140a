"""AUC, DeLong variance and test, ROC bands and thresholds against slow obviously-right references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from core.errors import InputError
from core.evaluation.roc import choose_threshold, delong_covariance, delong_test, roc_auc_ci, roc_curve_with_band


def _psi(x, y):
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _slow_delong(y, scores):
    """DeLong, DeLong & Clarke-Pearson (1988) with explicit loops over structural components."""
    scores = np.atleast_2d(scores)
    k = scores.shape[0]
    pos = [i for i in range(len(y)) if y[i] == 1]
    neg = [j for j in range(len(y)) if y[j] == 0]
    m, n = len(pos), len(neg)
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    for r in range(k):
        for a, i in enumerate(pos):
            v10[r, a] = sum(_psi(scores[r, i], scores[r, j]) for j in neg) / n
        for b, j in enumerate(neg):
            v01[r, b] = sum(_psi(scores[r, i], scores[r, j]) for i in pos) / m
    auc = v10.mean(axis=1)
    s10 = np.zeros((k, k))
    s01 = np.zeros((k, k))
    for r in range(k):
        for q in range(k):
            s10[r, q] = sum((v10[r, a] - auc[r]) * (v10[q, a] - auc[q]) for a in range(m)) / (m - 1)
            s01[r, q] = sum((v01[r, b] - auc[r]) * (v01[q, b] - auc[q]) for b in range(n)) / (n - 1)
    return auc, s10 / m + s01 / n


def _two_scores(seed, n=40, ties=False):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n // 2 - 3, int), np.zeros(n - n // 2 + 3, int)]
    rng.shuffle(y)
    a = y * 1.0 + rng.normal(0, 1, n)
    b = 0.6 * a + y * 0.5 + rng.normal(0, 0.8, n)
    if ties:
        a, b = np.round(a), np.round(b * 2) / 2
    return y, a, b


@pytest.mark.parametrize("ties", [False, True])
def test_auc_is_mann_whitney_u_over_n1_n0(ties):
    y, a, _ = _two_scores(1, n=60, ties=ties)
    u = stats.mannwhitneyu(a[y == 1], a[y == 0]).statistic
    expected = u / (np.sum(y == 1) * np.sum(y == 0))
    assert roc_auc_ci(y, a)["auc"] == pytest.approx(expected)
    assert roc_auc_ci(y, a)["auc"] == pytest.approx(roc_auc_score(y, a))


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True), (3, False)])
def test_fast_delong_covariance_matches_slow_loops(seed, ties):
    y, a, b = _two_scores(seed, n=30, ties=ties)
    auc, cov = delong_covariance(y, np.stack([a, b]))
    auc_ref, cov_ref = _slow_delong(y, np.stack([a, b]))
    np.testing.assert_allclose(auc, auc_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cov, cov_ref, rtol=1e-10, atol=1e-15)


def test_delong_ci_hand_example():
    # 3 positives, 3 negatives: 8 of 9 pairs ordered correctly -> AUC 8/9
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.3, 0.6, 0.4, 0.8, 0.9]
    r = roc_auc_ci(y, s, transform="none")
    auc, cov = _slow_delong(np.array(y), np.array(s))
    # V10 = (2/3, 1, 1), V01 = (1, 1, 2/3): S10 = S01 = 1/27, var = 2/81
    assert cov[0, 0] == pytest.approx(2 / 81)
    assert r["auc"] == pytest.approx(8 / 9) and r["se"] == pytest.approx(np.sqrt(2 / 81))
    z = stats.norm.ppf(0.975)
    assert r["ci_low"] == pytest.approx(8 / 9 - z * np.sqrt(2 / 81))
    assert r["ci_high"] == 1.0  # clipped
    lg = roc_auc_ci(y, s)
    half = z * np.sqrt(2 / 81) / (8 / 9 * 1 / 9)
    assert lg["ci_low"] == pytest.approx(1 / (1 + np.exp(-(np.log(8) - half))))
    assert 0 < lg["ci_low"] < lg["auc"] < lg["ci_high"] < 1


def test_delong_test_of_a_score_with_itself():
    y, a, _ = _two_scores(4)
    r = delong_test(y, a, a)
    assert (r["z"], r["p"], r["difference"]) == (0.0, 1.0, 0.0)
    assert r["ci_low"] == pytest.approx(0.0) and r["ci_high"] == pytest.approx(0.0)


@pytest.mark.parametrize("seed", [5, 6])
def test_delong_test_matches_slow_reference(seed):
    y, a, b = _two_scores(seed, n=20, ties=seed == 6)
    r = delong_test(y, a, b)
    auc, cov = _slow_delong(y, np.stack([a, b]))
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z = (auc[0] - auc[1]) / se
    assert (r["auc_a"], r["auc_b"]) == pytest.approx(tuple(auc))
    assert r["z"] == pytest.approx(z) and r["p"] == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((auc[0] - auc[1] - 1.959964 * se,
                                                        auc[0] - auc[1] + 1.959964 * se), abs=1e-6)
    swapped = delong_test(y, b, a)
    assert swapped["z"] == pytest.approx(-r["z"]) and swapped["p"] == pytest.approx(r["p"])


def test_bootstrap_bca_interval_is_seeded_and_agrees_with_delong():
    y, a, _ = _two_scores(7, n=120)
    boot = roc_auc_ci(y, a, method="bootstrap", n_boot=2000, seed=3)
    again = roc_auc_ci(y, a, method="bootstrap", n_boot=2000, seed=3)
    dl = roc_auc_ci(y, a)
    assert (boot["ci_low"], boot["ci_high"]) == (again["ci_low"], again["ci_high"])
    assert boot["ci_low"] < boot["auc"] < boot["ci_high"]
    assert boot["ci_low"] == pytest.approx(dl["ci_low"], abs=0.03)
    assert boot["ci_high"] == pytest.approx(dl["ci_high"], abs=0.03)


def test_bootstrap_perfect_separation_is_degenerate():
    r = roc_auc_ci([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], method="bootstrap", n_boot=200)
    assert (r["auc"], r["ci_low"], r["ci_high"], r["se"]) == (1.0, 1.0, 1.0, 0.0)


def test_roc_curve_with_band_on_grid():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.6, 0.4, 0.9])
    r = roc_curve_with_band(y, s, fpr_grid=[0.0, 0.25, 0.5, 1.0], n_boot=200)
    assert r["tpr"].tolist() == [0.5, 0.5, 1.0, 1.0]
    assert r["auc"] == pytest.approx(0.75)
    yy, a, _ = _two_scores(8, n=80)
    band = roc_curve_with_band(yy, a, n_boot=300, seed=1)
    assert band["fpr"].shape == band["tpr"].shape == band["tpr_low"].shape == (101,)
    assert np.all(np.diff(band["tpr"]) >= 0) and np.all(band["tpr_low"] <= band["tpr_high"])
    inside = (band["tpr_low"] <= band["tpr"]) & (band["tpr"] <= band["tpr_high"])
    assert inside.mean() > 0.95
    assert band["tpr"][-1] == 1.0 and np.mean(band["tpr"]) == pytest.approx(roc_auc_score(yy, a), abs=0.02)


def test_choose_threshold_rules_on_tiny_example():
    y = [0, 0, 0, 1, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    # threshold 0.6: sens 3/4, spec 4/4; threshold 0.4: sens 4/4, spec 3/4 (both J = 0.75; ties -> higher)
    r = choose_threshold(y, s)
    assert (r["threshold"], r["sensitivity"], r["specificity"]) == (0.6, 0.75, 1.0)
    r = choose_threshold(y, s, rule=("sensitivity", 0.9))
    assert (r["threshold"], r["sensitivity"], r["specificity"]) == (0.4, 1.0, 0.75)
    r = choose_threshold(y, s, rule=("specificity", 0.8))
    assert (r["threshold"], r["sensitivity"], r["specificity"]) == (0.6, 0.75, 1.0)
    r = choose_threshold(y, s, rule=("specificity", 0.7))
    assert (r["threshold"], r["sensitivity"]) == (0.4, 1.0)
    pred = (np.array(s) >= r["threshold"]).astype(int)
    assert np.mean(pred[np.array(y) == 0] == 0) == r["specificity"]


@pytest.mark.parametrize("call,match", [
    (lambda: roc_auc_ci([0, 1, 1], [0.1, 0.2]), "2 values but there are 3"),
    (lambda: roc_auc_ci([0, 1, 1], [0.1, np.nan, 0.3]), "NaN"),
    (lambda: roc_auc_ci([1, 1, 1], [0.1, 0.2, 0.3]), "one class only"),
    (lambda: roc_auc_ci([0, 1, -1], [0.1, 0.2, 0.3]), "not binary"),
    (lambda: roc_auc_ci([0, 1], [0.1, 0.2], method="hanley"), "method"),
    (lambda: roc_auc_ci([0, 1], [0.1, 0.2], method="bootstrap", n_boot=10), "n_boot"),
    (lambda: delong_test([0, 1, 1, 0], [1, 2, 3, 4], [1, 2, 3]), "score_b"),
    (lambda: delong_test([0, 1, 1], [1, 2, 3], [1, 2, 3]), "at least 2"),
    (lambda: choose_threshold([0, 1], [0.1, 0.2], rule=("sensitivity", 1.5)), "rule"),
    (lambda: roc_curve_with_band([0, 1], [0.1, 0.2], fpr_grid=[0.5, 0.2]), "fpr_grid"),
])
def test_bad_input_raises_with_fix(call, match):
    with pytest.raises(InputError, match=match) as err:
        call()
    assert err.value.fix
