"""Figures and tables of the model-evaluation page draw exactly what core.evaluation computed."""

import json

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.evaluation import (Estimate, binary_metrics, brier_score, delong_test, expected_calibration_error,
                             net_benefit, reliability_curve, roc_auc_ci, roc_curve_with_band)
from core.viz.evaluation import (COLUMNS, MODEL_COLORS, calibration_figure, comparison_table,
                                 decision_curve_figure, format_estimate, format_p, model_colour, model_label,
                                 roc_figure, shap_importance_table, shap_summary_figure, shap_waterfall_figure)


@pytest.fixture(scope="module")
def cohort():
    """60 seeded cases, two models: 'logistic' informative, 'random_forest' weaker."""
    rng = np.random.default_rng(42)
    y = np.r_[np.ones(24, int), np.zeros(36, int)]
    strong = 1 / (1 + np.exp(-(1.6 * (2 * y - 1) + rng.normal(0, 1.2, 60))))
    weak = 1 / (1 + np.exp(-(0.6 * (2 * y - 1) + rng.normal(0, 1.2, 60))))
    return y, {"logistic": strong, "random_forest": weak}


@pytest.fixture(scope="module")
def roc_curves(cohort):
    y, scores = cohort
    out = {}
    for name, s in scores.items():
        c = roc_curve_with_band(y, s, n_boot=200, fpr_grid=np.linspace(0, 1, 21), seed=1)
        a = roc_auc_ci(y, s)
        out[name] = {**c, "auc_ci": (a["ci_low"], a["ci_high"])}
    return out


# ----------------------------------------------------------------------------- names and colours

def test_model_labels_and_colours_are_stable_and_unknown_names_cycle():
    assert model_label("random_forest") == "Random forest" and model_label("xgb") == "xgb"
    assert model_colour("gradient_boosting") == MODEL_COLORS["gradient_boosting"]
    cycle = [model_colour("u", n) for n in range(8)]
    assert cycle[0] == cycle[6] and len(set(cycle[:6])) == 6
    assert not set(cycle) & set(MODEL_COLORS.values())


# ----------------------------------------------------------------------------- ROC

def test_roc_figure_draws_band_polygon_curve_chance_and_points(roc_curves):
    fig = roc_figure(roc_curves, points={"logistic": (0.2, 0.75)})
    assert len(fig.data) == 2 * 2 + 1 + 1            # band + curve per model, chance, one point
    c = roc_curves["logistic"]
    band, line = fig.data[0], fig.data[1]
    np.testing.assert_allclose(band.x, np.r_[c["fpr"], c["fpr"][::-1]])
    np.testing.assert_allclose(band.y, np.r_[c["tpr_high"], c["tpr_low"][::-1]])
    assert band.fill == "toself" and band.showlegend is False and "0.2)" in band.fillcolor
    np.testing.assert_allclose(line.y, c["tpr"])
    lo, hi = c["auc_ci"]
    assert line.name == f"Logistic regression (AUC {c['auc']:.2f}, 95% CI {lo:.2f}-{hi:.2f})"
    assert line.line.color == band.line.color == MODEL_COLORS["logistic"]
    assert fig.data[3].name.startswith("Random forest (AUC ")
    chance = fig.data[4]
    assert list(chance.x) == [0, 1] and list(chance.y) == [0, 1] and chance.line.dash == "dash"
    point = fig.data[5]
    assert (point.x[0], point.y[0]) == (0.2, 0.75) and point.marker.color == MODEL_COLORS["logistic"]
    assert tuple(fig.layout.xaxis.range) == (0, 1) and tuple(fig.layout.yaxis.range) == (0, 1)
    assert fig.layout.yaxis.scaleanchor == "x"
    assert fig.layout.xaxis.title.text == "1 - specificity (false-positive rate)"
    assert fig.layout.yaxis.title.text == "Sensitivity (true-positive rate)"


def test_roc_legend_without_interval_shows_the_auc_only(roc_curves):
    c = {k: v for k, v in roc_curves["logistic"].items() if k != "auc_ci"}
    fig = roc_figure({"my_model": c})
    assert fig.data[1].name == f"my_model (AUC {c['auc']:.2f})"
    assert len(fig.data) == 3


