"""Nested cross-validation and leave-one-site-out on a small scikit-learn data set."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from core.errors import InputError
from core.evaluation import binary_metrics, roc_auc_ci
from core.evaluation.validation import leave_one_site_out, nested_cross_validation

GRID = {"logisticregression__C": [0.01, 1.0]}


@pytest.fixture(scope="module")
def data():
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(0)
    keep = np.sort(rng.choice(len(y), 240, replace=False))
    return X[keep], y[keep]


def _model():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))


@pytest.fixture(scope="module")
def nested(data):
    X, y = data
    return nested_cross_validation(_model(), GRID, X, y, outer=4, inner=3, seed=0)


def test_nested_cv_predicts_every_case_exactly_once(data, nested):
    X, y = data
    assert np.all(np.isfinite(nested["oof_score"])) and np.all(np.isin(nested["oof_pred"], (0, 1)))
    assert np.bincount(nested["fold"]).tolist() == [60, 60, 60, 60]  # each case in one outer test fold
    assert len(nested["best_params"]) == 4 and nested["fold_scores"].shape == (4,)
    assert roc_auc_ci(y, nested["oof_score"])["auc"] > 0.95
    assert binary_metrics(y, nested["oof_pred"])["accuracy"].value > 0.9


def test_nested_cv_fold_matches_manual_reimplementation(data, nested):
    X, y = data
    train, test = next(StratifiedKFold(4, shuffle=True, random_state=0).split(X, y))
    assert set(np.flatnonzero(nested["fold"] == 0)) == set(test)
    search = GridSearchCV(_model(), GRID, scoring="roc_auc",
                          cv=StratifiedKFold(3, shuffle=True, random_state=1)).fit(X[train], y[train])
    assert search.best_params_ == nested["best_params"][0]
    np.testing.assert_allclose(nested["oof_score"][test], search.predict_proba(X[test])[:, 1])
    assert nested["fold_scores"][0] == pytest.approx(roc_auc_score(y[test], nested["oof_score"][test]))


def test_nested_cv_is_seeded_and_keeps_groups_whole(data, nested):
    X, y = data
    again = nested_cross_validation(_model(), GRID, X, y, outer=4, inner=3, seed=0)
    np.testing.assert_array_equal(again["fold"], nested["fold"])
    np.testing.assert_allclose(again["oof_score"], nested["oof_score"])
    other = nested_cross_validation(_model(), GRID, X, y, outer=4, inner=3, seed=1)
    assert np.any(other["fold"] != nested["fold"])
    groups = np.arange(len(y)) // 3  # e.g. 3 lesions per patient
    g = nested_cross_validation(_model(), GRID, X, y, groups=groups, outer=4, inner=3, seed=0)
    assert np.all(g["fold"] >= 0)
    for patient in np.unique(groups):
        assert np.unique(g["fold"][groups == patient]).size == 1


def test_leave_one_site_out_matches_manual_fits(data):
    X, y = data
    sites = np.array(["Berlin", "Lyon", "Milan"])[np.arange(len(y)) % 3]
    r = leave_one_site_out(_model(), X, y, sites)
    assert [s["site"] for s in r["per_site"]] == ["Berlin", "Lyon", "Milan"]
    assert sum(s["n"] for s in r["per_site"]) == len(y) and np.all(np.isfinite(r["oof_score"]))
    held = sites == "Lyon"
    manual = _model().fit(X[~held], y[~held])
    np.testing.assert_allclose(r["oof_score"][held], manual.predict_proba(X[held])[:, 1])
    lyon = r["per_site"][1]
    assert lyon["auc"]["auc"] == pytest.approx(roc_auc_score(y[held], r["oof_score"][held]))
    assert lyon["metrics"]["tp"] + lyon["metrics"]["fn"] == lyon["n_pos"] == int(y[held].sum())


def test_leave_one_site_out_site_with_one_class(data):
    X, y = data
    sites = np.where(np.arange(len(y)) % 2 == 0, "A", "B")
    sites[np.flatnonzero(y == 1)[:5]] = "C"  # site C: positives only
    r = leave_one_site_out(_model(), X, y, sites)
    c = r["per_site"][2]
    assert c["site"] == "C" and c["n_pos"] == c["n"] == 5 and c["auc"] is None and c["metrics"] is None


@pytest.mark.parametrize("call,match", [
    (lambda X, y: nested_cross_validation(_model(), GRID, X[:-1], y), "rows but y has"),
    (lambda X, y: nested_cross_validation(_model(), GRID, np.where(np.eye(*X.shape) > 0, np.nan, X), y), "NaN"),
    (lambda X, y: nested_cross_validation(_model(), GRID, X, y + 1), "not binary"),
    (lambda X, y: nested_cross_validation(_model(), GRID, X, y, outer=1), "outer"),
    (lambda X, y: nested_cross_validation(_model(), GRID, X, y, groups=[0, 1]), "groups"),
    (lambda X, y: leave_one_site_out(_model(), X, y, ["A"] * len(y)), "one site"),
    (lambda X, y: leave_one_site_out(_model(), X[:, 0], y, ["A", "B"] * (len(y) // 2)), "shape"),
])
def test_bad_input_raises_with_fix(data, call, match):
    X, y = data
    with pytest.raises(InputError, match=match) as err:
        call(X, y)
    assert err.value.fix


def test_nested_cv_accepts_missing_values_only_when_asked(data):
    from sklearn.impute import SimpleImputer

    X, y = data
    X = np.array(X, dtype=float)
    X[0, 0] = np.nan
    pipe = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=1000))
    with pytest.raises(InputError, match="NaN"):
        nested_cross_validation(pipe, {"logisticregression__C": [1.0]}, X, y, outer=3, inner=3)
    r = nested_cross_validation(pipe, {"logisticregression__C": [1.0]}, X, y, outer=3, inner=3, allow_nan=True)
    assert np.isfinite(r["oof_score"]).all()
    X[1, 1] = np.inf
    with pytest.raises(InputError, match="infinite"):
        nested_cross_validation(pipe, {"logisticregression__C": [1.0]}, X, y, outer=3, inner=3, allow_nan=True)


def test_dataframes_reach_the_estimator_with_their_index():
    import pandas as pd
    from sklearn.base import BaseEstimator, ClassifierMixin

    class IndexRecorder(ClassifierMixin, BaseEstimator):
        seen: list = []

        def __init__(self, c=1.0):
            self.c = c

        def fit(self, X, y):
            IndexRecorder.seen.append(list(X.index))
            self.classes_ = np.array([0, 1])
            return self

        def predict_proba(self, X):
            IndexRecorder.seen.append(list(X.index))
            p = np.clip(X["a"].to_numpy() / 100.0, 0, 1)
            return np.c_[1 - p, p]

        def predict(self, X):
            return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    X = pd.DataFrame({"a": np.arange(30.0)}, index=np.arange(100, 130))
    y = np.tile([0, 1], 15)
    nested_cross_validation(IndexRecorder(), {"c": [1.0]}, X, y, outer=3, inner=2)
    assert IndexRecorder.seen and all(set(i) <= set(X.index) for i in IndexRecorder.seen)
    IndexRecorder.seen.clear()
    leave_one_site_out(IndexRecorder(), X, y, ["A", "B"] * 15)
    assert IndexRecorder.seen and all(set(i) <= set(X.index) for i in IndexRecorder.seen)
