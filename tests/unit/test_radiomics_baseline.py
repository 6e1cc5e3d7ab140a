"""Tests of the classical radiomics baseline: filters, pipelines, nested CV, SHAP, input checks."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from core.errors import InputError
from core.radiomics.baseline import (MODELS, PARAM_GRIDS, CorrelationFilter, VarianceFilter, evaluate_models, explain,
                                     make_pipeline)

FAST_GRIDS = {"logistic": {"clf__C": [1.0]}, "random_forest": {"clf__n_estimators": [50]},
              "gradient_boosting": {"clf__max_iter": [50]}}


@pytest.fixture(scope="module")
def table():
    """Easy synthetic problem: 6 informative features, 3 sites, site C shifted; a constant and a duplicate column."""
    X, y = make_classification(n_samples=180, n_features=10, n_informative=6, n_redundant=0, class_sep=1.5,
                               flip_y=0.0, random_state=0)
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(10)])
    sites = np.array(["A", "B", "C"] * 60)
    df.loc[sites == "C", :] += 3.0
    df["constant"] = 7.0
    df["dup_f0"] = df["f0"]
    return df, y, sites


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


# ----------------------------------------------------------------------------- filters

def test_variance_filter_drops_constant_and_near_constant_only():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=20), np.full(20, 5.0), 1e6 + 1e-4 * rng.normal(size=20),
                         1e-9 * rng.normal(size=20), np.r_[np.nan, np.full(19, 2.0)], np.full(20, np.nan)])
    f = VarianceFilter().fit(X)
    # scale-free: a tiny-unit feature with real spread is kept, jitter on a huge offset is not
    assert f.get_support().tolist() == [True, False, False, True, False, False]
    assert f.transform(X).shape == (20, 2)


def test_correlation_filter_keeps_first_duplicate_and_label_correlated_feature():
    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(30), np.ones(30)].astype(int)
    strong = y + 0.3 * rng.normal(size=60)
    weak = strong + 0.1 * rng.normal(size=60)  # |r| > 0.9 with strong, less correlated with y (checked below)
    other = rng.normal(size=60)
    X = pd.DataFrame({"other": other, "weak": weak, "strong": strong, "dup_other": other})
    r_y = [abs(np.corrcoef(X[c], y)[0, 1]) for c in ("weak", "strong")]
    assert r_y[1] > r_y[0] and np.corrcoef(weak, strong)[0, 1] > 0.9
    f = CorrelationFilter(method="pearson").fit(X, y)
    assert f.get_feature_names_out().tolist() == ["other", "strong"]
    # deterministic: same answer on refit and with the columns order reversed for the duplicate pair
    assert CorrelationFilter(method="pearson").fit(X, y).get_support().tolist() == f.get_support().tolist()
    g = CorrelationFilter().fit(X[["dup_other", "other"]], y)
    assert g.get_feature_names_out().tolist() == ["dup_other"]


def test_correlation_filter_brute_force_reference():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(40, 3))
    X = np.column_stack([base, base[:, 0] * 2 + 0.01 * rng.normal(size=40), base[:, 1] ** 3])
    kept = CorrelationFilter(method="pearson", threshold=0.9).fit(X).get_support()
    r = np.abs(np.corrcoef(X, rowvar=False))
    idx = np.flatnonzero(kept)
    assert all(r[i, j] <= 0.9 for i in idx for j in idx if i < j)
    dropped = np.flatnonzero(~kept)  # each dropped one is redundant with a kept one
    assert all((r[d, idx] > 0.9).any() for d in dropped)
    assert kept.tolist() == [True, True, True, False, True]  # Pearson r(x, x**3) < 0.9 here
    # Spearman sees the monotone x**3 as redundant with x
    assert CorrelationFilter().fit(X).get_support().tolist() == [True, True, True, False, False]


def test_pipeline_drops_constant_and_duplicate_columns(table):
    df, y, _ = table
    pipe = make_pipeline("logistic").fit(df, y)
    after_filters = pipe[:3].get_feature_names_out().tolist()
    assert "constant" not in after_filters and "dup_f0" not in after_filters and "f0" in after_filters
    assert set(pipe[:-1].get_feature_names_out()) <= set(after_filters)


def test_pipeline_imputes_nan_with_training_median(table):
    df, y, _ = table
    d = df.copy()
    d.loc[::7, "f1"] = np.nan
    pipe = make_pipeline("logistic").fit(d, y)
    assert pipe.named_steps["impute"].statistics_[1] == pytest.approx(np.nanmedian(d["f1"]))
    assert np.isfinite(pipe.predict_proba(d)).all()


# ----------------------------------------------------------------------------- models

@pytest.mark.parametrize("model", MODELS)
def test_every_model_beats_chance_on_held_out_data(table, model):
    df, y, _ = table
    pipe = make_pipeline(model, seed=0).fit(df.iloc[:120], y[:120])
    auc = roc_auc_score(y[120:], pipe.predict_proba(df.iloc[120:])[:, 1])
    assert auc > 0.75
    assert set(PARAM_GRIDS[model]) <= set(pipe.get_params())


def test_make_pipeline_is_seeded():
    X, y = make_classification(100, 6, random_state=3)
    a = make_pipeline("random_forest", seed=4).fit(X, y).predict_proba(X)
    b = make_pipeline("random_forest", seed=4).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_evaluate_models_out_of_fold_for_every_sample(table):
    df, y, sites = table
    r = evaluate_models(df, y, sites, outer=3, inner=2, param_grids=FAST_GRIDS)
    assert set(r["models"]) == set(MODELS)
    best = r["best"]
    for name, m in r["models"].items():
        assert np.isfinite(m["oof_score"]).all() and m["oof_score"].shape == (180,)
        assert sorted(set(m["fold"].tolist())) == [0, 1, 2]
        assert m["auc"]["ci_low"] <= m["auc"]["auc"] <= m["auc"]["ci_high"]
        assert m["auc"]["auc"] > 0.75
        assert m["auc"]["auc"] == pytest.approx(roc_auc_score(y, m["oof_score"]))
        assert m["metrics"]["n"] == 180
        assert set(m["per_site_auc"]) == {"A", "B", "C"}
        if name == best:
            assert m["delong_vs_best"] is None
        else:
            assert 0 <= m["delong_vs_best"]["p"] <= 1
            assert m["delong_vs_best"]["auc_b"] == pytest.approx(r["models"][best]["auc"]["auc"])
            assert m["auc"]["auc"] <= r["models"][best]["auc"]["auc"]


# ----------------------------------------------------------------------------- SHAP

@pytest.mark.parametrize("model", MODELS)
def test_shap_additivity(table, model):
    df, y, _ = table
    pipe = make_pipeline(model, seed=0).fit(df.iloc[:120], y[:120])
    e = explain(pipe, df.iloc[:60], df.iloc[120:])
    assert e.values.shape == (60, len(e.feature_names))
    assert e.feature_names.tolist() == pipe[:-1].get_feature_names_out().tolist()
    np.testing.assert_allclose(e.values.sum(axis=1) + e.base_value, e.model_output, atol=1e-6)
    proba = pipe.predict_proba(df.iloc[120:])[:, 1]
    expected = proba if e.output == "probability" else np.log(proba / (1 - proba))
    np.testing.assert_allclose(e.model_output, expected, rtol=1e-6, atol=1e-6)


def test_shap_linear_matches_closed_form(table):
    df, y, _ = table
    pipe = make_pipeline("logistic").fit(df, y)
    e = explain(pipe, df, df.iloc[:5])
    Z, B = pipe[:-1].transform(df.iloc[:5]), pipe[:-1].transform(df)
    w = pipe.named_steps["clf"].coef_[0]
    np.testing.assert_allclose(e.values, w * (Z - B.mean(axis=0)), atol=1e-8)


# ----------------------------------------------------------------------------- bad input

def test_bad_input_raises_input_error(table):
    df, y, sites = table
    y_nan = y.astype(float)
    y_nan[3] = np.nan
    with pytest.raises(InputError, match="missing labels"):
        evaluate_models(df, y_nan, sites)
    with pytest.raises(InputError, match="one class"):
        evaluate_models(df, np.zeros(180, dtype=int), sites)
    with pytest.raises(InputError, match="179"):
        evaluate_models(df, y[:-1], sites)
    with pytest.raises(InputError, match="sites"):
        evaluate_models(df, y, sites[:-1])
    with pytest.raises(InputError, match="not numeric"):
        evaluate_models(df.assign(site=sites), y)
    with pytest.raises(InputError, match="infinite"):
        evaluate_models(df.assign(f1=np.where(np.arange(180) == 0, np.inf, df["f1"])), y)
    with pytest.raises(InputError, match="unknown model"):
        make_pipeline("svm")
    with pytest.raises(InputError, match="not fitted"):
        explain(make_pipeline("logistic"), df, df)


def test_missing_features_are_imputed_inside_the_folds():
    X, y = make_classification(120, 8, n_informative=4, random_state=3)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    holes = df.mask(np.random.default_rng(0).random(df.shape) < 0.05)      # 5 % undefined features
    r = evaluate_models(holes, y, models=("logistic",), outer=3, inner=3)
    scores = r["models"]["logistic"]["oof_score"]
    assert np.isfinite(scores).all() and r["models"]["logistic"]["auc"]["auc"] > 0.75


# ----------------------------------------------------------------------------- ComBat harmonisation

def _site_shifted(n=90, seed=0):
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    site = np.array(["A", "B", "C"])[np.arange(n) % 3]
    X = rng.normal(size=(n, 6))
    X[:, 0] += 2.0 * y
    for s, (shift, scale) in {"B": (4.0, 3.0), "C": (-3.0, 0.5)}.items():
        X[site == s] = X[site == s] * scale + shift
    return pd.DataFrame(X, columns=[f"f{j}" for j in range(6)]), y, site


def test_combat_step_removes_site_effects_learned_on_training_rows():
    import warnings

    X, y, site = _site_shifted()
    batch = pd.Series(site, index=X.index)
    pipe = make_pipeline("logistic", sites=batch)
    assert [n for n, _ in pipe.steps][:3] == ["impute", "variance", "harmonise"]
    train = X.index[X.index % 5 != 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pipe.fit(X.loc[train], y[train])
        Z = pipe[:3].transform(X.loc[train])
    means = Z.groupby(site[train]).mean()
    assert float((means.max() - means.min()).max()) < 0.2              # per feature, across sites
    raw = X.loc[train].groupby(site[train]).mean()
    assert float((raw.loc["B"] - raw.loc["C"]).abs().min()) > 5
    test = X.index[X.index % 5 == 0]
    assert pipe.predict_proba(X.loc[test]).shape == (len(test), 2)       # test rows harmonised with training fits


def test_evaluate_models_with_harmonisation_and_its_errors():
    import warnings

    X, y, site = _site_shifted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        r = evaluate_models(X, y, site, models=("logistic",), outer=3, inner=2, harmonise=True)
        plain = evaluate_models(X, y, site, models=("logistic",), outer=3, inner=2)
    auc, auc_plain = r["models"]["logistic"]["auc"]["auc"], plain["models"]["logistic"]["auc"]["auc"]
    assert r["models"]["logistic"]["oof_score"].shape == (90,)
    assert auc > auc_plain + 0.05          # site shifts blur the signal; ComBat inside the folds recovers it
    with pytest.raises(InputError, match="needs the site"):
        evaluate_models(X, y, models=("logistic",), harmonise=True)
    with pytest.raises(InputError, match="one site"):
        evaluate_models(X, y, np.full(90, "A"), models=("logistic",), harmonise=True)
    few = site.copy()
    few[:3] = "D"
    with pytest.raises(InputError, match="fewer than 4"):
        evaluate_models(X, y, few, models=("logistic",), harmonise=True)
    with pytest.raises(InputError, match="unique index"):
        make_pipeline("logistic", sites=pd.Series(["A", "B"], index=[0, 0]))