@pytest.mark.parametrize("bad, match", [
    ({}, "at least one model"),
    ({"m": {"fpr": [0, 1], "tpr": [0, 1], "tpr_low": [0], "tpr_high": [0, 1], "auc": 0.5}}, "different lengths"),
    ({"m": {"fpr": [0, 1], "tpr": [0, np.nan], "tpr_low": [0, 1], "tpr_high": [0, 1], "auc": 0.5}}, "NaN"),
    ({"m": {"fpr": [0, 1], "tpr": [0, 1], "tpr_low": [0, 1], "tpr_high": [0, 1]}}, "no 'auc'"),
    ({"m": {"fpr": [0, 100], "tpr": [0, 1], "tpr_low": [0, 1], "tpr_high": [0, 1], "auc": 0.5}}, r"outside \[0, 1\]"),
    ({"m": {"tpr": [0, 1], "tpr_low": [0, 1], "tpr_high": [0, 1], "auc": 0.5}}, "no 'fpr'"),
])
def test_roc_figure_rejects_bad_curves(bad, match):
    with pytest.raises(InputError, match=match):
        roc_figure(bad)


def test_roc_figure_rejects_points_of_unknown_models_or_outside_the_square(roc_curves):
    with pytest.raises(InputError, match="'svm'"):
        roc_figure(roc_curves, points={"svm": (0.1, 0.9)})
    with pytest.raises(InputError, match=r"outside \[0, 1\]"):
        roc_figure(roc_curves, points={"logistic": (0.1, 1.5)})


# ----------------------------------------------------------------------------- calibration

def test_calibration_figure_has_wilson_error_bars_counts_and_identity(cohort):
    y, scores = cohort
    curves = {name: {**reliability_curve(y, p, n_bins=5), "brier": brier_score(y, p),
                     "ece": expected_calibration_error(y, p)} for name, p in scores.items()}
    fig = calibration_figure(curves)
    assert len(fig.data) == 3
    r = curves["logistic"]
    tr = fig.data[0]
    np.testing.assert_allclose(tr.x, r["mean_predicted"])
    np.testing.assert_allclose(tr.y, r["observed"])
    np.testing.assert_allclose(np.asarray(tr.y) + np.asarray(tr.error_y.array), r["observed_high"])
    np.testing.assert_allclose(np.asarray(tr.y) - np.asarray(tr.error_y.arrayminus), r["observed_low"])
    assert list(tr.customdata) == r["count"].tolist() and sum(tr.customdata) == 60
    assert "%{customdata}" in tr.hovertemplate
    assert tr.name == f"Logistic regression (Brier {r['brier']:.3f}, ECE {r['ece']:.3f})"
    ident = fig.data[2]
    assert ident.name == "Perfect calibration" and list(ident.y) == [0, 1] and ident.line.dash == "dash"
    assert fig.layout.xaxis.title.text == "Predicted probability of progression"
    assert fig.layout.yaxis.title.text == "Observed fraction with progression"


def test_calibration_figure_rejects_intervals_that_miss_the_observed_fraction():
    bad = {"mean_predicted": [0.2, 0.8], "observed": [0.1, 0.9], "observed_low": [0.2, 0.7],
           "observed_high": [0.3, 1.0], "count": [5, 5]}
    with pytest.raises(InputError, match="does not contain"):
        calibration_figure({"logistic": bad})
    with pytest.raises(InputError, match="non-negative integers"):
        calibration_figure({"logistic": {**bad, "observed_low": [0.0, 0.7], "count": [5, 2.5]}})


# ----------------------------------------------------------------------------- decision curves

def test_decision_curve_draws_models_then_treat_all_and_none_with_clipped_range(cohort):
    y, scores = cohort
    t = np.linspace(0.01, 0.99, 99)
    curves = {name: net_benefit(y, p, t) for name, p in scores.items()}
    fig = decision_curve_figure(curves)
    assert [tr.name for tr in fig.data] == ["Logistic regression", "Random forest", "Treat all", "Treat none"]
    np.testing.assert_allclose(fig.data[0].y, curves["logistic"]["model"])
    np.testing.assert_allclose(fig.data[2].y, curves["logistic"]["treat_all"])
    assert np.all(np.asarray(fig.data[3].y) == 0)
    lo, hi = fig.layout.yaxis.range
    prevalence = y.mean()
    assert lo <= -0.05 and hi >= prevalence - 0.02          # top at about the prevalence
    assert hi < 0.6 and lo > -hi - 0.1                      # not the whole treat-all tail ...
    assert min(curves["logistic"]["treat_all"]) < lo        # ... which goes far below
    models = np.r_[curves["logistic"]["model"], curves["random_forest"]["model"]]
    assert lo <= max(models.min(), -hi)                     # model curves stay in view
    assert fig.layout.xaxis.title.text == "Threshold probability" and fig.layout.yaxis.title.text == "Net benefit"


