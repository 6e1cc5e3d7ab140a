"""Several models on the same cases: compare_models against hand-worked numbers, model_curves' parts."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InputError
from core.evaluation.calibration import expected_calibration_error, reliability_curve
from core.evaluation.comparison import DECISION_THRESHOLDS, compare_models, model_curves
from core.evaluation.metrics import wilson_interval
from core.evaluation.roc import delong_test, roc_auc_ci

# Eight cases, four of each class. Worked by hand below.
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
A = np.array([0.1, 0.3, 0.5, 0.7, 0.4, 0.5, 0.8, 0.9])  # threshold 0.5
B = np.array([0.2, 0.1, 0.3, 0.6, 0.6, 0.7, 0.65, 0.95])  # threshold 0.6
THR = {"a": 0.5, "b": 0.6}


def _hand_auc(y, s):
    """Concordant pairs + half the ties over all positive-negative pairs."""
    pos, neg = s[y == 1], s[y == 0]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (pos.size * neg.size)


@pytest.fixture(scope="module")
def result():
    return compare_models(Y, {"a": A, "b": B}, THR, reference="b")


def test_auc_by_counting_pairs(result):
    # a: positive 0.4 beats 0.1, 0.3 (2); 0.5 beats 0.1, 0.3 and ties 0.5 (2.5); 0.8 and 0.9 beat all (4 + 4)
    assert result["a"]["auc"]["auc"] == pytest.approx(12.5 / 16)
    # b: positive 0.6 beats 0.2, 0.1, 0.3 and ties 0.6 (3.5); 0.7, 0.65, 0.95 beat all (12)
    assert result["b"]["auc"]["auc"] == pytest.approx(15.5 / 16)
    for name, s in (("a", A), ("b", B)):
        assert result[name]["auc"]["auc"] == pytest.approx(_hand_auc(Y, s))
        assert result[name]["auc"]["ci_low"] <= result[name]["auc"]["auc"] <= result[name]["auc"]["ci_high"]
        assert result[name]["auc"]["n_pos"] == 4 and result[name]["auc"]["n_neg"] == 4


def test_two_by_two_at_threshold_by_hand(result):
    # a >= 0.5: negatives 0.5, 0.7 called positive (FP 2, TN 2); positives 0.5, 0.8, 0.9 (TP 3, FN 1)
    m = result["a"]["metrics"]
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"]) == (3, 2, 2, 1, 8)
    assert m["sensitivity"].value == pytest.approx(3 / 4)
    assert m["specificity"].value == pytest.approx(2 / 4)
    assert (m["sensitivity"].ci_low, m["sensitivity"].ci_high) == pytest.approx(wilson_interval(3, 4))
    assert m["ppv"].value == pytest.approx(3 / 5) and m["npv"].value == pytest.approx(2 / 3)
    # b >= 0.6: negative 0.6 called positive (FP 1, TN 3); all four positives >= 0.6 (TP 4)
    m = result["b"]["metrics"]
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (4, 1, 3, 0)
    assert m["sensitivity"].value == 1.0 and m["specificity"].value == pytest.approx(3 / 4)
    assert result["a"]["threshold"] == 0.5 and result["b"]["threshold"] == 0.6


def test_score_equal_to_threshold_is_positive():
    y = [0, 0, 1, 1]
    r = compare_models(y, {"m": [0.2, 0.3, 0.3, 0.9]}, {"m": 0.3}, reference="m")
    m = r["m"]["metrics"]
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 1, 0)
    r = compare_models(y, {"m": [0.2, 0.3, 0.3, 0.9]}, {"m": 0.30000001}, reference="m")
    assert (r["m"]["metrics"]["tp"], r["m"]["metrics"]["fp"]) == (1, 0)


def test_delong_against_reference(result):
    assert result["b"]["delong_vs_best"] is None
    d = result["a"]["delong_vs_best"]
    assert isinstance(d, dict)
    assert d["auc_a"] == pytest.approx(result["a"]["auc"]["auc"])
    assert d["auc_b"] == pytest.approx(result["b"]["auc"]["auc"])
    assert d["difference"] == pytest.approx(12.5 / 16 - 15.5 / 16)
    assert d == pytest.approx(delong_test(Y, A, B))


def test_reference_is_the_one_without_delong():
    r = compare_models(Y, {"a": A, "b": B}, THR, reference="a")
    assert r["a"]["delong_vs_best"] is None
    assert r["b"]["delong_vs_best"]["auc_a"] == pytest.approx(15.5 / 16)
    assert r["b"]["delong_vs_best"]["auc_b"] == pytest.approx(12.5 / 16)


def test_brier_and_ece_by_hand(result):
    # a: negatives 0.01 + 0.09 + 0.25 + 0.49 = 0.84, positives 0.36 + 0.25 + 0.04 + 0.01 = 0.66; / 8
    assert result["a"]["brier"] == pytest.approx(1.5 / 8)
    # b: negatives 0.04 + 0.01 + 0.09 + 0.36 = 0.5, positives 0.16 + 0.09 + 0.1225 + 0.0025 = 0.375; / 8
    assert result["b"]["brier"] == pytest.approx(0.875 / 8)
    assert result["a"]["ece"] == expected_calibration_error(Y, A)
    # ECE with one case per bin is mean |y - p|; with two predictions of 0.5 of opposite labels in one bin
    y, p = np.array([0, 1, 0, 1]), np.array([0.05, 0.5, 0.5, 0.97])
    r = compare_models(y, {"m": p}, {"m": 0.5}, reference="m")
    assert r["m"]["ece"] == pytest.approx((0.05 + 0.0 + 0.03) / 4)


def test_alpha_changes_interval_width():
    narrow = compare_models(Y, {"a": A, "b": B}, THR, reference="b", alpha=0.5)
    wide = compare_models(Y, {"a": A, "b": B}, THR, reference="b", alpha=0.01)
    w = lambda r: r["a"]["metrics"]["sensitivity"].ci_high - r["a"]["metrics"]["sensitivity"].ci_low  # noqa: E731
    assert w(narrow) < w(wide)
    assert narrow["a"]["auc"]["auc"] == wide["a"]["auc"]["auc"]


# ----------------------------------------------------------------------------- input errors

def test_unknown_reference():
    with pytest.raises(InputError, match="'c'") as err:
        compare_models(Y, {"a": A, "b": B}, THR, reference="c")
    assert err.value.fix and "'a'" in err.value.fix


def test_missing_threshold():
    with pytest.raises(InputError, match=r"\['b'\]") as err:
        compare_models(Y, {"a": A, "b": B}, {"a": 0.5}, reference="a")
    assert err.value.fix


def test_scores_of_wrong_length():
    with pytest.raises(InputError, match="'b'") as err:
        compare_models(Y, {"a": A, "b": B[:-1]}, THR, reference="a")
    assert err.value.fix


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_scores(bad):
    b = B.copy()
    b[3] = bad
    with pytest.raises(InputError, match="'b'"):
        compare_models(Y, {"a": A, "b": b}, THR, reference="a")


def test_one_class_only():
    with pytest.raises(InputError, match="one class"):
        compare_models(np.ones(8, int), {"a": A}, {"a": 0.5}, reference="a")


def test_no_scores():
    with pytest.raises(InputError, match="no model scores"):
        compare_models(Y, {}, {}, reference="a")


# ----------------------------------------------------------------------------- curves

def _seeded(n=60, seed=3):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    y[:2] = (0, 1)
    good = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.15, n), 0.01, 0.99)
    poor = np.clip(0.45 + 0.1 * y + rng.normal(0, 0.2, n), 0.01, 0.99)
    return y, {"good": good, "poor": poor}


@pytest.fixture(scope="module")
def curves():
    y, scores = _seeded()
    return y, scores, model_curves(y, scores, n_boot=200)


def test_curves_have_every_part_per_model(curves):
    _, scores, c = curves
    assert set(c) == {"roc", "calibration", "decision", "points"}
    assert c["points"] == {}                                     # no thresholds given
    for part in ("roc", "calibration", "decision"):
        assert list(c[part]) == list(scores)
    for name in scores:
        assert {"fpr", "tpr", "tpr_low", "tpr_high", "auc", "auc_ci"} <= set(c["roc"][name])
        assert {"mean_predicted", "observed", "count", "edges", "brier", "ece"} <= set(c["calibration"][name])
        assert {"thresholds", "model", "treat_all", "treat_none"} <= set(c["decision"][name])


def test_roc_auc_and_interval_match_roc_auc_ci(curves):
    y, scores, c = curves
    for name, s in scores.items():
        ref = roc_auc_ci(y, s)
        assert c["roc"][name]["auc"] == pytest.approx(ref["auc"])
        assert c["roc"][name]["auc_ci"] == pytest.approx((ref["ci_low"], ref["ci_high"]))
        assert c["roc"][name]["auc"] == pytest.approx(_hand_auc(y, s))
        assert np.all(c["roc"][name]["tpr_low"] <= c["roc"][name]["tpr_high"])
    assert c["roc"]["good"]["auc"] > c["roc"]["poor"]["auc"]


def test_decision_curve_thresholds_and_treat_none(curves):
    y, scores, c = curves
    assert DECISION_THRESHOLDS[0] == 0.05 and DECISION_THRESHOLDS[-1] == 0.95 and DECISION_THRESHOLDS.size == 91
    for name, s in scores.items():
        d = c["decision"][name]
        np.testing.assert_array_equal(d["thresholds"], DECISION_THRESHOLDS)
        np.testing.assert_array_equal(d["treat_none"], np.zeros(91))
        # net benefit at p_t = 0.2 by hand: TP/n - FP/n * 0.2/0.8
        i = int(np.flatnonzero(DECISION_THRESHOLDS == 0.2)[0])
        tp, fp = np.sum((s >= 0.2) & (y == 1)), np.sum((s >= 0.2) & (y == 0))
        assert d["model"][i] == pytest.approx(tp / y.size - fp / y.size * 0.25)


@pytest.mark.parametrize(("n", "bins"), [(15, 2), (60, 6), (250, 10)])
def test_number_of_reliability_bins(n, bins):
    y, scores = _seeded(n=n, seed=n)
    c = model_curves(y, {"good": scores["good"]}, n_boot=100)["calibration"]["good"]
    assert c["edges"].size - 1 == bins
    assert c["count"].sum() == n
    ref = reliability_curve(y, scores["good"], n_bins=bins)
    np.testing.assert_allclose(c["observed"], ref["observed"])
    assert c["ece"] == pytest.approx(expected_calibration_error(y, scores["good"], n_bins=bins))


def test_n_bins_caps_reliability_bins():
    y, scores = _seeded(n=250, seed=1)
    c = model_curves(y, scores, n_boot=100, n_bins=4)
    assert c["calibration"]["good"]["edges"].size == 5


def test_curves_reject_bad_scores():
    y, scores = _seeded()
    with pytest.raises(InputError, match="'good'"):
        model_curves(y, {"good": scores["good"][:-1]}, n_boot=100)
    with pytest.raises(InputError, match="one class"):
        model_curves(np.zeros(60, int), scores, n_boot=100)


def test_curves_give_operating_points_at_the_thresholds():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1] * 3)
    s = np.array([0.1, 0.2, 0.6, 0.3, 0.4, 0.7, 0.8, 0.9] * 3)
    c = model_curves(y, {"m": s}, thresholds={"m": 0.5}, n_boot=100)
    assert c["points"] == {"m": (0.25, 0.75)}                    # 1 of 4 negatives, 3 of 4 positives >= 0.5