def test_decision_curve_rejects_models_from_different_cohorts_or_thresholds(cohort):
    y, scores = cohort
    a = net_benefit(y, scores["logistic"], [0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="other thresholds or another cohort"):
        decision_curve_figure({"logistic": a, "random_forest": net_benefit(y, scores["random_forest"], [0.1, 0.2])})
    with pytest.raises(InputError, match="other thresholds or another cohort"):
        decision_curve_figure({"logistic": a, "random_forest": net_benefit(y[:40], scores["random_forest"][:40],
                                                                           [0.1, 0.2, 0.3])})


# ----------------------------------------------------------------------------- formatting and table

def test_format_estimate_and_p_hand_made():
    assert format_estimate(0.8, 0.7, 0.9) == "0.80 (0.70-0.90)"
    assert format_estimate(0.8333, 0.75, 0.9049, digits=3) == "0.833 (0.750-0.905)"
    assert format_estimate(np.nan, 0.1, 0.2) == "n/a" and format_estimate(None, None, None) == "n/a"
    assert format_estimate(0.5, np.nan, 0.7) == "0.50 (n/a)"
    assert format_estimate(-0.05, -0.12, 0.02) == "-0.05 (-0.12 to 0.02)"
    assert format_p(0.0004) == "<0.001" and format_p(0.012) == "0.012" and format_p(0.001) == "0.001"
    assert format_p(1.0) == "1.000" and format_p(np.nan) == "n/a"
    with pytest.raises(InputError, match="1.5"):
        format_p(1.5)
    with pytest.raises(InputError, match="'x'"):
        format_estimate("x", 0, 1)


def _hand_made():
    est = Estimate(0.8, 0.7, 0.9, 8, 10, "wilson")
    nan = Estimate(float("nan"), float("nan"), float("nan"), 0, 0, "wilson")
    metrics = {"sensitivity": est, "specificity": est, "ppv": nan, "npv": est, "accuracy": est,
               "f1": Estimate(0.75, 0.6, 0.85, None, None, "bootstrap-percentile")}
    return {
        "logistic": {"auc": {"auc": 0.71, "ci_low": 0.6, "ci_high": 0.8}, "metrics": metrics,
                     "delong_vs_best": {"auc_a": 0.71, "auc_b": 0.83, "difference": -0.12, "z": -3.6,
                                        "p": 0.0004, "ci_low": -0.19, "ci_high": -0.05}},
        "random_forest": {"auc": {"auc": 0.83, "ci_low": 0.75, "ci_high": 0.9}, "metrics": metrics,
                          "delong_vs_best": None},
    }


def test_comparison_table_strings_best_first_from_estimates_and_from_json_dicts():
    results = _hand_made()
    table = comparison_table(results, "random_forest")
    assert list(table.columns) == list(COLUMNS)
    assert table["Model"].tolist() == ["Random forest", "Logistic regression"]
    best, other = table.iloc[0], table.iloc[1]
    assert best["AUC (95% CI)"] == "0.83 (0.75-0.90)" and best["DeLong p vs best"] == "best"
    assert best["ΔAUC vs best (95% CI)"] == "—"
    assert other["Sensitivity (95% CI)"] == "0.80 (0.70-0.90)" and other["Precision (95% CI)"] == "n/a"
    assert other["F1 (95% CI)"] == "0.75 (0.60-0.85)"
    assert other["DeLong p vs best"] == "<0.001" and other["ΔAUC vs best (95% CI)"] == "-0.12 (-0.19 to -0.05)"
    # the same results after a JSON round trip (Estimates become dicts, NaN becomes null)
    def enc(o):
        return {"value": o.value, "ci_low": o.ci_low, "ci_high": o.ci_high}
    reloaded = json.loads(json.dumps(results, default=enc).replace("NaN", "null"))
    pd.testing.assert_frame_equal(comparison_table(reloaded, "random_forest"), table)
    # without "difference", ΔAUC is auc_a - auc_b
    del results["logistic"]["delong_vs_best"]["difference"]
    assert comparison_table(results, "random_forest").iloc[1]["ΔAUC vs best (95% CI)"].startswith("-0.12 ")


def test_comparison_table_from_the_real_engine(cohort):
    y, scores = cohort
    results = {}
    for name, s in scores.items():
        results[name] = {"auc": roc_auc_ci(y, s), "metrics": binary_metrics(y, (s >= 0.5).astype(int), n_boot=200),
                         "delong_vs_best": None if name == "logistic" else delong_test(y, s, scores["logistic"])}
    table = comparison_table(results, "logistic")
    m = results["random_forest"]
    d = m["delong_vs_best"]
    row = table.iloc[1]
    assert row["Model"] == "Random forest"
    assert row["Specificity (95% CI)"] == format_estimate(m["metrics"]["specificity"].value,
                                                          m["metrics"]["specificity"].ci_low,
                                                          m["metrics"]["specificity"].ci_high)
    assert row["DeLong p vs best"] == format_p(d["p"])
    assert row["ΔAUC vs best (95% CI)"] == format_estimate(d["auc_a"] - d["auc_b"], d["ci_low"], d["ci_high"])
    assert table.iloc[0]["AUC (95% CI)"] == format_estimate(results["logistic"]["auc"]["auc"],
                                                            results["logistic"]["auc"]["ci_low"],
                                                            results["logistic"]["auc"]["ci_high"])


def test_comparison_table_rejects_unknown_best_and_incomplete_metrics():
    results = _hand_made()
    with pytest.raises(InputError, match="'svm'"):
        comparison_table(results, "svm")
    del results["logistic"]["metrics"]
    with pytest.raises(InputError, match="'metrics'"):
        comparison_table(results, "random_forest")
    results = _hand_made()
    results["logistic"]["metrics"] = {**results["logistic"]["metrics"], "npv": {"value": 0.5}}
    with pytest.raises(InputError, match="npv"):
        comparison_table(results, "random_forest")


# ----------------------------------------------------------------------------- SHAP

@pytest.fixture(scope="module")
def shap_data():
    rng = np.random.default_rng(7)
    n, p = 60, 20
    feature_values = rng.normal(size=(n, p))
    weights = np.linspace(2.0, 0.1, p)[rng.permutation(p)]
    values = (feature_values - feature_values.mean(0)) * weights      # a linear model's SHAP values
    names = np.array([f"feat_{j:02d}" for j in range(p)])
    return values, feature_values, names


def test_shap_summary_ranks_by_mean_abs_shap_with_small_deterministic_jitter(shap_data):
    values, fv, names = shap_data
    fig = shap_summary_figure(values, fv, names, max_features=8)
    expected = names[np.argsort(-np.abs(values).mean(0))][:8]
    assert list(fig.layout.yaxis.ticktext) == expected.tolist()
    assert list(fig.layout.yaxis.tickvals) == list(range(7, -1, -1))        # top feature on top
    assert shap_importance_table(values, names, max_features=8)["feature"].tolist() == expected.tolist()
    assert len(fig.data) == 1
    tr = fig.data[0]
    assert len(tr.x) == 8 * 60
    row = np.round(np.asarray(tr.y))
    assert np.all(np.abs(np.asarray(tr.y) - row) <= 0.4 + 1e-12)
    top = row == 7
    np.testing.assert_allclose(np.sort(np.asarray(tr.x)[top]), np.sort(values[:, names.tolist().index(expected[0])]))
    c = np.asarray(tr.marker.color)
    assert c.min() == 0.0 and c.max() == 1.0                               # 5th-95th percentile clipping
    j = names.tolist().index(expected[0])
    lo, hi = np.percentile(fv[:, j], [5, 95])
    np.testing.assert_allclose(np.sort(c[top]), np.sort(np.clip((fv[:, j] - lo) / (hi - lo), 0, 1)))
    assert tr.marker.colorbar.title.text == "Feature value (low to high)"
    assert fig.layout.xaxis.title.text == "SHAP value (impact on model output)"
    again = shap_summary_figure(values, fv, names, max_features=8)
    np.testing.assert_array_equal(again.data[0].y, tr.y)


def test_shap_importance_table_values_and_missing_feature_values_drawn_grey(shap_data):
    values, fv, names = shap_data
    table = shap_importance_table(values[:, :3], names[:3])
    np.testing.assert_allclose(table["mean |SHAP|"], np.sort(np.abs(values[:, :3]).mean(0))[::-1])
    fv = fv.copy()
    fv[:5, 0] = np.nan
    fig = shap_summary_figure(values[:, :3], fv[:, :3], names[:3])
    assert len(fig.data) == 2 and len(fig.data[1].x) == 5 and len(fig.data[0].x) == 3 * 60 - 5


@pytest.mark.parametrize("kwargs, match", [
    (dict(values=np.zeros((4, 3)), feature_values=np.zeros((4, 2)), feature_names=["a", "b", "c"]), "shape"),
    (dict(values=np.zeros(3), feature_values=np.zeros(3), feature_names=["a", "b", "c"]), "n_cases, n_features"),
    (dict(values=np.zeros((4, 3)), feature_values=np.zeros((4, 3)), feature_names=["a", "b"]), "3 features"),
    (dict(values=np.zeros((4, 3)), feature_values=np.zeros((4, 3)), feature_names=["a", "a", "c"]), "unique"),
    (dict(values=np.full((4, 3), np.nan), feature_values=np.zeros((4, 3)), feature_names=["a", "b", "c"]), "NaN"),
    (dict(values=np.zeros((4, 3)), feature_values=np.zeros((4, 3)), feature_names=["a", "b", "c"],
          max_features=0), "max_features"),
])
def test_shap_summary_rejects_bad_input(kwargs, match):
    with pytest.raises(InputError, match=match):
        shap_summary_figure(**kwargs)


def test_waterfall_ends_at_base_plus_sum_and_sums_the_other_features():
    rng = np.random.default_rng(3)
    v = rng.normal(0, 0.5, 14)
    fv = rng.normal(size=14)
    names = [f"f{j}" for j in range(14)]
    base = -0.4
    fig = shap_waterfall_figure(v, fv, names, base, max_features=5, output="log-odds")
    w = fig.data[0]
    assert list(w.measure) == ["absolute", "relative"] + ["relative"] * 5 + ["total"]
    x = np.asarray(w.x, float)
    assert x[0] == base
    np.testing.assert_allclose(x[:-1].sum(), base + v.sum())               # the bars add up to the end ...
    np.testing.assert_allclose(x[-1], base + v.sum())                      # ... which is f(x)
    top = np.argsort(-np.abs(v))[:5]
    assert w.y[1] == "9 other features"
    np.testing.assert_allclose(x[1], v[np.argsort(-np.abs(v))[5:]].sum())
    np.testing.assert_allclose(x[2:-1], v[top[::-1]])                      # largest just below f(x)
    assert w.y[-2] == f"f{top[0]} = {fv[top[0]]:.3g}" and w.y[-1] == "f(x)" and w.y[0] == "E[f(x)]"
    assert w.orientation == "h"
    assert w.increasing.marker.color != w.decreasing.marker.color
    assert "log-odds" in fig.layout.title.text and "log-odds" in fig.layout.xaxis.title.text
    assert f"{base + v.sum():.3f}" in fig.layout.title.text
    running = base + np.cumsum(np.r_[0.0, x[1:-1]])
    x0, x1 = fig.layout.xaxis.range                                         # every bar end in view
    assert x0 < min(running.min(), 0) and x1 > max(running.max(), 0)


def test_waterfall_without_other_features_and_on_the_probability_scale():
    fig = shap_waterfall_figure([0.1, -0.05], [2.0, np.nan], ["a", "b"], 0.3, output="probability")
    w = fig.data[0]
    assert list(w.y) == ["E[f(x)]", "b = n/a", "a = 2", "f(x)"]
    np.testing.assert_allclose(w.x[-1], 0.35)
    assert "probability" in fig.layout.xaxis.title.text


@pytest.mark.parametrize("args, kwargs, match", [
    (([0.1, 0.2], [1.0], ["a", "b"], 0.0), {}, "feature_values_row"),
    (([0.1, 0.2], [1.0, 2.0], ["a"], 0.0), {}, "2 features"),
    (([0.1, np.nan], [1.0, 2.0], ["a", "b"], 0.0), {}, "NaN"),
    (([0.1, 0.2], [1.0, 2.0], ["a", "b"], np.nan), {}, "base_value"),
    (([[0.1, 0.2]], [[1.0, 2.0]], ["a", "b"], 0.0), {}, "values_row"),
    (([0.1, 0.2], [1.0, 2.0], ["a", "b"], 0.0), {"output": "logit"}, "'logit'"),
])
def test_waterfall_rejects_bad_input(args, kwargs, match):
    with pytest.raises(InputError, match=match):
        shap_waterfall_figure(*args, **kwargs)
